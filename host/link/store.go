package link

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/valuechip/valuechip/internal/atomicfile"
)

// ErrCorrupt: the state log has a damaged record before its last line.
var ErrCorrupt = errors.New("link: terminal state log corrupt")

// Kinds of queued messages.
const (
	KindDebit      = "debit"      // offline debit advice 0220 (docs/iso8583.md §2.4)
	KindCompletion = "completion" // load completion advice 0220 (§2.3)
	KindReversal   = "reversal"   // reversal advice 0420 (§2.5)
)

// Totals are the terminal's batch totals of one currency (docs/iso8583.md
// §2.6): counts and amounts in minor units. As in the server's ledger
// (docs/ledger.md §11), a load counts once final: in Loads when its
// completion advice is acknowledged, in LoadReversals when it is reversed
// (docs/terminal.md §4).
type Totals struct {
	Currency           string `json:"currency"` // ISO 4217 numeric, "978"
	Loads              int64  `json:"loads"`
	LoadAmount         int64  `json:"load_amount"`
	LoadReversals      int64  `json:"load_reversals"`
	LoadReversalAmount int64  `json:"load_reversal_amount"`
	Debits             int64  `json:"debits"`
	DebitAmount        int64  `json:"debit_amount"`
}

// Net is loads − debits: the value the terminal put onto cards minus what
// it took, its DE 97 (§2.6). Reversed loads are in neither.
func (t Totals) Net() int64 { return t.LoadAmount - t.DebitAmount }

func (t Totals) String() string {
	return fmt.Sprintf("%s: loads %d/%d, load reversals %d/%d, debits %d/%d", t.Currency,
		t.Loads, t.LoadAmount, t.LoadReversals, t.LoadReversalAmount, t.Debits, t.DebitAmount)
}

// Entry is one queued (or rejected) advice. The message is rebuilt from it
// at each attempt with the session's current working key and seed; DE 7
// and DE 11 are fixed when it is queued, so a repeat keeps them
// (docs/iso8583.md §2).
type Entry struct {
	ID       uint64 `json:"id"`
	Kind     string `json:"kind"`
	CardID   string `json:"card"`             // 16 hex digits
	Record   string `json:"record,omitempty"` // debit and completion: the 58-byte log record, hex
	ATC      uint32 `json:"atc"`
	Amount   uint32 `json:"amount"`
	Currency string `json:"currency"`
	STAN     string `json:"stan"`
	DE7      string `json:"de7"`
	OrigMTI  string `json:"orig_mti,omitempty"` // reversal: DE 90 of the load request
	OrigSTAN string `json:"orig_stan,omitempty"`
	OrigDE7  string `json:"orig_de7,omitempty"`
	Load     string `json:"load,omitempty"` // reversal: the load it reverses (state log key)
	Tries    int    `json:"tries"`          // attempts so far: the next is a repeat (0221/0421) when > 0
	Code     string `json:"rc,omitempty"`   // rejected: the response code
}

// loadState follows one load from its 0200 to completion or reversal, so
// that batch totals count what the server booked.
type loadState struct {
	STAN     string `json:"stan"`
	DE7      string `json:"de7"`
	Amount   uint32 `json:"amount"`
	Currency string `json:"currency"`
	Approved bool   `json:"approved"`
}

// UnbalancedBatch is a batch the server found out of balance (0510 DE 66
// = 2). The server closes its batch at every 0500, so the terminal closes
// its own too and keeps the totals here for an operator (docs/terminal.md
// §5).
type UnbalancedBatch struct {
	Batch    uint64  `json:"batch"`
	Terminal Totals  `json:"terminal"`
	Server   *Totals `json:"server,omitempty"` // when the 0510 carried other totals than ours
}

// snapshot is the whole state, the first line of a compacted log.
type snapshot struct {
	Unbalanced  []UnbalancedBatch    `json:"unbalanced,omitempty"`
	Batch       uint64               `json:"batch"`
	NextID      uint64               `json:"next_id"`
	STANReserve uint32               `json:"stan_reserve"`
	Queue       []*Entry             `json:"queue,omitempty"`
	Rejected    []*Entry             `json:"rejected,omitempty"`
	Totals      map[string]*Totals   `json:"totals,omitempty"`
	Loads       map[string]loadState `json:"loads,omitempty"`
	Debited     map[string]bool      `json:"debited,omitempty"` // card/ATC of the batch's counted debits
}

// event is one line of the state log.
type event struct {
	E    string           `json:"e"`
	Snap *snapshot        `json:"snap,omitempty"`
	Add  *Entry           `json:"add,omitempty"`
	ID   uint64           `json:"id,omitempty"`
	Code string           `json:"rc,omitempty"`
	Key  string           `json:"key,omitempty"`
	Load *loadState       `json:"load,omitempty"`
	N    uint32           `json:"n,omitempty"`
	Bad  *UnbalancedBatch `json:"bad,omitempty"`
}

// Events.
const (
	evSnap      = "snap"    // Snap: the whole state
	evAdd       = "add"     // Add: queue an advice
	evTry       = "try"     // ID: one more attempt made
	evAck       = "ack"     // ID, Code: acknowledged (00/94), removed, counted
	evReject    = "rej"     // ID, Code: declined for good, moved to the rejected list
	evLoadSent  = "lsent"   // Key, Load: a 0200 is about to go out
	evLoadOK    = "lok"     // Key: the 0200 was approved: one load booked by the server
	evLoadRev   = "lrev"    // Key: a 0400 reversed it (counted, with the load if not yet)
	evLoadDrop  = "ldrop"   // Key: forget the load (declined, or nothing to reverse)
	evClose     = "close"   // the batch was reconciled (Bad: out of balance, archived): new batch
	evSTAN      = "stan"    // N: STANs up to N may have been used
	evRequeue   = "requeue" // move the rejected advices back into the queue
	maxLogBytes = 1 << 20
)

// store is the terminal's durable state (docs/terminal.md §2): an
// append-only log of JSON lines, each fsynced before its effect counts;
// replaying it gives the queue, the batch totals, the loads in progress and
// the STAN reservation. It is compacted into one snapshot line when it
// grows and when a batch closes.
type store struct {
	path string
	mu   sync.Mutex
	f    *os.File
	size int64
	s    snapshot
	q    map[uint64]*Entry
	rej  map[uint64]*Entry
}

// cardATC names a card transaction; loadKey one load attempt (a declined
// or reversed load leaves the card's ATC unchanged, so the next attempt has
// the same ATC' and another host nonce).
func cardATC(card string, atc uint32) string { return fmt.Sprintf("%s/%d", card, atc) }

func loadKey(card string, atc uint32, hostNonce []byte) string {
	return fmt.Sprintf("%s/%X", cardATC(card, atc), hostNonce)
}

func newSnapshot() snapshot {
	return snapshot{Batch: 1, NextID: 1, Totals: map[string]*Totals{}, Loads: map[string]loadState{}, Debited: map[string]bool{}}
}

// openStore opens (creating) the state log in dir.
func openStore(dir string) (*store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("link: state directory: %w", err)
	}
	st := &store{path: filepath.Join(dir, "state.log"), s: newSnapshot(), q: map[uint64]*Entry{}, rej: map[uint64]*Entry{}}
	b, err := os.ReadFile(st.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("link: state log: %w", err)
	}
	good, err := st.replay(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st.path, err)
	}
	f, err := os.OpenFile(st.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("link: state log: %w", err)
	}
	// A torn last line was never acknowledged to anyone (its append did
	// not return): drop it so the next append starts on a line boundary.
	if good != len(b) {
		if err := f.Truncate(int64(good)); err != nil {
			f.Close()
			return nil, fmt.Errorf("link: state log: %w", err)
		}
		_ = f.Sync()
	}
	if _, err := f.Seek(int64(good), io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("link: state log: %w", err)
	}
	st.f, st.size = f, int64(good)
	return st, nil
}

// replay applies the log b and returns the length of its intact prefix.
// Only the last line may be damaged (a crash during its append).
func (st *store) replay(b []byte) (int, error) {
	off := 0
	for off < len(b) {
		nl := bytes.IndexByte(b[off:], '\n')
		if nl < 0 {
			return off, nil // torn last line
		}
		var ev event
		if err := json.Unmarshal(b[off:off+nl], &ev); err != nil || st.apply(ev) != nil {
			if off+nl+1 == len(b) {
				return off, nil
			}
			return 0, fmt.Errorf("%w: line at byte %d", ErrCorrupt, off)
		}
		off += nl + 1
	}
	return off, nil
}

func (st *store) totals(cur string) *Totals {
	t := st.s.Totals[cur]
	if t == nil {
		t = &Totals{Currency: cur}
		st.s.Totals[cur] = t
	}
	return t
}

// apply is the one place events take effect, live and on replay.
func (st *store) apply(ev event) error {
	switch ev.E {
	case evSnap:
		if ev.Snap == nil {
			return ErrCorrupt
		}
		st.s = *ev.Snap
		if st.s.Totals == nil {
			st.s.Totals = map[string]*Totals{}
		}
		if st.s.Loads == nil {
			st.s.Loads = map[string]loadState{}
		}
		if st.s.Debited == nil {
			st.s.Debited = map[string]bool{}
		}
		st.q, st.rej = map[uint64]*Entry{}, map[uint64]*Entry{}
		for _, e := range st.s.Queue {
			st.q[e.ID] = e
		}
		for _, e := range st.s.Rejected {
			st.rej[e.ID] = e
		}
		st.s.Queue, st.s.Rejected = nil, nil
	case evAdd:
		if ev.Add == nil || ev.Add.ID == 0 {
			return ErrCorrupt
		}
		e := *ev.Add
		st.q[e.ID] = &e
		if e.ID >= st.s.NextID {
			st.s.NextID = e.ID + 1
		}
	case evTry:
		if e := st.q[ev.ID]; e != nil {
			e.Tries++
		}
	case evAck:
		e := st.q[ev.ID]
		if e == nil {
			return nil
		}
		delete(st.q, ev.ID)
		k := cardATC(e.CardID, e.ATC)
		switch e.Kind {
		case KindDebit:
			// Once per card and ATC: the same record advised again (a
			// recovery after a crash) is answered 94 and not a new sale.
			if !st.s.Debited[k] {
				st.s.Debited[k] = true
				t := st.totals(e.Currency)
				t.Debits++
				t.DebitAmount += int64(e.Amount)
			}
		case KindCompletion:
			// Counted once: while we follow the load, or — unknown to us
			// (state lost) — when the server says it completed it now.
			found := ""
			for lk, l := range st.s.Loads {
				if l.Approved && strings.HasPrefix(lk, k+"/") {
					found = lk
				}
			}
			if found != "" || ev.Code == "00" {
				t := st.totals(e.Currency)
				t.Loads++
				t.LoadAmount += int64(e.Amount)
			}
			delete(st.s.Loads, found)
		case KindReversal:
			// Counted when the server reversed a load it booked: one we
			// saw approved, or — answered 94, already reversed — one whose
			// 0210 we lost. A 00 for a load we never saw approved is the
			// server's answer to an unknown load (docs/iso8583.md §2.5)
			// and counts nothing (docs/terminal.md §4).
			if l, ok := st.s.Loads[e.Load]; ok && (l.Approved || ev.Code == "94") {
				t := st.totals(e.Currency)
				t.LoadReversals++
				t.LoadReversalAmount += int64(e.Amount)
			}
			delete(st.s.Loads, e.Load)
		}
	case evReject:
		if e := st.q[ev.ID]; e != nil {
			delete(st.q, ev.ID)
			e.Code = ev.Code
			st.rej[e.ID] = e
		}
	case evRequeue:
		for id, e := range st.rej {
			e.Code = ""
			st.q[id] = e
		}
		st.rej = map[uint64]*Entry{}
	case evLoadSent:
		if ev.Load == nil {
			return ErrCorrupt
		}
		st.s.Loads[ev.Key] = *ev.Load
	case evLoadOK:
		if l, ok := st.s.Loads[ev.Key]; ok {
			l.Approved = true
			st.s.Loads[ev.Key] = l
		}
	case evLoadRev:
		// A 0400 answered 00 or 94: the server holds the load reversed,
		// also one whose 0210 we lost.
		if ev.Load == nil {
			return ErrCorrupt
		}
		t := st.totals(ev.Load.Currency)
		t.LoadReversals++
		t.LoadReversalAmount += int64(ev.Load.Amount)
		delete(st.s.Loads, ev.Key)
	case evLoadDrop:
		delete(st.s.Loads, ev.Key)
	case evClose:
		if ev.Bad != nil {
			st.s.Unbalanced = append(st.s.Unbalanced, *ev.Bad)
		}
		st.s.Batch++
		st.s.Totals, st.s.Debited = map[string]*Totals{}, map[string]bool{}
	case evSTAN:
		st.s.STANReserve = ev.N
	default:
		return ErrCorrupt
	}
	return nil
}

// append writes evs, fsyncs when sync, then applies them.
func (st *store) append(sync bool, evs ...event) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.appendLocked(sync, evs...)
}

func (st *store) appendLocked(sync bool, evs ...event) error {
	if st.f == nil {
		return errors.New("link: state log closed")
	}
	var buf bytes.Buffer
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("link: state log: %w", err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	if _, err := st.f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("link: state log: %w", err)
	}
	if sync {
		if err := st.f.Sync(); err != nil {
			return fmt.Errorf("link: state log: %w", err)
		}
	}
	st.size += int64(buf.Len())
	for _, ev := range evs {
		if err := st.apply(ev); err != nil {
			return err
		}
	}
	if st.size > maxLogBytes {
		return st.compactLocked()
	}
	return nil
}

func (st *store) snapshotLocked() *snapshot {
	s := st.s
	s.Queue, s.Rejected = sortedEntries(st.q), sortedEntries(st.rej)
	s.Totals = map[string]*Totals{}
	for k, v := range st.s.Totals {
		c := *v
		s.Totals[k] = &c
	}
	s.Loads = map[string]loadState{}
	for k, v := range st.s.Loads {
		s.Loads[k] = v
	}
	s.Debited = map[string]bool{}
	for k, v := range st.s.Debited {
		s.Debited[k] = v
	}
	return &s
}

// compactLocked replaces the log by one snapshot line (atomically: a crash
// leaves the old log or the new one).
func (st *store) compactLocked() error {
	b, err := json.Marshal(event{E: evSnap, Snap: st.snapshotLocked()})
	if err != nil {
		return fmt.Errorf("link: state log: %w", err)
	}
	b = append(b, '\n')
	if err := atomicfile.Write(st.path, b); err != nil {
		return fmt.Errorf("link: compact state log: %w", err)
	}
	f, err := os.OpenFile(st.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("link: state log: %w", err)
	}
	st.f.Close()
	st.f, st.size = f, int64(len(b))
	return nil
}

func sortedEntries(m map[uint64]*Entry) []*Entry {
	out := make([]*Entry, 0, len(m))
	for _, e := range m {
		c := *e
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// queued returns copies of the queued advices in queue order.
func (st *store) queued() []*Entry {
	st.mu.Lock()
	defer st.mu.Unlock()
	return sortedEntries(st.q)
}

func (st *store) rejected() []*Entry {
	st.mu.Lock()
	defer st.mu.Unlock()
	return sortedEntries(st.rej)
}

// enqueue assigns the next ID to e and appends it durably. An advice of
// the same kind, card and ATC already queued is kept instead (e gets its
// ID): a record advised twice is sent once.
func (st *store) enqueue(e *Entry) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, q := range st.q {
		if q.Kind == e.Kind && q.CardID == e.CardID && q.ATC == e.ATC && q.Record == e.Record {
			*e = *q
			return nil
		}
	}
	e.ID = st.s.NextID
	return st.appendLocked(true, event{E: evAdd, Add: e})
}

// state returns the batch number and a copy of the totals, by currency.
func (st *store) state() (uint64, []Totals) {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]Totals, 0, len(st.s.Totals))
	for _, t := range st.s.Totals {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Currency < out[j].Currency })
	return st.s.Batch, out
}

func (st *store) unbalanced() []UnbalancedBatch {
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]UnbalancedBatch(nil), st.s.Unbalanced...)
}

func (st *store) load(key string) (loadState, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	l, ok := st.s.Loads[key]
	return l, ok
}

func (st *store) stanReserve() uint32 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.s.STANReserve
}

// closeBatch starts a new batch, archiving the old one when bad is set,
// and compacts the log.
func (st *store) closeBatch(bad *UnbalancedBatch) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.appendLocked(true, event{E: evClose, Bad: bad}); err != nil {
		return err
	}
	return st.compactLocked()
}

func (st *store) close() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.f == nil {
		return nil
	}
	err := st.f.Close()
	st.f = nil
	return err
}

// sync makes the appended events durable.
func (st *store) sync() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.f == nil {
		return errors.New("link: state log closed")
	}
	if err := st.f.Sync(); err != nil {
		return fmt.Errorf("link: state log: %w", err)
	}
	return nil
}
