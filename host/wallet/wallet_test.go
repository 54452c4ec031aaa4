package wallet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/wallet"
	"github.com/valuechip/valuechip/internal/dbtest"
)

var _ wallet.Ledger = (*ledger.SQLStore)(nil)

func newService(t *testing.T, db *sqldb.DB) (*wallet.Service, *ledger.SQLStore) {
	t.Helper()
	ctx := context.Background()
	led, err := ledger.New(ctx, db)
	require.NoError(t, err)
	s, err := wallet.New(ctx, db, led, wallet.Options{})
	require.NoError(t, err)
	return s, led
}

// balanced checks the ledger's invariant: all balances sum to zero.
func balanced(t *testing.T, led *ledger.SQLStore) {
	t.Helper()
	rep, err := led.Report(context.Background())
	require.NoError(t, err)
	for cur, v := range rep.Imbalance {
		require.Zero(t, v, cur)
	}
}

// TestCreditLevels: at every level of docs/wallet.md §2, purchases up to
// and exactly at the overdraft limit are approved; one cent more is
// refused with 51 and posts nothing.
func TestCreditLevels(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, led := newService(t, db)
		for level, limit := range map[int]int64{0: 0, 1: 5000, 2: 20000, 3: 100000} {
			for _, topup := range []int64{0, 1234} {
				t.Run(fmt.Sprintf("level %d topup %d", level, topup), func(t *testing.T) {
					holder := fmt.Sprintf("holder-%d-%d", level, topup)
					w, err := s.Open(ctx, holder, level)
					require.NoError(t, err)
					require.Equal(t, wallet.Wallet{Holder: holder, Level: level, Limit: limit, Currency: "978", Available: limit,
						CreatedAt: w.CreatedAt}, w)
					if topup > 0 {
						out, err := s.TopUp(ctx, holder, topup, "bank", "t1")
						require.NoError(t, err)
						require.Equal(t, topup, out.Balance)
					}
					spend := topup + limit // everything down to −limit
					if spend > 1 {
						out, err := s.Purchase(ctx, holder, "SHOP01", spend-1, "p1")
						require.NoError(t, err)
						require.Equal(t, wallet.CodeApproved, out.Code)
						require.Equal(t, int64(1), out.Available)
					}
					if spend > 0 {
						out, err := s.Purchase(ctx, holder, "SHOP01", min(spend, 1), "p2")
						require.NoError(t, err, "exactly at the limit")
						require.True(t, out.Approved)
						require.Equal(t, -limit, out.Balance)
						require.Zero(t, out.Available)
					}
					out, err := s.Purchase(ctx, holder, "SHOP01", 1, "p3")
					require.ErrorIs(t, err, wallet.ErrInsufficientFunds, "one cent more")
					require.Equal(t, wallet.CodeInsufficientFunds, out.Code)
					require.Equal(t, "51", wallet.ResponseCode(err))
					require.False(t, out.Approved)
					_, err = led.PostingByKey(ctx, "wal/"+holder+"/purchase/p3")
					require.ErrorIs(t, err, ledger.ErrNotFound, "nothing posted on refusal")
					w, err = s.Show(ctx, holder)
					require.NoError(t, err)
					require.Equal(t, -limit, w.Balance)
					require.Zero(t, w.Available)

					// A top-up of one cent makes the same request go through.
					_, err = s.TopUp(ctx, holder, 1, "bank", "t2")
					require.NoError(t, err)
					out, err = s.Purchase(ctx, holder, "SHOP01", 1, "p3")
					require.NoError(t, err)
					require.Equal(t, -limit, out.Balance)
				})
			}
		}
		balanced(t, led)
		m, err := led.Balance(ctx, ledger.AccountID(ledger.KindMerchant, "SHOP01", "978"))
		require.NoError(t, err)
		require.Equal(t, -int64(2*(0+5000+20000+100000)+4*1234+4*2), m, "the merchant is owed every approved purchase")
	})
}

func TestIdempotentPurchase(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, _ := newService(t, db)
		_, err := s.Open(ctx, "alice", 1)
		require.NoError(t, err)
		first, err := s.Purchase(ctx, "alice", "SHOP01", 1200, "order-1")
		require.NoError(t, err)
		require.False(t, first.Replayed)
		again, err := s.Purchase(ctx, "alice", "SHOP01", 1200, "order-1")
		require.NoError(t, err)
		require.True(t, again.Replayed)
		require.Equal(t, first.PostingID, again.PostingID)
		require.Equal(t, int64(-1200), again.Balance, "charged once")

		out, err := s.Purchase(ctx, "alice", "SHOP01", 1300, "order-1")
		require.ErrorIs(t, err, wallet.ErrDuplicate)
		require.Equal(t, wallet.CodeDuplicate, out.Code)
		out, err = s.Purchase(ctx, "alice", "SHOP02", 1200, "order-1")
		require.ErrorIs(t, err, wallet.ErrDuplicate)
		require.Equal(t, int64(-1200), out.Balance)

		// Reopening at the same level is a no-op, at another refused.
		w, err := s.Open(ctx, "alice", 1)
		require.NoError(t, err)
		require.Equal(t, int64(-1200), w.Balance)
		_, err = s.Open(ctx, "alice", 2)
		require.ErrorIs(t, err, wallet.ErrDuplicate)

		ws, err := s.List(ctx)
		require.NoError(t, err)
		require.Len(t, ws, 1)
		require.Equal(t, "alice", ws[0].Holder)
	})
}

// TestConcurrentPurchases: 20 purchases of 7 race for the last 100 cents
// of credit; exactly 14 get through, the balance lands at −limit + 2, and
// no purchase is half-done.
func TestConcurrentPurchases(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, led := newService(t, db)
		_, err := s.Open(ctx, "bob", 1)
		require.NoError(t, err)
		_, err = s.Purchase(ctx, "bob", "SHOP01", 4900, "big")
		require.NoError(t, err)
		var (
			wg                 sync.WaitGroup
			mu                 sync.Mutex
			approved, declined int
			other              []error
		)
		for i := range 20 {
			wg.Go(func() {
				_, err := s.Purchase(ctx, "bob", fmt.Sprintf("SHOP%02d", i%3), 7, fmt.Sprintf("race-%d", i))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					approved++
				case wallet.ResponseCode(err) == wallet.CodeInsufficientFunds:
					declined++
				default:
					other = append(other, err)
				}
			})
		}
		wg.Wait()
		require.Empty(t, other)
		require.Equal(t, 14, approved)
		require.Equal(t, 6, declined)
		w, err := s.Show(ctx, "bob")
		require.NoError(t, err)
		require.Equal(t, int64(-4998), w.Balance)
		require.Equal(t, int64(2), w.Available)
		balanced(t, led)
	})
}

func TestErrors(t *testing.T) {
	db := dbtest.Open(t, "sqlite")
	ctx := context.Background()
	s, led := newService(t, db)
	_, err := s.Open(ctx, "carol", 2)
	require.NoError(t, err)
	for _, tc := range []struct {
		name   string
		holder string
		merch  string
		amount int64
		key    string
		code   string
	}{
		{"unknown wallet", "dave", "SHOP01", 1, "k", "14"},
		{"zero amount", "carol", "SHOP01", 0, "k", "13"},
		{"negative amount", "carol", "SHOP01", -5, "k", "13"},
		{"huge amount", "carol", "SHOP01", wallet.MaxAmount + 1, "k", "13"},
		{"holder with a colon", "car:ol", "SHOP01", 1, "k", "30"},
		{"empty merchant", "carol", "", 1, "k", "30"},
		{"empty key", "carol", "SHOP01", 1, "", "30"},
		{"key with a space", "carol", "SHOP01", 1, "a b", "30"},
		{"above the limit", "carol", "SHOP01", 20001, "k", "51"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := s.Purchase(ctx, tc.holder, tc.merch, tc.amount, tc.key)
			require.Error(t, err)
			require.Equal(t, tc.code, out.Code)
			require.Equal(t, tc.code, wallet.ResponseCode(err))
		})
	}
	_, err = s.Open(ctx, "erin", 7)
	require.ErrorIs(t, err, wallet.ErrInvalid)
	_, err = s.TopUp(ctx, "dave", 1, "bank", "k")
	require.ErrorIs(t, err, wallet.ErrUnknownWallet)
	_, err = s.TopUp(ctx, "carol", 0, "bank", "k")
	require.ErrorIs(t, err, wallet.ErrInvalidAmount)
	_, err = s.Show(ctx, "dave")
	require.ErrorIs(t, err, wallet.ErrUnknownWallet)
	_, err = wallet.New(ctx, db, led, wallet.Options{Levels: wallet.Levels{1: -1}})
	require.ErrorIs(t, err, wallet.ErrInvalid)
	_, err = wallet.New(ctx, db, led, wallet.Options{Currency: "EUR"})
	require.ErrorIs(t, err, wallet.ErrInvalid)

	// Custom levels.
	s2, err := wallet.New(ctx, db, led, wallet.Options{Levels: wallet.Levels{0: 0, 9: 77}})
	require.NoError(t, err)
	w, err := s2.Open(ctx, "frank", 9)
	require.NoError(t, err)
	require.Equal(t, int64(77), w.Available)
	require.Equal(t, wallet.Levels{0: 0, 9: 77}, s2.Levels())
}

func TestHTTP(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s, _ := newService(t, db)
		_, err := s.Open(ctx, "alice", 1)
		require.NoError(t, err)
		srv := httptest.NewServer(wallet.Handler(s, nil))
		defer srv.Close()
		for _, tc := range []struct {
			path, body string
			status     int
			want       string
		}{
			{"/v1/wallets/alice/purchases", `{"key":"o1","merchant":"SHOP01","amount":4999}`, 200, `"code":"00"`},
			{"/v1/wallets/alice/purchases", `{"key":"o1","merchant":"SHOP01","amount":4999}`, 200, `"replayed":true`},
			{"/v1/wallets/alice/purchases", `{"key":"o2","merchant":"SHOP01","amount":1}`, 200, `"balance":-5000`},
			{"/v1/wallets/alice/purchases", `{"key":"o3","merchant":"SHOP01","amount":1}`, 402, `"code":"51"`},
			{"/v1/wallets/alice/purchases", `{"key":"o1","merchant":"SHOP01","amount":5}`, 409, `"code":"94"`},
			{"/v1/wallets/nobody/purchases", `{"key":"o1","merchant":"SHOP01","amount":5}`, 404, `"code":"14"`},
			{"/v1/wallets/alice/purchases", `{"key":"o4","merchant":"SHOP01","amount":0}`, 400, `"code":"13"`},
			{"/v1/wallets/alice/purchases", `{"key":"o4","merchant":"SHOP01","amount":"1"}`, 400, `"code":"30"`},
			{"/v1/wallets/alice/purchases", `{"key":"o4","merchant":"SHOP01","amount":1,"x":1}`, 400, `"code":"30"`},
		} {
			rsp, err := http.Post(srv.URL+tc.path, "application/json", strings.NewReader(tc.body))
			require.NoError(t, err)
			body := readAll(t, rsp)
			require.Equal(t, tc.status, rsp.StatusCode, "%s → %s", tc.body, body)
			require.Contains(t, body, tc.want, tc.body)
		}
		rsp, err := http.Get(srv.URL + "/v1/wallets/alice")
		require.NoError(t, err)
		require.Equal(t, 200, rsp.StatusCode)
		require.Contains(t, readAll(t, rsp), `"balance":-5000`)
		rsp, err = http.Get(srv.URL + "/v1/wallets/nobody")
		require.NoError(t, err)
		require.Equal(t, 404, rsp.StatusCode)
		_ = readAll(t, rsp)
	})
}

func readAll(t *testing.T, rsp *http.Response) string {
	t.Helper()
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestConcurrentPurchasesManyServers races purchases through four
// independent services, each with its own database handle and ledger (as
// four server processes would be): no in-process lock is shared, so only
// the database transaction keeps the limit.
func TestConcurrentPurchasesManyServers(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "w.db")
			if engine == "postgres" {
				dsn = dbtest.PostgresDSN(t)
			}
			var svcs []*wallet.Service
			for range 4 {
				s, _ := newService(t, dbtest.OpenDSN(t, dsn))
				svcs = append(svcs, s)
			}
			_, err := svcs[0].Open(ctx, "carol", 2)
			require.NoError(t, err)
			_, err = svcs[0].Purchase(ctx, "carol", "SHOP01", 19950, "big")
			require.NoError(t, err)
			var (
				wg                 sync.WaitGroup
				mu                 sync.Mutex
				approved, declined int
				other              []error
			)
			for i := range 20 {
				wg.Go(func() {
					_, err := svcs[i%4].Purchase(ctx, "carol", "SHOP01", 3, fmt.Sprintf("race-%d", i))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						approved++
					case wallet.ResponseCode(err) == wallet.CodeInsufficientFunds:
						declined++
					default:
						other = append(other, err)
					}
				})
			}
			wg.Wait()
			require.Empty(t, other)
			require.Equal(t, 16, approved, "50 cents left, 16 × 3 fit")
			require.Equal(t, 4, declined)
			w, err := svcs[3].Show(ctx, "carol")
			require.NoError(t, err)
			require.Equal(t, int64(-19998), w.Balance)
			require.Equal(t, int64(2), w.Available)
		})
	}
}
