package crosscheck_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/crosscheck"
)

// acceptAll is a Submitter that stores nothing.
type acceptAll struct{}

func (acceptAll) Submit(_ context.Context, id purse.CardID, recs []purse.LogRecord) (*crosscheck.Result, error) {
	return &crosscheck.Result{CardID: "X", Accepted: len(recs)}, nil
}

// FuzzHandler feeds arbitrary card IDs and bodies to the upload handler:
// it answers 200 or 400 (404 or a redirect for paths that are not an
// upload's), never panics, and passes on only well-formed logs.
func FuzzHandler(f *testing.F) {
	f.Add("1122334455667788", `{"records":["00000002060000015E0000122A0978202506011035005445524D3030303100000007A83E5F2165CC7D5FC95CBD83EFEC488F121B679AA83D1FB0"]}`)
	f.Add("1122334455667788", `{"records":[]}`)
	f.Add("zz", `{}`)
	f.Add("1122334455667788", `{"records":["00"]}`)
	h := crosscheck.Handler(acceptAll{}, nil)
	f.Fuzz(func(t *testing.T, card, body string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/cards/"+url.PathEscape(card)+"/log", strings.NewReader(body))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusTemporaryRedirect, http.StatusMovedPermanently:
		default:
			t.Fatalf("status %d", w.Code)
		}
	})
}

// FuzzParseRecords: every accepted upload is 1..MaxRecords records whose
// encoding round-trips.
func FuzzParseRecords(f *testing.F) {
	rec := make([]byte, purse.LogRecordLen)
	rec[3], rec[4] = 1, purse.TypeDebit
	f.Add(rec, 1)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		n = n % 20
		if n < 0 {
			n = -n
		}
		raw := make([][]byte, n)
		for i := range raw {
			raw[i] = b
		}
		recs, err := crosscheck.ParseRecords(raw)
		if err != nil {
			return
		}
		if len(recs) != n || n == 0 || n > crosscheck.MaxRecords {
			t.Fatalf("%d records from %d", len(recs), n)
		}
		for _, r := range recs {
			if string(r.Bytes()) != string(b) {
				t.Fatal("record does not round-trip")
			}
		}
	})
}
