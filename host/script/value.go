package script

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Value is what a variable holds and an expression yields: either an
// integer or a byte string. Card data are byte strings; lengths, counters
// and status words are integers. Where an integer is needed, a byte string
// counts as a big-endian unsigned number (so a 4-byte counter read from a
// card can be compared and incremented directly); where bytes are needed,
// an integer is written big-endian in as many bytes as asked for.
//
// A value derived from a secret (a variable defined with `secret`, a key
// given to `secure`) is itself secret: it prints as "****" and the bytes it
// contributes to a command are masked in every trace, JSON and JUnit output.
type Value struct {
	isInt  bool
	i      int64
	b      []byte
	secret bool
	text   bool // from a string or env(): prints as text when printable
}

// Int returns an integer value.
func Int(i int64) Value { return Value{isInt: true, i: i} }

// Bytes returns a byte-string value holding a copy of b.
func Bytes(b []byte) Value { return Value{b: append([]byte{}, b...)} }

// Secret returns v marked as secret.
func Secret(v Value) Value { v.secret = true; return v }

// IsInt reports whether v is an integer.
func (v Value) IsInt() bool { return v.isInt }

// IsSecret reports whether v derives from a secret.
func (v Value) IsSecret() bool { return v.secret }

// AsBytes returns a byte string as is; an integer fails (its width is the
// caller's decision, see Encode).
func (v Value) AsBytes() ([]byte, error) {
	if v.isInt {
		return nil, fmt.Errorf("%d is a number, not bytes (write bytes(%d, N) for N bytes)", v.i, v.i)
	}
	return v.b, nil
}

// AsInt returns an integer as is, and a byte string of at most 8 bytes as
// its big-endian unsigned value.
func (v Value) AsInt() (int64, error) {
	if v.isInt {
		return v.i, nil
	}
	if len(v.b) > 8 {
		return 0, fmt.Errorf("%d bytes are too long to use as a number (at most 8)", len(v.b))
	}
	var u uint64
	for _, c := range v.b {
		u = u<<8 | uint64(c)
	}
	if u > math.MaxInt64 {
		return 0, fmt.Errorf("%X is too large to use as a number", v.b)
	}
	return int64(u), nil
}

// Truth is the value as a condition: a non-zero number or a non-empty
// byte string.
func (v Value) Truth() bool {
	if v.isInt {
		return v.i != 0
	}
	return len(v.b) > 0
}

// Encode writes v as bytes for a command: a byte string as is, or left-padded
// with zeros to width when width > 0; an integer big-endian in width bytes,
// or in one byte when width is 0.
func (v Value) Encode(width int) ([]byte, error) {
	if width < 0 || width > 8 && v.isInt {
		return nil, fmt.Errorf("width %d out of range", width)
	}
	if !v.isInt {
		if width == 0 || len(v.b) == width {
			return v.b, nil
		}
		if len(v.b) > width {
			return nil, fmt.Errorf("%d bytes do not fit in %d", len(v.b), width)
		}
		out := make([]byte, width-len(v.b), width)
		return append(out, v.b...), nil
	}
	if v.i < 0 {
		return nil, fmt.Errorf("negative number %d cannot be sent as bytes", v.i)
	}
	w := width
	if w == 0 {
		w = 1
	}
	if w < 8 && uint64(v.i) >= 1<<(8*uint(w)) {
		if width == 0 {
			return nil, fmt.Errorf("%d does not fit in one byte (write ${...:2} for two)", v.i)
		}
		return nil, fmt.Errorf("%d does not fit in %d bytes", v.i, w)
	}
	out := make([]byte, w)
	for k := w - 1; k >= 0; k-- {
		out[k] = byte(uint64(v.i) >> (8 * uint(w-1-k)))
	}
	return out, nil
}

// String renders the value for people: integers in decimal, byte strings in
// upper-case hex, secrets as "****".
func (v Value) String() string {
	switch {
	case v.secret:
		return "****"
	case v.isInt:
		return strconv.FormatInt(v.i, 10)
	case v.text && printableText(v.b):
		return string(v.b)
	}
	return strings.ToUpper(hex.EncodeToString(v.b))
}

// Equal reports whether two values are the same: byte strings byte for
// byte, anything else as numbers.
func (v Value) Equal(o Value) (bool, error) {
	if !v.isInt && !o.isInt {
		return string(v.b) == string(o.b), nil
	}
	a, err := v.AsInt()
	if err != nil {
		return false, err
	}
	b, err := o.AsInt()
	if err != nil {
		return false, err
	}
	return a == b, nil
}

func printableText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return true
}
