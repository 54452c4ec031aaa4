package script_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/valuechip/valuechip/host/script"
)

// echoCard answers every command with its data and 9000, and resets
// without complaint: enough for the interpreter to run anything the parser
// accepts.
type echoCard struct{}

func (echoCard) Transceive(_ context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) > 5 {
		return append(append([]byte{}, cmd[5:]...), 0x90, 0x00), nil
	}
	return []byte{0x90, 0x00}, nil
}
func (echoCard) Reset(context.Context, bool) error { return nil }
func (echoCard) ATR() []byte                       { return []byte{0x3B, 0x00} }

// FuzzParse feeds arbitrary text to the parser and, when it parses, to the
// interpreter on an echo card: neither may panic or hang, errors must name
// a line of the input, and every statement must describe itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"00A4040008F056435445535401\nexpect sw 9000\n",
		"reset\nexit\n",
		"80 10 00 00 \\\n 01 02 00\n",
		"let n = (1 + 2) * len(data[1:]) << 2\nrepeat n as i\nprint ${i:2}\nend\n",
		"if not sw 61xx\nelif data match \"^(?P<x>..)\"\nelse if sw1 == 0x90\nelse\nend\n",
		"secret k = \"1234\"\nsecure scp03 key=${k} kvn=30 level=mac+enc\nsecure off\n",
		"expect data 6F??84* \nexpect data 01 mask 0F\nset x = ${env:HOME}\ninclude self.vcs\n",
		"tap timeout 1s\nwait card\nfail ${hex(sw)}\nsend raw secret 00C00000${sw2}\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		self := func(string) ([]byte, error) { return []byte(src), nil }
		s, err := script.Parse("f.vcs", []byte(src), script.WithReadFile(self))
		lines := strings.Count(src, "\n") + 1
		if err != nil {
			var list script.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("parse error is not an ErrorList: %v", err)
			}
			for _, e := range list {
				if e.Pos.Line < 1 || e.Pos.Line > lines || e.Pos.Col < 1 {
					t.Fatalf("error outside the input (%d lines): %v", lines, e)
				}
			}
			return
		}
		for _, st := range s.Stmts {
			_ = st.Describe()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		in := script.New(script.Config{
			Card: echoCard{}, MaxStatements: 2000, Continue: true,
			Getenv: func(string) (string, bool) { return "00", true },
		})
		defer in.Close()
		r := in.Run(ctx, s)
		_ = script.FormatResult(r)
	})
}
