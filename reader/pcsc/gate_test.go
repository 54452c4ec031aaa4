package pcsc

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeWait plays a PC/SC context in a blocking wait: block returns when
// Cancel is called (or after the slice, as the real wait would).
type fakeWait struct {
	wake    chan struct{}
	cancels atomic.Int32
}

func newFakeWait() *fakeWait { return &fakeWait{wake: make(chan struct{}, 1)} }

func (f *fakeWait) Cancel() error {
	f.cancels.Add(1)
	select {
	case f.wake <- struct{}{}:
	default:
	}
	return nil
}

// block waits like GetStatusChange with a timeout; it reports whether it
// was cancelled.
func (f *fakeWait) block(slice time.Duration) bool {
	t := time.NewTimer(slice)
	defer t.Stop()
	select {
	case <-f.wake:
		return true
	case <-t.C:
		return false
	}
}

// A snapshot cancels the blocking wait that holds the gate and gets in
// before that wait can come back.
func TestGateSnapshotPreemptsWait(t *testing.T) {
	g := newGate()
	w := newFakeWait()
	unregister := g.register()
	defer unregister()

	inside := make(chan struct{})
	var order []string
	var mu sync.Mutex
	note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the watcher loop
		defer close(done)
		first := true
		for {
			select {
			case <-stop:
				return
			default:
			}
			slice := g.enterWait(w)
			if first {
				assert.Equal(t, waitSlice, slice, "a lone waiter uses the long slice")
				close(inside)
				first = false
			}
			if w.block(slice) {
				note("wait cancelled")
			}
			g.leave()
		}
	}()
	<-inside
	// Give the fake wait a moment to be "inside" (the real race window is
	// between enterWait and the C call; here block starts right after).
	start := time.Now()
	g.enterSnapshot()
	note("snapshot in")
	g.leave()
	elapsed := time.Since(start)
	close(stop)
	w.Cancel() // end the loop's current wait
	<-done

	assert.Less(t, elapsed, waitSlice/2, "the snapshot waited for the slice instead of cancelling")
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, len(order), 2)
	assert.Equal(t, []string{"wait cancelled", "snapshot in"}, order[:2])
}

// Blocking waits take turns in arrival order: one that leaves and comes
// straight back queues behind those already waiting.
func TestGateWaitsTakeTurns(t *testing.T) {
	g := newGate()
	a, b := newFakeWait(), newFakeWait()
	g.enterWait(a)

	bIn := make(chan struct{})
	go func() {
		g.enterWait(b)
		close(bIn)
	}()
	// Wait until b has a ticket (it is queued on the cond).
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.next == 2
	}, time.Second, time.Millisecond)

	g.leave()
	aAgain := make(chan struct{})
	go func() {
		g.enterWait(a) // straight back, like a cancelled watcher
		close(aAgain)
	}()
	<-bIn
	select {
	case <-aAgain:
		t.Fatal("a got back in ahead of b, which was waiting")
	default:
	}
	g.leave() // b leaves
	<-aAgain
	g.leave()
}

// With two blocking waits registered, waits use the short slice, and the
// holder is cancelled when the second registers so it switches at once.
func TestGateSharedSlice(t *testing.T) {
	g := newGate()
	a := newFakeWait()
	un1 := g.register()
	assert.Equal(t, waitSlice, g.enterWait(a))

	un2 := g.register()
	assert.EqualValues(t, 1, a.cancels.Load(), "the holder must be told to come back with a shared slice")
	g.leave()
	assert.Equal(t, sharedSlice, g.enterWait(a))
	g.leave()

	un2()
	assert.Equal(t, waitSlice, g.enterWait(a))
	g.leave()
	un1()
}

// Registering a second wait while nobody holds the gate cancels nothing.
func TestGateRegisterIdle(t *testing.T) {
	g := newGate()
	a := newFakeWait()
	un1 := g.register()
	un2 := g.register()
	un1()
	un2()
	assert.Zero(t, a.cancels.Load())
}

// Whatever the mix, only one caller is inside at a time.
func TestGateMutualExclusion(t *testing.T) {
	g := newGate()
	var inside, maxInside atomic.Int32
	enter := func() {
		n := inside.Add(1)
		for {
			m := maxInside.Load()
			if n <= m || maxInside.CompareAndSwap(m, n) {
				break
			}
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		w := newFakeWait()
		unregister := g.register()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer unregister()
			for range 200 {
				g.enterWait(w)
				enter()
				inside.Add(-1)
				g.leave()
			}
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				g.enterSnapshot()
				enter()
				inside.Add(-1)
				g.leave()
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 1, maxInside.Load())
}

// lossyWait loses its first n cancels, as pcsc-lite does while a wait is
// still being set up.
type lossyWait struct {
	*fakeWait
	lose atomic.Int32
}

func (l *lossyWait) Cancel() error {
	if l.lose.Add(-1) >= 0 {
		return nil
	}
	return l.fakeWait.Cancel()
}

func TestGateSnapshotRetriesLostCancel(t *testing.T) {
	g := newGate()
	w := &lossyWait{fakeWait: newFakeWait()}
	w.lose.Store(3)
	g.enterWait(w)
	left := make(chan struct{})
	go func() {
		w.block(waitSlice)
		g.leave()
		close(left)
	}()
	start := time.Now()
	g.enterSnapshot()
	elapsed := time.Since(start)
	g.leave()
	<-left
	assert.Less(t, elapsed, waitSlice/2, "lost cancels were not retried")
	assert.GreaterOrEqual(t, w.cancels.Load(), int32(1))
}

func TestKeepCancellingStops(t *testing.T) {
	w := newFakeWait()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		keepCancelling(w, stop)
		close(done)
	}()
	require.Eventually(t, func() bool { return w.cancels.Load() >= 2 }, time.Second, time.Millisecond)
	close(stop)
	<-done
	n := w.cancels.Load()
	time.Sleep(3 * cancelRetry)
	assert.Equal(t, n, w.cancels.Load(), "no cancels after stop")
}
