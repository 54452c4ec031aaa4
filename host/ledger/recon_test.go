package ledger

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReconciliation(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		begin := func(key string, amount int64) {
			t.Helper()
			_, err := s.Begin(ctx, loadRequest(f, key, amount))
			require.NoError(t, err)
		}
		complete := func(key string) {
			t.Helper()
			_, err := s.Complete(ctx, CompleteRequest{Key: key})
			require.NoError(t, err)
		}
		reverse := func(key string) {
			t.Helper()
			_, err := s.Reverse(ctx, ReverseRequest{Key: key, Reason: "6A88"})
			require.NoError(t, err)
		}
		debit := func(atc uint32, amount int64) {
			t.Helper()
			require.NoError(t, s.ApplyAdvices(ctx, []DebitAdvice{advice(card1, atc, "tc", amount)})[0].Err)
		}

		empty, err := s.OpenBatchTotals(ctx, term1)
		require.NoError(t, err)
		assert.Equal(t, Totals{TerminalID: term1, Batch: 1}, empty)

		// Batch 1: two completed loads, one reversed, one still in progress
		// (counted nowhere yet), one load of another terminal, a non-load
		// transaction, two debits.
		begin("l1", 5000)
		complete("l1")
		begin("l2", 2000)
		complete("l2")
		begin("l3", 700)
		reverse("l3")
		begin("l4", 900)
		other := loadRequest(f, "o1", 100)
		other.TerminalID = "T0000002"
		_, err = s.Begin(ctx, other)
		require.NoError(t, err)
		complete("o1")
		_, err = s.Begin(ctx, BeginRequest{Key: "x1", Kind: "fee", CardID: card1, TerminalID: term1, Amount: 5, Currency: eur})
		require.NoError(t, err)
		complete("x1")
		debit(1, 350)
		debit(2, 150)
		debit(2, 150) // replay: counted once

		want1 := Totals{TerminalID: term1, Batch: 1, Currency: eur, Loads: 2, LoadAmount: 7000,
			LoadReversals: 1, LoadReversalAmount: 700, Debits: 2, DebitAmount: 500}
		got, err := s.OpenBatchTotals(ctx, term1)
		require.NoError(t, err)
		assert.Equal(t, want1, got)

		closed, err := s.CloseBatch(ctx, term1, "T0000001/close/1")
		require.NoError(t, err)
		assert.Equal(t, want1, closed)

		// Batch 2: the load in progress at the close counts where it ends;
		// the close of batch 1 is idempotent and closes nothing more.
		complete("l4")
		debit(3, 25)
		again, err := s.CloseBatch(ctx, term1, "T0000001/close/1")
		require.NoError(t, err)
		assert.Equal(t, want1, again)
		want2 := Totals{TerminalID: term1, Batch: 2, Currency: eur, Loads: 1, LoadAmount: 900, Debits: 1, DebitAmount: 25}
		got, err = s.OpenBatchTotals(ctx, term1)
		require.NoError(t, err)
		assert.Equal(t, want2, got)
		x, err := s.Txn(ctx, "l4")
		require.NoError(t, err)
		assert.Equal(t, int64(2), x.Batch)

		_, err = s.CloseBatch(ctx, "T0000002", "T0000001/close/1")
		assert.ErrorIs(t, err, ErrConflict, "a close key of another terminal")
		other2, err := s.CloseBatch(ctx, "T0000002", "T0000002/close/1")
		require.NoError(t, err)
		assert.Equal(t, Totals{TerminalID: "T0000002", Batch: 1, Currency: eur, Loads: 1, LoadAmount: 100}, other2)

		closed, err = s.CloseBatch(ctx, term1, "T0000001/close/2")
		require.NoError(t, err)
		assert.Equal(t, want2, closed)
		got, err = s.OpenBatchTotals(ctx, term1)
		require.NoError(t, err)
		assert.Equal(t, Totals{TerminalID: term1, Batch: 3}, got)

		// An empty batch closes too.
		closed, err = s.CloseBatch(ctx, term1, "T0000001/close/3")
		require.NoError(t, err)
		assert.Equal(t, Totals{TerminalID: term1, Batch: 3}, closed)

		// One terminal, two currencies: the batch cannot be totalled.
		usdAdvice := advice(card1, 9, "tc9", 1)
		usdAdvice.Currency = usd
		require.NoError(t, s.ApplyAdvices(ctx, []DebitAdvice{usdAdvice})[0].Err)
		debit(10, 1)
		_, err = s.OpenBatchTotals(ctx, term1)
		assert.ErrorIs(t, err, ErrCurrency)
		_, err = s.CloseBatch(ctx, term1, "T0000001/close/4")
		assert.ErrorIs(t, err, ErrCurrency)

		for _, bad := range [][2]string{{"", "k"}, {term1, ""}, {"a/b", "k"}} {
			_, err := s.CloseBatch(ctx, bad[0], bad[1])
			assert.ErrorIs(t, err, ErrInvalid)
		}
		_, err = s.OpenBatchTotals(ctx, "")
		assert.ErrorIs(t, err, ErrInvalid)
	})
}

// Concurrent closes with one key close one batch; advices racing with the
// close land in exactly one batch.
func TestCloseBatchConcurrent(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		b := NewBatcher(s, 16)
		defer b.Close()
		const n = 200
		done := make(chan error, 1)
		go func() {
			for i := 1; i <= n; i++ {
				if r := b.Submit(ctx, advice(card1, uint32(i), "tc", 1)); r.Err != nil {
					done <- r.Err
					return
				}
			}
			done <- nil
		}()
		var closedTotal int64
		for i := 0; i < 5; i++ {
			key := "close/" + string(rune('a'+i))
			errs := make(chan error, 3)
			tots := make(chan Totals, 3)
			for j := 0; j < 3; j++ {
				go func() {
					tot, err := s.CloseBatch(ctx, term1, key)
					errs <- err
					tots <- tot
				}()
			}
			var first Totals
			for j := 0; j < 3; j++ {
				require.NoError(t, <-errs)
				tot := <-tots
				if j == 0 {
					first = tot
				}
				assert.Equal(t, first, tot, "same key, same totals")
			}
			assert.Equal(t, int64(i+1), first.Batch)
			closedTotal += first.DebitAmount
		}
		require.NoError(t, <-done)
		open, err := s.OpenBatchTotals(ctx, term1)
		require.NoError(t, err)
		assert.Equal(t, int64(6), open.Batch)
		assert.Equal(t, int64(n), closedTotal+open.DebitAmount, "every advice in exactly one batch")
	})
}

func TestFloors(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		// A wallet (purse2 here) may go down to −1000 (an overdraft): the
		// floor is the lowest balance allowed after the posting.
		spend := func(key string, amount int64) Posting {
			p := transfer(key, f.purse2, f.merchant, amount)
			p.Legs = []Leg{{f.purse2, -amount, eur}, {f.merchant, amount, eur}}
			p.Floors = map[string]int64{f.purse2: -1000}
			return p
		}
		_, err := s.Post(ctx, spend("w1", 600))
		require.NoError(t, err)
		_, err = s.Post(ctx, spend("w2", 401))
		require.ErrorIs(t, err, ErrInsufficientFunds, "one cent over the limit")
		_, err = s.PostingByKey(ctx, "w2")
		require.ErrorIs(t, err, ErrNotFound, "nothing written")
		r, err := s.Post(ctx, spend("w3", 400))
		require.NoError(t, err, "exactly at the limit")
		assert.Equal(t, int64(-1000), balance(t, s, f.purse2))

		// A replay is answered whatever the floors now say.
		p := spend("w3", 400)
		p.Floors[f.purse2] = 0
		again, err := s.Post(ctx, p)
		require.NoError(t, err)
		assert.True(t, again.Replayed)
		assert.Equal(t, r.ID, again.ID)

		bad := spend("w4", 1)
		bad.Floors = map[string]int64{f.bank: 0}
		_, err = s.Post(ctx, bad)
		require.ErrorIs(t, err, ErrInvalid, "a floor on an account not posted to")

		// Begin checks its floors too, and a refused begin leaves nothing.
		ld := loadRequest(f, "b1", 500)
		ld.Legs = []Leg{{f.purse2, -500, eur}, {f.bank, 500, eur}}
		ld.Floors = map[string]int64{f.purse2: -1000}
		_, err = s.Begin(ctx, ld)
		require.ErrorIs(t, err, ErrInsufficientFunds)
		_, err = s.Txn(ctx, "b1")
		require.ErrorIs(t, err, ErrNotFound)
		ld.Floors[f.purse2] = -1500
		_, err = s.Begin(ctx, ld)
		require.NoError(t, err)
		ld.Floors = map[string]int64{"funding:none:978": 0}
		ld.Key = "b2"
		_, err = s.Begin(ctx, ld)
		require.ErrorIs(t, err, ErrInvalid)
	})
}

func TestReportInProgress(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		rep, err := s.Report(ctx)
		require.NoError(t, err)
		assert.Empty(t, rep.InProgress)

		_, err = s.Begin(ctx, loadRequest(f, "p1", 100))
		require.NoError(t, err)
		_, err = s.Begin(ctx, loadRequest(f, "p2", 250))
		require.NoError(t, err)
		_, err = s.Begin(ctx, loadRequest(f, "p3", 1000))
		require.NoError(t, err)
		_, err = s.Complete(ctx, CompleteRequest{Key: "p3"})
		require.NoError(t, err)
		_, err = s.Begin(ctx, BeginRequest{Key: "u1", Kind: "load", CardID: card1, Amount: 7, Currency: usd})
		require.NoError(t, err)
		first, err := s.Txn(ctx, "p1")
		require.NoError(t, err)

		rep, err = s.Report(ctx)
		require.NoError(t, err)
		require.Len(t, rep.InProgress, 2)
		assert.Equal(t, InProgressTotal{Kind: "load", Currency: usd, Count: 1, Amount: 7,
			Oldest: rep.InProgress[0].Oldest, OldestKey: "u1"}, rep.InProgress[0])
		assert.Equal(t, InProgressTotal{Kind: "load", Currency: eur, Count: 2, Amount: 350,
			Oldest: first.CreatedAt, OldestKey: "p1"}, rep.InProgress[1])
	})
}

func TestPostReservedAdviceKey(t *testing.T) {
	s := openStore(t, "sqlite")
	f := setup(t, s)
	_, err := s.Post(context.Background(), transfer("advice/x", f.bank, f.purse, 1))
	require.ErrorIs(t, err, ErrInvalid)
}

func TestCeilings(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		// A wallet with a credit limit of 1000: a purchase raises the
		// liability's balance, which may not go above the ceiling.
		_, err := s.EnsureAccount(ctx, KindWallet, "alice", eur)
		require.NoError(t, err)
		w := AccountID(KindWallet, "alice", eur)
		buy := func(key string, amount int64) Posting {
			return Posting{Key: key, Memo: "purchase", Legs: []Leg{{w, amount, eur}, {f.merchant, -amount, eur}},
				Ceilings: map[string]int64{w: 1000}}
		}
		_, err = s.Post(ctx, buy("c1", 999))
		require.NoError(t, err)
		_, err = s.Post(ctx, buy("c2", 2))
		require.ErrorIs(t, err, ErrInsufficientFunds, "one cent over the ceiling")
		_, err = s.PostingByKey(ctx, "c2")
		require.ErrorIs(t, err, ErrNotFound, "nothing written")
		_, err = s.Post(ctx, buy("c3", 1))
		require.NoError(t, err, "exactly at the ceiling")
		assert.Equal(t, int64(1000), balance(t, s, w))

		bad := buy("c4", 1)
		bad.Ceilings = map[string]int64{f.bank: 0}
		_, err = s.Post(ctx, bad)
		require.ErrorIs(t, err, ErrInvalid, "a ceiling on an account not posted to")
	})
}
