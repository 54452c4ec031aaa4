package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/keystore"
)

const testKEKHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

// keysDir makes a directory with a KEK file (mode 0600) and returns it
// and the KEK file's path; $VALUECHIP_KEK is cleared for the test.
func keysDir(t *testing.T) (dir, kek string) {
	t.Helper()
	t.Setenv(keystore.EnvKEK, "")
	dir = t.TempDir()
	kek = filepath.Join(dir, "kek")
	require.NoError(t, os.WriteFile(kek, []byte(testKEKHex+"\n"), 0o600))
	return dir, kek
}

func TestKeysCLI(t *testing.T) {
	ctx := context.Background()
	dir, kek := keysDir(t)
	ring := filepath.Join(dir, "keyring.json")
	out, errOut, err := cli(t, ctx, nil, "keys", "init", "--keyring", ring, "--kek-file", kek)
	require.NoError(t, err, errOut)
	require.Contains(t, out, "keyring "+ring+" created, sealed under the KEK with KCV")
	require.Contains(t, out, "master/load      MK_LOAD")
	require.Empty(t, errOut, "random keys: no warning")
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(ring)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	}

	show, _, err := cli(t, ctx, nil, "keys", "show", "--keyring", ring, "--kek-file", kek)
	require.NoError(t, err)
	require.Contains(t, show, "sealed under the KEK with KCV")
	require.NotContains(t, show, "DEVELOPMENT")
	for _, l := range []string{"master/load", "master/debit", "master/tc", "cardmanager/enc", "cardmanager/mac", "cardmanager/dek"} {
		require.Contains(t, show, l)
	}

	// --json, and the KEK from the environment.
	t.Setenv(keystore.EnvKEK, testKEKHex)
	js, _, err := cli(t, ctx, nil, "keys", "show", "--keyring", ring, "--json")
	require.NoError(t, err)
	var got keyringJSON
	require.NoError(t, json.Unmarshal([]byte(js), &got))
	require.Equal(t, ring, got.Keyring)
	require.False(t, got.Development)
	require.Len(t, got.Keys, 6)
	require.Equal(t, keyringEntryJSON{Label: "master/tc", Name: "MK_TC", Version: "01", Bits: 128, KCV: got.Keys[2].KCV}, got.Keys[2])
	require.Equal(t, "30", got.Keys[3].Version)
	r, err := keystore.OpenKeyring(ring, mustKEK(t))
	require.NoError(t, err)
	m, err := r.Masters(ctx)
	require.NoError(t, err)
	kcv, err := m.TC.Key.KCV()
	require.NoError(t, err)
	require.Equal(t, strings.ToUpper(hex.EncodeToString(kcv[:])), got.Keys[2].KCV)
	// The output never holds a key.
	for _, k := range [][]byte{m.Load.Key, m.Debit.Key, m.TC.Key} {
		for _, s := range []string{out, show, js} {
			require.NotContains(t, strings.ToLower(s), hex.EncodeToString(k))
		}
	}
}

func TestKeysCLIDevMasters(t *testing.T) {
	ctx := context.Background()
	dir, kek := keysDir(t)
	ring := filepath.Join(dir, "dev.json")
	out, errOut, err := cli(t, ctx, nil, "keys", "init", "--keyring", ring, "--kek-file", kek, "--dev-masters")
	require.NoError(t, err)
	require.Contains(t, errOut, keystore.DevWarning, "the dev keys warn loudly")
	// KCVs of the masters 1011…1F, 2021…2F, 3031…3F and of the GP test key.
	for _, want := range []string{"MK_LOAD                      01   128  013808", "MK_DEBIT                     01   128  840DE5", "MK_TC                        01   128  5EAADA", "01   128  504A77"} {
		require.Contains(t, out, want)
	}
	show, errOut, err := cli(t, ctx, nil, "keys", "show", "--keyring", ring, "--kek-file", kek)
	require.NoError(t, err)
	require.Contains(t, show, "DEVELOPMENT keys")
	require.Contains(t, errOut, keystore.DevWarning)
	require.NotContains(t, strings.ToUpper(out+show), "101112131415161718191A1B1C1D1E1F")
	require.NotContains(t, strings.ToUpper(out+show), "404142434445464748494A4B4C4D4E4F")
}

func TestKeysCLIErrors(t *testing.T) {
	ctx := context.Background()
	dir, kek := keysDir(t)
	ring := filepath.Join(dir, "keyring.json")
	_, _, err := cli(t, ctx, nil, "keys", "init", "--keyring", ring, "--kek-file", kek)
	require.NoError(t, err)
	otherKEK := filepath.Join(dir, "other-kek")
	require.NoError(t, os.WriteFile(otherKEK, []byte(strings.Repeat("ab", 32)), 0o600))
	openKEK := filepath.Join(dir, "open-kek")
	require.NoError(t, os.WriteFile(openKEK, []byte(testKEKHex), 0o600))
	require.NoError(t, os.Chmod(openKEK, 0o644))
	shortKEK := filepath.Join(dir, "short-kek")
	require.NoError(t, os.WriteFile(shortKEK, []byte(testKEKHex[:32]), 0o600))
	for _, tc := range []struct {
		args  []string
		msg   string
		usage bool
	}{
		{[]string{"show", "--keyring", ring}, "no key-encryption key: give a KEK file (--kek-file FILE) or set VALUECHIP_KEK", true},
		{[]string{"show", "--keyring", "", "--kek-file", kek}, "--keyring FILE", true},
		{[]string{"show", "--keyring", ring, "--kek-file", otherKEK}, "the KEK does not open this keyring", false},
		{[]string{"show", "--keyring", ring, "--kek-file", shortKEK}, "want 64 hex digits", false},
		{[]string{"show", "--keyring", ring, "--kek-file", filepath.Join(dir, "nope")}, "no such file", false},
		{[]string{"show", "--keyring", filepath.Join(dir, "nope.json"), "--kek-file", kek}, "no such file", false},
		{[]string{"show", "--keyring", kek, "--kek-file", kek}, "not a keyring file", false},
		{[]string{"init", "--keyring", ring, "--kek-file", kek}, "already exists; refusing to replace it, its keys would be lost (--force replaces it)", true},
		{[]string{"init", "--keyring", ring}, "no key-encryption key", true},
		{[]string{"show", "extra", "--keyring", ring, "--kek-file", kek}, "unknown command", false},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := cli(t, ctx, nil, append([]string{"keys"}, tc.args...)...)
			require.ErrorContains(t, err, tc.msg)
			require.NotContains(t, err.Error(), testKEKHex[8:40], "errors never show the KEK")
			if tc.usage {
				require.Equal(t, 2, exitCode(err))
			}
		})
	}
	if runtime.GOOS != "windows" {
		_, _, err := cli(t, ctx, nil, "keys", "show", "--keyring", ring, "--kek-file", openKEK)
		require.ErrorContains(t, err, "mode 0644, accessible to group or others; run: chmod 600 "+openKEK)
	}
	// --force replaces the keyring with fresh keys.
	before, err := os.ReadFile(ring)
	require.NoError(t, err)
	_, _, err = cli(t, ctx, nil, "keys", "init", "--keyring", ring, "--kek-file", kek, "--force")
	require.NoError(t, err)
	after, err := os.ReadFile(ring)
	require.NoError(t, err)
	require.NotEqual(t, before, after)
}

func mustKEK(t *testing.T) keystore.KEK {
	t.Helper()
	k, err := keystore.ParseKEK([]byte(testKEKHex))
	require.NoError(t, err)
	return k
}

func TestKeysCLIRekey(t *testing.T) {
	ctx := context.Background()
	dir, kek := keysDir(t)
	ring := filepath.Join(dir, "keyring.json")
	_, _, err := cli(t, ctx, nil, "keys", "init", "--keyring", ring, "--kek-file", kek)
	require.NoError(t, err)
	before, _, err := cli(t, ctx, nil, "keys", "show", "--keyring", ring, "--kek-file", kek, "--json")
	require.NoError(t, err)
	kek2 := filepath.Join(dir, "kek2")
	require.NoError(t, os.WriteFile(kek2, []byte(strings.Repeat("5a", 32)+"\n"), 0o600))

	_, _, err = cli(t, ctx, nil, "keys", "rekey", "--keyring", ring, "--kek-file", kek)
	require.ErrorContains(t, err, "--new-kek-file FILE")
	require.Equal(t, 2, exitCode(err))
	_, _, err = cli(t, ctx, nil, "keys", "rekey", "--keyring", ring, "--kek-file", kek, "--new-kek-file", kek)
	require.ErrorContains(t, err, "holds the current KEK")

	out, _, err := cli(t, ctx, nil, "keys", "rekey", "--keyring", ring, "--kek-file", kek, "--new-kek-file", kek2)
	require.NoError(t, err)
	require.Contains(t, out, "resealed: KEK KCV")
	_, _, err = cli(t, ctx, nil, "keys", "show", "--keyring", ring, "--kek-file", kek)
	require.ErrorContains(t, err, "the KEK does not open this keyring")
	after, _, err := cli(t, ctx, nil, "keys", "show", "--keyring", ring, "--kek-file", kek2, "--json")
	require.NoError(t, err)
	var b, a keyringJSON
	require.NoError(t, json.Unmarshal([]byte(before), &b))
	require.NoError(t, json.Unmarshal([]byte(after), &a))
	require.Equal(t, b.Keys, a.Keys, "same keys")
	require.NotEqual(t, b.KEKKCV, a.KEKKCV)
}
