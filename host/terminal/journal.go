package terminal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/internal/atomicfile"
)

// Pending is the terminal's durable record of a value change in progress
// (docs/purse.md §9.4): written before the completion command (CREDIT
// LOAD or DEBIT) is sent and removed once the outcome is known. It holds
// no key: the security module re-derives SK_D from the nonces.
type Pending struct {
	Kind   string      `json:"kind"` // "load" or "debit"
	CardID wire.CardID `json:"card_id"`
	ATC    uint32      `json:"atc"` // ATC' of the transaction
	Amount uint32      `json:"amount"`
	// Sent is true once the completion command may have reached the
	// card; before that the card cannot have changed.
	Sent  bool         `json:"sent"`
	Debit *DebitAuth   `json:"debit,omitempty"`
	Load  *LoadPending `json:"load,omitempty"`
}

// LoadPending is a load's request and authorisation.
type LoadPending struct {
	Request LoadRequest `json:"request"`
	Auth    *LoadAuth   `json:"auth,omitempty"`
}

// Journal keeps at most one pending transaction durably.
type Journal interface {
	// Load returns the pending transaction, or nil.
	Load() (*Pending, error)
	// Save replaces it; it must be durable when Save returns.
	Save(p *Pending) error
	// Clear removes it.
	Clear() error
}

// MemoryJournal is a Journal in memory, for tests and benchmarks (it
// survives a lost card, not a terminal crash).
type MemoryJournal struct {
	mu sync.Mutex
	p  *Pending
}

// Load implements Journal.
func (j *MemoryJournal) Load() (*Pending, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.p == nil {
		return nil, nil
	}
	c := *j.p
	return &c, nil
}

// Save implements Journal.
func (j *MemoryJournal) Save(p *Pending) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	c := *p
	j.p = &c
	return nil
}

// Clear implements Journal.
func (j *MemoryJournal) Clear() error { j.mu.Lock(); j.p = nil; j.mu.Unlock(); return nil }

// FileJournal is a Journal in one JSON file, replaced atomically
// (internal/atomicfile) so a crash leaves the old or the new record.
type FileJournal struct{ Path string }

// Load implements Journal.
func (j FileJournal) Load() (*Pending, error) {
	b, err := os.ReadFile(j.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("terminal journal: %w", err)
	}
	var p Pending
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("terminal journal %s: %w", j.Path, err)
	}
	if p.Kind != "load" && p.Kind != "debit" || (p.Kind == "debit") != (p.Debit != nil) || (p.Kind == "load") != (p.Load != nil) {
		return nil, fmt.Errorf("terminal journal %s: inconsistent record (kind %q)", j.Path, p.Kind)
	}
	return &p, nil
}

// Save implements Journal.
func (j FileJournal) Save(p *Pending) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return fmt.Errorf("terminal journal: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(j.Path), 0o700); err != nil {
		return fmt.Errorf("terminal journal: %w", err)
	}
	if err := atomicfile.Write(j.Path, b); err != nil {
		return fmt.Errorf("terminal journal: %w", err)
	}
	return nil
}

// Clear implements Journal.
func (j FileJournal) Clear() error {
	if err := os.Remove(j.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("terminal journal: %w", err)
	}
	return nil
}
