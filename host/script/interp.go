package script

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/tlv"
	"github.com/valuechip/valuechip/reader"
)

// Card is what the interpreter drives: the host stack over one card
// (GET RESPONSE, 6Cxx re-send and chaining below Transceive; reader.WithRaw
// in the context turns them off for one command), plus reset.
type Card interface {
	reader.Transceiver
	Reset(ctx context.Context, cold bool) error
	ATR() []byte
}

// Presence is implemented by cards whose reader reports insertions and
// removals (PC/SC). Without it, "tap" power-cycles the card (a cold reset:
// what an in-process card or a replayed session can do) and "wait card"
// returns at once.
type Presence interface {
	// WaitCard returns once a card is in the reader and connected; at once
	// if it already is.
	WaitCard(ctx context.Context) error
	// Tap waits for the card to leave the reader and for a card to come
	// back, then reconnects. It calls prompt once it is watching, so that
	// whoever moves the card does so only then.
	Tap(ctx context.Context, prompt func(string)) error
}

// Config sets up an Interpreter.
type Config struct {
	// Card is the card to talk to.
	Card Card
	// Observer, if set, sees every step as it completes (live output).
	Observer Observer
	// Continue keeps running after a failed expectation or fail; the
	// script still fails in the end.
	Continue bool
	// Raw sends every command raw (see reader.WithRaw), as scriptor does.
	Raw bool
	// Getenv reads environment variables (os.LookupEnv when nil).
	Getenv func(string) (string, bool)
	// Vars are predefined variables (-D name=value).
	Vars map[string]Value
	// Secure maps protocol names to implementations;
	// DefaultSecureChannels() when nil.
	Secure map[string]SecureChannel
	// Prompt receives instructions for the person at the reader ("remove
	// the card ..."); nil drops them.
	Prompt func(string)
	// MaxStatements bounds the statements one Run executes (10 million
	// when 0), so that a runaway loop ends with an error.
	MaxStatements int
}

// Interpreter runs scripts against a card. Variables, the last response
// and an open secure channel persist from one Run to the next, which is
// what the shell needs; make a new Interpreter for a fresh start. It is
// not safe for concurrent use.
type Interpreter struct {
	cfg      Config
	vars     map[string]Value
	last     *lastResponse
	layer    SecureLayer
	res      *Result
	lastStep *Step
	aids     []string
	count    int
	failures []*Error
}

type lastResponse struct {
	data   []byte
	sw     uint16
	secret bool
}

// New returns an interpreter for cfg.
func New(cfg Config) *Interpreter {
	if cfg.Getenv == nil {
		cfg.Getenv = os.LookupEnv
	}
	if cfg.Secure == nil {
		cfg.Secure = DefaultSecureChannels()
	}
	if cfg.MaxStatements <= 0 {
		cfg.MaxStatements = 10_000_000
	}
	in := &Interpreter{cfg: cfg, vars: map[string]Value{}}
	for k, v := range cfg.Vars {
		in.vars[k] = v
	}
	return in
}

// errExit unwinds the interpreter when a script runs exit.
var errExit = errors.New("exit")

// maxRepeat bounds one repeat's count.
const maxRepeat = 1_000_000

// Run runs a parsed script and returns its result; Result.Err says why it
// failed, if it did.
func (in *Interpreter) Run(ctx context.Context, s *Script) *Result {
	res := &Result{File: s.File}
	in.res, in.lastStep, in.failures, in.count = res, nil, nil, 0
	if in.cfg.Observer != nil {
		in.cfg.Observer.Begin(s.File)
	}
	start := time.Now()
	err := in.exec(ctx, s.Stmts)
	if errors.Is(err, errExit) {
		res.Exited, err = true, nil
	}
	if err == nil && len(in.failures) > 0 {
		first := in.failures[0]
		msg := first.Msg
		if n := len(in.failures); n > 1 {
			msg += fmt.Sprintf(" (and %d more failures)", n-1)
		}
		err = &Error{Pos: first.Pos, Msg: msg, Err: ErrFailed}
	}
	res.Err = err
	res.Duration = time.Since(start)
	if in.cfg.Observer != nil {
		in.cfg.Observer.End(res)
	}
	return res
}

// Close ends an open secure channel.
func (in *Interpreter) Close() {
	if in.layer != nil {
		in.layer.Close()
		in.layer = nil
	}
}

// Vars returns a copy of the variables, for the shell.
func (in *Interpreter) Vars() map[string]Value {
	out := make(map[string]Value, len(in.vars))
	for k, v := range in.vars {
		out[k] = v
	}
	return out
}

// AIDs returns the AIDs selected so far, in hex, most recent first.
func (in *Interpreter) AIDs() []string { return append([]string(nil), in.aids...) }

// Secure reports the open secure channel's description, or "".
func (in *Interpreter) Secure() string {
	if in.layer == nil {
		return ""
	}
	return in.layer.Describe()
}

func (in *Interpreter) exec(ctx context.Context, stmts []Stmt) error {
	for _, st := range stmts {
		if err := ctx.Err(); err != nil {
			return &Error{Pos: st.Pos(), Msg: "interrupted", Err: err}
		}
		in.count++
		if in.count > in.cfg.MaxStatements {
			return &Error{Pos: st.Pos(), Msg: fmt.Sprintf("more than %d statements run: is a loop running away?", in.cfg.MaxStatements)}
		}
		if err := in.stmt(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

func (in *Interpreter) stmt(ctx context.Context, st Stmt) error {
	switch st := st.(type) {
	case *Send:
		cmd, err := st.APDU.expand(in)
		if err != nil {
			return in.stepError(st.P, KindSend, "send", err)
		}
		return in.exchange(ctx, st.P, KindSend, "", cmd, st.Raw || in.cfg.Raw, st.Secret)
	case *Select:
		return in.doSelect(ctx, st)
	case *Reset:
		in.closeSecure()
		step := &Step{Pos: st.P, Kind: KindReset, Title: st.Describe()}
		start := time.Now()
		err := in.cfg.Card.Reset(ctx, st.Cold)
		step.Duration = time.Since(start)
		if err != nil {
			return in.failStep(step, err)
		}
		step.ATR = fmt.Sprintf("%X", in.cfg.Card.ATR())
		in.addStep(step)
		return nil
	case *Exit:
		in.addStep(&Step{Pos: st.P, Kind: KindExit, Title: "exit"})
		return errExit
	case *Expect:
		return in.expect(st)
	case *Set:
		e, err := st.Value.expand(in)
		if err != nil {
			return in.stepError(st.P, "", st.Describe(), err)
		}
		in.vars[st.Name] = Value{b: e.b, secret: st.Secret || len(e.secret) > 0}
		return nil
	case *Let:
		v, err := eval(st.Value, in)
		if err != nil {
			return in.stepError(st.P, "", st.Describe(), err)
		}
		in.vars[st.Name] = v
		return nil
	case *If:
		ok, _, err := in.cond(st.Cond)
		if err != nil {
			return in.stepError(st.P, "", st.Describe(), err)
		}
		if ok {
			return in.exec(ctx, st.Then)
		}
		return in.exec(ctx, st.Else)
	case *Repeat:
		v, err := eval(st.Count, in)
		if err != nil {
			return in.stepError(st.P, "", st.Describe(), err)
		}
		n, err := v.AsInt()
		if err != nil || n < 0 || n > maxRepeat {
			return in.stepError(st.P, "", st.Describe(), fmt.Errorf("repeat count %s is not a number from 0 to %d", v, maxRepeat))
		}
		for i := int64(0); i < n; i++ {
			if st.Var != "" {
				in.vars[st.Var] = Int(i)
			}
			if err := in.exec(ctx, st.Body); err != nil {
				return err
			}
		}
		return nil
	case *Include:
		return in.exec(ctx, st.Script.Stmts)
	case *Wait:
		return in.wait(ctx, st)
	case *Secure:
		return in.secure(ctx, st)
	case *Print:
		text, err := st.Text.expand(in)
		if err != nil {
			return in.stepError(st.P, KindPrint, "print", err)
		}
		in.addStep(&Step{Pos: st.P, Kind: KindPrint, Title: "print", Output: text})
		return nil
	case *Fail:
		text, err := st.Text.expand(in)
		if err != nil {
			return in.stepError(st.P, KindFail, "fail", err)
		}
		if text == "" {
			text = "failed"
		}
		in.addStep(&Step{Pos: st.P, Kind: KindFail, Title: "fail", Output: text})
		return in.failure(&Error{Pos: st.P, Msg: "fail: " + text, Err: ErrFailed})
	}
	return &Error{Pos: st.Pos(), Msg: fmt.Sprintf("unknown statement %T", st)}
}

// failure records a failed expectation or fail, and stops the script
// unless told to continue.
func (in *Interpreter) failure(e *Error) error {
	in.failures = append(in.failures, e)
	if in.cfg.Continue {
		return nil
	}
	return e
}

func (in *Interpreter) addStep(s *Step) {
	in.res.Steps = append(in.res.Steps, s)
	if s.exchange() {
		in.lastStep = s
	}
	if in.cfg.Observer != nil {
		in.cfg.Observer.StepDone(s)
	}
}

// failStep records a step that could not complete and returns the error
// that stops the script.
func (in *Interpreter) failStep(s *Step, err error) error {
	if e, ok := err.(*Error); ok {
		s.Err = oneLine(e.Msg)
		in.addStep(s)
		return err
	}
	s.Err = oneLine(err.Error())
	in.addStep(s)
	return &Error{Pos: s.Pos, Msg: s.Err, Err: err}
}

// stepError reports a run-time error in a statement. Statements that are
// not steps of their own (set, let, if) still show up, so that reports name
// the line that stopped the script.
func (in *Interpreter) stepError(p Pos, kind, title string, err error) error {
	if kind == "" {
		kind = "error"
	}
	var e *Error
	if !errors.As(err, &e) {
		err = &Error{Pos: p, Msg: err.Error(), Err: err}
	}
	return in.failStep(&Step{Pos: p, Kind: kind, Title: title}, err)
}

func (in *Interpreter) closeSecure() {
	if in.layer != nil {
		in.layer.Close()
		in.layer = nil
	}
}

// transceiver is the card, wrapped by the secure channel if one is open.
func (in *Interpreter) transceiver() reader.Transceiver {
	if in.layer != nil {
		return in.layer.Wrap(in.cfg.Card)
	}
	return in.cfg.Card
}

func (in *Interpreter) doSelect(ctx context.Context, st *Select) error {
	e, err := st.AID.expand(in)
	if err != nil {
		return in.stepError(st.P, KindSelect, st.Describe(), err)
	}
	if len(e.b) > 16 {
		return in.stepError(st.P, KindSelect, st.Describe(), fmt.Errorf("an AID has at most 16 bytes, this one %d", len(e.b)))
	}
	// Selecting an application ends a secure channel session on a real
	// card (GP Amd D §5.6), so the SELECT goes in plain.
	in.closeSecure()
	cmd := apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: e.b, Ne: apdu.MaxShortNe}
	raw, err := cmd.Bytes()
	if err != nil {
		return in.stepError(st.P, KindSelect, st.Describe(), err)
	}
	var secret []reader.Span
	for _, s := range e.secret {
		secret = append(secret, reader.Span{Start: s.Start + 5, End: s.End + 5})
	}
	aid := maskedHex(e.b, e.secret)
	if len(e.secret) == 0 {
		in.rememberAID(aid)
	}
	return in.exchange(ctx, st.P, KindSelect, "select "+aid, expanded{b: raw, secret: secret}, in.cfg.Raw, false)
}

func (in *Interpreter) rememberAID(aid string) {
	if aid == "" {
		return
	}
	out := []string{aid}
	for _, a := range in.aids {
		if a != aid {
			out = append(out, a)
		}
	}
	if len(out) > 32 {
		out = out[:32]
	}
	in.aids = out
}

// exchange sends one command and records the step.
func (in *Interpreter) exchange(ctx context.Context, p Pos, kind, title string, cmd expanded, raw, secret bool) error {
	b := cmd.b
	step := &Step{Pos: p, Kind: kind, Title: title, Raw: raw, Secure: in.layer != nil}
	if len(b) >= 2 {
		step.Name = reader.CommandName(b[0], b[1])
	}
	if title == "" {
		step.Title = headerTitle(b, step.Name)
	}
	if len(b) < 4 {
		step.Command = maskedHex(b, cmd.secret)
		return in.failStep(step, &Error{Pos: p, Msg: fmt.Sprintf("a command APDU needs at least CLA INS P1 P2 (4 bytes), got %d", len(b))})
	}
	if _, err := apdu.ParseCommand(b); err != nil && !raw {
		step.Command = maskedHex(b, cmd.secret)
		return in.failStep(step, &Error{Pos: p, Msg: fmt.Sprintf("%v (send raw sends it anyway)", err), Err: err})
	}
	sensitive := secret || len(cmd.secret) > 0
	if raw {
		ctx = reader.WithRaw(ctx)
	}
	if sensitive {
		ctx = reader.WithSensitive(ctx)
	}
	start := time.Now()
	resp, err := in.transceiver().Transceive(ctx, b)
	step.Duration = time.Since(start)

	cmdSecret, respSecret := reader.DefaultMasker(b, resp)
	cmdSecret = append(cmdSecret, cmd.secret...)
	if secret {
		if s, ok := commandData(b); ok {
			cmdSecret = append(cmdSecret, s)
		}
	}
	step.Command = maskedHex(b, cmdSecret)
	if err != nil {
		if in.layer != nil {
			// A secure channel that failed to unwrap is aborted: later
			// commands would only fail the same way.
			in.closeSecure()
		}
		return in.failStep(step, err)
	}
	if len(resp) < 2 {
		return in.failStep(step, fmt.Errorf("the card answered %d byte(s), no status word", len(resp)))
	}
	data := resp[:len(resp)-2]
	if secret || sensitive && len(data) > 0 {
		respSecret = append(respSecret, reader.Span{Start: 0, End: len(data)})
	}
	respSecret = clipSpans(respSecret, len(data))
	step.Data = maskedHex(data, respSecret)
	step.SW = uint16(resp[len(resp)-2])<<8 | uint16(resp[len(resp)-1])
	step.HasSW = true
	if len(respSecret) == 0 {
		step.TLV = tlvTree(data)
	}
	in.last = &lastResponse{data: append([]byte{}, data...), sw: step.SW, secret: len(respSecret) > 0}
	in.addStep(step)
	return nil
}

// headerTitle names an APDU step: its instruction name, or its header.
func headerTitle(b []byte, name string) string {
	if name != "" {
		return name
	}
	n := min(len(b), 4)
	parts := make([]string, n)
	for i := 0; i < n; i++ {
		parts[i] = fmt.Sprintf("%02X", b[i])
	}
	return strings.Join(parts, " ")
}

// commandData returns the span of a command's data field.
func commandData(b []byte) (reader.Span, bool) {
	c, err := apdu.ParseCommand(b)
	if err != nil {
		if len(b) > 4 {
			return reader.Span{Start: 4, End: len(b)}, true
		}
		return reader.Span{}, false
	}
	if len(c.Data) == 0 {
		return reader.Span{}, false
	}
	off := 5
	if b[4] == 0 {
		off = 7 // extended Lc: 00 Lc1 Lc2
	}
	return reader.Span{Start: off, End: off + len(c.Data)}, true
}

// clipSpans keeps spans inside [0, n): the masker may name the status
// word, which is never secret.
func clipSpans(spans []reader.Span, n int) []reader.Span {
	var out []reader.Span
	for _, s := range spans {
		if s.End > n {
			s.End = n
		}
		if s.Start < s.End {
			out = append(out, s)
		}
	}
	return out
}

// maskedHex renders b in upper-case hex with the bytes in spans as "**".
func maskedHex(b []byte, spans []reader.Span) string {
	const digits = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(2 * len(b))
	for i, x := range b {
		if inSpans(spans, i) {
			sb.WriteString("**")
			continue
		}
		sb.WriteByte(digits[x>>4])
		sb.WriteByte(digits[x&0xF])
	}
	return sb.String()
}

// tlvTree renders data as a BER-TLV tree when it plausibly is one: the
// first object is constructed (FCI 6F, records 70, templates A5...) and the
// whole field parses. Plain data that happens to parse (an echo of 010203)
// is left alone.
func tlvTree(data []byte) string {
	if len(data) < 2 || data[0]&0x20 == 0 {
		return ""
	}
	list, err := tlv.Parse(data)
	if err != nil || len(list) == 0 {
		return ""
	}
	return tlv.Format(list)
}

func (in *Interpreter) expect(st *Expect) error {
	ok, msg, err := in.cond(st.Cond)
	if err != nil {
		return in.stepError(st.P, KindCheck, st.Describe(), err)
	}
	c := &Check{Pos: st.P, Text: st.Describe(), OK: ok}
	if !ok {
		c.Message = msg
	}
	step := in.lastStep
	if step == nil {
		step = &Step{Pos: st.P, Kind: KindCheck, Title: st.Describe()}
		step.Checks = append(step.Checks, c)
		in.res.Steps = append(in.res.Steps, step)
	} else {
		step.Checks = append(step.Checks, c)
	}
	if in.cfg.Observer != nil {
		in.cfg.Observer.CheckDone(step, c)
	}
	if ok {
		return nil
	}
	text := c.Text
	if msg != "" {
		text += ": " + msg
	}
	return in.failure(&Error{Pos: st.P, Msg: text, Err: ErrFailed})
}

// cond evaluates a condition; msg says what was found when it does not
// hold.
func (in *Interpreter) cond(c *Cond) (ok bool, msg string, err error) {
	needResponse := func() error {
		if in.last == nil {
			return &Error{Pos: c.P, Msg: "no response to check yet: send a command first"}
		}
		return nil
	}
	switch c.Kind {
	case CondSW:
		if err := needResponse(); err != nil {
			return false, "", err
		}
		for _, p := range c.SW {
			if p.Match(in.last.sw) {
				ok = true
				break
			}
		}
		msg = "got " + apdu.SW(in.last.sw).String()
	case CondData:
		if err := needResponse(); err != nil {
			return false, "", err
		}
		want, err := c.Data.expand(in)
		if err != nil {
			return false, "", err
		}
		if c.Mask != nil {
			mask, err := c.Mask.expand(in)
			if err != nil {
				return false, "", err
			}
			if len(mask.b) != len(want.b) {
				return false, "", &Error{Pos: c.Mask.P, Msg: fmt.Sprintf("the mask has %d bytes, the value %d", len(mask.b), len(want.b))}
			}
			want.mask = mask.b
		}
		ok = want.match(in.last.data)
		msg = "got " + in.shownData()
		if !c.Data.Literal() {
			// The source shows ${...}: say what it stood for.
			msg = "want " + want.describe() + ", " + msg
		}
	case CondMatch:
		if err := needResponse(); err != nil {
			return false, "", err
		}
		h := fmt.Sprintf("%X", in.last.data)
		m := c.Regexp.FindStringSubmatchIndex(h)
		ok = m != nil
		msg = "got " + in.shownData()
		if ok && !c.Not {
			if err := in.captureGroups(c, h, m); err != nil {
				return false, "", err
			}
		}
	case CondExpr:
		v, err := eval(c.Expr, in)
		if err != nil {
			return false, "", err
		}
		ok = v.Truth()
		msg = in.explain(c.Expr)
	}
	if c.Not {
		ok = !ok
	}
	return ok, msg, nil
}

// shownData is the last response data as reports may show it.
func (in *Interpreter) shownData() string {
	if in.last.secret {
		return fmt.Sprintf("%d secret bytes", len(in.last.data))
	}
	if len(in.last.data) == 0 {
		return "no data"
	}
	return fmt.Sprintf("%X", in.last.data)
}

// captureGroups stores the regular expression's named groups as byte
// variables.
func (in *Interpreter) captureGroups(c *Cond, h string, m []int) error {
	for i, name := range c.Regexp.SubexpNames() {
		if name == "" || m[2*i] < 0 {
			continue
		}
		start, end := m[2*i], m[2*i+1]
		if start%2 != 0 || end%2 != 0 {
			return &Error{Pos: c.P, Msg: fmt.Sprintf("group %s matched half a byte (hex digits %d to %d)", name, start, end)}
		}
		if reservedName(name) {
			return &Error{Pos: c.P, Msg: fmt.Sprintf("group %s: %s is built in and cannot be assigned", name, name)}
		}
		b, err := decodeHexText(h[start:end])
		if err != nil {
			return &Error{Pos: c.P, Msg: err.Error()}
		}
		in.vars[name] = Value{b: b, secret: in.last.secret}
	}
	return nil
}

// explain says what the operands of a failed comparison were.
func (in *Interpreter) explain(e Expr) string {
	be, ok := e.(*binaryExpr)
	if !ok {
		v, err := eval(e, in)
		if err != nil {
			return ""
		}
		return fmt.Sprintf("%s is %s", e, v)
	}
	var parts []string
	for _, side := range []Expr{be.x, be.y} {
		if _, lit := side.(*litExpr); lit {
			continue
		}
		if v, err := eval(side, in); err == nil {
			parts = append(parts, fmt.Sprintf("%s is %s", side, v))
		}
	}
	return strings.Join(parts, ", ")
}

func (in *Interpreter) wait(ctx context.Context, st *Wait) error {
	kind, title := KindWait, "wait card"
	if st.Tap {
		kind, title = KindTap, "tap"
		in.closeSecure()
	}
	step := &Step{Pos: st.P, Kind: kind, Title: title}
	if st.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, st.Timeout)
		defer cancel()
	}
	prompt := in.cfg.Prompt
	if prompt == nil {
		prompt = func(string) {}
	}
	start := time.Now()
	var err error
	p, live := in.cfg.Card.(Presence)
	switch {
	case live && st.Tap:
		err = p.Tap(ctx, prompt)
	case live:
		prompt("waiting for a card")
		err = p.WaitCard(ctx)
	case st.Tap:
		// No reader events here: a tap is what it does to the card, a
		// power cycle.
		err = in.cfg.Card.Reset(ctx, true)
	}
	step.Duration = time.Since(start)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && st.Timeout > 0 {
			err = fmt.Errorf("no card within %v: %w", st.Timeout, err)
		}
		return in.failStep(step, err)
	}
	step.ATR = fmt.Sprintf("%X", in.cfg.Card.ATR())
	in.addStep(step)
	return nil
}

func (in *Interpreter) secure(ctx context.Context, st *Secure) error {
	step := &Step{Pos: st.P, Kind: KindSecure, Title: st.Describe()}
	in.closeSecure()
	if st.Off {
		in.addStep(step)
		return nil
	}
	impl, ok := in.cfg.Secure[st.Protocol]
	if !ok {
		return in.failStep(step, fmt.Errorf("%w: %s", ErrSecureUnavailable, st.Protocol))
	}
	params := SecureParams{Protocol: st.Protocol, Values: map[string][]byte{}}
	defer func() {
		for _, v := range params.Values {
			clear(v) // the implementation keeps its own copy
		}
	}()
	for _, p := range st.Params {
		if p.Key == "level" {
			params.Level = p.Value.Describe()
			continue
		}
		e, err := p.Value.expand(in)
		if err != nil {
			return in.failStep(step, err)
		}
		params.Values[p.Key] = append([]byte{}, e.b...)
	}
	start := time.Now()
	layer, err := impl.Open(ctx, in.cfg.Card, params)
	step.Duration = time.Since(start)
	if err != nil {
		return in.failStep(step, fmt.Errorf("secure %s: %w", st.Protocol, err))
	}
	in.layer = layer
	step.Output = layer.Describe()
	in.addStep(step)
	return nil
}

// lookup implements scope: variables, and the last response's sw, sw1,
// sw2, data and response; atr is the card's ATR.
func (in *Interpreter) lookup(name string) (Value, bool) {
	switch name {
	case "sw", "sw1", "sw2", "data", "response":
		if in.last == nil {
			return Value{}, false
		}
		switch name {
		case "sw":
			return Int(int64(in.last.sw)), true
		case "sw1":
			return Int(int64(in.last.sw >> 8)), true
		case "sw2":
			return Int(int64(in.last.sw & 0xFF)), true
		case "data":
			return Value{b: in.last.data, secret: in.last.secret}, true
		}
		r := append(append([]byte{}, in.last.data...), byte(in.last.sw>>8), byte(in.last.sw))
		return Value{b: r, secret: in.last.secret}, true
	case "atr":
		return Bytes(in.cfg.Card.ATR()), true
	}
	v, ok := in.vars[name]
	return v, ok
}

func (in *Interpreter) getenv(name string) (string, bool) { return in.cfg.Getenv(name) }

// VarNames returns the names an expression can use, sorted: variables
// and built-ins.
func (in *Interpreter) VarNames() []string {
	names := append([]string{}, builtinVars...)
	for k := range in.vars {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// StackCard is a Card made of a connection and the host stack built on it
// (connect.Stack): commands go through the stack, resets to the
// connection.
type StackCard struct {
	Conn  reader.Conn
	Stack reader.Transceiver
}

// Transceive implements Card.
func (c StackCard) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	return c.Stack.Transceive(ctx, cmd)
}

// Reset implements Card.
func (c StackCard) Reset(ctx context.Context, cold bool) error { return c.Conn.Reset(ctx, cold) }

// ATR implements Card.
func (c StackCard) ATR() []byte { return c.Conn.ATR() }
