package server_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/server"
)

func TestBatcher(t *testing.T) {
	gate := make(chan struct{})
	var calls, maxSize atomic.Int64
	apply := func(_ context.Context, as []ledger.DebitAdvice) []ledger.AdviceResult {
		if calls.Add(1) == 1 {
			<-gate // hold the first commit so that the others queue up
		}
		if n := int64(len(as)); n > maxSize.Load() {
			maxSize.Store(n)
		}
		out := make([]ledger.AdviceResult, len(as))
		for i, a := range as {
			out[i].Receipt.Key = a.Key
		}
		return out
	}
	var sizes []int
	var mu sync.Mutex
	b := server.NewBatcher(apply, 8, func(n int) { mu.Lock(); sizes = append(sizes, n); mu.Unlock() })
	first := make(chan ledger.AdviceResult)
	go func() { first <- b.Submit(context.Background(), ledger.DebitAdvice{Key: "k0"}) }()
	for calls.Load() == 0 {
		// the first batch is being applied (held at the gate)
		runtimeGosched()
	}
	const n = 20
	var wg sync.WaitGroup
	res := make([]ledger.AdviceResult, n)
	keys := make([]string, n)
	for i := range n {
		keys[i] = "k" + string(rune('a'+i))
		wg.Add(1)
		go func() { defer wg.Done(); res[i] = b.Submit(context.Background(), ledger.DebitAdvice{Key: keys[i]}) }()
	}
	// Open the gate only once the queue is full (8 queued, 12 more waiting
	// to be queued): then the next batches must group them.
	for b.Queued() < 8 {
		runtimeGosched()
	}
	// A Submit whose context is already over is not applied.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.Submit(ctx, ledger.DebitAdvice{Key: "gone"}).Err, context.Canceled)
	close(gate)
	require.Equal(t, "k0", (<-first).Receipt.Key)
	wg.Wait()
	for i := range n {
		require.NoError(t, res[i].Err)
		require.Equal(t, keys[i], res[i].Receipt.Key, "each caller gets its own result")
	}
	require.LessOrEqual(t, maxSize.Load(), int64(8), "at most maxBatch per commit")
	b.Close()
	b.Close() // idempotent
	require.ErrorIs(t, b.Submit(context.Background(), ledger.DebitAdvice{Key: "late"}).Err, server.ErrBatcherClosed)
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, s := range sizes {
		total += s
	}
	require.Equal(t, n+1, total)
	require.Less(t, len(sizes), n+1, "advices were grouped")
}

func runtimeGosched() { runtime.Gosched() }
