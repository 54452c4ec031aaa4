package server

import (
	"context"
	"errors"
	"sync"

	"github.com/valuechip/valuechip/host/ledger"
)

// ErrBatcherClosed is the result of an advice submitted after Close.
var ErrBatcherClosed = errors.New("server: advice batcher closed")

// Batcher group-commits debit advices: concurrent Submits are gathered into
// one ApplyAdvices call (one database transaction, one fsync on SQLite,
// set-based in the ledger: docs/ledger.md §11). There is no timer: a
// batch is whatever queued while the previous one committed, so a lone
// advice is committed at once and a busy server commits many per
// transaction (docs/server.md §5).
type Batcher struct {
	apply   func(context.Context, []ledger.DebitAdvice) []ledger.AdviceResult
	max     int
	observe func(int)

	mu     sync.RWMutex
	closed bool
	in     chan batchItem
	done   chan struct{}
}

type batchItem struct {
	ctx context.Context
	a   ledger.DebitAdvice
	out chan ledger.AdviceResult
}

// NewBatcher starts a batcher committing at most maxBatch advices per call
// of apply (256 when ≤ 0); observe, when set, receives each batch size.
func NewBatcher(apply func(context.Context, []ledger.DebitAdvice) []ledger.AdviceResult, maxBatch int, observe func(int)) *Batcher {
	if maxBatch <= 0 {
		maxBatch = 256
	}
	b := &Batcher{apply: apply, max: maxBatch, observe: observe, in: make(chan batchItem, maxBatch), done: make(chan struct{})}
	go b.loop()
	return b
}

// Submit posts one advice and waits for its result. A Submit whose ctx ends
// while queued is not applied.
func (b *Batcher) Submit(ctx context.Context, a ledger.DebitAdvice) ledger.AdviceResult {
	if err := ctx.Err(); err != nil {
		return ledger.AdviceResult{Err: err}
	}
	it := batchItem{ctx: ctx, a: a, out: make(chan ledger.AdviceResult, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return ledger.AdviceResult{Err: ErrBatcherClosed}
	}
	select {
	case b.in <- it:
	case <-ctx.Done():
		b.mu.RUnlock()
		return ledger.AdviceResult{Err: ctx.Err()}
	}
	b.mu.RUnlock()
	// Once queued, wait for the batcher's decision whatever ctx says
	// (applied, or dropped because ctx ended before its batch started; the
	// loop drains the queue even when closing): the caller must learn
	// whether it was posted.
	return <-it.out
}

// Queued is the number of advices waiting for the next batch (at most
// maxBatch; further Submits wait to be queued): the depth of the group
// commit's queue.
func (b *Batcher) Queued() int { return len(b.in) }

// Close applies what is queued and stops the batcher.
func (b *Batcher) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.in)
	}
	b.mu.Unlock()
	<-b.done
}

func (b *Batcher) loop() {
	defer close(b.done)
	for {
		it, ok := <-b.in
		if !ok {
			return
		}
		batch := []batchItem{it}
	gather:
		for len(batch) < b.max {
			select {
			case it, ok := <-b.in:
				if !ok {
					break gather
				}
				batch = append(batch, it)
			default:
				break gather
			}
		}
		b.run(batch)
	}
}

func (b *Batcher) run(batch []batchItem) {
	live := batch[:0:0]
	var advices []ledger.DebitAdvice
	for _, it := range batch {
		if err := it.ctx.Err(); err != nil {
			it.out <- ledger.AdviceResult{Err: err}
			continue
		}
		live = append(live, it)
		advices = append(advices, it.a)
	}
	if len(live) == 0 {
		return
	}
	if b.observe != nil {
		b.observe(len(live))
	}
	// The batch outlives any one request: use a context of its own.
	res := b.apply(context.WithoutCancel(live[0].ctx), advices)
	for i, it := range live {
		if i < len(res) {
			it.out <- res[i]
		} else {
			it.out <- ledger.AdviceResult{Err: errors.New("server: advice batch returned too few results")}
		}
	}
}
