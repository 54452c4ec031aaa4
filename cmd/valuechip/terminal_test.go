package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/link"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// terminalEnv makes a development key ring and its KEK file.
func terminalEnv(t *testing.T) (dir, ringPath, kekPath string, ring *keystore.Keyring) {
	t.Helper()
	dir = t.TempDir()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	kek, err := keystore.NewKEK(raw)
	require.NoError(t, err)
	kekPath = filepath.Join(dir, "kek.hex")
	require.NoError(t, os.WriteFile(kekPath, []byte(hex.EncodeToString(raw)+"\n"), 0o600))
	ringPath = filepath.Join(dir, "keyring.json")
	ring, err = keystore.Init(ringPath, kek, keystore.InitOptions{DevMasters: true})
	require.NoError(t, err)
	return dir, ringPath, kekPath, ring
}

func TestTerminalCLI(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dir, ringPath, kekPath, ring := terminalEnv(t)
			dsn := "sqlite:" + filepath.Join(dir, "server.db")
			if engine == "postgres" {
				dsn = dbtest.PostgresDSN(t)
			}
			out := filepath.Join(dir, "term.json")
			register := func(id, file string) (string, string, error) {
				return cli(t, ctx, nil, "terminal", "register", "--db", dsn, "--keyring", ringPath, "--kek-file", kekPath,
					"--id", id, "--merchant", "MERCHANT0000001", "--server", "127.0.0.1:8583", "--out", file)
			}
			stdout, stderr, err := register("T0000001", out)
			require.NoError(t, err)
			require.Contains(t, stdout, `registered terminal "T0000001"`)
			require.Contains(t, stderr, "holds the terminal master key")
			require.Contains(t, stderr, "DEVELOPMENT KEYRING")

			st, err := os.Stat(out)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
			// The file is what the terminal side reads (host/link).
			f, err := link.LoadConfig(out)
			require.NoError(t, err)
			require.Equal(t, "T0000001", f.TerminalID)
			require.Equal(t, "MERCHANT0000001", f.MerchantID)
			require.Equal(t, "127.0.0.1:8583", f.Server)

			// The file's TMK is the one the server holds sealed; the SAM key is
			// the K_DEBIT master of the key ring.
			db := dbtest.OpenDSN(t, dsn)
			reg, err := registry.New(ctx, db, ring)
			require.NoError(t, err)
			tmk, err := reg.TerminalKey(ctx, "T0000001")
			require.NoError(t, err)
			require.Equal(t, []byte(tmk), []byte(f.TMK))
			masters, err := ring.Masters(ctx)
			require.NoError(t, err)
			require.Equal(t, []byte(masters.Debit.Key), []byte(f.SAM.Key))
			require.Equal(t, masters.Debit.Version, f.SAM.Version)
			require.NotContains(t, strings.ToUpper(stdout+stderr), strings.ToUpper(hex.EncodeToString(f.TMK)), "keys are never printed")
			require.NotContains(t, strings.ToUpper(stdout+stderr), strings.ToUpper(hex.EncodeToString(f.SAM.Key)))

			_, _, err = register("T0000001", filepath.Join(dir, "again.json"))
			require.ErrorIs(t, err, registry.ErrExists)
			require.NoFileExists(t, filepath.Join(dir, "again.json"))
			_, _, err = register("T01", filepath.Join(dir, "bad.json"))
			require.ErrorIs(t, err, registry.ErrInvalid)
			require.ErrorAs(t, err, new(usageError))
			_, _, err = register("T0000002", filepath.Join(dir, "missing", "t.json"))
			require.ErrorContains(t, err, "no such directory")
			_, err = reg.Terminal(ctx, "T0000002")
			require.ErrorIs(t, err, registry.ErrNotFound, "nothing registered when the file cannot be written")

			stdout, _, err = cli(t, ctx, nil, "terminal", "block", "T0000001", "--db", dsn, "--reason", "stolen")
			require.NoError(t, err)
			require.Contains(t, stdout, `terminal "T0000001" blocked`)
			_, _, err = cli(t, ctx, nil, "terminal", "block", "T0000009", "--db", dsn)
			require.ErrorIs(t, err, registry.ErrNotFound)

			stdout, _, err = cli(t, ctx, nil, "terminal", "list", "--db", dsn)
			require.NoError(t, err)
			require.Contains(t, stdout, `"T0000001"`)
			require.Contains(t, stdout, "blocked")
			require.Contains(t, stdout, "stolen")
			require.NotContains(t, strings.ToUpper(stdout), strings.ToUpper(hex.EncodeToString(f.TMK)))

			_, _, err = cli(t, ctx, nil, "terminal", "unblock", "T0000001", "--db", dsn)
			require.NoError(t, err)
			stdout, _, err = cli(t, ctx, nil, "terminal", "list", "--db", dsn, "--json")
			require.NoError(t, err)
			require.NotContains(t, strings.ToUpper(stdout), strings.ToUpper(hex.EncodeToString(f.TMK)))
			var list []map[string]any
			require.NoError(t, json.Unmarshal([]byte(stdout), &list))
			require.Len(t, list, 1)
			require.Equal(t, "T0000001", list[0]["terminal_id"])
			require.Equal(t, "active", list[0]["status"])
			term, err := reg.Terminal(ctx, "T0000001")
			require.NoError(t, err)
			require.Equal(t, term.TMKKCV, list[0]["tmk_kcv"])
			v, err := reg.TerminalVersion(ctx)
			require.NoError(t, err)
			require.EqualValues(t, 3, v, "registered, blocked, unblocked")
		})
	}
}

func TestTerminalDefaultDB(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	_, _, err := cli(t, context.Background(), nil, "terminal", "list")
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(dir, defaultDB))
	db, err := sqldb.Open(context.Background(), defaultDB)
	require.NoError(t, err)
	require.NoError(t, db.Close())
}
