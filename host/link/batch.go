package link

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	moov "github.com/moov-io/iso8583"

	"github.com/valuechip/valuechip/host/iso8583"
)

// Batch errors.
var (
	// ErrOutOfBalance: the server's totals differ from the terminal's
	// (0510 DE 66 = 2); the batch is kept for an operator
	// (docs/iso8583.md §2.6).
	ErrOutOfBalance = errors.New("link: batch out of balance")
	// ErrQueueNotEmpty: advices are still queued, so the batch cannot be
	// reconciled yet.
	ErrQueueNotEmpty = errors.New("link: advices still queued")
)

// AdviceResult is the outcome of one advice sent by Flush.
type AdviceResult struct {
	Entry Entry
	Code  string // DE 39, "" without an answer
	Err   error  // nil when acknowledged (00 or 94)
}

// FlushReport says what Flush did.
type FlushReport struct {
	Results      []AdviceResult // in queue order, for every advice sent
	Acknowledged int            // 00 or 94: removed from the queue
	Rejected     int            // declined for good: moved to the rejected list
	Remaining    int            // still queued (not sent, no answer, transient code)
}

// Queued returns the advices waiting in the store-and-forward queue.
func (l *Link) Queued() []Entry { return deref(l.st.queued()) }

// Rejected returns the advices the server declined for good; they are not
// in the batch totals and need an operator (Requeue sends them again).
func (l *Link) Rejected() []Entry { return deref(l.st.rejected()) }

// Requeue moves the rejected advices back into the queue.
func (l *Link) Requeue() error { return l.st.append(true, event{E: evRequeue}) }

// Batch returns the current batch number and its totals by currency.
func (l *Link) Batch() (uint64, []Totals) { return l.st.state() }

func deref(es []*Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		out[i] = *e
	}
	return out
}

// Flush sends every queued advice — 0220 or 0420, repeated as 0221/0421
// when a previous attempt went unanswered — up to Options.FlushWindow at
// once. Advices acknowledged with 00 or 94 leave the queue (and a debit
// enters the batch totals); those declined for good move to the rejected
// list. On a transport error Flush starts no further advice and returns an
// error wrapping ErrTransport with the report so far; transient codes (91,
// 96) leave the advice queued and are reported in the error too.
func (l *Link) Flush(ctx context.Context) (FlushReport, error) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	entries := l.st.queued()
	var (
		rep     FlushReport
		mu      sync.Mutex
		wg      sync.WaitGroup
		stopped error
		done    int
		results = make([]*AdviceResult, len(entries))
		sem     = make(chan struct{}, l.opts.FlushWindow)
	)
	for i, e := range entries {
		sem <- struct{}{}
		mu.Lock()
		stop := stopped != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rc, err := l.attempt(ctx, e)
			mu.Lock()
			defer mu.Unlock()
			results[i] = &AdviceResult{Entry: *e, Code: rc, Err: err}
			done++
			if l.opts.Progress != nil {
				l.opts.Progress(done, len(entries))
			}
			if err != nil && (errors.Is(err, ErrTransport) || ctx.Err() != nil) && stopped == nil {
				stopped = err
			}
		}()
	}
	wg.Wait()
	// One fsync for the acknowledgements of the whole flush: losing them
	// only means sending those advices again, answered 94.
	syncErr := l.st.sync()
	var transientErr error
	for _, r := range results {
		if r == nil {
			continue
		}
		rep.Results = append(rep.Results, *r)
		switch {
		case r.Err == nil:
			rep.Acknowledged++
		case errors.Is(r.Err, ErrDeclined) && !transient(r.Code):
			rep.Rejected++
		case transientErr == nil && r.Code != "":
			transientErr = r.Err
		}
	}
	rep.Remaining = len(l.st.queued())
	switch {
	case stopped != nil:
		return rep, fmt.Errorf("link: flush stopped with %d advices queued: %w", rep.Remaining, stopped)
	case syncErr != nil:
		return rep, syncErr
	case transientErr != nil:
		return rep, fmt.Errorf("link: flush left %d advices queued: %w", rep.Remaining, transientErr)
	}
	return rep, nil
}

// Reconciliation is the outcome of Reconcile.
type Reconciliation struct {
	Batch     uint64   // the batch reconciled
	Terminal  []Totals // the terminal's totals, by currency
	Server    []Totals // the totals in the 0510s
	InBalance bool
	Flush     FlushReport
}

// OutOfBalanceError names both sides' totals of an out-of-balance batch.
// Server is nil when the 0510 only echoed the terminal's totals (the
// server's are then in its log and report).
type OutOfBalanceError struct {
	Batch    uint64
	Terminal Totals
	Server   *Totals
}

func (e *OutOfBalanceError) Error() string {
	srv := "not disclosed in the 0510 (see the server's report)"
	if e.Server != nil {
		srv = e.Server.String()
	}
	return fmt.Sprintf("link: batch %d out of balance: terminal %v; server %s", e.Batch, e.Terminal, srv)
}

// Unwrap matches ErrOutOfBalance.
func (e *OutOfBalanceError) Unwrap() error { return ErrOutOfBalance }

// Reconcile flushes the queue, then sends the batch totals in a 0500
// (docs/iso8583.md §2.6). The server closes its batch at every 0500, so a
// new batch starts either way; when the 0510 says out of balance (DE 66 =
// 2) the old batch's totals are kept (Unbalanced) and the error is an
// *OutOfBalanceError naming both totals. An empty batch is reconciled in
// Options.Currency. A batch holds one currency: the server closes its whole
// batch at the first 0500.
func (l *Link) Reconcile(ctx context.Context) (*Reconciliation, error) {
	l.reconMu.Lock()
	defer l.reconMu.Unlock()
	rep, err := l.Flush(ctx)
	res := &Reconciliation{Flush: rep}
	if err != nil {
		return res, fmt.Errorf("link: reconcile: %w", err)
	}
	if n := len(l.st.queued()); n > 0 {
		return res, fmt.Errorf("%w: %d", ErrQueueNotEmpty, n)
	}
	batch, totals := l.st.state()
	res.Batch, res.Terminal = batch, totals
	switch len(totals) {
	case 0:
		res.Terminal = []Totals{{Currency: l.opts.Currency}}
	case 1:
	default:
		return res, fmt.Errorf("link: batch %d holds %d currencies; the server reconciles one per batch", batch, len(totals))
	}
	t := res.Terminal[0]
	srv, in, err := l.reconcileOne(ctx, t)
	if err != nil {
		return res, err
	}
	res.Server = []Totals{srv}
	if in {
		res.InBalance = true
		return res, l.st.closeBatch(nil)
	}
	bad := &UnbalancedBatch{Batch: batch, Terminal: t}
	if srv != t {
		bad.Server = &srv
	}
	if err := l.st.closeBatch(bad); err != nil {
		return res, err
	}
	return res, &OutOfBalanceError{Batch: batch, Terminal: t, Server: bad.Server}
}

// Unbalanced returns the batches the server found out of balance, oldest
// first; they are kept for an operator.
func (l *Link) Unbalanced() []UnbalancedBatch { return l.st.unbalanced() }

func n10(v int64) string { return fmt.Sprintf("%010d", v) }
func n16(v int64) string { return fmt.Sprintf("%016d", v) }

// NetSettlement renders DE 97: C or D and n 16, loads − debits from the
// terminal's view (C when not negative).
func NetSettlement(t Totals) string {
	if n := t.Net(); n < 0 {
		return "D" + n16(-n)
	} else {
		return "C" + n16(n)
	}
}

func (l *Link) reconcileOne(ctx context.Context, t Totals) (Totals, bool, error) {
	stan, err := l.nextSTAN()
	if err != nil {
		return Totals{}, false, err
	}
	req := &iso8583.Reconciliation{MTI: iso8583.MTIReconRequest, Transmission: l.de7(), STAN: stan,
		TerminalID: l.cfg.TerminalID, MerchantID: l.cfg.MerchantID, Currency: t.Currency,
		CreditsCount: n10(t.Loads), CreditRevCount: n10(t.LoadReversals), DebitsCount: n10(t.Debits), DebitRevCount: n10(0),
		CreditsAmount: n16(t.LoadAmount), CreditRevAmount: n16(t.LoadReversalAmount), DebitsAmount: n16(t.DebitAmount),
		DebitRevAmount: n16(0), NetSettlement: NetSettlement(t)}
	rsp, rc, err := l.roundTrip(ctx, stan, func(s *session) (*moov.Message, error) { return withTN(s, req) })
	if err != nil {
		return Totals{}, false, err
	}
	if rc != iso8583.RCApproved {
		return Totals{}, false, &DeclineError{Op: "reconciliation", MTI: iso8583.MTIReconResponse, Code: rc}
	}
	var got iso8583.Reconciliation
	if err := iso8583.Unmarshal(rsp, &got); err != nil {
		return Totals{}, false, err
	}
	srv := Totals{Currency: t.Currency}
	for _, f := range []struct {
		s string
		p *int64
	}{{got.CreditsCount, &srv.Loads}, {got.CreditRevCount, &srv.LoadReversals}, {got.DebitsCount, &srv.Debits},
		{got.CreditsAmount, &srv.LoadAmount}, {got.CreditRevAmount, &srv.LoadReversalAmount}, {got.DebitsAmount, &srv.DebitAmount}} {
		if f.s == "" {
			continue // the server may leave its totals out
		}
		v, err := strconv.ParseInt(f.s, 10, 64)
		if err != nil {
			return Totals{}, false, fmt.Errorf("%w: 0510 totals: %q", iso8583.ErrMalformed, f.s)
		}
		*f.p = v
	}
	switch got.SettlementCode {
	case iso8583.SettlementInBalance:
		return srv, true, nil
	case iso8583.SettlementOutOfBalance:
		return srv, false, nil
	}
	return Totals{}, false, fmt.Errorf("%w: 0510 DE 66 %q", iso8583.ErrMalformed, got.SettlementCode)
}
