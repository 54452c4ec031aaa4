package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/livepcsc"
)

// The second channel end to end (seed 001, docs/crosscheck.md): a
// provisioned card is spent offline at two terminals; only one settles, so
// the card's uploaded log holds a debit no terminal reported, which the
// upload's answer and `valuechip report` list. Then a terminal report larger
// than the card's record of the same ATC — which the server's own checks
// make impossible over ISO 8583 (DE 4 must equal the record's amount, the TC
// must verify), so the test writes it into the ledger as a faulty or
// dishonest acquirer path would — shows up as an overcharge.
func TestSecondChannelEndToEnd(t *testing.T) {
	livepcsc.Require(t)
	eachEngine(t, channelStory)
}

type uploadResult struct {
	Accepted      int `json:"accepted"`
	Stored        int `json:"stored"`
	Discrepancies []struct {
		Kind           string `json:"kind"`
		ATC            uint32 `json:"atc"`
		TerminalID     string `json:"terminal_id"`
		CardAmount     int64  `json:"card_amount"`
		ReportedAmount int64  `json:"reported_amount"`
	} `json:"discrepancies"`
}

func upload(t *testing.T, base string) uploadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "upload", "--server", base, "--reader", slot0, "--json").Output()
	require.NoError(t, err, "%s", out)
	var r uploadResult
	require.NoError(t, json.Unmarshal(out, &r), "%s", out)
	return r
}

func channelStory(t *testing.T, dir, dsn string) {
	is := startIssuer(t, dir, dsn)
	emptyChip(t, dir)
	p, out, err := provision(t, is.base, filepath.Join(dir, "relay.trace"))
	require.NoError(t, err, out)

	t1 := is.registerTerminal(t, "TERM0001", "MERCHANT0000001")
	t2 := is.registerTerminal(t, "TERM0002", "MERCHANT0000002")
	at := func(term string, args ...string) string {
		t.Helper()
		return run(t, binary, append(append([]string{"purse"}, args...), "--reader", slot0, "--terminal", term)...)
	}
	require.Contains(t, at(t1, "load", "5000"), "load of 5000 done: balance 5000, ATC 1")
	require.Contains(t, at(t1, "pay", "350"), "debit of 350 done: balance 4650, ATC 2")
	require.Contains(t, at(t2, "pay", "200"), "debit of 200 done: balance 4450, ATC 3")
	require.Contains(t, at(t1, "pay", "100"), "debit of 100 done: balance 4350, ATC 4")
	// Only the first terminal settles: ATC 3 stays in the second one's queue.
	require.Contains(t, run(t, binary, "purse", "settle", "--terminal", t1), "in balance with the server")

	res := upload(t, is.base)
	require.Equal(t, 4, res.Accepted)
	require.Len(t, res.Discrepancies, 1, "%+v", res.Discrepancies)
	d := res.Discrepancies[0]
	require.Equal(t, "unreported_debit", d.Kind)
	require.Equal(t, uint32(3), d.ATC)
	require.Equal(t, "TERM0002", d.TerminalID)
	require.Equal(t, int64(200), d.CardAmount)

	rep := reportFull(t, dsn)
	require.Len(t, rep.Discrepancies, 1)
	require.Equal(t, "unreported_debit", rep.Discrepancies[0].Kind)
	require.True(t, strings.EqualFold(p.CardID, rep.Discrepancies[0].CardID))
	// The ledger knows only what was reported: the purse shadow is 200 above
	// the card (the unreported debit), the books still balance.
	require.Equal(t, int64(-4550), rep.total("purse"))
	require.Equal(t, int64(-450), rep.total("merchant"))
	for cur, v := range rep.Imbalance {
		require.Zero(t, v, "imbalance in %s", cur)
	}
	text := run(t, binary, "report", "--db", dsn)
	require.Contains(t, text, "DISCREPANCIES: 1")
	require.Contains(t, text, "unreported_debit")

	// A report of ATC 3 for 250 by the second terminal, with the card's
	// genuine TC: more than the card debited.
	var recs []struct {
		ATC uint32 `json:"atc"`
		TC  string `json:"tc"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := exec.CommandContext(ctx, binary, "purse", "log", "--reader", slot0, "--json").Output()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &recs))
	var tc string
	for _, r := range recs {
		if r.ATC == 3 {
			tc = strings.ToUpper(r.TC)
		}
	}
	require.Len(t, tc, 16, "TC of ATC 3 in %s", raw)
	db, err := sqldb.Open(ctx, dsn)
	require.NoError(t, err)
	led, err := ledger.New(ctx, db)
	require.NoError(t, err)
	ar := led.ApplyAdvices(ctx, []ledger.DebitAdvice{{Key: "test/overcharge/3", CardID: strings.ToUpper(p.CardID),
		TerminalID: "TERM0002", MerchantID: "MERCHANT0000002", ATC: 3, Digest: tc, Amount: 250, Currency: "978",
		Memo: "forged by the test: a terminal claiming more than the card debited"}})
	require.NoError(t, db.Close())
	require.Len(t, ar, 1)
	require.NoError(t, ar[0].Err)

	rep = reportFull(t, dsn)
	require.Len(t, rep.Discrepancies, 1, "%+v", rep.Discrepancies)
	d2 := rep.Discrepancies[0]
	require.Equal(t, "overcharge", d2.Kind)
	require.Equal(t, uint32(3), d2.ATC)
	require.Equal(t, "TERM0002", d2.TerminalID)
	require.Equal(t, int64(200), d2.CardAmount)
	require.Equal(t, int64(250), d2.ReportedAmount)
	// The upload's answer says the same (recomputed, nothing new stored).
	res = upload(t, is.base)
	require.Zero(t, res.Stored)
	require.Len(t, res.Discrepancies, 1)
	require.Equal(t, "overcharge", res.Discrepancies[0].Kind)
	require.Regexp(t, `overcharge +TERM0002`, run(t, binary, "report", "--db", dsn))

	require.NoError(t, is.srv.stop(t))
}
