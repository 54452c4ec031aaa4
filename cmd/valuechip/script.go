package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/script"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/pcsc"
)

func newScript() *cobra.Command {
	var (
		o        scriptFlags
		asJSON   bool
		junit    string
		cont     bool
		defines  []string
		protocol string
	)
	cmd := &cobra.Command{
		Use:   "script [flags] FILE...",
		Short: "Run APDU scripts (scriptor-compatible, with checks, variables and control flow)",
		Long: `Run APDU scripts against a card and report each step. The language is
documented in docs/scripting.md; every scriptor script runs unchanged (hex
APDUs with or without spaces, # comments, reset, exit, \ continuation), and on
top of that:

  expect sw 9000 | 63C? | 61xx      expect data 6F??84* | match "REGEX"
  set NAME = HEX ${var} "text"      let n = n + 1      secret pin = "1234"
  if COND ... elif ... else ... end  repeat N [as i] ... end   include FILE
  select AID   reset [cold]   tap   wait card   print TEXT   fail TEXT
  secure scp03 key=K [kvn=..] [level=mac+enc] ... secure off

A failed expectation stops the script (unless --continue) and the command
exits with status 1; 2 for a syntax error, 3 when no reader or card could be
used. FILE "-" reads standard input.`,
		Example: `  valuechip script --reader emu:/tmp/card.json testdata/scripts/hello.vcs
  valuechip script --reader "Virtual PCD 00 00" --junit report.xml testdata/scripts/*.vcs
  valuechip script --record session.dump --reader emu:card.json testdata/scripts/counter.vcs
  valuechip script --replay session.dump testdata/scripts/counter.vcs
  echo '00A4040008F056435445535401' | valuechip script --reader emu:card.json -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			vars := map[string]script.Value{}
			for _, d := range defines {
				name, v, err := script.ParseDefine(d)
				if err != nil {
					return usageError{err}
				}
				vars[name] = v
			}
			scripts, err := parseScripts(cmd.InOrStdin(), args)
			if err != nil {
				return usageError{err}
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

			var observer script.Observer
			if !asJSON {
				observer = script.NewHuman(cmd.OutOrStdout())
			}
			prompt := func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) }
			var results []*script.Result
			var firstErr error
			for _, s := range scripts {
				in := script.New(script.Config{
					Card: card.scriptCard(), Observer: observer, Continue: cont, Raw: o.raw,
					Vars: vars, Prompt: prompt,
				})
				r := in.Run(ctx, s)
				in.Close()
				results = append(results, r)
				if r.Err != nil && firstErr == nil {
					firstErr = r.Err
				}
				if r.Err != nil && !cont {
					break
				}
			}
			if asJSON {
				if err := script.WriteJSON(cmd.OutOrStdout(), results); err != nil {
					return err
				}
			}
			if junit != "" {
				if err := writeJUnit(junit, results); err != nil {
					return err
				}
			}
			if err := card.Close(); err != nil && firstErr == nil {
				return err
			}
			if firstErr == nil && card.replayer != nil {
				// Every recorded step should have been asked for: anything
				// left means the script no longer does what was recorded.
				if err := card.replayer.Done(); err != nil {
					return err
				}
			}
			return firstErr
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.reader, "reader", "r", "", "reader: PC/SC index or name fragment, emu:PATH, tcp:HOST:PORT, replay:FILE (default $VALUECHIP_READER, else the reader holding a card)")
	f.BoolVar(&asJSON, "json", false, "print the results as JSON instead of the trace")
	f.StringVar(&junit, "junit", "", "write JUnit XML to FILE: one testsuite per script, one testcase per step")
	f.BoolVar(&cont, "continue", false, "keep going after a failed expectation (the run still fails)")
	f.StringVar(&o.record, "record", "", "record the session to a dump FILE (secrets masked)")
	f.StringVar(&o.replay, "replay", "", "run against a session recorded with --record, with no card")
	f.BoolVar(&o.trace, "trace", false, "trace every exchange on the wire on stderr (secrets masked)")
	f.BoolVar(&o.raw, "raw", false, "send every command as written: no GET RESPONSE, 6Cxx re-send or chaining (as scriptor)")
	f.StringArrayVarP(&defines, "define", "D", nil, "define a variable: NAME=HEX or NAME='\"text\"' (repeatable)")
	f.StringVar(&protocol, "protocol", "", "PC/SC protocol: T=0 or T=1 (default: either)")
	cmd.MarkFlagsMutuallyExclusive("replay", "reader")
	cmd.MarkFlagsMutuallyExclusive("replay", "record")
	return cmd
}

// parseScripts parses every file before the card is touched, so that a
// typo in the last file does not leave a half-run session.
func parseScripts(stdin io.Reader, files []string) ([]*script.Script, error) {
	var out []*script.Script
	var errs []error
	stdinUsed := false
	for _, f := range files {
		var s *script.Script
		var err error
		if f == "-" {
			if stdinUsed {
				return nil, fmt.Errorf("standard input (-) can be given once")
			}
			stdinUsed = true
			src, rerr := io.ReadAll(io.LimitReader(stdin, 16<<20))
			if rerr != nil {
				return nil, fmt.Errorf("reading standard input: %w", rerr)
			}
			s, err = script.Parse("-", src)
		} else {
			s, err = script.ParseFile(f)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func writeJUnit(path string, results []*script.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--junit: %w", err)
	}
	if err := script.WriteJUnit(f, results); err != nil {
		f.Close()
		return fmt.Errorf("--junit: %w", err)
	}
	return f.Close()
}

type scriptFlags struct {
	reader   string
	record   string
	replay   string
	trace    bool
	traceW   io.Writer
	raw      bool
	protocol reader.Protocol
}

// scriptCard adapts a reader connection to script.Card. The connection can
// change under it: after a tap on a PC/SC reader the card is connected
// again, and a recording goes on across the reconnection (as a cold
// reset, which is what replay does for a tap).
type scriptCard struct {
	o        scriptFlags
	mu       sync.Mutex
	inner    reader.Conn // nil while no card is connected
	rec      *reader.Recorder
	recFile  *os.File
	replayer *reader.Replayer
	stack    reader.Transceiver
	pcsc     bool
	closed   bool
}

// openScriptCard connects as the flags say. A PC/SC reader without a card
// is not an error yet: the script may start with "wait card".
func openScriptCard(ctx context.Context, o scriptFlags) (*scriptCard, error) {
	c := &scriptCard{o: o}
	if o.record != "" {
		f, err := os.Create(o.record)
		if err != nil {
			return nil, fmt.Errorf("--record: %w", err)
		}
		c.recFile = f
	}
	var conn reader.Conn
	var err error
	switch {
	case o.replay != "":
		f, ferr := os.Open(o.replay)
		if ferr != nil {
			return nil, fmt.Errorf("--replay: %w", ferr)
		}
		d, perr := reader.ParseDump(f)
		f.Close()
		if perr != nil {
			return nil, fmt.Errorf("--replay %s: %w", o.replay, perr)
		}
		c.replayer = reader.Replay(d)
		conn = c.replayer
	default:
		c.pcsc = isPCSCName(o.reader)
		conn, err = connect.Open(ctx, o.reader, connect.Options{Protocol: o.protocol})
		if err != nil && !(c.pcsc && errors.Is(err, reader.ErrNoCard)) {
			c.Close()
			return nil, err
		}
	}
	if conn != nil {
		c.attach(conn)
	}
	return c, nil
}

func isPCSCName(name string) bool {
	for _, p := range []string{connect.SchemeEmu, connect.SchemeTCP, connect.SchemeReplay} {
		if strings.HasPrefix(name, p) {
			return false
		}
	}
	return true
}

// attach makes conn the current connection, starting the recording and
// building the stack on the first one.
func (c *scriptCard) attach(conn reader.Conn) {
	c.mu.Lock()
	c.inner = conn
	needRec := c.recFile != nil && c.rec == nil
	needStack := c.stack == nil
	c.mu.Unlock()
	// Record and Stack read the connection's ATR and name: not under mu.
	var wire reader.Conn = connView{c}
	if needRec {
		rec := reader.Record(c.recFile, wire)
		c.mu.Lock()
		c.rec = rec
		c.mu.Unlock()
	}
	if needStack {
		c.mu.Lock()
		if c.rec != nil {
			wire = c.rec
		}
		c.mu.Unlock()
		st := connect.Stack(wire, connect.StackOptions{Trace: c.o.traceW})
		c.mu.Lock()
		c.stack = st
		c.mu.Unlock()
	}
}

// scriptCard returns the script.Card view: with reader events when the
// reader is a PC/SC one.
func (c *scriptCard) scriptCard() script.Card {
	if c.pcsc {
		return &pcscScriptCard{c}
	}
	return c
}

func (c *scriptCard) current() (reader.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner == nil {
		return nil, fmt.Errorf("%w: connect one, or start the script with wait card", reader.ErrNoCard)
	}
	return c.inner, nil
}

// Transceive implements script.Card.
func (c *scriptCard) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	c.mu.Lock()
	stack := c.stack
	c.mu.Unlock()
	if stack == nil {
		_, err := c.current()
		return nil, err
	}
	return stack.Transceive(ctx, cmd)
}

// Reset implements script.Card.
func (c *scriptCard) Reset(ctx context.Context, cold bool) error {
	c.mu.Lock()
	rec := c.rec
	c.mu.Unlock()
	if rec != nil {
		return rec.Reset(ctx, cold)
	}
	conn, err := c.current()
	if err != nil {
		return err
	}
	return conn.Reset(ctx, cold)
}

// ATR implements script.Card.
func (c *scriptCard) ATR() []byte {
	conn, err := c.current()
	if err != nil {
		return nil
	}
	return conn.ATR()
}

// disconnect drops the current connection (the card has gone).
func (c *scriptCard) disconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inner != nil {
		_ = c.inner.Close()
		c.inner = nil
	}
}

// Close ends the session and the recording.
func (c *scriptCard) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if c.inner != nil {
		errs = append(errs, c.inner.Close())
	}
	if c.rec != nil {
		errs = append(errs, c.rec.Err())
	}
	if c.recFile != nil {
		errs = append(errs, c.recFile.Close())
	}
	return errors.Join(errs...)
}

// connView is the current connection of a scriptCard as one stable
// reader.Conn, for the recorder and the stack.
type connView struct{ c *scriptCard }

func (v connView) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	conn, err := v.c.current()
	if err != nil {
		return nil, err
	}
	return conn.Transceive(ctx, cmd)
}

func (v connView) Reader() string {
	if conn, err := v.c.current(); err == nil {
		return conn.Reader()
	}
	return ""
}

func (v connView) ATR() []byte { return v.c.ATR() }

func (v connView) Protocol() reader.Protocol {
	if conn, err := v.c.current(); err == nil {
		return conn.Protocol()
	}
	return reader.ProtocolUnknown
}

func (v connView) Reset(ctx context.Context, cold bool) error {
	conn, err := v.c.current()
	if err != nil {
		return err
	}
	return conn.Reset(ctx, cold)
}

func (v connView) Close() error { return nil } // the scriptCard owns the connection

// pcscScriptCard adds reader events (script.Presence) for PC/SC readers.
type pcscScriptCard struct{ *scriptCard }

// WaitCard implements script.Presence.
func (p *pcscScriptCard) WaitCard(ctx context.Context) error {
	if _, err := p.current(); err == nil {
		return nil
	}
	pc, err := pcsc.Open()
	if err != nil {
		return err
	}
	defer pc.Close()
	name := ""
	if infos, err := pc.Readers(ctx); err == nil {
		if info, err := pcsc.Select(infos, p.o.reader); err == nil {
			name = info.Name
		} else if p.o.reader != "" && !errors.Is(err, reader.ErrAmbiguous) {
			return err
		}
	}
	info, err := pc.WaitForCard(ctx, name)
	if err != nil {
		return err
	}
	return p.connect(ctx, info.Name, false)
}

// Tap implements script.Presence: it watches the reader, says so, waits for
// the card to leave and for a card to arrive, and connects to it.
func (p *pcscScriptCard) Tap(ctx context.Context, prompt func(string)) error {
	conn, err := p.current()
	if err != nil {
		return err
	}
	name := conn.Reader()
	pc, err := pcsc.Open()
	if err != nil {
		return err
	}
	defer pc.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := pc.Watch(wctx)
	if err != nil {
		return err
	}
	// The watch reports the present state first; ask for it separately to
	// know whether a removal is still to come. (A card moved between the
	// two calls is the one race left: the prompt below comes after both,
	// and nobody should move the card before it.)
	present := false
	infos, err := pc.Readers(ctx)
	if err != nil {
		return err
	}
	for _, in := range infos {
		if in.Name == name {
			present = in.Present
		}
	}
	prompt(fmt.Sprintf("tap: remove the card from %q and present it again", name))
	next := func() (reader.Event, error) {
		select {
		case ev, ok := <-events:
			if !ok {
				if err := ctx.Err(); err != nil {
					return ev, err
				}
				return ev, fmt.Errorf("watching %q: %w", name, reader.ErrReaderGone)
			}
			if ev.Reader == name && ev.Kind == reader.ReaderRemoved {
				return ev, fmt.Errorf("%q: %w", name, reader.ErrReaderGone)
			}
			return ev, nil
		case <-ctx.Done():
			return reader.Event{}, ctx.Err()
		}
	}
	for present {
		ev, err := next()
		if err != nil {
			return err
		}
		if ev.Reader == name && ev.Kind == reader.CardRemoved {
			present = false
		}
	}
	p.disconnect()
	for {
		ev, err := next()
		if err != nil {
			return err
		}
		if ev.Reader == name && ev.Kind == reader.CardInserted {
			break
		}
	}
	return p.connect(ctx, name, true)
}

// connect connects to the card in the reader called name. After a tap
// the recording notes a cold reset, which is how a replay stands in for
// the tap.
func (p *pcscScriptCard) connect(ctx context.Context, name string, tapped bool) error {
	conn, err := connect.Open(ctx, name, connect.Options{Protocol: p.o.protocol})
	if err != nil {
		return err
	}
	p.attach(conn)
	if tapped {
		p.mu.Lock()
		rec := p.rec
		p.mu.Unlock()
		if rec != nil {
			return rec.Reset(ctx, true)
		}
	}
	return nil
}
