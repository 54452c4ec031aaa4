package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/reader"
)

// cli runs the command line in-process and returns stdout, stderr and the
// error main would report.
func cli(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) (string, string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	if stdin != nil {
		root.SetIn(stdin)
	}
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

const sel = "00A4040008F056435445535401"

func TestSendEmu(t *testing.T) {
	card := "emu:" + filepath.Join(t.TempDir(), "card.json")
	out, _, err := cli(t, context.Background(), nil, "send", "--reader", card, sel, "80 20 00 00 04", "80 12 01 2C 00")
	require.NoError(t, err)
	l := strings.Split(strings.TrimSpace(out), "\n")
	require.Equal(t, "6F108408F056435445535401A5049F6501FF 9000 (success)", l[0])
	require.Equal(t, "00000001 9000 (success)", l[1])
	require.True(t, strings.HasSuffix(l[2], "2A2B 9000 (success)"), "61xx rounds merged: %s", l[2])

	// State persists in the file between invocations.
	out, _, err = cli(t, context.Background(), nil, "send", "--reader", card, sel, "80 22 00 00 04")
	require.NoError(t, err)
	require.Contains(t, out, "00000001 9000 (success)")

	// Raw mode shows the transport status word.
	out, _, err = cli(t, context.Background(), nil, "send", "--raw", "--reader", card, sel, "80 12 01 2C 00")
	require.NoError(t, err)
	require.Contains(t, out, "6100 (256 bytes remaining)")
}

func TestSendTraceMasksPIN(t *testing.T) {
	card := "emu:" + filepath.Join(t.TempDir(), "card.json")
	_, trace, err := cli(t, context.Background(), nil, "send", "--trace", "--reader", card, sel, "00 20 00 80 04 31323334")
	require.NoError(t, err)
	require.Contains(t, trace, ">> 0020008004********  VERIFY")
	require.NotContains(t, trace, "31323334")
	require.Contains(t, trace, "SELECT")
}

func TestSendRecordReplay(t *testing.T) {
	dir := t.TempDir()
	card, dump := "emu:"+filepath.Join(dir, "card.json"), filepath.Join(dir, "s.dump")
	args := []string{sel, "80 10 00 00 02 CAFE 00", "80 14 00 00 00"}
	live, _, err := cli(t, context.Background(), nil, append([]string{"send", "--reader", card, "--record", dump}, args...)...)
	require.NoError(t, err)
	replayed, _, err := cli(t, context.Background(), nil, append([]string{"send", "--reader", "replay:" + dump}, args...)...)
	require.NoError(t, err)
	require.Equal(t, live, replayed)
	// A different command than recorded is an error, not a guess.
	_, _, err = cli(t, context.Background(), nil, "send", "--reader", "replay:"+dump, "00A4040005A000000003")
	require.ErrorIs(t, err, reader.ErrReplayMismatch)
}

func TestUsageErrors(t *testing.T) {
	card := "emu:" + filepath.Join(t.TempDir(), "card.json")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"send", "--reader", card, "04"}, "needs at least CLA INS P1 P2"},
		{[]string{"send", "--reader", card, "00A4ZZ"}, "bad hex"},
		{[]string{"send", "--reader", card, "8010000005AA"}, "length fields do not match"},
		{[]string{"send", "--nope"}, "unknown flag"},
		{[]string{"emulate", "--slot", "2"}, "vpcd has slots 0 and 1"},
		{[]string{"atr", "decode", "XYZ"}, "bad hex"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := cli(t, context.Background(), nil, tc.args...)
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.msg)
			require.Equal(t, 2, exitCode(err), "usage errors exit 2")
		})
	}
	_, _, err := cli(t, context.Background(), nil, "send", "--reader", "emu:", sel)
	require.ErrorContains(t, err, "needs a state file path")
}

func TestHints(t *testing.T) {
	for _, err := range []error{reader.ErrServiceUnavailable, reader.ErrNoReader, reader.ErrNoCard, reader.ErrCardRemoved, reader.ErrAmbiguous, reader.ErrNoPCSC} {
		wrapped := fmt.Errorf("connecting: %w", err)
		require.NotEmpty(t, hint(wrapped), "%v", err)
	}
	require.Equal(t, 3, exitCode(fmt.Errorf("x: %w", reader.ErrNoCard)))
	require.Equal(t, 1, exitCode(errors.New("other")))
}

func TestATRDecode(t *testing.T) {
	out, _, err := cli(t, context.Background(), nil, "atr", "decode", "3B 95 13 81 01 80 73 FF 01 00 0B")
	require.NoError(t, err)
	require.Contains(t, out, "T=1")
	require.Contains(t, out, "TCK = 0B")
	_, _, err = cli(t, context.Background(), nil, "atr", "decode", "3B958001")
	require.Error(t, err)
}

func TestVersion(t *testing.T) {
	out, _, err := cli(t, context.Background(), nil, "version")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, "valuechip "))
}

// emulate --listen serves the card on a socket; send --reader tcp: talks to
// it over the vpcd protocol with no pcscd at all.
func TestEmulateListenAndSendTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close() // emulate binds it again

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	defer pw.Close()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		root := newRoot()
		root.SetOut(&lineWriter{prefix: "ready:", ch: ready})
		root.SetErr(io.Discard)
		root.SetIn(pr)
		root.SetArgs([]string{"emulate", "--listen", addr, "--card-file", filepath.Join(t.TempDir(), "c.json")})
		done <- root.ExecuteContext(ctx)
	}()
	select {
	case l := <-ready:
		require.Contains(t, l, addr)
	case err := <-done:
		t.Fatalf("emulate ended early: %v", err)
	}
	out, _, err := cli(t, ctx, nil, "send", "--reader", "tcp:"+addr, sel, "80 20 00 00 04")
	require.NoError(t, err)
	require.Equal(t, "6F108408F056435445535401A5049F6501FF 9000 (success)\n00000001 9000 (success)\n", out)
	cancel()
	require.NoError(t, <-done)
}

// lineWriter sends the first line starting with prefix to ch.
type lineWriter struct {
	prefix string
	ch     chan string
	buf    bytes.Buffer
	sent   bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for _, l := range strings.Split(w.buf.String(), "\n") {
		if !w.sent && strings.HasPrefix(l, w.prefix) {
			w.sent = true
			w.ch <- l
		}
	}
	return len(p), nil
}
