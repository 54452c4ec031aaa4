package purse_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/purse"
)

// Anti-tearing (docs/purse.md §9): power is cut after every persistent
// write of CREDIT LOAD and DEBIT, and during the recovery that follows.
// After power-up the card must be consistent — the value change happened
// completely (with a verifiable proof) or not at all — its card image must
// still load, and the terminal must be able to tell which by GET
// TRANSACTION PROOF.

// pending is a completion command the terminal sent, with what it needs
// to recover (§9.4).
type pending struct {
	kind    byte
	amount  uint32
	atc     uint32
	balance uint32
	ref     uint32
	cmd     apdu.Command
	debit   debitSession
	hostMAC wire.MAC
}

func (k *card) prepare(kind byte, amount uint32) pending {
	k.t.Helper()
	if kind == wire.TypeLoad {
		cl, d, sw := k.loadStart(amount)
		require.Equal(k.t, apdu.SWNoError, sw)
		return pending{kind: kind, amount: amount, atc: d.ATC, balance: d.Balance, ref: d.AuthRef, cmd: cl.Command(), hostMAC: cl.S2}
	}
	s, sw := k.debitStart(amount)
	require.Equal(k.t, apdu.SWNoError, sw)
	return pending{kind: kind, amount: amount, atc: s.data.ATC, balance: s.data.Balance, ref: s.cmd.TSMSeq, cmd: s.cmd.Command(), debit: s, hostMAC: s.cmd.M1}
}

func (p pending) after() uint32 {
	if p.kind == wire.TypeLoad {
		return p.balance + p.amount
	}
	return p.balance - p.amount
}

// resolve is the terminal's recovery (§9.4): after SELECT, GET
// TRANSACTION PROOF(ATC') says whether the value change happened; a
// record is checked completely — TC under K_TC, fields, and for a debit
// the card MAC as M2 under the TSM's session key.
func (k *card) resolve(p pending) bool {
	k.t.Helper()
	rec, sw := k.proof(p.atc)
	if sw == apdu.ErrRefDataNotFound {
		return false
	}
	require.Equal(k.t, apdu.SWNoError, sw)
	require.Equal(k.t, p.kind, rec.Type)
	require.Equal(k.t, p.amount, rec.Amount)
	require.Equal(k.t, p.after(), rec.BalanceAfter)
	require.Equal(k.t, p.ref, rec.Reference)
	require.Equal(k.t, p.hostMAC, rec.HostMAC)
	if p.kind == wire.TypeDebit {
		p.debit.checkM2(k.t, rec.CardMAC)
	}
	return true
}

// setupTearCard is a card with some history (a load and a debit), so
// that tears hit a purse whose log and offline total are not empty.
func setupTearCard(t testing.TB, opts ...chip.Option) *card {
	k := newCard(t, opts...)
	_, sw := k.load(20000)
	require.Equal(t, apdu.SWNoError, sw)
	_, sw = k.debit(700)
	require.Equal(t, apdu.SWNoError, sw)
	return k
}

// writesOf counts the persistent writes of one completion.
func writesOf(t *testing.T, kind byte) uint64 {
	k := setupTearCard(t)
	p := k.prepare(kind, 1000)
	before := k.c.Writes()
	_, sw := k.send(p.cmd)
	require.Equal(t, apdu.SWNoError, sw)
	return k.c.Writes() - before
}

func TestTearingAtEveryWrite(t *testing.T) {
	for _, kind := range []byte{wire.TypeLoad, wire.TypeDebit} {
		name := map[byte]string{wire.TypeLoad: "load", wire.TypeDebit: "debit"}[kind]
		writes := writesOf(t, kind)
		require.Equal(t, uint64(5), writes, "journal, 2 transaction writes, commit mark, clear")
		// n = 0: power lost at the APDU boundary, before the completion
		// reached the card.
		for n := uint64(0); n <= writes; n++ {
			for _, viaImage := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/write%d/image=%v", name, n, viaImage), func(t *testing.T) {
					k := setupTearCard(t)
					before := k.purseData()
					p := k.prepare(kind, 1000)
					if n == 0 {
						k.c.PowerOff()
					} else {
						k.c.TearAfter(n)
						out := k.raw(mustBytes(t, p.cmd))
						require.Nil(t, out, "no answer once power is cut")
						require.False(t, k.c.Powered())
					}
					if viaImage {
						k.reload(k.image()) // the torn image loads
					} else {
						k.c.PowerOn()
					}
					k.mustSelect()
					happened := k.resolve(p)
					require.Equal(t, n >= 1, happened, "the journal write is the commit point")
					after := k.purseData()
					require.Zero(t, after.Flags&wire.FlagJournalPending)
					if happened {
						require.Equal(t, p.after(), after.Balance, "nothing lost, nothing created")
						require.Equal(t, p.atc, after.ATC)
						require.Equal(t, n < writes, after.Flags&wire.FlagRecovered != 0, "completed by recovery unless torn after the clear")
					} else {
						require.Equal(t, before, after)
					}
					// The purse works on: the next transaction uses the next ATC.
					r, sw := k.debit(1)
					require.Equal(t, apdu.SWNoError, sw)
					require.Equal(t, after.ATC+1, r.ATC)
					require.Zero(t, k.purseData().Flags&wire.FlagRecovered, "cleared by the next value change")
				})
			}
		}
	}
}

// A tear during recovery is recovered the same way (§9.3).
func TestTearingDuringRecovery(t *testing.T) {
	for _, kind := range []byte{wire.TypeLoad, wire.TypeDebit} {
		for n := uint64(1); n < 5; n++ {
			// Count the recovery's writes.
			probe := setupTearCard(t)
			p := probe.prepare(kind, 1000)
			probe.c.TearAfter(n)
			require.Nil(t, probe.raw(mustBytes(t, p.cmd)))
			probe.c.PowerOn()
			w0 := probe.c.Writes()
			probe.mustSelect()
			recWrites := probe.c.Writes() - w0
			require.Equal(t, uint64(4), recWrites, "state, log slot, commit mark, journal delete")
			for m := uint64(1); m <= recWrites; m++ {
				k := setupTearCard(t)
				p := k.prepare(kind, 1000)
				k.c.TearAfter(n)
				require.Nil(t, k.raw(mustBytes(t, p.cmd)))
				k.c.PowerOn()
				k.c.TearAfter(m)
				require.Nil(t, k.raw(mustBytes(t, wire.Select(purse.AID))), "torn during recovery")
				k.reload(k.image())
				k.mustSelect()
				require.True(t, k.resolve(p), "kind %02X write %d recovery write %d", kind, n, m)
				pd := k.purseData()
				require.Equal(t, p.after(), pd.Balance)
				require.Equal(t, p.atc, pd.ATC)
				require.Equal(t, wire.FlagRecovered, pd.Flags)
			}
		}
	}
}

// A journal that is not a complete, consistent one is discarded (§9.3).
func TestIncompleteJournalDiscarded(t *testing.T) {
	k := setupTearCard(t)
	before := k.purseData()
	p := k.prepare(wire.TypeDebit, 1000)
	k.c.TearAfter(1)
	require.Nil(t, k.raw(mustBytes(t, p.cmd)))
	img := k.image()
	for name, edit := range map[string]func(string) string{
		"bad CRC":     func(j string) string { return j[:len(j)-2] + fmt.Sprintf("%02x", 0xFF^hexByte(j[len(j)-2:])) },
		"truncated":   func(j string) string { return j[:len(j)-8] },
		"stale ATC":   func(j string) string { return j },
		"unparseable": func(string) string { return "00" },
	} {
		t.Run(name, func(t *testing.T) {
			edited := editRecord(t, img, "journal", edit)
			if name == "stale ATC" {
				edited = setATC(t, edited, before.ATC+5) // the journal is for an ATC long past
			}
			k.reload(edited)
			k.mustSelect()
			require.False(t, k.resolve(p), "discarded: the value change did not happen")
			pd := k.purseData()
			require.Zero(t, pd.Flags&(wire.FlagJournalPending|wire.FlagRecovered))
			if name != "stale ATC" {
				require.Equal(t, before, pd)
			}
		})
	}
}

func hexByte(s string) byte {
	var b byte
	_, _ = fmt.Sscanf(s, "%02x", &b)
	return b
}

// Personalisation is atomic under tearing: the purse is PERSONALISING or
// ACTIVE, never in between.
func TestTearingPersonalisation(t *testing.T) {
	probe := newInstalledChip(t)
	w0 := probe.Writes()
	personalize(t, probe, personalization(t, cardID, testLimits))
	writes := probe.Writes() - w0
	require.Greater(t, writes, uint64(20))
	p := personalization(t, cardID, testLimits)
	cmds, err := p.StoreData()
	require.NoError(t, err)
	for n := uint64(1); n <= writes; n++ {
		c := newInstalledChip(t)
		c.TearAfter(n)
		func() {
			defer func() { _ = recover() }() // Factory calls unwind like a command
			for _, cmd := range cmds {
				c.Factory().Personalize(purse.AID, cmd.P1, cmd.P2, cmd.Data)
			}
		}()
		c.TearAfter(0)
		c.PowerOn()
		k := &card{t: t, c: c, id: cardID, keys: p.Keys}
		fci := k.mustSelect()
		if fci.LifeCycle == wire.StateActive {
			require.Equal(t, wire.PurseData{MaxBalance: 100000, Currency: eur, LifeCycle: wire.StateActive, PINTries: 3}, k.purseData())
			_, sw := k.load(10)
			require.Equal(t, apdu.SWNoError, sw)
			continue
		}
		require.Equal(t, wire.StatePersonalising, fci.LifeCycle)
		_, sw := k.send(wire.GetPurseData())
		require.Equal(t, apdu.ErrConditionsNotMet, sw)
		personalize(t, c, p) // the issuer retries
		require.Equal(t, wire.StateActive, k.mustSelect().LifeCycle, "tear at write %d", n)
	}
}

// The PIN try counter is written before the comparison: a tear cannot
// save a try (§3.12).
func TestTearingVerify(t *testing.T) {
	k := newCard(t)
	k.c.TearAfter(1)
	require.Nil(t, k.raw(mustBytes(t, wire.Verify(mustPIN("0000")))))
	k.c.PowerOn()
	k.mustSelect()
	require.Equal(t, byte(2), k.purseData().PINTries)
	// A right PIN torn after the decrement but before the reset.
	k.c.TearAfter(1)
	require.Nil(t, k.raw(mustBytes(t, wire.Verify(mustPIN("1234")))))
	k.c.PowerOn()
	k.mustSelect()
	require.Equal(t, byte(1), k.purseData().PINTries)
	require.Equal(t, apdu.SWNoError, k.verifyPIN("1234"))
	require.Equal(t, byte(3), k.purseData().PINTries)
}

// TestRandomTearing runs thousands of seeded random transactions with
// power cut at random writes (including during recovery), lost
// responses, power cycles and image reloads, and checks after each that
// the card agrees with the terminal/server model: balance, ATC
// (monotonic), and every provable transaction.
func TestRandomTearing(t *testing.T) {
	iterations := 20000
	if testing.Short() {
		iterations = 500
	}
	seed := uint64(20250601)
	rng := rand.New(rand.NewPCG(seed, 7))
	k := newCard(t, chip.WithRandom(rand.NewChaCha8([32]byte{1, 2, 3})))
	lim := testLimits
	var balance, atc uint32
	deadline := time.Now().Add(10 * time.Second)
	var tears, happened, lost, reloads int
	for i := 0; i < iterations && time.Now().Before(deadline); i++ {
		// Choose a transaction the model says is allowed.
		kind := wire.TypeDebit
		if balance == 0 || rng.IntN(3) == 0 {
			kind = wire.TypeLoad
		}
		var amount uint32
		if kind == wire.TypeLoad {
			room := min(lim.MaxBalance-balance, lim.MaxLoad)
			if room == 0 {
				kind = wire.TypeDebit
			} else {
				amount = 1 + rng.Uint32N(room)
			}
		}
		if kind == wire.TypeDebit {
			amount = 1 + rng.Uint32N(min(balance, lim.MaxDebit))
			if off := k.purseData().OfflineTotal; uint64(off)+uint64(amount) > uint64(lim.OfflineLimit) {
				_, sw := k.debitStart(amount)
				require.Equal(t, wire.SWOfflineLimit, sw, "iteration %d", i)
				kind, amount = wire.TypeLoad, 1
				if balance == lim.MaxBalance {
					continue
				}
			}
			if amount > lim.PINFreeLimit {
				require.Equal(t, apdu.SWNoError, k.verifyPIN("1234"))
			}
		}
		p := k.prepare(kind, amount)
		require.Equal(t, atc+1, p.atc, "iteration %d", i)
		require.Equal(t, balance, p.balance)

		switch mode := rng.IntN(10); {
		case mode < 5: // tear at a random write, maybe beyond the command's last
			n := uint64(1 + rng.IntN(6))
			k.c.TearAfter(n)
			out := k.raw(mustBytes(t, p.cmd))
			k.c.TearAfter(0)
			if out != nil {
				require.Equal(t, "9000", fmt.Sprintf("%X", out[len(out)-2:]))
				lost++ // the answer reached us, but pretend the terminal lost it
			} else {
				tears++
			}
			// Power up, maybe through the image file, maybe tearing
			// the recovery too.
			if rng.IntN(2) == 0 {
				k.reload(k.image())
				reloads++
			} else {
				k.c.PowerOn()
			}
			if rng.IntN(3) == 0 {
				k.c.TearAfter(uint64(1 + rng.IntN(4)))
				k.raw(mustBytes(t, wire.Select(purse.AID)))
				k.c.TearAfter(0)
				k.c.PowerOn()
			}
			k.mustSelect()
			if k.resolve(p) {
				happened++
				balance, atc = p.after(), p.atc
			}
		case mode < 6: // power lost before the completion was sent
			k.c.PowerOff()
			k.c.PowerOn()
			k.mustSelect()
			require.False(t, k.resolve(p))
		default: // normal completion
			data, sw := k.send(p.cmd)
			require.Equal(t, apdu.SWNoError, sw, "iteration %d", i)
			require.NotEmpty(t, data)
			balance, atc = p.after(), p.atc
			happened++
		}
		pd := k.purseData()
		require.Equal(t, balance, pd.Balance, "iteration %d (seed %d)", i, seed)
		require.Equal(t, atc, pd.ATC, "iteration %d", i)
		require.LessOrEqual(t, pd.Balance, lim.MaxBalance)
		require.Zero(t, pd.Flags&wire.FlagJournalPending)
	}
	// The log holds the last 16 transactions, all with valid TCs, and
	// their balances chain.
	var prev *wire.LogRecord
	for n := byte(16); n >= 1; n-- {
		data, sw := k.send(wire.ReadLog(n))
		require.Equal(t, apdu.SWNoError, sw)
		r, err := wire.ParseLogRecord(data)
		require.NoError(t, err)
		require.True(t, wire.VerifyTC(k.keys.TC.Key, cardID, r))
		if prev != nil {
			b, ok := r.BalanceBefore()
			require.True(t, ok)
			require.Equal(t, prev.BalanceAfter, b)
			require.Equal(t, prev.ATC+1, r.ATC)
		}
		prev = &r
	}
	require.Equal(t, balance, prev.BalanceAfter)
	t.Logf("%d transactions, %d tears, %d lost answers, %d image reloads", happened, tears, lost, reloads)
	require.Greater(t, tears, iterations/4)
}

func mustBytes(t testing.TB, c apdu.Command) []byte {
	t.Helper()
	b, err := c.Bytes()
	require.NoError(t, err)
	return b
}
