package vpcd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/valuechip/valuechip/applet"
)

// Attacher keeps a card attached to vpcd in normal mode: it connects out to
// vpcd's slot, serves the card, and reconnects whenever the connection
// drops or vpcd is not listening yet (pcscd not started, or restarting),
// with capped exponential backoff.
//
// Remove, Insert and Tap move the card out of and into the reader; they
// may be called from any goroutine (a signal handler, a test) at any time,
// before or during Run.
type Attacher struct {
	card    applet.Card
	cfg     config
	addr    string
	addrErr error

	wake chan struct{} // buffered(1): Remove/Insert interrupt waits in Run

	mu          sync.Mutex
	running     bool
	removed     bool
	moves       uint64             // counts Remove and Insert calls, so a late Tap re-insertion yields to them
	conn        net.Conn           // the connection being served, if any
	closedByUs  bool               // Remove closed conn
	cancelDial  context.CancelFunc // aborts the attempt under way
	dialAborted bool               // Remove cancelled that attempt
	status      Event

	// parked, if set (tests), receives a value each time Run waits while
	// the card is removed: proof that it does not reconnect by itself.
	parked chan<- struct{}
}

// New returns an Attacher for card; Run starts it.
func New(card applet.Card, opts ...Option) *Attacher {
	a := &Attacher{card: card, cfg: newConfig(opts), wake: make(chan struct{}, 1)}
	a.addr, a.addrErr = SlotAddr(a.cfg.addr, a.cfg.slot)
	if a.addrErr != nil {
		a.addr = a.cfg.addr
	}
	return a
}

// Attach attaches card to vpcd until ctx is done; see Attacher. It returns
// nil when ctx ends, or an error for a bad address.
func Attach(ctx context.Context, card applet.Card, opts ...Option) error {
	return New(card, opts...).Run(ctx)
}

// Addr is the address the Attacher dials (slot applied).
func (a *Attacher) Addr() string { return a.addr }

// Status returns the last event reported: the current state, and for
// Connecting the error of the last failed attempt. Before Run has reported
// anything its State is 0.
func (a *Attacher) Status() Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.status
}

// Remove takes the card out of the reader: the connection, if any, is
// closed (vpcd ejects the card at its next presence poll) and the Attacher
// stays disconnected until Insert. It does not wait: OnState reports
// Removed once done.
func (a *Attacher) Remove() {
	a.mu.Lock()
	a.moves++
	a.removed = true
	if a.conn != nil {
		a.closedByUs = true
		a.conn.Close()
	}
	if a.cancelDial != nil {
		a.dialAborted = true
		a.cancelDial()
	}
	a.mu.Unlock()
	a.signal()
}

// Insert puts the card back: the Attacher connects again at once.
func (a *Attacher) Insert() {
	a.mu.Lock()
	a.moves++
	a.removed = false
	a.mu.Unlock()
	a.signal()
}

// Tap removes the card and inserts it again after the tap gap (WithTapGap),
// as a contactless card briefly leaving the field, so pcscd sees a removal
// and then an insertion. It does not block. The gap matters: pcscd notices
// presence only at its 400 ms polls, and vpcd accepts a waiting connection
// at the same poll in which it finds the old one closed, so a card that
// comes back at once is never seen to leave — pcscd then takes it for the
// old card, already powered down, and never powers it up (observed with
// Debian 12's pcscd 1.9.9 and vpcd 0.8). A Remove or Insert during the gap
// cancels the re-insertion.
func (a *Attacher) Tap() {
	a.Remove()
	a.mu.Lock()
	moves := a.moves
	a.mu.Unlock()
	time.AfterFunc(a.cfg.tapGap, func() {
		a.mu.Lock()
		stale := a.moves != moves
		a.mu.Unlock()
		if !stale {
			a.Insert()
		}
	})
}

func (a *Attacher) signal() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Attacher) emit(e Event) {
	a.mu.Lock()
	a.status = e
	a.mu.Unlock()
	if a.cfg.onState != nil {
		a.cfg.onState(e)
	}
}

// Run attaches the card until ctx is done, then closes the connection
// (powering the card off) and returns nil. It returns ErrRunning if Run is
// already running, or the address error.
func (a *Attacher) Run(ctx context.Context) error {
	if a.addrErr != nil {
		return a.addrErr
	}
	a.mu.Lock()
	if a.running {
		a.mu.Unlock()
		return ErrRunning
	}
	a.running = true
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.running = false
		a.mu.Unlock()
	}()

	d := newDriver(a.card, a.cfg.log)
	failures := 0 // consecutive attempts that served nothing
	var lastErr error
	for ctx.Err() == nil {
		a.mu.Lock()
		removed := a.removed
		a.mu.Unlock()
		if removed {
			if a.Status().State != Removed {
				a.emit(Event{State: Removed, Addr: a.addr})
			}
			if a.parked != nil {
				select {
				case a.parked <- struct{}{}:
				default:
				}
			}
			select {
			case <-ctx.Done():
			case <-a.wake:
			}
			failures, lastErr = 0, nil
			continue
		}

		a.emit(Event{State: Connecting, Addr: a.addr, Attempt: failures + 1, Err: lastErr})
		conn, aborted, err := a.dial(ctx)
		if aborted {
			continue // Remove (or Tap) interrupted the attempt
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			a.cfg.log.Debug("vpcd: cannot reach vpcd", "addr", a.addr, "attempt", failures+1, "err", err)
			lastErr = err
			failures++
			a.sleep(ctx, a.backoff(failures))
			continue
		}

		a.mu.Lock()
		if a.removed {
			a.mu.Unlock()
			conn.Close()
			continue
		}
		a.conn = conn
		a.mu.Unlock()

		a.cfg.log.Info("vpcd: connected", "addr", a.addr)
		a.emit(Event{State: Connected, Addr: a.addr})
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		served, err := d.serve(conn, func() { a.emit(Event{State: Powered, Addr: a.addr}) })
		stop()
		conn.Close()

		a.mu.Lock()
		byUs := a.closedByUs
		a.conn, a.closedByUs = nil, false
		a.mu.Unlock()
		if (byUs || ctx.Err() != nil) && closedHere(err) {
			err = nil
		}
		a.cfg.log.Info("vpcd: disconnected", "addr", a.addr, "reason", err)
		a.emit(Event{State: Removed, Addr: a.addr, Err: err})
		lastErr = err
		if errors.Is(err, ErrPowerLost) {
			// A torn card comes back like a tapped one: after the gap,
			// so that pcscd sees it leave (see Tap).
			a.sleep(ctx, a.cfg.tapGap)
			failures = 0
			continue
		}
		if served || byUs {
			// A working connection ended (vpcd ejected the card, pcscd
			// stopped) or the card was taken out: try again at once.
			// A restarted pcscd refuses at first, and backoff applies.
			failures = 0
			continue
		}
		// Connected but nothing was ever said: do not spin on a peer
		// that accepts and drops.
		failures++
		a.sleep(ctx, a.backoff(failures))
	}
	return nil
}

// dial makes one connection attempt that Remove can abort.
func (a *Attacher) dial(ctx context.Context) (conn net.Conn, aborted bool, err error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	a.mu.Lock()
	if a.removed {
		a.mu.Unlock()
		return nil, true, nil
	}
	a.cancelDial, a.dialAborted = cancel, false
	a.mu.Unlock()

	conn, err = a.cfg.dial(dctx, "tcp", a.addr)

	a.mu.Lock()
	aborted = a.dialAborted
	a.cancelDial, a.dialAborted = nil, false
	a.mu.Unlock()
	if err != nil {
		return nil, aborted, fmt.Errorf("vpcd: connecting to %s: %w", a.addr, err)
	}
	// Connected even if Remove came meanwhile: Run checks a.removed when
	// it registers conn, and closes it then.
	return conn, false, nil
}

// backoff is the delay after the n-th consecutive failure (n ≥ 1): the
// first delay doubled n-1 times, capped at the limit, drawn uniformly from
// [d/2, d] so that several cards (two vpcd slots) do not retry in lockstep.
func (a *Attacher) backoff(n int) time.Duration {
	return backoffDelay(a.cfg.backoffMin, a.cfg.backoffMax, n, rand.Int64N)
}

func backoffDelay(first, limit time.Duration, n int, randN func(int64) int64) time.Duration {
	if first <= 0 {
		return 0
	}
	limit = max(limit, first)
	d := first
	for i := 1; i < n && d < limit; i++ {
		if d > limit/2 {
			d = limit // and no overflow for a huge limit
			break
		}
		d *= 2
	}
	half := d / 2
	return half + time.Duration(randN(int64(d-half)+1))
}

// sleep waits d, or less if ctx ends or Remove/Insert signal.
func (a *Attacher) sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-a.wake:
	case <-t.C:
	}
}
