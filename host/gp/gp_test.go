package gp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/host/gp/gptest"
	"github.com/valuechip/valuechip/reader"
)

func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := apdu.DecodeHex(s)
	require.NoError(t, err)
	return b
}

func keySet(n int, base byte) scp03.StaticKeys {
	mk := func(b byte) scp03.Key {
		k := make(scp03.Key, n)
		for i := range k {
			k[i] = b + byte(i)
		}
		return k
	}
	return scp03.StaticKeys{ENC: mk(base), MAC: mk(base + 0x40), DEK: mk(base + 0x80)}
}

var (
	kdd       = [10]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	purseAID  = []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45}
	purseInst = append(append([]byte{}, purseAID...), 0x01)
	isd       = gpwire.DefaultISDAID()
)

func newCard(t *testing.T, cfg gptest.Config) *gptest.Card {
	t.Helper()
	if cfg.Keys.ENC == nil {
		cfg.Keys = scp03.StaticKeys{ENC: gpwire.TestKey(), MAC: gpwire.TestKey(), DEK: gpwire.TestKey()}
	}
	if cfg.KDD == ([10]byte{}) {
		cfg.KDD = kdd
	}
	c, err := gptest.New(cfg)
	require.NoError(t, err)
	return c
}

// stack is the host transport the CLI uses on a T=0-ish card: GET RESPONSE
// below the secure channel.
func stack(c *gptest.Card) reader.Transceiver { return reader.Stack(c, reader.GetResponse()) }

func open(t *testing.T, c *gptest.Card, cfg Config) *Session {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = TestKeys()
	}
	s, err := Open(context.Background(), stack(c), cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func TestOpenEveryLevelAndKeySize(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		for _, level := range scp03.Levels {
			t.Run(fmt.Sprintf("AES-%d/%s", 8*n, level), func(t *testing.T) {
				keys := keySet(n, 0x10)
				// Chunk forces 61xx: the R-MAC must cover the merged response.
				c := newCard(t, gptest.Config{Keys: keys, Chunk: 24})
				s := open(t, c, Config{Keys: Static(keys), Level: level})
				require.Equal(t, level, s.Level())
				require.Equal(t, byte(0x30), s.CardInfo().KeyInfo.Version)
				info, err := s.Info(context.Background())
				require.NoError(t, err)
				require.NotNil(t, info.CPLC)
				require.Equal(t, [4]byte{6, 7, 8, 9}, info.CPLC.ICSerialNumber)
				require.Equal(t, "2.3.1", info.CardData.VersionString())
				require.Len(t, info.Keys, 3)
				require.Equal(t, n, info.Keys[0].Components[0].Length)
				require.Equal(t, []byte{0x12, 0x34, 0x56}, info.IIN)
				require.Nil(t, info.CIN)
				require.Equal(t, gpwire.CardSecured, info.ISD.LifeCycle)
				require.Equal(t, kdd[:], info.KDD)
				require.Len(t, info.SequenceCounter, 3)

				// Every command after EXTERNAL AUTHENTICATE is protected as
				// the level says.
				for _, cmd := range c.Log()[3:] {
					if level == scp03.LevelNone {
						require.Equal(t, byte(0x80), cmd.Raw[0])
						continue
					}
					require.Equal(t, byte(0x84), cmd.Raw[0])
					require.Equal(t, byte(0x80), cmd.Plain.CLA)
				}
			})
		}
	}
}

func TestOpenWrapsWithStandardISDSelect(t *testing.T) {
	c := newCard(t, gptest.Config{})
	s := open(t, c, Config{Level: scp03.LevelCMAC})
	log := c.Log()
	require.Equal(t, "00A4040008A00000015100000000", fmt.Sprintf("%X", log[0].Raw))
	require.Equal(t, "80500000", fmt.Sprintf("%X", log[1].Raw[:4]))
	require.Equal(t, "84820100", fmt.Sprintf("%X", log[2].Raw[:4]))
	require.Contains(t, s.String(), "A000000151000000")
	require.Contains(t, s.String(), "C-MAC")

	// NoSelect skips SELECT; the explicit KVN goes to P1.
	c.ClearLog()
	_ = open(t, c, Config{Level: scp03.LevelCMAC, NoSelect: true, KeyVersion: 0x30})
	require.Equal(t, "80503000", fmt.Sprintf("%X", c.Log()[0].Raw[:4]))
}

// tamperAt applies f to the response of the n-th command (0-based) the card
// answers from now on.
func tamperAt(c *gptest.Card, n int, f func([]byte) []byte) {
	i := 0
	c.Tamper(func(resp []byte) []byte {
		defer func() { i++ }()
		if i == n {
			return f(resp)
		}
		return resp
	})
}

func TestOpenErrorsSayWhy(t *testing.T) {
	ctx := context.Background()
	wrong := SingleKey(bytes.Repeat([]byte{0x11}, 16))
	tests := []struct {
		name    string
		card    gptest.Config
		cfg     Config
		tamper  func(c *gptest.Card)
		is      []error
		message string
	}{
		{name: "wrong keys", cfg: Config{Keys: wrong, NoChallengeCheck: true}, is: []error{ErrWrongKeys, scp03.ErrBadCryptogram},
			message: "card cryptogram mismatch: wrong keys or key version? the card (key version 30, KDD 00010203040506070809) computed another cryptogram; try --kvn, --key-file"},
		{name: "wrong keys, pseudo-random challenge checked", cfg: Config{Keys: wrong}, is: []error{ErrWrongKeys, scp03.ErrBadCryptogram}, message: "try --kvn, --key-file"},
		{name: "challenge over another AID", card: gptest.Config{ChallengeAID: purseAID}, is: []error{scp03.ErrAuthenticationFailed, scp03.ErrBadChallenge},
			message: "the card cryptogram matches the keys but the pseudo-random card challenge (sequence counter 000001) was not derived over this SD's AID; if the card is known to do that, try --no-challenge-check"},
		{name: "no such key version", cfg: Config{KeyVersion: 0x31}, is: []error{ErrKeyVersion, apdu.ErrRefDataNotFound}, message: "no key set with version 31"},
		{name: "level above i", card: gptest.Config{I: scp03.IPseudoRandom}, cfg: Config{Level: scp03.LevelCMAC | scp03.LevelRMAC},
			is: []error{ErrLevel, scp03.ErrBadLevel}, message: "try --level cdec"},
		{name: "R-ENC above i", card: gptest.Config{I: scp03.IRMAC}, cfg: Config{Level: scp03.LevelAll}, is: []error{ErrLevel}, message: "try --level rmac"},
		{name: "SCP02 card", tamper: func(c *gptest.Card) { tamperAt(c, 1, func(r []byte) []byte { r[11] = 0x02; return r }) },
			is: []error{ErrUnsupportedCard}, message: "SCP02"},
		{name: "S16 i", tamper: func(c *gptest.Card) { tamperAt(c, 1, func(r []byte) []byte { r[12] = 0x71; return r }) },
			is: []error{ErrUnsupportedCard, scp03.ErrUnsupported}, message: "i=71"},
		{name: "host cryptogram refused", tamper: func(c *gptest.Card) { tamperAt(c, 2, func([]byte) []byte { return []byte{0x63, 0x00} }) },
			is: []error{ErrAuthRejected, scp03.ErrAuthenticationFailed}},
		{name: "SD not found", cfg: Config{SD: purseAID}, is: []error{ErrSDNotFound, apdu.ErrFileNotFound}, message: "--sd"},
		{name: "locked", tamper: func(c *gptest.Card) { tamperAt(c, 1, func([]byte) []byte { return []byte{0x69, 0x83} }) },
			is: []error{ErrCardLocked, apdu.ErrAuthBlocked}},
		{name: "key source fails", cfg: Config{Keys: Diversified(scp03.StaticKeys{})}, is: []error{ErrKeys}},
		{name: "bad level", cfg: Config{Level: 0x02}, is: []error{scp03.ErrBadLevel}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCard(t, tc.card)
			if tc.tamper != nil {
				tc.tamper(c)
			}
			if tc.cfg.Keys == nil {
				tc.cfg.Keys = TestKeys()
			}
			_, err := Open(ctx, c, tc.cfg)
			require.Error(t, err)
			for _, e := range tc.is {
				require.ErrorIs(t, err, e)
			}
			require.Contains(t, err.Error(), tc.message)
			require.NotContains(t, err.Error(), "404142434445")
		})
	}
	_, err := Open(ctx, newCard(t, gptest.Config{}), Config{})
	require.ErrorIs(t, err, ErrKeys)

	// The quirk switch accepts a card that derives challenges over
	// another AID.
	s, err := Open(ctx, newCard(t, gptest.Config{ChallengeAID: purseAID}), Config{Keys: TestKeys(), NoChallengeCheck: true})
	require.NoError(t, err)
	s.Close()
}

func TestStoreDataToTheSDItself(t *testing.T) {
	ctx := context.Background()
	c := newCard(t, gptest.Config{})
	s := open(t, c, Config{Level: scp03.LevelCMAC})
	start := len(c.Log())
	require.NoError(t, s.StoreData(ctx, nil, StoreOptions{Format: gpwire.StoreFormatBERTLV}, hx(t, "4503112233"), hx(t, "420155")))
	require.Equal(t, []string{"80E2100005" + "4503112233", "80E2900103" + "420155"}, plainLog(t, c, start))
	require.NoError(t, s.StoreData(ctx, isd, StoreOptions{Format: gpwire.StoreFormatBERTLV}, hx(t, "4503112233")))
	require.Len(t, c.Stored(isd), 3)
	require.Error(t, s.StoreData(ctx, nil, StoreOptions{EncryptDGIs: true}, hx(t, "4503112233")))
	require.Error(t, s.StoreData(ctx, nil, StoreOptions{Format: 0x01}, hx(t, "00")))
	require.ErrorIs(t, s.StoreData(ctx, nil, StoreOptions{Format: gpwire.StoreFormatDGI, EncryptDGIs: true}, hx(t, "4503")), gpwire.ErrMalformed)
}

func TestTamperedResponseMACRefused(t *testing.T) {
	for _, level := range []scp03.SecurityLevel{scp03.LevelCMAC | scp03.LevelRMAC, scp03.LevelAll} {
		t.Run(level.String(), func(t *testing.T) {
			c := newCard(t, gptest.Config{})
			s := open(t, c, Config{Level: level})
			tamperAt(c, 0, func(r []byte) []byte { r[len(r)-3] ^= 0x01; return r }) // last R-MAC byte
			_, err := s.Info(context.Background())
			require.ErrorIs(t, err, scp03.ErrBadMAC)
			require.Contains(t, err.Error(), "session is aborted")
			// The session is gone: nothing more goes out.
			c.Tamper(nil)
			n := len(c.Log())
			_, err = s.List(context.Background())
			require.ErrorIs(t, err, ErrSessionClosed)
			require.Len(t, c.Log(), n)
		})
	}
	// Below R-MAC the response is not authenticated: tampering the data
	// goes unnoticed by the channel (the caller sees odd data).
	c := newCard(t, gptest.Config{})
	s := open(t, c, Config{Level: scp03.LevelCMAC})
	tamperAt(c, 0, func(r []byte) []byte { r[5] ^= 0x01; return r })
	_, err := s.Info(context.Background())
	require.NoError(t, err)
}

// plainLog returns the cleartext commands of the card's log from index i,
// encoded.
func plainLog(t *testing.T, c *gptest.Card, from int) []string {
	t.Helper()
	var out []string
	for _, cmd := range c.Log()[from:] {
		b, err := cmd.Plain.Bytes()
		require.NoError(t, err)
		out = append(out, fmt.Sprintf("%X", b))
	}
	return out
}

func nospace(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ReplaceAll(s, " ", "")
	}
	return out
}

func purseManifest() gpwire.Manifest {
	var d [32]byte
	for i := range d {
		d[i] = 0xD0 + byte(i%16)
	}
	return gpwire.Manifest{PackageAID: purseAID, Version: [2]byte{1, 0}, Modules: []gpwire.ModuleRef{{AID: purseInst, Digest: d}}}
}

func modules(m gpwire.Manifest) map[string][32]byte {
	out := map[string][32]byte{}
	for _, mod := range m.Modules {
		out[string(mod.AID)] = mod.Digest
	}
	return out
}

func TestOperationAPDUs(t *testing.T) {
	ctx := context.Background()
	for _, level := range []scp03.SecurityLevel{scp03.LevelNone, scp03.LevelCMAC | scp03.LevelCDEC, scp03.LevelAll} {
		t.Run(level.String(), func(t *testing.T) {
			m := purseManifest()
			c := newCard(t, gptest.Config{Modules: modules(m), Chunk: 64})
			s := open(t, c, Config{Level: level})
			start := len(c.Log())

			file, err := gpwire.BuildLoadFile(m)
			require.NoError(t, err)
			require.NoError(t, s.LoadAndInstall(ctx, file, LoadOptions{}, InstallSpec{}))
			h := gpwire.DataBlockHash(file[2:])
			got := plainLog(t, c, start)
			require.Equal(t, nospace([]string{
				fmt.Sprintf("80E6020037 0AF0000000015055525345 08A000000151000000 20%X 00 00 00", h),
				fmt.Sprintf("80E88000%02X%X00", len(file), file),
				"80E60C00290AF00000000150555253450BF0000000015055525345010BF000000001505552534501010002C9000000", // protocols.md §3.7
			}), got)

			// Personalisation with DGIs encrypted under Key-DEK (the test key).
			start = len(c.Log())
			dgis, err := gpwire.EncodeDGIs(gpwire.DGI{Tag: 0x8001, Data: hx(t, "0102030405")})
			require.NoError(t, err)
			require.NoError(t, s.StoreData(ctx, purseInst, StoreOptions{Format: gpwire.StoreFormatDGI, EncryptDGIs: true}, dgis))
			require.Equal(t, []string{
				"80E62000110000" + "0BF000000001505552534501" + "00000000", // protocols.md §3.7
				"80E2E8001380011" + "0D82F1DFAC021347321E7370276A8DD74",    // python: AES-CBC(DEK, 0, DGI||80 00..)
			}, plainLog(t, c, start))
			require.Equal(t, [][]byte{dgis}, c.Stored(purseInst))

			// Lock, unlock, card life cycle.
			start = len(c.Log())
			require.NoError(t, s.Lock(ctx, purseInst))
			apps, _ := c.Registry()
			require.Equal(t, byte(0x87), apps[0].LifeCycle)
			require.NoError(t, s.Unlock(ctx, purseInst))
			require.NoError(t, s.SetCardLifeCycle(ctx, gpwire.CardLocked))
			require.Equal(t, gpwire.CardLocked, c.LifeCycle())
			require.Equal(t, []string{
				"80F040800BF000000001505552534501",
				"80F040000BF000000001505552534501",
				"80F0807F08A000000151000000",
			}, plainLog(t, c, start))

			// PUT KEY: add key set 31 (keys from Amd D-style test values),
			// encrypted with the current Key-DEK, the test key.
			start = len(c.Log())
			newKeys := scp03.StaticKeys{
				ENC: hx(t, "000102030405060708090A0B0C0D0E0F"),
				MAC: hx(t, "101112131415161718191A1B1C1D1E1F"),
				DEK: hx(t, "202122232425262728292A2B2C2D2E2F"),
			}
			require.NoError(t, s.PutKeys(ctx, 0x31, 0x00, newKeys))
			require.Equal(t, []string{"80D800814631" +
				"8811103D0FA4B855D2A5AA4954B8B5DF582A3A03C35280" +
				"881110790ACCDA858B997029FA9AE50C9CD02803013808" +
				"8811108CAA7F589AA0CEB6350A45E70A6E435B03840DE5" + "00"}, plainLog(t, c, start))
			require.Len(t, c.KeySets(), 2)

			// DELETE the package and its instance (protocols.md §3.7).
			start = len(c.Log())
			require.NoError(t, s.Delete(ctx, purseAID, true))
			require.Equal(t, []string{"80E400800C4F0AF000000001505552534500"}, plainLog(t, c, start))
			apps, files := c.Registry()
			require.Empty(t, apps)
			require.Empty(t, files)

			// The new key set opens a session.
			s.Close()
			s2 := open(t, c, Config{Keys: Static(newKeys), KeyVersion: 0x31, Level: level})
			require.Equal(t, byte(0x31), s2.CardInfo().KeyInfo.Version)
		})
	}
}

func TestListWithContinuation(t *testing.T) {
	ctx := context.Background()
	m := purseManifest()
	for i := 2; i < 8; i++ {
		var d [32]byte
		d[0] = byte(i)
		m.Modules = append(m.Modules, gpwire.ModuleRef{AID: append(bytes.Clone(purseAID), byte(i)), Digest: d})
	}
	c := newCard(t, gptest.Config{Modules: modules(m), PageSize: 130})
	s := open(t, c, Config{Level: scp03.LevelAll})
	file, err := gpwire.BuildLoadFile(m)
	require.NoError(t, err)
	var specs []InstallSpec
	for _, mod := range m.Modules {
		specs = append(specs, InstallSpec{ModuleAID: mod.AID, Privileges: []byte{0, 0, 0}})
	}
	require.NoError(t, s.LoadAndInstall(ctx, file, LoadOptions{BlockSize: 100}, specs...))
	start := len(c.Log())
	reg, err := s.List(ctx)
	require.NoError(t, err)
	require.Equal(t, isd, reg.ISD.AID)
	require.Len(t, reg.Applications, 7)
	require.Len(t, reg.LoadFiles, 1)
	require.Len(t, reg.LoadFiles[0].Modules, 7)
	require.Equal(t, []byte{1, 0}, reg.LoadFiles[0].Version)
	for i, a := range reg.Applications {
		require.Equal(t, m.Modules[i].AID, a.AID)
		require.Equal(t, gpwire.AppSelectable, a.LifeCycle)
		require.Equal(t, purseAID, a.LoadFileAID)
	}
	// 7 applications of 46 bytes in 130-byte pages: P2 02, then 03 until
	// 9000.
	var statusP2 []byte
	for _, cmd := range c.Log()[start:] {
		if cmd.Plain.INS == gpwire.INSGetStatus && cmd.Plain.P1 == gpwire.StatusApplications {
			statusP2 = append(statusP2, cmd.Plain.P2)
		}
	}
	require.Equal(t, []byte{2, 3, 3, 3}, statusP2)

	// An empty card lists nothing, without error.
	s2 := open(t, newCard(t, gptest.Config{}), Config{})
	reg, err = s2.List(ctx)
	require.NoError(t, err)
	require.Empty(t, reg.Applications)
	require.Empty(t, reg.LoadFiles)
}

func TestLoadAndInstallChecks(t *testing.T) {
	ctx := context.Background()
	m := purseManifest()
	file, err := gpwire.BuildLoadFile(m)
	require.NoError(t, err)

	// Problems the host can see are reported before anything is sent.
	c := newCard(t, gptest.Config{Modules: modules(m)})
	s := open(t, c, Config{Level: scp03.LevelCMAC})
	n := len(c.Log())
	err = s.LoadAndInstall(ctx, file, LoadOptions{}, InstallSpec{ModuleAID: purseAID})
	require.ErrorContains(t, err, "module F0000000015055525345 is not in the load file (it names F000000001505552534501)")
	err = s.LoadAndInstall(ctx, []byte{0xC4, 0x01, 0x00}, LoadOptions{})
	require.ErrorIs(t, err, gpwire.ErrMalformed)
	err = s.LoadAndInstall(ctx, file, LoadOptions{}, InstallSpec{Privileges: []byte{1, 2}})
	require.ErrorIs(t, err, gpwire.ErrMalformed)
	require.Len(t, c.Log(), n)

	// A digest the chip does not have: the card refuses with 6A80.
	other := purseManifest()
	other.Modules[0].Digest[0] ^= 1
	bad, err := gpwire.BuildLoadFile(other)
	require.NoError(t, err)
	err = s.LoadAndInstall(ctx, bad, LoadOptions{})
	require.ErrorIs(t, err, ErrRefused)
	require.ErrorIs(t, err, apdu.ErrWrongData)
	require.Contains(t, err.Error(), "LOAD block 1 of 1: card answered 6A80")
	require.Contains(t, err.Error(), "wrong digest")

	// Install of an unknown package, delete of an unknown AID: 6A88.
	err = s.Install(ctx, InstallSpec{LoadFileAID: purseAID, ModuleAID: purseInst})
	require.ErrorIs(t, err, ErrNotFound)
	err = s.Delete(ctx, purseAID, false)
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, err, apdu.ErrRefDataNotFound)
	require.Contains(t, err.Error(), "valuechip gp list")
	var ce *CommandError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, apdu.ErrRefDataNotFound, ce.SW)

	// Load, install, then a plain DELETE of the package is refused while
	// its instance exists.
	require.NoError(t, s.LoadAndInstall(ctx, file, LoadOptions{}, InstallSpec{}))
	err = s.Delete(ctx, purseAID, false)
	require.ErrorIs(t, err, ErrConditions)
	require.NoError(t, s.Delete(ctx, purseInst, false))
	require.NoError(t, s.Delete(ctx, purseAID, false))
}

func TestDAP(t *testing.T) {
	ctx := context.Background()
	m := purseManifest()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	c := newCard(t, gptest.Config{Modules: modules(m), RequireDAP: true})
	s := open(t, c, Config{Level: scp03.LevelCMAC | scp03.LevelCDEC})

	// Without the key on the card, or without a DAP, loading fails.
	plain, err := gpwire.BuildLoadFile(m)
	require.NoError(t, err)
	require.ErrorIs(t, s.LoadAndInstall(ctx, plain, LoadOptions{}), ErrSecurityStatus)

	start := len(c.Log())
	require.NoError(t, s.PutDAPKey(ctx, gpwire.DAPKeyVersion, 0, &priv.PublicKey))
	require.True(t, c.DAPKey().Equal(&priv.PublicKey))
	require.Equal(t, "80D8000149", plainLog(t, c, start)[0][:10])

	block, err := m.Bytes()
	require.NoError(t, err)
	sig, err := gpwire.SignDAP(priv, block)
	require.NoError(t, err)
	signed, err := gpwire.BuildLoadFile(m, gpwire.DAPBlock{SecurityDomainAID: isd, Signature: sig})
	require.NoError(t, err)
	require.ErrorIs(t, s.LoadAndInstall(ctx, plain, LoadOptions{}), ErrSecurityStatus)
	require.NoError(t, s.LoadAndInstall(ctx, signed, LoadOptions{}, InstallSpec{}))

	// Omitting the hash is refused by a card that requires DAP.
	require.NoError(t, s.Delete(ctx, purseAID, true))
	require.ErrorIs(t, s.LoadAndInstall(ctx, signed, LoadOptions{OmitHash: true}), ErrConditions)
}

func TestPutKeysChecksTheCardsAnswer(t *testing.T) {
	ctx := context.Background()
	c := newCard(t, gptest.Config{})
	s := open(t, c, Config{Level: scp03.LevelCMAC})
	keys := keySet(16, 0x55)
	tamperAt(c, 0, func(r []byte) []byte {
		r[1] ^= 0xFF // first KCV byte
		return r
	})
	err := s.PutKeys(ctx, 0x31, 0, keys)
	require.ErrorIs(t, err, gpwire.ErrBadKCV)
	require.NotContains(t, err.Error(), fmt.Sprintf("%X", []byte(keys.ENC)))
	c.Tamper(nil)

	// The card refuses a replacement of a key version it does not have.
	err = s.PutKeys(ctx, 0x33, 0x32, keys)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = gpwire.PutKeyAES(0x31, 0, keys, nil)
	require.Error(t, err)
	require.ErrorIs(t, s.PutKeys(ctx, 0x80, 0, keys), gpwire.ErrMalformed)

	// DeleteKeys removes a key set.
	require.NoError(t, s.DeleteKeys(ctx, 0x31))
	require.ErrorIs(t, s.DeleteKeys(ctx, 0x31), ErrNotFound)
}

// Traces at the wire must not show keys, key ciphertexts or STORE DATA.
func TestTraceMasksSecrets(t *testing.T) {
	ctx := context.Background()
	m := purseManifest()
	for _, level := range []scp03.SecurityLevel{scp03.LevelNone, scp03.LevelCMAC} {
		c := newCard(t, gptest.Config{Modules: modules(m)})
		var trace bytes.Buffer
		wire := reader.Stack(c, reader.Trace(&trace, reader.TraceNames()))
		s, err := Open(ctx, wire, Config{Keys: TestKeys(), Level: level})
		require.NoError(t, err)
		file, err := gpwire.BuildLoadFile(m)
		require.NoError(t, err)
		require.NoError(t, s.LoadAndInstall(ctx, file, LoadOptions{}, InstallSpec{}))
		newKeys := keySet(16, 0x21)
		require.NoError(t, s.PutKeys(ctx, 0x31, 0, newKeys))
		require.NoError(t, s.StoreData(ctx, purseInst, StoreOptions{Format: gpwire.StoreFormatNone}, []byte("SECRET-PERSO-DATA")))
		s.Close()
		out := trace.String()
		require.Contains(t, out, "PUT KEY")
		for _, secret := range [][]byte{newKeys.ENC, newKeys.MAC, newKeys.DEK, gpwire.TestKey(), []byte("SECRET-PERSO-DATA")} {
			require.NotContains(t, out, fmt.Sprintf("%X", secret))
		}
		// The encrypted key is not shown either.
		kc, err := gpwire.EncryptAESKey(gpwire.TestKey(), newKeys.ENC)
		require.NoError(t, err)
		require.NotContains(t, out, fmt.Sprintf("%X", kc.Value[1:]))
	}
}

func TestSessionPrintsNoKeys(t *testing.T) {
	c := newCard(t, gptest.Config{})
	s := open(t, c, Config{Level: scp03.LevelAll})
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q"} {
		out := fmt.Sprintf(f, s)
		require.NotContains(t, strings.ToUpper(out), "404142434445", f)
		require.Contains(t, out, "SCP03 session", f)
	}
	src := TestKeys()
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		require.NotContains(t, strings.ToUpper(fmt.Sprintf(f, src)), "404142434445", f)
	}
	require.Contains(t, fmt.Sprint(src), "504A77")
	div := Diversified(scp03.StaticKeys{ENC: gpwire.TestKey(), MAC: gpwire.TestKey(), DEK: gpwire.TestKey()})
	require.NotContains(t, strings.ToUpper(fmt.Sprintf("%#v", div)), "404142434445")
}

func TestCommandErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		sw    apdu.SW
		class error
	}{
		{0x6A88, ErrNotFound}, {0x6A82, ErrNotFound}, {0x6982, ErrSecurityStatus}, {0x6985, ErrConditions},
		{0x6A84, ErrNoMemory}, {0x6581, ErrNoMemory}, {0x6A80, ErrRefused}, {0x6A86, ErrRefused},
	} {
		err := error(&CommandError{Op: "X", SW: tc.sw})
		require.ErrorIs(t, err, tc.class)
		require.ErrorIs(t, err, tc.sw)
	}
	err := error(&CommandError{Op: "DELETE A000000001", SW: 0x6F00})
	require.Equal(t, "DELETE A000000001: card answered 6F00 (no precise diagnosis)", err.Error())
	require.False(t, errors.Is(err, ErrNotFound))
	require.Contains(t, (&CommandError{Op: "X", SW: 0x6982}).Error(), "security status not satisfied")
}
