package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/keystore"
)

// provisionServer runs `valuechip provision serve` in-process on a
// development keyring and returns its URL.
func provisionServer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	raw := make([]byte, 32)
	_, err := rand.Read(raw)
	require.NoError(t, err)
	kekFile := filepath.Join(dir, "kek.hex")
	require.NoError(t, os.WriteFile(kekFile, []byte(hex.EncodeToString(raw)), 0o600))
	kek, err := keystore.LoadKEK(kekFile)
	require.NoError(t, err)
	ring := filepath.Join(dir, "keyring.json")
	_, err = keystore.Init(ring, kek, keystore.InitOptions{DevMasters: true})
	require.NoError(t, err)

	ready := filepath.Join(dir, "ready")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := cli(t, ctx, nil, "provision", "serve", "--listen", "127.0.0.1:0", "--db", filepath.Join(dir, "vc.db"),
			"--keyring", ring, "--kek-file", kekFile, "--isd-test-key", "--ready-file", ready)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	// Probe for the ready file (written once the listener is up).
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil {
			return strings.TrimSpace(string(b))
		}
		select {
		case err := <-done:
			t.Fatalf("provision serve ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "provision serve not ready")
	}
}

func TestProvisionCLI(t *testing.T) {
	ctx := context.Background()
	url := provisionServer(t)
	dir := t.TempDir()
	card := "emu:" + filepath.Join(dir, "card.json")
	trace := filepath.Join(dir, "trace.txt")
	out, errOut, err := cli(t, ctx, nil, "provision", "--server", url, "--holder", "alice", "--pin", "1234", "--reader", card, "--trace-file", trace)
	require.NoError(t, err, errOut)
	require.Regexp(t, `card issued: CardID 990000\d{10}, terminal ID VD000001 \(\d+ exchanges\)`, out)
	id := strings.Fields(out)[3]
	id = strings.TrimSuffix(id, ",")

	// The purse answers with the development keys of the same masters.
	common := []string{"--reader", card, "--journal", filepath.Join(dir, "j.json"), "--dev-keys"}
	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"info"}, id},
		{[]string{"load", "5000"}, "balance 5000"},
		{[]string{"pay", "350"}, "balance 4650"},
	} {
		out, errOut, err := cli(t, ctx, nil, append(append([]string{"purse"}, step.args...), common...)...)
		require.NoError(t, err, "%v: %s", step.args, errOut)
		require.Contains(t, out, step.want, step.args)
	}
	tr, err := os.ReadFile(trace)
	require.NoError(t, err)
	require.Contains(t, string(tr), "> 80CA9F7F00")
	for _, k := range []string{"101112131415161718191A1B1C1D1E1F", "202122232425262728292A2B2C2D2E2F", "303132333435363738393A3B3C3D3E3F"} {
		require.NotContains(t, string(tr), k)
	}

	// Again: the card is issued.
	_, _, err = cli(t, ctx, nil, "provision", "--server", url, "--holder", "alice", "--reader", card)
	require.ErrorContains(t, err, "already issued")

	// A second card, the server chooses the PIN; JSON output.
	card2 := "emu:" + filepath.Join(dir, "card2.json")
	out, errOut, err = cli(t, ctx, nil, "provision", "--server", url, "--holder", "bob", "--reader", card2, "--json")
	require.NoError(t, err, errOut)
	var res struct {
		CardID     string `json:"card_id"`
		TerminalID string `json:"terminal_id"`
		PIN        string `json:"pin"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Len(t, res.CardID, 16)
	require.NotEqual(t, id, res.CardID)
	require.Equal(t, "VD000002", res.TerminalID)
	require.Len(t, res.PIN, 4)
}

func TestProvisionCLIUsage(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{"provision", "--holder", "alice"},
		{"provision", "--server", "http://127.0.0.1:1"},
	} {
		_, _, err := cli(t, ctx, nil, args...)
		var u usageError
		require.True(t, errors.As(err, &u), "%v: %v", args, err)
	}
	_, _, err := cli(t, ctx, nil, "provision", "--server", "ftp://x", "--holder", "a", "--reader", "emu:"+filepath.Join(t.TempDir(), "c.json"))
	require.ErrorContains(t, err, "want http(s)://host[:port]")
}
