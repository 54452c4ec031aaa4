package purse

import (
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"time"
)

// CardID is the purse's 8-byte identifier (docs/purse.md §4.1): unique per
// issuer, it diversifies the card keys and is bound into every MAC.
type CardID [CardIDLen]byte

// TerminalID identifies the terminal (and its security module) in a
// transaction, 8 bytes chosen by the acquirer.
type TerminalID [TerminalIDLen]byte

// Nonce is an 8-byte random challenge (card nonce, host nonce, TSM nonce).
type Nonce [NonceLen]byte

// MAC is an 8-byte cryptogram: the first 8 bytes of an AES-CMAC (S1, S2,
// M1, M2, TC, the SET STATUS MAC).
type MAC [MACLen]byte

// Equal compares two MACs in constant time.
func (m MAC) Equal(o MAC) bool { return subtle.ConstantTimeCompare(m[:], o[:]) == 1 }

// Currency is an ISO 4217 numeric currency code as two BCD bytes: EUR 978
// is 09 78 (docs/purse.md §4.1).
type Currency [2]byte

// CurrencyOf encodes a numeric code 1..999.
func CurrencyOf(code int) (Currency, error) {
	if code < 1 || code > 999 {
		return Currency{}, fmt.Errorf("%w: currency code %d outside 1..999", ErrMalformed, code)
	}
	return Currency{byte(code / 100), byte(code/10%10<<4 | code%10)}, nil
}

// Code returns the numeric code, or an error if the bytes are not BCD or
// encode 000.
func (c Currency) Code() (int, error) {
	if !isBCD(c[:]) || c[0] > 0x09 || c == (Currency{}) {
		return 0, fmt.Errorf("%w: currency %X is not a BCD code 001..999", ErrMalformed, c[:])
	}
	return int(c[0]&0x0F)*100 + int(c[1]>>4)*10 + int(c[1]&0x0F), nil
}

// Valid reports whether c is a BCD code 001..999.
func (c Currency) Valid() bool { _, err := c.Code(); return err == nil }

// String renders the code as three digits.
func (c Currency) String() string {
	if n, err := c.Code(); err == nil {
		return fmt.Sprintf("%03d", n)
	}
	return fmt.Sprintf("invalid(%X)", c[:])
}

// DateTime is a date and time as 7 BCD bytes YYYY MM DD hh mm ss
// (docs/purse.md §4.1), as chosen by the money server (loads) or the
// terminal's security module (debits). The card checks only its syntax.
type DateTime [DateTimeLen]byte

// DateTimeOf encodes t (in its own location) to the second.
func DateTimeOf(t time.Time) (DateTime, error) {
	var d DateTime
	if t.Year() < 0 || t.Year() > 9999 {
		return d, fmt.Errorf("%w: year %d", ErrMalformed, t.Year())
	}
	for i, v := range []int{t.Year() / 100, t.Year() % 100, int(t.Month()), t.Day(), t.Hour(), t.Minute(), t.Second()} {
		d[i] = byte(v/10<<4 | v%10)
	}
	return d, nil
}

// Time decodes the date-time in loc (nil: UTC), validating it.
func (d DateTime) Time(loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	if !isBCD(d[:]) {
		return time.Time{}, fmt.Errorf("%w: date-time %X is not BCD", ErrMalformed, d[:])
	}
	v := func(i int) int { return int(d[i]>>4)*10 + int(d[i]&0x0F) }
	y, mo, day, h, mi, s := v(0)*100+v(1), v(2), v(3), v(4), v(5), v(6)
	if mo < 1 || mo > 12 || day < 1 || h > 23 || mi > 59 || s > 59 {
		return time.Time{}, fmt.Errorf("%w: date-time %X out of range", ErrMalformed, d[:])
	}
	t := time.Date(y, time.Month(mo), day, h, mi, s, 0, loc)
	if t.Day() != day {
		return time.Time{}, fmt.Errorf("%w: date-time %X: no day %d in that month", ErrMalformed, d[:], day)
	}
	return t, nil
}

// Valid reports whether d is a real date and time.
func (d DateTime) Valid() bool { _, err := d.Time(nil); return err == nil }

// String renders "2025-06-01 10:30:00", or the hex when invalid.
func (d DateTime) String() string {
	t, err := d.Time(nil)
	if err != nil {
		return fmt.Sprintf("invalid(%X)", d[:])
	}
	return t.Format(time.DateTime)
}

func isBCD(b []byte) bool {
	for _, c := range b {
		if c>>4 > 9 || c&0x0F > 9 {
			return false
		}
	}
	return true
}

// reader decodes fixed-layout fields. Every layout of docs/purse.md has a
// fixed size, so parsers check the length first (fixed) and then read
// without further bounds checks failing: a short buffer yields zeros.
type reader struct{ b []byte }

func (r *reader) take(n int) []byte {
	if len(r.b) < n {
		r.b = nil
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte             { return r.take(1)[0] }
func (r *reader) u32() uint32          { return binary.BigEndian.Uint32(r.take(4)) }
func (r *reader) fill(dst []byte)      { copy(dst, r.take(len(dst))) }
func be32(dst []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(dst, v) }

// fixed checks an exact length.
func fixed(what string, b []byte, n int) error {
	if len(b) != n {
		return fmt.Errorf("%w: %s of %d bytes, want %d", ErrMalformed, what, len(b), n)
	}
	return nil
}
