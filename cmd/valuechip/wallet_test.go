package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/wallet"
)

func TestWalletCLI(t *testing.T) {
	ctx := context.Background()
	db := []string{"--db", "sqlite:" + filepath.Join(t.TempDir(), "w.db")}
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"open", "alice", "--level", "1"}, "wallet alice: level 1, credit limit 5000, balance 0, available 5000"},
		{[]string{"open", "alice", "--level", "1"}, "available 5000"},
		{[]string{"topup", "alice", "1000", "--key", "t1"}, "topup of 1000 approved (code 00): balance 1000, available 6000"},
		{[]string{"purchase", "alice", "5999", "--merchant", "SHOP01", "--key", "o1"}, "balance -4999, available 1"},
		{[]string{"purchase", "alice", "5999", "--merchant", "SHOP01", "--key", "o1"}, "already done with this key"},
		{[]string{"purchase", "alice", "1", "--merchant", "SHOP01", "--key", "o2"}, "balance -5000, available 0"},
		{[]string{"show", "alice"}, "balance -5000, available 0"},
		{[]string{"show"}, "alice   1      5000   -5000    0"},
	} {
		out, errOut, err := cli(t, ctx, nil, append(append([]string{"wallet"}, step.args...), db...)...)
		require.NoError(t, err, "%v: %s", step.args, errOut)
		require.Contains(t, out, step.want, step.args)
	}
	// One cent more: refused with 51, exit status 1 (not a usage error).
	out, _, err := cli(t, ctx, nil, append([]string{"wallet", "purchase", "alice", "1", "--merchant", "SHOP01", "--json"}, db...)...)
	require.ErrorIs(t, err, wallet.ErrInsufficientFunds)
	require.ErrorContains(t, err, "response code 51")
	require.Equal(t, 1, exitCode(err))
	var o wallet.Outcome
	require.NoError(t, json.Unmarshal([]byte(out), &o))
	require.Equal(t, "51", o.Code)
	require.Equal(t, int64(-5000), o.Balance)

	out, _, err = cli(t, ctx, nil, append([]string{"wallet", "show", "--json", "--levels", "0=0,1=5000,7=9"}, db...)...)
	require.NoError(t, err)
	var list struct {
		Levels  map[string]int64 `json:"levels"`
		Wallets []wallet.Wallet  `json:"wallets"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Equal(t, map[string]int64{"0": 0, "1": 5000, "7": 9}, list.Levels)
	require.Len(t, list.Wallets, 1)
	require.Equal(t, int64(-5000), list.Wallets[0].Balance)

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"purchase", "alice", "3.50", "--merchant", "S"}, "whole number of minor units"},
		{[]string{"purchase", "alice", "1"}, "--merchant"},
		{[]string{"open"}, "accepts 1 arg"},
		{[]string{"show", "a", "b"}, "at most one"},
		{[]string{"show", "--levels", "x"}, "--levels"},
	} {
		_, _, err := cli(t, ctx, nil, append(append([]string{"wallet"}, tc.args...), db...)...)
		require.ErrorContains(t, err, tc.msg, tc.args)
		require.Equal(t, 2, exitCode(err), tc.args)
	}
	_, _, err = cli(t, ctx, nil, append([]string{"wallet", "purchase", "bob", "1", "--merchant", "S", "--key", "k"}, db...)...)
	require.ErrorContains(t, err, "response code 14")
	_, _, err = cli(t, ctx, nil, append([]string{"wallet", "open", "bob", "--level", "9"}, db...)...)
	require.ErrorIs(t, err, wallet.ErrInvalid)
	require.True(t, strings.Contains(err.Error(), "credit level 9"))
}
