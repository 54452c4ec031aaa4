package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/link"
	"github.com/valuechip/valuechip/host/link/linktest"
	"github.com/valuechip/valuechip/host/terminal"
)

var testCardID = wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}

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

// With --terminal, loads are authorised by the money server over ISO 8583,
// payments queue their advices and settle sends them and reconciles.
func TestPurseCLIServer(t *testing.T) {
	ctx := context.Background()
	dir, common := issuedPurse(t)
	srv := linktest.New(t)
	term := filepath.Join(dir, "term.json")
	require.NoError(t, link.SaveConfig(term, link.Config{TerminalID: "VCTERM01", MerchantID: "MERCHANT0000001",
		Server: srv.Addr(), TMK: linktest.TMK, SAM: terminal.DevMasters().Debit}))
	args := func(a ...string) []string {
		return append(append([]string{"purse"}, a...), "--reader", common[1], "--terminal", term)
	}
	for _, step := range []struct {
		args []string
		want []string
	}{
		{[]string{"load", "5000"}, []string{"load of 5000 done: balance 5000, ATC 1", "(accepted by the money server)"}},
		{[]string{"pay", "350"}, []string{"debit of 350 done: balance 4650, ATC 2", "(advice queued for the money server, 1 waiting)"}},
		{[]string{"pay", "150"}, []string{"debit of 150 done: balance 4500, ATC 3", "2 waiting"}},
		{[]string{"recover"}, []string{"nothing pending"}},
		{[]string{"settle"}, []string{"advices: 2 sent, 2 acknowledged, 0 rejected, 0 still queued",
			"terminal 978 1 / 5000 0 / 0 2 / 500 C0000000000004500", "C0000000000004500", "batch 1 in balance with the server; batch 2 opened"}},
	} {
		out, errOut, err := cli(t, ctx, nil, args(step.args...)...)
		require.NoError(t, err, "%v: %s", step.args, errOut)
		for _, w := range step.want {
			require.Contains(t, squash(out), w, step.args)
		}
		require.NotContains(t, errOut, "development issuer master keys", "no dev keys with --terminal")
	}
	require.Equal(t, int64(4500), srv.Authority().Net(testCardID))

	// Out of balance: the batch is kept and both totals are shown.
	_, errOut, err := cli(t, ctx, nil, args("pay", "100")...)
	require.NoError(t, err, errOut)
	srv.SetSkew(7)
	out, _, err := cli(t, ctx, nil, args("settle")...)
	require.ErrorIs(t, err, link.ErrOutOfBalance)
	require.Contains(t, squash(out), "terminal 978 0 / 0 0 / 0 1 / 100 D0000000000000100")
	require.Contains(t, out, "batch 2 OUT OF BALANCE with the server")
	require.Equal(t, int64(107), srv.Closed()[1].DebitAmount)
	srv.SetSkew(0)
	out, _, err = cli(t, ctx, nil, "purse", "settle", "--terminal", term, "--json")
	require.NoError(t, err)
	var j settleJSON
	require.NoError(t, json.Unmarshal([]byte(out), &j))
	require.True(t, j.InBalance)
	require.Equal(t, uint64(3), j.Batch, "the server closed batch 2 anyway; the terminal kept its totals")

	for _, tc := range []struct {
		args  []string
		msg   string
		usage bool
	}{
		{args("load", "10", "--dev-keys"), "give one or the other", true},
		{args("pay", "10", "--terminal-id", "OTHER001"), "differs from the terminal file", true},
		{[]string{"purse", "settle"}, "--terminal FILE is required", true},
	} {
		_, _, err := cli(t, ctx, nil, tc.args...)
		require.ErrorContains(t, err, tc.msg)
		if tc.usage {
			require.Equal(t, 2, exitCode(err))
		}
	}
	require.NoError(t, os.Chmod(term, 0o644))
	_, _, err = cli(t, ctx, nil, args("pay", "10")...)
	require.ErrorIs(t, err, link.ErrInsecureConfig)
}

// squash collapses runs of white space, so table columns compare simply.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }
