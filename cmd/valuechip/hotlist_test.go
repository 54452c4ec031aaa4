package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
)

// hotlistSealer binds the label to the blob; the hotlist tests need no
// secrecy, only a registered terminal.
type hotlistSealer struct{}

func (hotlistSealer) Seal(label string, p []byte) ([]byte, error) {
	return append([]byte(label+"\x00"), p...), nil
}

func (hotlistSealer) Open(label string, s []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(s, []byte(label+"\x00"))
	if !ok {
		return nil, errors.New("wrong label")
	}
	return rest, nil
}

// hotlistDB makes a registry with TERM0001 and n cards 11000000000000XX.
func hotlistDB(t *testing.T, n int) (string, []string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vc.db")
	db, err := sqldb.Open(ctx, path)
	require.NoError(t, err)
	defer db.Close()
	reg, err := registry.New(ctx, db, hotlistSealer{})
	require.NoError(t, err)
	_, _, err = reg.RegisterTerminal(ctx, "TERM0001", "MERCHANT0000001")
	require.NoError(t, err)
	var ids []string
	for i := range n {
		id := fmt.Sprintf("11%014d", i)
		_, err := reg.RegisterCard(ctx, registry.Card{CardID: id, Currency: "978", MaxBalance: 100000, KeyVersion: 1})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	return path, ids
}

func TestHotlistCLI(t *testing.T) {
	ctx := context.Background()
	dbPath, ids := hotlistDB(t, 5)
	run := func(args ...string) (string, string, error) {
		return cli(t, ctx, nil, append([]string{"hotlist", "--db", dbPath}, args...)...)
	}

	out, _, err := run("add", ids[0], strings.ToLower(ids[1]), "--reason", "lost")
	require.NoError(t, err)
	require.Equal(t, ids[0]+" hotlisted\n"+ids[1]+" hotlisted\n", out)

	out, _, err = run("list")
	require.NoError(t, err)
	require.Equal(t, "# hotlist version 7, 2 cards\n"+ids[0]+"\n"+ids[1]+"\n", out)

	for _, tc := range []struct{ mode, card, want string }{
		{"both", ids[0], "response code 62: validity: card hotlisted\n"},
		{"cards", ids[0], "response code 62: validity: card hotlisted\n"},
		{"terminals", ids[0], "response code 00: approved (late card check: hotlisted, would be flagged)\n"},
		{"both", ids[2], "response code 00: approved\n"},
		{"terminals", ids[2], "response code 00: approved (late card check: not hotlisted)\n"},
	} {
		out, _, err := run("check", "--mode", tc.mode, tc.card, "TERM0001")
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(out, tc.want), "%s %s: %s", tc.mode, tc.card, out)
		require.Contains(t, out, "mode "+tc.mode+":")
	}
	out, _, err = run("check", ids[2], "TERM0009")
	require.NoError(t, err)
	require.Contains(t, out, "response code 58")

	out, _, err = run("remove", ids[0], "--reason", "found")
	require.NoError(t, err)
	require.Equal(t, ids[0]+" active\n", out)

	// Bulk load with a progress bar (threshold lowered for the test).
	defer func(old int64) { progressMin = old }(progressMin)
	progressMin = 2
	file := filepath.Join(t.TempDir(), "hot.txt")
	require.NoError(t, os.WriteFile(file, []byte("# stolen batch\n"+ids[2]+"\n\n  "+strings.ToLower(ids[3])+"  \n"+ids[4]+"\n"), 0o600))
	out, errOut, err := run("load", "--file", file, "--reason", "batch")
	require.NoError(t, err)
	require.Regexp(t, `^3 cards: 3 hotlisted, 0 already hotlisted, 0 unknown \(not registered\) in [0-9.]+m?s\n$`, out)
	require.Contains(t, errOut, "hotlisting")
	require.Contains(t, errOut, "3/3")

	out, _, err = run("list", "--json")
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`{"version": 11, "cards": [%q, %q, %q, %q]}`, ids[1], ids[2], ids[3], ids[4]), out)

	// check with the load bars.
	out, errOut, err = run("check", ids[1], "TERM0001")
	require.NoError(t, err)
	require.Contains(t, out, "response code 62")
	require.Contains(t, out, "cards 4 at version 11")
	require.Contains(t, errOut, "reading hotlist")
	require.Contains(t, errOut, "indexing cards")

	// stdin, quiet; a card already hotlisted and cards not registered
	// (a scheme list holds other issuers' cards) are counted, not errors.
	var in strings.Builder
	in.WriteString(ids[0] + "\n" + ids[1] + "\n")
	for i := range 12 {
		fmt.Fprintf(&in, "99%014d\n", i)
	}
	out, errOut, err = cli(t, ctx, strings.NewReader(in.String()), "hotlist", "--db", dbPath, "-q", "load", "--file", "-")
	require.NoError(t, err)
	require.Regexp(t, `^14 cards: 1 hotlisted, 1 already hotlisted, 12 unknown \(not registered\) in `, out)
	require.Equal(t, "unknown card 9900000000000000: not registered, skipped\n", strings.SplitAfter(errOut, "\n")[0])
	require.Contains(t, errOut, "unknown card 9900000000000009: not registered, skipped\n… and 2 more unknown cards\n")
	require.NotContains(t, errOut, "9900000000000010")

	out, _, err = run("list")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("# hotlist version 12, 5 cards\n%s\n", strings.Join(ids, "\n")), out)

	// --remove in bulk: active again, one version each; again, nothing.
	out, errOut, err = run("load", "--remove", "--file", file, "--reason", "found")
	require.NoError(t, err)
	require.Regexp(t, `^3 cards: 3 active, 0 already active, 0 unknown`, out)
	require.Contains(t, errOut, "making active")
	out, _, err = run("load", "--remove", "-q", "--file", file)
	require.NoError(t, err)
	require.Regexp(t, `^3 cards: 0 active, 3 already active, 0 unknown`, out)
	out, _, err = run("list", "--json")
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`{"version": 15, "cards": [%q, %q]}`, ids[0], ids[1]), out)
}

func TestHotlistCLIErrors(t *testing.T) {
	ctx := context.Background()
	dbPath, _ := hotlistDB(t, 1)
	bad := filepath.Join(t.TempDir(), "bad.txt")
	require.NoError(t, os.WriteFile(bad, []byte("1100000000000000\n11000000000000\n"), 0o600))
	tests := []struct {
		args  []string
		usage bool
		msg   string
	}{
		{[]string{"add"}, true, "requires at least 1 arg"},
		{[]string{"add", "11223344"}, true, "bad card ID"},
		{[]string{"add", "9999999999999999"}, false, "not found"},
		{[]string{"load"}, true, "--file is required"},
		{[]string{"load", "--file", bad}, true, "bad.txt:2"},
		{[]string{"load", "--remove", "--file", bad}, true, "bad.txt:2"},
		{[]string{"load", "--file", filepath.Join(t.TempDir(), "missing.txt")}, false, "no such file"},
		{[]string{"check", "--mode", "all", "1100000000000000", "TERM0001"}, true, "unknown mode"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := cli(t, ctx, nil, append([]string{"hotlist", "--db", dbPath}, tc.args...)...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.msg)
			var u usageError
			require.Equal(t, tc.usage, errors.As(err, &u), "%v", err)
		})
	}
	// A bad check ID is an answer, not an error.
	out, _, err := cli(t, ctx, nil, "hotlist", "--db", dbPath, "check", "11", "TERM0001")
	require.NoError(t, err)
	require.Contains(t, out, "response code 14")
}
