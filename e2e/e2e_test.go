// Package e2e runs valuechip for real: `valuechip emulate` attached to
// vsmartcard's vpcd inside a real pcscd, and hosts talking to it through
// ebfe/scard — ours (`valuechip send`, the Go API) and independent ones
// (opensc-tool, scriptor). Without pcscd the tests skip with the reason;
// with VALUECHIP_REQUIRE_E2E=1 (CI) they fail instead.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/reader/pcsc"
)

var binary string // the valuechip binary built for these tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "valuechip-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "valuechip")
	build := exec.Command("go", "build", "-o", binary, "../cmd/valuechip")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building valuechip:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	slot0      = "Virtual PCD 00 00"
	selectTest = "00A4040008F056435445535401"
	testATR    = "3B858001807380014036"
	fci        = "6F108408F056435445535401A5049F6501FF"
)

// emulator is a running `valuechip emulate`.
type emulator struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stdout, line by line
}

// startEmulator runs `valuechip emulate args...` and returns once it has
// printed its "ready:" line, i.e. once pcscd has powered the card.
func startEmulator(t *testing.T, args ...string) *emulator {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"emulate"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	cmd.Stderr = &testWriter{t: t, prefix: "emulate: "}
	require.NoError(t, cmd.Start())
	e := &emulator{cmd: cmd, stdin: stdin, lines: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			e.lines <- sc.Text()
		}
		close(e.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		// pcscd must see the card gone before the next test attaches one.
		waitPresence(t, slot0, false)
	})
	e.expectLine(t, "ready:")
	return e
}

// expectLine waits for a stdout line starting with prefix.
func (e *emulator) expectLine(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-e.lines:
			if !ok {
				t.Fatalf("emulator exited before printing %q", prefix)
			}
			t.Logf("emulate: %s", l)
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timeout:
			t.Fatalf("emulator did not print %q within 15 s", prefix)
		}
	}
}

type testWriter struct {
	t      *testing.T
	prefix string
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s%s", w.prefix, strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitPresence blocks until pcscd reports the card in name as present (or
// absent), using SCardGetStatusChange: a probe, never a sleep.
func waitPresence(t *testing.T, name string, present bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pc, err := pcsc.Open()
	require.NoError(t, err)
	defer pc.Close()
	if present {
		_, err := pc.WaitForCard(ctx, name)
		require.NoError(t, err, "card never appeared in %s", name)
		return
	}
	require.NoError(t, pc.WaitForRemoval(ctx, name), "card never left %s", name)
}

// run runs a command under a timeout (a stuck PC/SC slot blocks every
// client) and returns its combined output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(t, "", name, args...)
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
	return out
}

func runErr(t *testing.T, stdin, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s timed out after 30 s:\n%s", name, strings.Join(args, " "), out)
	}
	return string(out), err
}

func lines(s string) []string { return strings.Split(strings.TrimRight(s, "\n"), "\n") }
