package purse

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/valuechip/valuechip/apdu/cmac"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet"
)

// Persistent records of one purse instance (docs/purse.md §9.1). Each Put
// or Delete is one persistent write of the runtime.
const (
	recConfig      = "cfg"     // config: fixed at the end of personalisation
	recKeys        = "keys"    // K_LOAD, K_DEBIT, K_TC with versions
	recPIN         = "pin"     // PIN block
	recTries       = "tries"   // PIN tries left
	recState       = "state"   // life cycle, balance, ATC, offline total, flags
	recJournal     = "journal" // the value change in progress (docs/purse.md §9.2)
	recPersoPrefix = "perso/"  // staged DGIs while personalising: perso/<DGI hex>
)

// logKeys are the records of the cyclic log: the record of ATC n is in
// slot n mod 16 (docs/purse.md §6).
var logKeys = func() (k [wire.LogCapacity]string) {
	for i := range k {
		k[i] = fmt.Sprintf("log/%02d", i)
	}
	return k
}()

func logKey(atc uint32) string { return logKeys[atc%wire.LogCapacity] }

const stateFormat byte = 0x01

// stateLen: format 1 | life cycle 1 | balance 4 | ATC 4 | offline total 4
// | flags 1.
const stateLen = 15

// state is the mutable part of the purse.
type state struct {
	life    byte
	balance uint32
	atc     uint32
	offline uint32 // debits since the last load (saturating)
	flags   byte   // wire.FlagRecovered only
}

func (s state) bytes() []byte { return s.append(make([]byte, 0, stateLen)) }

func (s state) append(b []byte) []byte {
	b = append(b, stateFormat, s.life)
	b = binary.BigEndian.AppendUint32(b, s.balance)
	b = binary.BigEndian.AppendUint32(b, s.atc)
	b = binary.BigEndian.AppendUint32(b, s.offline)
	return append(b, s.flags)
}

func parseState(b []byte) (state, bool) {
	if len(b) != stateLen || b[0] != stateFormat || b[1] > wire.StateBlocked {
		return state{}, false
	}
	return state{
		life: b[1], balance: binary.BigEndian.Uint32(b[2:]), atc: binary.BigEndian.Uint32(b[6:]),
		offline: binary.BigEndian.Uint32(b[10:]), flags: b[14],
	}, true
}

// loadState reads the state record; a purse without one is still
// personalising. A corrupt record (impossible unless the image was edited)
// reads as ok=false.
func loadState(m applet.Memory) (state, bool) {
	v, found := m.Get(recState)
	if !found {
		return state{life: wire.StatePersonalising}, true
	}
	return parseState(v)
}

// The journal (docs/purse.md §9.2): the new state, the new log record,
// and a CRC-32 (IEEE 802.3) over both, so that an incompletely written
// journal on a memory without atomic record writes is recognised and
// discarded.
const journalLen = stateLen + wire.LogRecordLen + 4

func parseJournal(b []byte) (state, wire.LogRecord, bool) {
	if len(b) != journalLen || crc32.ChecksumIEEE(b[:journalLen-4]) != binary.BigEndian.Uint32(b[journalLen-4:]) {
		return state{}, wire.LogRecord{}, false
	}
	s, ok := parseState(b[:stateLen])
	if !ok {
		return state{}, wire.LogRecord{}, false
	}
	r, err := wire.ParseLogRecord(b[stateLen : stateLen+wire.LogRecordLen])
	if err != nil || r.ATC != s.atc {
		return state{}, wire.LogRecord{}, false
	}
	return s, r, true
}

const configFormat byte = 0x01

// configLen: format 1 | CardID 8 | currency 2 | limits 20 | PIN try limit 1.
const configLen = 1 + wire.CardIDLen + 2 + wire.LimitsLen + 1

// config is the purse's fixed data, decoded once per instance object and
// kept with the keys' prepared CMACs.
type config struct {
	cardID      wire.CardID
	currency    wire.Currency
	limits      wire.Limits
	pinTries    byte
	kvLoad      byte
	kvDebit     byte
	kvTC        byte
	load, debit *cmac.MAC // K_LOAD, K_DEBIT
	tc          *cmac.MAC // K_TC
	loadBits    int
	debitBits   int
}

func configBytes(p wire.Personalization) []byte {
	b := make([]byte, 0, configLen)
	b = append(b, configFormat)
	b = append(b, p.CardID[:]...)
	b = append(b, p.Currency[:]...)
	b = append(b, p.Limits.Bytes()...)
	return append(b, p.PINTries)
}

// keysBytes: for K_LOAD, K_DEBIT, K_TC in turn: KVN 1 | length 1 | key.
func keysBytes(k wire.Keys) []byte {
	var b []byte
	for _, v := range []wire.VersionedKey{k.Load, k.Debit, k.TC} {
		b = append(b, v.Version, byte(len(v.Key)))
		b = append(b, v.Key...)
	}
	return b
}

func loadConfig(m applet.Memory) (*config, error) {
	v, ok := m.Get(recConfig)
	if !ok || len(v) != configLen || v[0] != configFormat {
		return nil, fmt.Errorf("purse: configuration record missing or corrupt")
	}
	c := &config{}
	copy(c.cardID[:], v[1:])
	copy(c.currency[:], v[9:])
	lim, err := wire.ParseLimits(v[11:31])
	if err != nil {
		return nil, fmt.Errorf("purse: configuration: %w", err)
	}
	c.limits, c.pinTries = lim, v[31]
	k, ok := m.Get(recKeys)
	if !ok {
		return nil, fmt.Errorf("purse: key record missing")
	}
	defer clear(k)
	for i, dst := range []struct {
		kvn  *byte
		mac  **cmac.MAC
		bits *int
	}{{&c.kvLoad, &c.load, &c.loadBits}, {&c.kvDebit, &c.debit, &c.debitBits}, {&c.kvTC, &c.tc, new(int)}} {
		if len(k) < 2 || len(k) < 2+int(k[1]) {
			return nil, fmt.Errorf("purse: key record truncated at key %d", i)
		}
		*dst.kvn, *dst.bits = k[0], int(k[1])*8
		if *dst.mac, err = cmac.NewMAC(k[2 : 2+int(k[1])]); err != nil {
			return nil, fmt.Errorf("purse: key %d: %w", i, err)
		}
		k = k[2+int(k[1]):]
	}
	return c, nil
}
