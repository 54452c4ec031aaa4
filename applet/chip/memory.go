package chip

import (
	"sort"
	"strings"

	"github.com/valuechip/valuechip/applet"
)

// store is the chip's persistent memory (the model of its EEPROM/flash):
// records of bytes, and the journal of the transaction in progress.
//
// Writes outside a transaction are atomic one by one. Inside a transaction
// (Java Card 3 Runtime Environment §7) every Put or Delete appends to the
// journal, which is itself persistent; Commit is one more persistent write
// — the commit mark — after which the journal is applied. Recovery at
// power-up rolls a marked journal forward and discards an unmarked one, so
// a transaction takes effect completely or not at all whatever the write
// at which power was lost.
type store struct {
	records map[string][]byte
	journal []entry // the open transaction's writes, in order
	inTx    bool
	marked  bool // commit mark written, journal not yet applied

	used, quota int    // bytes held, and the limit (0 = none)
	writes      uint64 // persistent writes since manufacture
	tearAt      uint64 // cut power when writes reaches this (0 = off)
	dirty       bool   // changed since the image was last saved
	sysGen      uint64 // bumped when a registry record ("sys/…") may have changed, for the decoded-registry cache
}

type entry struct {
	Key     string `json:"k"`
	Value   []byte `json:"v,omitempty"`
	Deleted bool   `json:"d,omitempty"`
}

// torn is the panic value that unwinds a command when tear injection cuts
// power; Chip.Transmit recovers it.
type torn struct{}

func newStore(quota int) *store { return &store{records: map[string][]byte{}, quota: quota} }

// write accounts for one persistent write and cuts power after it when
// tear injection says so (the write itself completes: "power is cut after
// the Nth write").
func (s *store) write() {
	s.writes++
	s.dirty = true
	if s.tearAt != 0 && s.writes >= s.tearAt {
		s.tearAt = 0
		panic(torn{})
	}
}

func (s *store) get(key string) ([]byte, bool) {
	if s.inTx {
		for i := len(s.journal) - 1; i >= 0; i-- {
			if e := s.journal[i]; e.Key == key {
				if e.Deleted {
					return nil, false
				}
				return clone(e.Value), true
			}
		}
	}
	v, ok := s.records[key]
	return clone(v), ok
}

// touch notes a change to key for the registry cache.
func (s *store) touch(key string) {
	if strings.HasPrefix(key, "sys/") {
		s.sysGen++
	}
}

func (s *store) put(key string, value []byte) error {
	old, had := s.get(key)
	need := len(value) - len(old)
	if !had {
		need += len(key)
	}
	if s.quota > 0 && s.used+need > s.quota {
		return applet.ErrNoMemory
	}
	s.used += need
	s.touch(key)
	if s.inTx {
		s.journal = append(s.journal, entry{Key: key, Value: clone(value)})
	} else {
		s.records[key] = clone(value)
	}
	s.write()
	return nil
}

func (s *store) del(key string) {
	old, had := s.get(key)
	if !had {
		return
	}
	s.used -= len(old) + len(key)
	s.touch(key)
	if s.inTx {
		s.journal = append(s.journal, entry{Key: key, Deleted: true})
	} else {
		delete(s.records, key)
	}
	s.write()
}

func (s *store) keys(prefix string) []string {
	var out []string
	for k := range s.records {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	if s.inTx {
		// The journal may add or delete records: list what a read sees.
		cand := map[string]bool{}
		for _, k := range out {
			cand[k] = true
		}
		for _, e := range s.journal {
			if strings.HasPrefix(e.Key, prefix) {
				cand[e.Key] = true
			}
		}
		out = out[:0]
		for k := range cand {
			if _, ok := s.get(k); ok {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (s *store) begin() error {
	if s.inTx {
		return applet.ErrInTransaction
	}
	s.inTx, s.journal, s.marked = true, nil, false
	return nil
}

// commit writes the commit mark (one persistent write) and applies the
// journal.
func (s *store) commit() error {
	if !s.inTx {
		return applet.ErrNoTransaction
	}
	if len(s.journal) > 0 {
		s.marked = true
		s.write()
	}
	s.apply()
	return nil
}

func (s *store) apply() {
	s.touchJournal()
	for _, e := range s.journal {
		if e.Deleted {
			delete(s.records, e.Key)
		} else {
			s.records[e.Key] = e.Value
		}
	}
	s.inTx, s.journal, s.marked = false, nil, false
	s.dirty = true
	s.recount()
}

// touchJournal notes the registry records a journal held: applying or
// discarding it changes what reads of them return.
func (s *store) touchJournal() {
	for _, e := range s.journal {
		s.touch(e.Key)
	}
}

// abort discards the journal: nothing written in the transaction remains.
func (s *store) abort() {
	if !s.inTx {
		return
	}
	s.touchJournal()
	s.inTx, s.journal, s.marked = false, nil, false
	s.dirty = true
	s.recount()
}

// recover runs at power-up: roll a marked journal forward, drop an
// unmarked one.
func (s *store) recover() {
	if s.marked {
		s.apply()
		return
	}
	s.abort()
}

func (s *store) recount() {
	s.used = 0
	for k, v := range s.records {
		s.used += len(k) + len(v)
	}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// memory is one applet instance's view of the store: its records live
// under a prefix of its own.
type memory struct {
	s      *store
	prefix string
}

func (m memory) Get(key string) ([]byte, bool) { return m.s.get(m.prefix + key) }
func (m memory) Put(key string, value []byte) error {
	return m.s.put(m.prefix+key, value)
}
func (m memory) Delete(key string) error { m.s.del(m.prefix + key); return nil }
func (m memory) Keys(prefix string) []string {
	ks := m.s.keys(m.prefix + prefix)
	for i := range ks {
		ks[i] = strings.TrimPrefix(ks[i], m.prefix)
	}
	return ks
}
