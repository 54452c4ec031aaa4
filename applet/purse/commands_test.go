package purse_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/purse"
)

func TestModule(t *testing.T) {
	require.Equal(t, wire.ModuleAID(), purse.ModuleAID)
	require.Equal(t, wire.AID(), purse.AID)
	require.Equal(t, wire.PackageAID(), purse.PackageAID)
	require.Equal(t, purse.ModuleAID, purse.Module.AID)
	require.NotEqual(t, [32]byte{}, purse.Module.Digest())
	// Install parameters are refused (§2).
	c := chip.New(testATR, chip.WithModules(purse.Module))
	f := c.Factory()
	require.NoError(t, f.AddLoadFile(applet.LoadFile{AID: purse.PackageAID, Modules: [][]byte{purse.ModuleAID}}))
	err := f.Install(purse.PackageAID, purse.ModuleAID, purse.AID, applet.Privileges{}, []byte{1}, true)
	require.ErrorIs(t, err, apdu.ErrWrongData)
	require.Empty(t, c.Applications(), "a refused install leaves nothing")
}

// Before personalisation only SELECT works (§4.2).
func TestBeforePersonalisation(t *testing.T) {
	c := newInstalledChip(t)
	k := &card{t: t, c: c}
	data, sw := k.send(wire.Select(purse.AID))
	require.Equal(t, apdu.SWNoError, sw)
	fci, err := wire.ParseFCI(data)
	require.NoError(t, err)
	require.Equal(t, wire.StatePersonalising, fci.LifeCycle)
	require.False(t, fci.Personalised())
	for _, cmd := range []apdu.Command{
		wire.GetPurseData(),
		wire.InitializeLoad{KeyVersion: 1, Amount: 1, Currency: eur}.Command(),
		wire.CreditLoad{}.Command(),
		wire.InitializeDebit{KeyVersion: 1, Amount: 1, Currency: eur}.Command(),
		wire.Debit{}.Command(),
		wire.GetTransactionProof(1),
		wire.ReadLog(1),
		wire.Verify(mustPIN("1234")),
		wire.Verify(nil),
		wire.GetChallenge(),
		wire.SetStatus(wire.OpBlock, 1, wire.MAC{}),
	} {
		_, sw := k.send(cmd)
		require.Equal(t, apdu.ErrConditionsNotMet, sw, "%s", cmd)
	}
}

func TestPersonalisationErrors(t *testing.T) {
	p := personalization(t, cardID, testLimits)
	dgis, err := p.DGIs()
	require.NoError(t, err)
	enc := func(ds ...gp.DGI) []byte {
		b, err := gp.EncodeDGIs(ds...)
		require.NoError(t, err)
		return b
	}
	all := enc(dgis...)
	for _, tc := range []struct {
		name string
		p1   byte
		data []byte
		want apdu.SW
	}{
		{"BER-TLV format", gp.StoreFormatBERTLV | gp.StoreLastBlock, all, apdu.ErrWrongData},
		{"unstructured", gp.StoreLastBlock, all, apdu.ErrWrongData},
		{"encrypted DGIs (P1 b7b6 = 11)", gp.StoreFormatDGI | gp.StoreEncAll | gp.StoreLastBlock, all, apdu.ErrWrongData},
		{"application-dependent encryption", gp.StoreFormatDGI | gp.StoreEncAppDependent, all, apdu.ErrWrongData},
		{"truncated DGI", gp.StoreFormatDGI, all[:len(all)-1], apdu.ErrWrongData},
		{"unknown DGI", gp.StoreFormatDGI, enc(gp.DGI{Tag: 0x0999, Data: []byte{1}}), apdu.ErrRefDataNotFound},
		{"bad KCV", gp.StoreFormatDGI, enc(gp.DGI{Tag: wire.DGILoadKey, Data: append(append([]byte{}, dgis[3].Data[:20-1]...), dgis[3].Data[19]^0xFF)}), apdu.ErrWrongData},
		{"missing DGI at the last block", gp.StoreFormatDGI | gp.StoreLastBlock, enc(dgis[:6]...), apdu.ErrConditionsNotMet},
		{"last block without data, nothing staged", gp.StoreFormatDGI | gp.StoreLastBlock, []byte{}, apdu.ErrConditionsNotMet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newInstalledChip(t)
			_, sw := c.Factory().Personalize(purse.AID, tc.p1, 0, tc.data)
			require.Equal(t, tc.want, sw)
			k := &card{t: t, c: c}
			fci := k.mustSelect()
			require.Equal(t, wire.StatePersonalising, fci.LifeCycle, "still personalising")
		})
	}

	// A refused block stages nothing; a later session completes the job.
	c := newInstalledChip(t)
	_, sw := c.Factory().Personalize(purse.AID, gp.StoreFormatDGI|gp.StoreLastBlock, 0, enc(dgis[:3]...))
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
	_, sw = c.Factory().Personalize(purse.AID, gp.StoreFormatDGI, 0, append(enc(dgis[3:]...), 0x09, 0x99, 0x01, 0x00))
	require.Equal(t, apdu.ErrRefDataNotFound, sw)
	_, sw = c.Factory().Personalize(purse.AID, gp.StoreFormatDGI|gp.StoreLastBlock, 0, enc(dgis[3:]...))
	require.Equal(t, apdu.SWNoError, sw)
	k := &card{t: t, c: c, id: cardID, keys: p.Keys}
	require.Equal(t, wire.StateActive, k.mustSelect().LifeCycle)
	// Personalisation happens once.
	_, sw = c.Factory().Personalize(purse.AID, gp.StoreFormatDGI|gp.StoreLastBlock, 0, all)
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
	// STORE DATA sent to the purse itself is not a purse command.
	_, sw = k.send(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x88, Data: all})
	require.Equal(t, apdu.ErrINSNotSupported, sw)
}

func TestSelectAndPurseData(t *testing.T) {
	k := newCard(t)
	fci := k.mustSelect()
	require.Equal(t, wire.FCI{AID: purse.AID, Version: wire.AppVersion, LifeCycle: wire.StateActive, CardID: cardID, Currency: eur,
		KeyVersions: [3]byte{1, 1, 1}, PINFreeLimit: 2500, LogCapacity: 16}, fci)
	require.Equal(t, wire.PurseData{MaxBalance: 100000, Currency: eur, LifeCycle: wire.StateActive, PINTries: 3}, k.purseData())
	require.Equal(t, "9000", k.hexTx("00A4040C0B F000000001505552534501"), "P2 0C: no FCI")
	for _, tc := range []struct{ cmd, want string }{
		{"805C010000", "6A86"},
		{"805C00000100", "6700"},
		{"845C000000", "6882"},
		{"905C000000", "6884"},
		{"A05C000000", "6E00"},
		{"80FF000000", "6D00"},
		{"00A4000000", "6A86"},
		{"0C20008000", "6882"},
		{"2020008000", "6E00"},
		{"00CA000000", "6D00"},
		{"80E2880000", "6D00"},
	} {
		require.Equal(t, tc.want, k.hexTx(tc.cmd), tc.cmd)
	}
}

func TestLoadAndDebit(t *testing.T) {
	k := newCard(t)
	r, sw := k.load(5000)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, uint32(5000), r.BalanceAfter)
	d, sw := k.debit(350)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, uint32(4650), d.BalanceAfter)
	require.Equal(t, uint32(2), d.ATC)
	pd := k.purseData()
	require.Equal(t, uint32(4650), pd.Balance)
	require.Equal(t, uint32(2), pd.ATC)
	require.Equal(t, uint32(350), pd.OfflineTotal)
	// The records carry the TCs of the responses.
	rec, sw := k.proof(2)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, d.TC, rec.TC)
	rec, sw = k.proof(1)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, r.TC, rec.TC)
	// A load restarts the offline total.
	_, sw = k.load(1)
	require.Equal(t, apdu.SWNoError, sw)
	require.Zero(t, k.purseData().OfflineTotal)
	// Read-only commands between INITIALIZE and completion keep the session.
	s, sw := k.debitStart(100)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, wire.FlagSessionOpen, k.purseData().Flags)
	_, sw = k.send(wire.ReadLog(1))
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(wire.GetTransactionProof(3))
	require.Equal(t, apdu.SWNoError, sw)
	data, sw := k.send(s.cmd.Command())
	require.Equal(t, apdu.SWNoError, sw)
	dr, err := wire.ParseDebitResponse(data)
	require.NoError(t, err)
	s.checkM2(t, dr.M2)
}

// Limits and amounts (§4.3): the documented status word, nothing changed.
func TestValueRules(t *testing.T) {
	k := newCard(t)
	_, sw := k.load(50000)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.load(50000)
	require.Equal(t, apdu.SWNoError, sw)
	before := k.purseData()
	require.Equal(t, uint32(100000), before.Balance, "exactly the maximum")
	tid := terminalID
	for _, tc := range []struct {
		name string
		cmd  apdu.Command
		want apdu.SW
	}{
		{"load above max balance", wire.InitializeLoad{KeyVersion: 1, Amount: 1, Currency: eur, TerminalID: tid}.Command(), wire.SWMaxBalance},
		{"load above max load", wire.InitializeLoad{KeyVersion: 1, Amount: 50001, Currency: eur, TerminalID: tid}.Command(), wire.SWAmountLimit},
		{"load of 0", wire.InitializeLoad{KeyVersion: 1, Amount: 0, Currency: eur, TerminalID: tid}.Command(), apdu.ErrWrongData},
		{"load in USD", wire.InitializeLoad{KeyVersion: 1, Amount: 1, Currency: wire.Currency{0x08, 0x40}, TerminalID: tid}.Command(), apdu.ErrWrongData},
		{"load key version 2", wire.InitializeLoad{KeyVersion: 2, Amount: 1, Currency: eur, TerminalID: tid}.Command(), apdu.ErrReferenceUnusable},
		{"debit above max debit", wire.InitializeDebit{KeyVersion: 1, Amount: 10001, Currency: eur, TerminalID: tid}.Command(), wire.SWAmountLimit},
		{"debit of 0", wire.InitializeDebit{KeyVersion: 1, Amount: 0, Currency: eur, TerminalID: tid}.Command(), apdu.ErrWrongData},
		{"debit in USD", wire.InitializeDebit{KeyVersion: 1, Amount: 1, Currency: wire.Currency{0x08, 0x40}, TerminalID: tid}.Command(), apdu.ErrWrongData},
		{"debit key version 9", wire.InitializeDebit{KeyVersion: 9, Amount: 1, Currency: eur, TerminalID: tid}.Command(), apdu.ErrReferenceUnusable},
		{"debit above PIN-free limit without PIN", wire.InitializeDebit{KeyVersion: 1, Amount: 2501, Currency: eur, TerminalID: tid}.Command(), apdu.ErrSecurityStatus},
		{"INITIALIZE LOAD P1", apdu.Command{CLA: 0x80, INS: 0x40, P1: 1, Data: make([]byte, 23), Ne: 256}, apdu.ErrIncorrectP1P2},
		{"INITIALIZE LOAD Lc", apdu.Command{CLA: 0x80, INS: 0x40, Data: make([]byte, 22), Ne: 256}, apdu.ErrWrongLength},
		{"INITIALIZE DEBIT Lc", apdu.Command{CLA: 0x80, INS: 0x44, Data: make([]byte, 16), Ne: 256}, apdu.ErrWrongLength},
		{"INITIALIZE DEBIT P2", apdu.Command{CLA: 0x80, INS: 0x44, P2: 1, Data: make([]byte, 15), Ne: 256}, apdu.ErrIncorrectP1P2},
		{"CREDIT LOAD without session", wire.CreditLoad{DateTime: testDate}.Command(), apdu.ErrConditionsNotMet},
		{"DEBIT without session", wire.Debit{DateTime: testDate}.Command(), apdu.ErrConditionsNotMet},
		{"CREDIT LOAD Lc", apdu.Command{CLA: 0x80, INS: 0x42, Data: make([]byte, 18)}, apdu.ErrWrongLength},
		{"DEBIT P1", apdu.Command{CLA: 0x80, INS: 0x46, P1: 1, Data: make([]byte, 27)}, apdu.ErrIncorrectP1P2},
		{"CREDIT LOAD P2", apdu.Command{CLA: 0x80, INS: 0x42, P2: 1, Data: make([]byte, 19)}, apdu.ErrIncorrectP1P2},
		{"DEBIT Lc", apdu.Command{CLA: 0x80, INS: 0x46, Data: make([]byte, 28)}, apdu.ErrWrongLength},
	} {
		_, sw := k.send(tc.cmd)
		require.Equal(t, tc.want, sw, tc.name)
		require.Equal(t, before, k.purseData(), "%s changed nothing", tc.name)
	}

	// Insufficient funds and the offline limit.
	k2 := newCardWith(t, cardConfig{id: cardID, limits: wire.Limits{MaxBalance: 100000, MaxLoad: 50000, MaxDebit: 10000, PINFreeLimit: wire.NoLimit, OfflineLimit: 15000}})
	_, sw = k2.load(20000)
	require.Equal(t, apdu.SWNoError, sw)
	for _, amount := range []uint32{10000, 5000} {
		_, sw = k2.debit(amount)
		require.Equal(t, apdu.SWNoError, sw)
	}
	_, sw = k2.debitStart(1)
	require.Equal(t, wire.SWOfflineLimit, sw, "15000 debited since the load")
	_, sw = k2.load(100)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k2.debitStart(5101)
	require.Equal(t, wire.SWInsufficientFunds, sw, "balance 5100")
	r, sw := k2.debit(5100)
	require.Equal(t, apdu.SWNoError, sw)
	require.Zero(t, r.BalanceAfter, "down to exactly zero")
	_, sw = k2.debitStart(1)
	require.Equal(t, wire.SWInsufficientFunds, sw, "never negative")
}

// The purse stops before its ATC wraps (§4.1).
func TestATCExhaustion(t *testing.T) {
	k := newCard(t)
	_, sw := k.load(1000)
	require.Equal(t, apdu.SWNoError, sw)
	k.reload(setATC(t, k.image(), wire.MaxATC-1))
	k.mustSelect()
	r, sw := k.debit(10)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, wire.MaxATC, r.ATC, "the last ATC is used")
	_, sw = k.debitStart(10)
	require.Equal(t, wire.SWATCExhausted, sw)
	_, _, sw = k.loadStart(10)
	require.Equal(t, wire.SWATCExhausted, sw)
	pd := k.purseData()
	require.Equal(t, wire.MaxATC, pd.ATC)
	require.Equal(t, wire.StateActive, pd.LifeCycle, "still readable")
	_, sw = k.proof(wire.MaxATC)
	require.Equal(t, apdu.SWNoError, sw)
}

func TestLogIsCyclic(t *testing.T) {
	k := newCard(t)
	_, sw := k.load(50000)
	require.Equal(t, apdu.SWNoError, sw)
	tcs := map[uint32]wire.MAC{}
	for i := 0; i < 24; i++ {
		r, sw := k.debit(uint32(i + 1))
		require.Equal(t, apdu.SWNoError, sw)
		tcs[r.ATC] = r.TC
	}
	atc := k.purseData().ATC
	require.Equal(t, uint32(25), atc)
	for n := 1; n <= wire.LogCapacity; n++ {
		data, sw := k.send(wire.ReadLog(byte(n)))
		require.Equal(t, apdu.SWNoError, sw, "record %d", n)
		r, err := wire.ParseLogRecord(data)
		require.NoError(t, err)
		require.Equal(t, atc-uint32(n)+1, r.ATC, "record %d is ATC %d", n, atc-uint32(n)+1)
		require.Equal(t, tcs[r.ATC], r.TC)
		require.True(t, wire.VerifyTC(k.keys.TC.Key, cardID, r))
	}
	for _, tc := range []struct{ cmd, want string }{
		{"00B211C400", "6A83"},
		{"00B200C400", "6A86"},
		{"00B201C500", "6A86"},
		{"00B201C40100", "6700"},
	} {
		require.Equal(t, tc.want, k.hexTx(tc.cmd), tc.cmd)
	}
	for _, atc := range []uint32{0, 9, 26, 0xFFFFFFFF} {
		_, sw := k.proof(atc)
		require.Equal(t, apdu.ErrRefDataNotFound, sw, "ATC %d", atc)
	}
	_, sw = k.proof(10)
	require.Equal(t, apdu.SWNoError, sw, "the oldest record kept")
	require.Equal(t, "6700", k.hexTx("805A00000300000100"))
	require.Equal(t, "6A86", k.hexTx("805A0100040000000100"))

	// Fewer records than asked.
	k2 := newCard(t)
	_, sw = k2.load(1)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, "6A83", k2.hexTx("00B202C400"))
}

func TestPIN(t *testing.T) {
	k := newCard(t)
	_, sw := k.load(10000)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, "63C3", k.hexTx("00200080"), "status: not verified, 3 tries")
	_, sw = k.debitStart(3000)
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	require.Equal(t, apdu.SW(0x63C2), k.verifyPIN("0000"))
	require.Equal(t, apdu.SWNoError, k.verifyPIN("1234"))
	require.Equal(t, byte(3), k.purseData().PINTries, "reset by the right PIN")
	require.Equal(t, wire.FlagPINVerified, k.purseData().Flags)
	_, sw = k.debit(3000)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.debitStart(3000)
	require.Equal(t, apdu.ErrSecurityStatus, sw, "the verification was used by the debit")
	_, sw = k.debit(100)
	require.Equal(t, apdu.SWNoError, sw, "below the PIN-free limit")

	// A wrong PIN withdraws the verification; SELECT too.
	require.Equal(t, apdu.SWNoError, k.verifyPIN("1234"))
	require.Equal(t, apdu.SW(0x63C2), k.verifyPIN("9999"))
	require.Equal(t, "63C2", k.hexTx("00200080"))
	require.Equal(t, apdu.SWNoError, k.verifyPIN("1234"))
	k.mustSelect()
	require.Equal(t, "63C3", k.hexTx("00200080"))

	// The PIN is per logical channel.
	require.Equal(t, apdu.SWNoError, k.verifyPIN("1234"))
	require.Equal(t, "019000", k.hexTx("0070000001"))
	require.Equal(t, "9000", k.hexTx("01A4040C0B F000000001505552534501"))
	require.Equal(t, "63C3", k.hexTx("01200080"))
	require.Equal(t, "9000", k.hexTx("00200080"))

	for _, tc := range []struct{ cmd, want string }{
		{"0020008108241234FFFFFFFFFF", "6A86"},
		{"0020018008241234FFFFFFFFFF", "6A86"},
		{"0020008004241234FF", "6700"},
		{"0020008008141234FFFFFFFFFF", "6A80"},
		{"002000800824123AFFFFFFFFFF", "6A80"},
	} {
		require.Equal(t, tc.want, k.hexTx(tc.cmd), tc.cmd)
	}
	require.Equal(t, byte(3), k.purseData().PINTries, "malformed blocks cost no try")
}

func TestSetStatus(t *testing.T) {
	k := newCard(t)
	_, sw := k.load(1000)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, apdu.SWNoError, k.setStatus(wire.OpBlock))
	data, sw := k.send(wire.Select(purse.AID))
	require.Equal(t, wire.SWBlockedSelected, sw)
	fci, err := wire.ParseFCI(data)
	require.NoError(t, err)
	require.Equal(t, wire.StateBlocked, fci.LifeCycle)
	_, sw = k.debitStart(1)
	require.Equal(t, wire.SWPurseBlocked, sw)
	_, _, sw = k.loadStart(1)
	require.Equal(t, wire.SWPurseBlocked, sw)
	pd := k.purseData()
	require.Equal(t, wire.StateBlocked, pd.LifeCycle)
	_, sw = k.proof(1)
	require.Equal(t, apdu.SWNoError, sw, "a blocked purse can still be read")
	require.Equal(t, apdu.ErrConditionsNotMet, k.setStatus(wire.OpBlock), "already blocked")
	require.Equal(t, apdu.SWNoError, k.setStatus(wire.OpUnblock))
	require.Equal(t, apdu.ErrConditionsNotMet, k.setStatus(wire.OpUnblock), "not blocked")
	_, sw = k.debit(1)
	require.Equal(t, apdu.SWNoError, sw)

	// Blocking on another channel ends a session in progress here: the
	// completion sees the purse changed.
	s, sw := k.debitStart(1)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, "019000", k.hexTx("0070000001"))
	require.Equal(t, "9000", k.hexTx("01A4040C0B F000000001505552534501"))
	other := &card{t: t, c: k.c, id: k.id, keys: k.keys}
	chal, sw := other.send(apdu.Command{CLA: 0x01, INS: 0x84, Ne: 8})
	require.Equal(t, apdu.SWNoError, sw)
	var c wire.Nonce
	copy(c[:], chal)
	sk, err := wire.StatusSessionKey(k.keys.Load.Key, k.id, c)
	require.NoError(t, err)
	mac, err := wire.ComputeStatusMAC(sk, k.id, 2, wire.OpBlock, 1)
	require.NoError(t, err)
	cmd := wire.SetStatus(wire.OpBlock, 1, mac)
	cmd.CLA = 0x81
	_, sw = other.send(cmd)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(s.cmd.Command())
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
	require.Equal(t, uint32(999), k.purseData().Balance)

	// PIN reset.
	require.Equal(t, apdu.SWNoError, k.setStatus(wire.OpUnblock))
	for i := 0; i < 3; i++ {
		k.verifyPIN("0000")
	}
	require.Equal(t, apdu.ErrAuthBlocked, k.verifyPIN("1234"))
	require.Equal(t, apdu.SWNoError, k.setStatus(wire.OpResetPIN))
	require.Equal(t, apdu.SWNoError, k.verifyPIN("1234"))

	// Errors.
	for _, tc := range []struct{ cmd, want string }{
		{"8048040108 0000000000000000", "6A86"},
		{"8048000108 0000000000000000", "6A86"},
		{"8048010107 00000000000000", "6700"},
		{"8048010108 0000000000000000", "6985"}, // no challenge
		{"0084000004", "6700"},
		{"0084010008", "6A86"},
		{"008400000100", "6700"},
	} {
		require.Equal(t, tc.want, k.hexTx(tc.cmd), tc.cmd)
	}
	// Wrong key version, then a challenge consumed by another command.
	k.hexTx("0084000008")
	require.Equal(t, "6984", k.hexTx("8048010208 0000000000000000"))
	k.hexTx("0084000008")
	k.purseData()
	require.Equal(t, "6985", k.hexTx("8048010108 0000000000000000"), "the challenge was for the previous command only")
}

// Two logical channels cannot both spend the same ATC (§3.1, §11).
func TestConcurrentSessions(t *testing.T) {
	k := newCard(t)
	_, sw := k.load(1000)
	require.Equal(t, apdu.SWNoError, sw)
	s0, sw := k.debitStart(100)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, "019000", k.hexTx("0070000001"))
	require.Equal(t, "9000", k.hexTx("01A4040C0B F000000001505552534501"))
	// Channel 1 debits first.
	other := &card{t: t, c: k.c, id: k.id, keys: k.keys, seq: 100}
	data, sw := other.send(apdu.Command{CLA: 0x81, INS: 0x44, Data: wire.InitializeDebit{KeyVersion: 1, Amount: 200, Currency: eur, TerminalID: terminalID}.Bytes(), Ne: 256})
	require.Equal(t, apdu.SWNoError, sw)
	r, err := wire.ParseInitializeDebitResponse(data)
	require.NoError(t, err)
	require.Equal(t, s0.data.ATC, r.ATC, "both sessions predict the same ATC")
	sk, err := wire.DebitSessionKey(k.keys.Debit.Key, k.id, r.ATC, r.CardNonce, wire.Nonce{9})
	require.NoError(t, err)
	d := wire.DebitData{CardID: k.id, ATC: r.ATC, Amount: 200, Currency: eur, Balance: r.Balance, TerminalID: terminalID, TSMSeq: 1, DateTime: testDate}
	m1, err := wire.ComputeM1(sk, d)
	require.NoError(t, err)
	cmd := wire.Debit{TSMNonce: wire.Nonce{9}, TSMSeq: 1, DateTime: testDate, M1: m1}.Command()
	cmd.CLA = 0x81
	_, sw = other.send(cmd)
	require.Equal(t, apdu.SWNoError, sw)
	// Channel 0's session is stale.
	_, sw = k.send(s0.cmd.Command())
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
	pd := k.purseData()
	require.Equal(t, uint32(800), pd.Balance)
	require.Equal(t, uint32(2), pd.ATC)
}

// A reset between INITIALIZE and its completion aborts the operation:
// nothing was persisted (§3.1).
func TestResetBetweenInitializeAndComplete(t *testing.T) {
	for _, kind := range []string{"load", "debit"} {
		t.Run(kind, func(t *testing.T) {
			k := newCard(t)
			_, sw := k.load(1000)
			require.Equal(t, apdu.SWNoError, sw)
			before := k.purseData()
			img := k.image()
			w := k.c.Writes()
			var cmd apdu.Command
			if kind == "load" {
				cl, _, sw := k.loadStart(100)
				require.Equal(t, apdu.SWNoError, sw)
				cmd = cl.Command()
			} else {
				s, sw := k.debitStart(100)
				require.Equal(t, apdu.SWNoError, sw)
				cmd = s.cmd.Command()
			}
			require.Equal(t, w, k.c.Writes(), "INITIALIZE writes nothing")
			require.Equal(t, string(img), string(k.image()), "the card image is unchanged")
			k.c.Reset(true)
			k.mustSelect()
			_, sw = k.send(cmd)
			require.Equal(t, apdu.ErrConditionsNotMet, sw)
			require.Equal(t, before, k.purseData())
		})
	}
}

func TestStatusWordTableCoversAnswers(t *testing.T) {
	// Every status word the card answered in these tests is in the table
	// of its command (docs/purse.md §7), checked on a sample.
	for _, tc := range []struct {
		ins byte
		sw  apdu.SW
	}{
		{wire.INSInitializeDebit, wire.SWOfflineLimit}, {wire.INSInitializeLoad, wire.SWMaxBalance},
		{wire.INSDebit, apdu.ErrSecurityStatus}, {wire.INSCreditLoad, apdu.ErrSecurityStatus},
		{wire.INSGetTransactionProof, apdu.ErrRefDataNotFound}, {wire.INSReadRecord, apdu.ErrRecordNotFound},
		{wire.INSSelect, wire.SWBlockedSelected}, {wire.INSSetStatus, apdu.ErrReferenceUnusable},
		{wire.INSVerify, 0x63C1}, {wire.INSInitializeLoad, wire.SWATCExhausted},
	} {
		require.NotEqual(t, tc.sw.String(), wire.Describe(tc.ins, tc.sw), fmt.Sprintf("%02X %04X", tc.ins, uint16(tc.sw)))
	}
}
