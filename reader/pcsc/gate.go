package pcsc

import (
	"sync"
	"time"
)

// Slices of a blocking SCardGetStatusChange. A wait returns at once on the
// change it waits for, and SCardCancel wakes it when its context.Context
// ends or a snapshot needs the gate, so these are not polling intervals:
// they only bound how long a lost cancel (one that lands just before the
// wait starts, when SCardCancel does nothing) or another blocking wait can
// be kept waiting.
const (
	// waitSlice is used while one blocking wait runs in the process.
	waitSlice = time.Second
	// sharedSlice is used while several blocking waits (two Watch calls,
	// or Watch and WaitForCard) take turns at the gate, so that each sees
	// a change within a few tenths of a second.
	sharedSlice = 100 * time.Millisecond
)

// cancelRetry is how often keepCancelling repeats SCardCancel.
const cancelRetry = 10 * time.Millisecond

// canceler is what the gate needs of a PC/SC context: a way to wake its
// blocking wait (scard.Context.Cancel).
type canceler interface{ Cancel() error }

// gate lets one SCardGetStatusChange run at a time in the process.
//
// Why: ebfe/scard hands pcsc-lite each reader name as a C string that it
// keeps alive only through a package-level map keyed by the name. A second
// concurrent call naming the same reader replaces the map entry, leaving
// the first call's string unreferenced, and collectable, while pcsc-lite
// still reads it on every pass of its wait loop. The mutex ebfe/scard added
// for the "concurrent map writes" crash protects the map, not the strings.
//
// Rules, so that serialising costs little:
//   - A snapshot (a zero-timeout call, as in Readers) goes first: it
//     cancels a blocking wait holding the gate, which retries after it.
//   - Blocking waits take turns in arrival order. A plain mutex would let
//     a wait that was just cancelled grab the gate straight back.
//   - While more than one blocking wait is registered, waits use
//     sharedSlice instead of waitSlice, and the wait holding the gate when
//     a second one registers is cancelled so it switches at once. Blocking
//     waits never cancel each other otherwise; they would take turns
//     forever.
type gate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	busy    bool     // someone is inside GetStatusChange
	holder  canceler // the blocking wait inside, if any
	urgent  int      // snapshots waiting to enter
	next    uint64   // next ticket for a blocking wait
	turn    uint64   // ticket allowed in next
	waiters int      // registered blocking waits (Watch, WaitForCard)
}

func newGate() *gate {
	g := &gate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// enterSnapshot waits for the gate on behalf of a zero-timeout call,
// cancelling a blocking wait that holds it.
func (g *gate) enterSnapshot() {
	g.mu.Lock()
	g.urgent++
	var stop, stopped chan struct{}
	if h := g.holder; g.busy && h != nil {
		// Cancel talks to pcscd, so it runs outside the lock, and it may
		// be lost (see keepCancelling), so it repeats until we are in.
		stop, stopped = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			keepCancelling(h, stop)
		}()
	}
	for g.busy {
		g.cond.Wait()
	}
	g.urgent--
	g.busy = true
	g.mu.Unlock()
	if stop != nil {
		close(stop)
		<-stopped
	}
}

// enterWait waits for the gate on behalf of a blocking wait on c, in
// arrival order and after any snapshot, and returns the timeout to use.
func (g *gate) enterWait(c canceler) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	ticket := g.next
	g.next++
	for g.busy || g.urgent > 0 || g.turn != ticket {
		g.cond.Wait()
	}
	g.turn++
	g.busy = true
	g.holder = c
	if g.waiters > 1 {
		return sharedSlice
	}
	return waitSlice
}

// leave gives the gate up.
func (g *gate) leave() {
	g.mu.Lock()
	g.busy = false
	g.holder = nil
	g.mu.Unlock()
	g.cond.Broadcast()
}

// register counts a blocking wait for its lifetime; call the returned
// function when it ends.
func (g *gate) register() (unregister func()) {
	g.mu.Lock()
	g.waiters++
	h := g.holder
	shared := g.waiters > 1
	g.mu.Unlock()
	if shared && h != nil {
		_ = h.Cancel() // so the holder comes back with a shared slice
	}
	return func() {
		g.mu.Lock()
		g.waiters--
		g.mu.Unlock()
	}
}

// keepCancelling calls c.Cancel at once and then every cancelRetry until
// stop is closed. One SCardCancel is not enough: pcsc-lite ignores it
// while a wait is still being set up (SCardGetStatusChange first fetches
// the reader states from pcscd and only then becomes cancellable), and a
// wait that has just entered the gate is usually in exactly that phase.
// Measured before this loop: a snapshot behind a watcher took 0.4 s on
// average instead of about a millisecond.
func keepCancelling(c canceler, stop <-chan struct{}) {
	t := time.NewTicker(cancelRetry)
	defer t.Stop()
	for {
		_ = c.Cancel()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}
