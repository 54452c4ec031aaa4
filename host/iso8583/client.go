package iso8583

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/moov-io/iso8583"
)

// Client errors.
var (
	ErrClosed             = errors.New("iso8583: client closed")
	ErrTimeout            = errors.New("iso8583: no response within the timeout")
	ErrUnexpectedResponse = errors.New("iso8583: response does not match the request")
	ErrPendingSTAN        = errors.New("iso8583: a request with this STAN is already pending")
)

// DefaultTimeout is the per-request timeout of a Client whose Timeout is 0.
const DefaultTimeout = 30 * time.Second

type response struct {
	msg *iso8583.Message
	raw []byte
}

// Client sends requests over one connection and matches each response to
// its request by DE 11 STAN (protocols.md §5.9). Several requests may be in
// flight at once. Responses that match no pending request are dropped.
type Client struct {
	// Timeout bounds each Send; 0 means DefaultTimeout.
	Timeout  time.Duration
	maxFrame int
	conn     net.Conn
	wmu      sync.Mutex
	mu       sync.Mutex
	pending  map[string]chan response
	err      error // set once the read loop ended
	done     chan struct{}
}

// NewClient starts a client on conn, refusing incoming frames longer than
// maxFrame bytes (0: MaxFrame); it owns conn from now on.
func NewClient(conn net.Conn, maxFrame int) *Client {
	c := &Client{conn: conn, maxFrame: maxFrame, pending: map[string]chan response{}, done: make(chan struct{})}
	go c.readLoop()
	return c
}

func (c *Client) readLoop() {
	var err error
	for {
		var raw []byte
		raw, err = ReadMessage(c.conn, c.maxFrame)
		if err != nil {
			break
		}
		msg, uerr := Unpack(raw)
		if uerr != nil {
			continue // intact frame, unusable content: nothing to match
		}
		stan, _ := msg.GetString(DESTAN)
		c.mu.Lock()
		ch, ok := c.pending[stan]
		delete(c.pending, stan)
		c.mu.Unlock()
		if ok {
			ch <- response{msg: msg, raw: raw}
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %w", ErrClosed, err)
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
}

// Send packs msg — with its MAC under key unless key is nil — writes it and
// waits for the response bearing the same STAN and the matching response MTI.
// With a key, the response's MAC is verified under the same key (ErrMAC).
func (c *Client) Send(ctx context.Context, msg *iso8583.Message, key Key) (*iso8583.Message, error) {
	mti, err := msg.GetMTI()
	if err != nil {
		return nil, fmt.Errorf("%w: MTI: %v", ErrMalformed, err)
	}
	want, err := ResponseMTI(mti)
	if err != nil {
		return nil, err
	}
	stan, err := msg.GetString(DESTAN)
	if err != nil || len(stan) != 6 {
		return nil, fmt.Errorf("%w: DE 11 STAN missing", ErrMalformed)
	}
	raw, err := Pack(msg, key)
	if err != nil {
		return nil, err
	}
	ch := make(chan response, 1)
	c.mu.Lock()
	switch {
	case c.pending == nil:
		err = c.err
	case c.pending[stan] != nil:
		err = fmt.Errorf("%w: %s", ErrPendingSTAN, stan)
	default:
		c.pending[stan] = ch
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	forget := func() {
		c.mu.Lock()
		if c.pending != nil && c.pending[stan] == ch {
			delete(c.pending, stan)
		}
		c.mu.Unlock()
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c.wmu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetWriteDeadline(dl)
	}
	err = WriteMessage(c.conn, raw)
	c.wmu.Unlock()
	if err != nil {
		forget()
		return nil, err
	}
	select {
	case r := <-ch:
		got, _ := r.msg.GetMTI()
		if got != want {
			return nil, fmt.Errorf("%w: STAN %s answered by MTI %s, want %s", ErrUnexpectedResponse, stan, got, want)
		}
		if key != nil {
			if err := VerifyMAC(r.msg, r.raw, key); err != nil {
				// A server that cannot tell who is asking (unknown or
				// blocked terminal, docs/iso8583.md §9) refuses without a MAC:
				// say which code it sent, though nothing vouches for it.
				if rc, e := r.msg.GetString(DEResponseCode); errors.Is(err, ErrNoMAC) && e == nil && rc != "" && rc != RCApproved {
					return nil, &RefusalError{Code: rc, err: err}
				}
				return nil, err
			}
		}
		return r.msg, nil
	case <-ctx.Done():
		forget()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: STAN %s after %v", ErrTimeout, stan, timeout)
		}
		return nil, ctx.Err()
	case <-c.done:
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
}

// Close closes the connection; pending requests fail with ErrClosed.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

// RefusalError is an answer without the MAC it should carry, refusing the
// request with Code (e.g. 58: the server does not know the terminal, so it has
// no key to MAC with). The code is unauthenticated: a caller may report it
// but must not act on it as on a verified answer. It matches ErrNoMAC.
type RefusalError struct {
	Code string
	err  error
}

func (e *RefusalError) Error() string {
	return fmt.Sprintf("iso8583: refused with response code %s in an answer without MAC (unauthenticated)", e.Code)
}

func (e *RefusalError) Unwrap() error { return e.err }
