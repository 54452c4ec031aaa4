package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// openService opens a Service on a fresh database of engine with a
// development key ring.
func openService(t *testing.T, engine string, opts ...func(*server.Options)) *server.Service {
	t.Helper()
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "server.db")
	if engine == "postgres" {
		dsn = dbtest.PostgresDSN(t)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	kek, err := keystore.NewKEK(raw)
	require.NoError(t, err)
	kekFile := filepath.Join(dir, "kek.hex")
	require.NoError(t, os.WriteFile(kekFile, []byte(hex.EncodeToString(raw)), 0o600))
	ring := filepath.Join(dir, "keyring.json")
	_, err = keystore.Init(ring, kek, keystore.InitOptions{DevMasters: true})
	require.NoError(t, err)
	o := server.Options{DB: dsn, Keyring: ring, KEKFile: kekFile, PurseDigest: [32]byte{1}, Logger: slog.New(slog.DiscardHandler)}
	for _, f := range opts {
		f(&o)
	}
	svc, err := server.Open(context.Background(), o)
	require.NoError(t, err)
	return svc
}

// TestHTTPSide: one listener serves metrics, health, provisioning, card log
// uploads and wallets on the service's database; the full report adds the
// discrepancies and wallet totals; Serve stops both sides on cancel — on
// both engines.
func TestHTTPSide(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			svc := openService(t, engine)
			require.NotNil(t, svc.Provision)
			_, err := svc.Wallet.Open(ctx, "alice", 1) // credit limit 5000
			require.NoError(t, err)

			iso, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			hl, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			base := "http://" + hl.Addr().String()
			sctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- svc.Serve(sctx, iso, hl) }()

			do := func(method, path, body string) (int, string) {
				t.Helper()
				req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
				require.NoError(t, err)
				req.Header.Set("Content-Type", "application/json")
				res, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				defer res.Body.Close()
				b, err := io.ReadAll(res.Body)
				require.NoError(t, err)
				return res.StatusCode, string(b)
			}
			for _, c := range []struct {
				method, path, body string
				status             int
				want               string
			}{
				{"GET", "/healthz", "", http.StatusOK, "ok"},
				{"POST", "/healthz", "", http.StatusMethodNotAllowed, ""},
				{"POST", "/v1/wallets/alice/purchases", `{"key":"k1","merchant":"SHOP01","amount":5000}`, http.StatusOK, `"code":"00"`},
				{"POST", "/v1/wallets/alice/purchases", `{"key":"k2","merchant":"SHOP01","amount":1}`, http.StatusPaymentRequired, `"code":"51"`},
				{"GET", "/v1/wallets/alice", "", http.StatusOK, `"balance":-5000`},
				{"POST", "/v1/register", `{"kdd":"zz"}`, http.StatusBadRequest, `"code":"malformed"`},
				{"POST", "/v1/session/0123", `{}`, http.StatusNotFound, `"code":"unknown"`},
				{"POST", "/v1/cards/XYZ/log", `{"records":["00"]}`, http.StatusBadRequest, "error"},
				{"GET", "/v2/anything", "", http.StatusNotFound, ""},
			} {
				status, body := do(c.method, c.path, c.body)
				require.Equal(t, c.status, status, "%s %s: %s", c.method, c.path, body)
				require.Contains(t, strings.ReplaceAll(body, " ", ""), c.want, "%s %s", c.method, c.path)
			}
			status, metrics := do("GET", "/metrics", "")
			require.Equal(t, http.StatusOK, status)
			for _, want := range []string{
				`valuechip_server_http_requests_total{code="200",route="healthz"} 1`,
				`valuechip_server_http_requests_total{code="200",route="wallets"} 2`,
				`valuechip_server_http_requests_total{code="402",route="wallets"} 1`,
				`valuechip_server_http_requests_total{code="400",route="provision"} 1`,
				`valuechip_server_http_requests_total{code="400",route="cards"} 1`,
				`valuechip_server_http_requests_total{code="404",route="other"} 1`,
				`valuechip_server_http_requests_total{code="404",route="provision"} 1`,
				`valuechip_server_loads_in_progress 0`,
			} {
				require.Contains(t, metrics, want)
			}

			r, err := svc.Report(ctx)
			require.NoError(t, err)
			require.Empty(t, r.Discrepancies)
			require.Equal(t, []server.WalletTotals{{Currency: "978", Wallets: 1, Balance: -5000, CreditDrawn: 5000, Limit: 5000}}, r.Wallets)
			var buf bytes.Buffer
			require.NoError(t, server.WriteFullReport(&buf, r, true))
			var doc map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(buf.Bytes(), &doc))
			for _, k := range []string{"balances", "merchants", "in_progress", "imbalance", "discrepancies", "wallets"} {
				require.Contains(t, doc, k)
			}
			require.JSONEq(t, `[]`, string(doc["discrepancies"]))
			buf.Reset()
			require.NoError(t, server.WriteFullReport(&buf, r, false))
			require.Contains(t, buf.String(), "imbalance: 978 0.00")
			require.Contains(t, buf.String(), "DISCREPANCIES: none")
			require.Regexp(t, `978 +1 +-50\.00 +50\.00 +50\.00 +0\.00`, buf.String())

			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Fatal("Serve did not return after cancel")
			}
			_, err = http.Get(base + "/healthz")
			require.Error(t, err, "the HTTP side is closed")

			// A database that does not answer makes /healthz say so.
			require.NoError(t, svc.DB.Close())
			rec := httptest.NewRecorder()
			svc.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			require.Equal(t, http.StatusServiceUnavailable, rec.Code)
			svc.Provision.Close()
		})
	}
}
