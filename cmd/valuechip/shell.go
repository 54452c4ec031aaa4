package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/chzyer/readline"
	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/script"
	"github.com/valuechip/valuechip/reader"
)

const (
	shellPrompt     = "vc> "
	shellMorePrompt = "..> "
)

func newShell() *cobra.Command {
	var (
		o        scriptFlags
		defines  []string
		protocol string
		history  string
	)
	cmd := &cobra.Command{
		Use:   "shell",
		Short: "Talk to a card interactively in the script language, with history and completion",
		Long: `An interactive session in the language of 'valuechip script' (see
docs/scripting.md): type a command APDU in hex or any directive, and see the
response with its status word decoded and BER-TLV data as a tree. Blocks
(if, repeat) continue over several lines until their end. Tab completes
directives, their words, AIDs and variable names; history is kept in the
user's cache directory.

Shell commands: help, vars, quit (or exit, or Ctrl-D).`,
		Example: `  valuechip shell --reader emu:/tmp/card.json
  valuechip shell --reader "Virtual PCD 00 00" --trace`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			vars := map[string]script.Value{}
			for _, d := range defines {
				name, v, err := script.ParseDefine(d)
				if err != nil {
					return usageError{err}
				}
				vars[name] = v
			}
			o.protocol = reader.ParseProtocol(protocol)
			if o.trace {
				o.traceW = cmd.ErrOrStderr()
			}
			ctx := cmd.Context()
			card, err := openScriptCard(ctx, o)
			if err != nil {
				return err
			}
			defer card.Close()
			if history == "" {
				history = defaultHistoryFile()
			}
			out := cmd.OutOrStdout()
			human := script.NewHuman(out)
			human.Frame, human.Positions = false, false
			in := script.New(script.Config{
				Card: card.scriptCard(), Observer: human, Raw: o.raw, Vars: vars,
				Prompt: func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) },
			})
			defer in.Close()

			stdin := cmd.InOrStdin()
			rc := io.NopCloser(stdin)
			if rcl, ok := stdin.(io.ReadCloser); ok {
				rc = rcl
			}
			rl, err := readline.NewEx(&readline.Config{
				Prompt:            shellPrompt,
				HistoryFile:       history,
				HistorySearchFold: true,
				AutoComplete:      shellCompleter{in},
				// Lines are saved by runShell, which leaves out literal
				// secrets.
				DisableAutoSaveHistory: true,
				InterruptPrompt:        "^C",
				EOFPrompt:              "",
				Stdin:                  rc,
				Stdout:                 out,
				Stderr:                 cmd.ErrOrStderr(),
			})
			if err != nil {
				return fmt.Errorf("shell: %w", err)
			}
			defer rl.Close()
			return runShell(cmd, rl, in)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.reader, "reader", "r", "", "reader: PC/SC index or name fragment, emu:PATH, tcp:HOST:PORT, replay:FILE (default $VALUECHIP_READER, else the reader holding a card)")
	f.BoolVar(&o.trace, "trace", false, "trace every exchange on the wire on stderr (secrets masked)")
	f.BoolVar(&o.raw, "raw", false, "send every command as written: no GET RESPONSE, 6Cxx re-send or chaining")
	f.StringVar(&o.record, "record", "", "record the session to a dump FILE (secrets masked)")
	f.StringArrayVarP(&defines, "define", "D", nil, "define a variable: NAME=HEX or NAME='\"text\"' (repeatable)")
	f.StringVar(&protocol, "protocol", "", "PC/SC protocol: T=0 or T=1 (default: either)")
	f.StringVar(&history, "history", "", "history file (default: valuechip/shell_history in the user cache directory)")
	return cmd
}

// defaultHistoryFile is valuechip/shell_history under the user's cache
// directory, created on demand; "" (no history) when there is none.
func defaultHistoryFile() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	dir = filepath.Join(dir, "valuechip")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ""
	}
	return filepath.Join(dir, "shell_history")
}

// runShell reads lines until quit or end of input. Lines gather until they
// parse: an if or repeat waits for its end, a trailing backslash for the
// next line.
func runShell(cmd *cobra.Command, rl *readline.Instance, in *script.Interpreter) error {
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	var pending []string
	for {
		line, err := rl.Readline()
		switch {
		case errors.Is(err, readline.ErrInterrupt):
			// Ctrl-C drops what is being typed; quit or Ctrl-D leaves.
			pending = nil
			rl.SetPrompt(shellPrompt)
			continue
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
		if len(pending) == 0 {
			switch strings.ToLower(strings.TrimSpace(line)) {
			case "quit", "exit":
				return nil
			case "help", "?":
				fmt.Fprint(out, shellHelp)
				continue
			case "vars":
				printVars(out, in)
				continue
			}
		}
		if !holdsSecret(line) {
			_ = rl.SaveHistory(line)
		}
		pending = append(pending, line)
		s, err := script.Parse("shell", []byte(strings.Join(pending, "\n")))
		if errors.Is(err, script.ErrIncomplete) {
			rl.SetPrompt(shellMorePrompt)
			continue
		}
		pending = nil
		rl.SetPrompt(shellPrompt)
		if err != nil {
			fmt.Fprintf(out, "error: %v\n", err)
			continue
		}
		r := in.Run(ctx, s)
		if r.Err != nil && !errors.Is(r.Err, script.ErrFailed) && len(r.Steps) == 0 {
			fmt.Fprintf(out, "error: %v\n", r.Err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if r.Exited {
			return nil
		}
	}
}

// literalKey matches a key written out in a secure directive.
var literalKey = regexp.MustCompile(`(?i)\b(key|enc|mac|dek)=[0-9a-f]`)

// holdsSecret reports a line that must not go to the history file: a
// secret definition, or a secure channel with its keys written out (with
// key=${env:NAME} it is kept).
func holdsSecret(line string) bool {
	f := strings.Fields(strings.ToLower(line))
	return len(f) > 0 && f[0] == "secret" || literalKey.MatchString(line)
}

func printVars(w io.Writer, in *script.Interpreter) {
	vars := in.Vars()
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		fmt.Fprintln(w, "no variables")
	}
	for _, k := range names {
		fmt.Fprintf(w, "%s = %s\n", k, vars[k])
	}
	if s := in.Secure(); s != "" {
		fmt.Fprintf(w, "secure channel: %s\n", s)
	}
}

const shellHelp = `Type a command APDU in hex (00A4040008F056435445535401) or a directive:
  select AID                 send [raw] [secret] HEX     reset [cold]    tap    wait card
  expect sw 9000|63C?|61xx   expect data HEX|6F??*|match "REGEX"   expect EXPR
  set NAME = HEX ${var}      let NAME = EXPR            secret NAME = "text"
  if COND ... else ... end   repeat N [as i] ... end    include FILE
  secure scp03 key=HEX [kvn=HEX] [level=mac+enc]      secure off
  print TEXT ${expr}         fail TEXT
Variables: sw, sw1, sw2, data, response, atr, and yours (vars lists them).
Functions: len, int, bytes(n, width), unhex, hex, env("NAME").
Tab completes; history is kept. quit leaves. See docs/scripting.md.
`

// shellCompleter adapts script completion to readline, which wants the
// rest of each candidate after what is typed.
type shellCompleter struct{ in *script.Interpreter }

func (c shellCompleter) Do(line []rune, pos int) ([][]rune, int) {
	s := string(line[:pos])
	cands, n := c.in.Complete(s, len(s))
	// Inside an unclosed ${ the name goes on with } or an operator, not
	// a blank.
	inInterp := strings.LastIndex(s, "${") > strings.LastIndex(s, "}")
	var out [][]rune
	for _, w := range cands {
		if len(w) < n {
			continue
		}
		suffix := w[n:]
		if !inInterp && !strings.HasSuffix(w, "=") && !strings.HasSuffix(w, "(") && !strings.HasSuffix(w, ":") && !strings.HasSuffix(w, "/") {
			suffix += " "
		}
		out = append(out, []rune(suffix))
	}
	return out, len([]rune(s[len(s)-n:]))
}
