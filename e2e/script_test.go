package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/internal/livepcsc"
)

// repoRoot is where the example scripts are, seen from this package. The
// scripts run from there so that the traces name them as the goldens do.
const repoRoot = ".."

// exampleScripts lists testdata/scripts/*.vcs relative to the root.
func exampleScripts(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(repoRoot, "testdata/scripts/*.vcs"))
	require.NoError(t, err)
	require.NotEmpty(t, m)
	out := make([]string, len(m))
	for i, f := range m {
		out[i], err = filepath.Rel(repoRoot, f)
		require.NoError(t, err)
	}
	return out
}

// scriptRun is a `valuechip script` process started from the repository
// root, its stderr watched line by line (prompts arrive there).
type scriptRun struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr chan string
	cancel context.CancelFunc
}

func startScript(t *testing.T, args ...string) *scriptRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	r := &scriptRun{cancel: cancel, stderr: make(chan string, 64)}
	r.cmd = exec.CommandContext(ctx, binary, append([]string{"script"}, args...)...)
	r.cmd.Dir = repoRoot
	r.cmd.Stdout = &r.stdout
	errPipe, err := r.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, r.cmd.Start())
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			t.Logf("script stderr: %s", sc.Text())
			r.stderr <- sc.Text()
		}
		close(r.stderr)
	}()
	t.Cleanup(cancel)
	return r
}

// waitStderr waits for a stderr line starting with prefix.
func (r *scriptRun) waitStderr(t *testing.T, prefix string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-r.stderr:
			require.True(t, ok, "script ended before printing %q:\n%s", prefix, r.stdout.String())
			if strings.HasPrefix(l, prefix) {
				return
			}
		case <-timeout:
			t.Fatalf("script did not print %q within 30 s", prefix)
		}
	}
}

// wait waits for the script to end and returns its stdout.
func (r *scriptRun) wait(t *testing.T) (string, error) {
	t.Helper()
	for range r.stderr {
	}
	err := r.cmd.Wait()
	return r.stdout.String(), err
}

// runScript runs `valuechip script args...` to its end.
func runScript(t *testing.T, args ...string) string {
	t.Helper()
	r := startScript(t, args...)
	out, err := r.wait(t)
	require.NoError(t, err, "valuechip script %s:\n%s", strings.Join(args, " "), out)
	return out
}

// sampleCard is the profile the golden traces were made with: the sample
// card (issuer security domain with the test keys, test applet) with a
// fixed serial number, which shows in gp.vcs's CPLC.
var sampleCard = filepath.Join(repoRoot, "testdata/scripts/sample-card.json")

// The example scripts give their golden traces on the emulated card
// through pcscd and vpcd, exactly as in-process; recorded there, they give
// them again replayed with no card. Together with host/script's TestGolden
// (in-process and replayed) this is the "same scripts, three ways" check.
//
// A script that opens a secure channel (gp.vcs) cannot be replayed from the
// command line: the host challenge is fresh on every run, so the replay
// stops at INITIALIZE UPDATE (docs/scripting.md, "Record and replay";
// host/script's TestGolden replays it in-process with fixed challenges).
func TestScriptsThroughPCSC(t *testing.T) {
	livepcsc.Require(t)
	for _, file := range exampleScripts(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			emu := startEmulator(t, "--slot", "0", "--profile", sampleCard, "--card-file", filepath.Join(t.TempDir(), "card.json"))
			want := readFile(t, filepath.Join(repoRoot, strings.TrimSuffix(file, ".vcs")+".golden"))
			dump := filepath.Join(t.TempDir(), "session.dump")

			r := startScript(t, "--reader", slot0, "--record", dump, file)
			if filepath.Base(file) == "tap.vcs" {
				// The script says when it watches; only then move the card.
				r.waitStderr(t, "tap:")
				_, err := emu.stdin.Write([]byte("tap\n"))
				require.NoError(t, err)
			}
			got, err := r.wait(t)
			require.NoError(t, err, got)
			require.Equal(t, want, got)

			src := readFile(t, filepath.Join(repoRoot, file))
			if regexp.MustCompile(`(?m)^\s*secure\s+scp`).MatchString(src) {
				require.Contains(t, got, "(secure)")
				r := startScript(t, "--replay", dump, file)
				out, err := r.wait(t)
				require.Error(t, err, out)
				require.Contains(t, out, "secure scp03: INITIALIZE UPDATE: reader: command differs from the recorded session")
				return
			}
			replayed := runScript(t, "--replay", dump, file)
			require.Equal(t, want, replayed, "replaying the vpcd recording")
		})
	}
}

// scriptorResponses pulls the answers out of scriptor's output: "< 90 00 :
// Normal processing." for commands (16 bytes a line), "< OK: 3B ..." for
// a reset. Each answer becomes "HEX" or "RESET HEX".
func scriptorResponses(out string) []string {
	toks := strings.Fields(out)
	var res []string
	isByte := regexp.MustCompile(`^[0-9A-Fa-f]{2}$`).MatchString
	for i := 0; i < len(toks); i++ {
		if toks[i] != "<" {
			continue
		}
		prefix := ""
		j := i + 1
		if j < len(toks) && toks[j] == "OK:" {
			prefix, j = "RESET ", j+1
		}
		var sb strings.Builder
		for ; j < len(toks) && isByte(toks[j]); j++ {
			sb.WriteString(strings.ToUpper(toks[j]))
		}
		res = append(res, prefix+sb.String())
		i = j - 1
	}
	return res
}

// ourResponses does the same from valuechip script --json.
func ourResponses(t *testing.T, out string) []string {
	t.Helper()
	var rep struct {
		OK      bool
		Scripts []struct {
			Steps []struct {
				Kind, Data, SW, ATR string
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.True(t, rep.OK, out)
	var res []string
	for _, s := range rep.Scripts[0].Steps {
		switch s.Kind {
		case "send", "select":
			res = append(res, s.Data+s.SW)
		case "reset":
			res = append(res, "RESET "+s.ATR)
		}
	}
	return res
}

// scriptor itself (pcsc-tools) runs the scriptor-compatible example
// through pcscd and vpcd, and gets the very answers valuechip gets from
// the same file: the compatibility claim, checked against the original.
func TestScriptorCompatibility(t *testing.T) {
	livepcsc.Require(t)
	if _, err := exec.LookPath("scriptor"); err != nil {
		if livepcsc.Required() {
			t.Fatalf("scriptor not installed: %v", err)
		}
		t.Skipf("scriptor not installed (apt-get install pcsc-tools): %v", err)
	}
	const file = "testdata/scripts/scriptor.vcs"
	src, err := os.ReadFile(filepath.Join(repoRoot, file))
	require.NoError(t, err)
	startEmulator(t, "--slot", "0", "--card-file", filepath.Join(t.TempDir(), "card.json"))

	// runErr bounds scriptor with a timeout: a stuck slot blocks it.
	out, err := runErr(t, string(src), "scriptor", "-r", slot0)
	require.NoError(t, err, out)
	theirs := scriptorResponses(out)

	ours := ourResponses(t, runScript(t, "--reader", slot0, "--json", file))
	require.Equal(t, theirs, ours)
	require.Equal(t, []string{
		"6F108408F056435445535401A5049F6501FF9000",
		"0A0B0C9000",
		"48656C6C6F9000",
		"000000009000",
		"RESET " + testATR,
		"6D00", // the issuer security domain, selected by the reset
	}, ours, "the script's answers; the line after exit is never sent")
}
