package main

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/loadgen"
)

// bench server drives an in-process server on SQLite (and PostgreSQL with
// pgbench when VALUECHIP_PG_DSN is set) and verifies the ledger; a short run
// here only checks the wiring and the output.
func TestBenchServerCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers")
	}
	ctx := context.Background()
	pg := os.Getenv("VALUECHIP_PG_DSN")
	out, errOut, err := cli(t, ctx, nil, "bench", "server", "--runs", "1", "--duration", "300ms", "--terminals", "4",
		"--cards", "2", "--pgbench-clients", "2", "--json")
	require.NoError(t, err, errOut)
	var rep loadgen.BenchReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.True(t, rep.Verified)
	require.Len(t, rep.SQLite.Rates, 1)
	require.Positive(t, rep.SQLite.Median)
	require.Contains(t, errOut, "run 1/1 sqlite")
	if pg == "" {
		require.Nil(t, rep.Postgres)
		require.NotEmpty(t, rep.Note)
		return
	}
	require.NotNil(t, rep.Postgres)
	require.Positive(t, rep.Postgres.Median)
	require.NotNil(t, rep.PGBench)
	if rep.PGBench.Note == "" {
		require.Positive(t, rep.PGBench.Median)
		require.Positive(t, rep.Ratio)
	}

	out, _, err = cli(t, ctx, nil, "bench", "server", "--runs", "1", "--duration", "200ms", "--terminals", "2", "--pg", "")
	require.NoError(t, err)
	require.Contains(t, out, "advices, SQLite")
}
