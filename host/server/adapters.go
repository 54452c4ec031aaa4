package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/registry"
)

// The ledger's SQLStore is the server's Ledger as it is.
var _ Ledger = (*ledger.SQLStore)(nil)

// DefaultSeedTTL is the validity of a seed handed out at sign-on
// (docs/iso8583.md §4: at most 24 h, the profile uses 12 h).
const DefaultSeedTTL = 12 * time.Hour

// RegistryStore adapts host/registry to Registry.
type RegistryStore struct {
	Store   *registry.Store
	SeedTTL time.Duration    // DefaultSeedTTL when 0
	Now     func() time.Time // time.Now when nil
}

func regErr(err error) error {
	if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrInvalid) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Terminal implements Registry.
func (r RegistryStore) Terminal(ctx context.Context, id string) (Terminal, error) {
	t, err := r.Store.Terminal(ctx, id)
	if err != nil {
		return Terminal{}, regErr(err)
	}
	tmk, err := r.Store.TerminalKey(ctx, id)
	if err != nil {
		return Terminal{}, regErr(err)
	}
	return Terminal{ID: t.ID, MerchantID: t.MerchantID, Active: t.Status == registry.Active, TMK: tmk}, nil
}

// SignOn implements Registry.
func (r RegistryStore) SignOn(ctx context.Context, terminalID string) (iso8583.SignOnKeys, error) {
	ttl, now := r.SeedTTL, time.Now
	if ttl <= 0 {
		ttl = DefaultSeedTTL
	}
	if r.Now != nil {
		now = r.Now
	}
	k, err := r.Store.SignOn(ctx, terminalID, now(), ttl)
	return k, regErr(err)
}

// SignOff implements Registry.
func (r RegistryStore) SignOff(ctx context.Context, terminalID string) error {
	return regErr(r.Store.SignOff(ctx, terminalID))
}

// WorkingKey implements Registry.
func (r RegistryStore) WorkingKey(ctx context.Context, terminalID string) (iso8583.Key, error) {
	k, err := r.Store.WorkingKey(ctx, terminalID)
	return k, regErr(err)
}

// Seed implements Registry.
func (r RegistryStore) Seed(ctx context.Context, seedID uint32) (SeedInfo, error) {
	tid, seed, err := r.Store.Seed(ctx, seedID)
	if err != nil {
		return SeedInfo{}, regErr(err)
	}
	return SeedInfo{TerminalID: tid, Seed: seed}, nil
}

// Card implements Registry.
func (r RegistryStore) Card(ctx context.Context, id string) (Card, error) {
	c, err := r.Store.Card(ctx, id)
	if err != nil {
		return Card{}, regErr(err)
	}
	return Card{ID: c.CardID, Currency: c.Currency, Status: CardStatus(c.Status), MaxBalance: c.MaxBalance}, nil
}

// CachedRegistry keeps registry answers for a short time: every request
// needs its terminal, working key, seed and card, each an unseal and a
// database read. Sign-on and sign-off through this server invalidate the
// terminal's entries at once; changes made elsewhere (a terminal blocked, a
// card hot-listed with `valuechip terminal`/`card` commands or by another
// server) take effect within TTL.
type CachedRegistry struct {
	Registry
	TTL time.Duration

	mu    sync.Mutex
	terms map[string]cached[Terminal]
	wks   map[string]cached[iso8583.Key]
	seeds map[uint32]cached[SeedInfo]
	cards map[string]cached[Card]
}

type cached[T any] struct {
	v   T
	exp time.Time
}

// NewCachedRegistry wraps r with a cache of the given lifetime (≤ 0: no
// caching).
func NewCachedRegistry(r Registry, ttl time.Duration) *CachedRegistry {
	return &CachedRegistry{Registry: r, TTL: ttl, terms: map[string]cached[Terminal]{},
		wks: map[string]cached[iso8583.Key]{}, seeds: map[uint32]cached[SeedInfo]{}, cards: map[string]cached[Card]{}}
}

func get[K comparable, T any](c *CachedRegistry, m map[K]cached[T], k K, load func() (T, error)) (T, error) {
	if c.TTL <= 0 {
		return load()
	}
	now := time.Now()
	c.mu.Lock()
	e, ok := m[k]
	c.mu.Unlock()
	if ok && now.Before(e.exp) {
		return e.v, nil
	}
	v, err := load()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if len(m) > 100000 {
		clear(m) // bounded: a flood of distinct IDs cannot grow it forever
	}
	m[k] = cached[T]{v: v, exp: now.Add(c.TTL)}
	c.mu.Unlock()
	return v, nil
}

// Terminal implements Registry.
func (c *CachedRegistry) Terminal(ctx context.Context, id string) (Terminal, error) {
	return get(c, c.terms, id, func() (Terminal, error) { return c.Registry.Terminal(ctx, id) })
}

// WorkingKey implements Registry.
func (c *CachedRegistry) WorkingKey(ctx context.Context, id string) (iso8583.Key, error) {
	return get(c, c.wks, id, func() (iso8583.Key, error) { return c.Registry.WorkingKey(ctx, id) })
}

// Seed implements Registry.
func (c *CachedRegistry) Seed(ctx context.Context, id uint32) (SeedInfo, error) {
	return get(c, c.seeds, id, func() (SeedInfo, error) { return c.Registry.Seed(ctx, id) })
}

// Card implements Registry.
func (c *CachedRegistry) Card(ctx context.Context, id string) (Card, error) {
	return get(c, c.cards, id, func() (Card, error) { return c.Registry.Card(ctx, id) })
}

func (c *CachedRegistry) forget(tid string) {
	c.mu.Lock()
	delete(c.wks, tid)
	delete(c.terms, tid)
	// A new sign-on shortens the previous seeds' validity (grace period).
	for id, s := range c.seeds {
		if s.v.TerminalID == tid {
			delete(c.seeds, id)
		}
	}
	c.mu.Unlock()
}

// SignOn implements Registry.
func (c *CachedRegistry) SignOn(ctx context.Context, tid string) (iso8583.SignOnKeys, error) {
	k, err := c.Registry.SignOn(ctx, tid)
	c.forget(tid)
	return k, err
}

// SignOff implements Registry.
func (c *CachedRegistry) SignOff(ctx context.Context, tid string) error {
	err := c.Registry.SignOff(ctx, tid)
	c.forget(tid)
	return err
}

// AdviceStore is the part of host/ledger that posts advices and closes
// batches (ledger.SQLStore).
type AdviceStore interface {
	ApplyAdvices(ctx context.Context, advices []ledger.DebitAdvice) []ledger.AdviceResult
	OpenBatchTotals(ctx context.Context, terminalID string) (ledger.Totals, error)
	CloseBatch(ctx context.Context, terminalID, key string) (ledger.Totals, error)
}

// LedgerAdvices adapts the ledger's advice posting to Advices, with a
// group-committing batcher in front of ApplyAdvices.
type LedgerAdvices struct {
	Store AdviceStore
	b     *Batcher
}

// NewLedgerAdvices starts a batcher of at most maxBatch advices per
// database transaction; observe (may be nil) receives each batch size.
func NewLedgerAdvices(st AdviceStore, maxBatch int, observe func(int)) *LedgerAdvices {
	return &LedgerAdvices{Store: st, b: NewBatcher(st.ApplyAdvices, maxBatch, observe)}
}

// SubmitAdvice implements Advices.
func (l *LedgerAdvices) SubmitAdvice(ctx context.Context, a DebitAdvice) AdviceResult {
	r := l.b.Submit(ctx, ledger.DebitAdvice{Key: a.Key, CardID: a.CardID, TerminalID: a.TerminalID,
		MerchantID: a.MerchantID, ATC: a.ATC, Digest: a.Digest, Amount: a.Amount, Currency: a.Currency, Memo: a.Memo})
	return AdviceResult{Replayed: r.Receipt.Replayed, Duplicate: r.ATC.Status == ledger.ATCDuplicate, Gaps: r.ATC.Gaps, Err: r.Err}
}

func totals(t ledger.Totals) Totals {
	return Totals{Loads: t.Loads, LoadReversals: t.LoadReversals, Debits: t.Debits, LoadAmount: t.LoadAmount,
		LoadReversalAmount: t.LoadReversalAmount, DebitAmount: t.DebitAmount, Currency: t.Currency}
}

// OpenBatchTotals implements Advices.
func (l *LedgerAdvices) OpenBatchTotals(ctx context.Context, tid string) (Totals, error) {
	t, err := l.Store.OpenBatchTotals(ctx, tid)
	return totals(t), err
}

// CloseBatch implements Advices.
func (l *LedgerAdvices) CloseBatch(ctx context.Context, tid, key string) (Totals, error) {
	t, err := l.Store.CloseBatch(ctx, tid, key)
	return totals(t), err
}

// Close flushes the advices queued and stops the batcher.
func (l *LedgerAdvices) Close() { l.b.Close() }
