//go:build cgo

package pcsc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// vpcd control bytes (a 1-byte frame from vpcd to the card).
const (
	ctrlOff   = 0x00
	ctrlOn    = 0x01
	ctrlReset = 0x02
	ctrlATR   = 0x04
)

// testCard is a throwaway card for vpcd's card side, just enough for these
// tests: it answers vpcd's control bytes, logs them, and answers every
// command APDU with the command itself followed by 90 00, so a test can
// check that bytes went through unchanged. Inserting dials vpcd; removing
// closes the socket, which vpcd notices at its next presence poll (400 ms).
type testCard struct {
	addr string
	atr  []byte

	mu      sync.Mutex
	conn    net.Conn
	done    chan struct{} // closed when serve returns
	ctrl    []byte        // control bytes received, in order
	changed chan struct{} // closed and replaced whenever ctrl grows
}

func newTestCard(addr string, atr []byte) *testCard {
	return &testCard{addr: addr, atr: atr, changed: make(chan struct{})}
}

// insert connects the card to vpcd.
func (c *testCard) insert(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		t.Fatal("test card already inserted")
	}
	conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial vpcd at %s: %v", c.addr, err)
	}
	c.conn, c.done = conn, make(chan struct{})
	go c.serve(conn, c.done)
}

// remove disconnects the card and waits for its goroutine to end.
func (c *testCard) remove() {
	c.mu.Lock()
	conn, done := c.conn, c.done
	c.conn = nil
	c.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
		<-done
	}
}

// setATR changes the ATR for the next insertion.
func (c *testCard) setATR(atr []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.atr = atr
}

func (c *testCard) serve(conn net.Conn, done chan struct{}) {
	defer close(done)
	var hdr [2]byte
	for {
		setQuickAck(conn) // vsmartcard.md §4: or every frame waits ~40 ms
		if _, err := io.ReadFull(conn, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		setQuickAck(conn)
		if _, err := io.ReadFull(conn, body); err != nil {
			return
		}
		var rsp []byte
		if len(body) == 1 {
			c.mu.Lock()
			c.ctrl = append(c.ctrl, body[0])
			close(c.changed)
			c.changed = make(chan struct{})
			atr := c.atr
			c.mu.Unlock()
			if body[0] != ctrlATR {
				continue // power off, on and reset get no reply
			}
			rsp = atr
		} else {
			rsp = append(bytes.Clone(body), 0x90, 0x00)
		}
		frame := binary.BigEndian.AppendUint16(nil, uint16(len(rsp)))
		if _, err := conn.Write(append(frame, rsp...)); err != nil { // one write: no Nagle stall
			return
		}
	}
}

// mark returns a position in the control log, to wait for bytes after it.
func (c *testCard) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ctrl)
}

// waitCtrl waits until the control bytes want have arrived, in order (other
// bytes may come between them), after position from. It returns the bytes
// seen since from.
func (c *testCard) waitCtrl(ctx context.Context, from int, want ...byte) ([]byte, error) {
	for {
		c.mu.Lock()
		seen := bytes.Clone(c.ctrl[from:])
		changed := c.changed
		c.mu.Unlock()
		i := 0
		for _, b := range seen {
			if i < len(want) && b == want[i] {
				i++
			}
		}
		if i == len(want) {
			return seen, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return seen, errors.Join(ctx.Err(), errors.New("control bytes seen: "+hexString(seen)))
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789ABCDEF"
	var s []byte
	for i, x := range b {
		if i > 0 {
			s = append(s, ' ')
		}
		s = append(s, digits[x>>4], digits[x&15])
	}
	return string(s)
}
