package server_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// fleet is n terminals, each with its own card loaded with funds, signed
// on over its own connection.
type fleet struct {
	terms []*tterm
	cards []*vcard
}

func bcdCard(i int) wire.CardID {
	s := fmt.Sprintf("22%014d", i)
	var id wire.CardID
	for j := range id {
		id[j] = (s[2*j]-'0')<<4 | (s[2*j+1] - '0')
	}
	return id
}

func newFleet(t testing.TB, e *env, n int, funds uint32) *fleet {
	f := &fleet{}
	for i := range n {
		id := fmt.Sprintf("F%07d", i)
		mid := fmt.Sprintf("M%014d", i)
		tmk := e.reg.addTerminal(id, mid)
		c := newVCard(t, bcdCard(i))
		e.reg.addCard(server.Card{ID: c.hex(), Currency: "978", Status: server.CardActive, MaxBalance: 1 << 30})
		tt := newTTerm(t, e.addr, id, mid, tmk, e.clk.Now)
		require.Equal(t, "00", tt.signOn())
		e.loadCompleted(tt, c, funds)
		f.terms, f.cards = append(f.terms, tt), append(f.cards, c)
	}
	return f
}

// advices pre-builds per terminal debits of amount each.
func (f *fleet) advices(t testing.TB, per int, amount uint32, now time.Time) [][]*moov.Message {
	out := make([][]*moov.Message, len(f.terms))
	for i, tt := range f.terms {
		for j := range per {
			out[i] = append(out[i], tt.adviceMsg(f.cards[i], f.cards[i].debit(t, amount, tt.id, uint32(j+1), now)))
		}
	}
	return out
}

// send sends every terminal's advices concurrently (each terminal
// sequentially, as store-and-forward does) and counts the codes.
func (f *fleet) send(msgs [][]*moov.Message) map[string]int {
	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	for i, tt := range f.terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range msgs[i] {
				_, rc := tt.send(m)
				mu.Lock()
				codes[rc]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return codes
}

// TestManyTerminals: 200 terminals send advices at once, then all again
// (lost answers); every advice is posted exactly once and every balance
// follows, on both engines.
func TestManyTerminals(t *testing.T) {
	if testing.Short() {
		t.Skip("200 connections")
	}
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		e := newEnv(t, db, withSQLLoads(db))
		const n, per, amount = 200, 5, 7
		f := newFleet(t, e, n, 1000)
		msgs := f.advices(t, per, amount, e.clk.Now())
		require.Equal(t, map[string]int{"00": n * per}, f.send(msgs))
		require.Equal(t, map[string]int{"94": n * per}, f.send(msgs), "repeats are replays")
		ctx := context.Background()
		for i, c := range f.cards {
			require.Equal(t, int64(1000-per*amount), purseBalance(t, e.led, c.hex()))
			m, err := e.led.Balance(ctx, ledger.AccountID(ledger.KindMerchant, f.terms[i].merchant, "978"))
			require.NoError(t, err)
			require.Equal(t, int64(-per*amount), m)
		}
		e.posted()
	})
}

// BenchmarkAdvices: debit advices per second end to end over TCP (parse,
// MAC, transaction number, TC, group-committed posting, answer) from 64
// terminals, on each engine.
func BenchmarkAdvices(b *testing.B) {
	for _, engine := range dbtest.Engines {
		b.Run(engine, func(b *testing.B) {
			db := dbtest.Open(b, engine)
			e := newEnv(b, db)
			const terms = 64
			f := newFleet(b, e, terms, 1<<29)
			per := b.N/terms + 1
			msgs := f.advices(b, per, 1, e.clk.Now())
			b.ResetTimer()
			start := time.Now()
			codes := f.send(msgs)
			el := time.Since(start)
			b.StopTimer()
			require.Equal(b, terms*per, codes["00"])
			b.ReportMetric(float64(terms*per)/el.Seconds(), "advices/s")
		})
	}
}
