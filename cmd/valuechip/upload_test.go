package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/crosscheck"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/terminal"
)

type devSource struct{}

func (devSource) Masters(context.Context) (wire.Keys, error) { return terminal.DevMasters(), nil }

// loadOnly: the terminals reported the load (ATC 1) and nothing else.
type loadOnly struct{ tc string }

func (l loadOnly) TerminalReports(context.Context, wire.CardID) ([]crosscheck.TerminalReport, error) {
	return []crosscheck.TerminalReport{{ATC: 1, Kind: "load", TerminalID: "VCTERM01", Amount: 5000, Digest: l.tc}}, nil
}

func TestUploadCLI(t *testing.T) {
	ctx := context.Background()
	_, common := issuedPurse(t)
	for _, args := range [][]string{{"load", "5000"}, {"pay", "350"}} {
		_, errOut, err := cli(t, ctx, nil, append(append([]string{"purse"}, args...), common...)...)
		require.NoError(t, err, errOut)
	}
	out, _, err := cli(t, ctx, nil, append([]string{"purse", "log", "--json"}, common...)...)
	require.NoError(t, err)
	var recs []recordJSON
	require.NoError(t, json.Unmarshal([]byte(out), &recs))
	require.Len(t, recs, 2)

	db, err := sqldb.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "x.db"))
	require.NoError(t, err)
	defer db.Close()
	svc, err := crosscheck.New(ctx, db, devSource{}, loadOnly{tc: recs[1].TC})
	require.NoError(t, err)
	srv := httptest.NewServer(crosscheck.Handler(svc, nil))
	defer srv.Close()

	rd := common[:2] // --reader emu:...
	out, errOut, err := cli(t, ctx, nil, append([]string{"upload", "--server", srv.URL}, rd...)...)
	require.NoError(t, err, errOut)
	require.Contains(t, out, "card 1122334455667788: uploaded 2 records: 2 accepted (2 new), 0 refused")
	require.Contains(t, out, "unreported_debit")
	require.Contains(t, out, "no terminal reported")
	require.Contains(t, out, "1 discrepancy:")

	out, _, err = cli(t, ctx, nil, append([]string{"upload", "--server", srv.URL, "--json"}, rd...)...)
	require.NoError(t, err)
	var res crosscheck.Result
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, 2, res.Accepted)
	require.Zero(t, res.Stored, "a re-upload stores nothing")
	require.Len(t, res.Discrepancies, 1)
	require.Equal(t, crosscheck.KindUnreportedDebit, res.Discrepancies[0].Kind)
	require.Equal(t, uint32(2), res.Discrepancies[0].ATC)
	require.Equal(t, int64(350), res.Discrepancies[0].CardAmount)

	_, _, err = cli(t, ctx, nil, append([]string{"upload"}, rd...)...)
	require.ErrorContains(t, err, "--server")
	_, _, err = cli(t, ctx, nil, append([]string{"upload", "--server", srv.URL + "/nope"}, rd...)...)
	require.ErrorIs(t, err, crosscheck.ErrServer)
}
