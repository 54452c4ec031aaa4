//go:build cgo

package pcsc

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ebfe/scard"

	"github.com/valuechip/valuechip/reader"
)

// statusGate serialises every SCardGetStatusChange in the process; see
// gate for why and how.
var statusGate = newGate()

// snapshot reads reader states without waiting (timeout 0).
func snapshot(sc *scard.Context, states []scard.ReaderState) error {
	if len(states) == 0 {
		return nil // scard indexes the first state
	}
	statusGate.enterSnapshot()
	defer statusGate.leave()
	clearATRs(states)
	return sc.GetStatusChange(states, 0)
}

// waitChange waits, for at most one gate slice, until a state differs from
// its CurrentState. It returns scard.ErrTimeout at the end of the slice and
// scard.ErrCancelled when cancelled (by ctx, via privateContext, or by a
// snapshot that needed the gate); callers loop. Only private contexts may
// wait here: a snapshot cancels whatever context holds the gate.
func waitChange(ctx context.Context, sc *scard.Context, states []scard.ReaderState) error {
	slice := statusGate.enterWait(sc)
	defer statusGate.leave()
	if err := ctx.Err(); err != nil {
		return err // we may have queued for a while
	}
	clearATRs(states)
	return sc.GetStatusChange(states, slice)
}

// clearATRs prepares states for a GetStatusChange. scard copies each ATR
// in (harmless) and out, but keeps the old one when the new one is empty;
// clearing them means an ATR read afterwards is never stale.
func clearATRs(states []scard.ReaderState) {
	for i := range states {
		states[i].Atr = nil
	}
}

// privateContext opens a PC/SC context for one blocking wait, cancelled
// when ctx ends. pcsc-lite holds a context's lock for the whole of
// SCardGetStatusChange (measured: a Transmit on a card of the same context
// waited 1.9 s behind a 2 s wait), so waiting on the Context that Cards
// were connected through would stall their Transceive calls; a private
// context also gives SCardCancel a target that cancels this wait and
// nothing else. release must be called once the waiting is over; no
// goroutine outlives it.
func privateContext(ctx context.Context, what string) (sc *scard.Context, release func(), err error) {
	sc, err = scard.EstablishContext()
	if err != nil {
		return nil, nil, wrap("connect to the PC/SC service to "+what, err)
	}
	released, stopped := make(chan struct{}), make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		keepCancelling(sc, released)
	})
	return sc, func() {
		close(released)
		if !stop() {
			<-stopped // the canceller ran; wait until it is done with sc
		}
		_ = sc.Release()
	}, nil
}

// listReaders lists reader names; no readers is an empty list, not an
// error, because the callers wait for readers to come and go.
func listReaders(sc *scard.Context) ([]string, error) {
	names, err := sc.ListReaders()
	if err != nil {
		if codeOf(err) == codeNoReadersAvailable {
			return nil, nil
		}
		return nil, wrap("list readers", err)
	}
	return names, nil
}

func (c *Context) isClosed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.closed
}

// WaitForCard blocks until a card is in the reader called name and returns
// the reader with the card's ATR; it returns at once when a card is already
// there. With name "" it waits for a card in any reader. A mute card (no
// ATR) does not end the wait.
//
// It fails with reader.ErrNoReader when name is not a current reader, with
// reader.ErrReaderGone when the reader goes away during the wait, and with
// ctx's error (wrapped) when ctx ends first.
func (c *Context) WaitForCard(ctx context.Context, name string) (reader.Info, error) {
	return c.waitPresence(ctx, name, true)
}

// WaitForRemoval blocks until the reader called name holds no card; it
// returns at once when it is already empty. It fails like WaitForCard. Use
// it after taking a card out, so the next insertion is not mistaken for
// the card that is leaving.
func (c *Context) WaitForRemoval(ctx context.Context, name string) error {
	_, err := c.waitPresence(ctx, name, false)
	return err
}

// waitPresence waits until the reader called name (any reader for "")
// holds a card (want) or is empty (!want).
func (c *Context) waitPresence(ctx context.Context, name string, want bool) (reader.Info, error) {
	what := "wait for a card"
	if !want {
		what = "wait for the card to go"
	}
	if name != "" {
		what += fmt.Sprintf(" in %q", name)
	}
	if err := ctx.Err(); err != nil {
		return reader.Info{}, fmt.Errorf("pcsc: %s: %w", what, err)
	}
	if c.isClosed() {
		return reader.Info{}, ErrClosed
	}
	sc, release, err := privateContext(ctx, what)
	if err != nil {
		return reader.Info{}, err
	}
	defer release()
	defer statusGate.register()()

	names, err := listReaders(sc)
	if err != nil {
		return reader.Info{}, err
	}
	if len(names) == 0 {
		return reader.Info{}, fmt.Errorf("pcsc: %s: %w; %s", what, reader.ErrNoReader, hintNoReaders)
	}
	watch := names
	if name != "" {
		if !slices.Contains(names, name) {
			return reader.Info{}, fmt.Errorf("pcsc: %s: %w: no reader has that name; readers: %s",
				what, reader.ErrNoReader, quoteAll(names))
		}
		watch = []string{name}
	}
	states := make([]scard.ReaderState, len(watch))
	for i, n := range watch {
		states[i] = scard.ReaderState{Reader: n, CurrentState: scard.StateUnaware}
	}
	for {
		if err := ctx.Err(); err != nil {
			return reader.Info{}, fmt.Errorf("pcsc: %s: %w", what, err)
		}
		err := waitChange(ctx, sc, states)
		switch codeOf(err) {
		case codeTimeout, codeCancelled:
			continue // ctx is checked at the top
		case 0:
			if err != nil {
				return reader.Info{}, fmt.Errorf("pcsc: %s: %w", what, err)
			}
		default:
			return reader.Info{}, wrap(what, err)
		}
		for i := range states {
			st := &states[i]
			ev := uint32(st.EventState)
			if gone(ev) {
				return reader.Info{}, fmt.Errorf("pcsc: %s: %w: %q was removed", what, reader.ErrReaderGone, st.Reader)
			}
			ready := present(ev) == want
			if want && ev&stateMute != 0 {
				ready = false
			}
			if ready {
				in := reader.Info{Index: slices.Index(names, st.Reader), Name: st.Reader, Present: want}
				if want {
					in.ATR = bytes.Clone(st.Atr)
				}
				return in, nil
			}
			st.CurrentState = scard.StateFlag(nextCurrent(ev))
		}
	}
}

// Watch reports card and reader changes until ctx ends, then closes the
// channel. It first reports the present state as changes from nothing: a
// ReaderAdded for every reader, then a CardInserted (with ATR) for every
// card already in one, so a consumer needs no separate Readers call and
// misses nothing in between. After that it reports changes as they happen,
// including a card swapped or tapped between two waits (pcsc-lite's event
// counter shows those).
//
// Reader arrivals wake the wait through the PnP notification
// pseudo-reader, and the reader list is read again after every wait, so
// none is missed. A reader that leaves with a card in it yields
// CardRemoved, then ReaderRemoved. If the PC/SC service goes away, Watch
// reports every card and reader as removed and closes the channel early.
//
// One goroutine does all the waiting, on a private PC/SC context that
// SCardCancel wakes when ctx ends; it exits (and the channel closes)
// promptly after ctx ends, even if nobody reads the channel any more.
func (c *Context) Watch(ctx context.Context) (<-chan reader.Event, error) {
	w, err := c.watch(ctx)
	if err != nil {
		return nil, err
	}
	return w.out, nil
}

// watch starts a watcher; its err field may be read once out is closed.
func (c *Context) watch(ctx context.Context) (*watcher, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	sc, release, err := privateContext(ctx, "watch readers")
	if err != nil {
		return nil, err
	}
	names, err := listReaders(sc)
	if err != nil {
		release()
		return nil, err
	}
	w := &watcher{sc: sc, out: make(chan reader.Event, 16), pnp: true}
	unregister := statusGate.register()
	go func() {
		defer close(w.out)
		defer release()
		defer unregister()
		w.run(ctx, names)
	}()
	return w, nil
}

// watcher is the state of one Watch goroutine.
type watcher struct {
	sc     *scard.Context
	out    chan reader.Event
	pnp    bool                // pcscd reports reader changes through pnpReader
	states []scard.ReaderState // one per reader, in list order, then pnpReader if pnp
	err    error               // why the watch ended before ctx did; read after out is closed
}

func (w *watcher) send(ctx context.Context, evs ...reader.Event) bool {
	for _, ev := range evs {
		select {
		case w.out <- ev:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// readers returns the reader names being watched.
func (w *watcher) readers() []string {
	var names []string
	for _, st := range w.states {
		if st.Reader != pnpReader {
			names = append(names, st.Reader)
		}
	}
	return names
}

// setReaders rebuilds the wait list for names, keeping what is known about
// readers that stay; new ones start unaware, so the next wait returns their
// state at once and a card already in them is reported as inserted.
func (w *watcher) setReaders(names []string) {
	old := w.states
	w.states = make([]scard.ReaderState, 0, len(names)+1)
	find := func(name string) (scard.ReaderState, bool) {
		for _, st := range old {
			if st.Reader == name {
				return st, true
			}
		}
		return scard.ReaderState{}, false
	}
	for _, n := range names {
		st, ok := find(n)
		if !ok {
			st = scard.ReaderState{Reader: n, CurrentState: scard.StateUnaware}
		}
		w.states = append(w.states, st)
	}
	if w.pnp {
		st, ok := find(pnpReader)
		if !ok {
			st = scard.ReaderState{Reader: pnpReader, CurrentState: scard.StateUnaware}
		}
		w.states = append(w.states, st)
	}
}

func (w *watcher) run(ctx context.Context, names []string) {
	for _, n := range names {
		if !w.send(ctx, reader.Event{Kind: reader.ReaderAdded, Reader: n}) {
			return
		}
	}
	w.setReaders(names)
	for ctx.Err() == nil {
		if len(w.states) == 0 {
			// No PnP support and no reader: nothing to wait on, so look
			// at the reader list again after a while. pcsc-lite has
			// supported PnP since 1.6, so this is for exotic stacks only.
			t := time.NewTimer(waitSlice)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else {
			err := waitChange(ctx, w.sc, w.states)
			switch code := codeOf(err); {
			case err == nil:
				if !w.report(ctx) {
					return
				}
			case ctx.Err() != nil:
				return
			case code == codeTimeout || code == codeCancelled:
			case code == codeUnknownReader || code == codeReaderUnavailable:
				// A reader vanished in a way this PC/SC stack reports as
				// a failure of the whole call; the list tells which one.
				// If it tells nothing, retrying would spin.
				before := w.readers()
				if !w.relist(ctx) {
					return
				}
				if slices.Equal(before, w.readers()) {
					w.fail(ctx, wrap("wait for reader changes", err))
					return
				}
				continue
			default:
				w.fail(ctx, wrap("wait for reader changes", err))
				return
			}
		}
		// pcsc-lite signals reader changes through pnpReader only while a
		// wait is in progress (1.9.9 ignores the reader count that newer
		// stacks read from the high word of dwCurrentState), so a reader
		// plugged in between two waits would go unnoticed until the next
		// change. Reading the list after every wait closes that gap.
		if !w.relist(ctx) {
			return
		}
	}
}

// report turns the states a wait returned into events and makes them the
// new current states. It returns false when the watch must end.
func (w *watcher) report(ctx context.Context) bool {
	for i := range w.states {
		st := &w.states[i]
		ev, prev := uint32(st.EventState), uint32(st.CurrentState)
		st.CurrentState = scard.StateFlag(nextCurrent(ev))
		if st.Reader == pnpReader {
			if ev&stateUnknown != 0 {
				// Not supported: drop it; the list is read after every
				// wait anyway.
				w.pnp = false
			}
			continue
		}
		if !w.send(ctx, diffState(st.Reader, prev, ev, st.Atr)...) {
			return false
		}
	}
	return true
}

// relist reads the reader list, reports readers that came and went, and
// rebuilds the wait list. It returns false when the watch must end.
func (w *watcher) relist(ctx context.Context) bool {
	names, err := listReaders(w.sc)
	if err != nil {
		w.fail(ctx, err)
		return false
	}
	added, removed := diffReaders(w.readers(), names)
	for _, n := range removed {
		if !w.send(ctx, w.removal(n)...) {
			return false
		}
	}
	for _, n := range added {
		if !w.send(ctx, reader.Event{Kind: reader.ReaderAdded, Reader: n}) {
			return false
		}
	}
	w.setReaders(names)
	return true
}

// removal is what to report for a reader that went away: its card first,
// if it still had one as far as we knew.
func (w *watcher) removal(name string) []reader.Event {
	var evs []reader.Event
	for _, st := range w.states {
		if st.Reader == name && present(uint32(st.CurrentState)) {
			evs = append(evs, reader.Event{Kind: reader.CardRemoved, Reader: name})
		}
	}
	return append(evs, reader.Event{Kind: reader.ReaderRemoved, Reader: name})
}

// fail ends the watch on an error it cannot recover from (pcscd stopped,
// most likely): every card and reader is reported gone, since none can be
// used any more.
func (w *watcher) fail(ctx context.Context, err error) {
	w.err = err
	for _, n := range w.readers() {
		if !w.send(ctx, w.removal(n)...) {
			return
		}
	}
	w.states = nil
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
