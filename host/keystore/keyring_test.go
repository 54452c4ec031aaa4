package keystore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/terminal"
)

func initRing(t *testing.T, opt keystore.InitOptions) (string, *keystore.Keyring) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keyring.json")
	r, err := keystore.Init(p, testKEK(t), opt)
	require.NoError(t, err)
	return p, r
}

func TestInitOpen(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		opt     keystore.InitOptions
		bits    int
		ver, cm byte
	}{
		{"random", keystore.InitOptions{}, 128, 0x01, 0x30},
		{"random AES-256 KVN 02/31", keystore.InitOptions{KeyLen: 32, MasterVersion: 2, CardManagerVersion: 0x31}, 256, 0x02, 0x31},
		{"dev", keystore.InitOptions{DevMasters: true}, 128, 0x01, 0x01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, r := initRing(t, tc.opt)
			if runtime.GOOS != "windows" {
				fi, err := os.Stat(p)
				require.NoError(t, err)
				require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
			}
			o, err := keystore.OpenKeyring(p, testKEK(t))
			require.NoError(t, err)
			require.Equal(t, tc.opt.DevMasters, o.Development())
			require.Equal(t, testKEK(t).KCV(), o.KEKKCV())
			require.Equal(t, r.Keys(), o.Keys())
			require.False(t, o.Created().IsZero())
			m, err := o.Masters(ctx)
			require.NoError(t, err)
			require.NoError(t, m.Check())
			m0, err := r.Masters(ctx)
			require.NoError(t, err)
			for _, pair := range [][2]purse.VersionedKey{{m.Load, m0.Load}, {m.Debit, m0.Debit}, {m.TC, m0.TC}} {
				require.Equal(t, tc.ver, pair[0].Version)
				require.Len(t, pair[0].Key, tc.bits/8)
				require.True(t, pair[0].Key.Equal(pair[1].Key))
			}
			require.False(t, m.Load.Key.Equal(m.Debit.Key) || m.Load.Key.Equal(m.TC.Key) || m.Debit.Key.Equal(m.TC.Key), "distinct masters")
			cm, kvn, err := o.CardManagerMaster(ctx)
			require.NoError(t, err)
			require.NoError(t, cm.Check())
			require.Equal(t, tc.cm, kvn)
			require.Len(t, cm.ENC, tc.bits/8)
			if !tc.opt.DevMasters {
				require.False(t, cm.ENC.Equal(cm.MAC) || cm.ENC.Equal(cm.DEK), "distinct card-manager keys")
			}
			// Keys describe each entry by its KCV.
			infos := o.Keys()
			require.Len(t, infos, 6)
			for _, i := range infos {
				require.Equal(t, tc.bits, i.Bits)
			}
			kcv, err := m.TC.Key.KCV()
			require.NoError(t, err)
			require.Equal(t, keystore.LabelTC, infos[2].Label)
			require.Equal(t, kcv, infos[2].KCV)
			// Returned keys are copies: wiping them leaves the keyring intact.
			m.Load.Key.Wipe()
			cm.ENC.Wipe()
			m2, _ := o.Masters(ctx)
			require.True(t, m2.Load.Key.Equal(m0.Load.Key))
			cm2, _, _ := o.CardManagerMaster(ctx)
			require.NoError(t, cm2.Check())
			require.False(t, cm2.ENC.Equal(cm.ENC))
		})
	}
}

// Two random keyrings never share a key.
func TestInitRandom(t *testing.T) {
	ctx := context.Background()
	_, a := initRing(t, keystore.InitOptions{})
	_, b := initRing(t, keystore.InitOptions{})
	ma, _ := a.Masters(ctx)
	mb, _ := b.Masters(ctx)
	require.False(t, ma.Load.Key.Equal(mb.Load.Key))
	require.NotEqual(t, a.Keys(), b.Keys())
}

// The development keyring holds the keys of docs/purse.md §10.1 (the same
// as host/terminal.DevMasters) and the GP test key as card-manager master.
func TestDevMasters(t *testing.T) {
	ctx := context.Background()
	_, r := initRing(t, keystore.InitOptions{DevMasters: true})
	m, err := r.Masters(ctx)
	require.NoError(t, err)
	dev := terminal.DevMasters()
	for _, pair := range [][2]purse.VersionedKey{{m.Load, dev.Load}, {m.Debit, dev.Debit}, {m.TC, dev.TC}} {
		require.Equal(t, pair[1].Version, pair[0].Version)
		require.True(t, pair[1].Key.Equal(pair[0].Key))
	}
	// docs/purse.md §10.1, independently of host/terminal.
	for _, c := range []struct {
		key  purse.Key
		want string
	}{{m.Load.Key, "101112131415161718191A1B1C1D1E1F"}, {m.Debit.Key, "202122232425262728292A2B2C2D2E2F"}, {m.TC.Key, "303132333435363738393A3B3C3D3E3F"}} {
		require.Equal(t, c.want, strings.ToUpper(hex.EncodeToString(c.key)))
	}
	// and the card keys of CardID 1122334455667788 have the documented KCVs.
	card, err := m.Diversify(purse.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88})
	require.NoError(t, err)
	for _, c := range []struct {
		k    purse.Key
		want string
	}{{card.Load.Key, "D66DEF"}, {card.Debit.Key, "7DF96F"}, {card.TC.Key, "B06093"}} {
		kcv, err := c.k.KCV()
		require.NoError(t, err)
		require.Equal(t, c.want, fmt.Sprintf("%X", kcv))
	}
	cm, kvn, err := r.CardManagerMaster(ctx)
	require.NoError(t, err)
	require.Equal(t, byte(0x01), kvn, "the test key's KVN on a development card (docs/cardmanager.md)")
	for _, k := range []scp03.Key{cm.ENC, cm.MAC, cm.DEK} {
		require.True(t, k.Equal(gpwire.TestKey()))
	}
	require.Contains(t, keystore.DevWarning, "never use it")
	require.Contains(t, r.String(), "DEVELOPMENT")
	_, err = keystore.Init(filepath.Join(t.TempDir(), "k"), testKEK(t), keystore.InitOptions{DevMasters: true, KeyLen: 32})
	require.ErrorIs(t, err, keystore.ErrKeyring)
}

// CardManagerKeys diversifies each card's keys by its KDD (host/gp).
func TestCardManagerKeys(t *testing.T) {
	ctx := context.Background()
	_, r := initRing(t, keystore.InitOptions{})
	src, kvn, err := keystore.CardManagerKeys(ctx, r)
	require.NoError(t, err)
	require.Equal(t, byte(0x30), kvn)
	id := hostgp.CardIdentity{KDD: [10]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
	got, err := src.StaticKeys(ctx, id)
	require.NoError(t, err)
	master, _, err := r.CardManagerMaster(ctx)
	require.NoError(t, err)
	want, err := hostgp.Diversify(master, id.KDD[:])
	require.NoError(t, err)
	require.True(t, want.ENC.Equal(got.ENC) && want.MAC.Equal(got.MAC) && want.DEK.Equal(got.DEK))
	require.False(t, got.ENC.Equal(master.ENC))
}

func TestInitRefusesOverwrite(t *testing.T) {
	p, r := initRing(t, keystore.InitOptions{})
	_, err := keystore.Init(p, testKEK(t), keystore.InitOptions{})
	require.ErrorIs(t, err, keystore.ErrKeyring)
	require.ErrorIs(t, err, fs.ErrExist)
	require.ErrorContains(t, err, "already exists")
	o, err := keystore.OpenKeyring(p, testKEK(t))
	require.NoError(t, err)
	require.Equal(t, r.Keys(), o.Keys(), "the refused Init left the keyring alone")
	f, err := keystore.Init(p, testKEK(t), keystore.InitOptions{Force: true})
	require.NoError(t, err)
	require.NotEqual(t, r.Keys(), f.Keys())
	_, err = keystore.Init(p, keystore.KEK{}, keystore.InitOptions{Force: true})
	require.ErrorIs(t, err, keystore.ErrBadKEK)
	_, err = keystore.Init(filepath.Join(t.TempDir(), "k"), testKEK(t), keystore.InitOptions{KeyLen: 17})
	require.ErrorContains(t, err, "key length 17")
	_, err = keystore.Init(filepath.Join(t.TempDir(), "k"), testKEK(t), keystore.InitOptions{CardManagerVersion: 0x80})
	require.ErrorContains(t, err, "outside 01..7F")
	_, err = keystore.Init(filepath.Join(t.TempDir(), "no", "such", "dir"), testKEK(t), keystore.InitOptions{})
	require.ErrorIs(t, err, keystore.ErrKeyring)
}

func TestOpenWrongKEK(t *testing.T) {
	p, _ := initRing(t, keystore.InitOptions{DevMasters: true})
	_, err := keystore.OpenKeyring(p, keystore.GenerateKEK())
	require.ErrorIs(t, err, keystore.ErrWrongKEK)
	require.ErrorIs(t, err, keystore.ErrUnseal)
	require.ErrorContains(t, err, "the KEK does not open this keyring")
	_, err = keystore.OpenKeyring(p, keystore.KEK{})
	require.ErrorIs(t, err, keystore.ErrBadKEK)
	_, err = keystore.OpenKeyring(filepath.Join(t.TempDir(), "none.json"), testKEK(t))
	require.ErrorIs(t, err, keystore.ErrKeyring)
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// Every edit of a keyring file is caught.
func TestOpenAlteredKeyring(t *testing.T) {
	p, _ := initRing(t, keystore.InitOptions{})
	orig, err := os.ReadFile(p)
	require.NoError(t, err)
	edit := func(fn func(m map[string]any, keys []any)) []byte {
		var m map[string]any
		require.NoError(t, json.Unmarshal(orig, &m))
		fn(m, m["keys"].([]any))
		b, err := json.Marshal(m)
		require.NoError(t, err)
		return b
	}
	entry := func(keys []any, i int) map[string]any { return keys[i].(map[string]any) }
	blob := func(keys []any, i int) []byte {
		b, err := base64.StdEncoding.DecodeString(entry(keys, i)["sealed"].(string))
		require.NoError(t, err)
		return b
	}
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"not json", []byte("{"), "not a keyring file"},
		{"trailing data", append(bytes.Clone(orig), "{}"...), "data after the keyring object"},
		{"unknown field", edit(func(m map[string]any, _ []any) { m["x"] = 1 }), "unknown field"},
		{"format", edit(func(m map[string]any, _ []any) { m["format"] = "valuechip-keyring/9" }), "format"},
		{"kek kcv", edit(func(m map[string]any, _ []any) { m["kek_kcv"] = "XYZ" }), "kek_kcv"},
		{"created", edit(func(m map[string]any, _ []any) { m["created"] = "yesterday" }), "RFC 3339"},
		{"swapped blobs", edit(func(_ map[string]any, k []any) {
			entry(k, 0)["sealed"], entry(k, 1)["sealed"] = entry(k, 1)["sealed"], entry(k, 0)["sealed"]
		}), "does not open"},
		{"swapped labels", edit(func(_ map[string]any, k []any) {
			entry(k, 0)["label"], entry(k, 1)["label"] = entry(k, 1)["label"], entry(k, 0)["label"]
		}), "does not open"},
		{"version edited", edit(func(_ map[string]any, k []any) { entry(k, 0)["version"] = "02" }), "differs from its listed version"},
		{"version bad", edit(func(_ map[string]any, k []any) { entry(k, 0)["version"] = "1" }), "not a hex byte"},
		{"bits edited", edit(func(_ map[string]any, k []any) { entry(k, 0)["bits"] = 256 }), "differs from its listed version or length"},
		{"bits bad", edit(func(_ map[string]any, k []any) { entry(k, 0)["bits"] = 100 }), "bits 100"},
		{"kcv edited", edit(func(_ map[string]any, k []any) { entry(k, 2)["kcv"] = "000000" }), "does not match its listed KCV"},
		{"kcv bad", edit(func(_ map[string]any, k []any) { entry(k, 2)["kcv"] = "00" }), "6 hex digits"},
		{"not base64", edit(func(_ map[string]any, k []any) { entry(k, 0)["sealed"] = "!!" }), "not base64"},
		{"truncated blob", edit(func(_ map[string]any, k []any) {
			entry(k, 0)["sealed"] = base64.StdEncoding.EncodeToString(blob(k, 0)[:20])
		}), "blob of 20 bytes"},
		{"flipped blob", edit(func(_ map[string]any, k []any) {
			b := blob(k, 3)
			b[len(b)-5] ^= 0x80
			entry(k, 3)["sealed"] = base64.StdEncoding.EncodeToString(b)
		}), "does not open"},
		{"unknown label", edit(func(_ map[string]any, k []any) { entry(k, 0)["label"] = "master/other" }), "unknown label"},
		{"missing entry", edit(func(m map[string]any, k []any) { m["keys"] = k[1:] }), `"master/load" missing`},
		{"duplicate entry", edit(func(m map[string]any, k []any) { m["keys"] = append(k, k[0]) }), "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := filepath.Join(t.TempDir(), "keyring.json")
			require.NoError(t, os.WriteFile(q, tc.data, 0o600))
			_, err := keystore.OpenKeyring(q, testKEK(t))
			require.ErrorIs(t, err, keystore.ErrKeyring)
			require.ErrorContains(t, err, tc.msg)
			require.ErrorContains(t, err, q, "errors name the file")
		})
	}
}

func TestKeyringSealReserved(t *testing.T) {
	p, r := initRing(t, keystore.InitOptions{})
	blob, err := r.Seal("tmk/VCTERM01", []byte("0123456789abcdef"))
	require.NoError(t, err)
	o, err := keystore.OpenKeyring(p, testKEK(t))
	require.NoError(t, err)
	got, err := o.Open("tmk/VCTERM01", blob)
	require.NoError(t, err, "blobs outlive the process: any opening of the keyring reads them")
	require.Equal(t, []byte("0123456789abcdef"), got)
	_, err = o.Open("tmk/VCTERM02", blob)
	require.ErrorIs(t, err, keystore.ErrUnseal)
	_, err = r.Seal("keyring/master/load", []byte{1})
	require.ErrorContains(t, err, "reserved")
	// A keyring entry's blob is not something Open hands out.
	var f struct {
		Keys []struct{ Label, Sealed string }
	}
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &f))
	entry, err := base64.StdEncoding.DecodeString(f.Keys[0].Sealed)
	require.NoError(t, err)
	for _, label := range []string{"keyring/" + f.Keys[0].Label, f.Keys[0].Label} {
		_, err = o.Open(label, entry)
		require.ErrorIs(t, err, keystore.ErrUnseal, label)
	}
}

// Neither the keyring file nor any printing of the keyring, its keys or
// its errors shows key bytes.
func TestKeyringNeverPrintsKeys(t *testing.T) {
	ctx := context.Background()
	p, r := initRing(t, keystore.InitOptions{DevMasters: true})
	m, _ := r.Masters(ctx)
	cm, _, _ := r.CardManagerMaster(ctx)
	secrets := []string{kekHex}
	for _, k := range []scp03.Key{m.Load.Key, m.Debit.Key, m.TC.Key, cm.ENC} {
		secrets = append(secrets, hex.EncodeToString(k))
	}
	file, err := os.ReadFile(p)
	require.NoError(t, err)
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("keys", "ring", r, "masters", m, "cm", cm)
	_, errWrong := keystore.OpenKeyring(p, keystore.GenerateKEK())
	bad := filepath.Join(t.TempDir(), "bad.json")
	require.NoError(t, os.WriteFile(bad, bytes.Replace(file, []byte(`"version": "01"`), []byte(`"version": "02"`), 1), 0o600))
	_, errEdited := keystore.OpenKeyring(bad, testKEK(t))
	require.Error(t, errEdited)
	_, errKEK := keystore.ParseKEK([]byte(kekHex[:62]))
	printed := []string{
		string(file), logged.String(),
		fmt.Sprint(r), fmt.Sprintf("%v|%+v|%#v|%s|%q|%x|%X|%d", r, r, r, r, r, r, r, r),
		fmt.Sprintf("%v %#v %x", m, m, m), fmt.Sprintf("%v %#v %x", cm, cm, cm),
		fmt.Sprintf("%v %#v", r.Keys(), r.Keys()),
		fmt.Sprint(errWrong), fmt.Sprint(errEdited), fmt.Sprint(errKEK),
		fmt.Sprintf("%+v", errors.Join(errWrong, errEdited)),
	}
	s, err := keystore.NewSealer(testKEK(t))
	require.NoError(t, err)
	printed = append(printed, fmt.Sprintf("%v %#v %x", s, s, s))
	for _, out := range printed {
		for _, sec := range secrets {
			requireNoSecret(t, out, sec)
		}
	}
	require.Contains(t, fmt.Sprint(r), fmt.Sprintf("KEK KCV %X", testKEK(t).KCV()))
}

// KEK rotation: Rekey reseals the keyring; database blobs sealed under the
// old KEK open while it is passed as previous, and reseal under the new.
func TestRekey(t *testing.T) {
	ctx := context.Background()
	p, r := initRing(t, keystore.InitOptions{})
	oldKEK, newKEK := testKEK(t), keystore.GenerateKEK()
	blob, err := r.Seal("tmk/VCTERM01", []byte("terminal-master!"))
	require.NoError(t, err)

	n, err := keystore.Rekey(p, oldKEK, newKEK)
	require.NoError(t, err)
	require.Equal(t, r.Keys(), n.Keys(), "same keys, versions and KCVs")
	require.Equal(t, r.Created(), n.Created())
	require.Equal(t, newKEK.KCV(), n.KEKKCV())
	m0, _ := r.Masters(ctx)
	m1, _ := n.Masters(ctx)
	require.True(t, m0.TC.Key.Equal(m1.TC.Key))

	_, err = keystore.OpenKeyring(p, oldKEK)
	require.ErrorIs(t, err, keystore.ErrWrongKEK, "the old KEK no longer opens the keyring")
	_, err = n.Open("tmk/VCTERM01", blob)
	require.ErrorIs(t, err, keystore.ErrUnseal, "old blobs need the old KEK")

	both, err := keystore.OpenKeyring(p, newKEK, oldKEK)
	require.NoError(t, err)
	plain, err := both.Open("tmk/VCTERM01", blob)
	require.NoError(t, err)
	resealed, err := both.Seal("tmk/VCTERM01", plain)
	require.NoError(t, err)
	got, err := n.Open("tmk/VCTERM01", resealed)
	require.NoError(t, err)
	require.Equal(t, []byte("terminal-master!"), got)

	_, err = keystore.Rekey(p, oldKEK, keystore.GenerateKEK())
	require.ErrorIs(t, err, keystore.ErrWrongKEK)
	_, err = keystore.Rekey(p, newKEK, keystore.KEK{})
	require.ErrorIs(t, err, keystore.ErrBadKEK)
}
