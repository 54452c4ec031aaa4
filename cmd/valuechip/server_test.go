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

			cancel()
			require.NoError(t, <-done)
			require.Contains(t, stdout, "ready: listening on "+addr)

			out, _, err := cli(t, context.Background(), nil, "server", "report", "--db", dsn)
			require.NoError(t, err)
			require.Contains(t, out, "imbalance: 0")
			out, _, err = cli(t, context.Background(), nil, "server", "report", "--db", dsn, "--json")
			require.NoError(t, err)
			require.Contains(t, out, `"imbalance": {}`)
		})
	}
}

func TestServerCLIUsage(t *testing.T) {
	_, _, err := cli(t, context.Background(), nil, "server", "--seed-ttl", "48h")
	require.ErrorContains(t, err, "--seed-ttl")
	_, _, err = cli(t, context.Background(), nil, "server", "--log-format", "xml")
	require.ErrorContains(t, err, "--log-format")
}
