package server_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// TestRefreshOnNotify: a terminal registered in the database by another
// process is refused (58, from the in-memory whitelist) until the server is
// told to refresh; after POST /v1/admin/refresh its sign-on succeeds — the
// "refreshed on change" half of seed 002, with a periodic refresh far away.
func TestRefreshOnNotify(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			svc := openService(t, engine, func(o *server.Options) {
				o.ValidityMode, o.ValidityRefresh = "both", time.Hour
			})
			iso, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			hl, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			sctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- svc.Serve(sctx, iso, hl) }()
			t.Cleanup(func() { cancel(); <-done; _ = svc.Close() })

			// Registered after the lists were loaded, as `valuechip terminal
			// register` in another process does.
			_, tmk, err := svc.Registry.RegisterTerminal(ctx, "TERM0009", "MERCHANT0000009")
			require.NoError(t, err)
			signOn := func() error {
				conn, err := net.Dial("tcp", iso.Addr().String())
				require.NoError(t, err)
				c := iso8583.NewClient(conn, 0)
				defer c.Close()
				msg, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: iso8583.MTINetworkRequest,
					Transmission: time.Now().UTC().Format("0102150405"), STAN: "000001", TerminalID: "TERM0009",
					NetworkCode: iso8583.NMISignOn})
				require.NoError(t, err)
				rsp, err := c.Send(ctx, msg, tmk)
				if err != nil {
					return err
				}
				var nm iso8583.NetworkManagement
				require.NoError(t, iso8583.Unmarshal(rsp, &nm))
				require.Equal(t, iso8583.RCApproved, nm.ResponseCode)
				return nil
			}
			err = signOn()
			var ref *iso8583.RefusalError
			require.True(t, errors.As(err, &ref), "want an unauthenticated refusal, got %v", err)
			require.Equal(t, iso8583.RCNotPermittedTerm, ref.Code)
			require.ErrorIs(t, err, iso8583.ErrNoMAC)

			require.NoError(t, server.NotifyRefresh(ctx, "http://"+hl.Addr().String(), ""))
			require.NoError(t, signOn())
			require.ErrorContains(t, server.NotifyRefresh(ctx, "http://"+iso.Addr().String(), ""), "notify")
		})
	}
}

// TestOperatorToken: with Options.HTTPToken set, the wallet and admin routes
// answer 401 without the bearer token (or with a wrong one) and work with
// it; health, metrics and the device-facing routes stay open.
func TestOperatorToken(t *testing.T) {
	const token = "operator-token-0123456789"
	ctx := context.Background()
	svc := openService(t, "sqlite", func(o *server.Options) { o.HTTPToken = token })
	t.Cleanup(func() { _ = svc.Close() })
	_, err := svc.Wallet.Open(ctx, "alice", 1)
	require.NoError(t, err)
	srv := httptest.NewServer(svc.Handler())
	t.Cleanup(srv.Close)
	do := func(method, path, auth string) int {
		req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, strings.NewReader(`{"key":"k1","merchant":"SHOP01","amount":100}`))
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		return res.StatusCode
	}
	for _, c := range []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/v1/wallets/alice", "", http.StatusUnauthorized},
		{"POST", "/v1/wallets/alice/purchases", "Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"POST", "/v1/wallets/alice/purchases", token, http.StatusUnauthorized}, // not a bearer credential
		{"POST", "/v1/wallets/alice/purchases", "Bearer " + token, http.StatusOK},
		{"POST", server.PathRefresh, "", http.StatusUnauthorized},
		{"POST", server.PathRefresh, "Bearer " + token, http.StatusNoContent},
		{"GET", server.PathHealth, "", http.StatusOK},
		{"GET", server.PathMetrics, "", http.StatusOK},
	} {
		require.Equal(t, c.want, do(c.method, c.path, c.auth), "%s %s %q", c.method, c.path, c.auth)
	}
	w, err := svc.Wallet.Show(ctx, "alice")
	require.NoError(t, err)
	require.Equal(t, int64(-100), w.Balance, "only the authorised purchase was posted")
	require.NoError(t, server.NotifyRefresh(ctx, srv.URL, token))
	require.ErrorContains(t, server.NotifyRefresh(ctx, srv.URL, ""), "401")
}
