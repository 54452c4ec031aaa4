package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// TestServerCLI runs `valuechip server` in-process: it prints ready and
// writes the ready file, a registered terminal signs on with its TMK and
// echoes, /metrics answers, cancelling stops it cleanly, and `server report`
// shows a balanced ledger — on both engines.
func TestServerCLI(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			dir, ringPath, kekPath, _ := terminalEnv(t)
			dsn := "sqlite:" + filepath.Join(dir, "server.db")
			if engine == "postgres" {
				dsn = dbtest.PostgresDSN(t)
			}
			termFile := filepath.Join(dir, "term.json")
			_, _, err := cli(t, context.Background(), nil, "terminal", "register", "--db", dsn, "--keyring", ringPath,
				"--kek-file", kekPath, "--id", "TERM0001", "--merchant", "MERCHANT0000001", "--server", "127.0.0.1:0", "--out", termFile)
			require.NoError(t, err)

			ml, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			metricsAddr := ml.Addr().String()
			require.NoError(t, ml.Close())
			ready := filepath.Join(dir, "ready")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			var stdout string
			go func() {
				var err error
				stdout, _, err = cli(t, ctx, nil, "server", "--db", dsn, "--keyring", ringPath, "--kek-file", kekPath,
					"--listen", "127.0.0.1:0", "--metrics", metricsAddr, "--ready-file", ready, "--log-format", "json")
				done <- err
			}()
			var addr string
			require.Eventually(t, func() bool {
				b, err := os.ReadFile(ready)
				addr = strings.TrimSpace(string(b))
				return err == nil && addr != ""
			}, 30*time.Second, 20*time.Millisecond, "ready file")

			var tf struct {
				TMK string `json:"tmk"`
			}
			b, err := os.ReadFile(termFile)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &tf))
			tmk, err := hex.DecodeString(tf.TMK)
			require.NoError(t, err)
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			c := iso8583.NewClient(conn, 0)
			msg, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: "0800", Transmission: "1121080000", STAN: "000001",
				TerminalID: "TERM0001", NetworkCode: iso8583.NMISignOn})
			require.NoError(t, err)
			resp, err := c.Send(ctx, msg, iso8583.Key(tmk))
			require.NoError(t, err)
			rc, _ := resp.GetString(iso8583.DEResponseCode)
			require.Equal(t, "00", rc)
			kb, _ := resp.GetBytes(iso8583.DEKeyData)
			keys, err := iso8583.DecodeSignOnKeys(kb, iso8583.Key(tmk))
			require.NoError(t, err)
			echo, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: "0800", Transmission: "1121080001", STAN: "000002",
				TerminalID: "TERM0001", NetworkCode: iso8583.NMIEcho})
			require.NoError(t, err)
			resp, err = c.Send(ctx, echo, keys.WorkingKey)
			require.NoError(t, err)
			rc, _ = resp.GetString(iso8583.DEResponseCode)
			require.Equal(t, "00", rc)
			require.NoError(t, c.Close())

			hr, err := http.Get("http://" + metricsAddr + "/metrics")
			require.NoError(t, err)
			body, _ := io.ReadAll(hr.Body)
			_ = hr.Body.Close()
			require.Contains(t, string(body), `valuechip_server_requests_total{code="00",mti="0800"} 2`)
			require.Contains(t, string(body), "valuechip_server_loads_in_progress 0")

			// The same listener serves the rest of the HTTP side.
			for _, c := range []struct {
				method, path, body string
				status             int
				want               string
			}{
				{"GET", "/healthz", "", http.StatusOK, "ok"},
				{"GET", "/v1/wallets/nobody", "", http.StatusNotFound, `"code":"14"`},
				{"POST", "/v1/register", "{}", http.StatusBadRequest, `"malformed"`},
				{"POST", "/v1/cards/1122334455667788/log", `{"records":[]}`, http.StatusBadRequest, "error"},
				{"GET", "/nowhere", "", http.StatusNotFound, ""},
			} {
				req, err := http.NewRequestWithContext(ctx, c.method, "http://"+metricsAddr+c.path, strings.NewReader(c.body))
				require.NoError(t, err)
				req.Header.Set("Content-Type", "application/json")
				hr, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				b, _ := io.ReadAll(hr.Body)
				_ = hr.Body.Close()
				require.Equal(t, c.status, hr.StatusCode, "%s %s: %s", c.method, c.path, b)
				require.Contains(t, strings.ReplaceAll(string(b), " ", ""), c.want, "%s %s", c.method, c.path)
			}
			hr, err = http.Get("http://" + metricsAddr + "/metrics")
			require.NoError(t, err)
			body, _ = io.ReadAll(hr.Body)
			_ = hr.Body.Close()
			require.Contains(t, string(body), `valuechip_server_http_requests_total{code="200",route="healthz"} 1`)
			require.Contains(t, string(body), `valuechip_server_http_requests_total{code="404",route="other"} 1`)

			cancel()
			require.NoError(t, <-done)
			require.Contains(t, stdout, "ready: listening on "+addr)

			out, _, err := cli(t, context.Background(), nil, "server", "report", "--db", dsn)
			require.NoError(t, err)
			require.Contains(t, out, "imbalance: 0")
			require.Contains(t, out, "DISCREPANCIES: none")
			require.Contains(t, out, "WALLETS")
			out, _, err = cli(t, context.Background(), nil, "report", "--db", dsn, "--json")
			require.NoError(t, err)
			require.Contains(t, out, `"imbalance": {}`)
			require.Contains(t, out, `"discrepancies": []`)
			require.Contains(t, out, `"wallets": []`)
		})
	}
}

func TestServerCLIUsage(t *testing.T) {
	_, _, err := cli(t, context.Background(), nil, "server", "--seed-ttl", "48h")
	require.ErrorContains(t, err, "--seed-ttl")
	_, _, err = cli(t, context.Background(), nil, "server", "--log-format", "xml")
	require.ErrorContains(t, err, "--log-format")
	_, _, err = cli(t, context.Background(), nil, "server", "--metrics", "127.0.0.1:1", "--http", "127.0.0.1:2")
	require.ErrorContains(t, err, "--metrics")
	_, _, err = cli(t, context.Background(), nil, "server", "--wallet-levels", "1=x")
	require.ErrorContains(t, err, "--wallet-levels")
	// The wallet and admin routes are never open to the network unguarded.
	t.Setenv("VALUECHIP_HTTP_TOKEN", "")
	_, _, err = cli(t, context.Background(), nil, "server", "--http", "0.0.0.0:8080")
	require.ErrorContains(t, err, "not a loopback address")
	tok := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tok, []byte("short\n"), 0o600))
	_, _, err = cli(t, context.Background(), nil, "server", "--http", "0.0.0.0:8080", "--http-token-file", tok)
	require.ErrorContains(t, err, "at least 16")
	require.NoError(t, os.Chmod(tok, 0o644))
	_, _, err = cli(t, context.Background(), nil, "server", "--http-token-file", tok)
	require.ErrorContains(t, err, "accessible to group or others")
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:80": true, "127.1.2.3:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.1:8080": false, "example.com:80": false, "nonsense": false,
	} {
		require.Equal(t, want, loopback(addr), addr)
	}
}
