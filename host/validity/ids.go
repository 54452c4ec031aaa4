package validity

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/apdu/purse"
)

// Errors of this package; match them with errors.Is.
var (
	// ErrBadCardID: a card ID is not the CardID's 16 hex digits
	// (docs/iso8583.md §3.2).
	ErrBadCardID = errors.New("validity: bad card ID")
	// ErrBadTerminalID: a terminal ID is not 8 printable ASCII characters
	// (DE 41, ans 8, docs/iso8583.md §3).
	ErrBadTerminalID = errors.New("validity: bad terminal ID")
	// ErrCardHotlisted: the card is on the hotlist (response code 62).
	ErrCardHotlisted = errors.New("validity: card hotlisted")
	// ErrTerminalNotPermitted: the terminal is not on the whitelist, i.e.
	// unknown or blocked (response code 58).
	ErrTerminalNotPermitted = errors.New("validity: terminal not permitted")
	// ErrNotLoaded: Check or a lookup was called before Start loaded the lists.
	ErrNotLoaded = errors.New("validity: lists not loaded")
	// ErrResync may be returned by Source.Changes when it no longer holds the
	// changes since the version asked for; the list is then loaded again from
	// Source.Snapshot.
	ErrResync = errors.New("validity: changes unavailable, snapshot required")
	// ErrDB wraps a failure of the database check of the uncached side.
	ErrDB = errors.New("validity: database check failed")
)

// CardKey is a purse CardID as the big-endian integer of its 8 bytes: the
// lists store cards as uint64 so that 10 million of them fit in 80 MB plus a
// small index (docs/validity.md §2).
type CardKey uint64

// CardKeyOf converts a purse CardID.
func CardKeyOf(id purse.CardID) CardKey { return CardKey(binary.BigEndian.Uint64(id[:])) }

// ParseCardKey parses the CardID's 16 hex digits as carried in DE 2 and by the
// registry (either case). Anything else is ErrBadCardID.
func ParseCardKey(s string) (CardKey, error) {
	if len(s) != 2*purse.CardIDLen {
		return 0, fmt.Errorf("%w: %q is not 16 hex digits", ErrBadCardID, s)
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: %q is not 16 hex digits", ErrBadCardID, s)
		}
		v = v<<4 | uint64(d)
	}
	return CardKey(v), nil
}

// CardID returns the purse CardID.
func (c CardKey) CardID() purse.CardID {
	var id purse.CardID
	binary.BigEndian.PutUint64(id[:], uint64(c))
	return id
}

// String renders the 16 upper-case hex digits.
func (c CardKey) String() string { return fmt.Sprintf("%016X", uint64(c)) }

// TerminalKey is a terminal ID (DE 41, the purse's 8-byte TerminalID) as the
// big-endian integer of its 8 bytes.
type TerminalKey uint64

// TerminalKeyOf converts a purse TerminalID.
func TerminalKeyOf(id purse.TerminalID) TerminalKey {
	return TerminalKey(binary.BigEndian.Uint64(id[:]))
}

// ParseTerminalKey parses an 8-character terminal ID. DE 41 is ans 8: exactly
// 8 printable ASCII characters (0x20–0x7E); anything else is ErrBadTerminalID.
func ParseTerminalKey(s string) (TerminalKey, error) {
	if len(s) != purse.TerminalIDLen {
		return 0, fmt.Errorf("%w: %q is not 8 characters", ErrBadTerminalID, s)
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return 0, fmt.Errorf("%w: %q has a non-printable byte", ErrBadTerminalID, s)
		}
		v = v<<8 | uint64(s[i])
	}
	return TerminalKey(v), nil
}

// TerminalID returns the purse TerminalID.
func (t TerminalKey) TerminalID() purse.TerminalID {
	var id purse.TerminalID
	binary.BigEndian.PutUint64(id[:], uint64(t))
	return id
}

// String returns the 8 characters.
func (t TerminalKey) String() string {
	id := t.TerminalID()
	return string(id[:])
}
