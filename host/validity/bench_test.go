package validity

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
)

// Benchmarks of docs/validity.md §5. The 10-million-card lists and the
// registry database are built once per test binary (a few seconds each) and
// shared by the benchmarks:
//
//	go test -run '^$' -bench . -benchtime 2s -count 5 ./host/validity/
//
// VALUECHIP_BENCH_CARDS (default 10,000,000) sets the hotlist size and
// VALUECHIP_BENCH_DB_CARDS (default 1,000,000) the cards in the database.

const sampleLen = 1 << 16

var bench struct {
	once      sync.Once
	err       error
	cards     int
	hits      []CardKey // listed, and registered in the database
	misses    []CardKey // not listed, not registered
	lists     *Lists    // ModeBoth over the hotlist
	heapBytes uint64    // live heap the loaded lists take (runtime.MemStats)
	loadTime  time.Duration

	dbOnce  sync.Once
	dbErr   error
	dbCards int
	dir     string
	db      *sqldb.DB
	reg     Registry
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.db != nil {
		_ = bench.db.Close()
	}
	if bench.dir != "" {
		_ = os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// benchKey makes the i-th card of a deterministic pseudo-random population
// of BCD CardIDs (16 decimal nibbles, as the issuer assigns them).
func benchKey(r *rand.Rand) uint64 {
	v := r.Uint64() % 1e16
	var k uint64
	for i := range 16 {
		k |= (v % 10) << (4 * i)
		v /= 10
	}
	return k
}

// sliceSource serves a prepared hotlist and an empty change feed.
type sliceSource struct {
	cards []uint64
	terms []uint64
}

func (s *sliceSource) Snapshot(_ context.Context, k Kind) ([]uint64, int64, error) {
	if k == Cards {
		c := s.cards
		s.cards = nil // ownership passes to the lists
		return c, 1, nil
	}
	return append([]uint64(nil), s.terms...), 1, nil
}

func (s *sliceSource) Changes(context.Context, Kind, int64) ([]Change, int64, error) {
	return nil, 1, nil
}

func (s *sliceSource) Version(context.Context, Kind) (int64, error) { return 1, nil }

var benchTerm = mustTerm("TERM0001")

func setupLists(b *testing.B) {
	bench.once.Do(func() {
		n := envInt("VALUECHIP_BENCH_CARDS", 10_000_000)
		bench.cards = n
		r := rand.New(rand.NewPCG(2002, 6))
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		keys := make([]uint64, n)
		for i := range keys {
			keys[i] = benchKey(r)
		}
		for i := range min(sampleLen, n) {
			bench.hits = append(bench.hits, CardKey(keys[i]))
		}
		l, err := New(Config{Mode: ModeBoth, Source: &sliceSource{cards: keys, terms: []uint64{uint64(benchTerm)}}, Interval: -1})
		if err != nil {
			bench.err = err
			return
		}
		t0 := time.Now()
		keys = nil
		if bench.err = l.Start(context.Background()); bench.err != nil {
			return
		}
		bench.loadTime = time.Since(t0)
		runtime.GC()
		runtime.ReadMemStats(&after)
		bench.heapBytes = after.HeapAlloc - before.HeapAlloc
		bench.lists = l
		cur := l.ptr[Cards].Load()
		for len(bench.misses) < sampleLen {
			if k := benchKey(r); !cur.has(k) {
				bench.misses = append(bench.misses, CardKey(k))
			}
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
}

// setupDB registers VALUECHIP_BENCH_DB_CARDS cards (the hits first, all
// hotlisted) and TERM0001 in a registry on SQLite.
func setupDB(b *testing.B) {
	setupLists(b)
	bench.dbOnce.Do(func() {
		ctx := context.Background()
		bench.dbCards = min(envInt("VALUECHIP_BENCH_DB_CARDS", 1_000_000), bench.cards)
		if bench.dir, bench.dbErr = os.MkdirTemp("", "validity-bench-"); bench.dbErr != nil {
			return
		}
		db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(bench.dir, "registry.db"))
		if err != nil {
			bench.dbErr = err
			return
		}
		bench.db = db
		st, err := registry.New(ctx, db, plainSealer{})
		if err != nil {
			bench.dbErr = err
			return
		}
		if _, _, err := st.RegisterTerminal(ctx, benchTerm.String(), "MERCHANT0000001"); err != nil {
			bench.dbErr = err
			return
		}
		cards := make([]CardKey, 0, bench.dbCards)
		cards = append(cards, bench.hits[:min(len(bench.hits), bench.dbCards)]...)
		bench.lists.ptr[Cards].Load().base.each(func(k uint64) bool {
			if len(cards) == bench.dbCards {
				return false
			}
			cards = append(cards, CardKey(k))
			return true
		})
		bench.dbErr = bulkCards(ctx, db.SQL(), cards)
		bench.reg = Registry{Store: st}
	})
	if bench.dbErr != nil {
		b.Fatal(bench.dbErr)
	}
	b.ReportMetric(float64(bench.dbCards), "dbcards")
}

// bulkCards inserts hotlisted cards straight into the registry's table
// (registering a million cards one transaction each would take minutes).
func bulkCards(ctx context.Context, db *sql.DB, cards []CardKey) error {
	const batch = 50_000
	now := time.Now().UnixMicro()
	for i := 0; i < len(cards); i += batch {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO reg_cards (card_id, currency, status, max_balance, key_version, holder_ref, reason, issued_at, updated_at) VALUES (?, '978', 'hotlisted', 100000, 1, '', 'bench', ?, ?)`)
		if err != nil {
			_ = tx.Rollback()
			return err
		}
		for _, c := range cards[i:min(i+batch, len(cards))] {
			if _, err := stmt.ExecContext(ctx, c.String(), now, now); err != nil {
				_ = tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	return nil
}

type plainSealer struct{}

func (plainSealer) Seal(_ string, p []byte) ([]byte, error) { return append([]byte(nil), p...), nil }
func (plainSealer) Open(_ string, s []byte) ([]byte, error) { return append([]byte(nil), s...), nil }

// BenchmarkLookup10M: one hotlist lookup among 10 million cards, a hit and
// a miss, and the live heap the loaded lists take (MB).
func BenchmarkLookup10M(b *testing.B) {
	setupLists(b)
	cur := bench.lists.ptr[Cards].Load()
	for _, tc := range []struct {
		name   string
		keys   []CardKey
		listed bool
	}{{"hit", bench.hits, true}, {"miss", bench.misses, false}} {
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if cur.has(uint64(tc.keys[i&(sampleLen-1)])) != tc.listed {
					b.Fatal("wrong answer")
				}
				i++
			}
			b.ReportMetric(float64(bench.heapBytes)/1e6, "MB")
		})
		b.Run(tc.name+"-parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(sampleLen)
				for pb.Next() {
					if cur.has(uint64(tc.keys[i&(sampleLen-1)])) != tc.listed {
						panic("wrong answer")
					}
					i++
				}
			})
		})
	}
	b.Run("memory", func(b *testing.B) {
		// Reported, not timed: what the loaded lists hold (live heap
		// measured around Start, and the index's own arrays) and how long
		// Start took to index the snapshot.
		for b.Loop() {
		}
		b.ReportMetric(float64(bench.cards), "cards")
		b.ReportMetric(float64(bench.heapBytes)/1e6, "heap-MB")
		b.ReportMetric(float64(bench.lists.Stats().Bytes)/1e6, "index-MB")
		b.ReportMetric(bench.loadTime.Seconds(), "load-s")
	})
}

// BenchmarkCheckCached: transaction-start validation from memory (ModeBoth,
// 10 million hotlisted cards).
func BenchmarkCheckCached(b *testing.B) {
	setupLists(b)
	benchCheck(b, bench.lists)
}

// BenchmarkCheckDB: the same validation from the registry on SQLite — a card
// row and a terminal row read per request, as without the lists.
func BenchmarkCheckDB(b *testing.B) {
	setupDB(b)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		keys   []CardKey
		listed bool
	}{{"hit", bench.hits, true}, {"miss", bench.misses, false}} {
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				ok, err := bench.reg.TerminalPermitted(ctx, benchTerm)
				if err != nil || !ok {
					b.Fatal("terminal", ok, err)
				}
				hot, err := bench.reg.CardHotlisted(ctx, tc.keys[i&(sampleLen-1)])
				if err != nil || hot != tc.listed {
					b.Fatal("card", hot, err)
				}
				i++
			}
		})
	}
}

// BenchmarkCheckModes: Check in the two mixed variants with the registry on
// SQLite as the database; ModeTerminals is timed up to the decision (the
// acknowledgment), its late card read runs beside it.
func BenchmarkCheckModes(b *testing.B) {
	setupDB(b)
	for _, mode := range []Mode{ModeCards, ModeTerminals} {
		b.Run(mode.String(), func(b *testing.B) {
			src := &sliceSource{terms: []uint64{uint64(benchTerm)}}
			if mode == ModeCards { // the whole hotlist, as in BenchmarkCheckCached
				src.cards = make([]uint64, 0, bench.dbCards)
				bench.lists.ptr[Cards].Load().base.each(func(k uint64) bool { src.cards = append(src.cards, k); return true })
			}
			l, err := New(Config{Mode: mode, Source: src, DB: bench.reg, Interval: -1})
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			benchCheck(b, l)
		})
	}
}

// benchCheck times Check. ack-ns is the time to the decision — when the
// response can go out; ns/op also includes waiting for ModeTerminals' late
// card read, so that reads do not pile up beyond the benchmark.
func benchCheck(b *testing.B, l *Lists) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		keys []CardKey
		code string
	}{{"hit", bench.hits, "62"}, {"miss", bench.misses, "00"}} {
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			var ack time.Duration
			for b.Loop() {
				t0 := time.Now()
				d, err := l.Check(ctx, tc.keys[i&(sampleLen-1)], benchTerm)
				ack += time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				if d.Late != nil {
					<-d.Late.Done()
				} else if d.Code != tc.code {
					b.Fatal(fmt.Sprint("code ", d.Code))
				}
				i++
			}
			b.ReportMetric(float64(ack.Nanoseconds())/float64(b.N), "ack-ns")
		})
	}
}
