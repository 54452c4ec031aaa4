package vpcd

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/reader"
)

func TestProtocolOf(t *testing.T) {
	tests := []struct {
		name string
		atr  string
		want reader.Protocol
	}{
		{"no TD1: T=0 only", "3B0214 50", reader.ProtocolT0},
		{"T=0 in TD1 only", "3B8000", reader.ProtocolT0},
		{"T=0 and T=1", "3B80800101", reader.ProtocolT1},
		{"T=1 only (vicc)", "3B9513810180 73FF01000B", reader.ProtocolT1},
		{"purse ATR", "3B8580018073800140 36", reader.ProtocolT1},
		{"T=0 with global T=15 bytes", "3BD018 00 0F 1F", reader.ProtocolT0},
		{"TA1 TB1 TC1 before TD1=T1", "3BF0 11 00 FF 81 31 FE", reader.ProtocolT1},
		{"truncated interface bytes", "3B80", reader.ProtocolT1},
		{"empty", "", reader.ProtocolT1},
		{"T=14 only", "3B800E", reader.ProtocolT1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, protocolOf(unhex(t, tt.atr)))
		})
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b := make([]byte, 0, len(s)/2)
	s = strings.ReplaceAll(s, " ", "")
	for i := 0; i+1 < len(s); i += 2 {
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			default:
				v |= byte(c-'A') + 10
			}
		}
		b = append(b, v)
	}
	return b
}

func TestSlotAddr(t *testing.T) {
	tests := []struct {
		addr    string
		slot    int
		want    string
		wantErr bool
	}{
		{DefaultAddr, 0, "127.0.0.1:35963", false},
		{DefaultAddr, 1, "127.0.0.1:35964", false},
		{"[::1]:35963", 1, "[::1]:35964", false},
		{"localhost:65535", 1, "", true},
		{"127.0.0.1", 0, "", true},
		{"127.0.0.1:x", 0, "", true},
		{DefaultAddr, -1, "", true},
	}
	for _, tt := range tests {
		got, err := SlotAddr(tt.addr, tt.slot)
		if tt.wantErr {
			require.Error(t, err, "%s slot %d", tt.addr, tt.slot)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}

// Dial is what the "tcp:HOST:PORT" reader name opens: a powered card with
// its ATR read, as after SCardConnect.
func TestDial(t *testing.T) {
	card := newFakeCard()
	addr := startServe(t, card)
	c, err := Dial(ctxT(t), addr)
	require.NoError(t, err)
	defer c.Close()

	var conn reader.Conn = c
	require.Equal(t, "vpcd tcp:"+addr, conn.Reader())
	require.Equal(t, testATR, conn.ATR())
	require.Equal(t, reader.ProtocolT1, conn.Protocol())
	resp, err := conn.Transceive(ctxT(t), []byte{0x00, 0xA4, 0x04, 0x00})
	require.NoError(t, err)
	require.Equal(t, []byte{0x00, 0xA4, 0x04, 0x00}, resp)
	require.NoError(t, conn.Reset(ctxT(t), false))
	require.Equal(t, []string{"off", "on", "atr", "tx:00a40400", "warm", "atr"}, card.all())
}

func TestDialRefused(t *testing.T) {
	l := listen(t)
	addr := l.Addr().String()
	l.Close()
	_, err := Dial(ctxT(t), addr)
	require.Error(t, err)
	require.Contains(t, err.Error(), addr)
}

// Commands Client refuses never reach the wire: a 1-byte one would be a
// control byte, and 00 hangs a real vpcd slot (vsmartcard.md §5).
func TestClientRefuses(t *testing.T) {
	tests := []struct {
		name string
		cmd  []byte
		want error
	}{
		{"empty", nil, ErrShortCommand},
		{"one byte (control byte 00)", []byte{0x00}, ErrShortCommand},
		{"one byte (control byte 04)", []byte{0x04}, ErrShortCommand},
		{"three bytes", []byte{0x00, 0xA4, 0x04}, ErrShortCommand},
		{"65536 bytes", make([]byte, MaxPayload+1), ErrFrameTooLarge},
	}
	card := newFakeCard()
	c := dialClient(t, startServe(t, card))
	require.NoError(t, c.PowerOn(ctxT(t)))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Transmit(tt.cmd)
			require.ErrorIs(t, err, tt.want)
		})
	}
	// The client is still usable, and the card saw none of them.
	resp, err := c.Transmit([]byte{0x80, 0x50, 0x00, 0x00})
	require.NoError(t, err)
	require.Equal(t, []byte{0x80, 0x50, 0x00, 0x00}, resp)
	require.Equal(t, []string{"off", "on", "atr", "tx:80500000"}, card.all())
}

// silentCard accepts one connection and reads without ever answering.
// The channel receives once the first bytes arrive: an exchange is then
// in flight.
func silentCard(t *testing.T) (string, <-chan struct{}) {
	l := listen(t)
	arrived := make(chan struct{})
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			return
		}
		close(arrived)
		_, _ = io.Copy(io.Discard, conn)
	}()
	return l.Addr().String(), arrived
}

// An exchange cut by its context returns the context's error, and the
// client stays unusable: the card's reply, if any, would now be read as
// the answer to the next command.
func TestClientContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		cut  bool // cancel once the request is on the wire
		want error
	}{
		{"cancelled while waiting", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, true, context.Canceled},
		{"deadline while waiting", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, false, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, arrived := silentCard(t)
			c := dialClient(t, addr)
			ctx, cancel := tt.ctx()
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := c.Transceive(ctx, []byte{0x00, 0xA4, 0x04, 0x00})
				errc <- err
			}()
			recv(t, arrived)
			if tt.cut {
				cancel()
			}
			require.ErrorIs(t, recv(t, errc), tt.want)
			_, err := c.Transceive(ctxT(t), []byte{0x00, 0xA4, 0x04, 0x00})
			require.ErrorIs(t, err, tt.want, "the error must stick")
		})
	}
}

// A context already done sends nothing, so the client stays usable.
func TestClientContextDoneBefore(t *testing.T) {
	card := newFakeCard()
	c := dialClient(t, startServe(t, card))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, c.PowerOn(ctx), context.Canceled)
	require.NoError(t, c.PowerOn(ctxT(t)))
	require.Equal(t, []string{"off", "on", "atr"}, card.all())
}

func TestClientCardRemoved(t *testing.T) {
	readerEnd, cardEnd := net.Pipe()
	c := NewClient(readerEnd, "pipe")
	defer c.Close()
	cardEnd.Close()
	_, err := c.Transmit([]byte{0x00, 0xB0, 0x00, 0x00})
	require.ErrorIs(t, err, reader.ErrCardRemoved)
}
