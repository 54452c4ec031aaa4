package server_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/server"
)

func TestWriteReport(t *testing.T) {
	r := ledger.Report{
		ByKind: []ledger.KindTotal{{Kind: ledger.KindFunding, Currency: "978", Accounts: 1, Total: 5000},
			{Kind: ledger.KindPurse, Currency: "978", Accounts: 1, Total: -1650},
			{Kind: ledger.KindMerchant, Currency: "978", Accounts: 1, Total: -3350}},
		Merchants:  []ledger.Account{{Kind: ledger.KindMerchant, Ref: "MERCHANT0000001", Currency: "978", Balance: -3350}},
		InProgress: []ledger.InProgressTotal{{Kind: "load", Currency: "978", Count: 2, Amount: 700, Oldest: time.Unix(0, 0)}},
		Imbalance:  map[string]int64{"978": 0},
	}
	var b bytes.Buffer
	require.NoError(t, server.WriteReport(&b, r, false))
	out := b.String()
	for _, want := range []string{"funding", "50.00", "-16.50", "MERCHANT0000001", "33.50", "load", "7.00", "imbalance: 978 0.00"} {
		require.Contains(t, out, want)
	}
	for _, line := range strings.Split(out, "\n") {
		require.Equal(t, strings.TrimRight(line, " "), line, "no trailing blanks")
	}
	require.Contains(t, out, "\n\nMERCHANTS", "sections separated by an empty line")
	b.Reset()
	require.NoError(t, server.WriteReport(&b, r, true))
	var j map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &j))
	require.Len(t, j["merchants"], 1)
	require.Equal(t, float64(3350), j["merchants"].([]any)[0].(map[string]any)["owed"])

	r.Imbalance["978"] = 1
	b.Reset()
	require.ErrorIs(t, server.WriteReport(&b, r, false), server.ErrImbalance)
	require.Contains(t, b.String(), "imbalance: 978 0.01")
}
