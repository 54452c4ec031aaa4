package link_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/purse"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/link"
	"github.com/valuechip/valuechip/host/link/linktest"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

var (
	testCardID = wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	eur        = wire.Currency{0x09, 0x78}
	testTID    = wire.TerminalID{'T', 'E', 'R', 'M', '0', '0', '0', '1'}
)

func testConfig(addr string) link.Config {
	return link.Config{TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", Server: addr, TMK: linktest.TMK,
		SAM: terminal.DevMasters().Debit}
}

// issuedImage is a purse issued once on the sample chip (docs/purse.md §10 keys).
var issuedImage = sync.OnceValues(func() ([]byte, error) {
	c, err := profile.Build(profile.Sample(), chip.WithModules(purse.Module))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	s, err := hostgp.Open(ctx, connect.Stack(emu.Connect(c, "emu:issue"), connect.StackOptions{}), hostgp.Config{
		Keys: hostgp.TestKeys(), Level: scp03.LevelCMAC | scp03.LevelCDEC})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	err = terminal.Issue(ctx, s, terminal.IssueParams{Digest: purse.Module.Digest(), CardID: testCardID, Currency: eur,
		Limits: wire.Limits{MaxBalance: 100000, MaxLoad: 50000, MaxDebit: 10000, PINFreeLimit: 2500, OfflineLimit: 50000},
		PIN:    "1234", Masters: terminal.DevMasters()})
	if err != nil {
		return nil, err
	}
	return c.MarshalImage()
})

// rig is a card, a terminal and its link to a fake server.
type rig struct {
	srv  *linktest.Server
	link *link.Link
	term *terminal.Terminal
	c    *chip.Chip
	dir  string
}

func (r *rig) tap() reader.Transceiver { return emu.Connect(r.c, "emu:test") }

func newRig(t *testing.T, opts link.Options) *rig {
	t.Helper()
	img, err := issuedImage()
	require.NoError(t, err)
	c, err := chip.UnmarshalImage(img, chip.WithModules(profile.Modules()...), chip.WithModules(purse.Module))
	require.NoError(t, err)
	srv := linktest.New(t)
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	lk, err := link.Dial(context.Background(), testConfig(srv.Addr()), opts)
	require.NoError(t, err)
	t.Cleanup(func() { lk.Close() })
	m := terminal.DevMasters()
	sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
	require.NoError(t, err)
	term := terminal.New(terminal.Config{SAM: sam, Authority: lk, TerminalID: testTID})
	return &rig{srv: srv, link: lk, term: term, c: c, dir: opts.StateDir}
}

// debitRecord is a debit log record with a genuine TC (docs/purse.md §5.4).
func debitRecord(t testing.TB, atc, amount, after uint32) wire.LogRecord {
	t.Helper()
	dt, err := wire.DateTimeOf(time.Date(2026, 11, 21, 8, 10, 0, 0, time.UTC))
	require.NoError(t, err)
	rec := wire.LogRecord{ATC: atc, Type: wire.TypeDebit, Amount: amount, BalanceAfter: after, Currency: eur,
		DateTime: dt, TerminalID: testTID, Reference: atc}
	k, err := wire.DeriveCardKey(terminal.DevMasters().TC.Key, wire.KeyTC, testCardID)
	require.NoError(t, err)
	rec.TC, err = wire.ComputeTC(k, testCardID, rec)
	require.NoError(t, err)
	return rec
}

// checkWire asserts that every message the server got carried a good MAC
// and, outside 08xx, a good transaction number, except those listed as
// deliberately refused.
func checkWire(t *testing.T, got []linktest.Received, refused int) {
	t.Helper()
	bad := 0
	for _, r := range got {
		require.True(t, r.MACOK, "MAC of %s STAN %s", r.MTI, r.STAN)
		if r.MTI != iso8583.MTINetworkRequest && !r.TNOK {
			bad++
		}
	}
	require.Equal(t, refused, bad, "messages with a refused transaction number")
}

func mtis(got []linktest.Received) []string {
	var out []string
	for _, r := range got {
		out = append(out, r.MTI)
	}
	return out
}

func TestLoadPayFlushReconcile(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{})
	tr := r.tap()
	ld, err := r.term.Load(ctx, tr, 5000)
	require.NoError(t, err)
	require.Equal(t, uint32(5000), ld.Record.BalanceAfter)
	p1, err := r.term.Pay(ctx, tr, 350, terminal.PayOptions{})
	require.NoError(t, err)
	_, err = r.term.Pay(ctx, tr, 3000, terminal.PayOptions{PIN: "1234"})
	require.NoError(t, err)
	require.Len(t, r.link.Queued(), 2, "debits wait in the store-and-forward queue")
	require.Equal(t, uint32(2), r.link.Queued()[0].ATC)
	require.Equal(t, p1.Record.Amount, r.link.Queued()[0].Amount)

	bal, err := r.link.Balance(ctx, testCardID)
	require.NoError(t, err)
	require.Equal(t, link.BalanceInfo{Available: 5000, Currency: "978"}, bal, "the shadow balance lags the unsent debits")

	rep, err := r.link.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Acknowledged)
	require.Zero(t, rep.Remaining)
	bal, err = r.link.Balance(ctx, testCardID)
	require.NoError(t, err)
	require.Equal(t, int64(1650), bal.Available)
	require.Equal(t, int64(1650), r.srv.Authority().Net(testCardID))

	batch, totals := r.link.Batch()
	require.Equal(t, uint64(1), batch)
	want := link.Totals{Currency: "978", Loads: 1, LoadAmount: 5000, Debits: 2, DebitAmount: 3350}
	require.Equal(t, []link.Totals{want}, totals)
	require.Equal(t, "C0000000000001650", link.NetSettlement(want))

	rec, err := r.link.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, rec.InBalance)
	require.Equal(t, []link.Totals{want}, rec.Server)
	batch, totals = r.link.Batch()
	require.Equal(t, uint64(2), batch)
	require.Empty(t, totals)

	got := r.srv.Received()
	require.Equal(t, []string{"0800", "0200", "0220", "0100", "0220", "0220", "0100", "0500"}, mtis(got))
	checkWire(t, got, 0)
	seen := map[string]bool{}
	for _, m := range got {
		require.False(t, seen[m.STAN], "STAN %s reused", m.STAN)
		seen[m.STAN] = true
	}
}

func TestReSignOnAfterExpiredSeed(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{})
	r.srv.ExpireSeeds()
	_, err := r.link.Balance(ctx, testCardID)
	require.NoError(t, err)
	got := r.srv.Received()
	require.Equal(t, []string{"0800", "0100", "0800", "0100"}, mtis(got))
	require.Equal(t, got[1].STAN, got[3].STAN, "the refused request is sent again unchanged")
	require.Equal(t, got[1].DE7, got[3].DE7)
	require.NotEqual(t, got[1].SeedID, got[3].SeedID, "numbered with the new seed")
	checkWire(t, got, 1)
	require.Equal(t, 2, r.srv.SignOns())
}

// A clock both sides share, advanced by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestRenewBeforeSeedExpiry(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)}
	srv := linktest.New(t)
	srv.SetClock(clk.now, time.Hour)
	lk, err := link.Dial(ctx, testConfig(srv.Addr()), link.Options{StateDir: t.TempDir(), Now: clk.now, RenewBefore: 10 * time.Minute})
	require.NoError(t, err)
	defer lk.Close()
	require.NoError(t, lk.Echo(ctx))
	clk.add(45 * time.Minute)
	require.NoError(t, lk.Echo(ctx))
	require.Equal(t, 1, srv.SignOns())
	clk.add(6 * time.Minute) // 9 minutes left: renew
	_, err = lk.Balance(ctx, testCardID)
	require.NoError(t, err)
	require.Equal(t, 2, srv.SignOns())
	got := srv.Received()
	checkWire(t, got, 0)
	require.Equal(t, got[len(got)-2].MTI, "0800")
}

func TestCompletionAdviceRepeated(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{Timeout: 700 * time.Millisecond})
	r.srv.SetDrop("0220", 1)
	_, err := r.term.Load(ctx, r.tap(), 2000)
	require.NoError(t, err)
	require.Empty(t, r.link.Queued())
	got := r.srv.Received()
	require.Equal(t, []string{"0800", "0200", "0220", "0221"}, mtis(got))
	require.Equal(t, got[2].STAN, got[3].STAN)
	require.Equal(t, got[2].DE7, got[3].DE7)
	require.Equal(t, got[2].TN, got[3].TN, "a repeat has the transaction number of its original (docs/iso8583.md §7)")
	checkWire(t, got, 0)
}

func TestCompletionAdviceQueuedWhenUnanswered(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{Timeout: 700 * time.Millisecond, Repeats: 1})
	r.srv.SetDrop("0220", 1)
	r.srv.SetDrop("0221", 1)
	_, err := r.term.Load(ctx, r.tap(), 2000)
	require.NoError(t, err, "the completion advice is safe in the queue")
	q := r.link.Queued()
	require.Len(t, q, 1)
	require.Equal(t, link.KindCompletion, q[0].Kind)
	require.Equal(t, 2, q[0].Tries)
	rep, err := r.link.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Acknowledged)
	require.Equal(t, []string{"0800", "0200", "0220", "0221", "0800", "0221"}, mtis(r.srv.Received()),
		"two timeouts in a row: a new connection")
}

func TestLoadDeclined(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{})
	r.srv.SetCode("0200", iso8583.RCInsufficientFunds, 1)
	_, err := r.term.Load(ctx, r.tap(), 2000)
	require.ErrorIs(t, err, terminal.ErrLoadRefused)
	require.ErrorIs(t, err, link.ErrDeclined)
	code, ok := link.ResponseCode(err)
	require.True(t, ok)
	require.Equal(t, "51", code)
	require.Contains(t, err.Error(), "insufficient funds")
	// Nothing to reverse: the server funded nothing.
	require.Equal(t, []string{"0800", "0200"}, mtis(r.srv.Received()))
	_, totals := r.link.Batch()
	require.Empty(t, totals)
	p, err := r.term.Journal().Load()
	require.NoError(t, err)
	require.Nil(t, p)
}

// The 0210 is lost: the server booked the load, the terminal reverses it
// (0400) and both count one load and one reversal.
func TestLoadAnswerLostReversed(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{Timeout: 700 * time.Millisecond})
	r.srv.SetDrop("0200", 1)
	_, err := r.term.Load(ctx, r.tap(), 2000)
	require.ErrorIs(t, err, link.ErrTransport)
	require.Equal(t, []string{"0800", "0200", "0400"}, mtis(r.srv.Received()))
	_, totals := r.link.Batch()
	want := link.Totals{Currency: "978", LoadReversals: 1, LoadReversalAmount: 2000}
	require.Equal(t, []link.Totals{want}, totals)
	require.Equal(t, want, r.srv.Totals("978"))
	rec, err := r.link.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, rec.InBalance)
}

// The 0400 goes unanswered: a 0420 follows, repeated as 0421 until acknowledged.
func TestReversalAdviceRepeats(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{Timeout: 700 * time.Millisecond, Repeats: 2})
	r.srv.SetDrop("0200", 1)
	r.srv.SetDrop("0400", 1)
	r.srv.SetDrop("0420", 1)
	_, err := r.term.Load(ctx, r.tap(), 2000)
	require.ErrorIs(t, err, link.ErrTransport)
	got := r.srv.Received()
	require.Equal(t, []string{"0800", "0200", "0400", "0800", "0420", "0421"}, mtis(got), "two timeouts: a new connection")
	require.Equal(t, got[4].STAN, got[5].STAN)
	require.Equal(t, got[4].TN, got[5].TN)
	require.NotEqual(t, got[2].STAN, got[4].STAN, "the advice is a new message, not a repeat of the 0400")
	checkWire(t, got, 0)
	require.Empty(t, r.link.Queued())
	_, totals := r.link.Batch()
	require.Equal(t, []link.Totals{{Currency: "978", LoadReversals: 1, LoadReversalAmount: 2000}}, totals)
	require.Equal(t, totals[0], r.srv.Totals("978"))
	p, err := r.term.Journal().Load()
	require.NoError(t, err)
	require.Nil(t, p, "the reversal is the server's now")
}

func TestReversalQueuedWhenUnreachable(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{Timeout: 700 * time.Millisecond, Repeats: 1})
	r.srv.SetDrop("0200", 1)
	r.srv.SetDrop("0400", 1)
	r.srv.SetDrop("0420", 1)
	r.srv.SetDrop("0421", 1)
	_, err := r.term.Load(ctx, r.tap(), 2000)
	require.ErrorIs(t, err, link.ErrTransport)
	q := r.link.Queued()
	require.Len(t, q, 1)
	require.Equal(t, link.KindReversal, q[0].Kind)
	rec, err := r.link.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, rec.InBalance)
	require.Equal(t, []link.Totals{{Currency: "978", LoadReversals: 1, LoadReversalAmount: 2000}}, rec.Terminal,
		"the first 0420 was answered 94 (the 0400 had reversed the load): counted")
}

func TestQueueSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	srv := linktest.New(t)
	dir := t.TempDir()
	cfg := testConfig(srv.Addr())
	lk, err := link.Open(cfg, link.Options{StateDir: dir})
	require.NoError(t, err)
	for i := range uint32(3) {
		require.NoError(t, lk.Advise(ctx, testCardID, debitRecord(t, i+2, 100, 1000-100*(i+1))), "offline: no server needed")
	}
	require.Empty(t, srv.Received())
	// Die without closing: the log was fsynced at each advice. Then a
	// torn line from a crash in the middle of an append.
	f, err := os.OpenFile(filepath.Join(dir, "state.log"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"e":"add","add":{"id":9`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	lk2, err := link.Open(cfg, link.Options{StateDir: dir})
	require.NoError(t, err)
	defer lk2.Close()
	q := lk2.Queued()
	require.Len(t, q, 3)
	require.Equal(t, []uint32{2, 3, 4}, []uint32{q[0].ATC, q[1].ATC, q[2].ATC})
	require.NoError(t, lk2.Advise(ctx, testCardID, debitRecord(t, 3, 100, 800)), "advised again: queued once")
	require.Len(t, lk2.Queued(), 3)
	rep, err := lk2.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, rep.Acknowledged)
	require.NoError(t, lk2.Advise(ctx, testCardID, debitRecord(t, 4, 100, 700)), "advised after its acknowledgement")
	rep, err = lk2.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, "94", rep.Results[0].Code)
	require.NoError(t, lk2.Advise(ctx, testCardID, debitRecord(t, 5, 100, 600)), "appends after the torn line")
	lk2.Close()
	lk3, err := link.Open(cfg, link.Options{StateDir: dir})
	require.NoError(t, err)
	defer lk3.Close()
	require.Len(t, lk3.Queued(), 1)
	_, totals := lk3.Batch()
	require.Equal(t, []link.Totals{{Currency: "978", Debits: 3, DebitAmount: 300}}, totals)
	// STANs continue after the reservation of the first run.
	seen := map[string]bool{}
	for _, e := range append(q, lk3.Queued()...) {
		require.False(t, seen[e.STAN])
		seen[e.STAN] = true
	}
}

func TestFlushPartialFailure(t *testing.T) {
	ctx := context.Background()
	srv := linktest.New(t)
	lk, err := link.Open(testConfig(srv.Addr()), link.Options{StateDir: t.TempDir(), FlushWindow: 1})
	require.NoError(t, err)
	defer lk.Close()
	forged := debitRecord(t, 3, 100, 800)
	forged.TC[0] ^= 1
	for _, rec := range []wire.LogRecord{debitRecord(t, 2, 100, 900), forged, debitRecord(t, 4, 100, 800),
		debitRecord(t, 5, 100, 700), debitRecord(t, 6, 100, 600)} {
		require.NoError(t, lk.Advise(ctx, testCardID, rec))
	}
	srv.SetCloseOn("0220", 4) // the connection dies on the 4th advice
	rep, err := lk.Flush(ctx)
	require.ErrorIs(t, err, link.ErrTransport)
	require.Equal(t, 2, rep.Acknowledged)
	require.Equal(t, 1, rep.Rejected)
	require.Equal(t, 2, rep.Remaining)
	require.Len(t, rep.Results, 4)
	require.Equal(t, "12", rep.Results[1].Code)
	require.ErrorIs(t, rep.Results[3].Err, link.ErrTransport)
	rej := lk.Rejected()
	require.Len(t, rej, 1)
	require.Equal(t, "12", rej[0].Code)
	require.Equal(t, uint32(3), rej[0].ATC)

	rep, err = lk.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, rep.Acknowledged)
	got := srv.Received()
	require.Equal(t, []string{"0800", "0220", "0220", "0220", "0220", "0800", "0221", "0220"}, mtis(got),
		"the advice that went unanswered is repeated as 0221")
	checkWire(t, got, 0)
	_, totals := lk.Batch()
	require.Equal(t, []link.Totals{{Currency: "978", Debits: 4, DebitAmount: 400}}, totals, "the rejected advice is not in the batch")
}

func TestReconcileOutOfBalance(t *testing.T) {
	ctx := context.Background()
	srv := linktest.New(t)
	lk, err := link.Dial(ctx, testConfig(srv.Addr()), link.Options{StateDir: t.TempDir()})
	require.NoError(t, err)
	defer lk.Close()
	require.NoError(t, lk.Advise(ctx, testCardID, debitRecord(t, 2, 250, 750)))
	srv.SetSkew(1)
	res, err := lk.Reconcile(ctx)
	require.ErrorIs(t, err, link.ErrOutOfBalance)
	var oob *link.OutOfBalanceError
	require.ErrorAs(t, err, &oob)
	require.Equal(t, int64(250), oob.Terminal.DebitAmount)
	require.Nil(t, oob.Server, "the 0510 echoes the terminal's totals")
	require.Contains(t, err.Error(), "debits 1/250")
	require.Equal(t, int64(251), srv.Closed()[0].DebitAmount)
	require.False(t, res.InBalance)
	batch, totals := lk.Batch()
	require.Equal(t, uint64(2), batch, "the server closed its batch: so does the terminal")
	require.Empty(t, totals)
	require.Equal(t, []link.UnbalancedBatch{{Batch: 1, Terminal: link.Totals{Currency: "978", Debits: 1, DebitAmount: 250}}},
		lk.Unbalanced(), "kept for an operator")

	srv.SetSkew(0)
	require.NoError(t, lk.Advise(ctx, testCardID, debitRecord(t, 3, 50, 700)))
	res, err = lk.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, res.InBalance)
	batch, _ = lk.Batch()
	require.Equal(t, uint64(3), batch)
	// An empty batch reconciles too.
	res, err = lk.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, res.InBalance)
}

func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	srv := linktest.New(t)
	var progress []int // Flush's progress calls: done counts, total 40
	lk, err := link.Open(testConfig(srv.Addr()), link.Options{StateDir: t.TempDir(), FlushWindow: 8,
		Progress: func(done, total int) {
			require.Equal(t, 40, total)
			progress = append(progress, done)
		}})
	require.NoError(t, err)
	defer lk.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				atc := uint32(2 + g*5 + i)
				if err := lk.Advise(ctx, testCardID, debitRecord(t, atc, 10, 1000)); err != nil {
					errs <- err
				}
				if _, err := lk.Balance(ctx, testCardID); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	rep, err := lk.Flush(ctx)
	require.NoError(t, err)
	require.Equal(t, 40, rep.Acknowledged)
	require.Len(t, progress, 40, "one progress call per advice")
	for i, d := range progress {
		require.Equal(t, i+1, d)
	}
	got := srv.Received()
	checkWire(t, got, 0)
	require.Equal(t, 1, srv.SignOns(), "one sign-on shared by every goroutine")
	res, err := lk.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, res.InBalance)
}

func TestSignOnRefused(t *testing.T) {
	srv := linktest.New(t)
	cfg := testConfig(srv.Addr())
	cfg.TMK = append(iso8583.Key(nil), linktest.TMK...)
	cfg.TMK[0] ^= 1
	_, err := link.Dial(context.Background(), cfg, link.Options{StateDir: t.TempDir(), Timeout: 700 * time.Millisecond})
	require.ErrorIs(t, err, link.ErrSignOn, "the server ignores a sign-on MACed under another TMK")
	require.True(t, errors.Is(err, link.ErrTransport))
}

// With the server unreachable a load fails before anything was sent:
// nothing to reverse, nothing queued, the journal is clear.
func TestServerDown(t *testing.T) {
	ctx := context.Background()
	img, err := issuedImage()
	require.NoError(t, err)
	c, err := chip.UnmarshalImage(img, chip.WithModules(profile.Modules()...), chip.WithModules(purse.Module))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nobody listens there now
	lk, err := link.Open(testConfig(addr), link.Options{StateDir: t.TempDir()})
	require.NoError(t, err)
	defer lk.Close()
	m := terminal.DevMasters()
	sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
	require.NoError(t, err)
	term := terminal.New(terminal.Config{SAM: sam, Authority: lk, TerminalID: testTID})
	tr := emu.Connect(c, "emu:test")
	_, err = term.Load(ctx, tr, 1000)
	require.ErrorIs(t, err, link.ErrTransport)
	require.Empty(t, lk.Queued())
	p, err := term.Journal().Load()
	require.NoError(t, err)
	require.Nil(t, p)
	_, err = lk.Flush(ctx)
	require.NoError(t, err, "nothing queued: nothing to send")
}

// A reversal still queued when the next load of the same card (same ATC',
// another host nonce) succeeds: each is counted against its own load.
func TestQueuedReversalThenNextLoad(t *testing.T) {
	ctx := context.Background()
	r := newRig(t, link.Options{Timeout: 700 * time.Millisecond, Repeats: 1})
	for _, m := range []string{"0200", "0400", "0420", "0421"} {
		r.srv.SetDrop(m, 1)
	}
	_, err := r.term.Load(ctx, r.tap(), 2000)
	require.ErrorIs(t, err, link.ErrTransport)
	require.Len(t, r.link.Queued(), 1)
	ld, err := r.term.Load(ctx, r.tap(), 700)
	require.NoError(t, err)
	require.Equal(t, uint32(1), ld.Record.ATC, "the same ATC' as the reversed attempt")
	res, err := r.link.Reconcile(ctx)
	require.NoError(t, err)
	require.True(t, res.InBalance)
	require.Equal(t, []link.Totals{{Currency: "978", Loads: 1, LoadAmount: 700, LoadReversals: 1, LoadReversalAmount: 2000}}, res.Terminal)
	require.Equal(t, int64(700), r.srv.Authority().Net(testCardID))
}
