package script_test

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/script"
)

func TestParseStatements(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // Describe() of each top-level statement
	}{
		{"scriptor hex with spaces", "00 A4 04 00 02 3F 00", []string{"send"}},
		{"scriptor hex without spaces", "00A40400023F00", []string{"send"}},
		{"lower case and colons", "00:a4:04:00", []string{"send"}},
		{"comments and blanks", "# one\n\n   # two\n00A40400 # trailing\n", []string{"send"}},
		{"continuation", "00 A4 \\\n04 00", []string{"send"}},
		{"continuation skips comments and blanks", "00 A4 \\\n# note\n\n04 00", []string{"send"}},
		{"keywords any case", "RESET\nReset cold\nExit", []string{"reset", "reset cold", "exit"}},
		{"keyword must be a whole word", "reset\n", []string{"reset"}},
		{"send flags", "send raw secret 00A40400", []string{"send raw secret"}},
		{"select", "select A000000151000000", []string{"select A000000151000000"}},
		{"select with a variable", "set aid = F0\nselect ${aid} 56", []string{"set aid = F0", "select ${aid} 56"}},
		{"expect forms", "expect sw 9000 61xx|63C?\nexpect data 6F??84*\nexpect data 01 mask 0F\nexpect data match \"^6F\"\nexpect len(data) == 2\nexpect not sw 6A82",
			[]string{"expect sw 9000 61xx|63C?", "expect data 6F??84*", "expect data 01 mask 0F", `expect data match "^6F"`, "expect len(data) == 2", "expect not sw 6A82"}},
		{"sw as an expression", "expect sw == 0x9000", []string{"expect sw == 0x9000"}},
		{"secret hides its value", `secret pin = "1234"`, []string{"secret pin"}},
		{"let", "let n = (1 + 2) * 3", []string{"let n = ((1 + 2) * 3)"}},
		{"if elif else", "if sw 9000\nprint a\nelif sw 61xx\nprint b\nelse if n > 1\nprint c\nelse\nprint d\nend", []string{"if sw 9000"}},
		{"repeat as", "repeat 3 as i\n80100000\nend", []string{"repeat 3"}},
		{"wait and tap", "wait card timeout 5s\ntap timeout 10", []string{"wait card", "tap"}},
		{"secure never shows keys", "secure scp03 key=404142434445464748494A4B4C4D4E4F kvn=30 level=mac+enc\nsecure off",
			[]string{"secure scp03 kvn=30 level=mac+enc", "secure off"}},
		{"print and fail", "print hello ${1+1}\nfail", []string{"print", "fail"}},
		{"hash inside a string is not a comment", `expect data match "#"`, []string{`expect data match "#"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := script.Parse("t.vcs", []byte(tt.src))
			require.NoError(t, err)
			var got []string
			for _, st := range s.Stmts {
				got = append(got, st.Describe())
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the first error, with its position
	}{
		{"odd hex", "00 A4 0", "t.vcs:1:7: odd number of hex digits before the end"},
		{"bad char", "00 A4 ZZ", `t.vcs:1:7: unexpected 'Z' in hex`},
		{"wildcard outside a pattern", "00 A4 ??", "t.vcs:1:7: unexpected '?' in hex (wildcards are for expect data patterns)"},
		{"position after continuation", "00 A4 \\\n  04 0", "t.vcs:2:6: odd number of hex digits before the end"},
		{"unclosed interpolation", "80 ${x", "t.vcs:1:4: unclosed ${"},
		{"bad expression", "let n = 1 +", "t.vcs:1:12: expression ends too early"},
		{"unknown function", "let n = foo(1)", "t.vcs:1:9: unknown function foo (have: len, int, bytes, unhex, hex, env)"},
		{"bad sw pattern", "expect sw 90", `t.vcs:1:11: status word pattern "90": want 4 hex digits, ? or x for any (9000, 63C?, 61xx)`},
		{"bad regexp", `expect data match "("`, "t.vcs:1:19: bad regular expression: error parsing regexp: missing closing ): `(?i)(`"},
		{"reserved name", "let sw = 1", "t.vcs:1:5: sw is built in and cannot be assigned"},
		{"missing equals", "set x 01", "t.vcs:1:7: expected '=' after x"},
		{"reset word", "reset hard", `t.vcs:1:7: reset takes cold or warm, not "hard"`},
		{"exit takes nothing", "exit now", `t.vcs:1:6: unexpected "now" after exit`},
		{"stray end", "end", "t.vcs:1:1: end without a matching if or repeat"},
		{"unknown protocol", "secure scp02 key=00", `t.vcs:1:8: unknown secure channel protocol "scp02" (have: scp03)`},
		{"unknown secure parameter", "secure scp03 foo=1", `t.vcs:1:14: unknown scp03 parameter "foo" (have: key, enc, mac, dek, kvn, level, sd)`},
		{"bad timeout", "tap timeout soon", `t.vcs:1:13: bad duration "soon" (e.g. 30s, 2m)`},
		{"wait what", "wait bus", "t.vcs:1:6: wait takes card (wait card [timeout 30s]); use tap to wait for removal and re-insertion"},
		{"bad width", "80 ${1:x}", `t.vcs:1:8: bad width "x" after ':' (want a number of bytes)`},
		{"include without loader", "include x.vcs", "t.vcs:1:9: include: nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := script.Parse("t.vcs", []byte(tt.src), script.WithReadFile(func(string) ([]byte, error) {
				return nil, errors.New("nope")
			}))
			require.Error(t, err)
			var list script.ErrorList
			require.ErrorAs(t, err, &list)
			require.Equal(t, tt.want, list[0].Error())
		})
	}
}

// All errors of a file are reported, not just the first.
func TestParseReportsEveryError(t *testing.T) {
	_, err := script.Parse("t.vcs", []byte("00 A4 0\nexpect sw 1\nlet = 2\n00A40400\n"))
	var list script.ErrorList
	require.ErrorAs(t, err, &list)
	require.Len(t, list, 3)
	require.Equal(t, 1, list[0].Pos.Line)
	require.Equal(t, 2, list[1].Pos.Line)
	require.Equal(t, 3, list[2].Pos.Line)
}

// Blocks and continuations left open are incomplete input: the shell waits
// for more lines instead of reporting them.
func TestParseIncomplete(t *testing.T) {
	for _, src := range []string{"if sw 9000\nprint a", "repeat 2\n", "00 A4 \\", "if sw 9000\nelse\n"} {
		_, err := script.Parse("shell", []byte(src))
		require.ErrorIs(t, err, script.ErrIncomplete, "%q", src)
	}
	_, err := script.Parse("shell", []byte("00 A4 0"))
	require.Error(t, err)
	require.NotErrorIs(t, err, script.ErrIncomplete)
}

func TestInclude(t *testing.T) {
	files := map[string]string{
		"dir/main.vcs":    "include lib/a.vcs\nprint main",
		"dir/lib/a.vcs":   "include \"b.vcs\"\n",
		"dir/lib/b.vcs":   "00A40400\n",
		"loop/a.vcs":      "include b.vcs",
		"loop/b.vcs":      "include a.vcs",
		"bad/main.vcs":    "include inc.vcs",
		"bad/inc.vcs":     "\n\n  00 A4 0",
		"self/x.vcs":      "include x.vcs",
		"missing/x.vcs":   "include none.vcs",
		"nested/main.vcs": "if sw 9000\n  include b.vcs\nend",
		"nested/b.vcs":    "print b",
	}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("open %s: %w", p, os.ErrNotExist)
	}
	parse := func(name string) (*script.Script, error) {
		return script.ParseFile(name, script.WithReadFile(read))
	}

	s, err := parse("dir/main.vcs")
	require.NoError(t, err)
	inc := s.Stmts[0].(*script.Include)
	require.Equal(t, "dir/lib/a.vcs", inc.Script.File)
	inner := inc.Script.Stmts[0].(*script.Include)
	require.Equal(t, "dir/lib/b.vcs", inner.Script.File, "relative to the including file")
	require.Equal(t, script.Pos{File: "dir/lib/b.vcs", Line: 1, Col: 1}, inner.Script.Stmts[0].Pos())

	_, err = parse("loop/a.vcs")
	require.ErrorContains(t, err, "loop/b.vcs:1:9: include cycle: loop/a.vcs includes itself")
	_, err = parse("self/x.vcs")
	require.ErrorContains(t, err, "self/x.vcs:1:9: include cycle")
	_, err = parse("bad/main.vcs")
	require.ErrorContains(t, err, "bad/inc.vcs:3:9: odd number of hex digits", "errors point into the included file")
	_, err = parse("missing/x.vcs")
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = parse("nested/main.vcs")
	require.NoError(t, err)
}

func TestParseDefine(t *testing.T) {
	name, v, err := script.ParseDefine("aid=F0 56 43")
	require.NoError(t, err)
	require.Equal(t, "aid", name)
	require.Equal(t, "F05643", v.String())
	_, v, err = script.ParseDefine(`pin="1234"`)
	require.NoError(t, err)
	require.Equal(t, "31323334", v.String())
	for _, bad := range []string{"noequals", "1x=00", "sw=9000", "x=0", "x=${y}"} {
		_, _, err := script.ParseDefine(bad)
		require.Error(t, err, bad)
	}
}
