package purse_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	wire "github.com/valuechip/valuechip/apdu/purse"
)

// Security (docs/purse.md §5.4, §9.5): forged, replayed or mismatched
// cryptograms are refused with the documented status word and change
// nothing — not the balance, not the ATC, not the log, not the card
// image.

// unchanged asserts the card's persistent memory is what it was.
func (k *card) unchanged(before []byte) {
	k.t.Helper()
	after := k.image()
	require.Equal(k.t, string(withoutWrites(k.t, before)), string(withoutWrites(k.t, after)), "persistent memory changed")
}

// withoutWrites drops the image's write counter (reads do not write,
// but the count is not state).
func withoutWrites(t testing.TB, img []byte) []byte {
	i := bytes.Index(img, []byte(`"persistent_writes"`))
	require.GreaterOrEqual(t, i, 0)
	j := bytes.IndexByte(img[i:], ',')
	return append(append([]byte{}, img[:i]...), img[i+j:]...)
}

func TestForgedAndTamperedDebit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(k *card, s *debitSession)
	}{
		{"forged M1", func(_ *card, s *debitSession) { s.cmd.M1 = wire.MAC{1, 2, 3, 4, 5, 6, 7, 8} }},
		{"one bit of M1", func(_ *card, s *debitSession) { s.cmd.M1[7] ^= 1 }},
		{"TSM nonce changed in transit", func(_ *card, s *debitSession) { s.cmd.TSMNonce[0] ^= 1 }},
		{"TSM sequence changed in transit", func(_ *card, s *debitSession) { s.cmd.TSMSeq++ }},
		{"date changed in transit", func(_ *card, s *debitSession) { s.cmd.DateTime[6] = 0x01 }},
		{"M1 for a smaller amount", func(k *card, s *debitSession) { s.data.Amount = 10; s.cmd.M1 = m1(k, s) }},
		{"M1 over a balance the card did not report", func(k *card, s *debitSession) { s.data.Balance += 1000; s.cmd.M1 = m1(k, s) }},
		{"M1 for another terminal", func(k *card, s *debitSession) { s.data.TerminalID[0] ^= 1; s.cmd.M1 = m1(k, s) }},
		{"M1 for another ATC", func(k *card, s *debitSession) { s.data.ATC++; s.cmd.M1 = m1(k, s) }},
		{"M1 in another currency", func(k *card, s *debitSession) { s.data.Currency = wire.Currency{0x08, 0x40}; s.cmd.M1 = m1(k, s) }},
		{"M1 with another card's key", func(k *card, s *debitSession) {
			other, err := masters.Diversify(wire.CardID{9})
			require.NoError(k.t, err)
			sk, err := wire.DebitSessionKey(other.Debit.Key, k.id, s.data.ATC, nonceOf(k, s), s.cmd.TSMNonce)
			require.NoError(k.t, err)
			s.cmd.M1, err = wire.ComputeM1(sk, s.data)
			require.NoError(k.t, err)
		}},
		{"M1 with the master key instead of the card key", func(k *card, s *debitSession) {
			sk, err := wire.DebitSessionKey(masters.Debit.Key, k.id, s.data.ATC, nonceOf(k, s), s.cmd.TSMNonce)
			require.NoError(k.t, err)
			s.cmd.M1, err = wire.ComputeM1(sk, s.data)
			require.NoError(k.t, err)
		}},
		{"M1 with the load key", func(k *card, s *debitSession) {
			sk, err := wire.DebitSessionKey(k.keys.Load.Key, k.id, s.data.ATC, nonceOf(k, s), s.cmd.TSMNonce)
			require.NoError(k.t, err)
			s.cmd.M1, err = wire.ComputeM1(sk, s.data)
			require.NoError(k.t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newCard(t)
			_, sw := k.load(5000)
			require.Equal(t, apdu.SWNoError, sw)
			before := k.image()
			pd := k.purseData()
			s, sw := k.debitStart(3500 - 1000) // 2500: the PIN-free limit
			require.Equal(t, apdu.SWNoError, sw)
			good := s.cmd
			tc.tamper(k, &s)
			_, sw = k.send(s.cmd.Command())
			require.Equal(t, apdu.ErrSecurityStatus, sw)
			require.Equal(t, pd, k.purseData())
			k.unchanged(before)
			// The session is gone: not even the right M1 works now.
			_, sw = k.send(good.Command())
			require.Equal(t, apdu.ErrConditionsNotMet, sw)
			k.unchanged(before)
		})
	}
}

// m1 recomputes M1 over a tampered s.data with the right session key.
func m1(k *card, s *debitSession) wire.MAC {
	k.t.Helper()
	m, err := wire.ComputeM1(s.sk, s.data)
	require.NoError(k.t, err)
	return m
}

// nonceOf is the card nonce of the session (from its INITIALIZE DEBIT
// response).
func nonceOf(k *card, _ *debitSession) wire.Nonce { return k.lastCardNonce }

func TestForgedAndTamperedLoad(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(k *card, cl *wire.CreditLoad, d *wire.LoadData)
	}{
		{"forged S2", func(_ *card, cl *wire.CreditLoad, _ *wire.LoadData) { cl.S2 = wire.MAC{0xFF} }},
		{"one bit of S2", func(_ *card, cl *wire.CreditLoad, _ *wire.LoadData) { cl.S2[0] ^= 0x80 }},
		{"authorisation reference changed", func(_ *card, cl *wire.CreditLoad, _ *wire.LoadData) { cl.AuthRef++ }},
		{"date changed", func(_ *card, cl *wire.CreditLoad, _ *wire.LoadData) { cl.DateTime[5] = 0x31 }},
		{"server authorised a smaller amount", func(k *card, cl *wire.CreditLoad, d *wire.LoadData) {
			d.Amount = 500
			cl.S2 = s2(k, d)
		}},
		{"S2 computed with the TC key", func(k *card, cl *wire.CreditLoad, d *wire.LoadData) {
			sk, err := wire.LoadSessionKey(k.keys.TC.Key, k.id, d.ATC, k.lastCardNonce, k.lastHostNonce)
			require.NoError(k.t, err)
			s1, err := wire.ComputeS1(sk, *d)
			require.NoError(k.t, err)
			cl.S2, err = wire.ComputeS2(sk, *d, s1)
			require.NoError(k.t, err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newCard(t)
			_, sw := k.load(1000)
			require.Equal(t, apdu.SWNoError, sw)
			before := k.image()
			pd := k.purseData()
			cl, d, sw := k.loadStart(5000)
			require.Equal(t, apdu.SWNoError, sw)
			good := cl
			tc.tamper(k, &cl, &d)
			_, sw = k.send(cl.Command())
			require.Equal(t, apdu.ErrSecurityStatus, sw)
			require.Equal(t, pd, k.purseData())
			k.unchanged(before)
			_, sw = k.send(good.Command())
			require.Equal(t, apdu.ErrConditionsNotMet, sw, "the session ended with the failed attempt")
			k.unchanged(before)
		})
	}
}

// s2 recomputes S2 over tampered data with the session's key.
func s2(k *card, d *wire.LoadData) wire.MAC {
	k.t.Helper()
	sk, err := wire.LoadSessionKey(k.keys.Load.Key, k.id, d.ATC, k.lastCardNonce, k.lastHostNonce)
	require.NoError(k.t, err)
	good := *d
	s1, err := wire.ComputeS1(sk, good)
	require.NoError(k.t, err)
	m, err := wire.ComputeS2(sk, *d, s1)
	require.NoError(k.t, err)
	return m
}

// A completion replayed — in the same session, or in a new session for
// the same amount — is refused (§5.4).
func TestReplay(t *testing.T) {
	k := newCard(t)
	cl, _, sw := k.loadStart(5000)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(cl.Command())
	require.Equal(t, apdu.SWNoError, sw)
	before := k.image()
	_, sw = k.send(cl.Command())
	require.Equal(t, apdu.ErrConditionsNotMet, sw, "the same CREDIT LOAD again")
	_, _, sw = k.loadStart(5000)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(cl.Command())
	require.Equal(t, apdu.ErrSecurityStatus, sw, "an old S2 in a new session")
	k.unchanged(before)

	s, sw := k.debitStart(100)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(s.cmd.Command())
	require.Equal(t, apdu.SWNoError, sw)
	before = k.image()
	_, sw = k.send(s.cmd.Command())
	require.Equal(t, apdu.ErrConditionsNotMet, sw, "the same DEBIT again")
	_, sw = k.debitStart(100)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(s.cmd.Command())
	require.Equal(t, apdu.ErrSecurityStatus, sw, "an old M1 in a new session")
	k.unchanged(before)
	// A completion of the other kind does not fit the session.
	_, sw = k.debitStart(100)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(cl.Command())
	require.Equal(t, apdu.ErrConditionsNotMet, sw)
	k.unchanged(before)
}

func TestWrongKeyVersion(t *testing.T) {
	k := newCard(t)
	_, sw := k.load(1000)
	require.Equal(t, apdu.SWNoError, sw)
	before := k.image()
	for _, kvn := range []byte{0, 2, 0xFF} {
		_, sw = k.send(wire.InitializeLoad{KeyVersion: kvn, Amount: 1, Currency: eur, TerminalID: terminalID}.Command())
		require.Equal(t, apdu.ErrReferenceUnusable, sw)
		_, sw = k.send(wire.InitializeDebit{KeyVersion: kvn, Amount: 1, Currency: eur, TerminalID: terminalID}.Command())
		require.Equal(t, apdu.ErrReferenceUnusable, sw)
		k.hexTx("0084000008")
		_, sw = k.send(wire.SetStatus(wire.OpBlock, kvn, wire.MAC{}))
		require.Equal(t, apdu.ErrReferenceUnusable, sw)
	}
	k.unchanged(before)
}

func TestForgedSetStatus(t *testing.T) {
	k := newCard(t)
	before := k.image()
	chal, sw := k.send(wire.GetChallenge())
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(wire.SetStatus(wire.OpBlock, 1, wire.MAC{1}))
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	k.unchanged(before)
	// A genuine MAC for an old challenge is refused.
	var c wire.Nonce
	copy(c[:], chal)
	sk, err := wire.StatusSessionKey(k.keys.Load.Key, k.id, c)
	require.NoError(t, err)
	mac, err := wire.ComputeStatusMAC(sk, k.id, 0, wire.OpBlock, 1)
	require.NoError(t, err)
	_, sw = k.send(wire.GetChallenge())
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.send(wire.SetStatus(wire.OpBlock, 1, mac))
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	// And a MAC for another operation.
	require.Equal(t, apdu.SWNoError, k.setStatus(wire.OpBlock))
	require.Equal(t, wire.StateBlocked, k.purseData().LifeCycle)
}

// PIN brute force: the counter is persistent, survives power loss and
// reloading the image, and blocks after the limit.
func TestPINBruteForce(t *testing.T) {
	k := newCard(t)
	_, sw := k.load(10000)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, apdu.SW(0x63C2), k.verifyPIN("0000"))
	k.c.PowerOff()
	k.reload(k.image())
	k.mustSelect()
	require.Equal(t, apdu.SW(0x63C1), k.verifyPIN("1111"))
	require.Equal(t, apdu.SW(0x63C0), k.verifyPIN("2222"))
	before := k.image()
	for _, pin := range []string{"1234", "3333", "1234"} {
		require.Equal(t, apdu.ErrAuthBlocked, k.verifyPIN(pin), "blocked, even for the right PIN")
	}
	require.Equal(t, "6983", k.hexTx("00200080"))
	k.unchanged(before)
	_, sw = k.debitStart(3000)
	require.Equal(t, apdu.ErrAuthBlocked, sw, "debits above the PIN-free limit are impossible")
	_, sw = k.debit(100)
	require.Equal(t, apdu.SWNoError, sw, "below it the purse still works")
	require.Zero(t, k.purseData().PINTries)
}

// Counter rollback via an old card image (§9.5). The card cannot detect
// that its image was restored; what it guarantees is that old
// authorisations cannot be replayed on it, and the transactions of the
// rolled-back card reuse ATCs the server has already seen — which the
// server's ledger detects.
func TestImageRollback(t *testing.T) {
	ledger := newLedger()
	k := newCard(t)
	r, sw := k.load(5000)
	require.Equal(t, apdu.SWNoError, sw)
	ledger.add(t, k, r.ATC)
	old := k.image() // the holder keeps a copy of the card image: balance 5000, ATC 1

	s, sw := k.debitStart(2000)
	require.Equal(t, apdu.SWNoError, sw)
	data, sw := k.send(s.cmd.Command())
	require.Equal(t, apdu.SWNoError, sw)
	d, err := wire.ParseDebitResponse(data)
	require.NoError(t, err)
	require.Empty(t, ledger.add(t, k, d.ATC), "first use of ATC 2")

	// Restore the old image: the card is back at balance 5000, ATC 1.
	k.reload(old)
	k.mustSelect()
	pd := k.purseData()
	require.Equal(t, uint32(5000), pd.Balance)
	require.Equal(t, uint32(1), pd.ATC)

	// The old DEBIT cannot be replayed: the new session has a new card
	// nonce (the random generator is not in the image).
	s2, sw := k.debitStart(2000)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, s.data.ATC, s2.data.ATC, "the rolled-back card reuses ATC 2")
	_, sw = k.send(s.cmd.Command())
	require.Equal(t, apdu.ErrSecurityStatus, sw)
	require.Equal(t, pd, k.purseData())

	// A new, genuine debit goes through on the card: the server sees a
	// second, different record for ATC 2 — a cloned or rolled-back card.
	d2, sw := k.debit(2000)
	require.Equal(t, apdu.SWNoError, sw)
	require.Equal(t, d.ATC, d2.ATC)
	require.NotEqual(t, d.TC, d2.TC)
	require.Equal(t, []uint32{2}, ledger.add(t, k, d2.ATC), "the server detects the reused ATC")
}

// ledger is the money server's view (docs/purse.md §12): every record
// received per ATC, TCs verified.
type ledger struct{ records map[uint32][]byte }

func newLedger() *ledger { return &ledger{records: map[uint32][]byte{}} }

// add fetches the record of atc from the card (as a terminal batch would
// carry it), verifies its TC and returns the ATCs found reused.
func (l *ledger) add(t *testing.T, k *card, atc uint32) []uint32 {
	rec, sw := k.proof(atc) // verifies the TC under K_TC
	require.Equal(t, apdu.SWNoError, sw)
	b := rec.Bytes()
	if prev, ok := l.records[atc]; ok && !bytes.Equal(prev, b) {
		return []uint32{atc}
	}
	l.records[atc] = b
	return nil
}
