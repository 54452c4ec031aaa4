package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/script"
	"github.com/valuechip/valuechip/reader"
)

const examples = "../../testdata/scripts/"

func writeScript(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.vcs")
	require.NoError(t, os.WriteFile(p, []byte(src), 0o644))
	return p
}

func TestScriptExamples(t *testing.T) {
	m, err := filepath.Glob(examples + "*.vcs")
	require.NoError(t, err)
	require.NotEmpty(t, m)
	for _, f := range m {
		t.Run(filepath.Base(f), func(t *testing.T) {
			card := "emu:" + filepath.Join(t.TempDir(), "card.json")
			out, _, err := cli(t, context.Background(), nil, "script", "--reader", card, f)
			require.NoError(t, err, out)
			require.Contains(t, out, ": ok")
		})
	}
}

func TestScriptExitCodes(t *testing.T) {
	card := "emu:" + filepath.Join(t.TempDir(), "card.json")
	tests := []struct {
		name, src string
		code      int
		msg       string
	}{
		{"pass", "select F056435445535401\nexpect sw 9000", 0, ""},
		{"expectation", "select F056435445535401\nexpect sw 6A82", 1, "s.vcs:2:1: expect sw 6A82: got 9000 (success)"},
		{"syntax", "select F056435445535401\nexpect sw 6A8", 2, "s.vcs:2:11: status word pattern"},
		{"runtime", "let x = 1 / 0", 1, "s.vcs:1:11: division by zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeScript(t, tt.src)
			_, _, err := cli(t, context.Background(), nil, "script", "--reader", card, p)
			if tt.code == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Equal(t, tt.code, exitCode(err))
			require.Contains(t, err.Error(), tt.msg)
		})
	}

	// No reader at all is exit code 3, with the usual hint.
	_, _, err := cli(t, context.Background(), nil, "script", "--reader", "tcp:127.0.0.1:1", writeScript(t, "00A40400"))
	require.Error(t, err)
	_, _, err = cli(t, context.Background(), nil, "script", "--replay", filepath.Join(t.TempDir(), "none.dump"), writeScript(t, "00A40400"))
	require.Error(t, err)
}

func TestScriptJSONJUnitAndDefines(t *testing.T) {
	dir := t.TempDir()
	card := "emu:" + filepath.Join(dir, "card.json")
	junit := filepath.Join(dir, "report.xml")
	p := writeScript(t, "select ${aid}\nexpect sw 9000\n00 20 00 80 ${len(pin)} ${pin}\nexpect sw 9000\n")
	out, _, err := cli(t, context.Background(), nil, "script", "--reader", card, "--json", "--junit", junit,
		"-D", "aid=F056435445535401", "-D", `pin="1234"`, p)
	require.NoError(t, err, out)
	var rep struct {
		OK      bool
		Scripts []struct{ Steps []struct{ Command string } }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.True(t, rep.OK)
	require.Equal(t, "0020008004********", rep.Scripts[0].Steps[1].Command)
	x, err := os.ReadFile(junit)
	require.NoError(t, err)
	require.Contains(t, string(x), `<testsuite name="`+p+`" tests="2" failures="0" errors="0"`)
	require.NotContains(t, string(x), "31323334")

	_, _, err = cli(t, context.Background(), nil, "script", "--reader", card, "-D", "sw=00", p)
	require.Equal(t, 2, exitCode(err))
}

// A session recorded in-process replays with no card, to the same trace;
// a script that no longer matches the recording fails.
func TestScriptRecordReplay(t *testing.T) {
	dir := t.TempDir()
	card := "emu:" + filepath.Join(dir, "card.json")
	dump := filepath.Join(dir, "s.dump")
	f := examples + "tap.vcs"
	out, _, err := cli(t, context.Background(), nil, "script", "--reader", card, "--record", dump, f)
	require.NoError(t, err, out)
	replayed, _, err := cli(t, context.Background(), nil, "script", "--replay", dump, f)
	require.NoError(t, err)
	require.Equal(t, out, replayed)

	_, _, err = cli(t, context.Background(), nil, "script", "--replay", dump, examples+"hello.vcs")
	require.ErrorIs(t, err, reader.ErrReplayMismatch)

	short := writeScript(t, "wait card\nselect F056435445535401\n")
	_, _, err = cli(t, context.Background(), nil, "script", "--replay", dump, short)
	require.ErrorIs(t, err, reader.ErrReplayIncomplete, "a script that stops early no longer matches")
}

// gp.vcs opens SCP03 with the card's issuer security domain: --trace shows
// the commands on the wire with the secure messaging class and their C-MAC
// masked, and no key. Its recording does not replay: the host challenge is
// fresh every run (docs/scripting.md, "Record and replay").
func TestScriptSecureTraceAndReplay(t *testing.T) {
	dir := t.TempDir()
	card := "emu:" + filepath.Join(dir, "card.json")
	dump := filepath.Join(dir, "gp.dump")
	f := examples + "gp.vcs"
	out, trace, err := cli(t, context.Background(), nil, "script", "--reader", card, "--trace", "--record", dump, f)
	require.NoError(t, err, out)
	require.Contains(t, out, ": ok (6 commands, 7 checks)")
	require.Contains(t, out, ">> 80CA9F7F00  (secure)")
	require.Regexp(t, `>> 8050010008[0-9A-F]{16}00`, trace)
	require.Regexp(t, `>> 8482330010(\*\*){16}  EXTERNAL AUTHENTICATE`, trace)
	require.Regexp(t, `>> 84CA9F7F08(\*\*){8}00`, trace)
	rec, err := os.ReadFile(dump)
	require.NoError(t, err)
	for _, s := range []string{out, trace, string(rec)} {
		require.NotContains(t, s, "404142434445464748494A4B4C4D4E4F")
	}

	_, _, err = cli(t, context.Background(), nil, "script", "--replay", dump, f)
	require.ErrorIs(t, err, reader.ErrReplayMismatch)
	require.Contains(t, err.Error(), "gp.vcs:18:1: secure scp03: INITIALIZE UPDATE: ")
}

func TestScriptStdin(t *testing.T) {
	card := "emu:" + filepath.Join(t.TempDir(), "card.json")
	out, _, err := cli(t, context.Background(), strings.NewReader("00A4040008F056435445535401\nexpect sw 9000\n"), "script", "--reader", card, "-")
	require.NoError(t, err)
	require.Contains(t, out, "== -: ok (1 command, 1 check)")
}

func TestShell(t *testing.T) {
	card := "emu:" + filepath.Join(t.TempDir(), "card.json")
	in := strings.Join([]string{
		"help",
		"select F056435445535401",
		"expect sw 9000",
		"repeat 2 as i",
		"  80 10 00 00 01 ${i} 00",
		"end",
		"let n = 7",
		"vars",
		"expect sw 6A82",
		"00 A4 0",
		"80 22 00 00 04",
		"quit",
		"print never",
	}, "\n") + "\n"
	out, _, err := cli(t, context.Background(), strings.NewReader(in), "shell", "--reader", card, "--history", filepath.Join(t.TempDir(), "h"))
	require.NoError(t, err)
	for _, want := range []string{
		"Type a command APDU", // help
		"<< 6F108408F056435445535401A5049F6501FF  9000 (success)",
		"       6F [16]", // TLV decoded
		"ok: expect sw 9000",
		">> 80100000010100", // the repeat ran as one block
		"n = 7",             // vars
		"i = 1",
		"FAILED: expect sw 6A82: got 9000 (success)", // a failure does not end the shell
		"error: shell:1:7: odd number of hex digits", // nor a syntax error
		"<< 00000000  9000 (success)",
	} {
		require.Contains(t, out, want)
	}
	require.NotContains(t, out, "never")
}

// Keys and secret values typed in the shell stay out of its history file.
func TestShellHistoryKeepsNoSecrets(t *testing.T) {
	card := "emu:" + filepath.Join(t.TempDir(), "card.json")
	hist := filepath.Join(t.TempDir(), "history")
	in := "select F056435445535401\nsecret pin = \"1234\"\nsecure scp03 key=404142434445464748494A4B4C4D4E4F\nsecure scp03 key=${env:K}\nquit\n"
	_, _, err := cli(t, context.Background(), strings.NewReader(in), "shell", "--reader", card, "--history", hist)
	require.NoError(t, err)
	b, err := os.ReadFile(hist)
	require.NoError(t, err)
	require.Equal(t, "select F056435445535401\nsecure scp03 key=${env:K}\n", string(b))
}

func TestShellCompleter(t *testing.T) {
	in := script.New(script.Config{})
	c := shellCompleter{in}
	got, n := c.Do([]rune("sel"), 3)
	require.Equal(t, 3, n)
	require.Equal(t, [][]rune{[]rune("ect ")}, got)
	got, _ = c.Do([]rune("secure scp03 k"), 14)
	require.Equal(t, [][]rune{[]rune("ey="), []rune("vn=")}, got)
}
