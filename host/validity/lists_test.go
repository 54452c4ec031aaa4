package validity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/iso8583"
)

var (
	cardOK  = mustCard("1122334455667788")
	cardHot = mustCard("9900000000000001")
	termOK  = mustTerm("TERM0001")
	termBad = mustTerm("TERM0666") // never enrolled
	termBlk = mustTerm("TERM0002") // enrolled, then blocked
)

func mustCard(s string) CardKey {
	k, err := ParseCardKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

func mustTerm(s string) TerminalKey {
	k, err := ParseTerminalKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

// countingDB counts the database checks and can fail them.
type countingDB struct {
	inner        DBChecker
	cards, terms atomic.Int64
	fail         error
}

func (c *countingDB) CardHotlisted(ctx context.Context, card CardKey) (bool, error) {
	c.cards.Add(1)
	if c.fail != nil {
		return false, c.fail
	}
	return c.inner.CardHotlisted(ctx, card)
}

func (c *countingDB) TerminalPermitted(ctx context.Context, t TerminalKey) (bool, error) {
	c.terms.Add(1)
	if c.fail != nil {
		return false, c.fail
	}
	return c.inner.TerminalPermitted(ctx, t)
}

func newSource() *MemSource {
	src := &MemSource{}
	src.Set(Cards, uint64(cardHot), true)
	src.Set(Terminals, uint64(termOK), true)
	src.Set(Terminals, uint64(termBlk), true)
	src.Set(Terminals, uint64(termBlk), false)
	return src
}

type fixture struct {
	src  *MemSource
	db   *countingDB
	l    *Lists
	late chan LateResult
}

func start(t *testing.T, mode Mode, src *MemSource) *fixture {
	t.Helper()
	if src == nil {
		src = newSource()
	}
	f := &fixture{src: src, db: &countingDB{inner: MemChecker{Source: src}}, late: make(chan LateResult, 16)}
	l, err := New(Config{
		Mode: mode, Source: src, DB: f.db, Interval: -1,
		OnLate: func(r LateResult) { f.late <- r },
	})
	require.NoError(t, err)
	require.NoError(t, l.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	f.l = l
	return f
}

func (f *fixture) dbReads() int64 { return f.db.cards.Load() + f.db.terms.Load() }

func TestModes(t *testing.T) {
	type step struct {
		name     string
		card     CardKey
		term     TerminalKey
		code     string
		err      error
		dbReads  int64 // database reads this check makes, including a late one
		lateHot  bool  // ModeTerminals: the late check finds the card hotlisted
		withLate bool
	}
	tests := []struct {
		mode  Mode
		steps []step
	}{
		{ModeBoth, []step{
			{"approved", cardOK, termOK, iso8583.RCApproved, nil, 0, false, false},
			{"hotlisted card", cardHot, termOK, iso8583.RCRestrictedCard, ErrCardHotlisted, 0, false, false},
			{"unknown terminal", cardOK, termBad, iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted, 0, false, false},
			{"blocked terminal", cardOK, termBlk, iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted, 0, false, false},
		}},
		{ModeCards, []step{
			{"approved", cardOK, termOK, iso8583.RCApproved, nil, 1, false, false},
			{"hotlisted card", cardHot, termOK, iso8583.RCRestrictedCard, ErrCardHotlisted, 0, false, false},
			{"hotlisted card, unknown terminal", cardHot, termBad, iso8583.RCRestrictedCard, ErrCardHotlisted, 0, false, false},
			{"unknown terminal", cardOK, termBad, iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted, 1, false, false},
			{"blocked terminal", cardOK, termBlk, iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted, 1, false, false},
		}},
		{ModeTerminals, []step{
			{"approved", cardOK, termOK, iso8583.RCApproved, nil, 1, false, true},
			{"unknown terminal", cardOK, termBad, iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted, 0, false, false},
			{"unknown terminal, hotlisted card", cardHot, termBad, iso8583.RCNotPermittedTerm, ErrTerminalNotPermitted, 0, false, false},
			// Approved while the acknowledgment goes out; the late check
			// finds the card, reports it and learns it …
			{"hotlisted card, first time", cardHot, termOK, iso8583.RCApproved, nil, 1, true, true},
			// … so its next request is refused from memory.
			{"hotlisted card, learned", cardHot, termOK, iso8583.RCRestrictedCard, ErrCardHotlisted, 0, false, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			f := start(t, tt.mode, nil)
			for _, s := range tt.steps {
				before := f.dbReads()
				d, err := f.l.Check(context.Background(), s.card, s.term)
				require.NoError(t, err, s.name)
				require.Equal(t, s.code, d.Code, s.name)
				require.Equal(t, s.code == iso8583.RCApproved, d.Approved(), s.name)
				if s.err != nil {
					require.ErrorIs(t, d.Err, s.err, s.name)
				} else {
					require.NoError(t, d.Err, s.name)
				}
				require.Equal(t, s.withLate, d.Late != nil, s.name)
				if d.Late != nil {
					r, err := d.Late.Wait(context.Background())
					require.NoError(t, err)
					require.Equal(t, s.lateHot, r.Hotlisted, s.name)
					require.NoError(t, r.Err)
					require.Equal(t, s.card, r.Card)
					require.Equal(t, s.term, r.Terminal)
					if s.lateHot {
						require.Equal(t, r, <-f.late, "OnLate ran before Wait returned")
					}
				}
				require.Equal(t, s.dbReads, f.dbReads()-before, s.name)
			}
			require.Empty(t, f.late)
			st := f.l.Stats()
			require.Equal(t, tt.mode, st.Mode)
			require.Equal(t, f.db.cards.Load(), st.CardDBReads)
			require.Equal(t, f.db.terms.Load(), st.TerminalDBReads)
		})
	}
}

func TestBadIDsRefusedWithoutDBRead(t *testing.T) {
	for _, mode := range []Mode{ModeBoth, ModeCards, ModeTerminals} {
		t.Run(mode.String(), func(t *testing.T) {
			f := start(t, mode, nil)
			tests := []struct {
				card, term, code string
				err              error
			}{
				{"112233445566778", "TERM0001", iso8583.RCInvalidCard, ErrBadCardID},
				{"11223344556677ZZ", "TERM0001", iso8583.RCInvalidCard, ErrBadCardID},
				{"1122334455667788", "TERM001", iso8583.RCFormatError, ErrBadTerminalID},
				{"1122334455667788", "TERM\n001", iso8583.RCFormatError, ErrBadTerminalID},
				{"", "", iso8583.RCFormatError, ErrBadTerminalID},
			}
			for _, tc := range tests {
				d, err := f.l.CheckIDs(context.Background(), tc.card, tc.term)
				require.NoError(t, err)
				require.Equal(t, tc.code, d.Code, "%q %q", tc.card, tc.term)
				require.ErrorIs(t, d.Err, tc.err)
				require.Nil(t, d.Late)
			}
			require.Zero(t, f.dbReads())
			d, err := f.l.CheckIDs(context.Background(), cardHot.String(), termOK.String())
			require.NoError(t, err)
			if mode != ModeTerminals {
				require.Equal(t, iso8583.RCRestrictedCard, d.Code)
			}
		})
	}
}

func TestConfigAndLifecycle(t *testing.T) {
	src := newSource()
	for _, cfg := range []Config{
		{Source: src},
		{Mode: 9, Source: src},
		{Mode: ModeBoth},
		{Mode: ModeCards, Source: src},
		{Mode: ModeTerminals, Source: src},
	} {
		_, err := New(cfg)
		require.Error(t, err, "%+v", cfg)
	}
	l, err := New(Config{Mode: ModeBoth, Source: src})
	require.NoError(t, err)
	_, err = l.Check(context.Background(), cardOK, termOK)
	require.ErrorIs(t, err, ErrNotLoaded)
	require.NoError(t, l.Close())

	for _, s := range []string{"both", "cards", "terminals"} {
		m, err := ParseMode(s)
		require.NoError(t, err)
		require.Equal(t, s, m.String())
	}
	_, err = ParseMode("all")
	require.Error(t, err)

	f := start(t, ModeTerminals, nil)
	require.NoError(t, f.l.Close())
	_, err = f.l.Check(context.Background(), cardOK, termOK)
	require.ErrorIs(t, err, ErrClosed)
}

func TestDBFailure(t *testing.T) {
	boom := errors.New("connection refused")
	t.Run("cards", func(t *testing.T) {
		f := start(t, ModeCards, nil)
		f.db.fail = boom
		_, err := f.l.Check(context.Background(), cardOK, termOK)
		require.ErrorIs(t, err, ErrDB)
		require.ErrorIs(t, err, boom)
		// The cached refusal still needs no database.
		d, err := f.l.Check(context.Background(), cardHot, termOK)
		require.NoError(t, err)
		require.Equal(t, iso8583.RCRestrictedCard, d.Code)
	})
	t.Run("terminals", func(t *testing.T) {
		f := start(t, ModeTerminals, nil)
		f.db.fail = boom
		d, err := f.l.Check(context.Background(), cardOK, termOK)
		require.NoError(t, err)
		require.True(t, d.Approved())
		r, err := d.Late.Wait(context.Background())
		require.NoError(t, err)
		require.ErrorIs(t, r.Err, ErrDB)
		require.ErrorIs(t, r.Err, boom)
		require.False(t, r.Hotlisted)
		require.Equal(t, r, <-f.late)
	})
}

func TestRefreshAppliesChanges(t *testing.T) {
	for _, mode := range []Mode{ModeBoth, ModeCards, ModeTerminals} {
		t.Run(mode.String(), func(t *testing.T) {
			f := start(t, mode, nil)
			ctx := context.Background()
			check := func(c CardKey, term TerminalKey) string {
				t.Helper()
				d, err := f.l.Check(ctx, c, term)
				require.NoError(t, err)
				if d.Late != nil {
					r, err := d.Late.Wait(ctx)
					require.NoError(t, err)
					if r.Hotlisted {
						<-f.late
						return iso8583.RCRestrictedCard + " late"
					}
				}
				return d.Code
			}
			// Hotlist cardOK, enrol termBad.
			f.src.Set(Cards, uint64(cardOK), true)
			f.src.Set(Terminals, uint64(termBad), true)
			require.NoError(t, f.l.Refresh(ctx))
			require.Equal(t, iso8583.RCRestrictedCard, check(cardOK, termBad))
			// Un-hotlist both cards.
			f.src.Set(Cards, uint64(cardOK), false)
			f.src.Set(Cards, uint64(cardHot), false)
			require.NoError(t, f.l.Refresh(ctx))
			require.Equal(t, iso8583.RCApproved, check(cardOK, termBad))
			require.Equal(t, iso8583.RCApproved, check(cardHot, termOK))
			// Block termOK.
			f.src.Set(Terminals, uint64(termOK), false)
			require.NoError(t, f.l.Refresh(ctx))
			require.Equal(t, iso8583.RCNotPermittedTerm, check(cardHot, termOK))
			st := f.l.Stats()
			require.Equal(t, int64(4), st.Refreshes, "one at Start, three here")
			require.Zero(t, st.RefreshErrors)
			if mode.cachesCards() {
				require.Equal(t, 0, st.Cards)
			}
			if mode.cachesTerminals() {
				require.Equal(t, 1, st.Terminals)
			}
		})
	}
}

// In ModeTerminals a card learned from the database is forgotten when the
// change feed un-hotlists it.
func TestLearnedCardUnhotlisted(t *testing.T) {
	f := start(t, ModeTerminals, nil)
	ctx := context.Background()
	d, err := f.l.Check(ctx, cardHot, termOK)
	require.NoError(t, err)
	r, err := d.Late.Wait(ctx)
	require.NoError(t, err)
	require.True(t, r.Hotlisted)
	<-f.late
	d, err = f.l.Check(ctx, cardHot, termOK)
	require.NoError(t, err)
	require.Equal(t, iso8583.RCRestrictedCard, d.Code)

	f.src.Set(Cards, uint64(cardHot), false)
	require.NoError(t, f.l.Refresh(ctx))
	d, err = f.l.Check(ctx, cardHot, termOK)
	require.NoError(t, err)
	require.True(t, d.Approved())
	r, err = d.Late.Wait(ctx)
	require.NoError(t, err)
	require.False(t, r.Hotlisted)
	require.Equal(t, int64(1), f.l.Stats().LateRefusals)
}

func TestCompactionAndResync(t *testing.T) {
	src := &MemSource{}
	want := map[uint64]bool{}
	for i := range 1000 {
		src.Set(Cards, uint64(i), true)
		want[uint64(i)] = true
	}
	src.Set(Terminals, uint64(termOK), true)
	rs := &resyncSource{MemSource: src}
	l, err := New(Config{Mode: ModeBoth, Source: rs, Interval: -1, CompactAt: 10})
	require.NoError(t, err)
	require.NoError(t, l.Start(context.Background()))
	defer l.Close()
	verify := func() {
		t.Helper()
		for i := range 1100 {
			d, err := l.Check(context.Background(), CardKey(i), termOK)
			require.NoError(t, err)
			require.Equal(t, want[uint64(i)], d.Code == iso8583.RCRestrictedCard, "card %d", i)
		}
		require.Equal(t, len(want), l.Stats().Cards)
	}
	for round := range 5 {
		for i := round; i < 1100; i += 7 {
			listed := !want[uint64(i)]
			src.Set(Cards, uint64(i), listed)
			if listed {
				want[uint64(i)] = true
			} else {
				delete(want, uint64(i))
			}
		}
		require.NoError(t, l.Refresh(context.Background()))
		require.Nil(t, l.ptr[Cards].Load().delta, "compacted")
		verify()
	}
	rs.resync.Store(true)
	src.Set(Cards, 5000, true)
	want[5000] = true
	require.NoError(t, l.Refresh(context.Background()))
	verify()
	require.True(t, l.ptr[Cards].Load().base.has(5000))
}

type resyncSource struct {
	*MemSource
	resync atomic.Bool
}

func (r *resyncSource) Changes(ctx context.Context, k Kind, since int64) ([]Change, int64, error) {
	if r.resync.CompareAndSwap(true, false) {
		return nil, 0, fmt.Errorf("history pruned: %w", ErrResync)
	}
	return r.MemSource.Changes(ctx, k, since)
}

// blockingSource blocks Changes until released, to show that a stuck
// refresh does not stall lookups.
type blockingSource struct {
	*MemSource
	armed   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSource) Changes(ctx context.Context, k Kind, since int64) ([]Change, int64, error) {
	if !b.armed.Load() {
		return b.MemSource.Changes(ctx, k, since)
	}
	select {
	case b.entered <- struct{}{}:
	default:
	}
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	return b.MemSource.Changes(ctx, k, since)
}

func TestRefreshDoesNotBlockLookups(t *testing.T) {
	for _, mode := range []Mode{ModeBoth, ModeCards, ModeTerminals} {
		t.Run(mode.String(), func(t *testing.T) {
			src := newSource()
			bs := &blockingSource{MemSource: src, entered: make(chan struct{}, 1), release: make(chan struct{})}
			l, err := New(Config{Mode: mode, Source: bs, DB: MemChecker{Source: src}, Interval: -1})
			require.NoError(t, err)
			require.NoError(t, l.Start(context.Background()))
			defer l.Close()

			bs.armed.Store(true)
			src.Set(Cards, uint64(cardOK), true)
			l.Notify()
			l.Notify()   // never blocks, even with one pending
			<-bs.entered // the refresher is stuck inside the Source

			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 10000 {
					d, err := l.Check(context.Background(), cardHot, termBad)
					if err != nil || d.Code != iso8583.RCNotPermittedTerm && d.Code != iso8583.RCRestrictedCard {
						panic(fmt.Sprint(d, err))
					}
				}
				_ = l.Stats()
			}()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("lookups stalled behind a blocked refresh")
			}
			close(bs.release)
			require.Eventually(t, func() bool {
				d, err := l.Check(context.Background(), cardOK, termOK)
				require.NoError(t, err)
				if d.Late != nil {
					r, _ := d.Late.Wait(context.Background())
					return r.Hotlisted
				}
				return d.Code == iso8583.RCRestrictedCard
			}, 10*time.Second, time.Millisecond)
		})
	}
}

// Hotlisting and un-hotlisting while 8 goroutines look up continuously (run
// with -race): readers only ever see a whole version, and once Refresh
// returns every new lookup sees the change.
func TestHotlistUnderTraffic(t *testing.T) {
	for _, mode := range []Mode{ModeBoth, ModeCards, ModeTerminals} {
		t.Run(mode.String(), func(t *testing.T) {
			src := newSource()
			for i := range 5000 {
				src.Set(Cards, uint64(0x5000000000000000+i), true)
			}
			l, err := New(Config{Mode: mode, Source: src, DB: MemChecker{Source: src}, Interval: time.Millisecond, CompactAt: 64})
			require.NoError(t, err)
			require.NoError(t, l.Start(context.Background()))
			defer l.Close()

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var lookups atomic.Int64
			errc := make(chan error, 8)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						card := CardKey(0x5000000000000000 + (i*8+g)%6000)
						d, err := l.Check(context.Background(), card, termOK)
						if err != nil {
							errc <- err
							return
						}
						if d.Code != iso8583.RCApproved && d.Code != iso8583.RCRestrictedCard {
							errc <- fmt.Errorf("card %s: code %s", card, d.Code)
							return
						}
						if d.Late != nil {
							<-d.Late.Done()
						}
						lookups.Add(1)
					}
				}()
			}
			hot := CardKey(0x9000000000000000)
			for i := range 60 {
				listed := i%2 == 0
				src.Set(Cards, uint64(hot), listed)
				src.Set(Cards, uint64(0x5000000000000000+i), !listed)
				if i%3 == 0 {
					l.Notify() // and let the periodic refresh race with ours
				}
				require.NoError(t, l.Refresh(ctx))
				d, err := l.Check(ctx, hot, termOK)
				require.NoError(t, err)
				got := d.Code == iso8583.RCRestrictedCard
				if d.Late != nil {
					r, err := d.Late.Wait(ctx)
					require.NoError(t, err)
					got = r.Hotlisted
				}
				require.Equal(t, listed, got, "round %d", i)
			}
			require.Eventually(t, func() bool { return lookups.Load() > 1000 }, 20*time.Second, time.Millisecond)
			cancel()
			wg.Wait()
			select {
			case err := <-errc:
				t.Fatal(err)
			default:
			}
		})
	}
}

// A late check's answer must not resurrect a card that a newer change took
// off the hotlist, whichever of the two is applied first.
func TestLearnOrdering(t *testing.T) {
	f := start(t, ModeTerminals, nil)
	ctx := context.Background()
	seen := f.l.ptr[Cards].Load().version

	// The removal is applied before the late answer arrives.
	f.src.Set(Cards, uint64(cardHot), false)
	require.NoError(t, f.l.Refresh(ctx))
	f.l.learn(cardHot, seen)
	_, ok := f.l.learned.Load(uint64(cardHot))
	require.False(t, ok, "stale answer ignored")

	// The late answer is learned first, the removal comes after.
	seen = f.l.ptr[Cards].Load().version
	f.l.learn(cardOK, seen)
	require.Equal(t, 1, f.l.Stats().Cards)
	d, err := f.l.Check(ctx, cardOK, termOK)
	require.NoError(t, err)
	require.Equal(t, iso8583.RCRestrictedCard, d.Code)
	f.src.Set(Cards, uint64(cardOK), true) // replayed state, then taken off
	f.src.Set(Cards, uint64(cardOK), false)
	require.NoError(t, f.l.Refresh(ctx))
	_, ok = f.l.learned.Load(uint64(cardOK))
	require.False(t, ok, "forgotten")
	require.Equal(t, 0, f.l.Stats().Cards)
	require.Zero(t, f.dbReads())
}

// After the card feed of ModeTerminals was compacted, an answer read before
// the compaction is not learned (its order against a merged removal is lost).
func TestLearnAfterCompaction(t *testing.T) {
	src := newSource()
	l, err := New(Config{Mode: ModeTerminals, Source: src, DB: MemChecker{Source: src}, Interval: -1, CompactAt: 1})
	require.NoError(t, err)
	require.NoError(t, l.Start(context.Background()))
	defer l.Close()
	seen := l.ptr[Cards].Load().version
	src.Set(Cards, uint64(cardOK), true)
	require.NoError(t, l.Refresh(context.Background()))
	require.Nil(t, l.ptr[Cards].Load().delta, "compacted")
	require.True(t, l.ptr[Cards].Load().has(uint64(cardOK)))
	l.learn(cardHot, seen)
	_, ok := l.learned.Load(uint64(cardHot))
	require.False(t, ok)
	l.learn(cardHot, l.ptr[Cards].Load().version)
	_, ok = l.learned.Load(uint64(cardHot))
	require.True(t, ok)
}

// TestCheckTerminal: a terminal alone (sign-on, echo, 0500) is answered from
// memory where the whitelist is held, without a database read, and left to
// the caller's database where it is not (ModeCards).
func TestCheckTerminal(t *testing.T) {
	for _, c := range []struct {
		mode              Mode
		ok, okBlk, okNone bool
	}{
		{ModeBoth, true, true, true},
		{ModeTerminals, true, true, true},
		{ModeCards, false, false, false},
	} {
		t.Run(c.mode.String(), func(t *testing.T) {
			f := start(t, c.mode, nil)
			permitted, ok := f.l.CheckTerminal(termOK)
			require.Equal(t, c.ok, ok)
			require.Equal(t, c.ok, permitted)
			permitted, ok = f.l.CheckTerminal(termBlk)
			require.Equal(t, c.okBlk, ok)
			require.False(t, permitted, "taken off the whitelist")
			f.src.Set(Terminals, uint64(termBlk), true)
			require.NoError(t, f.l.Refresh(context.Background()))
			permitted, _ = f.l.CheckTerminal(termBlk)
			require.Equal(t, c.mode != ModeCards, permitted, "back on after a refresh")
			require.Zero(t, f.db.terms.Load(), "no database read")
		})
	}
}
