package ledger

import (
	"context"
	"fmt"
	"sync"

	"github.com/valuechip/valuechip/host/sqldb"
)

// Batcher group-commits debit advices: advices submitted concurrently are
// gathered — whatever is waiting when the previous commit ends, up to
// maxBatch — and applied by one ApplyAdvices, so one commit (one fsync on
// SQLite) serves many terminals (docs/ledger.md §11). Each caller gets its
// own result, and only after the commit: an acknowledged advice is durable.
type Batcher struct {
	s   *SQLStore
	max int

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []*pending
	closed bool
	done   chan struct{}
}

type pending struct {
	ctx context.Context
	a   DebitAdvice
	res AdviceResult
	ok  chan struct{}
}

// Default batch limits. ApplyAdvices is set-based (no savepoint per
// advice), so PostgreSQL takes batches as large as SQLite; a larger batch
// only waits for more advices when they arrive faster than one commit.
const (
	DefaultMaxBatchSQLite   = 512
	DefaultMaxBatchPostgres = 512
)

// NewBatcher starts a batcher over s; maxBatch ≤ 0 picks the engine's
// default (DefaultMaxBatchSQLite, DefaultMaxBatchPostgres).
func NewBatcher(s *SQLStore, maxBatch int) *Batcher {
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatchSQLite
		if s.db.Dialect() == sqldb.Postgres {
			maxBatch = DefaultMaxBatchPostgres
		}
	}
	b := &Batcher{s: s, max: maxBatch, done: make(chan struct{})}
	b.cond = sync.NewCond(&b.mu)
	go b.loop()
	return b
}

// Submit applies one advice in the next group commit and returns its result
// (as ApplyAdvices). When ctx ends before the advice was taken into a batch,
// it is not applied and the result's Err is ctx's error; when ctx ends later
// the outcome is unknown to the caller (Err is ctx's error) and a retry is a
// replay or a post, never a double post. After Close, Err is ErrClosed.
func (b *Batcher) Submit(ctx context.Context, a DebitAdvice) AdviceResult {
	if err := ctx.Err(); err != nil {
		return AdviceResult{Err: err}
	}
	p := &pending{ctx: ctx, a: a, ok: make(chan struct{})}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return AdviceResult{Err: fmt.Errorf("%w: batcher closed", ErrClosed)}
	}
	b.queue = append(b.queue, p)
	b.cond.Signal()
	b.mu.Unlock()
	select {
	case <-p.ok:
		return p.res
	case <-ctx.Done():
		return AdviceResult{Err: ctx.Err()}
	}
}

// Close stops accepting advices, applies those already submitted and waits
// for the last commit. It does not close the store.
func (b *Batcher) Close() {
	b.mu.Lock()
	b.closed = true
	b.cond.Signal()
	b.mu.Unlock()
	<-b.done
}

func (b *Batcher) loop() {
	defer close(b.done)
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.closed {
			b.cond.Wait()
		}
		if len(b.queue) == 0 {
			b.mu.Unlock()
			return
		}
		n := min(len(b.queue), b.max)
		batch := make([]*pending, n)
		copy(batch, b.queue)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		b.mu.Unlock()
		b.apply(batch)
	}
}

func (b *Batcher) apply(batch []*pending) {
	live := batch[:0:0]
	advices := make([]DebitAdvice, 0, len(batch))
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.res = AdviceResult{Err: err}
			close(p.ok)
			continue
		}
		live = append(live, p)
		advices = append(advices, p.a)
	}
	if len(live) == 0 {
		return
	}
	// The batch is not tied to any one caller's context: a caller giving up
	// must not fail the others' advices.
	res := b.s.ApplyAdvices(context.Background(), advices)
	for i, p := range live {
		p.res = res[i]
		close(p.ok)
	}
}
