package apdu

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Limits of the two length forms (ISO/IEC 7816-4 §5.1, Table 1).
const (
	MaxShortNc    = 255
	MaxShortNe    = 256
	MaxExtendedNc = 65535
	MaxExtendedNe = 65536
)

// Case is the ISO/IEC 7816-4 command case: whether data is sent (Nc > 0) and
// whether data is expected back (Ne > 0).
type Case int

// The four cases (ISO/IEC 7816-4 §5.1).
const (
	Case1 Case = 1 // no data, no response data
	Case2 Case = 2 // response data only
	Case3 Case = 3 // command data only
	Case4 Case = 4 // both
)

// Errors from parsing and encoding commands. They wrap into messages that
// name the offending length.
var (
	ErrCommandTooShort = errors.New("apdu: command shorter than the 4-byte header")
	ErrBadLength       = errors.New("apdu: length fields do not match the command length")
	ErrNotEncodable    = errors.New("apdu: command cannot be encoded")
)

// Command is a command APDU. Ne is the maximum number of response data bytes
// expected: 0 means none (no Le field), 256 is short Le 00, 65536 is
// extended Le 0000.
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	Ne               int
}

// Case returns the command's ISO case.
func (c Command) Case() Case {
	switch {
	case len(c.Data) == 0 && c.Ne == 0:
		return Case1
	case len(c.Data) == 0:
		return Case2
	case c.Ne == 0:
		return Case3
	}
	return Case4
}

// NeedsExtended reports whether the command only fits the extended form.
func (c Command) NeedsExtended() bool {
	return len(c.Data) > MaxShortNc || c.Ne > MaxShortNe
}

func (c Command) check(extended bool) error {
	if c.Ne < 0 {
		return fmt.Errorf("%w: negative Ne %d", ErrNotEncodable, c.Ne)
	}
	maxNc, maxNe := MaxShortNc, MaxShortNe
	if extended {
		maxNc, maxNe = MaxExtendedNc, MaxExtendedNe
	}
	if len(c.Data) > maxNc {
		return fmt.Errorf("%w: %d data bytes exceed the %s limit of %d", ErrNotEncodable, len(c.Data), form(extended), maxNc)
	}
	if c.Ne > maxNe {
		return fmt.Errorf("%w: Ne %d exceeds the %s limit of %d", ErrNotEncodable, c.Ne, form(extended), maxNe)
	}
	return nil
}

func form(extended bool) string {
	if extended {
		return "extended"
	}
	return "short"
}

// Bytes encodes the command in the short form when it fits and in the
// extended form otherwise. It never truncates: a command beyond the extended
// limits is an error wrapping ErrNotEncodable.
func (c Command) Bytes() ([]byte, error) {
	if c.NeedsExtended() {
		return c.BytesExtended()
	}
	return c.BytesShort()
}

// BytesShort encodes the command in the short form or fails.
func (c Command) BytesShort() ([]byte, error) {
	if err := c.check(false); err != nil {
		return nil, err
	}
	b := make([]byte, 4, 6+len(c.Data))
	b[0], b[1], b[2], b[3] = c.CLA, c.INS, c.P1, c.P2
	if len(c.Data) > 0 {
		b = append(b, byte(len(c.Data)))
		b = append(b, c.Data...)
	}
	if c.Ne > 0 {
		b = append(b, byte(c.Ne)) // 256 wraps to 00 by design
	}
	return b, nil
}

// BytesExtended encodes the command in the extended form (case 1 has no
// extended form and is encoded as its 4-byte header).
func (c Command) BytesExtended() ([]byte, error) {
	if err := c.check(true); err != nil {
		return nil, err
	}
	b := make([]byte, 4, 9+len(c.Data))
	b[0], b[1], b[2], b[3] = c.CLA, c.INS, c.P1, c.P2
	if c.Case() == Case1 {
		return b, nil
	}
	b = append(b, 0)
	if len(c.Data) > 0 {
		b = append(b, byte(len(c.Data)>>8), byte(len(c.Data)))
		b = append(b, c.Data...)
	}
	if c.Ne > 0 {
		b = append(b, byte(c.Ne>>8), byte(c.Ne)) // 65536 wraps to 0000 by design
	}
	return b, nil
}

// ParseCommand decodes a command APDU. The case and form follow from the
// total length alone (ISO/IEC 7816-4 §5.1): a byte 4 of 00 followed by more
// bytes announces the extended form. The returned Data aliases b.
func ParseCommand(b []byte) (Command, error) {
	var c Command
	if len(b) < 4 {
		return c, fmt.Errorf("%w: %d bytes", ErrCommandTooShort, len(b))
	}
	c.CLA, c.INS, c.P1, c.P2 = b[0], b[1], b[2], b[3]
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return c, nil
	case len(body) == 1: // case 2S
		c.Ne = shortNe(body[0])
		return c, nil
	case body[0] != 0: // short with Lc
		nc := int(body[0])
		switch len(body) {
		case 1 + nc:
			c.Data = body[1:]
		case 2 + nc:
			c.Data = body[1 : 1+nc]
			c.Ne = shortNe(body[1+nc])
		default:
			return Command{}, fmt.Errorf("%w: short Lc %d with %d body bytes", ErrBadLength, nc, len(body))
		}
		return c, nil
	case len(body) == 3: // case 2E: 00 Le1 Le2
		c.Ne = extendedNe(body[1], body[2])
		return c, nil
	case len(body) < 3:
		return Command{}, fmt.Errorf("%w: %d body bytes after an extended marker", ErrBadLength, len(body))
	}
	nc := int(body[1])<<8 | int(body[2])
	if nc == 0 {
		return Command{}, fmt.Errorf("%w: extended Lc of 0", ErrBadLength)
	}
	switch len(body) {
	case 3 + nc:
		c.Data = body[3:]
	case 5 + nc:
		c.Data = body[3 : 3+nc]
		c.Ne = extendedNe(body[3+nc], body[4+nc])
	default:
		return Command{}, fmt.Errorf("%w: extended Lc %d with %d body bytes", ErrBadLength, nc, len(body))
	}
	return c, nil
}

func shortNe(le byte) int {
	if le == 0 {
		return MaxShortNe
	}
	return int(le)
}

func extendedNe(hi, lo byte) int {
	n := int(hi)<<8 | int(lo)
	if n == 0 {
		return MaxExtendedNe
	}
	return n
}

// ParseHex parses a command written in hex, with or without spaces or
// colons, as people type them ("00 A4 04 00 07 A0000001510000").
func ParseHex(s string) (Command, error) {
	b, err := DecodeHex(s)
	if err != nil {
		return Command{}, err
	}
	return ParseCommand(b)
}

// DecodeHex decodes hex that may contain spaces, tabs, colons or newlines.
func DecodeHex(s string) ([]byte, error) {
	// Filter bytes, not runes: strings.Map would turn invalid UTF-8 into
	// U+FFFD and the error would then name a byte that is not in s.
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', ':', '\n', '\r':
		default:
			clean = append(clean, c)
		}
	}
	b, err := hex.DecodeString(string(clean))
	if err != nil {
		return nil, fmt.Errorf("apdu: bad hex %q: %w", s, err)
	}
	return b, nil
}

// String renders the command's header, lengths and data in hex.
func (c Command) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%02X %02X %02X %02X", c.CLA, c.INS, c.P1, c.P2)
	if len(c.Data) > 0 {
		fmt.Fprintf(&sb, " Nc=%d %X", len(c.Data), c.Data)
	}
	if c.Ne > 0 {
		fmt.Fprintf(&sb, " Ne=%d", c.Ne)
	}
	return sb.String()
}

// Channel returns the logical channel encoded in an interindustry or GP CLA
// (ISO/IEC 7816-4 §5.4.1): b2b1 for first interindustry values, 4 + b4..b1
// for further interindustry values.
func (c Command) Channel() int {
	// GP reuses the same layout in proprietary CLAs (C0..CF, E0..EF are
	// channels 4..19; GPCS v2.3.1 §11.1.4).
	if c.CLA&0x40 != 0 {
		return 4 + int(c.CLA&0x0F)
	}
	return int(c.CLA & 0x03)
}

// Chained reports the command-chaining bit (b5 of CLA, ISO/IEC 7816-4 §5.4.1).
func (c Command) Chained() bool { return c.CLA&0x10 != 0 }
