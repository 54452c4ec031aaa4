package validity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valuechip/valuechip/host/iso8583"
)

// Mode selects which lists are held in memory: the three variants of seed
// 002 (docs/validity.md §4).
type Mode int

// The variants.
const (
	// ModeBoth caches both lists: card and terminal are validated from
	// memory, a request never waits for the database.
	ModeBoth Mode = iota + 1
	// ModeCards caches the card hotlist only: the card is validated from
	// memory first, then the terminal against the database.
	ModeCards
	// ModeTerminals caches the terminal whitelist only: the terminal is
	// validated from memory and the card is checked against the database
	// while the acknowledgment goes out (Decision.Late).
	ModeTerminals
)

var modeNames = map[Mode]string{ModeBoth: "both", ModeCards: "cards", ModeTerminals: "terminals"}

func (m Mode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "both", "cards" or "terminals" (configuration and flags).
func ParseMode(s string) (Mode, error) {
	for m, n := range modeNames {
		if n == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("validity: unknown mode %q (both, cards, terminals)", s)
}

func (m Mode) cachesCards() bool     { return m == ModeBoth || m == ModeCards }
func (m Mode) cachesTerminals() bool { return m == ModeBoth || m == ModeTerminals }

// Defaults of Config.
const (
	DefaultInterval    = 30 * time.Second
	DefaultLateTimeout = 5 * time.Second
	// DefaultCompactAt is the smallest number of changes kept beside a
	// snapshot before they are merged into a new one; larger lists wait
	// for 1/64 of their size (docs/validity.md §3).
	DefaultCompactAt = 4096
)

// Config configures Lists.
type Config struct {
	Mode   Mode
	Source Source
	// DB answers for the uncached side; required unless Mode is ModeBoth.
	DB DBChecker
	// Interval between periodic refreshes; 0 means DefaultInterval, < 0
	// refreshes only on Notify.
	Interval time.Duration
	// CompactAt overrides DefaultCompactAt (tests).
	CompactAt int
	// LateTimeout bounds the late card check of ModeTerminals; 0 means
	// DefaultLateTimeout.
	LateTimeout time.Duration
	// OnLate is called (ModeTerminals) when a late card check finds the
	// card hotlisted or fails, after the request was approved: the caller
	// records and flags the transaction (docs/validity.md §4.3). It runs on
	// the check's goroutine, before Late.Wait returns.
	OnLate func(LateResult)
	// Progress, when set, is called while Start loads a list.
	Progress func(Progress)
	// Logger for refresh failures; nil means slog.Default().
	Logger *slog.Logger
}

// Progress reports the load of one list at Start: Done of Total IDs indexed.
type Progress struct {
	Kind        Kind
	Done, Total int
}

// entry is a change kept beside the snapshot: the ID's state as of version.
type entry struct {
	listed  bool
	version int64
}

// list is one immutable version of a list; a refresh makes a new one and
// swaps the pointer, so a lookup never waits for a refresh.
type list struct {
	base    *set
	delta   map[uint64]entry // overrides base; small
	version int64
	// partial: the card list of ModeTerminals, which is not loaded but
	// follows the change feed from Start (Lists.learned adds the cards the
	// late check found hotlisted); absence means "ask the database".
	partial bool
	// compactedAt: the version at which the delta was last merged into
	// base (a learned answer read before it cannot be ordered any more).
	compactedAt int64
}

func (l *list) has(k uint64) bool {
	if e, ok := l.delta[k]; ok {
		return e.listed
	}
	return l.base.has(k)
}

func (l *list) count() int {
	n := l.base.len()
	for k, e := range l.delta {
		switch in := l.base.has(k); {
		case e.listed && !in:
			n++
		case !e.listed && in:
			n--
		}
	}
	return n
}

// Lists holds the validity lists and answers Check. Create with New, load
// with Start, stop with Close. Lookups are lock-free and safe for concurrent
// use with refreshes.
type Lists struct {
	cfg Config
	ptr [2]atomic.Pointer[list]
	rmu sync.Mutex // one refresh at a time (held across Source calls)
	wmu sync.Mutex // writers of ptr and learned: refresh and the late check
	// learned: ModeTerminals' cards found hotlisted by a late check, CardKey
	// → the list version before the read (int64).
	learned sync.Map
	notify  chan struct{}

	lateMu sync.Mutex // guards closed against late checks starting
	closed bool
	wg     sync.WaitGroup
	cancel context.CancelFunc

	// Counters of the slow paths only: a shared counter on every lookup
	// would be a contended cache line under parallel traffic.
	cardDBReads, termDBReads atomic.Int64
	refreshes, refreshErrors atomic.Int64
	lateChecks, lateRefusals atomic.Int64
	lastRefresh              atomic.Int64 // Unix µs
}

// New checks cfg and returns unloaded Lists.
func New(cfg Config) (*Lists, error) {
	if _, ok := modeNames[cfg.Mode]; !ok {
		return nil, fmt.Errorf("validity: config: unknown mode %d", cfg.Mode)
	}
	if cfg.Source == nil {
		return nil, errors.New("validity: config: no Source")
	}
	if cfg.Mode != ModeBoth && cfg.DB == nil {
		return nil, fmt.Errorf("validity: config: mode %s needs a DBChecker", cfg.Mode)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.LateTimeout <= 0 {
		cfg.LateTimeout = DefaultLateTimeout
	}
	if cfg.CompactAt <= 0 {
		cfg.CompactAt = DefaultCompactAt
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Lists{cfg: cfg, notify: make(chan struct{}, 1)}, nil
}

// Mode returns the configured variant.
func (l *Lists) Mode() Mode { return l.cfg.Mode }

// Start loads the cached lists from the Source (reporting Progress) and
// starts the refresher: every Interval and after each Notify, until ctx is
// done or Close is called. It returns once the lists are loaded.
func (l *Lists) Start(ctx context.Context) error {
	m := l.cfg.Mode
	for _, k := range []Kind{Cards, Terminals} {
		cached := (k == Cards && m.cachesCards()) || (k == Terminals && m.cachesTerminals())
		switch {
		case cached:
			nl, err := l.load(ctx, k)
			if err != nil {
				return err
			}
			l.ptr[k].Store(nl)
		case k == Cards && m == ModeTerminals:
			v, err := l.cfg.Source.Version(ctx, k)
			if err != nil {
				return fmt.Errorf("validity: version of %s: %w", k, err)
			}
			l.ptr[k].Store(&list{base: emptySet, version: v, partial: true})
		}
	}
	// A large load takes seconds; catch up with what changed meanwhile
	// before the first request (a paged snapshot may also straddle
	// changes, docs/registry.md §4).
	if err := l.Refresh(ctx); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	l.wg.Add(1)
	go l.loop(rctx)
	return nil
}

// load reads and indexes a whole list.
func (l *Lists) load(ctx context.Context, k Kind) (*list, error) {
	ids, v, err := l.cfg.Source.Snapshot(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("validity: snapshot of %s: %w", k, err)
	}
	total := len(ids)
	var progress func(int)
	if p := l.cfg.Progress; p != nil {
		progress = func(done int) { p(Progress{Kind: k, Done: done, Total: total}) }
	}
	return &list{base: newSet(ids, progress), version: v}, nil
}

func (l *Lists) loop(ctx context.Context) {
	defer l.wg.Done()
	var tick <-chan time.Time
	if l.cfg.Interval > 0 {
		t := time.NewTicker(l.cfg.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-l.notify:
		}
		if err := l.Refresh(ctx); err != nil && ctx.Err() == nil {
			l.cfg.Logger.Warn("validity lists refresh failed; serving the previous version", "err", err)
		}
	}
}

// Notify asks for a refresh soon; whoever changed a list in this process
// calls it (e.g. the server after hotlisting a card). Other processes'
// changes (valuechip hotlist) arrive with the periodic refresh. It never
// blocks.
func (l *Lists) Notify() {
	select {
	case l.notify <- struct{}{}:
	default: // one is pending already; it will see this change too
	}
}

// Refresh applies the changes since the lists' versions now. Lookups go on
// with the previous version while it runs, however long the Source takes.
func (l *Lists) Refresh(ctx context.Context) error {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	var errs []error
	for _, k := range []Kind{Cards, Terminals} {
		if err := l.refresh(ctx, k); err != nil {
			errs = append(errs, err)
		}
	}
	l.refreshes.Add(1)
	if err := errors.Join(errs...); err != nil {
		l.refreshErrors.Add(1)
		return err
	}
	l.lastRefresh.Store(time.Now().UnixMicro())
	return nil
}

func (l *Lists) refresh(ctx context.Context, k Kind) error {
	cur := l.ptr[k].Load()
	if cur == nil {
		return nil // not followed in this mode
	}
	changes, v, err := l.cfg.Source.Changes(ctx, k, cur.version)
	if errors.Is(err, ErrResync) {
		return l.resync(ctx, k, cur.partial)
	}
	if err != nil {
		return fmt.Errorf("validity: changes of %s since %d: %w", k, cur.version, err)
	}
	if len(changes) == 0 && v == cur.version {
		return nil
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	cur = l.ptr[k].Load()
	delta := maps.Clone(cur.delta)
	if delta == nil {
		delta = make(map[uint64]entry, len(changes))
	}
	for _, c := range changes {
		delta[c.ID] = entry{listed: c.Listed, version: c.Version}
	}
	nl := &list{base: cur.base, delta: delta, version: max(v, cur.version), partial: cur.partial, compactedAt: cur.compactedAt}
	if len(delta) >= max(l.cfg.CompactAt, cur.base.len()/64) {
		nl.base, nl.delta, nl.compactedAt = cur.base.apply(delta), nil, nl.version
	}
	l.ptr[k].Store(nl)
	if nl.partial {
		l.forget(changes)
	}
	return nil
}

// resync reloads a list whose Source lost the changes since its version.
func (l *Lists) resync(ctx context.Context, k Kind, partial bool) error {
	var nl *list
	if partial {
		v, err := l.cfg.Source.Version(ctx, k)
		if err != nil {
			return fmt.Errorf("validity: version of %s: %w", k, err)
		}
		nl = &list{base: emptySet, version: v, partial: true}
	} else {
		var err error
		if nl, err = l.load(ctx, k); err != nil {
			return err
		}
	}
	l.wmu.Lock()
	l.ptr[k].Store(nl)
	if partial {
		l.learned.Clear() // the feed that would forget them is gone
	}
	l.wmu.Unlock()
	return nil
}

// Close stops the refresher and waits for it and for running late checks.
func (l *Lists) Close() error {
	l.lateMu.Lock()
	l.closed = true
	l.lateMu.Unlock()
	if l.cancel != nil {
		l.cancel()
	}
	l.wg.Wait()
	return nil
}

// Decision is the outcome of Check.
type Decision struct {
	// Code is the ISO 8583 response code (docs/iso8583.md §9): 00,
	// 62 (hotlisted card), 58 (terminal not permitted), 14 (malformed card
	// ID), 30 (malformed terminal ID).
	Code string
	// Err says why a request is refused: ErrCardHotlisted or
	// ErrTerminalNotPermitted themselves (no allocation on the refusal
	// path; the caller knows the IDs), or an error wrapping ErrBadCardID or
	// ErrBadTerminalID; nil when approved.
	Err error
	// Late is the card check running while the acknowledgment goes out
	// (ModeTerminals, approved requests only); nil otherwise.
	Late *Late
}

// Approved reports whether the request may go on.
func (d Decision) Approved() bool { return d.Code == iso8583.RCApproved }

// Late is a card check of ModeTerminals that runs concurrently with the
// response.
type Late struct {
	done chan struct{}
	res  LateResult
}

// LateResult is the outcome of a late card check.
type LateResult struct {
	Card      CardKey
	Terminal  TerminalKey
	Hotlisted bool  // the request was approved for a hotlisted card
	Err       error // the database check failed (wraps ErrDB)
}

// Done is closed when the result is known (and OnLate has run).
func (x *Late) Done() <-chan struct{} { return x.done }

// Wait waits for the late check.
func (x *Late) Wait(ctx context.Context) (LateResult, error) {
	select {
	case <-x.done:
		return x.res, nil
	case <-ctx.Done():
		return LateResult{}, ctx.Err()
	}
}

func refuse(code string, err error) Decision { return Decision{Code: code, Err: err} }

var approved = Decision{Code: iso8583.RCApproved}

// ErrClosed: Check after Close in ModeTerminals (no late check may start).
var ErrClosed = errors.New("validity: lists closed")

// CheckIDs parses DE 2 and DE 41 and checks them; a malformed card ID is
// refused with 14 and a malformed terminal ID with 30.
func (l *Lists) CheckIDs(ctx context.Context, cardID, terminalID string) (Decision, error) {
	t, err := ParseTerminalKey(terminalID)
	if err != nil {
		return refuse(iso8583.RCFormatError, err), nil
	}
	c, err := ParseCardKey(cardID)
	if err != nil {
		return refuse(iso8583.RCInvalidCard, err), nil
	}
	return l.Check(ctx, c, t)
}

// CheckTerminal answers for a terminal alone, from memory: the messages
// that carry no card (sign-on, echo, reconciliation) and the terminal check
// a server makes before any lookup. ok is false when the whitelist is not
// held (ModeCards) or not loaded yet: then the caller asks its database.
func (l *Lists) CheckTerminal(term TerminalKey) (permitted, ok bool) {
	if l.cfg.Mode == ModeCards {
		return false, false
	}
	terms := l.ptr[Terminals].Load()
	if terms == nil {
		return false, false
	}
	return terms.has(uint64(term)), true
}

// Check validates a request's card and terminal as the Mode says: the cached
// side first, so that a refusal it decides costs no database read. An error
// (wrapping ErrDB or ErrNotLoaded) means no decision could be made; the
// server answers 91.
func (l *Lists) Check(ctx context.Context, card CardKey, term TerminalKey) (Decision, error) {
	cards, terms := l.ptr[Cards].Load(), l.ptr[Terminals].Load()
	switch l.cfg.Mode {
	case ModeBoth:
		if cards == nil || terms == nil {
			return Decision{}, ErrNotLoaded
		}
		if !terms.has(uint64(term)) {
			return refuse(iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted), nil
		}
		if cards.has(uint64(card)) {
			return refuse(iso8583.RCRestrictedCard, ErrCardHotlisted), nil
		}
		return approved, nil
	case ModeCards:
		if cards == nil {
			return Decision{}, ErrNotLoaded
		}
		if cards.has(uint64(card)) {
			return refuse(iso8583.RCRestrictedCard, ErrCardHotlisted), nil
		}
		l.termDBReads.Add(1)
		ok, err := l.cfg.DB.TerminalPermitted(ctx, term)
		if err != nil {
			return Decision{}, fmt.Errorf("%w: terminal %s: %w", ErrDB, term, err)
		}
		if !ok {
			return refuse(iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted), nil
		}
		return approved, nil
	default: // ModeTerminals
		if cards == nil || terms == nil {
			return Decision{}, ErrNotLoaded
		}
		if !terms.has(uint64(term)) {
			return refuse(iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted), nil
		}
		// Hotlisted since Start (change feed) or found by an earlier
		// late check: refused now, without the database.
		if _, ok := l.learned.Load(uint64(card)); ok || cards.has(uint64(card)) {
			return refuse(iso8583.RCRestrictedCard, ErrCardHotlisted), nil
		}
		late, err := l.startLate(ctx, card, term, cards.version)
		if err != nil {
			return Decision{}, err
		}
		return Decision{Code: iso8583.RCApproved, Late: late}, nil
	}
}

// startLate runs the card's database check beside the response. It outlives
// the request's context (the response is already going out) but is bounded
// by LateTimeout and waited for by Close.
func (l *Lists) startLate(ctx context.Context, card CardKey, term TerminalKey, seen int64) (*Late, error) {
	l.lateMu.Lock()
	if l.closed {
		l.lateMu.Unlock()
		return nil, ErrClosed
	}
	l.wg.Add(1)
	l.lateMu.Unlock()
	l.lateChecks.Add(1)
	x := &Late{done: make(chan struct{}), res: LateResult{Card: card, Terminal: term}}
	go func() {
		defer l.wg.Done()
		defer close(x.done)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.LateTimeout)
		defer cancel()
		l.cardDBReads.Add(1)
		hot, err := l.cfg.DB.CardHotlisted(cctx, card)
		switch {
		case err != nil:
			x.res.Err = fmt.Errorf("%w: card %s: %w", ErrDB, card, err)
		case hot:
			x.res.Hotlisted = true
			l.lateRefusals.Add(1)
			l.learn(card, seen)
		default:
			return
		}
		if l.cfg.OnLate != nil {
			l.cfg.OnLate(x.res)
		}
	}()
	return x, nil
}

// learn records a card the database reported hotlisted (ModeTerminals), so
// that its next request is refused from memory — unless a change newer than
// the read's start has decided it already. Learned cards live in a
// concurrent map beside the list: one store per card, no copy of the list.
func (l *Lists) learn(card CardKey, seen int64) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	cur := l.ptr[Cards].Load()
	if e, ok := cur.delta[uint64(card)]; ok && e.version > seen {
		return
	}
	if cur.compactedAt > seen {
		return // a removal may have been merged away; ask again next time
	}
	l.learned.Store(uint64(card), seen)
}

// forget drops learned cards that a change newer than their learning took
// off the hotlist. Called with wmu held.
func (l *Lists) forget(changes []Change) {
	for _, c := range changes {
		if c.Listed {
			continue
		}
		if v, ok := l.learned.Load(c.ID); ok && v.(int64) < c.Version {
			l.learned.Delete(c.ID)
		}
	}
}

// Stats is a snapshot of the lists' state and counters.
type Stats struct {
	Mode Mode
	// IDs listed in memory (-1: not cached). In ModeTerminals Cards counts
	// the cards known hotlisted: from the change feed since Start and
	// learned by late checks.
	Cards, Terminals             int
	CardVersion, TerminalVersion int64 // versions the lists reflect
	Bytes                        int64 // memory of the indexed snapshots
	CardDBReads, TerminalDBReads int64
	Refreshes, RefreshErrors     int64
	LateChecks, LateRefusals     int64
	LastRefresh                  time.Time // last successful load or refresh
}

// Stats returns the current state and counters.
func (l *Lists) Stats() Stats {
	s := Stats{
		Mode: l.cfg.Mode, Cards: -1, Terminals: -1,
		CardDBReads: l.cardDBReads.Load(), TerminalDBReads: l.termDBReads.Load(),
		Refreshes: l.refreshes.Load(), RefreshErrors: l.refreshErrors.Load(),
		LateChecks: l.lateChecks.Load(), LateRefusals: l.lateRefusals.Load(),
	}
	if us := l.lastRefresh.Load(); us != 0 {
		s.LastRefresh = time.UnixMicro(us)
	}
	if c := l.ptr[Cards].Load(); c != nil {
		s.Cards, s.CardVersion, s.Bytes = c.count(), c.version, c.base.bytes()
		if c.partial {
			l.learned.Range(func(k, _ any) bool {
				if !c.has(k.(uint64)) {
					s.Cards++
				}
				return true
			})
		}
	}
	if t := l.ptr[Terminals].Load(); t != nil {
		s.Terminals, s.TerminalVersion = t.count(), t.version
		s.Bytes += t.base.bytes()
	}
	return s
}
