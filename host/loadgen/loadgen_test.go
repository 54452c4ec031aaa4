package loadgen

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/internal/dbtest"
)

func dsnFor(t *testing.T, engine string) string {
	if engine == "postgres" {
		return dbtest.PostgresDSN(t)
	}
	return filepath.Join(t.TempDir(), "ledger.db")
}

// Two runs against a real server on each engine: every advice is
// acknowledged, the ATCs go on from run to run, and the ledger holds each
// acknowledged advice exactly once; a forged acknowledgement is caught.
func TestRunAndVerify(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			srv, err := StartServer(ctx, dsnFor(t, engine), ServerOptions{})
			require.NoError(t, err)
			defer func() { require.NoError(t, srv.Close()) }()
			terms, err := Provision(ctx, srv.Service.Registry, 6, 2, srv.KeyVersion)
			require.NoError(t, err)
			g, err := New(Config{Addr: srv.Addr, Terminals: terms, TCMaster: srv.TCMaster, Amount: 3, Prebuild: 5})
			require.NoError(t, err)
			total := int64(0)
			for range 2 {
				res, err := g.Run(ctx, 300*time.Millisecond)
				require.NoError(t, err)
				require.Positive(t, res.Acked)
				require.Equal(t, map[string]int64{iso8583.RCApproved: res.Sent}, res.Codes)
				total += res.Acked
			}
			require.Equal(t, int(total), g.Acked())
			require.NoError(t, g.Verify(ctx, srv.Service.Ledger))

			// Each card's ATCs are 1..n, no gap.
			for _, tt := range g.terms {
				for _, c := range tt.cards {
					cs, err := srv.Service.Ledger.Card(ctx, c.hex)
					require.NoError(t, err)
					require.Empty(t, cs.Gaps)
					require.Equal(t, c.atc, cs.LastATC)
				}
			}

			g.acked = append(g.acked, sent{card: g.terms[0].cards[0].hex, atc: 9999, digest: "00", amount: 3})
			require.ErrorIs(t, g.Verify(ctx, srv.Service.Ledger), ErrVerify)
		})
	}
}

// BenchmarkServer: timed runs of 3 s per engine against the in-process
// server (profile with -cpuprofile); b.N is ignored, $LOADGEN_RUNS runs
// (default 1), the figures of the last reported.
func BenchmarkServer(b *testing.B) {
	runs, _ := strconv.Atoi(os.Getenv("LOADGEN_RUNS"))
	runs = max(runs, 1)
	for _, engine := range dbtest.Engines {
		b.Run(engine, func(b *testing.B) {
			ctx := context.Background()
			dsn := "file:" + filepath.Join(b.TempDir(), "ledger.db") + os.Getenv("LOADGEN_SQLITE_QUERY")
			if engine == "postgres" {
				dsn = dbtest.PostgresDSN(b)
			}
			srv, err := StartServer(ctx, dsn, ServerOptions{})
			require.NoError(b, err)
			defer func() { require.NoError(b, srv.Close()) }()
			terms, err := Provision(ctx, srv.Service.Registry, terms0(), 4, srv.KeyVersion)
			require.NoError(b, err)
			g, err := New(Config{Addr: srv.Addr, Terminals: terms, TCMaster: srv.TCMaster, Prebuild: 400})
			require.NoError(b, err)
			b.ResetTimer()
			for range runs {
				res, err := g.Run(ctx, 3*time.Second)
				require.NoError(b, err)
				b.Logf("%.0f advices/s, %.0f CPU µs/advice", res.PerSecond, float64(res.CPU.Microseconds())/float64(res.Acked))
				b.ReportMetric(res.PerSecond, "advices/s")
				b.ReportMetric(float64(res.CPU.Microseconds())/float64(res.Acked), "cpu-µs/advice")
			}
		})
	}
}

func TestPGBenchOutput(t *testing.T) {
	out := []byte("pgbench (15.8)\ntransaction type: <builtin: simple update>\nnumber of clients: 8\n" +
		"latency average = 1.652 ms\ninitial connection time = 10.3 ms\ntps = 4844.123456 (without initial connection time)\n")
	m := tpsLine.FindSubmatch(out)
	require.NotNil(t, m)
	require.Equal(t, "4844.123456", string(m[1]))
	require.Nil(t, tpsLine.FindSubmatch([]byte("latency average = 1 ms\n")))
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, 2, 3}))
	require.Zero(t, median(nil))
	if p := findPGBench(); p != "" {
		_, err := os.Stat(p)
		require.NoError(t, err)
	}
}

// terms0 is the number of terminals of BenchmarkServer: $LOADGEN_TERMINALS,
// 64 by default.
func terms0() int {
	n, _ := strconv.Atoi(os.Getenv("LOADGEN_TERMINALS"))
	if n <= 0 {
		return 64
	}
	return n
}
