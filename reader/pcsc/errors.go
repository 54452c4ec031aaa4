package pcsc

import (
	"errors"
	"fmt"
	"strings"

	"github.com/valuechip/valuechip/reader"
)

// Errors of this package that are not PC/SC return codes.
var (
	// ErrShortCommand refuses commands shorter than the 4-byte header. vpcd
	// cannot tell a 1-byte APDU from one of its control bytes (00 power
	// off, 01 on, 02 reset, 04 get ATR): a 1-byte 00 stalls the slot, and
	// every client of pcscd that touches it, until the card disconnects.
	ErrShortCommand = errors.New("pcsc: command APDU shorter than 4 bytes (CLA INS P1 P2)")
	// ErrClosed is returned by a Card or Context used after Close.
	ErrClosed = errors.New("pcsc: use of closed connection")
)

// PC/SC return codes this package acts on. They are fixed by the PC/SC
// specification and identical in pcsc-lite, macOS and WinSCard; spelling
// them out here (rather than using scard's constants) keeps the mapping
// pure Go, so it is tested in CGO_ENABLED=0 builds too. A cgo test checks
// them against scard's.
const (
	codeCancelled          uint32 = 0x80100002 // SCARD_E_CANCELLED
	codeInvalidHandle      uint32 = 0x80100003 // SCARD_E_INVALID_HANDLE
	codeUnknownReader      uint32 = 0x80100009 // SCARD_E_UNKNOWN_READER
	codeTimeout            uint32 = 0x8010000A // SCARD_E_TIMEOUT
	codeSharingViolation   uint32 = 0x8010000B // SCARD_E_SHARING_VIOLATION
	codeNoSmartcard        uint32 = 0x8010000C // SCARD_E_NO_SMARTCARD
	codeProtoMismatch      uint32 = 0x8010000F // SCARD_E_PROTO_MISMATCH
	codeCommError          uint32 = 0x80100013 // SCARD_F_COMM_ERROR
	codeNotTransacted      uint32 = 0x80100016 // SCARD_E_NOT_TRANSACTED
	codeReaderUnavailable  uint32 = 0x80100017 // SCARD_E_READER_UNAVAILABLE
	codeNoService          uint32 = 0x8010001D // SCARD_E_NO_SERVICE
	codeServiceStopped     uint32 = 0x8010001E // SCARD_E_SERVICE_STOPPED
	codeNoReadersAvailable uint32 = 0x8010002E // SCARD_E_NO_READERS_AVAILABLE
	codeUnresponsiveCard   uint32 = 0x80100066 // SCARD_W_UNRESPONSIVE_CARD
	codeUnpoweredCard      uint32 = 0x80100067 // SCARD_W_UNPOWERED_CARD
	codeResetCard          uint32 = 0x80100068 // SCARD_W_RESET_CARD
	codeRemovedCard        uint32 = 0x80100069 // SCARD_W_REMOVED_CARD
)

// Hints shared by the error mapping and Select.
const (
	hintService   = "is pcscd running? try: pcscd --foreground, or systemctl start pcscd.socket"
	hintNoReaders = "no reader is attached: plug one in, or check that vsmartcard-vpcd is installed " +
		"(its driver adds \"Virtual PCD 00 00\" and \"Virtual PCD 00 01\" when pcscd starts)"
)

// Error is a failed PC/SC call. errors.Is matches Kind (a reader sentinel,
// when the code has one) and Err (the scard.Error); errors.As gives the
// code and operation to callers that need more than the sentinel.
type Error struct {
	Op   string // what we were doing, e.g. `connect to "Virtual PCD 00 01"`
	Code uint32 // the PC/SC return code, e.g. 0x8010000C
	Kind error  // reader.ErrNoCard and friends; nil when no sentinel fits
	Hint string // what the user can do about it; may be empty
	Err  error  // the error from scard, whose text comes from pcsc_stringify_error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pcsc: ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.Err != nil {
		// scard prefixes "scard: " and pcsc-lite ends its texts with a
		// period; both read badly in the middle of a message.
		msg := strings.TrimSuffix(strings.TrimPrefix(e.Err.Error(), "scard: "), ".")
		b.WriteString(msg)
	} else if e.Kind != nil {
		b.WriteString(e.Kind.Error())
	}
	fmt.Fprintf(&b, " (0x%08X)", e.Code)
	if e.Hint != "" {
		b.WriteString(": ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As see both the sentinel and the scard
// error.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// newError classifies a PC/SC return code. raw is the error scard returned
// (it supplies the human text); op says what failed.
func newError(op string, code uint32, raw error) *Error {
	hint, kind := classify(code)
	return &Error{Op: op, Code: code, Kind: kind, Hint: hint, Err: raw}
}

// classify maps a PC/SC code to our sentinel and a hint. Codes left out
// have neither; the caller still sees pcsc-lite's text and the code.
func classify(code uint32) (hint string, kind error) {
	switch code {
	case codeNoService, codeServiceStopped:
		return hintService, reader.ErrServiceUnavailable
	case codeCommError:
		// pcsc-lite returns this when the socket to pcscd breaks mid-call,
		// which in practice means pcscd exited or was restarted.
		return "lost the connection to pcscd; " + hintService, reader.ErrServiceUnavailable
	case codeNoReadersAvailable:
		return hintNoReaders, reader.ErrNoReader
	case codeUnknownReader:
		return "no reader has that name: list the readers and pick one by index or name fragment", reader.ErrNoReader
	case codeReaderUnavailable:
		return "the reader was unplugged or its driver stopped: list the readers again", reader.ErrReaderGone
	case codeNoSmartcard:
		return "insert a card; for vpcd, start a card emulator that connects to TCP 35963 (slot 0) or 35964 (slot 1)", reader.ErrNoCard
	case codeRemovedCard:
		return "the card was taken out (for vpcd: the emulator closed its socket); insert it and connect again", reader.ErrCardRemoved
	case codeResetCard:
		// Another application reset the card. It is still there, but every
		// bit of session state (selected application, secure channel, purse
		// transaction) is gone; silently carrying on would be wrong for a
		// purse, so report it as losing the card we were talking to.
		return "another application reset the card, so its session state is lost; reset or reconnect and start over", reader.ErrCardRemoved
	case codeSharingViolation:
		return "another application holds the card exclusively; close it, or wait for it to finish", nil
	case codeProtoMismatch:
		return "the card does not offer the requested protocol; leave the protocol unset (T=0 or T=1) to accept either", nil
	case codeUnresponsiveCard:
		return "the card does not answer the reset (mute); reinsert it, or check the emulator's ATR reply", nil
	case codeUnpoweredCard:
		return "the card is powered down; reset or reconnect", nil
	case codeNotTransacted:
		return "the reader or card did not complete the exchange (too long for the reader, or the card went away)", nil
	}
	return "", nil
}
