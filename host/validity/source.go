package validity

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Kind names one of the two lists.
type Kind int

// The lists.
const (
	// Cards is the card hotlist: a listed card is refused (62).
	Cards Kind = iota
	// Terminals is the terminal whitelist: an unlisted terminal is refused (58).
	Terminals
)

func (k Kind) String() string {
	if k == Terminals {
		return "terminals"
	}
	return "cards"
}

// Change is one entry of a list's change feed: ID (a CardKey or TerminalKey
// as uint64) is listed or not as of Version. Changes carry the resulting
// state, not a toggle, so replaying a change already applied is harmless
// (the lists rely on it, docs/validity.md §3).
type Change struct {
	ID      uint64
	Listed  bool // cards: hotlisted; terminals: permitted (active)
	Version int64
}

// Source is where the lists are loaded from and refreshed by; the registry
// (host/registry) is the production one, through an adapter. Versions are
// per list, increase with every change, and are opaque otherwise.
type Source interface {
	// Snapshot returns every listed ID of the list and the version it
	// reflects. The caller takes ownership of the slice (the card hotlist
	// is indexed in place).
	Snapshot(ctx context.Context, kind Kind) (ids []uint64, version int64, err error)
	// Changes returns the changes with a version above since, oldest
	// first, and the version they bring the list to (since when none).
	// It returns ErrResync when it no longer has them.
	Changes(ctx context.Context, kind Kind, since int64) (changes []Change, version int64, err error)
	// Version returns the list's current version, for a list that is
	// followed from now on without being loaded (the card hotlist in
	// ModeTerminals).
	Version(ctx context.Context, kind Kind) (int64, error)
}

// MemSource is an in-memory Source for tests and demos. It is safe for
// concurrent use; the zero value is ready.
type MemSource struct {
	mu      sync.Mutex
	listed  [2]map[uint64]bool
	log     [2][]Change
	version [2]int64
}

// Set lists or unlists id and returns the new version of the list.
func (m *MemSource) Set(kind Kind, id uint64, listed bool) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listed[kind] == nil {
		m.listed[kind] = make(map[uint64]bool)
	}
	if listed {
		m.listed[kind][id] = true
	} else {
		delete(m.listed[kind], id)
	}
	m.version[kind]++
	m.log[kind] = append(m.log[kind], Change{ID: id, Listed: listed, Version: m.version[kind]})
	return m.version[kind]
}

// Has reports whether id is listed (the "database" view, used by MemChecker).
func (m *MemSource) Has(kind Kind, id uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.listed[kind][id]
}

// Snapshot implements Source.
func (m *MemSource) Snapshot(ctx context.Context, kind Kind) ([]uint64, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]uint64, 0, len(m.listed[kind]))
	for id := range m.listed[kind] {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, m.version[kind], nil
}

// Changes implements Source.
func (m *MemSource) Changes(ctx context.Context, kind Kind, since int64) ([]Change, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if since > m.version[kind] {
		return nil, 0, fmt.Errorf("%w: version %d is ahead of %d", ErrResync, since, m.version[kind])
	}
	// log[i].Version == i+1.
	return slices.Clone(m.log[kind][since:]), m.version[kind], nil
}

// Version implements Source.
func (m *MemSource) Version(ctx context.Context, kind Kind) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version[kind], nil
}

// DBChecker answers for the side that is not cached, from the database
// (ModeCards: terminals; ModeTerminals: cards). The registry adapter is the
// production one.
type DBChecker interface {
	CardHotlisted(ctx context.Context, card CardKey) (bool, error)
	TerminalPermitted(ctx context.Context, terminal TerminalKey) (bool, error)
}

// MemChecker is a DBChecker over a MemSource, for tests.
type MemChecker struct{ Source *MemSource }

// CardHotlisted implements DBChecker.
func (c MemChecker) CardHotlisted(ctx context.Context, card CardKey) (bool, error) {
	return c.Source.Has(Cards, uint64(card)), ctx.Err()
}

// TerminalPermitted implements DBChecker.
func (c MemChecker) TerminalPermitted(ctx context.Context, terminal TerminalKey) (bool, error) {
	return c.Source.Has(Terminals, uint64(terminal)), ctx.Err()
}
