// Package reader moves APDUs between the host and a card. It is the only
// package that knows transports: one small Transceiver interface, middleware
// that stacks on it (GET RESPONSE, 6Cxx re-send, chaining, tracing,
// record/replay), and backends in sub-packages (pcsc for real PC/SC readers,
// emu for an in-process emulated card, vpcd for attaching an emulated card to
// vsmartcard's virtual reader).
//
// The shape follows apdu4j's BIBO: every layer is a Transceiver, so a stack
// is built by wrapping, and a test can stand any layer on a fake.
//
// # Dump format
//
// Record and Replay keep a whole card session as text, one event per line, so
// that recordings diff well and can be written by hand. It follows the idea
// of apdu4j's dump files (ATR and protocol comments, hex lines, timing
// comments) with explicit direction markers and reset events.
//
//	# valuechip dump v1
//	# READER Virtual PCD 00 00
//	# ATR 3B8A80010031C173C8400000900090
//	# PROTOCOL T=1
//	>> 00A4040007A000000151000000
//	<< 6F108408A000000151000000A5049F6501FF9000
//	# 1234us
//	>> 0020008008****************
//	<< 9000
//	# 2050us
//	# RESET warm
//	# ATR 3B8A80010031C173C8400000900090
//	# 80000us
//	>> 00B0000000
//	# ERROR reader: the card was removed
//
// The first line is exactly "# valuechip dump v1". The header lines READER
// (the rest of the line), ATR (hex) and PROTOCOL (T=0, T=1 or unknown)
// follow, each at most once, before the first exchange. Then come steps:
//
//   - an exchange: ">> " and the command in hex, then either "<< " and the
//     whole response in hex (data and SW1 SW2) or "# ERROR " and the
//     transport error's text;
//   - a reset: "# RESET cold" or "# RESET warm", then optionally "# ATR "
//     with the new ATR when it changed and "# ERROR " when the reset failed.
//
// Either may end with "# <n>us", the microseconds the step took. Hex is
// upper or lower case, bytes may be separated by spaces, and a byte written
// "**" was masked when recording (it is a secret): in a command it matches
// any byte on replay, in a response it is replayed as 00. Lines starting
// with "#" whose first word is neither one of the keywords above nor a
// number are comments; blank lines are ignored. Anything else is an error
// that names its line (see ParseError).
package reader

import (
	"context"
	"errors"
)

// Transceiver sends one command APDU and returns the response APDU (data
// followed by SW1 SW2). A status word other than 9000 is not an error at
// this level: errors are for transport failures.
type Transceiver interface {
	Transceive(ctx context.Context, cmd []byte) ([]byte, error)
}

// TransceiverFunc adapts a function to Transceiver.
type TransceiverFunc func(ctx context.Context, cmd []byte) ([]byte, error)

// Transceive implements Transceiver.
func (f TransceiverFunc) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	return f(ctx, cmd)
}

// Middleware wraps a Transceiver with one behaviour.
type Middleware func(next Transceiver) Transceiver

// Stack wraps base with the middleware, the first one outermost: Stack(t,
// Trace, GetResponse) traces what the caller sees, after GET RESPONSE rounds
// were merged.
func Stack(base Transceiver, mw ...Middleware) Transceiver {
	t := base
	for i := len(mw) - 1; i >= 0; i-- {
		t = mw[i](t)
	}
	return t
}

// Protocol is the transmission protocol in use with a card.
type Protocol int

// Protocols as PC/SC names them.
const (
	ProtocolUnknown Protocol = iota
	ProtocolT0
	ProtocolT1
)

func (p Protocol) String() string {
	switch p {
	case ProtocolT0:
		return "T=0"
	case ProtocolT1:
		return "T=1"
	}
	return "unknown"
}

// ParseProtocol is the inverse of Protocol.String.
func ParseProtocol(s string) Protocol {
	switch s {
	case "T=0", "T0", "t0":
		return ProtocolT0
	case "T=1", "T1", "t1":
		return ProtocolT1
	}
	return ProtocolUnknown
}

// Conn is a connection to a card in a reader.
type Conn interface {
	Transceiver
	// Reader names the reader the card sits in.
	Reader() string
	// ATR returns the card's answer-to-reset.
	ATR() []byte
	// Protocol returns the negotiated protocol.
	Protocol() Protocol
	// Reset resets the card (cold=false for a warm reset) and keeps the
	// connection.
	Reset(ctx context.Context, cold bool) error
	// Close disconnects, leaving the card powered as the backend sees fit.
	Close() error
}

// Info describes one reader.
type Info struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Present bool   `json:"card_present"`
	ATR     []byte `json:"atr,omitempty"`
}

// EventKind says what changed in a reader.
type EventKind int

// Event kinds.
const (
	CardInserted EventKind = iota + 1
	CardRemoved
	ReaderAdded
	ReaderRemoved
)

func (k EventKind) String() string {
	switch k {
	case CardInserted:
		return "card inserted"
	case CardRemoved:
		return "card removed"
	case ReaderAdded:
		return "reader added"
	case ReaderRemoved:
		return "reader removed"
	}
	return "unknown event"
}

// Event reports a card or reader change.
type Event struct {
	Kind   EventKind
	Reader string
	ATR    []byte
}

// Errors that backends return, wrapped with detail; match them with errors.Is.
var (
	ErrServiceUnavailable = errors.New("reader: the PC/SC service is not running (start pcscd)")
	ErrNoReader           = errors.New("reader: no reader found")
	ErrNoCard             = errors.New("reader: no card in the reader")
	ErrCardRemoved        = errors.New("reader: the card was removed")
	ErrReaderGone         = errors.New("reader: the reader is no longer available")
	ErrAmbiguous          = errors.New("reader: reader name matches more than one reader")
	ErrNoPCSC             = errors.New("reader: this binary was built without PC/SC support (cgo disabled)")
	ErrReplayMismatch     = errors.New("reader: command differs from the recorded session")
	ErrReplayExhausted    = errors.New("reader: recorded session has no more exchanges")
)

type ctxKey int

const (
	rawKey ctxKey = iota
	sensitiveKey
)

// WithRaw marks one call as raw: middleware that would add GET RESPONSE
// rounds, re-send on 6Cxx or chain passes the command through untouched, as
// OpenSC's per-APDU SC_APDU_FLAGS_NO_GET_RESP does.
func WithRaw(ctx context.Context) context.Context { return context.WithValue(ctx, rawKey, true) }

// IsRaw reports whether WithRaw marked the call.
func IsRaw(ctx context.Context) bool { v, _ := ctx.Value(rawKey).(bool); return v }

// WithSensitive marks one call as carrying secrets in its data and response,
// so tracing and recording mask them whatever the command is.
func WithSensitive(ctx context.Context) context.Context {
	return context.WithValue(ctx, sensitiveKey, true)
}

// IsSensitive reports whether WithSensitive marked the call.
func IsSensitive(ctx context.Context) bool { v, _ := ctx.Value(sensitiveKey).(bool); return v }
