package cardmanager

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/apdu/tlv"
	"github.com/valuechip/valuechip/applet"
)

// cmdOf unpacks a command builder's result; builders fail only on
// programming errors in the tests.
func cmdOf(c apdu.Command, err error) apdu.Command {
	if err != nil {
		panic(err)
	}
	return c
}

func installForLoadCmd(t testing.TB, fileAID, hash []byte) apdu.Command {
	return cmdOf(gp.Install{P1: gp.InstallForLoad, LoadFileAID: fileAID, LoadFileDataBlockHash: hash}.Command())
}

func installCmd(t testing.TB, p1 byte, app []byte, privs []byte) apdu.Command {
	params, err := gp.InstallParams{Application: []byte{0x01, 0x02}}.Bytes()
	require.NoError(t, err)
	return cmdOf(gp.Install{P1: p1, LoadFileAID: testFileAID, ModuleAID: testModuleAID, ApplicationAID: app,
		Privileges: privs, Parameters: params}.Command())
}

// loadBlocks sends the load file in LOAD blocks and returns the last
// status word (the first error stops).
func (r *rig) loadBlocks(file []byte, size int) apdu.SW {
	r.t.Helper()
	cmds, err := gp.LoadBlocks(file, size)
	require.NoError(r.t, err)
	for _, c := range cmds {
		data, sw := r.secure(c)
		if sw != apdu.SWNoError {
			return sw
		}
		require.Equal(r.t, []byte{0x00}, data)
	}
	return apdu.SWNoError
}

// installTestApp loads the test load file and installs testAppAID,
// selectable, through an open session.
func (r *rig) installTestApp() {
	r.t.Helper()
	file, hash := testLoadFile(r.t, testBlock(r.t, nil))
	data, sw := r.secure(installForLoadCmd(r.t, testFileAID, hash))
	require.Equal(r.t, apdu.SWNoError, sw)
	require.Equal(r.t, []byte{0x00}, data)
	require.Equal(r.t, apdu.SWNoError, r.loadBlocks(file, 16))
	data, sw = r.secure(installCmd(r.t, gp.InstallForInstall|gp.InstallForMakeSelectable, testAppAID, []byte{0x00}))
	require.Equal(r.t, apdu.SWNoError, sw)
	require.Equal(r.t, []byte{0x00}, data)
}

func TestParamsRoundTrip(t *testing.T) {
	p := DefaultParams()
	p.DAPKey = dapKey(t).point
	p.DAPRequired = true
	p.KeySets = append(p.KeySets, scp03.KeySet{Version: 0x30, Keys: testKeys(32, 0x10)})
	b, err := p.Bytes()
	require.NoError(t, err)
	q, err := ParseParams(b)
	require.NoError(t, err)
	require.Equal(t, p.CPLC, q.CPLC)
	require.Equal(t, p.IIN, q.IIN)
	require.Equal(t, p.CIN, q.CIN)
	require.Equal(t, p.KDD, q.KDD)
	require.Equal(t, p.I, q.I)
	require.Equal(t, p.DAPKey, q.DAPKey)
	require.True(t, q.DAPRequired)
	require.Len(t, q.KeySets, 2)
	for i := range p.KeySets {
		require.Equal(t, p.KeySets[i].Version, q.KeySets[i].Version)
		require.True(t, p.KeySets[i].Keys.ENC.Equal(q.KeySets[i].Keys.ENC))
		require.True(t, p.KeySets[i].Keys.MAC.Equal(q.KeySets[i].Keys.MAC))
		require.True(t, p.KeySets[i].Keys.DEK.Equal(q.KeySets[i].Keys.DEK))
	}
	// Keys never print.
	s := fmt.Sprintf("%v %+v %#v %s %x", p, p, p, p, p)
	require.NotContains(t, s, "404142")
	require.NotContains(t, s, "@ABC")
	require.Contains(t, s, "504A77")

	// An absent i means '70'.
	min := tlv.TLV{Tag: 0xA0, Children: []tlv.TLV{{Tag: 0x80, Value: []byte{1}}, {Tag: 0x81, Value: TestKey}, {Tag: 0x82, Value: TestKey}, {Tag: 0x83, Value: TestKey}}}
	b, err = min.Bytes()
	require.NoError(t, err)
	q, err = ParseParams(b)
	require.NoError(t, err)
	require.Equal(t, scp03.IParam(0x70), q.I)
}

func TestParseParamsErrors(t *testing.T) {
	good, err := DefaultParams().Bytes()
	require.NoError(t, err)
	ks := func(kvn byte, enc, mac, dek []byte) []byte {
		b, err := tlv.TLV{Tag: 0xA0, Children: []tlv.TLV{{Tag: 0x80, Value: []byte{kvn}}, {Tag: 0x81, Value: enc}, {Tag: 0x82, Value: mac}, {Tag: 0x83, Value: dek}}}.Bytes()
		require.NoError(t, err)
		return b
	}
	k16 := TestKey
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"garbage", []byte{0x9F}},
		{"no key set", hexb("8001 70")},
		{"unknown tag", append(bytes.Clone(good), 0xC7, 0x00)},
		{"repeated IIN", append(bytes.Clone(good), 0x42, 0x01, 0x00)},
		{"short CPLC", append(hexb("9F7F 02 0102"), ks(1, k16, k16, k16)...)},
		{"short KDD", append(hexb("CF 02 0102"), ks(1, k16, k16, k16)...)},
		{"bad i", append(hexb("8001 01"), ks(1, k16, k16, k16)...)},
		{"DAP without key", append(hexb("8101 01"), ks(1, k16, k16, k16)...)},
		{"bad DAP key", append(hexb("8203 040102"), ks(1, k16, k16, k16)...)},
		{"KVN 00", ks(0, k16, k16, k16)},
		{"KVN 80", ks(0x80, k16, k16, k16)},
		{"mixed key lengths", ks(1, k16, make([]byte, 32), k16)},
		{"bad key length", ks(1, k16[:15], k16[:15], k16[:15])},
		{"KVN twice", append(ks(1, k16, k16, k16), ks(1, k16, k16, k16)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseParams(tc.b)
			require.ErrorIs(t, err, ErrParams)
		})
	}
	_, err = Params{}.Bytes()
	require.ErrorIs(t, err, ErrParams)
}

func TestNewKeepsExistingState(t *testing.T) {
	r := newRig(t, DefaultParams())
	snap := r.mem.snapshot()
	// Re-creating the instance (a card image loaded) ignores params.
	_, err := New(r.env(0), []byte("ignored"))
	require.NoError(t, err)
	require.Equal(t, snap, r.mem.snapshot())
	// A fresh instance needs valid parameters.
	env := &fakeEnv{aid: DefaultAID, mem: newFakeMem(), transient: map[string]any{}}
	_, err = New(env, []byte{0x01})
	require.ErrorIs(t, err, ErrParams)
	// Inside the runtime's transaction (CardAdmin.Install), New joins it.
	require.NoError(t, env.Begin())
	b, _ := DefaultParams().Bytes()
	_, err = New(env, b)
	require.NoError(t, err)
	require.NoError(t, env.Commit())
	_, ok := env.mem.Get(recConfig)
	require.True(t, ok)
}

func TestSelectFCI(t *testing.T) {
	r := newRig(t, DefaultParams())
	fci, sw := r.selectISD()
	require.Equal(t, apdu.SWNoError, sw)
	want := "6F 41 84 08 A000000151000000 A5 35" +
		" 73 2F 06 07 2A864886FC6B01 60 0C 06 0A 2A864886FC6B02020301 63 09 06 07 2A864886FC6B03 64 0B 06 09 2A864886FC6B040370" +
		" 9F65 01 FF"
	require.Equal(t, hexb(want), fci, "%X", fci)

	list, err := tlv.Parse(fci)
	require.NoError(t, err)
	aid, ok := tlv.Find(list, 0x6F, 0x84)
	require.True(t, ok)
	require.Equal(t, DefaultAID, aid.Value)

	// i = '00' shows in the SCP OID.
	p := DefaultParams()
	p.I = 0x00
	fci, _ = newRig(t, p).selectISD()
	require.True(t, bytes.Contains(fci, hexb("2A864886FC6B040300")))

	// CARD_LOCKED: the FCI with the warning 6283 (GPCS Table 11-83).
	r.card.state = applet.CardLocked
	fci, sw = r.selectISD()
	require.Equal(t, apdu.ErrSelectedDeactivated, sw)
	require.NotEmpty(t, fci)
}

func TestGetData(t *testing.T) {
	p := DefaultParams()
	r := newRig(t, p)
	for _, tc := range []struct {
		name     string
		cla, ins byte
		tag      uint16
		want     string
		sw       apdu.SW
	}{
		{"CPLC", 0x80, 0xCA, 0x9F7F, "9F7F2A" + fmt.Sprintf("%X", p.CPLC), apdu.SWNoError},
		{"CPLC ISO value only", 0x00, 0xCA, 0x9F7F, fmt.Sprintf("%X", p.CPLC), apdu.SWNoError},
		{"IIN", 0x80, 0xCA, 0x0042, "4203425643", apdu.SWNoError},
		{"CIN", 0x80, 0xCA, 0x0045, "4506450000000001", apdu.SWNoError},
		{"CIN ISO CB", 0x00, 0xCB, 0x0045, "450000000001", apdu.SWNoError},
		{"KDD", 0x80, 0xCA, 0x00CF, "CF0A" + fmt.Sprintf("%X", p.KDD), apdu.SWNoError},
		{"card data", 0x80, 0xCA, 0x0066, "6631732F06072A864886FC6B01600C060A2A864886FC6B02020301630906072A864886FC6B03640B06092A864886FC6B040370", apdu.SWNoError},
		{"key information", 0x80, 0xCA, 0x00E0, "E012C00401018810C00402018810C00403018810", apdu.SWNoError},
		{"sequence counter", 0x80, 0xCA, 0x00C1, "C103000000", apdu.SWNoError},
		{"security level", 0x80, 0xCA, 0x00D3, "D30100", apdu.SWNoError},
		{"applications: none", 0x00, 0xCB, 0x2F00, "", apdu.ErrRefDataNotFound},
		{"unknown tag", 0x80, 0xCA, 0x00FE, "", apdu.ErrRefDataNotFound},
		{"CB with a GP class", 0x80, 0xCB, 0x0042, "", apdu.ErrINSNotSupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, sw := r.send(apdu.Command{CLA: tc.cla, INS: tc.ins, P1: byte(tc.tag >> 8), P2: byte(tc.tag), Ne: 256})
			require.Equal(t, tc.sw, sw)
			require.Equal(t, hexb(tc.want), data)
		})
	}

	// Absent objects: 6A88.
	r = newRig(t, Params{I: 0x70, KeySets: DefaultParams().KeySets})
	for _, tag := range []uint16{0x9F7F, 0x0042, 0x0045} {
		_, sw := r.send(gp.GetData(tlv.Tag(tag)))
		require.Equal(t, apdu.ErrRefDataNotFound, sw, "%04X", tag)
	}
	data, sw := r.send(gp.GetData(0xCF))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, hexb("CF0A 00000000000000000000"), data)
}

func TestGetDataAfterInstall(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC | scp03.LevelRMAC)
	data, sw := r.secure(gp.GetData(0xD3))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, hexb("D301 91"), data) // AUTHENTICATED | R-MAC | C-MAC
	data, sw = r.secure(gp.GetData(0xC1))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, hexb("C103 000001"), data)
	r.installTestApp()
	data, sw = r.secure(apdu.Command{CLA: 0x00, INS: 0xCB, P1: 0x2F, P2: 0x00, Data: []byte{0x5C, 0x00}, Ne: 256})
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, hexb("610D 4F0B F000000001505552534501"), data)
}

func testKeys(n int, seed byte) scp03.StaticKeys {
	k := func(off byte) scp03.Key {
		b := make(scp03.Key, n)
		for i := range b {
			b[i] = seed + off + byte(i)
		}
		return b
	}
	return scp03.StaticKeys{ENC: k(0), MAC: k(0x40), DEK: k(0x80)}
}

func TestHandshakeEveryLevelAndKeySize(t *testing.T) {
	for _, i := range []scp03.IParam{0x70, 0x60, 0x00, 0x10} {
		for _, n := range []int{16, 24, 32} {
			for _, level := range scp03.Levels {
				if !i.Supports(level) {
					continue
				}
				t.Run(fmt.Sprintf("i=%02X/AES-%d/level=%02X", byte(i), n*8, byte(level)), func(t *testing.T) {
					p := DefaultParams()
					p.I = i
					p.KeySets = []scp03.KeySet{{Version: 0x30, Keys: testKeys(n, 0x11)}}
					r := newRig(t, p)
					r.open(level)
					// A command of every kind goes through the session.
					data, sw := r.secure(gp.GetData(0xD3))
					require.Equal(t, apdu.SWNoError, sw)
					require.Equal(t, []byte{0xD3, 0x01, 0x80 | byte(level)}, data)
					if level.Has(scp03.LevelCMAC) {
						r.installTestApp()
						data, sw = r.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusApplications}.Command()))
						require.Equal(t, apdu.SWNoError, sw)
						require.NotEmpty(t, data)
					} else {
						// Level '00': authenticated, but mutating commands need C-MAC.
						_, sw = r.secure(installForLoadCmd(t, testFileAID, nil))
						require.Equal(t, apdu.ErrSecurityStatus, sw)
						data, sw = r.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command()))
						require.Equal(t, apdu.SWNoError, sw)
						require.NotEmpty(t, data)
					}
					// The sequence counter was persisted before the answer.
					ks, err := keySet(r.mem, 0x30)
					require.NoError(t, err)
					if i.PseudoRandom() {
						require.Equal(t, uint32(1), ks.Sequence)
					} else {
						require.Equal(t, uint32(0), ks.Sequence)
					}
				})
			}
		}
	}
}

func TestInitializeUpdateErrors(t *testing.T) {
	r := newRig(t, DefaultParams())
	hc := hexb("0102030405060708")
	for _, tc := range []struct {
		name string
		cmd  apdu.Command
		sw   apdu.SW
	}{
		{"unknown KVN", apdu.Command{CLA: 0x80, INS: 0x50, P1: 0x42, Data: hc, Ne: 256}, apdu.ErrRefDataNotFound},
		{"short challenge", apdu.Command{CLA: 0x80, INS: 0x50, Data: hc[:7], Ne: 256}, apdu.ErrWrongLength},
		{"P2", apdu.Command{CLA: 0x80, INS: 0x50, P2: 0x01, Data: hc, Ne: 256}, apdu.ErrIncorrectP1P2},
		{"SM class", apdu.Command{CLA: 0x84, INS: 0x50, Data: hc, Ne: 256}, apdu.ErrCLANotSupported},
		{"ISO class", apdu.Command{CLA: 0x00, INS: 0x50, Data: hc, Ne: 256}, apdu.ErrCLANotSupported},
		{"EXTERNAL AUTHENTICATE first", apdu.Command{CLA: 0x84, INS: 0x82, Data: make([]byte, 16)}, apdu.ErrConditionsNotMet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, sw := r.send(tc.cmd)
			require.Equal(t, tc.sw, sw)
		})
	}
	// Sequence counter exhausted: 6985 (Amd D §6.2.2.1).
	ks, err := keySet(r.mem, DefaultKeyVersion)
	require.NoError(t, err)
	ks.Sequence = scp03.MaxSequence
	require.NoError(t, putKeySet(r.mem, ks))
	_, sw := r.send(apdu.Command{CLA: 0x80, INS: 0x50, Data: hc, Ne: 256})
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
}

func TestBadHostCryptogram(t *testing.T) {
	r := newRig(t, DefaultParams())
	h, err := scp03.NewHost(scp03.HostConfig{Keys: DefaultParams().KeySets[0].Keys, Level: scp03.LevelCMAC, Rand: &counterReader{}})
	require.NoError(t, err)
	iu, _ := h.InitializeUpdate()
	raw, _ := iu.Bytes()
	ea, err := h.ExternalAuthenticate(r.transmit(raw))
	require.NoError(t, err)
	ea.Data[0] ^= 0x01 // host cryptogram
	raw, _ = ea.Bytes()
	require.Equal(t, []byte{0x63, 0x00}, r.transmit(raw))
	// The handshake is forgotten: no session, nothing authenticated.
	data, sw := r.send(gp.GetData(0xD3))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, hexb("D30100"), data)
	_, sw = r.send(cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command()))
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	// A second EXTERNAL AUTHENTICATE cannot retry.
	ea.Data[0] ^= 0x01
	raw, _ = ea.Bytes()
	require.Equal(t, []byte{0x69, 0x85}, r.transmit(raw))
}

func TestTamperedCMACAbortsSession(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC | scp03.LevelCDEC)
	w, err := r.host.Wrap(cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command()))
	require.NoError(t, err)
	w.Data[len(w.Data)-1] ^= 0x80
	raw, _ := w.Bytes()
	require.Equal(t, []byte{0x69, 0x82}, r.transmit(raw))
	// Aborted: every following command is refused, even GET DATA, until a
	// new INITIALIZE UPDATE (Amd D §5.6).
	_, sw := r.send(gp.GetData(0x42))
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	r.open(scp03.LevelCMAC)
	_, sw = r.secure(gp.GetData(0x42))
	require.Equal(t, apdu.SWNoError, sw)
}

func TestReplayedCommandRefused(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	w, err := r.host.Wrap(cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command()))
	require.NoError(t, err)
	raw, _ := w.Bytes()
	rsp := r.transmit(raw)
	require.Equal(t, []byte{0x90, 0x00}, rsp[len(rsp)-2:])
	require.Equal(t, []byte{0x69, 0x82}, r.transmit(raw))
}

func TestCommandsWithoutSecureMessaging(t *testing.T) {
	r := newRig(t, DefaultParams())
	// A command with the SM indicator and no session.
	_, sw := r.send(apdu.Command{CLA: 0x84, INS: 0xCA, P1: 0x00, P2: 0x42, Data: make([]byte, 8), Ne: 256})
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	// ISO SM and ISO chaining are not supported.
	_, sw = r.send(apdu.Command{CLA: 0x08, INS: 0xCA, P2: 0x42, Ne: 256})
	require.Equal(t, apdu.ErrSMNotSupported, sw)
	_, sw = r.send(apdu.Command{CLA: 0x90, INS: 0xCA, P2: 0x42, Ne: 256})
	require.Equal(t, apdu.ErrChainingUnsupported, sw)
	// An open session at C-MAC refuses a plain command, and aborts.
	r.open(scp03.LevelCMAC)
	_, sw = r.send(gp.GetData(0x42))
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	_, sw = r.send(gp.GetData(0x42))
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	// Reselection ends the session.
	r.selectISD()
	_, sw = r.send(gp.GetData(0x42))
	require.Equal(t, apdu.SWNoError, sw)
	// Unknown instruction, GP instruction with an ISO class.
	_, sw = r.send(apdu.Command{CLA: 0x80, INS: 0x10})
	require.Equal(t, apdu.ErrINSNotSupported, sw)
	_, sw = r.send(apdu.Command{CLA: 0x00, INS: 0xF2, P1: 0x80, P2: 0x02, Data: []byte{0x4F, 0x00}})
	require.Equal(t, apdu.ErrCLANotSupported, sw)
}

func TestRefusedWithoutAuthOrPrivilege(t *testing.T) {
	file, hash := testLoadFile(t, testBlock(t, nil))
	cmds := map[string]apdu.Command{
		"INSTALL [for load]": installForLoadCmd(t, testFileAID, hash),
		"LOAD":               {CLA: 0x80, INS: 0xE8, P1: 0x80, P2: 0x00, Data: file, Ne: 256},
		"INSTALL [for install]": installCmd(t, gp.InstallForInstall|gp.InstallForMakeSelectable,
			testAppAID, []byte{0x00}),
		"DELETE":     cmdOf(gp.Delete{AID: testFileAID}.Command(true)),
		"PUT KEY":    {CLA: 0x80, INS: 0xD8, P1: 0x00, P2: 0x81, Data: []byte{0x02, 0x88, 0x00, 0x00}, Ne: 256},
		"SET STATUS": gp.SetStatus(gp.SetStatusISD, applet.CardLocked, nil),
		"STORE DATA": {CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: hexb("4201AA")},
		"GET STATUS": cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command()),
	}
	for name, cmd := range cmds {
		t.Run(name+"/no session", func(t *testing.T) {
			r := newRig(t, DefaultParams())
			snap := r.mem.snapshot()
			_, sw := r.send(cmd)
			require.Equal(t, apdu.ErrSecurityStatus, sw)
			require.Equal(t, snap, r.mem.snapshot())
			require.Equal(t, applet.CardSecured, r.card.state)
		})
		if name == "GET STATUS" {
			continue
		}
		t.Run(name+"/level 00", func(t *testing.T) {
			r := newRig(t, DefaultParams())
			r.open(scp03.LevelNone)
			snap := r.mem.snapshot()
			_, sw := r.secure(cmd)
			require.Equal(t, apdu.ErrSecurityStatus, sw)
			require.Equal(t, snap, r.mem.snapshot())
			require.Equal(t, applet.CardSecured, r.card.state)
		})
	}
	// Without Authorized Management: content management refused with 6985.
	for _, name := range []string{"INSTALL [for load]", "DELETE"} {
		t.Run(name+"/no privilege", func(t *testing.T) {
			r := newRig(t, DefaultParams())
			r.card.apps[0].Privileges[1] &^= applet.PrivAuthorizedMgmt
			r.open(scp03.LevelCMAC)
			_, sw := r.secure(cmds[name])
			require.Equal(t, apdu.ErrConditionsNotMet, sw)
			require.Empty(t, r.card.files[1:])
		})
	}
	// Without Card Lock / Card Terminate: 6985, state unchanged.
	for _, tc := range []struct {
		priv, target byte
	}{{applet.PrivCardLock, applet.CardLocked}, {applet.PrivCardTerminate, applet.CardTerminated}} {
		r := newRig(t, DefaultParams())
		r.card.apps[0].Privileges[0] &^= tc.priv
		r.open(scp03.LevelCMAC)
		_, sw := r.secure(gp.SetStatus(gp.SetStatusISD, tc.target, nil))
		require.Equal(t, apdu.ErrConditionsNotMet, sw)
		require.Equal(t, applet.CardSecured, r.card.state)
	}
}

func TestLoadInstallHappyPath(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelAll)
	r.installTestApp()
	require.Len(t, r.card.files, 2)
	lf := r.card.files[1]
	require.Equal(t, testFileAID, lf.AID)
	require.Equal(t, "1.0", lf.Version)
	require.Equal(t, [][]byte{testModuleAID}, lf.Modules)
	require.Equal(t, DefaultAID, lf.SecurityDomain)
	app, ok := findApp(r.card, testAppAID)
	require.True(t, ok)
	require.Equal(t, applet.AppSelectable, app.LifeCycle)
	require.Equal(t, []byte{0x01, 0x02}, r.card.instance(testAppAID).params)

	// GET STATUS, every P1 (GPCS Tables 11-36, 11-37).
	for _, tc := range []struct {
		p1   byte
		want string
	}{
		{gp.StatusISD, "E313 4F08A000000151000000 9F70010F C5039E5E00"},
		{gp.StatusApplications, "E32C 4F0BF000000001505552534501 9F700107 C503000000 C40AF0000000015055525345 CC08A000000151000000"},
		{gp.StatusLoadFiles, "E30D 4F07A0000001515350 9F700101" + " E31E 4F0AF0000000015055525345 9F700101 CE020100 CC08A000000151000000"},
		{gp.StatusLoadFilesModules, "E317 4F07A0000001515350 9F700101 8408A000000151535041" +
			" E32B 4F0AF0000000015055525345 9F700101 CE020100 840BF000000001505552534500 CC08A000000151000000"},
	} {
		data, sw := r.secure(cmdOf(gp.GetStatusRequest{P1: tc.p1}.Command()))
		require.Equal(t, apdu.SWNoError, sw)
		require.Equal(t, hexb(tc.want), data, "P1 %02X: %X", tc.p1, data)
		_, err := gp.ParseStatus(data)
		require.NoError(t, err)
	}

	// INSTALL [for install] then [for make selectable] separately.
	app2 := append(bytes.Clone(testAppAID[:10]), 0x02)
	_, sw := r.secure(installCmd(t, gp.InstallForInstall, app2, []byte{0x00, 0x00, 0x00}))
	require.Equal(t, apdu.SWNoError, sw)
	a, _ := findApp(r.card, app2)
	require.Equal(t, applet.AppInstalled, a.LifeCycle)
	ms := cmdOf(gp.Install{P1: gp.InstallForMakeSelectable, ApplicationAID: app2}.Command())
	_, sw = r.secure(ms)
	require.Equal(t, apdu.SWNoError, sw)
	a, _ = findApp(r.card, app2)
	require.Equal(t, applet.AppSelectable, a.LifeCycle)
	_, sw = r.secure(ms)
	require.Equal(t, apdu.ErrConditionsNotMet, sw, "already selectable")
}

type dapPair struct {
	priv  *ecdsa.PrivateKey
	point []byte
}

func dapKey(t testing.TB) dapPair {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	k, err := priv.PublicKey.ECDH()
	require.NoError(t, err)
	return dapPair{priv, k.Bytes()}
}

func TestLoadRefused(t *testing.T) {
	dap := dapKey(t)
	other := dapKey(t)
	sign := func(t testing.TB, k dapPair, block []byte) gp.DAPBlock {
		sig, err := gp.SignDAP(k.priv, block)
		require.NoError(t, err)
		return gp.DAPBlock{SecurityDomainAID: DefaultAID, Signature: sig}
	}
	otherModule := []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x99}
	for _, tc := range []struct {
		name        string
		dapRequired bool
		build       func(t testing.TB) (file, hash []byte)
		installSW   apdu.SW // of INSTALL [for load]; 0 means 9000
		sw          apdu.SW // of the last LOAD
	}{
		{name: "unknown module", build: func(t testing.TB) ([]byte, []byte) {
			return testLoadFile(t, testBlock(t, func(m *gp.Manifest) { m.Modules[0].AID = otherModule }))
		}, sw: apdu.ErrWrongData},
		{name: "wrong digest", build: func(t testing.TB) ([]byte, []byte) {
			return testLoadFile(t, testBlock(t, func(m *gp.Manifest) { m.Modules[0].Digest[0] ^= 1 }))
		}, sw: apdu.ErrWrongData},
		{name: "wrong hash", build: func(t testing.TB) ([]byte, []byte) {
			file, hash := testLoadFile(t, testBlock(t, nil))
			hash[31] ^= 1
			return file, hash
		}, sw: apdu.ErrWrongData},
		{name: "package AID differs", build: func(t testing.TB) ([]byte, []byte) {
			return testLoadFile(t, testBlock(t, func(m *gp.Manifest) { m.PackageAID = otherModule }))
		}, sw: apdu.ErrWrongData},
		{name: "not a load file", build: func(t testing.TB) ([]byte, []byte) {
			return hexb("C0 01 00"), nil
		}, sw: apdu.ErrWrongData},
		{name: "ciphered data block", build: func(t testing.TB) ([]byte, []byte) {
			return hexb("D4 01 00"), nil
		}, sw: apdu.ErrWrongData},
		{name: "hash of 20 bytes", build: func(t testing.TB) ([]byte, []byte) {
			file, hash := testLoadFile(t, testBlock(t, nil))
			return file, hash[:20]
		}, installSW: apdu.ErrWrongData},
		{name: "missing DAP", dapRequired: true, build: func(t testing.TB) ([]byte, []byte) {
			return testLoadFile(t, testBlock(t, nil))
		}, sw: apdu.ErrWrongData},
		{name: "DAP required without hash", dapRequired: true, build: func(t testing.TB) ([]byte, []byte) {
			block := testBlock(t, nil)
			file, _ := testLoadFile(t, block, sign(t, dap, block))
			return file, nil
		}, installSW: apdu.ErrWrongData},
		{name: "DAP by another key", dapRequired: true, build: func(t testing.TB) ([]byte, []byte) {
			block := testBlock(t, nil)
			return testLoadFile(t, block, sign(t, other, block))
		}, sw: apdu.ErrSecurityStatus},
		{name: "DAP block without hash in INSTALL", build: func(t testing.TB) ([]byte, []byte) {
			block := testBlock(t, nil)
			file, _ := testLoadFile(t, block, sign(t, dap, block))
			return file, nil
		}, sw: apdu.ErrWrongData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultParams()
			p.DAPKey, p.DAPRequired = dap.point, tc.dapRequired
			r := newRig(t, p)
			r.open(scp03.LevelCMAC)
			file, hash := tc.build(t)
			_, sw := r.secure(installForLoadCmd(t, testFileAID, hash))
			if tc.installSW != 0 {
				require.Equal(t, tc.installSW, sw)
				return
			}
			require.Equal(t, apdu.SWNoError, sw)
			require.Equal(t, tc.sw, r.loadBlocks(file, 32))
			require.Len(t, r.card.files, 1, "nothing registered")
			// The load is abandoned: another LOAD has no INSTALL [for load].
			_, sw = r.secure(apdu.Command{CLA: 0x80, INS: 0xE8, P1: 0x80, P2: 0x00, Data: []byte{0xC4, 0x00}, Ne: 256})
			require.Equal(t, apdu.ErrConditionsNotMet, sw)
		})
	}

	t.Run("valid DAP", func(t *testing.T) {
		p := DefaultParams()
		p.DAPKey, p.DAPRequired = dap.point, true
		r := newRig(t, p)
		r.open(scp03.LevelCMAC)
		block := testBlock(t, nil)
		file, hash := testLoadFile(t, block, sign(t, dap, block))
		_, sw := r.secure(installForLoadCmd(t, testFileAID, hash))
		require.Equal(t, apdu.SWNoError, sw)
		require.Equal(t, apdu.SWNoError, r.loadBlocks(file, 100))
		require.Len(t, r.card.files, 2)
	})

	t.Run("out of sequence", func(t *testing.T) {
		r := newRig(t, DefaultParams())
		r.open(scp03.LevelCMAC)
		file, hash := testLoadFile(t, testBlock(t, nil))
		_, sw := r.secure(installForLoadCmd(t, testFileAID, hash))
		require.Equal(t, apdu.SWNoError, sw)
		cmds, err := gp.LoadBlocks(file, 16)
		require.NoError(t, err)
		_, sw = r.secure(cmds[0])
		require.Equal(t, apdu.SWNoError, sw)
		_, sw = r.secure(cmds[2])
		require.Equal(t, apdu.ErrIncorrectP1P2, sw)
		_, sw = r.secure(cmds[1])
		require.Equal(t, apdu.ErrConditionsNotMet, sw, "load aborted")
		require.Len(t, r.card.files, 1)
		_, sw = r.secure(apdu.Command{CLA: 0x80, INS: 0xE8, P1: 0x40, P2: 0x00, Data: []byte{1}, Ne: 256})
		require.Equal(t, apdu.ErrConditionsNotMet, sw)
	})

	t.Run("bad INSTALL [for load]", func(t *testing.T) {
		r := newRig(t, DefaultParams())
		r.open(scp03.LevelCMAC)
		for _, tc := range []struct {
			name string
			cmd  apdu.Command
			sw   apdu.SW
		}{
			{"existing load file", installForLoadCmd(t, LoadFileAID, nil), apdu.ErrConditionsNotMet},
			{"existing application", installForLoadCmd(t, DefaultAID, nil), apdu.ErrConditionsNotMet},
			{"other security domain", cmdOf(gp.Install{P1: gp.InstallForLoad, LoadFileAID: testFileAID, SecurityDomainAID: testAppAID}.Command()), apdu.ErrRefDataNotFound},
			{"own security domain", cmdOf(gp.Install{P1: gp.InstallForLoad, LoadFileAID: testFileAID, SecurityDomainAID: DefaultAID}.Command()), apdu.SWNoError},
			{"token", cmdOf(gp.Install{P1: gp.InstallForLoad, LoadFileAID: testFileAID, Token: []byte{1}}.Command()), apdu.ErrWrongData},
			{"short AID", cmdOf(gp.Install{P1: gp.InstallForLoad, LoadFileAID: []byte{1, 2}}.Command()), apdu.ErrWrongData},
			{"P2", apdu.Command{CLA: 0x80, INS: 0xE6, P1: 0x02, P2: 0x01, Data: hexb("05 0102030405 00 00 00 00"), Ne: 256}, apdu.ErrIncorrectP1P2},
			{"registry update", apdu.Command{CLA: 0x80, INS: 0xE6, P1: 0x40, Data: hexb("00 00 00 00 00 00"), Ne: 256}, apdu.ErrIncorrectP1P2},
			{"combined load and install", apdu.Command{CLA: 0x80, INS: 0xE6, P1: 0x0E, P2: 0x01, Data: hexb("05 0102030405 00 00 00 00"), Ne: 256}, apdu.ErrIncorrectP1P2},
		} {
			_, sw := r.secure(tc.cmd)
			require.Equal(t, tc.sw, sw, tc.name)
		}
	})
}

func TestInstallRefused(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	r.installTestApp()
	other := []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x77}
	noC9, _ := gp.Install{P1: gp.InstallForInstall, LoadFileAID: testFileAID, ModuleAID: testModuleAID,
		ApplicationAID: other, Privileges: []byte{0}, Parameters: hexb("EF00")}.Command()
	for _, tc := range []struct {
		name string
		cmd  apdu.Command
		sw   apdu.SW
	}{
		{"instance exists", installCmd(t, gp.InstallForInstall, testAppAID, []byte{0}), apdu.ErrConditionsNotMet},
		{"instance AID is a load file", installCmd(t, gp.InstallForInstall, testFileAID, []byte{0}), apdu.ErrConditionsNotMet},
		{"security domain privilege", installCmd(t, gp.InstallForInstall, other, []byte{0x80}), apdu.ErrWrongData},
		{"card reset privilege", installCmd(t, gp.InstallForInstall, other, []byte{0x04}), apdu.ErrWrongData},
		{"two-byte privileges", installCmd(t, gp.InstallForInstall, other, []byte{0, 0}), apdu.ErrWrongData},
		{"no C9", noC9, apdu.ErrWrongData},
		{"unknown load file", cmdOf(gp.Install{P1: gp.InstallForInstall, LoadFileAID: other, ModuleAID: testModuleAID,
			ApplicationAID: other, Privileges: []byte{0}, Parameters: hexb("C900")}.Command()), apdu.ErrRefDataNotFound},
		{"module not in load file", cmdOf(gp.Install{P1: gp.InstallForInstall, LoadFileAID: testFileAID, ModuleAID: ModuleAID,
			ApplicationAID: other, Privileges: []byte{0}, Parameters: hexb("C900")}.Command()), apdu.ErrRefDataNotFound},
		{"make selectable: unknown", cmdOf(gp.Install{P1: gp.InstallForMakeSelectable, ApplicationAID: other}.Command()), apdu.ErrRefDataNotFound},
		{"make selectable: ISD", cmdOf(gp.Install{P1: gp.InstallForMakeSelectable, ApplicationAID: DefaultAID}.Command()), apdu.ErrConditionsNotMet},
		{"personalization: unknown", cmdOf(gp.Install{P1: gp.InstallForPersonalization, ApplicationAID: other}.Command()), apdu.ErrRefDataNotFound},
		{"personalization: ISD", cmdOf(gp.Install{P1: gp.InstallForPersonalization, ApplicationAID: DefaultAID}.Command()), apdu.ErrWrongData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(r.card.apps)
			_, sw := r.secure(tc.cmd)
			require.Equal(t, tc.sw, sw)
			require.Len(t, r.card.apps, n)
		})
	}
}

func TestDelete(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cmd       func(t testing.TB) apdu.Command
		sw        apdu.SW
		files     int // load files left
		apps      int // applications left
		keySets   int
		dapKeyGet bool
	}{
		{"application", func(t testing.TB) apdu.Command { return cmdOf(gp.Delete{AID: testAppAID}.Command(false)) }, apdu.SWNoError, 2, 1, 1, true},
		{"load file with instance", func(t testing.TB) apdu.Command { return cmdOf(gp.Delete{AID: testFileAID}.Command(false)) }, apdu.ErrConditionsNotMet, 2, 2, 1, true},
		{"load file and related", func(t testing.TB) apdu.Command { return cmdOf(gp.Delete{AID: testFileAID}.Command(true)) }, apdu.SWNoError, 1, 1, 1, true},
		{"ISD", func(t testing.TB) apdu.Command { return cmdOf(gp.Delete{AID: DefaultAID}.Command(true)) }, apdu.ErrConditionsNotMet, 2, 2, 1, true},
		{"ISD load file", func(t testing.TB) apdu.Command { return cmdOf(gp.Delete{AID: LoadFileAID}.Command(true)) }, apdu.ErrConditionsNotMet, 2, 2, 1, true},
		{"unknown AID", func(t testing.TB) apdu.Command {
			return cmdOf(gp.Delete{AID: []byte{1, 2, 3, 4, 5}}.Command(false))
		}, apdu.ErrRefDataNotFound, 2, 2, 1, true},
		{"token", func(t testing.TB) apdu.Command {
			return cmdOf(gp.Delete{AID: testAppAID, Token: []byte{1}}.Command(false))
		}, apdu.ErrWrongData, 2, 2, 1, true},
		{"P2", func(t testing.TB) apdu.Command {
			return apdu.Command{CLA: 0x80, INS: 0xE4, P2: 0x01, Data: append([]byte{0x4F, 0x0B}, testAppAID...), Ne: 256}
		}, apdu.ErrIncorrectP1P2, 2, 2, 1, true},
		{"malformed", func(t testing.TB) apdu.Command {
			return apdu.Command{CLA: 0x80, INS: 0xE4, Data: hexb("4F05"), Ne: 256}
		}, apdu.ErrWrongData, 2, 2, 1, true},
		{"last key set", func(t testing.TB) apdu.Command {
			return cmdOf(gp.Delete{KeyVersion: DefaultKeyVersion, HasKeyVersion: true}.Command(false))
		}, apdu.ErrConditionsNotMet, 2, 2, 1, true},
		{"unknown key set", func(t testing.TB) apdu.Command {
			return cmdOf(gp.Delete{KeyVersion: 0x55, HasKeyVersion: true}.Command(false))
		}, apdu.ErrRefDataNotFound, 2, 2, 1, true},
		{"single key", func(t testing.TB) apdu.Command {
			return cmdOf(gp.Delete{KeyID: 1, HasKeyID: true, KeyVersion: DefaultKeyVersion, HasKeyVersion: true}.Command(false))
		}, apdu.ErrWrongData, 2, 2, 1, true},
		{"DAP key", func(t testing.TB) apdu.Command {
			return cmdOf(gp.Delete{KeyVersion: gp.DAPKeyVersion, HasKeyVersion: true}.Command(false))
		}, apdu.SWNoError, 2, 2, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := DefaultParams()
			p.DAPKey = dapKey(t).point
			r := newRig(t, p)
			r.open(scp03.LevelCMAC)
			r.installTestApp()
			data, sw := r.secure(tc.cmd(t))
			require.Equal(t, tc.sw, sw)
			if sw == apdu.SWNoError {
				require.Equal(t, []byte{0x00}, data)
			}
			require.Len(t, r.card.files, tc.files)
			require.Len(t, r.card.apps, tc.apps)
			sets, err := keySets(r.mem)
			require.NoError(t, err)
			require.Len(t, sets, tc.keySets)
			cfg, err := config(r.mem)
			require.NoError(t, err)
			require.Equal(t, tc.dapKeyGet, cfg.DAPKey != nil)
		})
	}

	t.Run("key set", func(t *testing.T) {
		p := DefaultParams()
		p.KeySets = append(p.KeySets, scp03.KeySet{Version: 0x20, Keys: testKeys(16, 1)})
		r := newRig(t, p)
		r.open(scp03.LevelCMAC)
		_, sw := r.secure(cmdOf(gp.Delete{KeyVersion: 0x20, HasKeyVersion: true}.Command(false)))
		require.Equal(t, apdu.SWNoError, sw)
		sets, err := keySets(r.mem)
		require.NoError(t, err)
		require.Len(t, sets, 1)
		require.Error(t, r.tryOpen(testKeys(16, 1), 0x20, scp03.LevelCMAC))
	})
}

func TestGetStatusPagingAndSearch(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelAll)
	r.installTestApp()
	for i := 2; i < 12; i++ {
		aid := append(bytes.Clone(testAppAID[:10]), byte(i))
		_, sw := r.secure(installCmd(t, gp.InstallForInstall, aid, []byte{0}))
		require.Equal(t, apdu.SWNoError, sw)
	}
	all, sw := r.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusApplications}.Command()))
	pages := 1
	for sw == apdu.ErrMoreData {
		require.LessOrEqual(t, len(all)/pages, maxStatusPage)
		var page []byte
		page, sw = r.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusApplications, Next: true}.Command()))
		require.LessOrEqual(t, len(page), maxStatusPage)
		all = append(all, page...)
		pages++
	}
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, 3, pages, "5 entries of 46 bytes per page")
	entries, err := gp.ParseStatus(all)
	require.NoError(t, err)
	require.Len(t, entries, 11)
	_, sw = r.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusApplications, Next: true}.Command()))
	require.Equal(t, apdu.ErrConditionsNotMet, sw, "nothing more")

	for _, tc := range []struct {
		name string
		req  gp.GetStatusRequest
		cmd  *apdu.Command
		want string
		sw   apdu.SW
	}{
		{name: "AID prefix", req: gp.GetStatusRequest{P1: gp.StatusApplications, AID: append(bytes.Clone(testAppAID[:10]), 0x0B)},
			want: "E32C 4F0BF00000000150555253450B 9F700103 C503000000 C40AF0000000015055525345 CC08A000000151000000"},
		{name: "tag list", req: gp.GetStatusRequest{P1: gp.StatusApplications, AID: testAppAID, TagList: hexb("4F9F70C5")},
			want: "E316 4F0BF000000001505552534501 9F700107 C503000000"},
		{name: "tag list for load files", req: gp.GetStatusRequest{P1: gp.StatusLoadFilesModules, AID: testFileAID, TagList: hexb("84")},
			want: "E31D 4F0AF0000000015055525345 9F700101 840BF000000001505552534500"},
		{name: "no match", req: gp.GetStatusRequest{P1: gp.StatusLoadFiles, AID: []byte{0x01}}, sw: apdu.ErrRefDataNotFound},
		{name: "next for the ISD", req: gp.GetStatusRequest{P1: gp.StatusISD, Next: true}, sw: apdu.ErrIncorrectP1P2},
		{name: "P1", cmd: &apdu.Command{CLA: 0x80, INS: 0xF2, P1: 0x60, P2: 0x02, Data: hexb("4F00"), Ne: 256}, sw: apdu.ErrIncorrectP1P2},
		{name: "deprecated format", cmd: &apdu.Command{CLA: 0x80, INS: 0xF2, P1: 0x40, P2: 0x00, Data: hexb("4F00"), Ne: 256}, sw: apdu.ErrIncorrectP1P2},
		{name: "no search criteria", cmd: &apdu.Command{CLA: 0x80, INS: 0xF2, P1: 0x40, P2: 0x02, Ne: 256}, sw: apdu.ErrWrongData},
		{name: "bad tag list", req: gp.GetStatusRequest{P1: gp.StatusApplications, TagList: hexb("9F")}, sw: apdu.ErrWrongData},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := tc.cmd
			if cmd == nil {
				c := cmdOf(tc.req.Command())
				cmd = &c
			}
			data, sw := r.secure(*cmd)
			if tc.sw == 0 {
				tc.sw = apdu.SWNoError
			}
			require.Equal(t, tc.sw, sw)
			require.Equal(t, hexb(tc.want), data, "%X", data)
		})
	}
}

// The GET STATUS sample of protocols.md §3.7 (a GP 2.1.1 card) has the
// same structure as our entries: E3 { 4F, 9F70, C5 }.
func TestGetStatusSampleShape(t *testing.T) {
	sample, err := gp.ParseStatus(hexb("E3144F07A00000015100009F700107C50180EA028000"))
	require.NoError(t, err)
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	data, sw := r.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command()))
	require.Equal(t, apdu.SWNoError, sw)
	ours, err := gp.ParseStatus(data)
	require.NoError(t, err)
	require.Len(t, ours, 1)
	require.Equal(t, DefaultAID, ours[0].AID)
	require.Equal(t, applet.CardSecured, ours[0].LifeCycle)
	require.Equal(t, gp.Privileges(DefaultPrivileges), ours[0].Privs())
	require.True(t, sample[0].Privs().Has(gp.PrivSecurityDomain) && ours[0].Privs().Has(gp.PrivSecurityDomain))
}

func TestPutKey(t *testing.T) {
	def := DefaultParams().KeySets[0].Keys
	for _, tc := range []struct {
		name       string
		newKVN     byte
		replace    byte
		keys       scp03.StaticKeys
		sw         apdu.SW
		wantKVNs   []byte
		openWith   byte // KVN to authenticate with afterwards
		oldGone    bool
		corruptKCV bool
	}{
		{name: "add AES-128", newKVN: 0x02, keys: testKeys(16, 0x21), sw: apdu.SWNoError, wantKVNs: []byte{0x01, 0x02}, openWith: 0x02},
		{name: "add AES-256", newKVN: 0x30, keys: testKeys(32, 0x31), sw: apdu.SWNoError, wantKVNs: []byte{0x01, 0x30}, openWith: 0x30},
		{name: "replace under a new KVN", newKVN: 0x02, replace: 0x01, keys: testKeys(24, 0x41), sw: apdu.SWNoError, wantKVNs: []byte{0x02}, openWith: 0x02, oldGone: true},
		{name: "replace in place", newKVN: 0x01, replace: 0x01, keys: testKeys(16, 0x51), sw: apdu.SWNoError, wantKVNs: []byte{0x01}, openWith: 0x01, oldGone: true},
		{name: "add existing KVN", newKVN: 0x01, keys: testKeys(16, 0x61), sw: apdu.ErrWrongData, wantKVNs: []byte{0x01}},
		{name: "replace missing KVN", newKVN: 0x05, replace: 0x04, keys: testKeys(16, 0x71), sw: apdu.ErrRefDataNotFound, wantKVNs: []byte{0x01}},
		{name: "bad KCV", newKVN: 0x02, keys: testKeys(16, 0x21), sw: apdu.ErrSecurityStatus, wantKVNs: []byte{0x01}, corruptKCV: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, DefaultParams())
			r.open(scp03.LevelCMAC | scp03.LevelCDEC)
			pk, err := gp.PutKeyAES(tc.newKVN, tc.replace, tc.keys, def.DEK)
			require.NoError(t, err)
			if tc.corruptKCV {
				pk.Components[1].KCV[0] ^= 1
			}
			data, sw := r.secure(cmdOf(pk.Command()))
			require.Equal(t, tc.sw, sw)
			if sw == apdu.SWNoError {
				require.Equal(t, pk.Expected().Bytes(), data)
				require.Len(t, data, 10)
			}
			sets, err := keySets(r.mem)
			require.NoError(t, err)
			var kvns []byte
			for _, s := range sets {
				kvns = append(kvns, s.Version)
				if s.Version == tc.newKVN && sw == apdu.SWNoError {
					require.Zero(t, s.Sequence, "a new key set starts at sequence 0")
				}
			}
			require.Equal(t, tc.wantKVNs, kvns)
			if tc.openWith != 0 {
				require.NoError(t, r.tryOpen(tc.keys, tc.openWith, scp03.LevelCMAC))
				_, sw = r.secure(gp.GetData(0x42))
				require.Equal(t, apdu.SWNoError, sw)
			}
			if tc.oldGone {
				require.Error(t, r.tryOpen(def, DefaultKeyVersion, scp03.LevelCMAC))
			}
		})
	}

	t.Run("format errors", func(t *testing.T) {
		r := newRig(t, DefaultParams())
		r.open(scp03.LevelCMAC)
		pk, err := gp.PutKeyAES(0x02, 0, testKeys(16, 1), def.DEK)
		require.NoError(t, err)
		two := pk
		two.Components = two.Components[:2]
		mixed := pk
		c, err := gp.EncryptAESKey(def.DEK, testKeys(32, 1).MAC)
		require.NoError(t, err)
		mixed.Components = []gp.KeyComponent{pk.Components[0], c, pk.Components[2]}
		wrongDEK, err := gp.PutKeyAES(0x02, 0, testKeys(16, 1), testKeys(16, 9).DEK)
		require.NoError(t, err)
		single := pk
		single.Multiple = false
		for _, tc := range []struct {
			name string
			pk   gp.PutKey
			sw   apdu.SW
		}{
			{"two keys", two, apdu.ErrWrongData},
			{"mixed lengths", mixed, apdu.ErrWrongData},
			{"encrypted with another DEK", wrongDEK, apdu.ErrSecurityStatus},
			{"single key", single, apdu.ErrIncorrectP1P2},
		} {
			_, sw := r.secure(cmdOf(tc.pk.Command()))
			require.Equal(t, tc.sw, sw, tc.name)
		}
		sets, err := keySets(r.mem)
		require.NoError(t, err)
		require.Len(t, sets, 1)
	})

	t.Run("DAP key", func(t *testing.T) {
		r := newRig(t, DefaultParams())
		r.open(scp03.LevelCMAC)
		k := dapKey(t)
		pk, err := gp.PutKeyECCPublic(gp.DAPKeyVersion, 0, gp.DAPKeyID, &k.priv.PublicKey)
		require.NoError(t, err)
		data, sw := r.secure(cmdOf(pk.Command()))
		require.Equal(t, apdu.SWNoError, sw)
		require.Equal(t, []byte{gp.DAPKeyVersion}, data)
		_, sw = r.secure(cmdOf(pk.Command()))
		require.Equal(t, apdu.ErrWrongData, sw, "already present")
		cfg, err := config(r.mem)
		require.NoError(t, err)
		require.Equal(t, k.point, cfg.DAPKey)
		info, sw := r.secure(gp.GetData(gp.TagKeyInfo))
		require.Equal(t, apdu.SWNoError, sw)
		keys, err := gp.ParseKeyInfo(info)
		require.NoError(t, err)
		require.Len(t, keys, 4)
		require.Equal(t, gp.KeyInfo{ID: 1, Version: 0x73, Components: []gp.KeyInfoComponent{{Type: 0xB0, Length: 0x40}, {Type: 0xF0, Length: 0}}}, keys[3])
		// A DAP-signed load file now verifies.
		block := testBlock(t, nil)
		sig, err := gp.SignDAP(k.priv, block)
		require.NoError(t, err)
		file, hash := testLoadFile(t, block, gp.DAPBlock{SecurityDomainAID: DefaultAID, Signature: sig})
		_, sw = r.secure(installForLoadCmd(t, testFileAID, hash))
		require.Equal(t, apdu.SWNoError, sw)
		require.Equal(t, apdu.SWNoError, r.loadBlocks(file, 64))
	})
}

func TestSetStatusCardLifeCycle(t *testing.T) {
	for _, tc := range []struct {
		from, to byte
		sw       apdu.SW
	}{
		{applet.CardOPReady, applet.CardInitialized, apdu.SWNoError},
		{applet.CardOPReady, applet.CardSecured, apdu.SWNoError},
		{applet.CardInitialized, applet.CardSecured, apdu.SWNoError},
		{applet.CardSecured, applet.CardLocked, apdu.SWNoError},
		{applet.CardLocked, applet.CardSecured, apdu.SWNoError},
		{applet.CardOPReady, applet.CardTerminated, apdu.SWNoError},
		{applet.CardSecured, applet.CardTerminated, apdu.SWNoError},
		{applet.CardLocked, applet.CardTerminated, apdu.SWNoError},
		{applet.CardInitialized, applet.CardOPReady, apdu.ErrWrongData},
		{applet.CardSecured, applet.CardInitialized, apdu.ErrConditionsNotMet},
		{applet.CardInitialized, applet.CardInitialized, apdu.ErrConditionsNotMet},
		{applet.CardOPReady, applet.CardLocked, apdu.ErrConditionsNotMet},
		{applet.CardInitialized, applet.CardLocked, apdu.ErrConditionsNotMet},
		{applet.CardLocked, applet.CardLocked, apdu.ErrConditionsNotMet},
		{applet.CardSecured, 0x55, apdu.ErrWrongData},
	} {
		t.Run(fmt.Sprintf("%02X→%02X", tc.from, tc.to), func(t *testing.T) {
			r := newRig(t, DefaultParams())
			r.card.state = tc.from
			r.open(scp03.LevelCMAC)
			_, sw := r.secure(gp.SetStatus(gp.SetStatusISD, tc.to, DefaultAID))
			require.Equal(t, tc.sw, sw)
			if sw == apdu.SWNoError {
				require.Equal(t, tc.to, r.card.state)
			} else {
				require.Equal(t, tc.from, r.card.state)
			}
		})
	}
}

func TestLifeCycleGating(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	r.installTestApp()
	_, sw := r.secure(gp.SetStatus(gp.SetStatusISD, applet.CardLocked, nil))
	require.Equal(t, apdu.SWNoError, sw)
	// CARD_LOCKED: no content or key management, but GET DATA, GET STATUS
	// and SET STATUS (to unlock) work (GPCS Table 11-1).
	for _, cmd := range []apdu.Command{
		installForLoadCmd(t, []byte{1, 2, 3, 4, 5}, nil),
		cmdOf(gp.Delete{AID: testAppAID}.Command(false)),
		{CLA: 0x80, INS: 0xE2, P1: 0x90, Data: hexb("4201AA")},
		gp.SetStatus(gp.SetStatusApp, gp.SetStatusLockApp, testAppAID),
	} {
		_, sw = r.secure(cmd)
		require.Equal(t, apdu.ErrConditionsNotMet, sw, "%02X", cmd.INS)
	}
	_, sw = r.secure(gp.GetData(0x42))
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = r.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusApplications}.Command()))
	require.Equal(t, apdu.SWNoError, sw)
	r.open(scp03.LevelCMAC) // a new session may be opened
	_, sw = r.secure(gp.SetStatus(gp.SetStatusISD, applet.CardSecured, nil))
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = r.secure(gp.SetStatus(gp.SetStatusISD, applet.CardTerminated, nil))
	require.Equal(t, apdu.SWNoError, sw)
	// TERMINATED: GET DATA only (GPCS §5.1.1.5).
	_, sw = r.secure(gp.GetData(0x9F7F))
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = r.secure(cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command()))
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
	_, sw = r.send(apdu.Command{CLA: 0x80, INS: 0x50, Data: make([]byte, 8), Ne: 256})
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
	_, sw = r.send(gp.GetData(0x45))
	require.Equal(t, apdu.SWNoError, sw)
}

func TestSetStatusApplications(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	r.installTestApp()
	state := func() byte { a, _ := findApp(r.card, testAppAID); return a.LifeCycle }
	for _, tc := range []struct {
		name string
		cmd  apdu.Command
		sw   apdu.SW
		want byte
	}{
		{"lock", gp.SetStatus(gp.SetStatusApp, gp.SetStatusLockApp, testAppAID), apdu.SWNoError, 0x87},
		{"lock again", gp.SetStatus(gp.SetStatusApp, gp.SetStatusLockApp, testAppAID), apdu.ErrConditionsNotMet, 0x87},
		{"unlock", gp.SetStatus(gp.SetStatusApp, gp.SetStatusUnlockApp, testAppAID), apdu.SWNoError, 0x07},
		{"unlock again", gp.SetStatus(gp.SetStatusApp, gp.SetStatusUnlockApp, testAppAID), apdu.ErrConditionsNotMet, 0x07},
		{"application-specific state", gp.SetStatus(gp.SetStatusApp, 0x0F, testAppAID), apdu.ErrWrongData, 0x07},
		{"the ISD", gp.SetStatus(gp.SetStatusApp, gp.SetStatusLockApp, DefaultAID), apdu.ErrConditionsNotMet, 0x07},
		{"unknown", gp.SetStatus(gp.SetStatusApp, gp.SetStatusLockApp, []byte{1, 2, 3, 4, 5}), apdu.ErrRefDataNotFound, 0x07},
		{"short AID", gp.SetStatus(gp.SetStatusApp, gp.SetStatusLockApp, []byte{1}), apdu.ErrWrongData, 0x07},
		{"P1 60 on an application", gp.SetStatus(gp.SetStatusSDAndApps, gp.SetStatusLockApp, testAppAID), apdu.ErrWrongData, 0x07},
		{"P1", gp.SetStatus(0x20, gp.SetStatusLockApp, testAppAID), apdu.ErrIncorrectP1P2, 0x07},
	} {
		_, sw := r.secure(tc.cmd)
		require.Equal(t, tc.sw, sw, tc.name)
		require.Equal(t, tc.want, state(), tc.name)
	}
	// An application with the Final Application privilege cannot be locked.
	r.card.apps[1].Privileges[1] |= applet.PrivFinalApplication
	_, sw := r.secure(gp.SetStatus(gp.SetStatusApp, gp.SetStatusLockApp, testAppAID))
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
}

func TestChaining(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelAll)
	file, hash := testLoadFile(t, testBlock(t, nil))
	_, sw := r.secure(installForLoadCmd(t, testFileAID, hash))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, apdu.SWNoError, r.loadBlocks(file, 200))

	// INSTALL with 300 bytes of install parameters: wrapped whole, then
	// split into segments with P1 b8 (GPCS §11.1.5.1).
	params, err := gp.InstallParams{Application: bytes.Repeat([]byte{0xAB}, 300)}.Bytes()
	require.NoError(t, err)
	in := gp.Install{P1: gp.InstallForInstall | gp.InstallForMakeSelectable, LoadFileAID: testFileAID, ModuleAID: testModuleAID,
		ApplicationAID: testAppAID, Privileges: []byte{0}, Parameters: params}
	data, err := in.Bytes()
	require.NoError(t, err)
	full := apdu.Command{CLA: 0x80, INS: 0xE6, P1: 0x0C, Data: data, Ne: 256}
	w, err := r.host.Wrap(full)
	require.NoError(t, err)
	segs := [][]byte{w.Data[:200], w.Data[200:]}
	for i, s := range segs {
		p1 := w.P1
		if i < len(segs)-1 {
			p1 |= 0x80
		}
		raw, err := apdu.Command{CLA: w.CLA, INS: w.INS, P1: p1, P2: w.P2, Data: s, Ne: 256}.Bytes()
		require.NoError(t, err)
		rsp := r.transmit(raw)
		if i < len(segs)-1 {
			require.Equal(t, []byte{0x90, 0x00}, rsp, "intermediate segment: 9000, no R-MAC")
			continue
		}
		out, err := r.host.Unwrap(rsp)
		require.NoError(t, err)
		require.Equal(t, []byte{0x00, 0x90, 0x00}, out)
	}
	inst := r.card.instance(testAppAID)
	require.Equal(t, bytes.Repeat([]byte{0xAB}, 300), inst.params)

	// A broken chain: 6985, and the session stays in step.
	raw, _ := apdu.Command{CLA: 0x84, INS: 0xE4, P1: 0x80, Data: []byte{0x4F}, Ne: 256}.Bytes()
	require.Equal(t, []byte{0x90, 0x00}, r.transmit(raw))
	_, sw = r.secure(gp.GetData(0x42))
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
	_, sw = r.secure(gp.GetData(0x42))
	require.Equal(t, apdu.SWNoError, sw)
}

func TestStoreData(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	r.installTestApp()

	// To the ISD itself: IIN as BER-TLV, CIN as an encrypted DGI.
	_, sw := r.secure(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x10, P2: 0x00, Data: hexb("4204 11223344")})
	require.Equal(t, apdu.SWNoError, sw)
	sealed, err := gp.SealDGI(DefaultParams().KeySets[0].Keys.DEK, gp.DGI{Tag: 0x0045, Data: hexb("99887766")})
	require.NoError(t, err)
	dgis, err := gp.EncodeDGIs(sealed)
	require.NoError(t, err)
	_, sw = r.secure(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x80 | 0x60 | 0x08, P2: 0x01, Data: dgis})
	require.Equal(t, apdu.SWNoError, sw)
	data, _ := r.secure(gp.GetData(0x42))
	require.Equal(t, hexb("4204 11223344"), data)
	data, _ = r.secure(gp.GetData(0x45))
	require.Equal(t, hexb("4504 99887766"), data)
	for _, tc := range []struct {
		name string
		cmd  apdu.Command
		sw   apdu.SW
	}{
		{"unknown object", apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x90, Data: hexb("5F2001AA")}, apdu.ErrRefDataNotFound},
		{"unstructured", apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x80, Data: hexb("AA")}, apdu.ErrWrongData},
		{"block out of sequence", apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x05, Data: hexb("4201AA")}, apdu.ErrIncorrectP1P2},
		{"empty IIN", apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x90, Data: hexb("4200")}, apdu.ErrWrongData},
	} {
		_, sw := r.secure(tc.cmd)
		require.Equal(t, tc.sw, sw, tc.name)
	}

	// Routed to the application after INSTALL [for personalization].
	data, sw = r.secure(cmdOf(gp.Install{P1: gp.InstallForPersonalization, ApplicationAID: testAppAID}.Command()))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, []byte{0x00}, data)
	cmds, err := gp.StoreDataCommands(gp.StoreFormatDGI, hexb("0101 02 AABB"), hexb("0102 01 CC"))
	require.NoError(t, err)
	for _, c := range cmds {
		_, sw = r.secure(c)
		require.Equal(t, apdu.SWNoError, sw)
	}
	inst := r.card.instance(testAppAID)
	require.Equal(t, [][]byte{hexb("0101 02 AABB"), hexb("0102 01 CC")}, inst.stored)
	require.Equal(t, []string{
		fmt.Sprintf("%X 08 00 010102AABB", testAppAID),
		fmt.Sprintf("%X 88 01 010201CC", testAppAID),
		fmt.Sprintf("%X end", testAppAID),
	}, r.card.perso)
	// The session ended with the last block: STORE DATA goes to the ISD again.
	_, sw = r.secure(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: hexb("4201AA")})
	require.Equal(t, apdu.SWNoError, sw)
	require.Len(t, inst.stored, 2)
}

func TestSessionsArePerChannel(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	// Channel 1 has its own (absent) session.
	cmd := cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command())
	_, sw := r.isd.Process(r.env(1), cmd)
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	data, sw := r.isd.Process(r.env(1), gp.GetData(0xD3))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, hexb("D30100"), data)
	// Channel 0's session is untouched.
	_, sw = r.secure(cmd)
	require.Equal(t, apdu.SWNoError, sw)
	// Deselection on channel 0 ends it.
	r.isd.Deselect(r.env(0))
	_, sw = r.send(cmd)
	require.Equal(t, apdu.ErrSecurityStatus, sw)
}

func TestSetStatusSecurityDomainAndApplications(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	r.installTestApp()
	ssd := []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x53, 0x44}
	r.card.apps = append(r.card.apps, applet.Application{AID: ssd, Privileges: applet.Privileges{applet.PrivSecurityDomain},
		LifeCycle: applet.SDPersonalized, SecurityDomain: DefaultAID})
	r.card.apps[1].SecurityDomain = ssd // the test application now belongs to the SSD
	_, sw := r.secure(gp.SetStatus(gp.SetStatusSDAndApps, gp.SetStatusLockApp, ssd))
	require.Equal(t, apdu.SWNoError, sw)
	for _, a := range r.card.apps[1:] {
		require.NotZero(t, a.LifeCycle&applet.AppLockedBit, "%X", a.AID)
	}
	_, sw = r.secure(gp.SetStatus(gp.SetStatusSDAndApps, gp.SetStatusUnlockApp, ssd))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, applet.AppSelectable, r.card.apps[1].LifeCycle)
	require.Equal(t, applet.SDPersonalized, r.card.apps[2].LifeCycle)
	// Personalisation of a locked application is refused.
	_, sw = r.secure(gp.SetStatus(gp.SetStatusApp, gp.SetStatusLockApp, testAppAID))
	require.Equal(t, apdu.SWNoError, sw)
	r.card.apps[1].SecurityDomain = DefaultAID
	_, sw = r.secure(cmdOf(gp.Install{P1: gp.InstallForPersonalization, ApplicationAID: testAppAID}.Command()))
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
}

func TestPersonalizationBlockSequence(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	r.installTestApp()
	_, sw := r.secure(cmdOf(gp.Install{P1: gp.InstallForPersonalization, ApplicationAID: testAppAID}.Command()))
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = r.secure(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x08, P2: 0x01, Data: hexb("010101AA")})
	require.Equal(t, apdu.ErrIncorrectP1P2, sw)
	require.Equal(t, []string{fmt.Sprintf("%X end", testAppAID)}, r.card.perso, "the session ended")
	// A new INITIALIZE UPDATE also ends a personalisation session.
	_, sw = r.secure(cmdOf(gp.Install{P1: gp.InstallForPersonalization, ApplicationAID: testAppAID}.Command()))
	require.Equal(t, apdu.SWNoError, sw)
	r.open(scp03.LevelCMAC)
	require.Len(t, r.card.perso, 2)
	_, sw = r.secure(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: hexb("4201AA")})
	require.Equal(t, apdu.SWNoError, sw, "STORE DATA goes to the ISD again")
}

func TestPutDAPKeyErrors(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.open(scp03.LevelCMAC)
	k := dapKey(t)
	for _, tc := range []struct {
		name            string
		newKVN, replace byte
		keyID           byte
		sw              apdu.SW
	}{
		{"replace absent", gp.DAPKeyVersion, gp.DAPKeyVersion, gp.DAPKeyID, apdu.ErrRefDataNotFound},
		{"as an SCP03 KVN", 0x05, gp.DAPKeyVersion, gp.DAPKeyID, apdu.ErrWrongData},
		{"key identifier", gp.DAPKeyVersion, 0, 0x02, apdu.ErrIncorrectP1P2},
		{"add", gp.DAPKeyVersion, 0, gp.DAPKeyID, apdu.SWNoError},
		{"replace", gp.DAPKeyVersion, gp.DAPKeyVersion, gp.DAPKeyID, apdu.SWNoError},
	} {
		pk, err := gp.PutKeyECCPublic(tc.newKVN, tc.replace, tc.keyID, &k.priv.PublicKey)
		require.NoError(t, err)
		_, sw := r.secure(cmdOf(pk.Command()))
		require.Equal(t, tc.sw, sw, tc.name)
	}
	// A point that is not on the curve.
	pk, err := gp.PutKeyECCPublic(gp.DAPKeyVersion, gp.DAPKeyVersion, gp.DAPKeyID, &k.priv.PublicKey)
	require.NoError(t, err)
	pk.Components[0].Value[10] ^= 1
	_, sw := r.secure(cmdOf(pk.Command()))
	require.Equal(t, apdu.ErrWrongData, sw)
}

func TestWithoutCardAdmin(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.noCard = true
	fci, sw := r.selectISD()
	require.Equal(t, apdu.SWNoError, sw)
	require.NotEmpty(t, fci)
	r.open(scp03.LevelCMAC)
	for _, cmd := range []apdu.Command{
		cmdOf(gp.GetStatusRequest{P1: gp.StatusISD}.Command()),
		gp.SetStatus(gp.SetStatusISD, applet.CardLocked, nil),
		installForLoadCmd(t, testFileAID, nil),
		cmdOf(gp.Delete{AID: testAppAID}.Command(false)),
	} {
		_, sw := r.secure(cmd)
		require.Equal(t, apdu.ErrConditionsNotMet, sw, "%02X", cmd.INS)
	}
	_, sw = r.secure(apdu.Command{CLA: 0x00, INS: 0xCB, P1: 0x2F, P2: 0x00, Data: []byte{0x5C, 0x00}, Ne: 256})
	require.Equal(t, apdu.ErrRefDataNotFound, sw)
	// Its own data and keys still work.
	_, sw = r.secure(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x90, Data: hexb("4201AA")})
	require.Equal(t, apdu.SWNoError, sw)
}

// The DAP Verification privilege on the ISD makes DAPs mandatory too
// (GPCS §9.3.5).
func TestDAPVerificationPrivilege(t *testing.T) {
	r := newRig(t, DefaultParams())
	r.card.apps[0].Privileges[0] |= applet.PrivDAPVerification
	r.open(scp03.LevelCMAC)
	block := testBlock(t, nil)
	file, hash := testLoadFile(t, block)
	_, sw := r.secure(installForLoadCmd(t, testFileAID, nil))
	require.Equal(t, apdu.ErrWrongData, sw, "the hash is mandatory")
	_, sw = r.secure(installForLoadCmd(t, testFileAID, hash))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, apdu.ErrWrongData, r.loadBlocks(file, 64), "no DAP block")
	// A DAP block but no verification key: 6985.
	k := dapKey(t)
	sig, err := gp.SignDAP(k.priv, block)
	require.NoError(t, err)
	file, hash = testLoadFile(t, block, gp.DAPBlock{SecurityDomainAID: DefaultAID, Signature: sig})
	_, sw = r.secure(installForLoadCmd(t, testFileAID, hash))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, apdu.ErrConditionsNotMet, r.loadBlocks(file, 64))
	// With the key loaded by PUT KEY, it verifies.
	pk, err := gp.PutKeyECCPublic(gp.DAPKeyVersion, 0, gp.DAPKeyID, &k.priv.PublicKey)
	require.NoError(t, err)
	_, sw = r.secure(cmdOf(pk.Command()))
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = r.secure(installForLoadCmd(t, testFileAID, hash))
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, apdu.SWNoError, r.loadBlocks(file, 64))
	// Now the DAP key cannot be deleted.
	_, sw = r.secure(cmdOf(gp.Delete{KeyVersion: gp.DAPKeyVersion, HasKeyVersion: true}.Command(false)))
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
}
