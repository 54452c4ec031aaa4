package wallet_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/valuechip/valuechip/host/wallet"
)

// echo approves every purchase it is given.
type echo struct{}

func (echo) Purchase(_ context.Context, holder, merchant string, amount int64, _ string) (wallet.Outcome, error) {
	return wallet.Outcome{Code: wallet.CodeApproved, Approved: true, Holder: holder, Party: merchant, Amount: amount}, nil
}

func (echo) Show(_ context.Context, holder string) (wallet.Wallet, error) {
	return wallet.Wallet{Holder: holder}, nil
}

// FuzzPurchaseHandler feeds arbitrary holders and bodies to the purchase
// route: it answers JSON with a known status and never panics.
func FuzzPurchaseHandler(f *testing.F) {
	f.Add("alice", `{"key":"o1","merchant":"SHOP01","amount":4999}`)
	f.Add("alice", `{"key":"o1","merchant":"SHOP01","amount":"1"}`)
	f.Add("", `{}`)
	f.Add("a", `{"amount":-9223372036854775808}`)
	h := wallet.Handler(echo{}, nil)
	f.Fuzz(func(t *testing.T, holder, body string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/wallets/"+url.PathEscape(holder)+"/purchases", strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest:
			if !strings.Contains(w.Body.String(), `"code"`) {
				t.Fatalf("no code in %q", w.Body.String())
			}
		case http.StatusNotFound, http.StatusMovedPermanently, http.StatusTemporaryRedirect:
		default:
			t.Fatalf("status %d", w.Code)
		}
	})
}
