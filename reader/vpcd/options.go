package vpcd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// State is where an attached card stands with respect to the reader.
type State int

// States, in the order a healthy attachment goes through them.
const (
	// Connecting: the Attacher is dialling vpcd (Event.Err holds why the
	// previous attempt failed, nil on the first).
	Connecting State = iota + 1
	// Connected: the TCP connection is up; to pcscd the card is being
	// inserted (it polls presence every 400 ms, vsmartcard.md §5).
	Connected
	// Powered: since this connection was made, the reader powered the card
	// on (or reset it) and was then answered an ATR request. pcscd powers a
	// newly seen card and reads its ATR before it reports the card to
	// clients (vsmartcard.md §5, "Connect from the emulator: ATR? ATR? ON
	// ATR?"), so this is the "pcscd has seen the card" signal. It is
	// reported once per connection: pcscd's later power-off when idle does
	// not leave it.
	Powered
	// Removed: the connection ended (Event.Err says why, nil when it was
	// ended by Remove, Tap or the context), or Remove was called while no
	// connection was up.
	Removed
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Powered:
		return "powered"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Event reports a state change.
type Event struct {
	State State
	// Addr is the address dialled (Attacher) or the peer's (Serve).
	Addr string
	// Attempt counts consecutive connection attempts, from 1, in Connecting
	// events of an Attacher; 0 otherwise.
	Attempt int
	// Err is, for Connecting, the error of the previous attempt (nil on the
	// first); for Removed, why the connection ended (nil when this side
	// ended it). Connected and Powered carry nil.
	Err error
}

func (e Event) String() string {
	s := e.State.String()
	if e.Addr != "" {
		s += " " + e.Addr
	}
	if e.Attempt > 0 {
		s += fmt.Sprintf(" (attempt %d)", e.Attempt)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Option configures Attach, New and Serve. Options about dialling are
// ignored by Serve.
type Option func(*config)

type config struct {
	addr       string
	slot       int
	backoffMin time.Duration
	backoffMax time.Duration
	onState    func(Event)
	tapGap     time.Duration
	log        *slog.Logger
	dial       func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Default reconnection backoff: quick enough that a restarted pcscd sees
// the card again within about its own 400 ms presence poll, slow enough not
// to spin while it is gone.
const (
	DefaultBackoffMin = 50 * time.Millisecond
	DefaultBackoffMax = 2 * time.Second
)

// DefaultTapGap is how long Tap keeps the card out of the reader: more than
// two of pcscd's 400 ms presence polls, so one of them surely finds the slot
// empty (vsmartcard.md §5).
const DefaultTapGap = time.Second

// dialTimeout bounds one connection attempt; vpcd is local, so this only
// matters for a misrouted address.
const dialTimeout = 5 * time.Second

func newConfig(opts []Option) config {
	c := config{
		addr:       DefaultAddr,
		backoffMin: DefaultBackoffMin,
		backoffMax: DefaultBackoffMax,
		tapGap:     DefaultTapGap,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.dial == nil {
		d := &net.Dialer{Timeout: dialTimeout}
		c.dial = d.DialContext
	}
	return c
}

// WithAddr sets vpcd's address (host:port of slot 0). Default DefaultAddr.
func WithAddr(addr string) Option { return func(c *config) { c.addr = addr } }

// WithSlot selects vpcd's slot: the port of the address plus slot. Slot 1
// with the default address dials 127.0.0.1:35964, "Virtual PCD 00 01".
func WithSlot(slot int) Option { return func(c *config) { c.slot = slot } }

// WithBackoff sets the reconnection delay: first after the first failure,
// doubling up to limit, each delay drawn uniformly from its upper half
// (jitter). Defaults DefaultBackoffMin and DefaultBackoffMax; first ≤ 0
// retries at once (tests).
func WithBackoff(first, limit time.Duration) Option {
	return func(c *config) {
		c.backoffMin = first
		c.backoffMax = limit
	}
}

// WithTapGap sets how long Tap keeps the card out (DefaultTapGap).
func WithTapGap(d time.Duration) Option { return func(c *config) { c.tapGap = max(d, 0) } }

// WithOnState registers a callback for state changes. It is called from the
// goroutine that serves the card, one event at a time and in order, so it
// must return quickly; it may call Remove, Insert and Tap.
func WithOnState(f func(Event)) Option { return func(c *config) { c.onState = f } }

// WithLogger logs connection changes and card misbehaviour (panics,
// responses no frame can carry). Default: discard.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// WithDialer replaces the TCP dialer of an Attacher (tests, other
// transports). A returned net.Conn that is a syscall.Conn gets TCP_QUICKACK.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(c *config) { c.dial = dial }
}
