package vpcd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
)

// Default address and port of vpcd's first slot. vpcd listens on
// DefaultPort+slot (Debian's build has slots 0 and 1: "Virtual PCD 00 00" and
// "Virtual PCD 00 01"). It binds INADDR_ANY, but we dial loopback only.
const (
	DefaultPort = 35963
	DefaultAddr = "127.0.0.1:35963"
)

// MaxPayload is the largest payload a frame can carry: its length prefix is
// a uint16. vpcd drops the card's connection on anything larger
// (vsmartcard.md §4, 65,544-byte command).
const MaxPayload = 0xFFFF

// Control bytes vpcd sends as one-byte payloads.
const (
	CtrlPowerOff byte = 0x00
	CtrlPowerOn  byte = 0x01
	CtrlReset    byte = 0x02
	CtrlGetATR   byte = 0x04
)

// Errors of this package; match them with errors.Is.
var (
	// ErrEmptyFrame is a frame with a zero length. vpcd never sends one to
	// a card; from a card, vpcd takes it as an eject.
	ErrEmptyFrame = errors.New("vpcd: zero-length frame")
	// ErrFrameTooLarge is a payload longer than MaxPayload.
	ErrFrameTooLarge = errors.New("vpcd: payload longer than 65535 bytes")
	// ErrShortCommand is a command APDU shorter than 4 bytes, which vpcd
	// would take for a control byte (1 byte) or which is not an APDU.
	ErrShortCommand = errors.New("vpcd: command APDU shorter than 4 bytes (CLA INS P1 P2)")
	// ErrReaderClosed says the reader side closed the connection between
	// frames: vpcd ejected the card or pcscd stopped. It wraps io.EOF.
	ErrReaderClosed = fmt.Errorf("vpcd: the reader closed the connection: %w", io.EOF)
	// ErrRunning is returned by Attacher.Run when it is already running.
	ErrRunning = errors.New("vpcd: attacher is already running")
)

// appendFrame appends the length prefix and payload to dst, so the whole
// message leaves in one write: a split write would let Nagle's algorithm
// and the peer's delayed ACK stall it, which is the very bug Debian's vpcd
// has (vsmartcard.md TL;DR). The caller checks len(payload) <= MaxPayload.
func appendFrame(dst, payload []byte) []byte {
	n := len(payload)
	dst = append(dst, byte(n>>8), byte(n))
	return append(dst, payload...)
}

// frameLen decodes a length prefix.
func frameLen(hdr *[2]byte) int { return int(hdr[0])<<8 | int(hdr[1]) }

// bodyErr turns io.EOF while reading a payload whose length was announced
// into io.ErrUnexpectedEOF: the peer went away mid-frame.
func bodyErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// SlotAddr returns the address of vpcd's slot on the host and base port of
// addr (host:port): the port plus slot. SlotAddr(DefaultAddr, 1) is
// "127.0.0.1:35964".
func SlotAddr(addr string, slot int) (string, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("vpcd: address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", fmt.Errorf("vpcd: address %q: port: %w", addr, err)
	}
	if slot < 0 || port < 0 || port+slot > 0xFFFF {
		return "", fmt.Errorf("vpcd: address %q slot %d: port %d out of range", addr, slot, port+slot)
	}
	return net.JoinHostPort(host, strconv.Itoa(port+slot)), nil
}
