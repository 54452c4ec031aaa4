package crosscheck_test

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/crosscheck"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

var cardA = purse.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}

func key(b byte) purse.Key {
	k := make(purse.Key, 16)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

// masters are test issuer masters (not the public dev keys: any will do).
var masters = purse.Keys{
	Load:  purse.VersionedKey{Version: 1, Key: key(0x10)},
	Debit: purse.VersionedKey{Version: 1, Key: key(0x20)},
	TC:    purse.VersionedKey{Version: 1, Key: key(0x30)},
}

type keySource struct{ err error }

func (k keySource) Masters(context.Context) (purse.Keys, error) { return masters, k.err }

// fakeReports stands in for the ledger's advices.
type fakeReports struct {
	mu sync.Mutex
	m  map[purse.CardID][]crosscheck.TerminalReport
}

func (f *fakeReports) TerminalReports(_ context.Context, id purse.CardID) ([]crosscheck.TerminalReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]crosscheck.TerminalReport(nil), f.m[id]...), nil
}

func (f *fakeReports) add(id purse.CardID, r crosscheck.TerminalReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[purse.CardID][]crosscheck.TerminalReport{}
	}
	f.m[id] = append(f.m[id], r)
}

var term1 = purse.TerminalID{'T', 'E', 'R', 'M', '0', '0', '0', '1'}

// record makes a genuine record of the card with a valid TC.
func record(t testing.TB, id purse.CardID, atc uint32, typ byte, amount, after uint32) purse.LogRecord {
	t.Helper()
	r := purse.LogRecord{ATC: atc, Type: typ, Amount: amount, BalanceAfter: after, Currency: purse.Currency{0x09, 0x78},
		DateTime: purse.DateTime{0x20, 0x26, 0x11, 0x21, 0x08, 0x00, 0x00}, TerminalID: term1, Reference: atc}
	kTC, err := purse.DeriveCardKey(masters.TC.Key, purse.KeyTC, id)
	require.NoError(t, err)
	r.TC, err = purse.ComputeTC(kTC, id, r)
	require.NoError(t, err)
	return r
}

func tc(r purse.LogRecord) string { return strings.ToUpper(hex.EncodeToString(r.TC[:])) }

// cardLog is a card with a load of 50.00 and debits 3.50, 1.00, 2.00.
func cardLog(t testing.TB) []purse.LogRecord {
	return []purse.LogRecord{
		record(t, cardA, 1, purse.TypeLoad, 5000, 5000),
		record(t, cardA, 2, purse.TypeDebit, 350, 4650),
		record(t, cardA, 3, purse.TypeDebit, 100, 4550),
		record(t, cardA, 4, purse.TypeDebit, 200, 4350),
	}
}

func reportOf(r purse.LogRecord) crosscheck.TerminalReport {
	kind := "debit"
	if r.Type == purse.TypeLoad {
		kind = "load"
	}
	return crosscheck.TerminalReport{ATC: r.ATC, Kind: kind, TerminalID: "TERM0001", MerchantID: "MERCHANT0000001",
		Amount: int64(r.Amount), Digest: tc(r)}
}

func kinds(ds []crosscheck.Discrepancy) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, string(d.Kind)+"@"+string(rune('0'+d.ATC)))
	}
	return out
}

func TestCompare(t *testing.T) {
	log := cardLog(t)
	forged := log[2]
	forged.Amount = 150 // what a cheating terminal would claim
	clone := record(t, cardA, 3, purse.TypeDebit, 999, 3551)
	all := func() []crosscheck.TerminalReport {
		var out []crosscheck.TerminalReport
		for _, r := range log {
			out = append(out, reportOf(r))
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		view    crosscheck.CardView
		reports func() []crosscheck.TerminalReport
		want    []string
	}{
		{"all reported", crosscheck.CardView{CardID: cardA, Records: log, Coverage: []crosscheck.Range{{1, 4}}}, all, []string{}},
		{"terminal charged more", crosscheck.CardView{CardID: cardA, Records: log}, func() []crosscheck.TerminalReport {
			r := all()
			r[2].Amount = 150
			return r
		}, []string{"overcharge@3"}},
		{"terminal reported less", crosscheck.CardView{CardID: cardA, Records: log}, func() []crosscheck.TerminalReport {
			r := all()
			r[2].Amount = 50
			return r
		}, []string{"amount_mismatch@3"}},
		{"other digest", crosscheck.CardView{CardID: cardA, Records: log}, func() []crosscheck.TerminalReport {
			r := all()
			r[2].Digest = "0000000000000000"
			return r
		}, []string{"digest_mismatch@3"}},
		{"other terminal", crosscheck.CardView{CardID: cardA, Records: log}, func() []crosscheck.TerminalReport {
			r := all()
			r[2].TerminalID = "TERM0002"
			return r
		}, []string{"digest_mismatch@3"}},
		{"terminal ID as hex", crosscheck.CardView{CardID: cardA, Records: log}, func() []crosscheck.TerminalReport {
			r := all()
			r[2].TerminalID = "5445524d30303031"
			return r
		}, []string{}},
		{"debit not reported", crosscheck.CardView{CardID: cardA, Records: log}, func() []crosscheck.TerminalReport {
			return all()[:3]
		}, []string{"unreported_debit@4"}},
		{"load not completed", crosscheck.CardView{CardID: cardA, Records: log}, func() []crosscheck.TerminalReport {
			return all()[1:]
		}, []string{"unreported_load@1"}},
		{"a retried advice", crosscheck.CardView{CardID: cardA, Records: log, Coverage: []crosscheck.Range{{1, 4}}},
			func() []crosscheck.TerminalReport { return append(all(), reportOf(log[3])) }, []string{}},
		{"report for an ATC the log lacks", crosscheck.CardView{CardID: cardA, Records: []purse.LogRecord{log[0], log[1], log[3]}, Coverage: []crosscheck.Range{{1, 4}}},
			all, []string{"unknown_atc@3", "log_gap@3"}},
		{"report outside the window", crosscheck.CardView{CardID: cardA, Records: log[:2], Coverage: []crosscheck.Range{{1, 2}}},
			all, []string{}},
		{"clone", crosscheck.CardView{CardID: cardA, Records: append(append([]purse.LogRecord(nil), log...), clone)}, all,
			[]string{"log_conflict@3"}},
		{"refused", crosscheck.CardView{CardID: cardA, Records: log, Refused: []crosscheck.Refused{{ATC: 3, Record: hex.EncodeToString(forged.Bytes()), Reason: "TC"}}},
			all, []string{"invalid_tc@3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, kinds(crosscheck.Compare(tc.view, tc.reports())))
		})
	}
}

func TestCompareWindowAtMaxATC(t *testing.T) {
	r := record(t, cardA, 0xFFFFFFFF, purse.TypeDebit, 1, 0)
	ds := crosscheck.Compare(crosscheck.CardView{CardID: cardA, Records: []purse.LogRecord{r},
		Coverage: []crosscheck.Range{{0xFFFFFFFF, 0xFFFFFFFF}}}, []crosscheck.TerminalReport{reportOf(r)})
	require.Empty(t, ds, "the coverage loop ends at FFFFFFFF")
}

func newService(t *testing.T, db *sqldb.DB, reps crosscheck.Reports) *crosscheck.Service {
	t.Helper()
	s, err := crosscheck.New(context.Background(), db, keySource{}, reps)
	require.NoError(t, err)
	return s
}

func TestService(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		reps := &fakeReports{}
		s := newService(t, db, reps)
		log := cardLog(t)
		// The terminals: the load and ATC 2 as the card did, ATC 3 charged
		// 1.50 where the card debited 1.00, and ATC 4 never reported.
		reps.add(cardA, reportOf(log[0]))
		reps.add(cardA, reportOf(log[1]))
		over := reportOf(log[2])
		over.Amount = 150
		reps.add(cardA, over)

		res, err := s.Submit(ctx, cardA, log)
		require.NoError(t, err)
		require.Equal(t, 4, res.Accepted)
		require.Equal(t, 4, res.Stored)
		require.Empty(t, res.Refused)
		require.Equal(t, []string{"overcharge@3", "unreported_debit@4"}, kinds(res.Discrepancies))
		require.Equal(t, int64(100), res.Discrepancies[0].CardAmount)
		require.Equal(t, int64(150), res.Discrepancies[0].ReportedAmount)
		require.Equal(t, "TERM0001", res.Discrepancies[0].TerminalID)

		// Re-upload: nothing stored again, same findings.
		again, err := s.Submit(ctx, cardA, log)
		require.NoError(t, err)
		require.Equal(t, 4, again.Accepted)
		require.Zero(t, again.Stored)
		require.Equal(t, res.Discrepancies, again.Discrepancies)

		// The report; the terminal's advice for ATC 4 arrives later and the
		// unreported debit disappears (findings are recomputed).
		all, err := s.Discrepancies(ctx, crosscheck.Filter{})
		require.NoError(t, err)
		require.Equal(t, res.Discrepancies, all)
		reps.add(cardA, reportOf(log[3]))
		all, err = s.Discrepancies(ctx, crosscheck.Filter{Kinds: []crosscheck.Kind{crosscheck.KindUnreportedDebit}})
		require.NoError(t, err)
		require.Empty(t, all)
		all, err = s.Discrepancies(ctx, crosscheck.Filter{CardID: "1122334455667788"})
		require.NoError(t, err)
		require.Equal(t, []string{"overcharge@3"}, kinds(all))
		all, err = s.Discrepancies(ctx, crosscheck.Filter{TerminalID: "OTHER001"})
		require.NoError(t, err)
		require.Empty(t, all)

		// A forged record (amount changed after the card signed it) is
		// refused, kept as evidence, and nothing of it is stored.
		forged := record(t, cardA, 5, purse.TypeDebit, 100, 4250)
		forged.Amount = 10
		res, err = s.Submit(ctx, cardA, []purse.LogRecord{forged})
		require.NoError(t, err)
		require.Zero(t, res.Accepted)
		require.Len(t, res.Refused, 1)
		require.Equal(t, uint32(5), res.Refused[0].ATC)
		require.Contains(t, kinds(res.Discrepancies), "invalid_tc@5")
		v, err := s.View(ctx, cardA)
		require.NoError(t, err)
		require.Len(t, v.Records, 4)
		require.Equal(t, []crosscheck.Range{{1, 4}}, v.Coverage)

		// A genuine record of another card, uploaded as this card's: the TC
		// binds the CardID (docs/purse.md §5.4), so it is refused.
		other := record(t, purse.CardID{9, 9, 9, 9, 9, 9, 9, 9}, 6, purse.TypeDebit, 100, 4150)
		res, err = s.Submit(ctx, cardA, []purse.LogRecord{other})
		require.NoError(t, err)
		require.Len(t, res.Refused, 1)

		cards, err := s.Cards(ctx)
		require.NoError(t, err)
		require.Equal(t, []purse.CardID{cardA}, cards)
	})
}

func TestServiceConcurrentUploads(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newService(t, db, &fakeReports{})
		log := cardLog(t)
		var wg sync.WaitGroup
		stored := make([]int, 8)
		errs := make([]error, 8)
		for i := range stored {
			wg.Go(func() {
				res, err := s.Submit(ctx, cardA, log)
				errs[i] = err
				if err == nil {
					stored[i] = res.Stored
				}
			})
		}
		wg.Wait()
		total := 0
		for i := range stored {
			require.NoError(t, errs[i])
			total += stored[i]
		}
		require.Equal(t, 4, total, "each record stored exactly once")
	})
}

func TestServiceErrors(t *testing.T) {
	db := dbtest.Open(t, "sqlite")
	ctx := context.Background()
	s, err := crosscheck.New(ctx, db, keySource{err: errors.New("hsm down")}, &fakeReports{})
	require.NoError(t, err)
	_, err = s.Submit(ctx, cardA, cardLog(t))
	require.ErrorIs(t, err, crosscheck.ErrKeys)
	srv := httptest.NewServer(crosscheck.Handler(s, nil))
	defer srv.Close()
	_, err = crosscheck.Upload(ctx, srv.URL, cardA, cardLog(t))
	require.ErrorIs(t, err, crosscheck.ErrServer)
	require.ErrorContains(t, err, "503")
	require.NotContains(t, err.Error(), "hsm down", "internal errors stay on the server")
	_, err = s.Submit(ctx, cardA, nil)
	require.ErrorIs(t, err, crosscheck.ErrMalformed)
	report, err := crosscheck.New(ctx, db, nil, &fakeReports{})
	require.NoError(t, err)
	_, err = report.Submit(ctx, cardA, cardLog(t))
	require.ErrorIs(t, err, crosscheck.ErrKeys)
	ds, err := report.Discrepancies(ctx, crosscheck.Filter{})
	require.NoError(t, err)
	require.Empty(t, ds)
	_, err = report.Discrepancies(ctx, crosscheck.Filter{CardID: "xyz"})
	require.ErrorIs(t, err, crosscheck.ErrMalformed)

	_, err = crosscheck.ParseRecords([][]byte{make([]byte, 10)})
	require.ErrorIs(t, err, crosscheck.ErrMalformed)
	far := []purse.LogRecord{record(t, cardA, 1, purse.TypeLoad, 1, 1), record(t, cardA, 1000, purse.TypeDebit, 1, 0)}
	_, err = crosscheck.ParseRecords([][]byte{far[0].Bytes(), far[1].Bytes()})
	require.ErrorIs(t, err, crosscheck.ErrMalformed)
	_, err = crosscheck.ParseCardID("11")
	require.ErrorIs(t, err, crosscheck.ErrMalformed)
}

func TestHTTP(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		reps := &fakeReports{}
		s := newService(t, db, reps)
		srv := httptest.NewServer(crosscheck.Handler(s, nil))
		defer srv.Close()
		log := cardLog(t)
		reps.add(cardA, reportOf(log[0]))
		over := reportOf(log[1])
		over.Amount = 400
		reps.add(cardA, over)

		res, err := crosscheck.Upload(ctx, srv.URL, cardA, log)
		require.NoError(t, err)
		require.Equal(t, 4, res.Stored)
		require.Equal(t, []string{"overcharge@2", "unreported_debit@3", "unreported_debit@4"}, kinds(res.Discrepancies))

		res, err = crosscheck.Upload(ctx, srv.URL+"/", cardA, log)
		require.NoError(t, err)
		require.Zero(t, res.Stored, "idempotent re-upload")

		forged := log[3]
		forged.TC[0] ^= 1
		res, err = crosscheck.Upload(ctx, srv.URL, cardA, []purse.LogRecord{log[0], forged})
		require.NoError(t, err, "422 carries a result")
		require.Equal(t, 1, res.Accepted)
		require.Len(t, res.Refused, 1)

		for _, tc := range []struct {
			path, body string
			status     int
		}{
			{"/v1/cards/11/log", `{"records":[]}`, http.StatusBadRequest},
			{"/v1/cards/1122334455667788/log", `{"records":[]}`, http.StatusBadRequest},
			{"/v1/cards/1122334455667788/log", `{"records":["zz"]}`, http.StatusBadRequest},
			{"/v1/cards/1122334455667788/log", `{"records":["00"]}`, http.StatusBadRequest},
			{"/v1/cards/1122334455667788/log", `{"recs":[]}`, http.StatusBadRequest},
			{"/v1/cards/1122334455667788/log", `not json`, http.StatusBadRequest},
		} {
			rsp, err := http.Post(srv.URL+tc.path, "application/json", strings.NewReader(tc.body))
			require.NoError(t, err)
			_ = rsp.Body.Close()
			require.Equal(t, tc.status, rsp.StatusCode, "%s %s", tc.path, tc.body)
		}
		rsp, err := http.Get(srv.URL + "/v1/cards/1122334455667788/log")
		require.NoError(t, err)
		_ = rsp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, rsp.StatusCode)

		_, err = crosscheck.Upload(ctx, srv.URL+"/nowhere", cardA, log)
		require.ErrorIs(t, err, crosscheck.ErrServer)
	})
}
