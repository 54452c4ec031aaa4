package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/terminal"
)

func issuedPurse(t *testing.T) (dir string, common []string) {
	t.Helper()
	dir = t.TempDir()
	common = []string{"--reader", "emu:" + filepath.Join(dir, "card.json"), "--journal", filepath.Join(dir, "j.json"), "--dev-keys"}
	out, errOut, err := cli(t, context.Background(), nil, append([]string{"purse", "issue", "--test-key", "--card-id", "1122334455667788", "--pin", "1234"}, common...)...)
	require.NoError(t, err, errOut)
	require.Contains(t, out, "issued: card 1122334455667788")
	require.Contains(t, errOut, "development issuer master keys", "the dev keys warn loudly")
	return dir, common
}

func TestPurseCLI(t *testing.T) {
	ctx := context.Background()
	_, common := issuedPurse(t)
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "5000"}, "load of 5000 done: balance 5000, ATC 1"},
		{[]string{"pay", "350"}, "debit of 350 done: balance 4650, ATC 2"},
		{[]string{"pay", "3000", "--pin", "1234"}, "debit of 3000 done: balance 1650, ATC 3"},
		{[]string{"balance"}, "1650 (currency 978"},
		{[]string{"info"}, "PIN tries left  3"},
		{[]string{"verify-pin", "1234"}, "PIN correct"},
		{[]string{"recover"}, "nothing pending"},
	} {
		out, errOut, err := cli(t, ctx, nil, append(append([]string{"purse"}, step.args...), common...)...)
		require.NoError(t, err, "%v: %s", step.args, errOut)
		require.Contains(t, out, step.want, step.args)
	}
	out, _, err := cli(t, ctx, nil, append([]string{"purse", "log", "--json"}, common...)...)
	require.NoError(t, err)
	var recs []recordJSON
	require.NoError(t, json.Unmarshal([]byte(out), &recs))
	require.Len(t, recs, 3)
	for _, r := range recs {
		require.NotNil(t, r.TCVerified)
		require.True(t, *r.TCVerified, "ATC %d", r.ATC)
	}
	require.NotContains(t, out+strings.Join(common, ""), "101112131415161718191A1B1C1D1E1F", "keys never printed")
}

func TestPurseCLIErrors(t *testing.T) {
	ctx := context.Background()
	_, common := issuedPurse(t)
	for _, tc := range []struct {
		args  []string
		msg   string
		usage bool
	}{
		{[]string{"pay", "3.50"}, `amount "3.50": want a whole number of minor units`, true},
		{[]string{"pay", "0"}, "want a whole number of minor units from 1", true},
		{[]string{"load", "1e3"}, "want a whole number", true},
		{[]string{"load", "99999999999"}, "want a whole number", true},
		{[]string{"pay", "10"}, "amount above the balance", false},
		{[]string{"verify-pin", "12"}, "PIN", true},
		{[]string{"verify-pin", "9999"}, "wrong PIN: 2 tries left", false},
		{[]string{"issue", "--test-key", "--card-id", "11", "--pin", "1234"}, "--card-id \"11\": want 16 hex digits", true},
		{[]string{"issue", "--test-key", "--card-id", "1122334455667788", "--pin", "1234", "--currency", "1000"}, "--currency 1000", true},
		{[]string{"issue", "--test-key", "--card-id", "1122334455667788", "--pin", "12a4"}, "--pin", true},
		{[]string{"pay", "1", "--terminal-id", "short"}, "--terminal-id", true},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := cli(t, ctx, nil, append(append([]string{"purse"}, tc.args...), common...)...)
			require.ErrorContains(t, err, tc.msg)
			if tc.usage {
				require.Equal(t, 2, exitCode(err))
			}
		})
	}
	_, _, err := cli(t, ctx, nil, "purse", "pay", "10", "--reader", common[1], "--journal", common[3])
	require.ErrorContains(t, err, "no issuer keys")
}

// A journal left by an interrupted debit is resolved by the next pay,
// which says so.
func TestPurseCLIResumes(t *testing.T) {
	ctx := context.Background()
	dir, common := issuedPurse(t)
	_, _, err := cli(t, ctx, nil, append([]string{"purse", "load", "1000"}, common...)...)
	require.NoError(t, err)
	// Plant a pending load whose CREDIT LOAD never went out: the card
	// cannot have changed; the next pay reverses it and goes on.
	j := terminal.FileJournal{Path: filepath.Join(dir, "j.json")}
	require.NoError(t, j.Save(&terminal.Pending{Kind: "load", ATC: 2, Amount: 77, Load: &terminal.LoadPending{}}))
	out, errOut, err := cli(t, ctx, nil, append([]string{"purse", "pay", "100"}, common...)...)
	require.NoError(t, err, errOut)
	require.Contains(t, errOut, "resumed the pending load of 77")
	require.Contains(t, out, "debit of 100 done: balance 900, ATC 2")
	p, err := j.Load()
	require.NoError(t, err)
	require.Nil(t, p)
}
