package vpcd

import (
	"context"
	"errors"
	"math"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/reader"
)

// fakeVPCD listens like vpcd in normal mode; each accepted connection is
// handed to the test, which plays pcscd with a Client.
type fakeVPCD struct {
	l     net.Listener
	conns chan net.Conn
}

func newFakeVPCD(t *testing.T) *fakeVPCD {
	f := &fakeVPCD{l: listen(t), conns: make(chan net.Conn, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := f.l.Accept()
			if err != nil {
				return
			}
			f.conns <- conn
		}
	}()
	t.Cleanup(func() {
		f.l.Close()
		recv(t, done)
		close(f.conns)
		for c := range f.conns {
			c.Close()
		}
	})
	return f
}

func (f *fakeVPCD) addr() string { return f.l.Addr().String() }

// accept waits for the card to connect.
func (f *fakeVPCD) accept(t *testing.T) *Client {
	t.Helper()
	c := NewClient(recv(t, f.conns), "fake vpcd")
	t.Cleanup(func() { c.Close() })
	return c
}

// startAttacher runs a for card until cleanup, then checks Run returned
// nil. parked, if not nil, receives each time Run waits while removed.
func startAttacher(t *testing.T, a *Attacher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, recv(t, done))
	})
}

func newTestAttacher(t *testing.T, card *fakeCard, addr string, opts ...Option) (*Attacher, chan Event, chan struct{}) {
	ev, opt := events()
	opts = append([]Option{WithAddr(addr), WithBackoff(time.Microsecond, 10*time.Microsecond), opt}, opts...)
	a := New(card, opts...)
	parked := make(chan struct{}, 64)
	a.parked = parked
	return a, ev, parked
}

// powerUp plays pcscd seeing a new card (vsmartcard.md §5: ATR? ATR? ON
// ATR?) and waits for Powered.
func powerUp(t *testing.T, vpcd *Client, ev <-chan Event) {
	t.Helper()
	ctx := ctxT(t)
	for range 2 {
		_, err := vpcd.RequestATR(ctx)
		require.NoError(t, err)
	}
	require.NoError(t, vpcd.PowerOn(ctx))
	nextState(t, ev, Powered)
}

func TestAttachStates(t *testing.T) {
	card := newFakeCard()
	vpcd := newFakeVPCD(t)
	a, ev, _ := newTestAttacher(t, card, vpcd.addr())
	startAttacher(t, a)

	require.Equal(t, Event{State: Connecting, Addr: vpcd.addr(), Attempt: 1}, recv(t, ev))
	require.Equal(t, Event{State: Connected, Addr: vpcd.addr()}, recv(t, ev))
	c := vpcd.accept(t)
	powerUp(t, c, ev)
	require.Equal(t, Powered, a.Status().State)
	// pcscd's idle power-off and next SCardConnect: still Powered, no event.
	require.NoError(t, c.PowerOff(ctxT(t)))
	require.NoError(t, c.PowerOn(ctxT(t)))
	require.Equal(t, []string{"off", "atr", "atr", "on", "atr", "off", "on", "atr"}, card.all())
	require.Empty(t, ev)
}

// pcscd restarting: vpcd closes the connection, the card reconnects at
// once and is powered off until the new vpcd powers it on.
func TestAttachReconnect(t *testing.T) {
	card := newFakeCard()
	vpcd := newFakeVPCD(t)
	a, ev, _ := newTestAttacher(t, card, vpcd.addr())
	startAttacher(t, a)
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
	c := vpcd.accept(t)
	powerUp(t, c, ev)

	for i := range 3 {
		require.NoError(t, c.Close(), "round %d", i)
		e := nextState(t, ev, Removed)
		require.ErrorIs(t, e.Err, ErrReaderClosed)
		e = nextState(t, ev, Connecting)
		require.Equal(t, 1, e.Attempt, "a working connection resets the backoff")
		require.ErrorIs(t, e.Err, ErrReaderClosed)
		nextState(t, ev, Connected)
		c = vpcd.accept(t)
		powerUp(t, c, ev)
	}
	require.Equal(t, []string{"off", "on", "off", "on", "off", "on", "off", "on"}, card.power())
}

// Before pcscd is up, connection attempts fail and are retried with
// backoff; each Connecting event carries the previous attempt's error.
func TestAttachWaitsForVPCD(t *testing.T) {
	card := newFakeCard()
	vpcd := newFakeVPCD(t)
	refused := errors.New("connection refused (test)")
	var calls atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if calls.Add(1) <= 3 {
			return nil, refused
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	a, ev, _ := newTestAttacher(t, card, vpcd.addr(), WithDialer(dial))
	startAttacher(t, a)

	require.NoError(t, nextState(t, ev, Connecting).Err)
	for attempt := 2; attempt <= 4; attempt++ {
		e := nextState(t, ev, Connecting)
		require.Equal(t, attempt, e.Attempt)
		require.ErrorIs(t, e.Err, refused)
		require.Contains(t, e.Err.Error(), vpcd.addr())
	}
	nextState(t, ev, Connected)
	powerUp(t, vpcd.accept(t), ev)
}

// A peer that accepts and hangs up without a word (not vpcd) is retried
// with growing backoff, not in a tight loop.
func TestAttachSilentDropBacksOff(t *testing.T) {
	card := newFakeCard()
	vpcd := newFakeVPCD(t)
	a, ev, _ := newTestAttacher(t, card, vpcd.addr())
	startAttacher(t, a)
	for attempt := 1; attempt <= 3; attempt++ {
		e := nextState(t, ev, Connecting)
		require.Equal(t, attempt, e.Attempt)
		nextState(t, ev, Connected)
		recv(t, vpcd.conns).Close()
		nextState(t, ev, Removed)
	}
}

func TestAttachRemoveInsert(t *testing.T) {
	card := newFakeCard()
	vpcd := newFakeVPCD(t)
	a, ev, parked := newTestAttacher(t, card, vpcd.addr())
	startAttacher(t, a)
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
	c := vpcd.accept(t)
	powerUp(t, c, ev)

	a.Remove()
	require.NoError(t, nextState(t, ev, Removed).Err)
	recv(t, parked) // waiting for Insert, not redialling
	require.Equal(t, Removed, a.Status().State)
	_, err := c.RequestATR(ctxT(t))
	require.ErrorIs(t, err, reader.ErrCardRemoved, "vpcd's next poll sees the card gone")
	require.Equal(t, []string{"off", "on", "off"}, card.power())
	a.Remove() // idempotent
	require.Empty(t, ev)

	a.Insert()
	require.Equal(t, Event{State: Connecting, Addr: vpcd.addr(), Attempt: 1}, recv(t, ev))
	nextState(t, ev, Connected)
	powerUp(t, vpcd.accept(t), ev)
}

func TestAttachTap(t *testing.T) {
	card := newFakeCard()
	vpcd := newFakeVPCD(t)
	a, ev, _ := newTestAttacher(t, card, vpcd.addr(), WithTapGap(20*time.Millisecond))
	startAttacher(t, a)
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
	c := vpcd.accept(t)
	powerUp(t, c, ev)

	a.Tap()
	require.NoError(t, nextState(t, ev, Removed).Err)
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
	_, err := c.RequestATR(ctxT(t))
	require.ErrorIs(t, err, reader.ErrCardRemoved)
	powerUp(t, vpcd.accept(t), ev)
	require.Equal(t, []string{"off", "on", "off", "on"}, card.power())
}

// A Remove during the tap gap wins: the card stays out.
func TestAttachTapCancelledByRemove(t *testing.T) {
	vpcd := newFakeVPCD(t)
	a, ev, parked := newTestAttacher(t, newFakeCard(), vpcd.addr(), WithTapGap(time.Hour))
	startAttacher(t, a)
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
	powerUp(t, vpcd.accept(t), ev)

	a.Tap()
	nextState(t, ev, Removed)
	recv(t, parked) // out of the reader, waiting for the gap
	a.Remove()
	recv(t, parked)
	require.True(t, a.Status().State == Removed)
	a.Insert() // an explicit Insert ends the gap early
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
}

// Remove before Run: the card starts out of the reader.
func TestAttachStartRemoved(t *testing.T) {
	vpcd := newFakeVPCD(t)
	a, ev, parked := newTestAttacher(t, newFakeCard(), vpcd.addr())
	a.Remove()
	startAttacher(t, a)
	require.Equal(t, Event{State: Removed, Addr: vpcd.addr()}, recv(t, ev))
	recv(t, parked)
	a.Insert()
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
}

// Remove aborts a connection attempt under way.
func TestAttachRemoveWhileDialling(t *testing.T) {
	dialling := make(chan struct{}, 1)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialling <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	a, ev, parked := newTestAttacher(t, newFakeCard(), "127.0.0.1:1", WithDialer(dial))
	startAttacher(t, a)
	nextState(t, ev, Connecting)
	recv(t, dialling)
	a.Remove()
	require.NoError(t, nextState(t, ev, Removed).Err)
	recv(t, parked)
	a.Insert()
	require.Equal(t, 1, nextState(t, ev, Connecting).Attempt)
	recv(t, dialling)
}

func TestAttachCancel(t *testing.T) {
	card := newFakeCard()
	vpcd := newFakeVPCD(t)
	a, ev, _ := newTestAttacher(t, card, vpcd.addr())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
	c := vpcd.accept(t)
	powerUp(t, c, ev)

	require.ErrorIs(t, a.Run(ctx), ErrRunning)
	cancel()
	require.NoError(t, recv(t, done))
	require.NoError(t, nextState(t, ev, Removed).Err)
	_, err := c.RequestATR(ctxT(t))
	require.ErrorIs(t, err, reader.ErrCardRemoved)
	require.Equal(t, []string{"off", "on", "off"}, card.power())
}

func TestAttachSlot(t *testing.T) {
	vpcd := newFakeVPCD(t)
	_, port, err := net.SplitHostPort(vpcd.addr())
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	base := net.JoinHostPort("127.0.0.1", strconv.Itoa(p-1))
	a, ev, _ := newTestAttacher(t, newFakeCard(), base, WithSlot(1))
	require.Equal(t, vpcd.addr(), a.Addr())
	startAttacher(t, a)
	nextState(t, ev, Connecting)
	nextState(t, ev, Connected)
	vpcd.accept(t)

	require.Equal(t, "127.0.0.1:35964", New(newFakeCard(), WithSlot(1)).Addr())
	require.Error(t, New(newFakeCard(), WithAddr("nowhere")).Run(context.Background()))
}

func TestBackoffDelay(t *testing.T) {
	const ms = time.Millisecond
	low := func(int64) int64 { return 0 }
	high := func(n int64) int64 { return n - 1 }
	tests := []struct {
		min, max time.Duration
		n        int
		lo, hi   time.Duration
	}{
		{50 * ms, 2000 * ms, 1, 25 * ms, 50 * ms},
		{50 * ms, 2000 * ms, 2, 50 * ms, 100 * ms},
		{50 * ms, 2000 * ms, 6, 800 * ms, 1600 * ms},
		{50 * ms, 2000 * ms, 7, 1000 * ms, 2000 * ms},
		{50 * ms, 2000 * ms, 1000, 1000 * ms, 2000 * ms},
		{0, 2000 * ms, 5, 0, 0},
		{10 * ms, 1 * ms, 3, 5 * ms, 10 * ms}, // limit below first: first wins
		{3 * ms, 10 * ms, 3, 5 * ms, 10 * ms},
		{ms, math.MaxInt64, 100, math.MaxInt64 / 2, math.MaxInt64},
	}
	for _, tt := range tests {
		require.Equal(t, tt.lo, backoffDelay(tt.min, tt.max, tt.n, low), "%+v", tt)
		require.Equal(t, tt.hi, backoffDelay(tt.min, tt.max, tt.n, high), "%+v", tt)
	}
}
