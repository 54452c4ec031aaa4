package vpcd

import (
	"context"
	"encoding/hex"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitLimit bounds every wait in the tests. It is a guard against hangs,
// never a delay: tests synchronise on channels and replies.
const waitLimit = 10 * time.Second

var testATR = []byte{0x3B, 0x80, 0x80, 0x01, 0x01} // T=0 and T=1 offered

// fakeCard records the calls it receives. By default it echoes commands.
type fakeCard struct {
	mu    sync.Mutex
	calls []string
	atr   []byte
	// transmit, if set, answers commands; panicIn names a method to panic in.
	transmit func(cmd []byte) []byte
	panicIn  string
}

func newFakeCard() *fakeCard { return &fakeCard{atr: testATR} }

func (c *fakeCard) record(call string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, call)
	if c.panicIn != "" && strings.HasPrefix(call, c.panicIn) {
		panic("fakeCard: " + call)
	}
}

func (c *fakeCard) ATR() []byte {
	c.record("atr")
	return c.atr
}
func (c *fakeCard) PowerOn()  { c.record("on") }
func (c *fakeCard) PowerOff() { c.record("off") }
func (c *fakeCard) Reset(warm bool) {
	if warm {
		c.record("warm")
	} else {
		c.record("cold")
	}
}

func (c *fakeCard) Transmit(cmd []byte) []byte {
	c.record("tx:" + hex.EncodeToString(cmd))
	if c.transmit != nil {
		return c.transmit(cmd)
	}
	return append([]byte(nil), cmd...)
}

// power returns the power-related calls (no ATR requests, no APDUs).
func (c *fakeCard) power() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(c.calls), func(s string) bool {
		return s == "atr" || strings.HasPrefix(s, "tx:")
	})
}

func (c *fakeCard) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// recv waits for one value from ch.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %T", *new(T))
		panic("unreachable")
	}
}

// events collects OnState events.
func events() (chan Event, Option) {
	ch := make(chan Event, 256)
	return ch, WithOnState(func(e Event) { ch <- e })
}

// nextState waits for the next event and checks its state.
func nextState(t testing.TB, ch <-chan Event, want State) Event {
	t.Helper()
	e := recv(t, ch)
	require.Equal(t, want, e.State, "event %v", e)
	return e
}

// listen opens a loopback listener closed at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}

// startServe runs Serve for card on a loopback listener until cleanup,
// and checks that it returns nil then.
func startServe(t testing.TB, card *fakeCard, opts ...Option) string {
	t.Helper()
	l := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, card, opts...) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, recv(t, done))
	})
	return l.Addr().String()
}

// startServeConn runs ServeConn over net.Pipe and returns the reader end;
// the returned channel yields ServeConn's result.
func startServeConn(t testing.TB, card *fakeCard, opts ...Option) (net.Conn, <-chan error) {
	t.Helper()
	readerEnd, cardEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		done <- ServeConn(ctx, cardEnd, card, opts...)
	}()
	t.Cleanup(func() {
		cancel()
		readerEnd.Close()
		recv(t, finished)
	})
	return readerEnd, done
}

// dialClient connects an unpowered Client to addr.
func dialClient(t testing.TB, addr string) *Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	c := NewClient(conn, "test "+addr)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func frame(payload ...byte) []byte { return appendFrame(nil, payload) }
