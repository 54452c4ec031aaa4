package registry_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/validity"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// seedCards registers cards fast, with multi-row statements, exactly as
// RegisterCard would (one card version and one change row each, reason
// "registered", times now): registering 100 000 cards one transaction at a
// time would take most of the test.
func seedCards(t testing.TB, db *sqldb.DB, ids []string, now time.Time) {
	t.Helper()
	ctx := context.Background()
	us := now.UnixMicro()
	const per = 500
	for start := 0; start < len(ids); start += 5000 {
		chunk := ids[start:min(start+5000, len(ids))]
		require.NoError(t, db.Tx(ctx, true, func(tx sqldb.Tx) error {
			var v int64
			if err := tx.QueryRow(ctx, "SELECT version FROM reg_versions WHERE name = 'cards'").Scan(&v); err != nil {
				return err
			}
			for i := 0; i < len(chunk); i += per {
				part := chunk[i:min(i+per, len(chunk))]
				var cards, changes []string
				var cargs, chargs []any
				for j, id := range part {
					cards = append(cards, "(?, '978', 'active', 100000, 1, '', '', ?, ?)")
					cargs = append(cargs, id, us, us)
					changes = append(changes, "(?, ?, 'active', 'registered', ?)")
					chargs = append(chargs, v+int64(i+j+1), id, us)
				}
				if _, err := tx.Exec(ctx, "INSERT INTO reg_cards (card_id, currency, status, max_balance, key_version, holder_ref, reason, issued_at, updated_at) VALUES "+
					strings.Join(cards, ", "), cargs...); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "INSERT INTO reg_card_changes (version, card_id, status, reason, changed_at) VALUES "+
					strings.Join(changes, ", "), chargs...); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, "UPDATE reg_versions SET version = ? WHERE name = 'cards'", v+int64(len(chunk)))
			return err
		}))
	}
}

// cardIDs returns n CardIDs 2200000000000000, 2200000000000001, … (BCD, as
// the issuer assigns them).
func cardIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("22%014d", i)
	}
	return ids
}

// snapshot is everything a status change can touch.
type snapshot struct {
	Version int64
	Changes []registry.Change
	Cards   []registry.Card
	Hot     []string
}

func snap(t *testing.T, s *registry.Store) snapshot {
	t.Helper()
	ctx := context.Background()
	var (
		out snapshot
		err error
	)
	out.Changes, out.Version, err = s.HotlistChanges(ctx, 0)
	require.NoError(t, err)
	out.Cards, err = s.ListCards(ctx)
	require.NoError(t, err)
	out.Hot, _, err = s.Hotlist(ctx)
	require.NoError(t, err)
	return out
}

// The bulk call leaves the registry exactly as SetCardStatus card by card:
// same statuses, same versions, same change feed, the same no-ops — over
// chunk boundaries, with duplicates, lower case and unknown cards.
func TestSetCardStatusesMatchesSingle(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		db2 := dbtest.Open(t, db.Dialect().String())
		bulk, single := newStore(t, db, nil), newStore(t, db2, nil)
		n := 2*registry.BulkChunk + 500
		all := cardIDs(n)
		seedCards(t, db, all, t0)
		seedCards(t, db2, all, t0)
		for _, s := range []*registry.Store{bulk, single} {
			require.NoError(t, s.SetCardStatus(ctx, all[7], registry.Hotlisted, "earlier"))
			require.NoError(t, s.SetCardStatus(ctx, all[8], registry.Blocked, "fraud"))
		}

		// Every other card, then cards 7 and 8, the first card again at the
		// end (second chunk boundary), lower case and unknown cards mixed in.
		var ids []string
		for i := 0; i < n; i += 2 {
			ids = append(ids, all[i])
		}
		ids = append(ids, all[7], strings.ToLower(all[8]), "99000000000000AA", all[0], all[1], "99000000000000AB", all[1])

		steps := []struct {
			name   string
			ids    []string
			st     registry.Status
			reason string
			want   registry.BulkResult
		}{
			{"hotlist", ids, registry.Hotlisted, "scheme list 2026-11", registry.BulkResult{
				Changed: n/2 + 1, Unchanged: 4, Unknown: []string{"99000000000000AA", "99000000000000AB"}}},
			{"again", ids, registry.Hotlisted, "retry", registry.BulkResult{
				Unchanged: len(ids) - 2, Unknown: []string{"99000000000000AA", "99000000000000AB"}}},
			{"remove", all[:10], registry.Active, "found", registry.BulkResult{Changed: 7, Unchanged: 3}},
		}
		for _, step := range steps {
			var progress []int
			got, err := bulk.SetCardStatuses(ctx, step.ids, step.st, step.reason, func(done int) { progress = append(progress, done) })
			require.NoError(t, err, step.name)
			require.Equal(t, step.want, got, step.name)
			var want []int
			for done := registry.BulkChunk; done < len(step.ids); done += registry.BulkChunk {
				want = append(want, done)
			}
			require.Equal(t, append(want, len(step.ids)), progress, step.name)

			var ref registry.BulkResult
			for _, id := range step.ids {
				before, err := single.HotlistVersion(ctx)
				require.NoError(t, err)
				err = single.SetCardStatus(ctx, id, step.st, step.reason)
				if err != nil {
					require.ErrorIs(t, err, registry.ErrNotFound)
					ref.Unknown = append(ref.Unknown, strings.ToUpper(id))
					continue
				}
				after, err := single.HotlistVersion(ctx)
				require.NoError(t, err)
				if after == before {
					ref.Unchanged++
				} else {
					ref.Changed++
				}
			}
			require.Equal(t, ref, got, step.name)
			require.Equal(t, snap(t, single), snap(t, bulk), step.name)
		}
	})
}

// A malformed ID anywhere is refused before anything is written.
func TestSetCardStatusesInvalid(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db, nil)
		all := cardIDs(3 * registry.BulkChunk)
		seedCards(t, db, all, t0)
		before := snap(t, s)
		mid := len(all) / 2
		for _, tc := range []struct {
			name   string
			ids    []string
			st     registry.Status
			reason string
			msg    string
		}{
			{"short ID in the middle", append(append(append([]string{}, all[:mid]...), "22000000000001"), all[mid:]...),
				registry.Hotlisted, "", fmt.Sprintf(`card ID "22000000000001": want 16 hex digits (entry %d of %d)`, mid+1, len(all)+1)},
			{"non-hex ID last", append(append([]string{}, all...), "220000000000000G"),
				registry.Hotlisted, "", fmt.Sprintf("(entry %d of %d)", len(all)+1, len(all)+1)},
			{"status", all, registry.Status("lost"), "", "card status"},
			{"reason", all, registry.Hotlisted, "bad\nreason", "reason"},
		} {
			called := false
			res, err := s.SetCardStatuses(ctx, tc.ids, tc.st, tc.reason, func(int) { called = true })
			require.ErrorIs(t, err, registry.ErrInvalid, tc.name)
			require.ErrorContains(t, err, tc.msg, tc.name)
			require.Zero(t, res, tc.name)
			require.False(t, called, tc.name)
			require.Equal(t, before, snap(t, s), tc.name)
		}
		res, err := s.SetCardStatuses(ctx, nil, registry.Hotlisted, "", nil)
		require.NoError(t, err)
		require.Zero(t, res)

		// A cancelled context stops between chunks; what was committed is
		// counted, and running the call again completes it.
		cctx, cancel := context.WithCancel(ctx)
		res, err = s.SetCardStatuses(cctx, all, registry.Hotlisted, "", func(int) { cancel() })
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, registry.BulkResult{Changed: registry.BulkChunk}, res)
		res, err = s.SetCardStatuses(ctx, all, registry.Hotlisted, "", nil)
		require.NoError(t, err)
		require.Equal(t, registry.BulkResult{Changed: len(all) - registry.BulkChunk, Unchanged: registry.BulkChunk}, res)
		v, err := s.HotlistVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, before.Version+int64(len(all)), v)
	})
}

// bulkCards is the size of TestSetCardStatusesLoad: 100 000 by default,
// VALUECHIP_BULK_CARDS for the 1-million measurement of docs/validity.md §6.
func bulkCards(t *testing.T) int {
	n := 100_000
	if s := os.Getenv("VALUECHIP_BULK_CARDS"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err)
	}
	if testing.Short() {
		n = min(n, 10_000)
	}
	return n
}

type plainSealer struct{}

func (plainSealer) Seal(label string, p []byte) ([]byte, error) {
	return append([]byte(label+"\x00"), p...), nil
}

func (plainSealer) Open(label string, s []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(string(s), label+"\x00")
	if !ok {
		return nil, fmt.Errorf("wrong label")
	}
	return []byte(rest), nil
}

// A large load, timed, and the validity lists (host/validity over the
// registry) see every card: a running list after a refresh (the change
// feed) and a list started afterwards (the snapshot).
func TestSetCardStatusesLoad(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, err := registry.New(ctx, db, plainSealer{})
		require.NoError(t, err)
		_, _, err = s.RegisterTerminal(ctx, "TERM0001", "MERCHANT0000001")
		require.NoError(t, err)
		n := bulkCards(t)
		ids := cardIDs(n)
		t1 := time.Now()
		seedCards(t, db, ids, t0)
		seeded := time.Since(t1)

		src := validity.Registry{Store: s}
		running, err := validity.New(validity.Config{Mode: validity.ModeBoth, Source: src, DB: src, Interval: -1})
		require.NoError(t, err)
		require.NoError(t, running.Start(ctx))
		defer running.Close()

		calls := 0
		t2 := time.Now()
		res, err := s.SetCardStatuses(ctx, ids, registry.Hotlisted, "scheme list", func(int) { calls++ })
		took := time.Since(t2)
		require.NoError(t, err)
		require.Equal(t, registry.BulkResult{Changed: n}, res)
		require.Equal(t, (n+registry.BulkChunk-1)/registry.BulkChunk, calls)
		t.Logf("%s: %d cards seeded in %s; hotlisted in %s (%.0f cards/s)", db.Dialect(), n, seeded.Round(time.Millisecond),
			took.Round(time.Millisecond), float64(n)/took.Seconds())

		t3 := time.Now()
		require.NoError(t, running.Refresh(ctx))
		refreshed := time.Since(t3)
		fresh, err := validity.New(validity.Config{Mode: validity.ModeBoth, Source: src, DB: src, Interval: -1})
		require.NoError(t, err)
		t4 := time.Now()
		require.NoError(t, fresh.Start(ctx))
		started := time.Since(t4)
		defer fresh.Close()
		t.Logf("%s: refresh of the running lists %s, start of new lists %s", db.Dialect(), refreshed.Round(time.Millisecond), started.Round(time.Millisecond))

		v, err := s.HotlistVersion(ctx)
		require.NoError(t, err)
		for _, l := range []*validity.Lists{running, fresh} {
			st := l.Stats()
			require.Equal(t, n, st.Cards)
			require.Equal(t, v, st.CardVersion)
			for _, id := range ids {
				d, err := l.CheckIDs(ctx, id, "TERM0001")
				require.NoError(t, err)
				if d.Code != iso8583.RCRestrictedCard {
					require.Equal(t, iso8583.RCRestrictedCard, d.Code, id)
				}
			}
			require.Zero(t, l.Stats().CardDBReads)
		}
	})
}

// A bulk load running beside single changes and a reader of the change
// feed: the versions stay gapless and the feed, applied as it is read,
// ends exactly at the hotlist.
func TestSetCardStatusesConcurrent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db, nil)
		all := cardIDs(3*registry.BulkChunk + 100)
		seedCards(t, db, all, t0)
		bulkIDs, singles := all[:3*registry.BulkChunk], all[3*registry.BulkChunk:]

		hot := map[string]bool{}
		_, since, err := s.HotlistChanges(ctx, 0)
		require.NoError(t, err)
		done := make(chan struct{})
		errs := make(chan error, 2)
		go func() {
			_, err := s.SetCardStatuses(ctx, bulkIDs, registry.Hotlisted, "bulk", nil)
			errs <- err
		}()
		go func() {
			for i, id := range singles {
				st := registry.Hotlisted
				if i%3 == 0 {
					st = registry.Blocked
				}
				if err := s.SetCardStatus(ctx, id, st, "single"); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
		var failed []error
		go func() {
			failed = append(failed, <-errs, <-errs)
			close(done)
		}()
		apply := func() {
			changes, v, err := s.HotlistChanges(ctx, since)
			require.NoError(t, err)
			for _, c := range changes {
				require.Greater(t, c.Version, since)
				hot[c.ID] = c.Status == registry.Hotlisted
			}
			since = v
		}
		for finished := false; !finished; {
			select {
			case <-done:
				finished = true
			default:
			}
			apply()
		}
		apply()
		require.Equal(t, []error{nil, nil}, failed)

		var want []string
		for id, h := range hot {
			if h {
				want = append(want, id)
			}
		}
		got, v, err := s.Hotlist(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, want, got)
		require.Len(t, got, len(bulkIDs)+len(singles)-(len(singles)+2)/3)
		require.Equal(t, int64(len(all)+len(all)), v, "one version per registration and per change, no gaps")
		changes, _, err := s.HotlistChanges(ctx, int64(len(all)))
		require.NoError(t, err)
		require.Len(t, changes, len(all))
	})
}
