package pcsc

import (
	"bytes"
	"slices"

	"github.com/valuechip/valuechip/reader"
)

// pnpReader is the pseudo-reader name that makes SCardGetStatusChange
// return when a reader is added or removed (pcsc-lite, macOS and WinSCard
// all accept it). In C it is spelled "\\\\?PnP?\\Notification".
const pnpReader = `\\?PnP?\Notification`

// SCARD_STATE_* bits of dwCurrentState/dwEventState, fixed by PC/SC and
// spelled out so the diffing below is pure Go (checked against scard's
// values in a cgo test).
const (
	stateUnaware     uint32 = 0x0000
	stateIgnore      uint32 = 0x0001
	stateChanged     uint32 = 0x0002
	stateUnknown     uint32 = 0x0004
	stateUnavailable uint32 = 0x0008
	stateEmpty       uint32 = 0x0010
	statePresent     uint32 = 0x0020
	stateMute        uint32 = 0x0200

	// pcsc-lite (and WinSCard) keep a per-reader count of card insertions
	// and removals in the high 16 bits of dwEventState. Feeding it back in
	// dwCurrentState is what lets a wait notice a card that was swapped, or
	// tapped and taken away, between two calls; comparing only the PRESENT
	// bit would miss both.
	stateCounterMask uint32 = 0xFFFF0000
)

// gone reports whether a reader state says the reader no longer exists.
func gone(state uint32) bool { return state&(stateUnknown|stateIgnore) != 0 }

// present reports whether a reader state shows a card. A mute card (one
// that did not answer reset) counts as present: it is physically there,
// and callers see the empty ATR.
func present(state uint32) bool { return state&statePresent != 0 && !gone(state) }

// nextCurrent is what to pass as dwCurrentState on the next wait after a
// wait returned state: the state as now known, without the CHANGED bit
// (which is output only, and left in would make every wait return at
// once), keeping the event counter.
func nextCurrent(state uint32) uint32 { return state &^ stateChanged }

// diffState turns one reader's state change into events. prev is what the
// caller knew (stateUnaware when it knew nothing, which yields an insertion
// for a card already there), next what the wait returned, atr the ATR that
// came with next. Reader arrival and departure are not reported here: the
// caller learns those from the reader list.
func diffState(name string, prev, next uint32, atr []byte) []reader.Event {
	was, is := present(prev), present(next)
	inserted := reader.Event{Kind: reader.CardInserted, Reader: name, ATR: bytes.Clone(atr)}
	removed := reader.Event{Kind: reader.CardRemoved, Reader: name}
	switch {
	case !was && is:
		return []reader.Event{inserted}
	case was && !is:
		return []reader.Event{removed}
	}
	// Same presence on both sides. The counter tells whether cards came or
	// went in between; it is only meaningful when both states are real
	// reports from the same reader.
	if prev == stateUnaware || gone(prev) || gone(next) ||
		prev&stateCounterMask == next&stateCounterMask {
		return nil
	}
	if was {
		// A card was swapped for another between two waits.
		return []reader.Event{removed, inserted}
	}
	// A card was inserted and taken out again between two waits; its ATR
	// is no longer known.
	inserted.ATR = nil
	return []reader.Event{inserted, removed}
}

// diffReaders compares two reader lists and returns the names that
// appeared and the names that went away, each in list order.
func diffReaders(before, after []string) (added, removed []string) {
	for _, s := range after {
		if !slices.Contains(before, s) {
			added = append(added, s)
		}
	}
	for _, s := range before {
		if !slices.Contains(after, s) {
			removed = append(removed, s)
		}
	}
	return added, removed
}

// protocolOf maps a PC/SC protocol value (SCARD_PROTOCOL_T0 = 1, T1 = 2) to
// ours.
func protocolOf(p uint32) reader.Protocol {
	switch p {
	case 1:
		return reader.ProtocolT0
	case 2:
		return reader.ProtocolT1
	}
	return reader.ProtocolUnknown
}

// pcscProtocol is the inverse of protocolOf for a connect request:
// ProtocolUnknown asks for either (SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1).
func pcscProtocol(p reader.Protocol) uint32 {
	switch p {
	case reader.ProtocolT0:
		return 1
	case reader.ProtocolT1:
		return 2
	}
	return 1 | 2
}
