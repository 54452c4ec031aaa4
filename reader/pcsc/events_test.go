package pcsc

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/valuechip/valuechip/reader"
)

func TestDiffState(t *testing.T) {
	const name = "Virtual PCD 00 01"
	atr := []byte{0x3B, 0x02, 0x14, 0x50}
	// counter builds the event-counter part of a state.
	counter := func(n uint32) uint32 { return n << 16 }
	ins := reader.Event{Kind: reader.CardInserted, Reader: name, ATR: atr}
	insNoATR := reader.Event{Kind: reader.CardInserted, Reader: name}
	rem := reader.Event{Kind: reader.CardRemoved, Reader: name}

	tests := []struct {
		name       string
		prev, next uint32
		want       []reader.Event
	}{
		{"unaware, empty reader", stateUnaware, stateChanged | stateEmpty | counter(4), nil},
		{"unaware, card there: reported as inserted", stateUnaware, stateChanged | statePresent | counter(5), []reader.Event{ins}},
		{"insert", stateEmpty | counter(4), stateChanged | statePresent | counter(5), []reader.Event{ins}},
		{"insert, mute card", stateEmpty, stateChanged | statePresent | stateMute, []reader.Event{ins}},
		{"remove", statePresent | counter(5), stateChanged | stateEmpty | counter(6), []reader.Event{rem}},
		{"power or use flags change, same card", statePresent | counter(5),
			stateChanged | statePresent | 0x0400 /* UNPOWERED */ | 0x0100 /* INUSE */ | counter(5), nil},
		{"card swapped between waits", statePresent | counter(5), stateChanged | statePresent | counter(7), []reader.Event{rem, ins}},
		{"card tapped between waits", stateEmpty | counter(4), stateChanged | stateEmpty | counter(6), []reader.Event{insNoATR, rem}},
		{"no change", stateEmpty | counter(4), stateEmpty | counter(4), nil},
		{"reader gone with a card", statePresent | counter(5), stateChanged | stateUnknown | stateIgnore, []reader.Event{rem}},
		{"reader gone, empty: counter reset is not an event", stateEmpty | counter(4), stateChanged | stateUnknown, nil},
		{"reader back from unknown with a card", stateUnknown, stateChanged | statePresent | counter(1), []reader.Event{ins}},
		{"unavailable reader", stateEmpty | counter(2), stateChanged | stateUnavailable | counter(2), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, diffState(name, tt.prev, tt.next, atr))
		})
	}
}

func TestDiffStateCopiesATR(t *testing.T) {
	atr := []byte{0x3B, 0x00}
	evs := diffState("r", stateEmpty, statePresent, atr)
	atr[1] = 0xFF
	assert.Equal(t, []byte{0x3B, 0x00}, evs[0].ATR, "the event must not alias scard's buffer")
}

func TestNextCurrent(t *testing.T) {
	// CHANGED is output only; the counter must survive.
	assert.Equal(t, statePresent|0x00050000, nextCurrent(stateChanged|statePresent|0x00050000))
	assert.Equal(t, stateEmpty, nextCurrent(stateEmpty))
}

func TestDiffReaders(t *testing.T) {
	added, removed := diffReaders([]string{"a", "b", "c"}, []string{"b", "d", "c", "e"})
	assert.Equal(t, []string{"d", "e"}, added)
	assert.Equal(t, []string{"a"}, removed)
	added, removed = diffReaders(nil, nil)
	assert.Empty(t, added)
	assert.Empty(t, removed)
}

func TestProtocolMapping(t *testing.T) {
	assert.Equal(t, reader.ProtocolT0, protocolOf(1))
	assert.Equal(t, reader.ProtocolT1, protocolOf(2))
	assert.Equal(t, reader.ProtocolUnknown, protocolOf(0))
	assert.Equal(t, reader.ProtocolUnknown, protocolOf(0x10000)) // RAW
	assert.Equal(t, uint32(1), pcscProtocol(reader.ProtocolT0))
	assert.Equal(t, uint32(2), pcscProtocol(reader.ProtocolT1))
	assert.Equal(t, uint32(3), pcscProtocol(reader.ProtocolUnknown))
}
