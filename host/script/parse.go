package script

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Limits that keep hostile or mistaken input from exhausting memory.
const (
	maxSourceBytes  = 4 << 20
	maxIncludeDepth = 16
	maxBlockDepth   = 64
)

// ParseOption tunes Parse.
type ParseOption func(*parseConfig)

type parseConfig struct {
	readFile func(string) ([]byte, error)
	stack    []string // files being included, outermost first
}

// WithReadFile sets how include reads files (os.ReadFile by default); tests
// and the fuzzer pass their own.
func WithReadFile(f func(path string) ([]byte, error)) ParseOption {
	return func(c *parseConfig) { c.readFile = f }
}

// ParseFile reads and parses the script at path.
func ParseFile(path string, opts ...ParseOption) (*Script, error) {
	cfg := parseConfig{readFile: os.ReadFile}
	for _, o := range opts {
		o(&cfg)
	}
	src, err := cfg.readFile(path)
	if err != nil {
		return nil, fmt.Errorf("script: %w", err)
	}
	return Parse(path, src, opts...)
}

// Parse parses a script. file names it in positions ("-" for standard
// input) and is the base for relative include paths. All syntax errors are
// reported, as an ErrorList of *Error, each with its file:line:col.
func Parse(file string, src []byte, opts ...ParseOption) (*Script, error) {
	cfg := parseConfig{readFile: os.ReadFile}
	for _, o := range opts {
		o(&cfg)
	}
	return parse(file, src, &cfg)
}

func parse(file string, src []byte, cfg *parseConfig) (*Script, error) {
	if len(src) > maxSourceBytes {
		return nil, ErrorList{{Pos: Pos{File: file, Line: 1, Col: 1}, Msg: fmt.Sprintf("script is larger than %d bytes", maxSourceBytes)}}
	}
	p := &parser{file: file, cfg: cfg}
	p.lines = p.split(src)
	stmts, term := p.block(0)
	if term != nil {
		p.errorf(term, 0, "%s without a matching if or repeat", term.keyword)
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return &Script{File: file, Stmts: stmts}, nil
}

// srcLine is one logical line: physical lines joined by a trailing
// backslash, with its comment removed.
type srcLine struct {
	file    string
	text    string
	segs    []seg
	keyword string // lower-case first word, if it is a keyword
	kwEnd   int    // offset just past the first word
}

// seg maps text[off:] to a physical line and column.
type seg struct{ off, line, col int }

func (l *srcLine) pos(off int) Pos {
	s := l.segs[0]
	for _, x := range l.segs[1:] {
		if x.off > off {
			break
		}
		s = x
	}
	return Pos{File: l.file, Line: s.line, Col: s.col + off - s.off}
}

func (l *srcLine) errorf(off int, format string, a ...any) error {
	return &Error{Pos: l.pos(off), Msg: fmt.Sprintf(format, a...)}
}

type parser struct {
	file  string
	cfg   *parseConfig
	lines []*srcLine
	i     int
	errs  ErrorList
}

func (p *parser) errorf(l *srcLine, off int, format string, a ...any) {
	p.add(l.errorf(off, format, a...))
}

func (p *parser) add(err error) {
	var el ErrorList
	var e *Error
	switch {
	case errors.As(err, &el):
		p.errs = append(p.errs, el...)
	case errors.As(err, &e):
		p.errs = append(p.errs, e)
	default:
		p.errs = append(p.errs, &Error{Pos: Pos{File: p.file, Line: 1}, Msg: err.Error(), Err: err})
	}
}

// split cuts the source into logical lines. As in scriptor, a line ending
// in "\" continues on the next line that is neither blank nor a comment.
func (p *parser) split(src []byte) []*srcLine {
	var out []*srcLine
	var cur *srcLine
	phys := bytes.Split(src, []byte("\n"))
	for n, raw := range phys {
		text := strings.TrimSuffix(string(raw), "\r")
		lineNo := n + 1
		trimmed := strings.TrimSpace(text)
		if cur != nil && (trimmed == "" || trimmed[0] == '#') {
			continue
		}
		if cur == nil && trimmed == "" {
			continue
		}
		// Strip the comment first: "# ... \" is a comment, not a continuation.
		body := stripComment(text)
		lead := len(body) - len(strings.TrimLeft(body, " \t"))
		body = strings.TrimRight(body, " \t")
		cont := strings.HasSuffix(body, "\\")
		if cont {
			body = strings.TrimRight(strings.TrimSuffix(body, "\\"), " \t")
		}
		if cur == nil {
			cur = &srcLine{file: p.file}
		} else if cur.text != "" && lead < len(body) {
			cur.text += " "
		}
		if lead < len(body) {
			cur.segs = append(cur.segs, seg{off: len(cur.text), line: lineNo, col: lead + 1})
			cur.text += body[lead:]
		} else if len(cur.segs) == 0 {
			cur.segs = append(cur.segs, seg{off: 0, line: lineNo, col: 1})
		}
		if cont {
			continue
		}
		if strings.TrimSpace(cur.text) != "" {
			out = append(out, cur)
		}
		cur = nil
	}
	if cur != nil {
		if len(cur.segs) == 0 {
			cur.segs = []seg{{line: len(phys), col: 1}}
		}
		p.add(&Error{Pos: cur.pos(len(cur.text)), Msg: "the last line ends in a continuation backslash", Err: ErrIncomplete})
	}
	for _, l := range out {
		end := 0
		for end < len(l.text) && (isIdentChar(l.text[end]) || l.text[end] == '-') {
			end++
		}
		l.kwEnd = end
		if kw := strings.ToLower(l.text[:end]); keywords[kw] && (end == len(l.text) || l.text[end] == ' ' || l.text[end] == '\t') {
			l.keyword = kw
		}
	}
	return out
}

// stripComment removes a "#" comment: one at the start of a line, or after
// whitespace, outside strings and ${...}.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			if _, n, err := parseString(s[i:]); err == nil {
				i += n - 1
			} else {
				return s // let the parser report the bad string
			}
		case '$':
			if i+1 < len(s) && s[i+1] == '{' {
				if j := findClose(s, i+2, len(s)); j >= 0 {
					i = j
				}
			}
		case '#':
			if i == 0 || s[i-1] == ' ' || s[i-1] == '\t' {
				return s[:i]
			}
		}
	}
	return s
}

// keywords start directives; any other line is a command APDU. They are
// matched as whole words, case-insensitively: a command never starts with
// one, since none is made of hex digits only.
var keywords = map[string]bool{
	"send": true, "select": true, "reset": true, "exit": true, "expect": true,
	"set": true, "secret": true, "let": true, "if": true, "elif": true,
	"else": true, "end": true, "repeat": true, "include": true, "wait": true,
	"tap": true, "secure": true, "print": true, "fail": true,
}

// Keywords returns the directive keywords, for completion.
func Keywords() []string {
	out := make([]string, 0, len(keywords))
	for k := range keywords {
		out = append(out, k)
	}
	return out
}

// block parses statements until a line that ends the block (else, elif,
// end), which it returns, or the end of input (nil).
func (p *parser) block(depth int) ([]Stmt, *srcLine) {
	var out []Stmt
	for p.i < len(p.lines) {
		l := p.lines[p.i]
		switch l.keyword {
		case "else", "elif", "end":
			p.i++
			return out, l
		}
		p.i++
		if s := p.statement(l, depth); s != nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// rest returns the offset of the first non-blank byte after off.
func (l *srcLine) skip(off int) int {
	for off < len(l.text) && (l.text[off] == ' ' || l.text[off] == '\t') {
		off++
	}
	return off
}

// word returns the next word after off (respecting strings and ${...})
// and the offsets of its start and end.
func (l *srcLine) word(off int) (string, int, int) {
	start := l.skip(off)
	i := start
	for i < len(l.text) && l.text[i] != ' ' && l.text[i] != '\t' {
		switch {
		case l.text[i] == '"':
			if _, n, err := parseString(l.text[i:]); err == nil {
				i += n
				continue
			}
		case l.text[i] == '$' && i+1 < len(l.text) && l.text[i+1] == '{':
			if j := findClose(l.text, i+2, len(l.text)); j >= 0 {
				i = j + 1
				continue
			}
		}
		i++
	}
	return l.text[start:i], start, i
}

func (p *parser) statement(l *srcLine, depth int) Stmt {
	s, err := p.parseStatement(l, depth)
	if err != nil {
		p.add(err)
		return nil
	}
	return s
}

func (p *parser) parseStatement(l *srcLine, depth int) (Stmt, error) {
	pos := l.pos(0)
	after := l.kwEnd
	end := len(l.text)
	noArgs := func() error {
		if w, at, _ := l.word(after); w != "" {
			return l.errorf(at, "unexpected %q after %s", w, l.keyword)
		}
		return nil
	}
	switch l.keyword {
	case "":
		t, err := parseTemplate(l, 0, end, false)
		if err != nil {
			return nil, err
		}
		return &Send{P: pos, APDU: t}, nil
	case "send":
		s := &Send{P: pos}
		off := after
		for {
			w, _, e := l.word(off)
			switch strings.ToLower(w) {
			case "raw":
				s.Raw, off = true, e
				continue
			case "secret":
				s.Secret, off = true, e
				continue
			}
			break
		}
		if l.skip(off) == end {
			return nil, l.errorf(off, "send needs a command APDU")
		}
		t, err := parseTemplate(l, off, end, false)
		if err != nil {
			return nil, err
		}
		s.APDU = t
		return s, nil
	case "select":
		if l.skip(after) == end {
			return nil, l.errorf(after, "select needs an AID, e.g. select A000000151000000")
		}
		t, err := parseTemplate(l, after, end, false)
		if err != nil {
			return nil, err
		}
		return &Select{P: pos, AID: t}, nil
	case "reset":
		w, at, e := l.word(after)
		r := &Reset{P: pos}
		switch strings.ToLower(w) {
		case "", "warm":
		case "cold":
			r.Cold = true
		default:
			return nil, l.errorf(at, "reset takes cold or warm, not %q", w)
		}
		if w2, at2, _ := l.word(e); w2 != "" {
			return nil, l.errorf(at2, "unexpected %q after reset", w2)
		}
		return r, nil
	case "exit":
		if err := noArgs(); err != nil {
			return nil, err
		}
		return &Exit{P: pos}, nil
	case "expect":
		c, err := parseCond(l, after, end)
		if err != nil {
			return nil, err
		}
		return &Expect{P: pos, Cond: c}, nil
	case "set", "secret":
		name, value, err := assignment(l, after)
		if err != nil {
			return nil, err
		}
		if l.skip(value) == end {
			return nil, l.errorf(value, "%s %s = needs a value", l.keyword, name)
		}
		t, err := parseTemplate(l, value, end, false)
		if err != nil {
			return nil, err
		}
		return &Set{P: pos, Name: name, Value: t, Secret: l.keyword == "secret"}, nil
	case "let":
		name, value, err := assignment(l, after)
		if err != nil {
			return nil, err
		}
		e, err := parseExpr(l, value, end)
		if err != nil {
			return nil, err
		}
		return &Let{P: pos, Name: name, Value: e}, nil
	case "if":
		return p.parseIf(l, after, depth)
	case "repeat":
		return p.parseRepeat(l, after, depth)
	case "include":
		return p.parseInclude(l, after)
	case "wait":
		w, at, e := l.word(after)
		if strings.ToLower(w) != "card" {
			return nil, l.errorf(at, "wait takes card (wait card [timeout 30s]); use tap to wait for removal and re-insertion")
		}
		d, err := parseTimeout(l, e)
		if err != nil {
			return nil, err
		}
		return &Wait{P: pos, Timeout: d}, nil
	case "tap":
		d, err := parseTimeout(l, after)
		if err != nil {
			return nil, err
		}
		return &Wait{P: pos, Tap: true, Timeout: d}, nil
	case "secure":
		return parseSecure(l, after)
	case "print":
		t, err := parseText(l, after, end)
		if err != nil {
			return nil, err
		}
		return &Print{P: pos, Text: t}, nil
	case "fail":
		t, err := parseText(l, after, end)
		if err != nil {
			return nil, err
		}
		return &Fail{P: pos, Text: t}, nil
	}
	return nil, l.errorf(0, "unknown directive %q", l.keyword)
}

// assignment parses "NAME = " and returns the name and the value's offset.
func assignment(l *srcLine, off int) (string, int, error) {
	start := l.skip(off)
	i := start
	for i < len(l.text) && isIdentChar(l.text[i]) {
		i++
	}
	name := l.text[start:i]
	if !validName(name) {
		w, at, _ := l.word(start)
		return "", 0, l.errorf(at, "%q is not a variable name (letters, digits, _)", w)
	}
	if reservedName(name) {
		return "", 0, l.errorf(start, "%s is built in and cannot be assigned", name)
	}
	eq := l.skip(i)
	if eq >= len(l.text) || l.text[eq] != '=' {
		return "", 0, l.errorf(eq, "expected '=' after %s", name)
	}
	return name, eq + 1, nil
}

func reservedName(name string) bool {
	for _, b := range builtinVars {
		if name == b {
			return true
		}
	}
	return false
}

func parseTimeout(l *srcLine, off int) (time.Duration, error) {
	w, at, e := l.word(off)
	if w == "" {
		return 0, nil
	}
	if strings.ToLower(w) != "timeout" {
		return 0, l.errorf(at, "unexpected %q (want timeout DURATION)", w)
	}
	v, at2, e2 := l.word(e)
	if v == "" {
		return 0, l.errorf(e, "timeout needs a duration, e.g. 30s")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, l.errorf(at2, "bad duration %q (e.g. 30s, 2m)", v)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 {
		return 0, l.errorf(at2, "the timeout must be positive")
	}
	if w3, at3, _ := l.word(e2); w3 != "" {
		return 0, l.errorf(at3, "unexpected %q", w3)
	}
	return d, nil
}

func (p *parser) parseIf(l *srcLine, after, depth int) (Stmt, error) {
	if depth >= maxBlockDepth {
		return nil, l.errorf(0, "blocks nested more than %d deep", maxBlockDepth)
	}
	c, err := parseCond(l, after, len(l.text))
	if err != nil {
		// Still consume the block so its end does not look stray.
		p.skipBlock(depth)
		return nil, err
	}
	s := &If{P: l.pos(0), Cond: c}
	body, term := p.block(depth + 1)
	s.Then = body
	for {
		switch {
		case term == nil:
			return nil, &Error{Pos: s.P, Msg: "if without end", Err: ErrIncomplete}
		case term.keyword == "end":
			if w, at, _ := term.word(term.kwEnd); w != "" {
				return nil, term.errorf(at, "unexpected %q after end", w)
			}
			return s, nil
		case term.keyword == "elif" || term.keyword == "else" && isElseIf(term):
			condAt := term.kwEnd
			if term.keyword == "else" {
				_, _, condAt = term.word(term.kwEnd) // past "if"
			}
			c, err := parseCond(term, condAt, len(term.text))
			if err != nil {
				p.skipBlock(depth)
				return nil, err
			}
			inner := &If{P: term.pos(0), Cond: c}
			inner.Then, term = p.block(depth + 1)
			s.Else = []Stmt{inner}
			// The remaining branches belong to the inner if, which shares
			// this if's end.
			if err := p.finishChain(inner, term, depth); err != nil {
				return nil, err
			}
			return s, nil
		case term.keyword == "else":
			if w, at, _ := term.word(term.kwEnd); w != "" {
				p.skipBlock(depth)
				return nil, term.errorf(at, "unexpected %q after else (use else if or elif)", w)
			}
			s.Else, term = p.block(depth + 1)
			if term == nil {
				return nil, &Error{Pos: s.P, Msg: "if without end", Err: ErrIncomplete}
			}
			if term.keyword != "end" {
				return nil, term.errorf(0, "%s after else", term.keyword)
			}
			return s, nil
		}
	}
}

// finishChain completes an if that started as an elif: its end (or further
// branches) is the outer if's.
func (p *parser) finishChain(s *If, term *srcLine, depth int) error {
	for {
		switch {
		case term == nil:
			return &Error{Pos: s.P, Msg: "if without end", Err: ErrIncomplete}
		case term.keyword == "end":
			if w, at, _ := term.word(term.kwEnd); w != "" {
				return term.errorf(at, "unexpected %q after end", w)
			}
			return nil
		case term.keyword == "elif" || term.keyword == "else" && isElseIf(term):
			condAt := term.kwEnd
			if term.keyword == "else" {
				_, _, condAt = term.word(term.kwEnd)
			}
			c, err := parseCond(term, condAt, len(term.text))
			if err != nil {
				p.skipBlock(depth)
				return err
			}
			inner := &If{P: term.pos(0), Cond: c}
			inner.Then, term = p.block(depth + 1)
			s.Else = []Stmt{inner}
			s = inner
		case term.keyword == "else":
			s.Else, term = p.block(depth + 1)
			if term == nil {
				return &Error{Pos: s.P, Msg: "if without end", Err: ErrIncomplete}
			}
			if term.keyword != "end" {
				return term.errorf(0, "%s after else", term.keyword)
			}
			return nil
		}
	}
}

// isElseIf reports "else if ...".
func isElseIf(l *srcLine) bool {
	w, _, _ := l.word(l.kwEnd)
	return strings.ToLower(w) == "if"
}

// skipBlock consumes lines up to the end of a block whose header failed to
// parse, so that the parse goes on in step.
func (p *parser) skipBlock(depth int) {
	errs := len(p.errs)
	for {
		_, term := p.block(depth + 1)
		if term == nil || term.keyword == "end" {
			break
		}
	}
	p.errs = p.errs[:errs] // errors inside a block we cannot parse are noise
}

func (p *parser) parseRepeat(l *srcLine, after, depth int) (Stmt, error) {
	if depth >= maxBlockDepth {
		return nil, l.errorf(0, "blocks nested more than %d deep", maxBlockDepth)
	}
	end := len(l.text)
	s := &Repeat{P: l.pos(0)}
	// "repeat EXPR as NAME": the last two words.
	if m := asSuffix.FindStringSubmatchIndex(l.text[after:]); m != nil {
		s.Var = l.text[after+m[2] : after+m[3]]
		if reservedName(s.Var) {
			p.skipBlock(depth)
			return nil, l.errorf(after+m[2], "%s is built in and cannot be assigned", s.Var)
		}
		end = after + m[0]
	}
	if l.skip(after) >= end {
		p.skipBlock(depth)
		return nil, l.errorf(after, "repeat needs a count, e.g. repeat 3")
	}
	e, err := parseExpr(l, after, end)
	if err != nil {
		p.skipBlock(depth)
		return nil, err
	}
	s.Count = e
	var term *srcLine
	s.Body, term = p.block(depth + 1)
	switch {
	case term == nil:
		return nil, &Error{Pos: s.P, Msg: "repeat without end", Err: ErrIncomplete}
	case term.keyword != "end":
		return nil, term.errorf(0, "%s inside repeat without if", term.keyword)
	}
	return s, nil
}

var asSuffix = regexp.MustCompile(`\s+as\s+([A-Za-z_][A-Za-z0-9_]*)\s*$`)

func (p *parser) parseInclude(l *srcLine, after int) (Stmt, error) {
	w, at, e := l.word(after)
	if w == "" {
		return nil, l.errorf(after, "include needs a file name")
	}
	if w2, at2, _ := l.word(e); w2 != "" {
		return nil, l.errorf(at2, "unexpected %q after the file name (quote names with spaces)", w2)
	}
	path := w
	if strings.HasPrefix(w, "\"") {
		b, _, err := parseString(w)
		if err != nil {
			return nil, l.errorf(at, "%v", err)
		}
		path = string(b)
	}
	if path == "" {
		return nil, l.errorf(at, "include needs a file name")
	}
	full := path
	if !filepath.IsAbs(path) && p.file != "" && p.file != "-" {
		full = filepath.Join(filepath.Dir(p.file), path)
	}
	key := full
	if abs, err := filepath.Abs(full); err == nil {
		key = abs
	}
	stack := append(p.cfg.stack, p.key())
	for _, f := range stack {
		if f == key {
			return nil, l.errorf(at, "include cycle: %s includes itself", full)
		}
	}
	if len(stack) > maxIncludeDepth {
		return nil, l.errorf(at, "includes nested more than %d deep", maxIncludeDepth)
	}
	if p.cfg.readFile == nil {
		return nil, l.errorf(at, "include is not available here")
	}
	src, err := p.cfg.readFile(full)
	if err != nil {
		return nil, &Error{Pos: l.pos(at), Msg: fmt.Sprintf("include: %v", err), Err: err}
	}
	sub := &parseConfig{readFile: p.cfg.readFile, stack: stack}
	sc, err := parse(full, src, sub)
	if err != nil {
		return nil, err
	}
	return &Include{P: l.pos(0), Path: path, Script: sc}, nil
}

// key identifies the file being parsed for cycle detection.
func (p *parser) key() string {
	if p.file == "" || p.file == "-" {
		return p.file
	}
	if abs, err := filepath.Abs(p.file); err == nil {
		return abs
	}
	return p.file
}

// Operator characters that turn "sw ..." or "data ..." into an expression
// rather than a pattern.
const (
	swOperators   = "=!<>+-*/%&|^["
	dataOperators = "=!<>+-/%&|^["
)

// parseCond parses a condition: [not] (sw PATTERN... | data PATTERN [mask
// MASK] | data match "REGEX" | EXPR).
func parseCond(l *srcLine, start, end int) (*Cond, error) {
	c := &Cond{P: l.pos(l.skip(start))}
	w, at, e := l.word(start)
	if strings.ToLower(w) == "not" {
		c.Not = true
		w, at, e = l.word(e)
	}
	c.src = strings.TrimSpace(l.text[at:end])
	if w == "" {
		return nil, l.errorf(at, "expected a condition: sw 9000, data 6F*, data match \"...\" or an expression")
	}
	rest := l.skip(e)
	switch strings.ToLower(w) {
	case "sw":
		if rest < end && !strings.ContainsRune(swOperators, rune(l.text[rest])) {
			c.Kind = CondSW
			for off := rest; off < end; {
				pw, pat, pe := l.word(off)
				if pw == "" {
					break
				}
				for _, alt := range strings.Split(pw, "|") {
					sp, err := parseSWPattern(alt)
					if err != nil {
						return nil, l.errorf(pat, "%v", err)
					}
					c.SW = append(c.SW, sp)
				}
				off = pe
			}
			return c, nil
		}
	case "data":
		if rest < end && !strings.ContainsRune(dataOperators, rune(l.text[rest])) {
			mw, mat, me := l.word(rest)
			if strings.ToLower(mw) == "match" {
				sw, sat, se := l.word(me)
				if !strings.HasPrefix(sw, "\"") {
					return nil, l.errorf(sat, "data match needs a regular expression in double quotes")
				}
				src, _, err := parseString(sw)
				if err != nil {
					return nil, l.errorf(sat, "%v", err)
				}
				if x, xat, _ := l.word(se); x != "" {
					return nil, l.errorf(xat, "unexpected %q after the regular expression", x)
				}
				re, err := regexp.Compile("(?i)" + string(src))
				if err != nil {
					return nil, l.errorf(sat, "bad regular expression: %v", err)
				}
				c.Kind, c.Regexp = CondMatch, re
				return c, nil
			}
			_ = mat
			// Split at a "mask" word.
			patEnd, maskAt := end, -1
			for off := rest; off < end; {
				x, xat, xe := l.word(off)
				if x == "" {
					break
				}
				if strings.ToLower(x) == "mask" {
					patEnd, maskAt = xat, xe
					break
				}
				off = xe
			}
			t, err := parseTemplate(l, rest, patEnd, maskAt < 0)
			if err != nil {
				return nil, err
			}
			c.Kind, c.Data = CondData, t
			if maskAt >= 0 {
				if l.skip(maskAt) >= end {
					return nil, l.errorf(maskAt, "mask needs a value")
				}
				if c.Mask, err = parseTemplate(l, maskAt, end, false); err != nil {
					return nil, err
				}
			}
			return c, nil
		}
	}
	x, err := parseExpr(l, at, end)
	if err != nil {
		return nil, err
	}
	c.Kind, c.Expr = CondExpr, x
	return c, nil
}

func parseSWPattern(s string) (SWPattern, error) {
	if len(s) != 4 {
		return SWPattern{}, fmt.Errorf("status word pattern %q: want 4 hex digits, ? or x for any (9000, 63C?, 61xx)", s)
	}
	var p SWPattern
	for i := 0; i < 4; i++ {
		c := s[i]
		p.Value <<= 4
		p.Mask <<= 4
		switch {
		case isHexDigit(c):
			p.Value |= uint16(hexVal(c))
			p.Mask |= 0xF
		case c == '?' || c == 'x' || c == 'X':
		default:
			return SWPattern{}, fmt.Errorf("status word pattern %q: %q is neither a hex digit nor ? or x", s, rune(c))
		}
	}
	return p, nil
}

// parseSecure parses "secure off" and "secure PROTOCOL key=value...".
func parseSecure(l *srcLine, after int) (Stmt, error) {
	s := &Secure{P: l.pos(0)}
	w, at, e := l.word(after)
	proto := strings.ToLower(w)
	switch proto {
	case "":
		return nil, l.errorf(at, "secure needs a protocol (scp03) or off")
	case "off":
		if x, xat, _ := l.word(e); x != "" {
			return nil, l.errorf(xat, "unexpected %q after secure off", x)
		}
		s.Off = true
		return s, nil
	}
	known, ok := secureParamKeys[proto]
	if !ok {
		return nil, l.errorf(at, "unknown secure channel protocol %q (have: scp03)", w)
	}
	s.Protocol = proto
	seen := map[string]bool{}
	for off := e; ; {
		x, xat, xe := l.word(off)
		if x == "" {
			break
		}
		k, v, ok := strings.Cut(x, "=")
		k = strings.ToLower(k)
		if !ok || v == "" {
			// Not quoted back: the word may well be a key.
			return nil, l.errorf(xat, "expected key=value (key, enc, mac, dek, kvn, level, sd)")
		}
		if !contains(known, k) {
			return nil, l.errorf(xat, "unknown %s parameter %q (have: %s)", proto, k, strings.Join(known, ", "))
		}
		if seen[k] {
			return nil, l.errorf(xat, "%s given twice", k)
		}
		seen[k] = true
		vat := xat + len(k) + 1
		param := SecureParam{P: l.pos(xat), Key: k}
		if k == "level" {
			// A level is words joined by "+", not hex: keep it as text.
			param.Value = &Template{P: l.pos(vat), src: v}
		} else {
			t, err := parseTemplate(l, vat, xe, false)
			if err != nil {
				return nil, err
			}
			param.Value = t
		}
		s.Params = append(s.Params, param)
		off = xe
	}
	return s, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
