package gp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/host/gp/gptest"
)

// Known answers computed independently with python cryptography's AES-CMAC:
// CMAC(master, 00×11 || const || 00 || L || 01 [|| 02] || KDD).
func TestDiversifyKnownAnswer(t *testing.T) {
	kddb := hx(t, "00010203040506070809")
	tests := []struct {
		master        string
		enc, mac, dek string
	}{
		{"404142434445464748494A4B4C4D4E4F",
			"3B6B00DF2A55F632608F4FE35A0DF681", "8AD39E98529BBB9F38FB21D456FA5B73", "0865ADBEDF902F5ECE662FA5D5279A5D"},
		{"202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F",
			"AA5284EFECFB9275B77F3599065EF99D46302C985E0D266F52B774455FBFFF16",
			"F30BA545821133AB99435DA72429E09BB036993FEFCD31CF4FA8EA201C5EE813",
			"E370B64DEEB785D6FA1D0135D54FD86479AC9E516AFA81CF17D8F1AAD73CBD6D"},
	}
	for _, tc := range tests {
		m := scp03.Key(hx(t, tc.master))
		got, err := Diversify(scp03.StaticKeys{ENC: m, MAC: m, DEK: m}, kddb)
		require.NoError(t, err)
		require.Equal(t, tc.enc, fmt.Sprintf("%X", []byte(got.ENC)))
		require.Equal(t, tc.mac, fmt.Sprintf("%X", []byte(got.MAC)))
		require.Equal(t, tc.dek, fmt.Sprintf("%X", []byte(got.DEK)))
	}
	_, err := Diversify(scp03.StaticKeys{ENC: gpwire.TestKey(), MAC: gpwire.TestKey(), DEK: gpwire.TestKey()}, kddb[:9])
	require.ErrorIs(t, err, ErrKeys)
	_, err = Diversify(scp03.StaticKeys{}, kddb)
	require.ErrorIs(t, err, ErrKeys)
}

// A card personalised with diversified keys opens with the master.
func TestDiversifiedSession(t *testing.T) {
	master := scp03.StaticKeys{ENC: gpwire.TestKey(), MAC: gpwire.TestKey(), DEK: gpwire.TestKey()}
	cardKDD := [10]byte{9, 8, 7, 6, 5, 4, 3, 2, 1, 0}
	cardKeys, err := Diversify(master, cardKDD[:])
	require.NoError(t, err)
	c, err := gptest.New(gptest.Config{Keys: cardKeys, KDD: cardKDD})
	require.NoError(t, err)
	s, err := Open(context.Background(), c, Config{Keys: Diversified(master), Level: scp03.LevelAll})
	require.NoError(t, err)
	s.Close()
	// The master itself is not the card's key.
	_, err = Open(context.Background(), c, Config{Keys: Static(master), NoChallengeCheck: true})
	require.ErrorIs(t, err, ErrWrongKeys)
	require.Contains(t, err.Error(), "--master-key")
}

func TestKeyFiles(t *testing.T) {
	ctx := context.Background()
	id := CardIdentity{KDD: [10]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}
	tk := "404142434445464748494A4B4C4D4E4F"
	tests := []struct {
		name, json string
		kvn        byte
		enc        string // expected Key-ENC
	}{
		{"split", `{"enc":"` + tk + `","mac":"` + tk + `","dek":"` + tk + `","kvn":48}`, 0x30, tk},
		{"one key, hex kvn", `{"key":"40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f","kvn":"31"}`, 0x31, tk},
		{"master", `{"master":"` + tk + `","diversify":"kdd"}`, 0, "3B6B00DF2A55F632608F4FE35A0DF681"},
		{"split masters", `{"master_enc":"` + tk + `","master_mac":"` + tk + `","master_dek":"` + tk + `"}`, 0, "3B6B00DF2A55F632608F4FE35A0DF681"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kf, err := ReadKeyFile(strings.NewReader(tc.json))
			require.NoError(t, err)
			require.Equal(t, tc.kvn, kf.KeyVersion)
			keys, err := kf.Keys.StaticKeys(ctx, id)
			require.NoError(t, err)
			require.Equal(t, tc.enc, fmt.Sprintf("%X", []byte(keys.ENC)))
		})
	}
	secret := "00112233445566778899AABBCCDDEEFF"
	for _, tc := range []struct{ name, json, msg string }{
		{"not json", `enc=` + secret, "not a key file"},
		{"two forms", `{"key":"` + secret + `","master":"` + secret + `"}`, "exactly one"},
		{"none", `{"kvn":1}`, "exactly one"},
		{"incomplete set", `{"enc":"` + secret + `","mac":"` + secret + `"}`, "dek key missing"},
		{"mixed lengths", `{"enc":"` + secret + `","mac":"` + secret + `","dek":"` + secret + secret + `"}`, "keys"},
		{"short key", `{"key":"` + secret[:30] + `"}`, "key key of 15 bytes"},
		{"not hex", `{"key":"` + strings.Replace(secret, "A", "G", 1) + `"}`, "not hex (32 characters)"},
		{"unknown field", `{"key":"` + secret + `","pin":"1234"}`, "unknown field"},
		{"bad kvn", `{"key":"` + secret + `","kvn":200}`, "kvn 200"},
		{"bad hex kvn", `{"key":"` + secret + `","kvn":"G1"}`, "not a hex byte"},
		{"bad rule", `{"master":"` + secret + `","diversify":"emv"}`, "only rule"},
		{"rule without master", `{"key":"` + secret + `","diversify":"kdd"}`, "needs master"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadKeyFile(strings.NewReader(tc.json))
			require.ErrorIs(t, err, ErrKeys)
			require.Contains(t, err.Error(), tc.msg)
			require.NotContains(t, strings.ToUpper(err.Error()), "33445566", "key bytes in the error")
		})
	}

	path := filepath.Join(t.TempDir(), "keys.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"key":"`+tk+`"}`), 0o600))
	kf, err := LoadKeyFile(path)
	require.NoError(t, err)
	keys, err := kf.Keys.StaticKeys(ctx, id)
	require.NoError(t, err)
	require.True(t, keys.DEK.Equal(gpwire.TestKey()))
	_, err = LoadKeyFile(filepath.Join(t.TempDir(), "missing.json"))
	require.ErrorIs(t, err, ErrKeys)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestFromEnv(t *testing.T) {
	ctx := context.Background()
	tk := "404142434445464748494A4B4C4D4E4F"
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	src, ok, err := FromEnv(env())
	require.NoError(t, err)
	require.False(t, ok)
	require.Nil(t, src)

	for _, e := range [][]string{
		{EnvKey, tk},
		{EnvKeyENC, tk, EnvKeyMAC, tk, EnvKeyDEK, tk},
		{EnvMasterKey, tk},
	} {
		src, ok, err := FromEnv(env(e...))
		require.NoError(t, err)
		require.True(t, ok)
		keys, err := src.StaticKeys(ctx, CardIdentity{})
		require.NoError(t, err)
		require.NoError(t, keys.Check())
	}
	_, _, err = FromEnv(env(EnvKey, tk, EnvMasterKey, tk))
	require.ErrorIs(t, err, ErrKeys)
	_, _, err = FromEnv(env(EnvKeyENC, tk))
	require.ErrorIs(t, err, ErrKeys)
	require.Contains(t, err.Error(), "mac key missing")
	_, _, err = FromEnv(env(EnvKey, "zz"+tk[2:]))
	require.ErrorIs(t, err, ErrKeys)
	require.NotContains(t, err.Error(), tk[2:])
}

func TestParseKey(t *testing.T) {
	k, err := ParseKey("x", "40:41:42:43:44:45:46:47:48:49:4A:4B:4C:4D:4E:4F")
	require.NoError(t, err)
	require.True(t, k.Equal(gpwire.TestKey()))
	for _, bad := range []string{"", "4041", "404142434445464748494A4B4C4D4E4", "404142434445464748494A4B4C4D4EXX"} {
		_, err := ParseKey("x", bad)
		require.ErrorIs(t, err, ErrKeys, bad)
	}
	// Static copies its input: later changes to the caller's slices do not
	// leak in.
	key := scp03.Key(gpwire.TestKey())
	src := SingleKey(key)
	key[0] = 0
	keys, err := src.StaticKeys(context.Background(), CardIdentity{})
	require.NoError(t, err)
	require.Equal(t, byte(0x40), keys.ENC[0])
}
