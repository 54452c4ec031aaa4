package cardmanager_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/cardmanager"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
)

// These tests run the ISD inside the real runtime (applet/chip), built the
// way applet/profile builds cards, and drive it with raw APDUs.

var (
	purseFile   = []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45}
	purseModule = []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45, 0x00}
	purseApp    = []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01}
)

// purse is a minimal personalisable applet: STORE DATA appends to a
// record, 80 01 reads it back.
type purse struct{}

var purseMod = applet.Module{AID: purseModule, Name: "chip test purse", Version: "1.0",
	New: func(env applet.Env, params []byte) (applet.Applet, error) { return purse{}, nil }}

func (purse) Select(applet.Env, apdu.Command) ([]byte, apdu.SW) { return nil, apdu.SWNoError }
func (purse) Deselect(applet.Env)                               {}
func (purse) Process(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.INS == 0x01 {
		v, _ := env.Memory().Get("perso")
		return v, apdu.SWNoError
	}
	return nil, apdu.ErrINSNotSupported
}

func (purse) StoreData(env applet.Env, p1, p2 byte, data []byte) ([]byte, apdu.SW) {
	v, _ := env.Memory().Get("perso")
	if err := env.Memory().Put("perso", append(v, data...)); err != nil {
		return nil, applet.StatusOf(err)
	}
	return nil, apdu.SWNoError
}

type card struct {
	t    testing.TB
	c    *chip.Chip
	host *scp03.Host
	keys scp03.StaticKeys
}

func newCard(t testing.TB, p cardmanager.Params) *card {
	t.Helper()
	c, err := profile.Build(&profile.Profile{ISD: &p, Serial: []byte{1, 2, 3, 4, 5, 6, 7, 8}}, chip.WithModules(purseMod))
	require.NoError(t, err)
	c.PowerOn()
	return &card{t: t, c: c, keys: p.KeySets[0].Keys}
}

func (k *card) raw(b []byte) []byte {
	k.t.Helper()
	return k.c.Transmit(b)
}

func (k *card) send(cmd apdu.Command) ([]byte, apdu.SW) {
	k.t.Helper()
	b, err := cmd.Bytes()
	require.NoError(k.t, err)
	rsp, err := apdu.ParseResponse(k.raw(b))
	require.NoError(k.t, err)
	return rsp.Data, rsp.SW
}

func (k *card) open(keys scp03.StaticKeys, kvn byte, level scp03.SecurityLevel) error {
	h, err := scp03.NewHost(scp03.HostConfig{Keys: keys, KeyVersion: kvn, Level: level, AID: profile.ISDAID})
	require.NoError(k.t, err)
	iu, err := h.InitializeUpdate()
	require.NoError(k.t, err)
	b, _ := iu.Bytes()
	ea, err := h.ExternalAuthenticate(k.raw(b))
	if err != nil {
		return err
	}
	b, _ = ea.Bytes()
	if err := h.Complete(k.raw(b)); err != nil {
		return err
	}
	k.host = h
	return nil
}

func (k *card) secure(cmd apdu.Command) ([]byte, apdu.SW) {
	k.t.Helper()
	w, err := k.host.Wrap(cmd)
	require.NoError(k.t, err)
	b, err := w.Bytes()
	require.NoError(k.t, err)
	out, err := k.host.Unwrap(k.raw(b))
	require.NoError(k.t, err)
	rsp, err := apdu.ParseResponse(out)
	require.NoError(k.t, err)
	return rsp.Data, rsp.SW
}

func cmdOf(c apdu.Command, err error) apdu.Command {
	if err != nil {
		panic(err)
	}
	return c
}

func purseLoadFile(t testing.TB) (file, hash []byte) {
	m := gp.Manifest{PackageAID: purseFile, Version: [2]byte{1, 0}, Modules: []gp.ModuleRef{{AID: purseModule, Digest: purseMod.Digest()}}}
	block, err := m.Bytes()
	require.NoError(t, err)
	file, err = gp.LoadFile{DataBlock: block}.Bytes()
	require.NoError(t, err)
	h := gp.DataBlockHash(block)
	return file, h[:]
}

func TestChipHappyPath(t *testing.T) {
	for _, level := range []scp03.SecurityLevel{scp03.LevelCMAC, scp03.LevelAll} {
		k := newCard(t, cardmanager.DefaultParams())
		// The ISD is the default application: SELECT without AID finds it.
		fci, sw := k.send(gp.Select(nil))
		require.Equal(t, apdu.SWNoError, sw)
		require.True(t, bytes.HasPrefix(fci, append([]byte{0x6F, 0x41, 0x84, 0x08}, profile.ISDAID...)), "%X", fci)
		cplc, sw := k.send(gp.GetData(gp.TagCPLC))
		require.Equal(t, apdu.SWNoError, sw)
		require.Len(t, cplc, 45)
		require.NoError(t, k.open(k.keys, 0, level))

		file, hash := purseLoadFile(t)
		data, sw := k.secure(cmdOf(gp.Install{P1: gp.InstallForLoad, LoadFileAID: purseFile, LoadFileDataBlockHash: hash}.Command()))
		require.Equal(t, apdu.SWNoError, sw)
		require.Equal(t, []byte{0x00}, data)
		blocks, err := gp.LoadBlocks(file, 24)
		require.NoError(t, err)
		for _, b := range blocks {
			_, sw = k.secure(b)
			require.Equal(t, apdu.SWNoError, sw)
		}
		params, _ := gp.InstallParams{}.Bytes()
		_, sw = k.secure(cmdOf(gp.Install{P1: gp.InstallForInstall | gp.InstallForMakeSelectable, LoadFileAID: purseFile,
			ModuleAID: purseModule, ApplicationAID: purseApp, Privileges: []byte{0}, Parameters: params}.Command()))
		require.Equal(t, apdu.SWNoError, sw)

		status, sw := k.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusApplications}.Command()))
		require.Equal(t, apdu.SWNoError, sw)
		entries, err := gp.ParseStatus(status)
		require.NoError(t, err)
		var found bool
		for _, e := range entries {
			if bytes.Equal(e.AID, purseApp) {
				found = true
				require.Equal(t, applet.AppSelectable, e.LifeCycle)
				require.Equal(t, purseFile, e.LoadFileAID)
				require.Equal(t, profile.ISDAID, e.SecurityDomainAID)
			}
		}
		require.True(t, found, "%X", status)

		// Personalisation through the ISD.
		_, sw = k.secure(cmdOf(gp.Install{P1: gp.InstallForPersonalization, ApplicationAID: purseApp}.Command()))
		require.Equal(t, apdu.SWNoError, sw)
		stores, err := gp.StoreDataCommands(gp.StoreFormatDGI, []byte{0x01, 0x01, 0x01, 0xAA}, []byte{0x01, 0x02, 0x01, 0xBB})
		require.NoError(t, err)
		for _, s := range stores {
			_, sw = k.secure(s)
			require.Equal(t, apdu.SWNoError, sw)
		}

		// Key rotation: replace the test key set, then authenticate with the new one.
		newKeys := scp03.StaticKeys{ENC: bytes.Repeat([]byte{0x11}, 16), MAC: bytes.Repeat([]byte{0x22}, 16), DEK: bytes.Repeat([]byte{0x33}, 16)}
		pk, err := gp.PutKeyAES(0x02, cardmanager.DefaultKeyVersion, newKeys, k.keys.DEK)
		require.NoError(t, err)
		data, sw = k.secure(cmdOf(pk.Command()))
		require.Equal(t, apdu.SWNoError, sw)
		require.Equal(t, pk.Expected().Bytes(), data)

		// The purse is selectable and personalised.
		_, sw = k.send(gp.Select(purseApp))
		require.Equal(t, apdu.SWNoError, sw)
		data, sw = k.send(apdu.Command{CLA: 0x80, INS: 0x01, Ne: 256})
		require.Equal(t, apdu.SWNoError, sw)
		require.Equal(t, []byte{0x01, 0x01, 0x01, 0xAA, 0x01, 0x02, 0x01, 0xBB}, data)

		// Back to the ISD: the old keys are gone, the new ones work.
		_, sw = k.send(gp.Select(profile.ISDAID))
		require.Equal(t, apdu.SWNoError, sw)
		require.Error(t, k.open(k.keys, 0, level))
		require.NoError(t, k.open(newKeys, 0x02, level))

		// Lock the card: only the ISD answers, with 6283.
		_, sw = k.secure(gp.SetStatus(gp.SetStatusISD, applet.CardLocked, profile.ISDAID))
		require.Equal(t, apdu.SWNoError, sw)
		_, sw = k.send(gp.Select(purseApp))
		require.Equal(t, apdu.ErrFileNotFound, sw)
		_, sw = k.send(gp.Select(profile.ISDAID))
		require.Equal(t, apdu.ErrSelectedDeactivated, sw)
		require.NoError(t, k.open(newKeys, 0x02, level))
		_, sw = k.secure(gp.SetStatus(gp.SetStatusISD, applet.CardSecured, nil))
		require.Equal(t, apdu.SWNoError, sw)

		// Delete the package and its instance.
		_, sw = k.secure(cmdOf(gp.Delete{AID: purseFile}.Command(true)))
		require.Equal(t, apdu.SWNoError, sw)
		_, sw = k.send(gp.Select(purseApp))
		require.Equal(t, apdu.ErrFileNotFound, sw)
	}
}

// TestChipSequenceCounterSurvivesTear cuts power right after INITIALIZE
// UPDATE's persistent write: the card never answers, but the counter has
// moved, so the next challenge is a new one (Amd D §6.2.2.1).
func TestChipSequenceCounterSurvivesTear(t *testing.T) {
	k := newCard(t, cardmanager.DefaultParams())
	iu := apdu.Command{CLA: 0x80, INS: 0x50, Data: make([]byte, 8), Ne: 256}
	b, _ := iu.Bytes()
	k.c.TearAfter(1)
	require.Nil(t, k.raw(b))
	k.c.PowerOn()
	rsp, err := apdu.ParseResponse(k.raw(b))
	require.NoError(t, err)
	require.Equal(t, apdu.SWNoError, rsp.SW)
	r, err := scp03.ParseInitializeUpdateResponse(rsp.Data)
	require.NoError(t, err)
	require.Equal(t, uint32(2), r.Sequence)
	want, err := scp03.PseudoRandomChallenge(k.keys.ENC, 2, profile.ISDAID)
	require.NoError(t, err)
	require.Equal(t, want, r.CardChallenge)
	// The host checks the same.
	require.NoError(t, k.open(k.keys, 0, scp03.LevelCMAC))
	data, sw := k.secure(gp.GetData(0xC1))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, []byte{0xC1, 0x03, 0x00, 0x00, 0x03}, data)
}

// TestChipPutKeyTear cuts power at every persistent write of PUT KEY
// (replace): afterwards exactly one of the old and the new key set works.
func TestChipPutKeyTear(t *testing.T) {
	newKeys := scp03.StaticKeys{ENC: bytes.Repeat([]byte{0x44}, 32), MAC: bytes.Repeat([]byte{0x55}, 32), DEK: bytes.Repeat([]byte{0x66}, 32)}
	for n := uint64(1); ; n++ {
		k := newCard(t, cardmanager.DefaultParams())
		require.NoError(t, k.open(k.keys, 0, scp03.LevelCMAC))
		pk, err := gp.PutKeyAES(0x03, cardmanager.DefaultKeyVersion, newKeys, k.keys.DEK)
		require.NoError(t, err)
		w, err := k.host.Wrap(cmdOf(pk.Command()))
		require.NoError(t, err)
		b, _ := w.Bytes()
		before := k.c.Writes()
		k.c.TearAfter(n)
		rsp := k.raw(b)
		k.c.TearAfter(0)
		if rsp != nil {
			require.Equal(t, []byte{0x90, 0x00}, rsp[len(rsp)-2:])
			require.Greater(t, n, k.c.Writes()-before, "no tear: every write was tried")
			require.Greater(t, n, uint64(3), "PUT KEY replace writes the journal and the commit mark")
			break
		}
		k.c.PowerOn()
		oldOK := k.open(k.keys, 0, scp03.LevelCMAC) == nil
		newOK := k.open(newKeys, 0x03, scp03.LevelCMAC) == nil
		require.True(t, oldOK != newOK, "tear after write %d: old works %t, new works %t", n, oldOK, newOK)
	}
}
