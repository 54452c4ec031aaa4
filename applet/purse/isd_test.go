package purse_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/cardmanager"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/purse"
)

// TestThroughCardManager installs and personalises the purse the way an
// issuer does (docs/purse.md §2, §8): a card with the issuer security
// domain only, an SCP03 channel at security level 33, INSTALL [for load],
// LOAD of the manifest, INSTALL [for install and make selectable],
// INSTALL [for personalization] and the STORE DATA blocks — then a load
// and a debit.
func TestThroughCardManager(t *testing.T) {
	params := cardmanager.DefaultParams()
	c, err := profile.Build(&profile.Profile{ISD: &params, Serial: []byte{1, 2, 3, 4, 5, 6, 7, 8}}, chip.WithModules(purse.Module))
	require.NoError(t, err)
	c.PowerOn()
	k := &card{t: t, c: c, id: cardID}

	host, err := scp03.NewHost(scp03.HostConfig{Keys: params.KeySets[0].Keys, Level: scp03.LevelAll, AID: profile.ISDAID})
	require.NoError(t, err)
	_, sw := k.send(gp.Select(profile.ISDAID))
	require.Equal(t, apdu.SWNoError, sw)
	iu, err := host.InitializeUpdate()
	require.NoError(t, err)
	ea, err := host.ExternalAuthenticate(k.raw(mustBytes(t, iu)))
	require.NoError(t, err)
	require.NoError(t, host.Complete(k.raw(mustBytes(t, ea))))
	secure := func(cmd apdu.Command, err error) apdu.SW {
		t.Helper()
		require.NoError(t, err)
		w, err := host.Wrap(cmd)
		require.NoError(t, err)
		out, err := host.Unwrap(k.raw(mustBytes(t, w)))
		require.NoError(t, err)
		rsp, err := apdu.ParseResponse(out)
		require.NoError(t, err)
		return rsp.SW
	}

	m := gp.Manifest{PackageAID: purse.PackageAID, Version: [2]byte{1, 0}, Modules: []gp.ModuleRef{{AID: purse.ModuleAID, Digest: purse.Module.Digest()}}}
	block, err := m.Bytes()
	require.NoError(t, err)
	file, err := gp.LoadFile{DataBlock: block}.Bytes()
	require.NoError(t, err)
	hash := gp.DataBlockHash(block)
	require.Equal(t, apdu.SWNoError, secure(gp.Install{P1: gp.InstallForLoad, LoadFileAID: purse.PackageAID, LoadFileDataBlockHash: hash[:]}.Command()))
	loads, err := gp.LoadBlocks(file, 64)
	require.NoError(t, err)
	for _, l := range loads {
		require.Equal(t, apdu.SWNoError, secure(l, nil))
	}
	ip, err := gp.InstallParams{}.Bytes()
	require.NoError(t, err)
	require.Equal(t, apdu.SWNoError, secure(gp.Install{P1: gp.InstallForInstall | gp.InstallForMakeSelectable, LoadFileAID: purse.PackageAID,
		ModuleAID: purse.ModuleAID, ApplicationAID: purse.AID, Privileges: []byte{0}, Parameters: ip}.Command()))

	// Before personalisation the purse answers 6985.
	_, sw = k.send(wire.Select(purse.AID))
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(wire.GetPurseData())
	require.Equal(t, apdu.ErrConditionsNotMet, sw)

	_, sw = k.send(gp.Select(profile.ISDAID))
	require.Equal(t, apdu.SWNoError, sw)
	iu, err = host.InitializeUpdate()
	require.NoError(t, err)
	ea, err = host.ExternalAuthenticate(k.raw(mustBytes(t, iu)))
	require.NoError(t, err)
	require.NoError(t, host.Complete(k.raw(mustBytes(t, ea))))
	require.Equal(t, apdu.SWNoError, secure(gp.Install{P1: gp.InstallForPersonalization, ApplicationAID: purse.AID}.Command()))
	p := personalization(t, cardID, testLimits)
	stores, err := p.StoreData()
	require.NoError(t, err)
	for _, s := range stores {
		require.Equal(t, apdu.SWNoError, secure(s, nil))
	}

	k.keys = p.Keys
	fci := k.mustSelect()
	require.Equal(t, wire.StateActive, fci.LifeCycle)
	require.Equal(t, cardID, fci.CardID)
	_, sw = k.load(5000)
	require.Equal(t, apdu.SWNoError, sw)
	r, sw := k.debit(1234)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, uint32(5000-1234), r.BalanceAfter)
}

// A purse with AES-256 masters (and so AES-256 card and session keys).
func TestAES256Keys(t *testing.T) {
	big := wire.Keys{
		Load:  wire.VersionedKey{Version: 0x21, Key: append(seq(0x40), seq(0x50)...)},
		Debit: wire.VersionedKey{Version: 0x22, Key: append(seq(0x60), seq(0x70)...)},
		TC:    wire.VersionedKey{Version: 0x23, Key: append(seq(0x80), seq(0x90)...)},
	}
	keys, err := big.Diversify(cardID)
	require.NoError(t, err)
	require.Len(t, keys.TC.Key, 32)
	c := newInstalledChip(t)
	p := wire.Personalization{CardID: cardID, Currency: eur, Limits: testLimits, Keys: keys, PIN: mustPIN("123456789012"), PINTries: 15}
	personalize(t, c, p)
	k := &card{t: t, c: c, id: cardID, keys: keys}
	require.Equal(t, [3]byte{0x21, 0x22, 0x23}, k.mustSelect().KeyVersions)
	_, sw := k.send(wire.InitializeLoad{KeyVersion: 1, Amount: 1, Currency: eur}.Command())
	require.Equal(t, apdu.ErrReferenceUnusable, sw)
	// The helpers use key version 1; send version 0x21 / 0x22 by hand.
	hn := wire.Nonce{1}
	data, sw := k.send(wire.InitializeLoad{KeyVersion: 0x21, Amount: 700, Currency: eur, TerminalID: terminalID, HostNonce: hn}.Command())
	require.Equal(t, apdu.SWNoError, sw)
	il, err := wire.ParseInitializeLoadResponse(data)
	require.NoError(t, err)
	sk, err := wire.LoadSessionKey(keys.Load.Key, cardID, il.ATC, il.CardNonce, hn)
	require.NoError(t, err)
	require.Len(t, sk, 32)
	d := wire.LoadData{CardID: cardID, ATC: il.ATC, Amount: 700, Currency: eur, Balance: 0, TerminalID: terminalID, DateTime: testDate, AuthRef: 1}
	s1, err := wire.ComputeS1(sk, d)
	require.NoError(t, err)
	require.Equal(t, s1, il.S1)
	s2, err := wire.ComputeS2(sk, d, s1)
	require.NoError(t, err)
	_, sw = k.send(wire.CreditLoad{DateTime: testDate, AuthRef: 1, S2: s2}.Command())
	require.Equal(t, apdu.SWNoError, sw)
	rec, sw := k.proof(1)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, uint32(700), rec.BalanceAfter)
	require.Equal(t, apdu.SW(0x63CE), k.verifyPIN("123456789010"), "15 tries")
}
