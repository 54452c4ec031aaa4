package reader

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The dump format is specified in the package documentation (reader.go).

// dumpMagic is the first line of every dump.
const dumpMagic = "# valuechip dump v1"

// maxDumpLine bounds one line: a 65544-byte extended command in hex, with
// room for spaces between bytes.
const maxDumpLine = 1 << 20

// Pattern is recorded bytes of which some may have been masked.
type Pattern struct {
	// Bytes holds the recorded bytes; masked ones are 0.
	Bytes []byte
	// Masked is nil when nothing was masked, else len(Bytes) flags.
	Masked []bool
}

// Match reports whether b has the recorded bytes, masked ones matching any
// value.
func (p Pattern) Match(b []byte) bool {
	if len(b) != len(p.Bytes) {
		return false
	}
	for i, x := range b {
		if x != p.Bytes[i] && (p.Masked == nil || !p.Masked[i]) {
			return false
		}
	}
	return true
}

// String renders the pattern as the dump writes it: upper-case hex, masked
// bytes as "**".
func (p Pattern) String() string {
	var sb strings.Builder
	p.write(&sb)
	return sb.String()
}

func (p Pattern) write(sb *strings.Builder) {
	const digits = "0123456789ABCDEF"
	for i, x := range p.Bytes {
		if p.Masked != nil && p.Masked[i] {
			sb.WriteString("**")
			continue
		}
		sb.WriteByte(digits[x>>4])
		sb.WriteByte(digits[x&0x0F])
	}
}

// maskedPattern records b with the secret spans masked out.
func maskedPattern(b []byte, secret []Span) Pattern {
	p := Pattern{Bytes: append([]byte{}, b...)}
	for _, s := range secret {
		for i := s.Start; i < s.End && i < len(b); i++ {
			if p.Masked == nil {
				p.Masked = make([]bool, len(b))
			}
			p.Masked[i] = true
			p.Bytes[i] = 0
		}
	}
	return p
}

// StepKind says what a recorded step is.
type StepKind int

// Step kinds.
const (
	StepExchange StepKind = iota + 1
	StepReset
)

func (k StepKind) String() string {
	switch k {
	case StepExchange:
		return "exchange"
	case StepReset:
		return "reset"
	}
	return "unknown step"
}

// Step is one recorded exchange or reset.
type Step struct {
	Kind StepKind
	// Line is the dump line the step starts on (0 when built in code).
	Line int
	// Command and Response are the exchange's APDUs.
	Command, Response Pattern
	// Cold tells a cold reset from a warm one.
	Cold bool
	// ATR is the answer-to-reset after a reset, nil when it did not change.
	ATR []byte
	// Err is the text of the transport error the step returned, "" if none.
	Err string
	// Duration is how long the step took, 0 when not recorded.
	Duration time.Duration
}

// describe names the step for mismatch errors.
func (s *Step) describe() string {
	var d string
	switch s.Kind {
	case StepExchange:
		d = s.Command.String()
	case StepReset:
		d = "RESET " + resetWord(s.Cold)
	default:
		d = s.Kind.String()
	}
	if s.Line > 0 {
		d = fmt.Sprintf("%s (line %d)", d, s.Line)
	}
	return d
}

func resetWord(cold bool) string {
	if cold {
		return "cold"
	}
	return "warm"
}

// Dump is a recorded session.
type Dump struct {
	Reader   string
	ATR      []byte
	Protocol Protocol
	Steps    []Step
}

// ParseError is a syntax error in a dump, with the 1-based line it is on.
type ParseError struct {
	Line int
	Err  error
}

func (e *ParseError) Error() string { return fmt.Sprintf("reader: dump line %d: %v", e.Line, e.Err) }

// Unwrap returns the underlying error.
func (e *ParseError) Unwrap() error { return e.Err }

// ParseDump reads a dump (see the format above). Errors are *ParseError.
func ParseDump(r io.Reader) (*Dump, error) {
	p := dumpParser{d: &Dump{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxDumpLine)
	for sc.Scan() {
		p.line++
		if err := p.parseLine(sc.Text()); err != nil {
			return nil, &ParseError{Line: p.line, Err: err}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &ParseError{Line: p.line + 1, Err: err}
	}
	if p.line == 0 {
		return nil, &ParseError{Line: 1, Err: fmt.Errorf("empty dump, want %q", dumpMagic)}
	}
	if p.pending {
		s := &p.d.Steps[len(p.d.Steps)-1]
		return nil, &ParseError{Line: s.Line, Err: errors.New("command without a response or error at end of dump")}
	}
	return p.d, nil
}

type dumpParser struct {
	d       *Dump
	line    int
	pending bool // the last step is a command awaiting "<<" or "# ERROR"
	timed   bool // the last step has its timing: nothing more may attach
	seen    map[string]bool
	text    string // the current line, for error columns
}

func (p *dumpParser) last() *Step {
	if len(p.d.Steps) == 0 {
		return nil
	}
	return &p.d.Steps[len(p.d.Steps)-1]
}

func (p *dumpParser) parseLine(text string) error {
	text = strings.TrimRight(text, " \t\r")
	p.text = text
	if p.line == 1 {
		if text != dumpMagic {
			if strings.HasPrefix(text, "# valuechip dump ") {
				return fmt.Errorf("unsupported dump version %q, this reader reads v1", strings.TrimPrefix(text, "# valuechip dump "))
			}
			return fmt.Errorf("not a valuechip dump: first line must be %q", dumpMagic)
		}
		return nil
	}
	switch {
	case text == "":
		return nil
	case strings.HasPrefix(text, ">>"):
		return p.command(text[2:])
	case strings.HasPrefix(text, "<<"):
		return p.response(text[2:])
	case strings.HasPrefix(text, "#"):
		return p.directive(strings.TrimLeft(text[1:], " \t"))
	}
	return fmt.Errorf("unexpected line %q: want >>, << or #", clip(text))
}

func (p *dumpParser) command(arg string) error {
	if p.pending {
		return errors.New("command follows a command that got no response")
	}
	b, err := p.pattern(arg)
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	p.d.Steps = append(p.d.Steps, Step{Kind: StepExchange, Line: p.line, Command: b})
	p.pending, p.timed = true, false
	return nil
}

func (p *dumpParser) response(arg string) error {
	if !p.pending {
		return errors.New("response without a command")
	}
	b, err := p.pattern(arg)
	if err != nil {
		return fmt.Errorf("response: %w", err)
	}
	p.last().Response = b
	p.pending = false
	return nil
}

func (p *dumpParser) directive(s string) error {
	word, arg, _ := strings.Cut(s, " ")
	arg = strings.TrimLeft(arg, " \t")
	switch word {
	case "READER", "PROTOCOL":
		return p.header(word, arg)
	case "ATR":
		if len(p.d.Steps) == 0 {
			return p.header(word, arg)
		}
		return p.resetATR(arg)
	case "RESET":
		return p.reset(arg)
	case "ERROR":
		return p.errorLine(arg)
	}
	if word != "" && word[0] >= '0' && word[0] <= '9' {
		return p.timing(word, arg)
	}
	return nil // a comment
}

func (p *dumpParser) header(word, arg string) error {
	if len(p.d.Steps) > 0 {
		return fmt.Errorf("%s after the first step: header lines come first", word)
	}
	if p.seen[word] {
		return fmt.Errorf("second %s line", word)
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	p.seen[word] = true
	switch word {
	case "READER":
		p.d.Reader = trimField(arg)
	case "ATR":
		b, err := p.hex(arg)
		if err != nil {
			return fmt.Errorf("ATR: %w", err)
		}
		if len(b) == 0 {
			b = nil
		}
		p.d.ATR = b
	case "PROTOCOL":
		p.d.Protocol = ParseProtocol(arg)
		if p.d.Protocol == ProtocolUnknown && arg != ProtocolUnknown.String() {
			return fmt.Errorf("unknown protocol %q: want T=0, T=1 or unknown", clip(arg))
		}
	}
	return nil
}

func (p *dumpParser) reset(arg string) error {
	if p.pending {
		return errors.New("RESET follows a command that got no response")
	}
	var cold bool
	switch arg {
	case "cold":
		cold = true
	case "warm":
	default:
		return fmt.Errorf("RESET %q: want cold or warm", clip(arg))
	}
	p.d.Steps = append(p.d.Steps, Step{Kind: StepReset, Line: p.line, Cold: cold})
	p.timed = false
	return nil
}

func (p *dumpParser) resetATR(arg string) error {
	s := p.last()
	if s.Kind != StepReset || s.ATR != nil || s.Err != "" || p.timed {
		return errors.New("ATR after the header must directly follow a RESET")
	}
	b, err := p.hex(arg)
	if err != nil {
		return fmt.Errorf("ATR: %w", err)
	}
	if b == nil {
		b = []byte{}
	}
	s.ATR = b
	return nil
}

func (p *dumpParser) errorLine(arg string) error {
	s := p.last()
	switch {
	case p.pending:
		p.pending = false
	case s != nil && s.Kind == StepReset && s.Err == "" && !p.timed:
	default:
		return errors.New("ERROR must follow a command or a RESET")
	}
	if arg = trimField(arg); arg == "" {
		arg = "unknown error"
	}
	s.Err = arg
	return nil
}

func (p *dumpParser) timing(word, arg string) error {
	if arg != "" {
		return fmt.Errorf("timing %q: want \"# <n>us\"", clip(word+" "+arg))
	}
	digits, ok := strings.CutSuffix(word, "us")
	n, err := strconv.ParseInt(digits, 10, 64)
	if !ok || err != nil || n < 0 || n > int64(time.Duration(1<<63-1)/time.Microsecond) {
		return fmt.Errorf("timing %q: want \"# <n>us\"", clip(word))
	}
	s := p.last()
	if s == nil || p.pending || p.timed {
		return errors.New("timing must end a step")
	}
	s.Duration = time.Duration(n) * time.Microsecond
	p.timed = true
	return nil
}

// hex reads hex bytes, optionally separated by spaces; masks are not
// allowed. arg is a suffix of the current line.
func (p *dumpParser) hex(arg string) ([]byte, error) {
	b, err := p.pattern(arg)
	if err != nil {
		return nil, err
	}
	if b.Masked != nil {
		return nil, errors.New("masked bytes (**) are only allowed in >> and << lines")
	}
	return b.Bytes, nil
}

// pattern parses arg, a suffix of the current line, naming columns of the
// line in errors.
func (p *dumpParser) pattern(arg string) (Pattern, error) {
	b, col, err := parsePattern(arg)
	if err != nil {
		return b, fmt.Errorf("%w at column %d", err, len(p.text)-len(arg)+col+1)
	}
	return b, nil
}

// parsePattern reads hex bytes and "**" masked bytes, optionally separated
// by spaces or tabs. On error it returns the 0-based index of the bad byte.
func parsePattern(s string) (Pattern, int, error) {
	var p Pattern
	b := make([]byte, 0, len(s)/2)
	var masked []int
	for i := 0; i < len(s); {
		c := s[i]
		if c == ' ' || c == '\t' {
			i++
			continue
		}
		if i+1 >= len(s) {
			return p, i, errors.New("odd number of hex digits")
		}
		d := s[i+1]
		if c == '*' && d == '*' {
			masked = append(masked, len(b))
			b = append(b, 0)
			i += 2
			continue
		}
		hi, ok1 := hexVal(c)
		lo, ok2 := hexVal(d)
		if !ok1 || !ok2 {
			return p, i, fmt.Errorf("bad hex byte %q", s[i:i+2])
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	p.Bytes = b
	if len(masked) > 0 {
		p.Masked = make([]bool, len(b))
		for _, i := range masked {
			p.Masked[i] = true
		}
	}
	return p, 0, nil
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// clip shortens text quoted in error messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// WriteTo writes the dump in the format ParseDump reads.
func (d *Dump) WriteTo(w io.Writer) (int64, error) {
	var sb strings.Builder
	writeHeader(&sb, d.Reader, d.ATR, d.Protocol)
	for i := range d.Steps {
		writeStep(&sb, &d.Steps[i])
	}
	n, err := io.WriteString(w, sb.String())
	return int64(n), err
}

func writeHeader(sb *strings.Builder, name string, atr []byte, proto Protocol) {
	sb.WriteString(dumpMagic + "\n")
	if name = trimField(name); name != "" {
		sb.WriteString("# READER " + name + "\n")
	}
	if len(atr) > 0 {
		sb.WriteString("# ATR ")
		Pattern{Bytes: atr}.write(sb)
		sb.WriteByte('\n')
	}
	sb.WriteString("# PROTOCOL " + proto.String() + "\n")
}

func writeStep(sb *strings.Builder, s *Step) {
	switch s.Kind {
	case StepExchange:
		sb.WriteString(">> ")
		s.Command.write(sb)
		sb.WriteByte('\n')
		if s.Err == "" {
			sb.WriteString("<< ")
			s.Response.write(sb)
			sb.WriteByte('\n')
		}
	case StepReset:
		sb.WriteString("# RESET " + resetWord(s.Cold) + "\n")
		if s.ATR != nil {
			sb.WriteString("# ATR ")
			Pattern{Bytes: s.ATR}.write(sb)
			sb.WriteByte('\n')
		}
	default:
		return
	}
	if s.Err != "" {
		msg := trimField(s.Err)
		if msg == "" {
			msg = "unknown error"
		}
		sb.WriteString("# ERROR " + msg + "\n")
	}
	if s.Duration > 0 {
		fmt.Fprintf(sb, "# %dus\n", s.Duration.Microseconds())
	}
}

// trimField makes free text fit one dump line the way the parser reads it
// back: no line breaks, no surrounding blanks.
func trimField(s string) string { return strings.Trim(oneLine(s), " \t") }

// errorText is the one-line text a step records for err.
func errorText(err error) string {
	if msg := trimField(err.Error()); msg != "" {
		return msg
	}
	return "unknown error"
}

// RecordOption tunes Record.
type RecordOption func(*recordConfig)

type recordConfig struct {
	mask Masker
	now  func() time.Time
}

// RecordMasker replaces DefaultMasker. WithSensitive still masks all data.
func RecordMasker(m Masker) RecordOption {
	return func(c *recordConfig) {
		if m != nil {
			c.mask = m
		}
	}
}

// RecordClock sets the clock that times steps (time.Now by default).
func RecordClock(now func() time.Time) RecordOption {
	return func(c *recordConfig) {
		if now != nil {
			c.now = now
		}
	}
}

// Recorder is a Conn that writes everything passing through it to a dump.
type Recorder struct {
	conn  Conn
	cfg   recordConfig
	mu    sync.Mutex
	w     io.Writer
	masks *maskTracker
	atr   []byte
	err   error // first write error
}

// Record wraps conn so that the session is written to w as a dump: the
// header (reader, ATR, protocol) at once, then each exchange and reset as it
// completes, one Write per step. Secrets are masked as Trace masks them
// (DefaultMasker, or RecordMasker, and WithSensitive), so a recording never
// holds one: masked bytes are written "**" and match any byte on replay.
// Record below GetResponse sees GET RESPONSE rounds and masks their data
// with the rules of the command they continue.
//
// A failing writer does not fail the card session; the first write error is
// returned by Err and by Close.
func Record(w io.Writer, conn Conn, opts ...RecordOption) *Recorder {
	r := &Recorder{conn: conn, w: w, cfg: recordConfig{mask: DefaultMasker, now: time.Now}}
	for _, o := range opts {
		o(&r.cfg)
	}
	r.masks = newMaskTracker(r.cfg.mask)
	r.atr = append([]byte(nil), conn.ATR()...)
	var sb strings.Builder
	writeHeader(&sb, conn.Reader(), r.atr, conn.Protocol())
	r.write(sb.String())
	return r
}

func (r *Recorder) write(s string) {
	if r.err != nil {
		return
	}
	if _, err := io.WriteString(r.w, s); err != nil {
		r.err = fmt.Errorf("reader: writing the recording: %w", err)
	}
}

// Transceive implements Transceiver.
func (r *Recorder) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	start := r.cfg.now()
	resp, err := r.conn.Transceive(ctx, cmd)
	elapsed := r.cfg.now().Sub(start)

	r.mu.Lock()
	defer r.mu.Unlock()
	sensitive := IsSensitive(ctx)
	s := Step{Kind: StepExchange, Duration: elapsed}
	s.Command = maskedPattern(cmd, r.masks.command(sensitive, cmd))
	if err != nil {
		r.masks.response(sensitive, cmd, nil)
		s.Err = errorText(err)
	} else {
		s.Response = maskedPattern(resp, r.masks.response(sensitive, cmd, resp))
	}
	r.writeStep(&s)
	return resp, err
}

// Reset implements Conn.
func (r *Recorder) Reset(ctx context.Context, cold bool) error {
	start := r.cfg.now()
	err := r.conn.Reset(ctx, cold)
	elapsed := r.cfg.now().Sub(start)

	r.mu.Lock()
	defer r.mu.Unlock()
	s := Step{Kind: StepReset, Cold: cold, Duration: elapsed}
	if err != nil {
		s.Err = errorText(err)
	} else if atr := r.conn.ATR(); string(atr) != string(r.atr) {
		r.atr = append(r.atr[:0], atr...)
		s.ATR = append([]byte{}, atr...)
	}
	r.masks = newMaskTracker(r.cfg.mask) // a reset ends any GET RESPONSE sequence
	r.writeStep(&s)
	return err
}

func (r *Recorder) writeStep(s *Step) {
	if s.Duration > 0 && s.Duration < time.Microsecond {
		s.Duration = time.Microsecond // keep "took some time" visible
	}
	var sb strings.Builder
	writeStep(&sb, s)
	r.write(sb.String())
}

// Reader implements Conn.
func (r *Recorder) Reader() string { return r.conn.Reader() }

// ATR implements Conn.
func (r *Recorder) ATR() []byte { return r.conn.ATR() }

// Protocol implements Conn.
func (r *Recorder) Protocol() Protocol { return r.conn.Protocol() }

// Err returns the first error writing the recording, or nil.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Close closes the wrapped connection and reports the first write error too.
// It does not close the writer.
func (r *Recorder) Close() error {
	return errors.Join(r.conn.Close(), r.Err())
}
