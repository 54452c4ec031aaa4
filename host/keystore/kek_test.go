package keystore_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/keystore"
)

// kekHex is a test KEK: 00 01 02 … 1F.
const kekHex = "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"

func testKEK(t testing.TB) keystore.KEK {
	t.Helper()
	k, err := keystore.ParseKEK([]byte(kekHex))
	require.NoError(t, err)
	return k
}

func writeFile(t *testing.T, content []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kek")
	require.NoError(t, os.WriteFile(p, content, mode))
	require.NoError(t, os.Chmod(p, mode)) // umask-independent
	return p
}

func TestParseKEK(t *testing.T) {
	raw, err := hex.DecodeString(kekHex)
	require.NoError(t, err)
	want := testKEK(t)
	for _, tc := range []struct {
		name, err string
		in        []byte
	}{
		{name: "hex", in: []byte(kekHex)},
		{name: "lower hex with newline", in: []byte(strings.ToLower(kekHex) + "\n")},
		{name: "xxd -p lines", in: []byte(kekHex[:60] + "\n" + kekHex[60:] + "\r\n")},
		{name: "colons and spaces", in: []byte(" 00:01:02:03 " + kekHex[8:] + "\t")},
		{name: "raw", in: raw},
		{name: "empty", in: nil, err: "empty"},
		{name: "blank", in: []byte(" \n"), err: "empty"},
		{name: "AES-128 hex", in: []byte(kekHex[:32]), err: "32 hex digits (16 bytes), want 64"},
		{name: "too long hex", in: []byte(kekHex + "00"), err: "want 64 hex digits"},
		{name: "odd hex", in: []byte(kekHex[:63]), err: "neither 64 hex digits"},
		{name: "not hex", in: []byte(strings.Repeat("zz", 32)), err: "neither 64 hex digits"},
		{name: "raw 31", in: raw[:31], err: "neither"},
		{name: "all zeros", in: []byte(strings.Repeat("0", 64)), err: "all zeros"},
		{name: "raw zeros", in: make([]byte, 32), err: "all zeros"},
		{name: "passphrase", in: []byte("correct horse battery staple!!!!"), err: "look like a passphrase"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := keystore.ParseKEK(tc.in)
			if tc.err != "" {
				require.ErrorIs(t, err, keystore.ErrBadKEK)
				require.ErrorContains(t, err, tc.err)
				require.NotContains(t, err.Error(), strings.ToLower(kekHex[8:40]))
				return
			}
			require.NoError(t, err)
			require.True(t, want.Equal(k))
		})
	}
}

func TestKEKPrintsKCVOnly(t *testing.T) {
	k := testKEK(t)
	kcv := k.KCV()
	want := fmt.Sprintf("KEK(kcv=%X)", kcv)
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "kek", k)
	for _, s := range []string{
		k.String(), fmt.Sprint(k), fmt.Sprintf("%v %+v %s %q %x %X %d", k, k, k, k, k, k, k),
		fmt.Sprintf("%#v", k), fmt.Sprintf("%v", struct{ K keystore.KEK }{k}), logged.String(),
	} {
		require.Contains(t, s, want)
		requireNoSecret(t, s, kekHex)
	}
	js, err := json.Marshal(struct{ K keystore.KEK }{k})
	require.NoError(t, err)
	require.Equal(t, `{"K":"`+want+`"}`, string(js))
	require.Equal(t, "KEK(none)", keystore.KEK{}.String())
	require.NotEqual(t, kcv, keystore.GenerateKEK().KCV())
}

// requireNoSecret fails if s holds the key in hex, either case, or a long
// piece of it.
func requireNoSecret(t *testing.T, s, keyHex string) {
	t.Helper()
	for _, h := range []string{strings.ToUpper(keyHex), strings.ToLower(keyHex)} {
		require.NotContains(t, strings.ToUpper(s), strings.ToUpper(h[:16]), "key material printed")
		require.NotContains(t, s, h)
	}
}

func TestLoadKEK(t *testing.T) {
	good := writeFile(t, []byte(kekHex+"\n"), 0o600)
	other := keystore.GenerateKEK()
	t.Run("file wins over env", func(t *testing.T) {
		t.Setenv(keystore.EnvKEK, strings.Repeat("11", 32))
		k, err := keystore.LoadKEK(good)
		require.NoError(t, err)
		require.True(t, testKEK(t).Equal(k))
		require.False(t, other.Equal(k))
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv(keystore.EnvKEK, kekHex)
		k, err := keystore.LoadKEK("")
		require.NoError(t, err)
		require.True(t, testKEK(t).Equal(k))
	})
	t.Run("bad env", func(t *testing.T) {
		t.Setenv(keystore.EnvKEK, "abcd")
		_, err := keystore.LoadKEK("")
		require.ErrorIs(t, err, keystore.ErrBadKEK)
		require.ErrorContains(t, err, keystore.EnvKEK)
	})
	t.Run("env is hex only", func(t *testing.T) {
		t.Setenv(keystore.EnvKEK, "correct horse battery staple 32!")
		_, err := keystore.LoadKEK("")
		require.ErrorIs(t, err, keystore.ErrBadKEK)
		require.ErrorContains(t, err, "neither 64 hex digits")
	})
	t.Run("neither", func(t *testing.T) {
		t.Setenv(keystore.EnvKEK, "")
		_, err := keystore.LoadKEK("")
		require.ErrorIs(t, err, keystore.ErrNoKEK)
		require.ErrorContains(t, err, "--kek-file")
		require.ErrorContains(t, err, keystore.EnvKEK)
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := keystore.LoadKEK(filepath.Join(t.TempDir(), "nope"))
		require.ErrorIs(t, err, keystore.ErrBadKEK)
		require.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("huge file", func(t *testing.T) {
		_, err := keystore.LoadKEK(writeFile(t, bytes.Repeat([]byte{'0'}, 5000), 0o600))
		require.ErrorContains(t, err, "too large")
	})
	if runtime.GOOS == "windows" {
		return
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o602, 0o620} {
		t.Run(fmt.Sprintf("mode %04o refused", mode), func(t *testing.T) {
			p := writeFile(t, []byte(kekHex), mode)
			_, err := keystore.LoadKEK(p)
			require.ErrorIs(t, err, keystore.ErrKEKPermissions)
			require.ErrorContains(t, err, "chmod 600 "+p)
			require.ErrorContains(t, err, fmt.Sprintf("%04o", mode))
		})
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		t.Run(fmt.Sprintf("mode %04o accepted", mode), func(t *testing.T) {
			_, err := keystore.LoadKEK(writeFile(t, []byte(kekHex), mode))
			require.NoError(t, err)
		})
	}
}
