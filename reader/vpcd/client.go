package vpcd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/valuechip/valuechip/reader"
)

// Client plays vpcd's part, the reader, over a connection to a card served
// with Serve (valuechip emulate --listen). It implements reader.Conn, so the
// "tcp:HOST:PORT" reader name needs no pcscd.
//
// Methods are safe for concurrent use; exchanges are serialised. After an
// I/O error or a cancelled exchange the stream's framing is lost, so every
// later call fails with the same error: open a new Client.
type Client struct {
	conn net.Conn
	r    *bufio.Reader // one read(2) for a reply that arrived whole
	name string

	mu  sync.Mutex
	atr []byte
	err error  // sticky
	out []byte // frame buffer, reused
}

// Dial connects to a card served at addr and powers it on, reading its ATR,
// as SCardConnect makes pcscd do (vsmartcard.md §5: "ATR? ON ATR?").
func Dial(ctx context.Context, addr string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("vpcd: connecting to card at %s: %w", addr, err)
	}
	c := NewClient(conn, "vpcd tcp:"+addr)
	if err := c.PowerOn(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// NewClient wraps an established connection to a card without sending
// anything: the card is unpowered until PowerOn. name is what Reader
// reports.
func NewClient(conn net.Conn, name string) *Client {
	return &Client{conn: conn, r: bufio.NewReaderSize(conn, readBufSize), name: name}
}

// PowerOn powers the card on (a cold reset) and reads its ATR.
func (c *Client) PowerOn(ctx context.Context) error {
	_, err := c.control(ctx, CtrlPowerOn, CtrlGetATR)
	return err
}

// PowerOff cuts the card's power.
func (c *Client) PowerOff(ctx context.Context) error {
	_, err := c.control(ctx, CtrlPowerOff)
	return err
}

// Reset implements reader.Conn: a warm reset (control byte 02), or with
// cold a power cycle (00, 01) as pcsc-lite does for SCARD_UNPOWER_CARD; the
// ATR is read again either way.
func (c *Client) Reset(ctx context.Context, cold bool) error {
	var err error
	if cold {
		_, err = c.control(ctx, CtrlPowerOff, CtrlPowerOn, CtrlGetATR)
	} else {
		_, err = c.control(ctx, CtrlReset, CtrlGetATR)
	}
	return err
}

// RequestATR asks the card for its ATR (control byte 04), as vpcd's
// presence poll does; it works whether or not the card is powered. An empty
// answer means the card is mute, which vpcd treats as no card: the error
// wraps reader.ErrNoCard.
func (c *Client) RequestATR(ctx context.Context) ([]byte, error) {
	atr, err := c.control(ctx, CtrlGetATR)
	return bytes.Clone(atr), err
}

// ATR implements reader.Conn: the ATR read by the last PowerOn, Reset or
// RequestATR.
func (c *Client) ATR() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.atr)
}

// Protocol implements reader.Conn, from the cached ATR: T=1 if it offers
// T=1 or cannot be parsed, T=0 if T=0 is its only protocol.
func (c *Client) Protocol() reader.Protocol {
	c.mu.Lock()
	defer c.mu.Unlock()
	return protocolOf(c.atr)
}

// Reader implements reader.Conn.
func (c *Client) Reader() string { return c.name }

// Transmit sends one command APDU and returns the response APDU.
func (c *Client) Transmit(cmd []byte) ([]byte, error) {
	return c.Transceive(context.Background(), cmd)
}

// Transceive implements reader.Transceiver. Commands shorter than 4 bytes
// are refused (ErrShortCommand): a 1-byte one would be taken for a control
// byte, and transmitting 00 hangs a real vpcd slot (vsmartcard.md §5).
func (c *Client) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	switch {
	case len(cmd) < 4:
		return nil, fmt.Errorf("%s: %d-byte command: %w", c.name, len(cmd), ErrShortCommand)
	case len(cmd) > MaxPayload:
		return nil, fmt.Errorf("%s: %d-byte command: %w", c.name, len(cmd), ErrFrameTooLarge)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var resp []byte
	err := c.exchange(ctx, func() error {
		c.out = appendFrame(c.out[:0], cmd)
		var err error
		resp, err = c.roundTrip(true)
		return err
	})
	return resp, err
}

// Close implements reader.Conn: the connection is closed, which to the card
// is leaving the reader (it powers off). It may be called while another
// call is blocked, which then fails.
func (c *Client) Close() error { return c.conn.Close() }

// control sends control bytes, one frame each; only a final CtrlGetATR
// expects a reply, which becomes the cached ATR.
func (c *Client) control(ctx context.Context, ctl ...byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var atr []byte
	err := c.exchange(ctx, func() error {
		// All frames in one write: no reply comes between them.
		c.out = c.out[:0]
		for _, b := range ctl {
			c.out = appendFrame(c.out, []byte{b})
		}
		var err error
		atr, err = c.roundTrip(ctl[len(ctl)-1] == CtrlGetATR)
		return err
	})
	if err == nil && atr != nil {
		c.atr = atr
	}
	return atr, err
}

// aLongTimeAgo is a deadline in the past: setting it unblocks pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

// exchange runs f (I/O on c.conn) under ctx, with c.mu held: ctx's deadline
// becomes the connection's and cancelling ctx unblocks the I/O. Any error
// from f, or from a cancelled ctx, makes the client unusable.
func (c *Client) exchange(ctx context.Context, f func() error) error {
	if c.err != nil {
		return c.err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", c.name, err) // nothing sent: not sticky
	}
	dl, hasDL := ctx.Deadline()
	if hasDL {
		_ = c.conn.SetDeadline(dl)
	}
	var err error
	if ctx.Done() == nil { // never cancelled (Transmit): no watcher needed
		err = f()
	} else {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			_ = c.conn.SetDeadline(aLongTimeAgo)
			close(fired)
		})
		err = f()
		if !stop() {
			<-fired // ctx fired: wait for the poisoned deadline before clearing it
		}
	}
	if hasDL || ctx.Err() != nil {
		_ = c.conn.SetDeadline(time.Time{})
	}
	if err == nil {
		return nil // complete even if ctx ended just after: framing is intact
	}
	cerr := ctx.Err()
	if cerr == nil && hasDL && errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket deadline can fire a moment before ctx's own timer.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		err = fmt.Errorf("%w (%w)", cerr, err)
	}
	c.err = fmt.Errorf("%s: %w", c.name, err)
	return c.err
}

// roundTrip writes c.out in one write and, if wantReply, reads one reply
// frame. EOF means the card left: the error wraps reader.ErrCardRemoved. An
// empty reply means a mute card, which vpcd ejects (vsmartcard.md §5): the
// error wraps reader.ErrNoCard and ErrEmptyFrame.
func (c *Client) roundTrip(wantReply bool) ([]byte, error) {
	if _, err := c.conn.Write(c.out); err != nil {
		return nil, fmt.Errorf("writing frame: %w", removedErr(err))
	}
	if !wantReply {
		return nil, nil
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("reading reply length: %w", removedErr(err))
	}
	n := frameLen(&hdr)
	if n == 0 {
		return nil, fmt.Errorf("%w: %w", reader.ErrNoCard, ErrEmptyFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, fmt.Errorf("reading %d-byte reply: %w", n, removedErr(bodyErr(err)))
	}
	return body, nil
}

// removedErr marks the peer going away as the card being removed.
func removedErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.ErrClosedPipe) {
		return fmt.Errorf("%w: %w", reader.ErrCardRemoved, err)
	}
	return err
}

var _ reader.Conn = (*Client)(nil)
