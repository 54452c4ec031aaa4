package vpcd

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/reader"
)

// TestServeFraming feeds the card side frames cut at every awkward place,
// as Debian's vpcd does (length and body in two send() calls,
// vsmartcard.md TL;DR) and worse, over real TCP and over net.Pipe (where
// each write is one read at most).
func TestServeFraming(t *testing.T) {
	apdu := []byte{0x00, 0xA4, 0x04, 0x00, 0x00}
	stream := bytes.Join([][]byte{
		frame(CtrlGetATR),
		frame(CtrlPowerOn),
		frame(CtrlGetATR),
		appendFrame(nil, apdu),
		frame(CtrlPowerOff),
		frame(CtrlGetATR),
	}, nil)
	want := bytes.Join([][]byte{
		appendFrame(nil, testATR),
		appendFrame(nil, testATR),
		appendFrame(nil, apdu),
		appendFrame(nil, testATR),
	}, nil)

	// Each split lists the sizes of the successive writes.
	splits := map[string]func(b []byte) [][]byte{
		"whole stream": func(b []byte) [][]byte { return [][]byte{b} },
		"byte at a time": func(b []byte) [][]byte {
			var out [][]byte
			for i := range b {
				out = append(out, b[i:i+1])
			}
			return out
		},
		"header then body (vpcd 0.8)": func(b []byte) [][]byte {
			var out [][]byte
			for len(b) > 0 {
				n := int(b[0])<<8 | int(b[1])
				out = append(out, b[:2], b[2:2+n])
				b = b[2+n:]
			}
			return out
		},
		"straddling frames": func(b []byte) [][]byte {
			var out [][]byte
			for len(b) > 3 {
				out = append(out, b[:3])
				b = b[3:]
			}
			return append(out, b)
		},
	}
	transports := map[string]func(t *testing.T, card *fakeCard) net.Conn{
		"tcp": func(t *testing.T, card *fakeCard) net.Conn {
			conn, err := net.Dial("tcp", startServe(t, card))
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			// Nagle on, as in vpcd: small writes may coalesce or not.
			require.NoError(t, conn.(*net.TCPConn).SetNoDelay(false))
			return conn
		},
		"pipe": func(t *testing.T, card *fakeCard) net.Conn {
			conn, _ := startServeConn(t, card)
			return conn
		},
	}
	for tname, transport := range transports {
		for sname, split := range splits {
			t.Run(tname+"/"+sname, func(t *testing.T) {
				card := newFakeCard()
				conn := transport(t, card)
				got := make(chan []byte, 1)
				go func() {
					b := make([]byte, len(want))
					_, _ = io.ReadFull(conn, b)
					got <- b
				}()
				for _, w := range split(stream) {
					_, err := conn.Write(w)
					require.NoError(t, err)
				}
				require.Equal(t, want, recv(t, got))
				require.Equal(t, []string{"off", "atr", "on", "atr", "tx:" + hex.EncodeToString(apdu), "off", "atr"}, card.all())
			})
		}
	}
}

func TestATRWhilePoweredOff(t *testing.T) {
	card := newFakeCard()
	c := dialClient(t, startServe(t, card))
	for range 3 { // presence polls
		atr, err := c.RequestATR(ctxT(t))
		require.NoError(t, err)
		require.Equal(t, testATR, atr)
	}
	require.Equal(t, []string{"off", "atr", "atr", "atr"}, card.all())
}

// TestPowerMapping checks the control byte → card method mapping,
// including the power-off on entering and leaving the reader.
func TestPowerMapping(t *testing.T) {
	tests := []struct {
		name string
		ops  func(ctx context.Context, c *Client) error
		want []string
	}{
		{"connect only", func(context.Context, *Client) error { return nil },
			[]string{"off"}},
		{"power on, leave powered", func(ctx context.Context, c *Client) error { return c.PowerOn(ctx) },
			[]string{"off", "on", "off"}},
		{"power on then off", func(ctx context.Context, c *Client) error {
			return errors.Join(c.PowerOn(ctx), c.PowerOff(ctx))
		}, []string{"off", "on", "off"}},
		{"warm reset while powered", func(ctx context.Context, c *Client) error {
			return errors.Join(c.PowerOn(ctx), c.Reset(ctx, false))
		}, []string{"off", "on", "warm", "off"}},
		{"reset while unpowered powers on", func(ctx context.Context, c *Client) error {
			return c.Reset(ctx, false)
		}, []string{"off", "on", "off"}},
		{"cold reset is a power cycle", func(ctx context.Context, c *Client) error {
			return errors.Join(c.PowerOn(ctx), c.Reset(ctx, true))
		}, []string{"off", "on", "off", "on", "off"}},
		{"power on twice", func(ctx context.Context, c *Client) error {
			return errors.Join(c.PowerOn(ctx), c.PowerOn(ctx), c.PowerOff(ctx))
		}, []string{"off", "on", "on", "off"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			card := newFakeCard()
			conn, done := startServeConn(t, card)
			c := NewClient(conn, "pipe")
			require.NoError(t, tt.ops(ctxT(t), c))
			require.NoError(t, c.Close())
			require.NoError(t, recv(t, done))
			require.Equal(t, tt.want, card.power())
		})
	}
}

// TestPowerStateAcrossConnections: the card is powered off once when Serve
// first sees it, and after that only when a connection leaves it powered.
func TestPowerStateAcrossConnections(t *testing.T) {
	card := newFakeCard()
	ev, opt := events()
	addr := startServe(t, card, opt)
	for range 2 {
		c := dialClient(t, addr)
		require.NoError(t, c.PowerOn(ctxT(t)))
		require.NoError(t, c.Close())
		nextState(t, ev, Connected)
		nextState(t, ev, Powered)
		nextState(t, ev, Removed)
	}
	require.Equal(t, []string{"off", "on", "off", "on", "off"}, card.power())
}

func TestServeStates(t *testing.T) {
	card := newFakeCard()
	ev, opt := events()
	addr := startServe(t, card, opt)
	c := dialClient(t, addr)
	ctx := ctxT(t)

	// A presence poll before power-on is not "powered".
	_, err := c.RequestATR(ctx)
	require.NoError(t, err)
	e := nextState(t, ev, Connected)
	require.Equal(t, c.conn.LocalAddr().String(), e.Addr)

	// vpcd's insertion sequence, then its idle power-off and a new
	// power-on: Powered is reported once per connection.
	require.NoError(t, c.PowerOn(ctx))
	nextState(t, ev, Powered)
	require.NoError(t, c.PowerOff(ctx))
	require.NoError(t, c.PowerOn(ctx))
	require.NoError(t, c.Close())
	e = nextState(t, ev, Removed)
	require.ErrorIs(t, e.Err, ErrReaderClosed)
	require.ErrorIs(t, e.Err, io.EOF)
}

func TestServeAPDU(t *testing.T) {
	tests := []struct {
		name     string
		transmit func([]byte) []byte
		panicIn  string
		cmd      []byte
		want     []byte
	}{
		{"echo", nil, "", []byte{0x00, 0xB0, 0x00, 0x00}, []byte{0x00, 0xB0, 0x00, 0x00}},
		{"largest frame", nil, "", bytes.Repeat([]byte{0xA5}, MaxPayload), bytes.Repeat([]byte{0xA5}, MaxPayload)},
		{"response too long for a frame", func([]byte) []byte { return make([]byte, MaxPayload+1) }, "",
			[]byte{0x00, 0xB0, 0x00, 0x00, 0x00}, []byte{0x6F, 0x00}},
		{"card panics", nil, "tx:", []byte{0x00, 0xB0, 0x00, 0x00}, []byte{0x6F, 0x00}},
		// pcscd does not enforce a minimum length (vsmartcard.md §4): two
		// and three bytes reach the card as APDUs.
		{"two-byte command", nil, "", []byte{0x00, 0xB0}, []byte{0x00, 0xB0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			card := newFakeCard()
			card.transmit, card.panicIn = tt.transmit, tt.panicIn
			conn, _ := startServeConn(t, card)
			got := make(chan []byte, 1)
			go func() {
				var hdr [2]byte
				if _, err := io.ReadFull(conn, hdr[:]); err != nil {
					got <- nil
					return
				}
				b := make([]byte, frameLen(&hdr))
				_, _ = io.ReadFull(conn, b)
				got <- b
			}()
			// Raw frames: Client would refuse the two-byte command.
			_, err := conn.Write(appendFrame(nil, tt.cmd))
			require.NoError(t, err)
			require.Equal(t, tt.want, recv(t, got))

			// The connection survives whatever the card did.
			c := NewClient(conn, "pipe")
			atr, err := c.RequestATR(ctxT(t))
			require.NoError(t, err)
			require.Equal(t, testATR, atr)
		})
	}
}

// A card that gives no answer lost power: the connection ends without a
// reply, so vpcd reports the card removed, as for a card torn away.
func TestServePowerLost(t *testing.T) {
	card := newFakeCard()
	card.transmit = func([]byte) []byte { return nil }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		done <- ServeConn(ctxT(t), conn, card)
	}()
	c, err := Dial(ctxT(t), ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Transceive(ctxT(t), []byte{0x00, 0xB0, 0x00, 0x00})
	require.ErrorIs(t, err, reader.ErrCardRemoved)
	require.ErrorIs(t, recv(t, done), ErrPowerLost)
	ln.Close()
}

func TestCardPanicsInControl(t *testing.T) {
	for _, method := range []string{"on", "off", "warm"} {
		t.Run(method, func(t *testing.T) {
			card := newFakeCard()
			card.panicIn = method
			c := dialClient(t, startServe(t, card))
			ctx := ctxT(t)
			require.NoError(t, c.PowerOn(ctx))
			require.NoError(t, c.Reset(ctx, false))
			require.NoError(t, c.PowerOff(ctx))
			resp, err := c.Transmit([]byte{1, 2, 3, 4})
			require.NoError(t, err)
			require.Equal(t, []byte{1, 2, 3, 4}, resp)
		})
	}
}

// A card whose ATR fails is mute: it answers an empty frame, which vpcd
// takes for no card (vsmartcard.md §5).
func TestMuteCard(t *testing.T) {
	card := newFakeCard()
	card.panicIn = "atr"
	c := dialClient(t, startServe(t, card))
	_, err := c.RequestATR(ctxT(t))
	require.ErrorIs(t, err, reader.ErrNoCard)
	require.ErrorIs(t, err, ErrEmptyFrame)
}

func TestServeConnEndings(t *testing.T) {
	tests := []struct {
		name    string
		send    []byte
		wantErr error // nil: a clean end
	}{
		{"EOF between frames", frame(CtrlPowerOn), nil}, // no reply to race with the close
		{"zero-length frame", []byte{0x00, 0x00}, ErrEmptyFrame},
		{"EOF inside the length", []byte{0x00}, io.ErrUnexpectedEOF},
		{"EOF before the control byte", []byte{0x00, 0x01}, io.ErrUnexpectedEOF},
		{"EOF inside a command", []byte{0x00, 0x05, 0x00, 0xA4}, io.ErrUnexpectedEOF},
		{"EOF inside a 65535-byte command", append([]byte{0xFF, 0xFF}, make([]byte, 1000)...), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			card := newFakeCard()
			conn, done := startServeConn(t, card)
			go func() { _, _ = io.Copy(io.Discard, conn) }()
			_, err := conn.Write(tt.send)
			if tt.wantErr == ErrEmptyFrame {
				// The card side hangs up at once: nothing more to write.
				require.ErrorIs(t, recv(t, done), ErrEmptyFrame)
				return
			}
			require.NoError(t, err)
			require.NoError(t, conn.Close())
			err = recv(t, done)
			if tt.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
}

// A zero-length frame ends that connection only; Serve takes the next.
func TestServeSurvivesBadConnection(t *testing.T) {
	card := newFakeCard()
	ev, opt := events()
	addr := startServe(t, card, opt)

	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer raw.Close()
	_, err = raw.Write([]byte{0, 0})
	require.NoError(t, err)
	_, err = raw.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "the card side must hang up")
	nextState(t, ev, Connected)
	require.ErrorIs(t, nextState(t, ev, Removed).Err, ErrEmptyFrame)

	c := dialClient(t, addr)
	require.NoError(t, c.PowerOn(ctxT(t)))
	nextState(t, ev, Connected)
	nextState(t, ev, Powered)
}

// An unknown control byte gets no reply (vpcd would not read one) and
// does not disturb the stream.
func TestUnknownControlByte(t *testing.T) {
	card := newFakeCard()
	conn, _ := startServeConn(t, card)
	// net.Pipe: Write returns once the card side has read the frame.
	_, err := conn.Write(frame(0x03))
	require.NoError(t, err)
	c := NewClient(conn, "pipe")
	atr, err := c.RequestATR(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, testATR, atr)
	require.Equal(t, []string{"off", "atr"}, card.all())
}

// Serve serves one reader at a time; a second one waits in the backlog
// and is served when the first leaves, not refused.
func TestServeOneAtATime(t *testing.T) {
	card := newFakeCard()
	ev, opt := events()
	addr := startServe(t, card, opt)
	first := dialClient(t, addr)
	require.NoError(t, first.PowerOn(ctxT(t)))
	nextState(t, ev, Connected)
	nextState(t, ev, Powered)

	second := dialClient(t, addr)
	got := make(chan error, 1)
	go func() { got <- second.PowerOn(ctxT(t)) }()
	require.NoError(t, first.Close())
	require.NoError(t, recv(t, got))
	nextState(t, ev, Removed)
	nextState(t, ev, Connected)
	nextState(t, ev, Powered)
}

// Cancelling Serve's context ends the current connection: the reader sees
// the card removed, and the card loses power.
func TestServeCancel(t *testing.T) {
	card := newFakeCard()
	l := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ev, opt := events()
	go func() { done <- Serve(ctx, l, card, opt) }()
	c := dialClient(t, l.Addr().String())
	require.NoError(t, c.PowerOn(ctxT(t)))
	nextState(t, ev, Connected)
	nextState(t, ev, Powered)

	cancel()
	require.NoError(t, recv(t, done))
	require.NoError(t, nextState(t, ev, Removed).Err)
	_, err := c.Transmit([]byte{0, 0xB0, 0, 0})
	require.ErrorIs(t, err, reader.ErrCardRemoved)
	require.Equal(t, []string{"off", "on", "off"}, card.power())
	_, err = net.Dial("tcp", l.Addr().String())
	require.Error(t, err, "the listener must be closed")
}

// Powered needs the card to be powered when the ATR is answered: a
// power-on undone before the ATR request does not count.
func TestPoweredNeedsPower(t *testing.T) {
	card := newFakeCard()
	ev, opt := events()
	conn, done := startServeConn(t, card, opt)
	c := NewClient(conn, "pipe")
	ctx := ctxT(t)
	nextState(t, ev, Connected)
	_, err := conn.Write(append(frame(CtrlPowerOn), frame(CtrlPowerOff)...))
	require.NoError(t, err)
	_, err = c.RequestATR(ctx)
	require.NoError(t, err)
	require.Empty(t, ev)
	require.NoError(t, c.Reset(ctx, false)) // reset while off powers on
	nextState(t, ev, Powered)
	require.NoError(t, c.Close())
	require.NoError(t, recv(t, done))
	require.ErrorIs(t, nextState(t, ev, Removed).Err, ErrReaderClosed)
}
