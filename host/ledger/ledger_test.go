package ledger

import (
	"context"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

func migrationFiles(t testing.TB) []string {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	require.NoError(t, err)
	return names
}

// openStore returns a ledger in a fresh, empty database on the engine
// ("sqlite" or "postgres", see internal/dbtest).
func openStore(t testing.TB, engine string) *SQLStore {
	s, err := New(context.Background(), dbtest.Open(t, engine))
	require.NoError(t, err)
	return s
}

// forEach runs fn as a subtest on every engine, each with a fresh ledger.
func forEach(t *testing.T, fn func(t *testing.T, s *SQLStore)) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		s, err := New(context.Background(), db)
		require.NoError(t, err)
		fn(t, s)
	})
}

const eur, usd = "978", "840"

type fixture struct {
	float, bank, purse, purse2, merchant, usdBank, usdFloat string
}

func setup(t testing.TB, s Store) fixture {
	ctx := context.Background()
	mk := func(k AccountKind, ref, cur string) string {
		a, err := s.EnsureAccount(ctx, k, ref, cur)
		require.NoError(t, err)
		require.Equal(t, AccountID(k, ref, cur), a.ID)
		return a.ID
	}
	return fixture{
		float:    mk(KindIssuerFloat, "issuer", eur),
		bank:     mk(KindFunding, "bank", eur),
		purse:    mk(KindPurse, "0102030405060708", eur),
		purse2:   mk(KindPurse, "1112131415161718", eur),
		merchant: mk(KindMerchant, "T0000001", eur),
		usdBank:  mk(KindFunding, "bank", usd),
		usdFloat: mk(KindIssuerFloat, "issuer", usd),
	}
}

func transfer(key, from, to string, amount int64) Posting {
	return Posting{Key: key, Memo: "transfer", Legs: []Leg{
		{Account: from, Amount: -amount, Currency: eur},
		{Account: to, Amount: amount, Currency: eur},
	}}
}

func balance(t testing.TB, s Store, id string) int64 {
	b, err := s.Balance(context.Background(), id)
	require.NoError(t, err)
	return b
}

func TestSQLiteDurabilitySettings(t *testing.T) {
	s := openStore(t, "sqlite")
	var mode string
	var sync, fk int
	require.NoError(t, s.db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode))
	require.NoError(t, s.db.SQL().QueryRow("PRAGMA synchronous").Scan(&sync))
	require.NoError(t, s.db.SQL().QueryRow("PRAGMA foreign_keys").Scan(&fk))
	assert.Equal(t, "wal", mode)
	assert.Equal(t, 2, sync, "synchronous=FULL")
	assert.Equal(t, 1, fk)
	assert.Equal(t, "sqlite", s.Dialect())
}

func TestOpenRejectsMemory(t *testing.T) {
	_, err := Open(context.Background(), "sqlite::memory:")
	require.ErrorIs(t, err, ErrInvalid)
}

func TestMigrateTwice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.db")
	for i := 0; i < 2; i++ {
		s, err := Open(context.Background(), path)
		require.NoError(t, err)
		var n int
		require.NoError(t, s.db.SQL().QueryRow("SELECT COUNT(*) FROM schema_migrations WHERE component = 'ledger'").Scan(&n))
		assert.Equal(t, len(migrationFiles(t)), n)
		require.NoError(t, s.Close())
	}
}

func TestEnsureAccount(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		a, err := s.EnsureAccount(ctx, KindPurse, "0102030405060708", eur)
		require.NoError(t, err)
		b, err := s.EnsureAccount(ctx, KindPurse, "0102030405060708", eur)
		require.NoError(t, err)
		assert.Equal(t, a, b)
		assert.Equal(t, KindPurse, a.Kind)
		assert.Zero(t, a.Balance)

		for _, tc := range []struct {
			kind     AccountKind
			ref, cur string
		}{
			{"bogus", "x", eur}, {KindPurse, "", eur}, {KindPurse, "x", "EUR"}, {KindPurse, "x", "97"},
		} {
			_, err := s.EnsureAccount(ctx, tc.kind, tc.ref, tc.cur)
			assert.ErrorIs(t, err, ErrInvalid, "%+v", tc)
		}
		_, err = s.Account(ctx, "purse:nope:978")
		assert.ErrorIs(t, err, ErrNotFound)
	})
}

func TestPostRefused(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		_, err := s.Post(ctx, transfer("seed", f.bank, f.purse, 1000))
		require.NoError(t, err)
		near := int64(math.MaxInt64 - 10)

		cases := []struct {
			name string
			p    Posting
			want error
		}{
			{"unbalanced", Posting{Key: "k", Legs: []Leg{{f.bank, -100, eur}, {f.purse, 99, eur}}}, ErrUnbalanced},
			{"unbalanced per currency", Posting{Key: "k", Legs: []Leg{{f.bank, -100, eur}, {f.usdBank, 100, usd}}}, ErrUnbalanced},
			{"one leg", Posting{Key: "k", Legs: []Leg{{f.bank, 0, eur}}}, ErrInvalid},
			{"no legs", Posting{Key: "k"}, ErrInvalid},
			{"zero amount", Posting{Key: "k", Legs: []Leg{{f.bank, 0, eur}, {f.purse, 0, eur}}}, ErrInvalid},
			{"min int64", Posting{Key: "k", Legs: []Leg{{f.bank, math.MinInt64, eur}, {f.purse, math.MinInt64, eur}}}, ErrInvalid},
			{"bad currency", Posting{Key: "k", Legs: []Leg{{f.bank, -1, "EUR"}, {f.purse, 1, "EUR"}}}, ErrInvalid},
			{"empty account", Posting{Key: "k", Legs: []Leg{{"", -1, eur}, {f.purse, 1, eur}}}, ErrInvalid},
			{"empty key", Posting{Legs: []Leg{{f.bank, -1, eur}, {f.purse, 1, eur}}}, ErrInvalid},
			{"reserved key", Posting{Key: "txn/x", Legs: []Leg{{f.bank, -1, eur}, {f.purse, 1, eur}}}, ErrInvalid},
			{"unknown account", Posting{Key: "k", Legs: []Leg{{f.bank, -1, eur}, {"purse:ffff:978", 1, eur}}}, ErrNotFound},
			{"currency mismatch", Posting{Key: "k", Legs: []Leg{{f.bank, -1, usd}, {f.usdFloat, 1, usd}}}, ErrCurrency},
			{"sum overflow", Posting{Key: "k", Legs: []Leg{{f.bank, near, eur}, {f.purse, near, eur}, {f.float, -1, eur}}}, ErrOverflow},
			{"balance overflow", Posting{Key: "k", Legs: []Leg{{f.purse, near, eur}, {f.bank, -near, eur}}}, ErrOverflow},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				_, err := s.Post(ctx, tc.p)
				require.ErrorIs(t, err, tc.want)
				if tc.p.Key != "" {
					_, err = s.PostingByKey(ctx, tc.p.Key)
					assert.ErrorIs(t, err, ErrNotFound, "nothing written")
				}
				assert.Equal(t, int64(-1000), balance(t, s, f.bank))
				assert.Equal(t, int64(1000), balance(t, s, f.purse))
				assert.Zero(t, balance(t, s, f.float))
			})
		}
	})
}

func TestPostIdempotent(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		p := transfer("T0000001/000042", f.bank, f.purse, 5000)
		first, err := s.Post(ctx, p)
		require.NoError(t, err)
		assert.False(t, first.Replayed)
		assert.NotEmpty(t, first.ID)

		for i := 0; i < 3; i++ {
			again, err := s.Post(ctx, p)
			require.NoError(t, err)
			assert.True(t, again.Replayed)
			assert.Equal(t, first.ID, again.ID)
			assert.Equal(t, first.Legs, again.Legs)
			assert.Equal(t, first.CreatedAt, again.CreatedAt)
		}
		assert.Equal(t, int64(5000), balance(t, s, f.purse))
		assert.Equal(t, int64(-5000), balance(t, s, f.bank))

		got, err := s.PostingByKey(ctx, p.Key)
		require.NoError(t, err)
		assert.Equal(t, first.ID, got.ID)
		assert.Equal(t, p.Legs, got.Legs)
	})
}

func TestPostConflict(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		p := transfer("T0000001/000043", f.bank, f.purse, 5000)
		_, err := s.Post(ctx, p)
		require.NoError(t, err)

		other := []Posting{
			transfer(p.Key, f.bank, f.purse, 5001),
			transfer(p.Key, f.bank, f.purse2, 5000),
			{Key: p.Key, Memo: "other memo", Legs: p.Legs},
			{Key: p.Key, Memo: p.Memo, Legs: []Leg{p.Legs[1], p.Legs[0]}},
		}
		for i, o := range other {
			_, err := s.Post(ctx, o)
			assert.ErrorIs(t, err, ErrConflict, "case %d", i)
		}
		assert.Equal(t, int64(5000), balance(t, s, f.purse))
		assert.Zero(t, balance(t, s, f.purse2))
	})
}

func TestConcurrentPosters(t *testing.T) {
	goroutines, per := 50, 100
	if testing.Short() {
		goroutines, per = 10, 20
	}
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		purses := []string{f.purse, f.purse2}
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < per; i++ {
					// Every posting is sent twice, and the duplicate races
					// with the next goroutine's work.
					p := transfer(fmt.Sprintf("g%02d/%04d", g, i), f.bank, purses[(g+i)%2], int64(g+1))
					r1, err := s.Post(ctx, p)
					if err != nil {
						errs <- err
						return
					}
					r2, err := s.Post(ctx, p)
					if err != nil {
						errs <- err
						return
					}
					if r1.Replayed || !r2.Replayed || r1.ID != r2.ID {
						errs <- fmt.Errorf("posting %s: replay flags %v/%v ids %s/%s", p.Key, r1.Replayed, r2.Replayed, r1.ID, r2.ID)
						return
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		var want int64
		for g := 0; g < goroutines; g++ {
			want += int64(g+1) * int64(per)
		}
		assert.Equal(t, -want, balance(t, s, f.bank))
		assert.Equal(t, want, balance(t, s, f.purse)+balance(t, s, f.purse2))
		var n int
		require.NoError(t, s.db.SQL().QueryRow("SELECT COUNT(*) FROM ledger_postings").Scan(&n))
		assert.Equal(t, goroutines*per, n)
		require.NoError(t, s.db.SQL().QueryRow("SELECT COUNT(*) FROM ledger_legs").Scan(&n))
		assert.Equal(t, 2*goroutines*per, n)
		rep, err := s.Report(ctx)
		require.NoError(t, err)
		assert.Zero(t, rep.Imbalance[eur])
	})
}

// The same key posted by many goroutines at once is written exactly once.
func TestConcurrentSameKey(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		p := transfer("same", f.bank, f.purse, 700)
		var wg sync.WaitGroup
		ids := make([]string, 20)
		errs := make([]error, 20)
		for i := range ids {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				r, err := s.Post(ctx, p)
				ids[i], errs[i] = r.ID, err
			}(i)
		}
		wg.Wait()
		for i := range ids {
			require.NoError(t, errs[i])
			assert.Equal(t, ids[0], ids[i])
		}
		assert.Equal(t, int64(700), balance(t, s, f.purse))
	})
}
