package ledger

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func loadRequest(f fixture, key string, amount int64) BeginRequest {
	return BeginRequest{
		Key: key, Kind: "load", CardID: "0102030405060708", TerminalID: "T0000001",
		Amount: amount, Currency: eur, Memo: "load",
		Legs: []Leg{{f.bank, amount, eur}, {f.purse, -amount, eur}},
	}
}

func TestTxnStateMachine(t *testing.T) {
	type step struct {
		op      string // begin, complete, reverse
		legs    bool   // complete with a settlement posting
		reason  string
		want    TxnState
		replay  bool
		wantErr error
	}
	cases := []struct {
		name  string
		steps []step
		purse int64 // purse shadow balance at the end
	}{
		{"complete", []step{{op: "begin", want: StateInProgress}, {op: "complete", want: StateCompleted}}, -5000},
		{"complete with posting", []step{{op: "begin", want: StateInProgress}, {op: "complete", legs: true, want: StateCompleted}}, -4000},
		{"reverse", []step{{op: "begin", want: StateInProgress}, {op: "reverse", reason: "6A88", want: StateReversed}}, 0},
		{"begin replay", []step{{op: "begin", want: StateInProgress}, {op: "begin", want: StateInProgress, replay: true}}, -5000},
		{"complete replay", []step{{op: "begin"}, {op: "complete", want: StateCompleted}, {op: "complete", want: StateCompleted, replay: true}}, -5000},
		{"reverse replay", []step{{op: "begin"}, {op: "reverse", reason: "r", want: StateReversed}, {op: "reverse", reason: "r", want: StateReversed, replay: true}}, 0},
		{"reverse other reason", []step{{op: "begin"}, {op: "reverse", reason: "r", want: StateReversed}, {op: "reverse", reason: "s", wantErr: ErrConflict}}, 0},
		{"complete other posting", []step{{op: "begin"}, {op: "complete", want: StateCompleted}, {op: "complete", legs: true, wantErr: ErrConflict}}, -5000},
		{"complete after reverse", []step{{op: "begin"}, {op: "reverse", want: StateReversed}, {op: "complete", wantErr: ErrIllegalTransition}}, 0},
		{"reverse after complete", []step{{op: "begin"}, {op: "complete", want: StateCompleted}, {op: "reverse", wantErr: ErrIllegalTransition}}, -5000},
		{"complete unknown", []step{{op: "complete", wantErr: ErrNotFound}}, 0},
		{"reverse unknown", []step{{op: "reverse", wantErr: ErrNotFound}}, 0},
	}
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := balance(t, s, f.purse)
				key := "T0000001/auth/" + string(rune('A'+i))
				for j, st := range tc.steps {
					var (
						x   Txn
						err error
					)
					switch st.op {
					case "begin":
						x, err = s.Begin(ctx, loadRequest(f, key, 5000))
					case "complete":
						r := CompleteRequest{Key: key, Memo: "TC 0011223344556677"}
						if st.legs {
							r.Legs = []Leg{{f.purse, 1000, eur}, {f.merchant, -1000, eur}}
						}
						x, err = s.Complete(ctx, r)
					case "reverse":
						x, err = s.Reverse(ctx, ReverseRequest{Key: key, Reason: st.reason})
					}
					if st.wantErr != nil {
						require.ErrorIs(t, err, st.wantErr, "step %d", j)
						continue
					}
					require.NoError(t, err, "step %d", j)
					if st.want != "" {
						assert.Equal(t, st.want, x.State, "step %d", j)
					}
					assert.Equal(t, st.replay, x.Replayed, "step %d", j)
					got, err := s.Txn(ctx, key)
					require.NoError(t, err)
					assert.Equal(t, x.State, got.State)
				}
				assert.Equal(t, tc.purse, balance(t, s, f.purse)-before)
			})
		}
		rep, err := s.Report(ctx)
		require.NoError(t, err)
		assert.Zero(t, rep.Imbalance[eur])
	})
}

func TestTxnAtomicWithPosting(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)

		// A begin whose posting fails creates no transaction.
		bad := loadRequest(f, "bad", 100)
		bad.Legs[1].Account = "purse:unknown:978"
		_, err := s.Begin(ctx, bad)
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.Txn(ctx, "bad")
		require.ErrorIs(t, err, ErrNotFound)
		unbalanced := loadRequest(f, "bad", 100)
		unbalanced.Legs[1].Amount = -99
		_, err = s.Begin(ctx, unbalanced)
		require.ErrorIs(t, err, ErrUnbalanced)

		// A completion whose posting fails leaves the transaction in progress.
		_, err = s.Begin(ctx, loadRequest(f, "ok", 100))
		require.NoError(t, err)
		_, err = s.Complete(ctx, CompleteRequest{Key: "ok", Legs: []Leg{{f.purse, 1, eur}, {f.usdBank, -1, usd}}})
		require.ErrorIs(t, err, ErrUnbalanced)
		_, err = s.Complete(ctx, CompleteRequest{Key: "ok", Legs: []Leg{{f.purse, 1, eur}, {"merchant:none:978", -1, eur}}})
		require.ErrorIs(t, err, ErrNotFound)
		x, err := s.Txn(ctx, "ok")
		require.NoError(t, err)
		assert.Equal(t, StateInProgress, x.State)
		assert.Equal(t, int64(-100), balance(t, s, f.purse))

		// A different begin under the same key is a conflict.
		_, err = s.Begin(ctx, loadRequest(f, "ok", 101))
		require.ErrorIs(t, err, ErrConflict)

		// The reversal posts the exact negation of the begin posting.
		x, err = s.Reverse(ctx, ReverseRequest{Key: "ok", Reason: "card says 6A88"})
		require.NoError(t, err)
		rc, err := s.PostingByKey(ctx, reverseKey("ok"))
		require.NoError(t, err)
		assert.Equal(t, x.EndPosting, rc.ID)
		assert.Equal(t, "ok", rc.TxnKey)
		assert.Equal(t, []Leg{{f.bank, -100, eur}, {f.purse, 100, eur}}, rc.Legs)
		assert.Zero(t, balance(t, s, f.purse))
		assert.Zero(t, balance(t, s, f.bank))

		// A transaction begun without legs reverses without a posting.
		_, err = s.Begin(ctx, BeginRequest{Key: "nolegs", Kind: "debit", CardID: "01", Amount: 5, Currency: eur})
		require.NoError(t, err)
		x, err = s.Reverse(ctx, ReverseRequest{Key: "nolegs"})
		require.NoError(t, err)
		assert.Equal(t, StateReversed, x.State)
		assert.Empty(t, x.EndPosting)

		for _, r := range []BeginRequest{
			{Kind: "load", CardID: "01", Currency: eur},
			{Key: "k", CardID: "01", Currency: eur},
			{Key: "k", Kind: "load", Currency: eur},
			{Key: "k", Kind: "load", CardID: "01", Currency: "EUR"},
			{Key: "k", Kind: "load", CardID: "01", Currency: eur, Amount: -1},
		} {
			_, err := s.Begin(ctx, r)
			assert.ErrorIs(t, err, ErrInvalid, "%+v", r)
		}
	})
}

func TestATC(t *testing.T) {
	const card = "0102030405060708"
	// gaps: the gap each advice opens; missing: the ATCs below the last
	// never reported, after it.
	steps := []struct {
		atc     uint32
		digest  string
		status  ATCStatus
		last    uint32
		gaps    []ATCRange
		missing uint32
	}{
		{1, "tc1", ATCNew, 1, nil, 0},
		{2, "tc2", ATCNew, 2, nil, 0},
		{2, "tc2", ATCRepeat, 2, nil, 0},
		{5, "tc5", ATCNew, 5, []ATCRange{{3, 4}}, 2},
		{3, "tc3", ATCNew, 5, nil, 1},
		{3, "clone", ATCDuplicate, 5, nil, 1},
		{3, "clone", ATCDuplicate, 5, nil, 1},
		{9, "tc9", ATCNew, 9, []ATCRange{{6, 8}}, 4},
		{4, "tc4", ATCNew, 9, nil, 3},
	}
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		for i, st := range steps {
			res, err := s.RecordATC(ctx, ATCAdvice{CardID: card, ATC: st.atc, Digest: st.digest, TerminalID: "T1"})
			require.NoError(t, err, "step %d", i)
			assert.Equal(t, st.status, res.Status, "step %d", i)
			assert.Equal(t, st.last, res.LastATC, "step %d", i)
			assert.Equal(t, st.gaps, res.Gaps, "step %d", i)
			assert.Equal(t, st.missing, res.Missing, "step %d", i)
		}
		cs, err := s.Card(ctx, card)
		require.NoError(t, err)
		assert.Equal(t, uint32(9), cs.LastATC)
		assert.Equal(t, 6, cs.Seen)
		assert.Equal(t, []ATCRange{{6, 8}}, cs.Gaps)
		assert.Equal(t, []ATCAdvice{{CardID: card, ATC: 3, Digest: "clone", TerminalID: "T1"}}, cs.Duplicates)

		_, err = s.Card(ctx, "ffff")
		assert.ErrorIs(t, err, ErrNotFound)
		for _, a := range []ATCAdvice{{ATC: 1, Digest: "x"}, {CardID: card, Digest: "x"}, {CardID: card, ATC: 1}} {
			_, err := s.RecordATC(ctx, a)
			assert.ErrorIs(t, err, ErrInvalid)
		}
		// The top of the range works and does not wrap.
		res, err := s.RecordATC(ctx, ATCAdvice{CardID: "top", ATC: 0xFFFFFFFF, Digest: "d"})
		require.NoError(t, err)
		assert.Equal(t, uint32(0xFFFFFFFF), res.LastATC)
		assert.Equal(t, []ATCRange{{1, 0xFFFFFFFE}}, res.Gaps)
		assert.Equal(t, uint32(0xFFFFFFFE), res.Missing)
		cs, err = s.Card(ctx, "top")
		require.NoError(t, err)
		assert.Equal(t, []ATCRange{{1, 0xFFFFFFFE}}, cs.Gaps)
	})
}

func TestGaps(t *testing.T) {
	assert.Nil(t, gaps(nil, 0))
	assert.Equal(t, []ATCRange{{1, 3}}, gaps(nil, 3))
	assert.Nil(t, gaps([]uint32{1, 2, 3}, 3))
	assert.Equal(t, []ATCRange{{2, 2}}, gaps([]uint32{1, 3}, 3))
	assert.Equal(t, []ATCRange{{2, 0xFFFFFFFE}}, gaps([]uint32{1, 0xFFFFFFFF}, 0xFFFFFFFF))
	assert.Equal(t, []ATCRange{{1, 0xFFFFFFFD}}, gaps([]uint32{0xFFFFFFFE, 0xFFFFFFFF}, 0xFFFFFFFF))
}

func TestReport(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		f := setup(t, s)
		m2, err := s.EnsureAccount(ctx, KindMerchant, "T0000002", eur)
		require.NoError(t, err)
		// load 100.00 on two purses, spend 12.50 at merchant 1 and 3.00 at merchant 2
		_, err = s.Post(ctx, transfer("l1", f.purse, f.bank, 10000))
		require.NoError(t, err)
		_, err = s.Post(ctx, transfer("l2", f.purse2, f.bank, 10000))
		require.NoError(t, err)
		_, err = s.Post(ctx, transfer("d1", f.merchant, f.purse, 1250))
		require.NoError(t, err)
		_, err = s.Post(ctx, transfer("d2", m2.ID, f.purse2, 300))
		require.NoError(t, err)
		_, err = s.Post(ctx, Posting{Key: "u1", Legs: []Leg{{f.usdBank, 7, usd}, {f.usdFloat, -7, usd}}})
		require.NoError(t, err)

		rep, err := s.Report(ctx)
		require.NoError(t, err)
		assert.Equal(t, []KindTotal{
			{KindFunding, usd, 1, 7},
			{KindFunding, eur, 1, 20000},
			{KindIssuerFloat, usd, 1, -7},
			{KindIssuerFloat, eur, 1, 0},
			{KindMerchant, eur, 2, -1550},
			{KindPurse, eur, 2, -18450},
		}, rep.ByKind)
		require.Len(t, rep.Merchants, 2)
		assert.Equal(t, f.merchant, rep.Merchants[0].ID)
		assert.Equal(t, int64(-1250), rep.Merchants[0].Balance)
		assert.Equal(t, int64(-300), rep.Merchants[1].Balance)
		assert.Equal(t, map[string]int64{eur: 0, usd: 0}, rep.Imbalance)
	})
}
