package server_test

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/validity"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// Tests of the validity lists in the server (seed 002, docs/validity.md):
// every variant, on both engines, with the real registry, and with every
// dependency the server reads wrapped in a counter.

// card3 is hotlisted before the lists start (ModeTerminals does not load it).
var card3 = wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x66}

const unknownTID = "TERM0099"

var modes = []validity.Mode{validity.ModeBoth, validity.ModeCards, validity.ModeTerminals}

// reads counts the calls to each dependency that reads the database.
type reads struct{ reg, led, loads, adv, chk atomic.Int64 }

type readCounts struct{ Registry, Ledger, Loads, Advices, Lists int64 }

func (r *reads) snapshot() readCounts {
	return readCounts{r.reg.Load(), r.led.Load(), r.loads.Load(), r.adv.Load(), r.chk.Load()}
}

type countingRegistry struct {
	server.Registry
	n *atomic.Int64
}

func (c countingRegistry) Terminal(ctx context.Context, id string) (server.Terminal, error) {
	c.n.Add(1)
	return c.Registry.Terminal(ctx, id)
}

func (c countingRegistry) SignOn(ctx context.Context, id string) (iso8583.SignOnKeys, error) {
	c.n.Add(1)
	return c.Registry.SignOn(ctx, id)
}

func (c countingRegistry) SignOff(ctx context.Context, id string) error {
	c.n.Add(1)
	return c.Registry.SignOff(ctx, id)
}

func (c countingRegistry) WorkingKey(ctx context.Context, id string) (iso8583.Key, error) {
	c.n.Add(1)
	return c.Registry.WorkingKey(ctx, id)
}

func (c countingRegistry) Seed(ctx context.Context, id uint32) (server.SeedInfo, error) {
	c.n.Add(1)
	return c.Registry.Seed(ctx, id)
}

func (c countingRegistry) Card(ctx context.Context, id string) (server.Card, error) {
	c.n.Add(1)
	return c.Registry.Card(ctx, id)
}

type countingLedger struct {
	server.Ledger
	n *atomic.Int64
}

func (c countingLedger) EnsureAccount(ctx context.Context, k ledger.AccountKind, ref, cur string) (ledger.Account, error) {
	c.n.Add(1)
	return c.Ledger.EnsureAccount(ctx, k, ref, cur)
}

func (c countingLedger) Balance(ctx context.Context, id string) (int64, error) {
	c.n.Add(1)
	return c.Ledger.Balance(ctx, id)
}

func (c countingLedger) Begin(ctx context.Context, r ledger.BeginRequest) (ledger.Txn, error) {
	c.n.Add(1)
	return c.Ledger.Begin(ctx, r)
}

func (c countingLedger) Complete(ctx context.Context, r ledger.CompleteRequest) (ledger.Txn, error) {
	c.n.Add(1)
	return c.Ledger.Complete(ctx, r)
}

func (c countingLedger) Reverse(ctx context.Context, r ledger.ReverseRequest) (ledger.Txn, error) {
	c.n.Add(1)
	return c.Ledger.Reverse(ctx, r)
}

func (c countingLedger) Txn(ctx context.Context, key string) (ledger.Txn, error) {
	c.n.Add(1)
	return c.Ledger.Txn(ctx, key)
}

func (c countingLedger) RecordATC(ctx context.Context, a ledger.ATCAdvice) (ledger.ATCResult, error) {
	c.n.Add(1)
	return c.Ledger.RecordATC(ctx, a)
}

type countingLoads struct {
	server.Loads
	n *atomic.Int64
}

func (c countingLoads) PutLoad(ctx context.Context, l server.LoadAuth) (server.LoadAuth, error) {
	c.n.Add(1)
	return c.Loads.PutLoad(ctx, l)
}

func (c countingLoads) UnknownReversal(ctx context.Context, tid, stan, de7 string, at time.Time) (server.LoadAuth, error) {
	c.n.Add(1)
	return c.Loads.UnknownReversal(ctx, tid, stan, de7, at)
}

func (c countingLoads) LoadByKey(ctx context.Context, key string) (server.LoadAuth, error) {
	c.n.Add(1)
	return c.Loads.LoadByKey(ctx, key)
}

func (c countingLoads) LoadByOriginal(ctx context.Context, tid, stan, de7 string) (server.LoadAuth, error) {
	c.n.Add(1)
	return c.Loads.LoadByOriginal(ctx, tid, stan, de7)
}

func (c countingLoads) LoadsByCardATC(ctx context.Context, card string, atc uint32) ([]server.LoadAuth, error) {
	c.n.Add(1)
	return c.Loads.LoadsByCardATC(ctx, card, atc)
}

type countingAdvices struct {
	server.Advices
	n *atomic.Int64
}

func (c countingAdvices) SubmitAdvice(ctx context.Context, a server.DebitAdvice) server.AdviceResult {
	c.n.Add(1)
	return c.Advices.SubmitAdvice(ctx, a)
}

func (c countingAdvices) OpenBatchTotals(ctx context.Context, tid string) (server.Totals, error) {
	c.n.Add(1)
	return c.Advices.OpenBatchTotals(ctx, tid)
}

func (c countingAdvices) CloseBatch(ctx context.Context, tid, key string) (server.Totals, error) {
	c.n.Add(1)
	return c.Advices.CloseBatch(ctx, tid, key)
}

// countingChecker counts the lists' own database reads (the uncached side
// of ModeCards and ModeTerminals).
type countingChecker struct {
	validity.DBChecker
	n *atomic.Int64
}

func (c countingChecker) CardHotlisted(ctx context.Context, k validity.CardKey) (bool, error) {
	c.n.Add(1)
	return c.DBChecker.CardHotlisted(ctx, k)
}

func (c countingChecker) TerminalPermitted(ctx context.Context, k validity.TerminalKey) (bool, error) {
	c.n.Add(1)
	return c.DBChecker.TerminalPermitted(ctx, k)
}

// gatedSource is the registry as validity Source whose Changes can be held
// (a slow database) to show that requests do not wait for a refresh.
type gatedSource struct {
	validity.Registry
	mu      sync.Mutex
	gate    chan struct{} // non-nil: Changes waits for it to close
	entered chan struct{} // receives when a held Changes has started
}

func (g *gatedSource) hold() (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.entered = make(chan struct{}), make(chan struct{}, 1)
	gate := g.gate
	return func() {
		g.mu.Lock()
		g.gate = nil
		g.mu.Unlock()
		close(gate)
	}
}

func (g *gatedSource) Changes(ctx context.Context, k validity.Kind, since int64) ([]validity.Change, int64, error) {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.mu.Unlock()
	if gate != nil {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	return g.Registry.Changes(ctx, k, since)
}

// vEnv is a server with the real keystore, registry and load store, the
// validity lists of one mode, and counters around everything it reads.
type vEnv struct {
	*env
	reg  *registry.Store
	val  *server.Validity
	src  *gatedSource
	rd   *reads
	mode validity.Mode
}

type vOpts struct {
	interval time.Duration // lists refresh; -1: Notify only
	cacheTTL time.Duration // CachedRegistry
}

func newVEnv(t *testing.T, db *sqldb.DB, mode validity.Mode, o vOpts) *vEnv {
	ctx := context.Background()
	v := &vEnv{rd: &reads{}, mode: mode}
	kek := keystore.GenerateKEK()
	kr, err := keystore.Init(filepath.Join(t.TempDir(), "keyring.json"), kek, keystore.InitOptions{DevMasters: true})
	require.NoError(t, err)
	v.reg, err = registry.New(ctx, db, kr)
	require.NoError(t, err)
	v.env = newEnv(t, db, withSQLLoads(db), func(c *server.Config, e *env) {
		for _, id := range []string{tid1, tid2} {
			mid := map[string]string{tid1: mid1, tid2: mid2}[id]
			_, tmk, err := v.reg.RegisterTerminal(ctx, id, mid)
			require.NoError(t, err)
			e.tmk[id] = tmk
		}
		for _, id := range []wire.CardID{card1, card2, card3} {
			_, err := v.reg.RegisterCard(ctx, registry.Card{CardID: cardHex(id), Currency: "978", MaxBalance: 100000, KeyVersion: 1})
			require.NoError(t, err)
		}
		require.NoError(t, v.reg.SetCardStatus(ctx, cardHex(card3), registry.Hotlisted, "stolen before start"))

		v.src = &gatedSource{Registry: validity.Registry{Store: v.reg}}
		v.val, err = server.NewValidity(validity.Config{Mode: mode, Source: v.src,
			DB: countingChecker{validity.Registry{Store: v.reg}, &v.rd.chk}, Interval: o.interval, Logger: quietLogger(t)})
		require.NoError(t, err)
		require.NoError(t, v.val.Start(ctx))
		t.Cleanup(func() { require.NoError(t, v.val.Close()) })

		c.Registry = server.NewCachedRegistry(countingRegistry{server.RegistryStore{Store: v.reg, Now: e.clk.Now}, &v.rd.reg}, o.cacheTTL)
		c.Ledger = countingLedger{e.led, &v.rd.led}
		c.Loads = countingLoads{e.loads, &v.rd.loads}
		adv := server.NewLedgerAdvices(e.led, 0, nil)
		t.Cleanup(adv.Close) // after the server's shutdown (cleanups run last first)
		c.Advices = countingAdvices{adv, &v.rd.adv}
		c.Validity = v.val
		c.Statuses = v.reg
	})
	return v
}

// synced waits until the lists reflect the registry's current versions
// (a probe, not a sleep) and returns how long that took.
func (v *vEnv) synced(t *testing.T, within time.Duration) time.Duration {
	ctx := context.Background()
	cv, err := v.reg.HotlistVersion(ctx)
	require.NoError(t, err)
	tv, err := v.reg.TerminalVersion(ctx)
	require.NoError(t, err)
	start := time.Now()
	require.Eventually(t, func() bool {
		s := v.val.Lists().Stats()
		return s.CardVersion >= cv && (v.mode == validity.ModeCards || s.TerminalVersion >= tv)
	}, within, time.Millisecond, "lists at card version %d, terminal version %d", cv, tv)
	return time.Since(start)
}

// unMACed sends msg without a MAC on a fresh connection (a terminal the
// server does not know has no key) and returns DE 39.
func unMACed(t *testing.T, addr string, msg *moov.Message) string {
	c := iso8583.NewClient(dial(t, addr), 0)
	defer func() { _ = c.Close() }()
	resp, err := c.Send(context.Background(), msg, nil)
	require.NoError(t, err)
	rc, _ := resp.GetString(iso8583.DEResponseCode)
	return rc
}

func signOnMsg(t *testing.T, tid string) *moov.Message {
	msg, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: "0800", Transmission: "1121080000", STAN: "000001",
		TerminalID: tid, NetworkCode: iso8583.NMISignOn})
	require.NoError(t, err)
	return msg
}

func balanceFrom(t *testing.T, tid string, c *vcard) *moov.Message {
	msg, err := iso8583.Marshal(&iso8583.BalanceInquiry{MTI: "0100", PAN: c.pan(), ProcessingCode: iso8583.PCBalance,
		Transmission: "1121080000", STAN: "000002", POSEntryMode: "072", TerminalID: tid, MerchantID: mid1,
		Currency: "978", ICC: icc(t, iso8583.ICCData{CardID: &c.id})})
	require.NoError(t, err)
	return msg
}

// metricValue is the counter name{label} of the server's metrics (0 when
// absent).
func metricValue(t *testing.T, s *server.Server, name, label string) float64 {
	mfs, err := s.Metrics().Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasFlag(s *server.Server, card, reason string) bool {
	for _, f := range s.Flags() {
		if f.CardID == card && f.Reason == reason {
			return true
		}
	}
	return false
}

// TestValidityRefusesWithoutDBRead: in every mode, on both engines, a
// hotlisted card is refused 62 and an unknown or blocked terminal 58 without
// a database read — no registry, ledger, load-store, advice or list read
// (the only exception is the design of ModeCards: the terminal whitelist is
// not held, so an unknown terminal costs its one registry read).
func TestValidityRefusesWithoutDBRead(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
				ctx := context.Background()
				e := newVEnv(t, db, mode, vOpts{interval: -1, cacheTTL: time.Hour})
				tt := e.signedOn(tid1)
				good, hot, early := newVCard(t, card1), newVCard(t, card2), newVCard(t, card3)
				_, rc := tt.send(tt.balanceMsg(good))
				require.Equal(t, "00", rc, "warms the cached terminal, working key and seed")

				// Hotlisted in this process: Notify, the lists refresh now.
				require.NoError(t, e.srv.SetCardStatus(ctx, hot.hex(), registry.Hotlisted, "stolen"))
				e.synced(t, 5*time.Second)
				before := e.rd.snapshot()
				_, rc = tt.send(tt.balanceMsg(hot))
				require.Equal(t, iso8583.RCRestrictedCard, rc)
				_, rc = tt.send(tt.loadMsg(hot, hot.initLoad(t, 100, tid1)))
				require.Equal(t, iso8583.RCRestrictedCard, rc)
				require.Equal(t, before, e.rd.snapshot(), "a hotlisted card is refused without a database read")

				// Hotlisted before the start. ModeTerminals does not hold
				// the hotlist: the first request is approved while the
				// database is asked, the answer flags it and is remembered.
				// An advice is posted in every mode (the value moved
				// offline, the TC is genuine) and flagged.
				early.balance = 1000
				rec := early.debit(t, 300, tid1, 1, e.clk.Now())
				_, rc = tt.send(tt.adviceMsg(early, rec))
				require.Equal(t, "00", rc)
				want := server.FlagHotlistedCard
				if mode == validity.ModeTerminals {
					want = server.FlagLateHotlisted
				}
				require.Eventually(t, func() bool { return hasFlag(e.srv, early.hex(), want) }, 5*time.Second, time.Millisecond)
				_, rc = tt.send(tt.balanceMsg(early)) // warms nothing new: refused from memory
				require.Equal(t, iso8583.RCRestrictedCard, rc)
				before = e.rd.snapshot()
				_, rc = tt.send(tt.balanceMsg(early))
				require.Equal(t, iso8583.RCRestrictedCard, rc)
				require.Equal(t, before, e.rd.snapshot())

				// Unknown terminal: sign-on and a card message.
				before = e.rd.snapshot()
				require.Equal(t, iso8583.RCNotPermittedTerm, unMACed(t, e.addr, signOnMsg(t, unknownTID)))
				require.Equal(t, iso8583.RCNotPermittedTerm, unMACed(t, e.addr, balanceFrom(t, unknownTID, good)))
				after := e.rd.snapshot()
				if mode == validity.ModeCards {
					before.Registry += 2 // the terminal lookups: the whitelist is not held
				}
				require.Equal(t, before, after, "an unknown terminal is refused without a database read")

				// Blocked in this process: refused from memory too.
				if mode != validity.ModeCards {
					require.NoError(t, e.srv.SetTerminalStatus(ctx, tid2, registry.Blocked, "stolen"))
					e.synced(t, 5*time.Second)
					before = e.rd.snapshot()
					require.Equal(t, iso8583.RCNotPermittedTerm, unMACed(t, e.addr, signOnMsg(t, tid2)))
					require.Equal(t, before, e.rd.snapshot())
				}

				// Refusals and flags were counted; nothing was posted for
				// the refusals.
				require.GreaterOrEqual(t, metricValue(t, e.srv, "valuechip_server_validity_refusals_total", "62"), 4.0)
				require.GreaterOrEqual(t, metricValue(t, e.srv, "valuechip_server_validity_flagged_total", want), 1.0)
				if mode != validity.ModeCards {
					require.GreaterOrEqual(t, metricValue(t, e.srv, "valuechip_server_validity_refusals_total", "58"), 3.0)
				}
				require.Empty(t, e.posted().InProgress)
				_, rc = tt.send(tt.balanceMsg(good))
				require.Equal(t, "00", rc)
			})
		})
	}
}

// TestValidityLateLoad (ModeTerminals): a card hotlisted by another process
// while this server's cache still has it active. The 0200 is approved from
// the terminal whitelist and the card is read beside it; either that read
// finishes before the first write and the load is refused 62 with nothing
// written, or the 0210 goes out, the load stays in progress (the terminal's
// reversal or completion resolves it) and the transaction is flagged. The
// card's next request is refused from memory.
func TestValidityLateLoad(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e := newVEnv(t, db, validity.ModeTerminals, vOpts{interval: -1, cacheTTL: time.Hour})
		tt := e.signedOn(tid1)
		c := newVCard(t, card2)
		_, rc := tt.send(tt.balanceMsg(c))
		require.Equal(t, "00", rc, "the card is cached active")
		require.NoError(t, e.reg.SetCardStatus(ctx, c.hex(), registry.Hotlisted, "another process"))

		msg := tt.loadMsg(c, c.initLoad(t, 500, tid1))
		_, rc = tt.send(msg)
		tn, err := msg.GetBytes(iso8583.DETxnNumber)
		require.NoError(t, err)
		key := "load/" + tid1 + "/" + hex.EncodeToString(tn)
		t.Logf("load of a card hotlisted elsewhere answered %s", rc)
		switch rc {
		case iso8583.RCRestrictedCard:
			_, err := e.led.Txn(ctx, key)
			require.ErrorIs(t, err, ledger.ErrNotFound, "refused before the first write")
		case iso8583.RCApproved:
			require.Eventually(t, func() bool { return hasFlag(e.srv, c.hex(), server.FlagLateHotlisted) }, 5*time.Second, time.Millisecond)
			require.Equal(t, ledger.StateInProgress, e.txn(key).State)
			_, rc = tt.send(tt.reversalMsg("0400", c, msg)) // the card did not credit: the reversal path
			require.Equal(t, "00", rc)
			require.Equal(t, ledger.StateReversed, e.txn(key).State)
		default:
			t.Fatalf("load answered %s", rc)
		}
		require.Eventually(t, func() bool { return e.val.Lists().Stats().LateRefusals >= 1 }, 5*time.Second, time.Millisecond)
		before := e.rd.snapshot()
		_, rc = tt.send(tt.balanceMsg(c))
		require.Equal(t, iso8583.RCRestrictedCard, rc)
		require.Equal(t, before, e.rd.snapshot(), "remembered: refused from memory")
	})
}

// TestValidityHotlistWhileTraffic: 50 goroutines send balance inquiries for
// a good card and for a card that is hotlisted and un-hotlisted meanwhile,
// alternately from this process (SetCardStatus: Notify) and from another
// (the registry directly: the periodic refresh). The good card is never
// refused; the listed card is refused, and accepted again, within the bound.
func TestValidityHotlistWhileTraffic(t *testing.T) {
	const (
		workers  = 50
		interval = 100 * time.Millisecond // periodic refresh
		cacheTTL = 100 * time.Millisecond // CachedRegistry (an un-hotlisting also waits for it)
		bound    = 3 * time.Second
		toggles  = 4
	)
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
				ctx := context.Background()
				e := newVEnv(t, db, mode, vOpts{interval: interval, cacheTTL: cacheTTL})
				tt := e.signedOn(tid1)
				good, listed := newVCard(t, card1), newVCard(t, card2)

				stop := make(chan struct{})
				var wg sync.WaitGroup
				var sent, goodRefused, listedRefused atomic.Int64
				var bad atomic.Value
				for range workers {
					w := e.term(tid1)
					w.keys = tt.keys
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							c := good
							if i%2 == 1 {
								c = listed
							}
							resp, err := w.c.Send(ctx, w.balanceMsg(c), w.keys.WorkingKey)
							if err != nil {
								bad.Store(err.Error())
								return
							}
							sent.Add(1)
							switch rc, _ := resp.GetString(iso8583.DEResponseCode); {
							case c == good && rc != "00":
								goodRefused.Add(1)
								bad.Store("good card answered " + rc)
							case c == listed && rc == iso8583.RCRestrictedCard:
								listedRefused.Add(1)
							case c == listed && rc != "00":
								bad.Store("listed card answered " + rc)
							}
						}
					}()
				}
				probe := func(want string) time.Duration {
					start := time.Now()
					require.Eventually(t, func() bool {
						_, rc := tt.send(tt.balanceMsg(listed))
						return rc == want
					}, bound, time.Millisecond, "listed card never answered %s", want)
					return time.Since(start)
				}
				var worst [2]time.Duration // in this process (Notify), elsewhere (periodic refresh)
				for i := range toggles {
					set := func(st registry.Status) {
						if i%2 == 0 {
							require.NoError(t, e.srv.SetCardStatus(ctx, listed.hex(), st, "toggle"))
						} else {
							require.NoError(t, e.reg.SetCardStatus(ctx, listed.hex(), st, "toggle elsewhere"))
						}
					}
					set(registry.Hotlisted)
					worst[i%2] = max(worst[i%2], probe(iso8583.RCRestrictedCard))
					set(registry.Active)
					worst[i%2] = max(worst[i%2], probe("00"))
				}
				close(stop)
				wg.Wait()
				require.Nil(t, bad.Load())
				require.Zero(t, goodRefused.Load())
				require.Positive(t, sent.Load())
				t.Logf("%s: %d requests from %d goroutines, listed card refused %d times; slowest change seen after %v (Notify), %v (periodic refresh %v)",
					mode, sent.Load(), workers, listedRefused.Load(), worst[0], worst[1], interval)
			})
		})
	}
}

// TestValidityRefreshNeverBlocks: while a refresh is stuck in a slow
// database, requests are still answered from the lists they have.
func TestValidityRefreshNeverBlocks(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
				ctx := context.Background()
				e := newVEnv(t, db, mode, vOpts{interval: -1, cacheTTL: time.Hour})
				tt := e.signedOn(tid1)
				good, early := newVCard(t, card1), newVCard(t, card3)
				_, rc := tt.send(tt.balanceMsg(early)) // ModeTerminals: learns it
				require.Equal(t, iso8583.RCRestrictedCard, rc)
				if mode == validity.ModeTerminals { // the late check has remembered it
					require.Eventually(t, func() bool { return e.val.Lists().Stats().LateRefusals >= 1 }, 5*time.Second, time.Millisecond)
				}

				release := e.src.hold()
				released := false
				defer func() {
					if !released {
						release()
					}
				}()
				refreshes := e.val.Lists().Stats().Refreshes
				require.NoError(t, e.srv.SetCardStatus(ctx, cardHex(card2), registry.Hotlisted, "refresh held"))
				select {
				case <-e.src.entered:
				case <-time.After(10 * time.Second):
					t.Fatal("the refresh never started")
				}
				for range 20 {
					start := time.Now()
					_, rc := tt.send(tt.balanceMsg(good))
					require.Equal(t, "00", rc)
					_, rc = tt.send(tt.balanceMsg(early))
					require.Equal(t, iso8583.RCRestrictedCard, rc)
					require.Less(t, time.Since(start), 2*time.Second)
				}
				require.Equal(t, refreshes, e.val.Lists().Stats().Refreshes, "the refresh is still held")
				release()
				released = true
				e.synced(t, 5*time.Second)
				before := e.rd.snapshot()
				_, rc = tt.send(tt.balanceMsg(newVCard(t, card2)))
				require.Equal(t, iso8583.RCRestrictedCard, rc)
				require.Equal(t, before, e.rd.snapshot())
			})
		})
	}
}

// TestNewValidityLists: the constructor the service uses loads from the
// registry and starts.
func TestNewValidityLists(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		kr, err := keystore.Init(filepath.Join(t.TempDir(), "keyring.json"), keystore.GenerateKEK(), keystore.InitOptions{DevMasters: true})
		require.NoError(t, err)
		reg, err := registry.New(ctx, db, kr)
		require.NoError(t, err)
		_, _, err = reg.RegisterTerminal(ctx, tid1, mid1)
		require.NoError(t, err)
		_, err = reg.RegisterCard(ctx, registry.Card{CardID: cardHex(card1), Currency: "978", MaxBalance: 1000, KeyVersion: 1, Status: registry.Hotlisted})
		require.NoError(t, err)
		for _, mode := range modes {
			v, err := server.NewValidityLists(ctx, reg, mode, -1, quietLogger(t))
			require.NoError(t, err)
			require.Equal(t, mode, v.Mode())
			d, err := v.Lists().CheckIDs(ctx, cardHex(card1), tid1)
			require.NoError(t, err)
			if mode != validity.ModeTerminals {
				require.Equal(t, iso8583.RCRestrictedCard, d.Code)
			}
			require.NoError(t, v.Close())
		}
	})
}
