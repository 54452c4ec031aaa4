package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/gp/gptest"
	"github.com/valuechip/valuechip/reader/vpcd"
)

const (
	purseAIDHex  = "F0000000015055525345"
	purseInstHex = "F000000001505552534501"
	testKeyHex   = "404142434445464748494A4B4C4D4E4F"
)

var purseDigest = strings.Repeat("AB", 32)

// serveGP serves a fake GP card over the vpcd protocol on a free port and
// returns the --reader name for it.
func serveGP(t *testing.T, cfg gptest.Config) (*gptest.Card, string) {
	t.Helper()
	if cfg.Keys.ENC == nil {
		cfg.Keys = scp03.StaticKeys{ENC: gpwire.TestKey(), MAC: gpwire.TestKey(), DEK: gpwire.TestKey()}
	}
	if cfg.Modules == nil {
		var d [32]byte
		for i := range d {
			d[i] = 0xAB
		}
		cfg.Modules = map[string][32]byte{string(mustHex(t, purseInstHex)): d}
	}
	cfg.KDD = [10]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	card, err := gptest.New(cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vpcd.Serve(ctx, l, card) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("vpcd.Serve did not stop")
		}
	})
	return card, "tcp:" + l.Addr().String()
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := parseHex("test", s)
	require.NoError(t, err)
	return b
}

// gpcli runs a gp command with the environment cleared of keys.
func gpcli(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	for _, k := range []string{hostgp.EnvKey, hostgp.EnvKeyENC, hostgp.EnvKeyMAC, hostgp.EnvKeyDEK, hostgp.EnvMasterKey} {
		t.Setenv(k, "")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return cli(t, ctx, nil, args...)
}

func buildPurse(t *testing.T, extra ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "purse.lf")
	args := append([]string{"loadfile", "build", "--package", purseAIDHex, "--version", "1.2",
		"--module", purseInstHex + ":" + purseDigest, "-o", out}, extra...)
	stdout, _, err := gpcli(t, args...)
	require.NoError(t, err)
	require.Contains(t, stdout, "package "+purseAIDHex+" version 1.2, 1 module(s)")
	return out
}

func TestGPEndToEnd(t *testing.T) {
	card, rd := serveGP(t, gptest.Config{PageSize: 64})
	lf := buildPurse(t)

	out, stderr, err := gpcli(t, "gp", "info", "--reader", rd, "--test-key")
	require.NoError(t, err)
	require.Contains(t, stderr, "warning: using the well-known GlobalPlatform test key")
	require.Contains(t, out, "Security domain   A000000151000000")
	require.Contains(t, out, "SCP03 i=70, key version 30, level C-MAC+C-DEC")
	require.Contains(t, out, "Card life cycle   SECURED (0F)")
	require.Contains(t, out, "GlobalPlatform    2.3.1 (SCP03 i=70)")
	require.Contains(t, out, "CPLC\n  ic_fabricator")
	require.Contains(t, out, "  ic_serial_number                  06070809\n")

	out, _, err = gpcli(t, "gp", "install", "--reader", rd, "--test-key", "--level", "renc", "--load-file", lf)
	require.NoError(t, err)
	require.Equal(t, "loaded "+purseAIDHex+" version 1.2\ninstalled "+purseInstHex+"\n", out)

	out, _, err = gpcli(t, "gp", "list", "--reader", rd, "--key", testKeyHex, "--level", "11")
	require.NoError(t, err)
	require.Contains(t, out, "ISD: A000000151000000  SECURED")
	require.Contains(t, out, "APP: "+purseInstHex+"  SELECTABLE\n     privileges 000000 (none)\n     from "+purseAIDHex)
	require.Contains(t, out, "PKG: "+purseAIDHex+"  LOADED  version 1.2\n")
	require.Contains(t, out, "     module "+purseInstHex)

	out, _, err = gpcli(t, "gp", "list", "--reader", rd, "--test-key", "--json")
	require.NoError(t, err)
	var entries []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &entries))
	require.Len(t, entries, 3)
	require.Equal(t, "application", entries[1]["kind"])
	require.Equal(t, "SELECTABLE", entries[1]["life_cycle_name"])

	_, _, err = gpcli(t, "gp", "store-data", "--reader", rd, "--test-key", "--format", "dgi", "--encrypt", purseInstHex, "8001050102030405")
	require.NoError(t, err)
	require.Equal(t, [][]byte{mustHex(t, "8001050102030405")}, card.Stored(mustHex(t, purseInstHex)))

	out, _, err = gpcli(t, "gp", "lock", "--reader", rd, "--test-key", purseInstHex)
	require.NoError(t, err)
	require.Equal(t, "locked "+purseInstHex+"\n", out)
	apps, _ := card.Registry()
	require.Equal(t, byte(0x87), apps[0].LifeCycle)
	out, _, err = gpcli(t, "gp", "unlock", "--reader", rd, "--test-key", purseInstHex)
	require.NoError(t, err)
	require.Equal(t, "unlocked "+purseInstHex+"\n", out)

	// A package with an instance is not deleted without --related.
	_, _, err = gpcli(t, "gp", "delete", "--reader", rd, "--test-key", purseAIDHex)
	require.ErrorIs(t, err, hostgp.ErrConditions)
	require.Contains(t, err.Error(), "--related")
	out, _, err = gpcli(t, "gp", "delete", "--reader", rd, "--test-key", "--related", purseAIDHex)
	require.NoError(t, err)
	require.Equal(t, "deleted "+purseAIDHex+"\n", out)
	_, _, err = gpcli(t, "gp", "delete", "--reader", rd, "--test-key", purseAIDHex)
	require.ErrorIs(t, err, hostgp.ErrNotFound)
	require.Contains(t, err.Error(), "6A88")

	_, _, err = gpcli(t, "gp", "lifecycle", "--reader", rd, "--test-key", "terminated")
	require.Error(t, err)
	require.Equal(t, 2, exitCode(err))
	out, _, err = gpcli(t, "gp", "lifecycle", "--reader", rd, "--test-key", "locked")
	require.NoError(t, err)
	require.Equal(t, "card life cycle CARD_LOCKED (7F)\n", out)
	require.Equal(t, gpwire.CardLocked, card.LifeCycle())
}

func TestGPPutKeyAndKeySources(t *testing.T) {
	card, rd := serveGP(t, gptest.Config{})
	dir := t.TempDir()
	newKeys := filepath.Join(dir, "new.json")
	require.NoError(t, os.WriteFile(newKeys, []byte(`{"enc":"000102030405060708090A0B0C0D0E0F","mac":"101112131415161718191A1B1C1D1E1F","dek":"202122232425262728292A2B2C2D2E2F","kvn":"31"}`), 0o600))

	out, stderr, err := gpcli(t, "gp", "put-key", "--reader", rd, "--test-key", "--trace", "--new-kvn", "31", "--new-key-file", newKeys)
	require.NoError(t, err)
	require.Equal(t, "key set 31: {ENC: AES-128 key KCV C35280, MAC: AES-128 key KCV 013808, DEK: AES-128 key KCV 840DE5}\n", out)
	require.Contains(t, stderr, "PUT KEY")
	require.NotContains(t, stderr, "000102030405060708090A0B0C0D0E0F")
	require.NotContains(t, stderr, "3D0FA4B855D2A5AA4954B8B5DF582A3A") // the encrypted Key-ENC
	require.Len(t, card.KeySets(), 2)

	// The key file names kvn 31; the session opens with it.
	out, _, err = gpcli(t, "gp", "info", "--reader", rd, "--key-file", newKeys, "--json")
	require.NoError(t, err)
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &info))
	require.Equal(t, "31", info["key_version"])
	require.Equal(t, "00010203040506070809", info["kdd"])
	require.Equal(t, "SECURED", info["card_life_cycle_name"])

	// Split keys on the command line, and from the environment.
	_, _, err = gpcli(t, "gp", "list", "--reader", rd, "--kvn", "31", "--key-enc", "000102030405060708090A0B0C0D0E0F",
		"--key-mac", "101112131415161718191A1B1C1D1E1F", "--key-dek", "202122232425262728292A2B2C2D2E2F")
	require.NoError(t, err)
	for _, k := range []string{hostgp.EnvKey, hostgp.EnvKeyENC, hostgp.EnvKeyMAC, hostgp.EnvKeyDEK, hostgp.EnvMasterKey} {
		t.Setenv(k, "")
	}
	t.Setenv(hostgp.EnvKey, testKeyHex)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, stderr, err = cli(t, ctx, nil, "gp", "list", "--reader", rd, "--kvn", "30")
	require.NoError(t, err)
	require.NotContains(t, stderr, "warning")
}

func TestGPErrorsSayWhatToTry(t *testing.T) {
	_, rd := serveGP(t, gptest.Config{})
	wrong := strings.Repeat("11", 16)
	_, _, err := gpcli(t, "gp", "list", "--reader", rd, "--key", wrong, "--no-challenge-check")
	require.ErrorIs(t, err, hostgp.ErrWrongKeys)
	require.Contains(t, err.Error(), "card cryptogram mismatch: wrong keys or key version?")
	require.Contains(t, err.Error(), "try --kvn, --key-file")
	require.NotContains(t, err.Error(), wrong)

	_, _, err = gpcli(t, "gp", "list", "--reader", rd, "--test-key", "--kvn", "42")
	require.ErrorIs(t, err, hostgp.ErrKeyVersion)
	require.Contains(t, err.Error(), "--kvn 00")

	_, _, err = gpcli(t, "gp", "list", "--reader", rd, "--test-key", "--sd", "A000000003000000")
	require.ErrorIs(t, err, hostgp.ErrSDNotFound)

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"gp", "list", "--reader", rd}, "no keys: give --key"},
		{[]string{"gp", "list", "--reader", rd, "--key", "0011"}, "--key key of 2 bytes"},
		{[]string{"gp", "list", "--reader", rd, "--key", "XYZ" + wrong}, "not hex"},
		{[]string{"gp", "list", "--reader", rd, "--test-key", "--level", "02"}, "not a level"},
		{[]string{"gp", "list", "--reader", rd, "--test-key", "--level", "fast"}, "use none, cmac"},
		{[]string{"gp", "list", "--reader", rd, "--test-key", "--key", testKeyHex}, "give one of --key"},
		{[]string{"gp", "list", "--reader", rd, "--key-enc", testKeyHex}, "go together"},
		{[]string{"gp", "list", "--reader", rd, "--test-key", "--kvn", "zz"}, "one hex byte"},
		{[]string{"gp", "delete", "--reader", rd, "--test-key", "F000"}, "5 to 16 bytes"},
		{[]string{"gp", "install", "--reader", rd, "--test-key"}, "give --load-file"},
		{[]string{"gp", "store-data", "--reader", rd, "--test-key", "--encrypt", purseInstHex, "00"}, "--encrypt needs --format dgi"},
		{[]string{"gp", "store-data", "--reader", rd, "--test-key", "--format", "dgi", purseInstHex, "8001"}, "block 1"},
		{[]string{"gp", "put-key", "--reader", rd, "--test-key"}, "--new-kvn is required"},
		{[]string{"gp", "put-key", "--reader", rd, "--test-key", "--new-kvn", "31"}, "give the new keys"},
		{[]string{"loadfile", "build", "--package", purseAIDHex}, "at least one --module"},
		{[]string{"loadfile", "build", "--package", purseAIDHex, "--module", purseInstHex, "-o", "x"}, "AID:DIGEST"},
		{[]string{"loadfile", "build", "--package", purseAIDHex, "--module", purseInstHex + ":00", "-o", "x"}, "digest of 1 bytes"},
		{[]string{"loadfile", "build", "--package", purseAIDHex, "--version", "1", "--module", purseInstHex + ":" + purseDigest, "-o", "x"}, "MAJOR.MINOR"},
	} {
		t.Run(strings.Join(tc.args[:2], " ")+" "+tc.msg, func(t *testing.T) {
			_, _, err := gpcli(t, tc.args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.msg)
			require.Equal(t, 2, exitCode(err), "usage errors exit 2: %v", err)
			require.NotContains(t, err.Error(), wrong)
		})
	}
}

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), strings.ReplaceAll(strings.ToLower(typ), " ", "-")+".pem")
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return p
}

func TestLoadFileSignedAndDAP(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	sec1, err := x509.MarshalECPrivateKey(priv)
	require.NoError(t, err)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	require.NoError(t, err)
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	require.NoError(t, err)
	pubPEM := writePEM(t, "PUBLIC KEY", pubDER)

	for _, keyPEM := range []string{writePEM(t, "EC PRIVATE KEY", sec1), writePEM(t, "PRIVATE KEY", pkcs8)} {
		lf := buildPurse(t, "--sign-key", keyPEM)
		out, _, err := gpcli(t, "loadfile", "show", lf, "--verify-key", pubPEM)
		require.NoError(t, err)
		require.Contains(t, out, "package "+purseAIDHex+" version 1.2")
		require.Contains(t, out, "module "+purseInstHex+" digest "+purseDigest)
		require.Contains(t, out, "DAP for A000000151000000: signature OK")
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	otherDER, err := x509.MarshalPKIXPublicKey(&other.PublicKey)
	require.NoError(t, err)
	lf := buildPurse(t, "--sign-key", writePEM(t, "EC PRIVATE KEY", sec1))
	out, _, err := gpcli(t, "loadfile", "show", lf, "--verify-key", writePEM(t, "PUBLIC KEY", otherDER), "--json")
	require.ErrorIs(t, err, gpwire.ErrBadSignature)
	require.Contains(t, out, `"verified": false`)

	// A card that requires a DAP takes the signed file once it has the key.
	card, rd := serveGP(t, gptest.Config{RequireDAP: true})
	unsigned := buildPurse(t)
	_, _, err = gpcli(t, "gp", "install", "--reader", rd, "--test-key", "--load-file", unsigned)
	require.ErrorIs(t, err, hostgp.ErrSecurityStatus)
	out, _, err = gpcli(t, "gp", "put-key", "--reader", rd, "--test-key", "--dap-key", pubPEM)
	require.NoError(t, err)
	require.Equal(t, "DAP key loaded as key version 73\n", out)
	require.True(t, card.DAPKey().Equal(&priv.PublicKey))
	_, _, err = gpcli(t, "gp", "install", "--reader", rd, "--test-key", "--load-file", lf, "--instance", "F000000001505552534509")
	require.NoError(t, err)
	apps, _ := card.Registry()
	require.Equal(t, mustHex(t, "F000000001505552534509"), apps[0].AID)

	// show refuses files that are not load files.
	bad := filepath.Join(t.TempDir(), "bad.lf")
	require.NoError(t, os.WriteFile(bad, []byte{0xC4, 0x01}, 0o644))
	_, _, err = gpcli(t, "loadfile", "show", bad)
	require.ErrorIs(t, err, gpwire.ErrMalformed)
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]scp03.SecurityLevel{
		"none": 0x00, "cmac": 0x01, "mac": 0x01, "cdec": 0x03, "enc": 0x03, "rmac": 0x11, "cdec+rmac": 0x13,
		"rmac+cdec": 0x13, "renc": 0x33, "00": 0x00, "01": 0x01, "03": 0x03, "11": 0x11, "13": 0x13, "33": 0x33, "0x33": 0x33, "CMAC": 0x01,
	} {
		got, err := parseLevel(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"", "02", "31", "10", "x", "cmac+", "none+rmac+x"} {
		_, err := parseLevel(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, fmt.Sprint(scp03.LevelAll), "C-MAC+C-DEC+R-MAC+R-ENC")
}
