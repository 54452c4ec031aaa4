package vpcd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/valuechip/valuechip/applet"
)

// swNoDiagnosis is SW 6F00, "no precise diagnosis" (ISO/IEC 7816-4 status
// bytes): the answer when the card itself failed. A card cannot stay
// silent: vpcd would take an empty reply as the card leaving the reader.
var swNoDiagnosis = []byte{0x6F, 0x00}

// driver drives one card over successive connections. It is used by one
// goroutine at a time, which is also what serialises access to the card
// (the applet.Card contract asks for one caller at a time).
type driver struct {
	card applet.Card
	log  *slog.Logger
	// powered is the card's power as this driver left it; known is false
	// until the driver has powered it off once, since a card handed to us
	// may have been powered by someone else.
	powered, known bool
}

func newDriver(card applet.Card, log *slog.Logger) *driver {
	return &driver{card: card, log: log}
}

// Control byte → card method mapping.
//
//	00 power off → PowerOff()
//	01 power on  → PowerOn(): activation and cold reset (ISO/IEC 7816-3
//	             §6). pcscd sends it when it first sees the card and on
//	             SCardConnect after its idle power-off (vsmartcard.md §5).
//	02 reset     → Reset(true) when powered: a warm reset (ISO/IEC 7816-3
//	             §6, RST cycled with power kept). vpcd sends it for
//	             pcsc-lite's IFD_RESET, which SCardReconnect and
//	             SCardDisconnect with SCARD_RESET_CARD ask for ("ATR? RESET
//	             ATR?", vsmartcard.md §5) and which PC/SC means as a warm
//	             reset; removing power is IFD_POWER_DOWN, i.e. 00. When
//	             unpowered, PowerOn() instead: IFD_RESET on an unpowered
//	             card powers it up.
//	04 get ATR   → ATR(), answered whatever the power state: presence polls
//	             ask every 400 ms, powered or not (vsmartcard.md §5).
func (d *driver) powerOff() {
	d.safely("PowerOff", d.card.PowerOff)
	d.powered, d.known = false, true
}

func (d *driver) powerOn() {
	d.safely("PowerOn", d.card.PowerOn)
	d.powered, d.known = true, true
}

func (d *driver) reset() {
	if !d.powered {
		d.powerOn()
		return
	}
	d.safely("Reset", func() { d.card.Reset(true) })
}

// safely runs a card method, containing a panic: the card contract forbids
// panics, but a broken card must not take the reader connection down.
func (d *driver) safely(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("vpcd: card panicked", "method", what, "panic", r)
		}
	}()
	f()
}

// atr returns the card's ATR, or nil (an empty reply, which vpcd treats as
// no card: a mute card) if the card panicked or returned one no frame can
// carry.
func (d *driver) atr() (atr []byte) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("vpcd: card panicked", "method", "ATR", "panic", r)
			atr = nil
		}
	}()
	atr = d.card.ATR()
	if len(atr) > MaxPayload {
		d.log.Error("vpcd: card ATR too long for a frame", "len", len(atr))
		return nil
	}
	return atr
}

// ErrPowerLost reports that the card gave no answer to a command: by the
// applet.Card contract it lost power (tear injection), so it leaves the
// reader as a torn-away card does. Attacher puts it back after the tap gap.
var ErrPowerLost = errors.New("vpcd: the card lost power during a command")

// transmit runs one APDU. A panic or a response longer than a frame
// becomes SW 6F00; an empty response means the card lost power and is
// returned as nil for serve to end the connection.
func (d *driver) transmit(cmd []byte) (resp []byte) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("vpcd: card panicked", "method", "Transmit", "panic", r)
			resp = swNoDiagnosis
		}
	}()
	resp = d.card.Transmit(cmd)
	switch {
	case len(resp) == 0:
		return nil
	case len(resp) > MaxPayload:
		d.log.Error("vpcd: card response too long for a frame; answering 6F00", "len", len(resp))
		return swNoDiagnosis
	}
	return resp
}

// serve runs the card side of one connection until it ends. A new
// connection is a card entering the reader, so the card starts unpowered;
// the end of one is the card leaving it, so power is cut. powered is called
// once, after the first ATR answer following a power-on or reset.
//
// It returns whether any frame was processed, and why the connection
// ended: ErrReaderClosed on EOF between frames, ErrEmptyFrame, or the
// wrapped I/O error (including net.ErrClosed when this side closed conn).
func (d *driver) serve(conn net.Conn, powered func()) (served bool, err error) {
	if !d.known || d.powered {
		d.powerOff()
	}
	defer func() {
		if d.powered {
			d.powerOff()
		}
	}()
	// Reads go through a buffer so that a frame that arrived whole costs
	// one read(2), and TCP_QUICKACK is armed before each read(2) that
	// actually happens (ackReader).
	r := bufio.NewReaderSize(ackReader{conn, newQuickAck(conn)}, readBufSize)
	var (
		hdr       [2]byte
		ctl       [1]byte
		out       []byte // reply buffer, reused: one write per reply
		announced bool   // powered was called
	)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return served, ErrReaderClosed
			}
			return served, fmt.Errorf("vpcd: reading frame length: %w", err)
		}
		n := frameLen(&hdr)
		if n == 0 {
			return served, ErrEmptyFrame
		}
		var reply []byte
		if n == 1 {
			if _, err := io.ReadFull(r, ctl[:]); err != nil {
				return served, fmt.Errorf("vpcd: reading control byte: %w", bodyErr(err))
			}
			served = true
			switch ctl[0] {
			case CtrlPowerOff:
				d.powerOff()
				continue
			case CtrlPowerOn:
				d.powerOn()
				continue
			case CtrlReset:
				d.reset()
				continue
			case CtrlGetATR:
				reply = d.atr()
			default:
				// vpcd sends no other control byte. No reply: vpcd would
				// not read one, and a stray frame would desynchronise it.
				d.log.Warn("vpcd: unknown control byte ignored", "byte", ctl[0])
				continue
			}
		} else {
			// A fresh slice per command: the card may keep it.
			cmd := make([]byte, n)
			if _, err := io.ReadFull(r, cmd); err != nil {
				return served, fmt.Errorf("vpcd: reading %d-byte command: %w", n, bodyErr(err))
			}
			served = true
			reply = d.transmit(cmd)
			if reply == nil {
				// Closing without a reply: vpcd reports the transmit as
				// failed and the card as removed, like a torn-away card.
				return served, ErrPowerLost
			}
		}
		out = appendFrame(out[:0], reply)
		if _, err := conn.Write(out); err != nil {
			return served, fmt.Errorf("vpcd: writing reply: %w", err)
		}
		// The connection began unpowered, so d.powered means the reader
		// powered the card on this connection: with this ATR answer pcscd
		// has what it needs to report the card.
		if n == 1 && d.powered && !announced && len(reply) > 0 {
			announced = true
			if powered != nil {
				powered()
			}
		}
	}
}

// readBufSize holds a short APDU with room to spare; longer payloads are
// read straight into their slice by bufio.
const readBufSize = 4096

// ackReader arms TCP_QUICKACK before every read(2) on the socket.
type ackReader struct {
	r  io.Reader
	qa *quickAck
}

func (a ackReader) Read(p []byte) (int, error) {
	a.qa.arm()
	return a.r.Read(p)
}

// closedHere reports whether err comes from this side closing the
// connection (Remove, Tap, context), which is not a failure.
func closedHere(err error) bool { return errors.Is(err, net.ErrClosed) }

// ServeConn serves card on one connection from a vpcd-protocol reader until
// the reader closes it, a protocol or I/O error occurs, or ctx is done (then
// conn is closed). It returns nil when the reader closed the connection
// between frames or ctx ended it. conn is always closed on return.
//
// The card is powered off when the connection starts and when it ends, as
// on entering and leaving a reader. OnState sees Connected, Powered and
// Removed, as with Serve.
func ServeConn(ctx context.Context, conn net.Conn, card applet.Card, opts ...Option) error {
	cfg := newConfig(opts)
	err := serveOne(ctx, conn, newDriver(card, cfg.log), cfg)
	if errors.Is(err, ErrReaderClosed) {
		return nil
	}
	return err
}

// Serve accepts connections from vpcd-protocol readers on l and serves card
// on them, one connection at a time: a card sits in one reader. Further
// connections wait in the listen backlog until the current one ends, so a
// reader that reconnects right after closing is served as soon as the card
// notices the close.
//
// For each connection, OnState sees Connected, Powered (as for Attacher)
// and Removed. Serve returns nil when ctx is done, or the error that stopped
// Accept; it closes l before returning.
func Serve(ctx context.Context, l net.Listener, card applet.Card, opts ...Option) error {
	cfg := newConfig(opts)
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	d := newDriver(card, cfg.log)
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("vpcd: accepting a reader connection: %w", err)
		}
		_ = serveOne(ctx, conn, d, cfg) // reported through OnState and the log
	}
}

// serveOne serves one accepted connection, closes it, and reports it. The
// error is nil when ctx ended the connection.
func serveOne(ctx context.Context, conn net.Conn, d *driver, cfg config) error {
	emit := func(e Event) {
		if cfg.onState != nil {
			cfg.onState(e)
		}
	}
	peer := conn.RemoteAddr().String()
	cfg.log.Info("vpcd: reader connected", "peer", peer)
	emit(Event{State: Connected, Addr: peer})
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	_, err := d.serve(conn, func() { emit(Event{State: Powered, Addr: peer}) })
	stop()
	conn.Close()
	if ctx.Err() != nil && closedHere(err) {
		err = nil
	}
	cfg.log.Info("vpcd: reader disconnected", "peer", peer, "reason", err)
	emit(Event{State: Removed, Addr: peer, Err: err})
	return err
}
