package script_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/script"
	"github.com/valuechip/valuechip/reader"
)

const selectTest = "select F056435445535401\nexpect sw 9000\n"

func TestExpressions(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{"1 + 2 * 3", "7"},
		{"(1 + 2) * 3", "9"},
		{"0x10 | 0x01", "17"},
		{"1 << 4", "16"},
		{"1 << 70", "0"},
		{"-5 % 3", "-2"},
		{"7 / 2", "3"},
		{"1 < 2 && 2 < 3", "1"},
		{"1 > 2 || 0", "0"},
		{"!0", "1"},
		{`len("abc")`, "3"},
		{`"abc"`, "abc"},
		{`unhex("0a0B")`, "0A0B"},
		{`unhex("0A0B")[1]`, "11"},
		{`unhex("00010203")[1:3]`, "0102"},
		{`unhex("00010203")[-2:]`, "0203"},
		{`unhex("00010203")[:1]`, "00"},
		{`int(unhex("0102"))`, "258"},
		{`unhex("0102") + 1`, "259"},
		{`bytes(258, 4)`, "00000102"},
		{`hex(0x6A82)`, "6A82"},
		{`hex(unhex("01FF"))`, "01FF"},
		{`unhex("0102") == unhex("0102")`, "1"},
		{`unhex("0102") == 258`, "1"},
		{`env("VC_TEST")`, "set"},
		{`env("VC_UNSET", "default")`, "default"},
		{"n * 2", "84"},
		{"blob[0]", "222"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			r, out := runSource(t, "let x = "+tt.expr+"\nprint ${x}", script.Config{
				Vars:   map[string]script.Value{"n": script.Int(42), "blob": script.Bytes([]byte{0xDE, 0xAD})},
				Getenv: func(k string) (string, bool) { return "set", k == "VC_TEST" },
			})
			require.NoError(t, r.Err, out)
			require.Contains(t, out, "print: "+tt.want+"\n")
		})
	}
}

func TestRuntimeErrors(t *testing.T) {
	tests := []struct {
		src  string
		want string
	}{
		{"let x = 1 / 0", "t.vcs:1:11: division by zero"},
		{"let x = y", "t.vcs:1:9: undefined variable y"},
		{"expect sw 9000", "t.vcs:1:8: no response to check yet: send a command first"},
		{"let x = sw", "t.vcs:1:9: sw has no value yet: no command has been sent"},
		{`let x = unhex("01")[5]`, "t.vcs:1:21: index 5 out of range for 1 bytes"},
		{`let x = unhex("0102")[2:1]`, "t.vcs:1:22: slice [2:1] runs backwards"},
		{"80 10 00 00 ${300}", "t.vcs:1:13: ${300}: 300 does not fit in one byte (write ${...:2} for two)"},
		{"80 10 00", "t.vcs:1:1: a command APDU needs at least CLA INS P1 P2 (4 bytes), got 3"},
		{"80 10 00 00 05 01", "t.vcs:1:1: apdu: length fields do not match the command length"},
		{"repeat -1\nend", "t.vcs:1:1: repeat count -1 is not a number from 0 to 1000000"},
		{"print ${env:NOPE}", "t.vcs:1:7: environment variable NOPE is not set"},
		{`let x = env("NOPE")`, "t.vcs:1:9: env: environment variable NOPE is not set"},
		{"let x = 1 << -1", "t.vcs:1:11: negative shift count -1"},
		{`let x = int(unhex("010203040506070809"))`, "t.vcs:1:9: int: 9 bytes are too long to use as a number (at most 8)"},
		{"secure scp03 key=00", "t.vcs:1:1: secure scp03: scp03: invalid key: Key-ENC: AES key of 1 bytes (want 16, 24 or 32)"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			r, out := runSource(t, tt.src, script.Config{})
			require.Error(t, r.Err, out)
			if strings.HasPrefix(tt.src, "80 10 00 00 05") {
				require.Contains(t, r.Err.Error(), tt.want)
				require.Contains(t, r.Err.Error(), "(send raw sends it anyway)")
				return
			}
			if tt.src == "secure scp03 key=00" {
				require.Contains(t, r.Err.Error(), "t.vcs:1:1: secure scp03:")
				return
			}
			require.Equal(t, tt.want, r.Err.Error())
			require.NotErrorIs(t, r.Err, script.ErrFailed)
		})
	}
}

func TestExpectStopsOrContinues(t *testing.T) {
	src := selectTest + "expect sw 6A82\nprint after\nexpect data 00\n"
	r, out := runSource(t, src, script.Config{})
	require.ErrorIs(t, r.Err, script.ErrFailed)
	require.Equal(t, "t.vcs:3:1: expect sw 6A82: got 9000 (success)", r.Err.Error())
	require.NotContains(t, out, "after", "a failed expectation stops the script")

	r, out = runSource(t, src, script.Config{Continue: true})
	require.ErrorIs(t, r.Err, script.ErrFailed)
	require.Contains(t, out, "print: after")
	require.Contains(t, r.Err.Error(), "(and 1 more failures)")
	_, checks, failed := r.Counts()
	require.Equal(t, 3, checks)
	require.Equal(t, 2, failed)
}

func TestExitAndFail(t *testing.T) {
	r, out := runSource(t, "print a\nexit\nprint b", script.Config{})
	require.NoError(t, r.Err)
	require.True(t, r.Exited)
	require.NotContains(t, out, "print: b")

	r, _ = runSource(t, "let n = 2\nfail n is ${n}", script.Config{})
	require.ErrorIs(t, r.Err, script.ErrFailed)
	require.Equal(t, "t.vcs:2:1: fail: n is 2", r.Err.Error())
}

func TestControlFlow(t *testing.T) {
	src := `let total = 0
repeat 4 as i
  if i == 0
    let total = total + 1
  elif i == 1
    let total = total + 10
  else if i == 2
    let total = total + 100
  else
    let total = total + 1000
  end
end
expect total == 1111
repeat 0
  fail never
end
`
	r, out := runSource(t, src, script.Config{})
	require.NoError(t, r.Err, out)
}

func TestCapturesAndPatterns(t *testing.T) {
	src := selectTest + `expect data match "8408(?P<aid>.{16})A5"
expect aid == unhex("F056435445535401")
80 10 00 00 04 DEADBEEF 00
expect data DE?DBE*
expect data xxADBEEF
expect not data DEAD
expect data D0A0B0E0 mask F0F0F0F0
expect data[1:3] == unhex("ADBE")
expect response == unhex("DEADBEEF9000")
expect sw1 == 0x90 && sw2 == 0
`
	r, out := runSource(t, src, script.Config{})
	require.NoError(t, r.Err, out)

	// A group that cuts a byte in two is an error, not a silent shift.
	r, _ = runSource(t, selectTest+`expect data match "^6(?P<x>F1)"`, script.Config{})
	require.ErrorContains(t, r.Err, "group x matched half a byte")
}

// Secrets never reach the trace, the JSON or the JUnit report: PINs by
// instruction (VERIFY), secret variables wherever they go, and anything
// derived from them.
func TestSecretsMasked(t *testing.T) {
	src := selectTest + `secret pin = "1234"
secret token = C0FFEE
00 20 00 80 04 ${pin}
expect sw 9000
80 10 00 00 03 ${token} 00
expect data ${token}
let t2 = token
print token is ${t2}
send secret 80 10 00 00 02 BEEF 00
`
	conn, card := emuCard(sampleCard(t))
	var trace bytes.Buffer
	conn2 := reader.Trace(&trace)(conn)
	_ = conn2
	var human bytes.Buffer
	r, _ := runSource(t, src, script.Config{
		Card:     script.StackCard{Conn: conn, Stack: reader.Stack(card, reader.Trace(&trace))},
		Observer: script.NewHuman(&human),
	})
	require.NoError(t, r.Err, human.String())
	var js, ju bytes.Buffer
	require.NoError(t, script.WriteJSON(&js, []*script.Result{r}))
	require.NoError(t, script.WriteJUnit(&ju, []*script.Result{r}))
	for name, out := range map[string]string{"human": human.String(), "json": js.String(), "junit": ju.String(), "wire trace": trace.String()} {
		for _, secret := range []string{"31323334", "C0FFEE", "BEEF"} {
			require.NotContains(t, strings.ToUpper(out), secret, "%s shows %s:\n%s", name, secret, out)
		}
	}
	require.Contains(t, human.String(), "0020008004********")
	require.Contains(t, human.String(), "print: token is ****")
}

// SCP03 through the interpreter: see secure_test.go.

func TestParseSecurityLevel(t *testing.T) {
	for in, want := range map[string]byte{"none": 0, "mac": 1, "C-MAC+C-DEC": 3, "mac,rmac": 0x11, "mac+enc+rmac": 0x13, "mac+enc+rmac+renc": 0x33, "0x13": 0x13, "33": 0x33} {
		l, err := script.ParseSecurityLevel(in)
		require.NoError(t, err, in)
		require.Equal(t, want, byte(l), in)
	}
	for _, bad := range []string{"enc", "rmac", "mac+renc", "02", "fast"} {
		_, err := script.ParseSecurityLevel(bad)
		require.Error(t, err, bad)
	}
}

// tap and wait card without reader events: a power cycle and nothing.
// After the tap the issuer security domain is selected again (Card Reset
// privilege), and it does not know the test applet's READ (6D00).
func TestTapWithoutEvents(t *testing.T) {
	src := selectTest + "wait card\n80 22 00 00 04\nexpect sw 9000\ntap\n80 22 00 00 04\nexpect sw 6D00\n"
	r, out := runSource(t, src, script.Config{})
	require.NoError(t, r.Err, out)
	require.Contains(t, out, "tap\n    ATR 3B858001807380014036")
}

// fakePresence records what the interpreter asks of a card with reader
// events.
type fakePresence struct {
	script.Card
	calls []string
}

func (f *fakePresence) WaitCard(context.Context) error {
	f.calls = append(f.calls, "wait")
	return nil
}

func (f *fakePresence) Tap(_ context.Context, prompt func(string)) error {
	prompt("tap now")
	f.calls = append(f.calls, "tap")
	return nil
}

func TestTapWithEvents(t *testing.T) {
	_, card := emuCard(sampleCard(t))
	f := &fakePresence{Card: card}
	var prompts []string
	r, out := runSource(t, "wait card\ntap timeout 1s", script.Config{Card: f, Prompt: func(s string) { prompts = append(prompts, s) }})
	require.NoError(t, r.Err, out)
	require.Equal(t, []string{"wait", "tap"}, f.calls)
	require.Equal(t, []string{"waiting for a card", "tap now"}, prompts)
}

func TestJSONAndJUnit(t *testing.T) {
	src := selectTest + "80 10 00 00 01 AA 00\nexpect data BB\n"
	r, _ := runSource(t, src, script.Config{Continue: true})
	var js bytes.Buffer
	require.NoError(t, script.WriteJSON(&js, []*script.Result{r}))
	var rep struct {
		OK      bool `json:"ok"`
		Scripts []struct {
			OK    bool `json:"ok"`
			Steps []struct {
				Kind, Status, Command, SW, Meaning string
				Data                               *string
				Checks                             []struct {
					OK      bool
					Message string
				}
			}
		}
	}
	require.NoError(t, json.Unmarshal(js.Bytes(), &rep))
	require.False(t, rep.OK)
	steps := rep.Scripts[0].Steps
	require.Len(t, steps, 2)
	require.Equal(t, "select", steps[0].Kind)
	require.Equal(t, "pass", steps[0].Status)
	require.Equal(t, "fail", steps[1].Status)
	require.Equal(t, "80100000 01AA00", steps[1].Command[:8]+" "+steps[1].Command[8:])
	require.Equal(t, "AA", *steps[1].Data)
	require.Equal(t, "got AA", steps[1].Checks[0].Message)

	var ju bytes.Buffer
	require.NoError(t, script.WriteJUnit(&ju, []*script.Result{r}))
	x := ju.String()
	require.Contains(t, x, `<testsuite name="t.vcs" tests="2" failures="1" errors="0"`)
	require.Contains(t, x, `<testcase name="3:1 80 10 00 00" classname="t" file="t.vcs" line="3"`)
	require.Contains(t, x, `<failure message="expect data BB: got AA" type="expect">`)
}

// Variables, the last response and AIDs persist across runs, as the shell
// needs; completion offers them.
func TestSessionAndCompletion(t *testing.T) {
	_, card := emuCard(sampleCard(t))
	in := script.New(script.Config{Card: card, Getenv: func(string) (string, bool) { return "", false }})
	defer in.Close()
	for _, line := range []string{"select F056435445535401", "let counter = 5", "set blob = 0102"} {
		s, err := script.Parse("shell", []byte(line))
		require.NoError(t, err)
		require.NoError(t, in.Run(context.Background(), s).Err)
	}
	require.Equal(t, "5", in.Vars()["counter"].String())
	require.Equal(t, []string{"F056435445535401"}, in.AIDs())

	tests := []struct {
		line string
		want []string
		n    int
	}{
		{"sel", []string{"select"}, 3},
		{"re", []string{"repeat", "reset"}, 2},
		{"select ", []string{"F056435445535401", "A000000151000000", "A0000001510000"}, 0},
		{"select A0", []string{"A000000151000000", "A0000001510000"}, 2},
		{"80 10 00 00 ${co", []string{"counter"}, 2},
		{"print ${le", []string{"len("}, 2},
		{"expect ", nil, 0}, // checked below: sw, data, not first
		{"expect data ", []string{"match"}, 0},
		{"reset ", []string{"cold", "warm"}, 0},
		{"secure ", []string{"scp03", "off"}, 0},
		{"secure scp03 k", []string{"key=", "kvn="}, 1},
		{"secure scp03 level=mac+e", []string{"level=mac+enc"}, 11},
		{"let x = bl", []string{"blob"}, 2},
		{"wait ", []string{"card"}, 0},
	}
	for _, tt := range tests {
		got, n := in.Complete(tt.line, len(tt.line))
		if tt.line == "expect " {
			require.Equal(t, []string{"sw", "data", "not"}, got[:3])
			continue
		}
		require.Equal(t, tt.want, got, tt.line)
		require.Equal(t, tt.n, n, tt.line)
	}
}

// The interpreter bounds runaway loops.
func TestRunawayLoop(t *testing.T) {
	r, _ := runSource(t, "repeat 1000000\nrepeat 1000000\nlet x = 1\nend\nend", script.Config{MaxStatements: 10000})
	require.ErrorContains(t, r.Err, "more than 10000 statements run")
}

// Interrupting a run (Ctrl-C) stops it at the next statement.
func TestInterrupted(t *testing.T) {
	s, err := script.Parse("t.vcs", []byte("repeat 1000000\nlet x = 1\nend"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := script.New(script.Config{Card: script.StackCard{}}).Run(ctx, s)
	require.ErrorIs(t, r.Err, context.Canceled)
}
