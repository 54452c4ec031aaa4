package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/validity"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// Transaction start — the validation step of a 0200/0220 — with the
// validity lists (BenchmarkTxnStartCached: the whitelist check before the
// registry, then CheckIDs right after parsing) against the same decision
// from the database (BenchmarkTxnStartDB: the registry's terminal and card
// rows, as the server reads them without lists and without its cache), in
// the same run and on the same registry:
//
//	go test -run '^$' -bench 'TxnStart' -count 5 ./host/server/
//
// VALUECHIP_BENCH_SERVER_CARDS (default 500) cards are registered, one in
// ten hotlisted, in a fresh database per run; PostgreSQL runs too when
// VALUECHIP_PG_DSN is set. The lookups are by primary key, so the number
// of cards hardly matters to the database side (host/validity's own
// benchmarks cover 10 million).

type txnBench struct {
	reg  *registry.Store
	ok   []string // active cards
	hot  []string // hotlisted cards
	term string
}

func setupTxnBench(b *testing.B, engine string) *txnBench {
	ctx := context.Background()
	n := 500
	if v, err := strconv.Atoi(os.Getenv("VALUECHIP_BENCH_SERVER_CARDS")); err == nil && v > 0 {
		n = v
	}
	db := dbtest.Open(b, engine)
	kr, err := keystore.Init(filepath.Join(b.TempDir(), "keyring.json"), keystore.GenerateKEK(), keystore.InitOptions{DevMasters: true})
	if err != nil {
		b.Fatal(err)
	}
	reg, err := registry.New(ctx, db, kr)
	if err != nil {
		b.Fatal(err)
	}
	tb := &txnBench{reg: reg, term: "TERM0001"}
	if _, _, err := reg.RegisterTerminal(ctx, tb.term, "MERCHANT0000001"); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		id := fmt.Sprintf("11223344%08d", i)
		st := registry.Active
		if i%10 == 0 {
			st = registry.Hotlisted
		}
		if _, err := reg.RegisterCard(ctx, registry.Card{CardID: id, Currency: "978", MaxBalance: 100000, KeyVersion: 1, Status: st}); err != nil {
			b.Fatal(err)
		}
		if st == registry.Hotlisted {
			tb.hot = append(tb.hot, id)
		} else {
			tb.ok = append(tb.ok, id)
		}
	}
	return tb
}

func benchServer(b *testing.B, tb *txnBench, v *Validity) *Server {
	s, err := New(Config{Registry: RegistryStore{Store: tb.reg}, Keys: nilKeys{}, Ledger: nilLedger{}, Advices: nilAdvices{},
		Loads: nilLoads{}, Validity: v, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

type (
	nilKeys    struct{ Keys }
	nilLedger  struct{ Ledger }
	nilAdvices struct{ Advices }
	nilLoads   struct{ Loads }
)

func benchTxnStart(b *testing.B, step func(s *Server, r *request, card string) string, cached bool) {
	for _, engine := range dbtest.Engines {
		b.Run(engine, func(b *testing.B) {
			tb := setupTxnBench(b, engine)
			var v *Validity
			if cached {
				var err error
				if v, err = NewValidityLists(context.Background(), tb.reg, validity.ModeBoth, -1, nil); err != nil {
					b.Fatal(err)
				}
				defer func() { _ = v.Close() }()
			}
			s := benchServer(b, tb, v)
			for _, c := range []struct {
				name  string
				cards []string
				want  string
			}{{"approved", tb.ok, iso8583.RCApproved}, {"hotlisted", tb.hot, iso8583.RCRestrictedCard}} {
				b.Run(c.name, func(b *testing.B) {
					r := &request{term: Terminal{ID: tb.term}, log: s.log}
					if got := step(s, r, c.cards[0]); got != c.want {
						b.Fatalf("answered %s, want %s", got, c.want)
					}
					b.ReportAllocs()
					b.ResetTimer()
					for i := 0; b.Loop(); i++ {
						if got := step(s, r, c.cards[i%len(c.cards)]); got != c.want {
							b.Fatalf("answered %s", got)
						}
					}
				})
			}
		})
	}
}

// BenchmarkTxnStartCached: the server's own validation step with the lists
// (ModeBoth): admitTerminal before the registry, checkCard after parsing.
func BenchmarkTxnStartCached(b *testing.B) {
	benchTxnStart(b, func(s *Server, r *request, card string) string {
		if code, _ := s.admitTerminal(r.term.ID); code != "" {
			return code
		}
		return codeOf(s.checkCard(context.Background(), r, card, refuseHot))
	}, true)
}

// BenchmarkTxnStartDB: the same decision from the database, as the server
// makes it without lists and without CachedRegistry: the terminal's row
// (with its key) and the card's row.
func BenchmarkTxnStartDB(b *testing.B) {
	benchTxnStart(b, func(s *Server, r *request, card string) string {
		ctx := context.Background()
		t, err := s.cfg.Registry.Terminal(ctx, r.term.ID)
		switch {
		case err != nil:
			return codeOf(err)
		case !t.Active:
			return iso8583.RCNotPermittedTerm
		}
		c, err := s.lookupCard(ctx, card)
		switch {
		case err != nil:
			return codeOf(err)
		case c.Status == CardHotlisted:
			return iso8583.RCRestrictedCard
		}
		return iso8583.RCApproved
	}, false)
}
