package script

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Expr is a parsed expression: the right-hand side of let, the count of
// repeat, a condition, or the inside of ${...}.
type Expr interface {
	Pos() Pos
	String() string
}

type (
	litExpr struct {
		p   Pos
		v   Value
		src string
	}
	varExpr struct {
		p    Pos
		name string
	}
	unaryExpr struct {
		p  Pos
		op string
		x  Expr
	}
	binaryExpr struct {
		p    Pos
		op   string
		x, y Expr
	}
	// indexExpr is x[lo] (hi == nil, !slice) or x[lo:hi] with either bound
	// optional.
	indexExpr struct {
		p      Pos
		x      Expr
		lo, hi Expr
		slice  bool
	}
	callExpr struct {
		p    Pos
		name string
		args []Expr
	}
)

func (e *litExpr) Pos() Pos    { return e.p }
func (e *varExpr) Pos() Pos    { return e.p }
func (e *unaryExpr) Pos() Pos  { return e.p }
func (e *binaryExpr) Pos() Pos { return e.p }
func (e *indexExpr) Pos() Pos  { return e.p }
func (e *callExpr) Pos() Pos   { return e.p }

func (e *litExpr) String() string   { return e.src }
func (e *varExpr) String() string   { return e.name }
func (e *unaryExpr) String() string { return e.op + e.x.String() }
func (e *binaryExpr) String() string {
	return "(" + e.x.String() + " " + e.op + " " + e.y.String() + ")"
}
func (e *indexExpr) String() string {
	s := e.x.String() + "["
	if e.lo != nil {
		s += e.lo.String()
	}
	if e.slice {
		s += ":"
		if e.hi != nil {
			s += e.hi.String()
		}
	}
	return s + "]"
}
func (e *callExpr) String() string {
	parts := make([]string, len(e.args))
	for i, a := range e.args {
		parts[i] = a.String()
	}
	return e.name + "(" + strings.Join(parts, ", ") + ")"
}

// Builtin names an expression can read besides variables.
var builtinVars = []string{"sw", "sw1", "sw2", "data", "response", "atr"}

// builtinFuncs are the functions an expression can call, with their arity
// range.
var builtinFuncs = map[string][2]int{
	"len":   {1, 1},
	"unhex": {1, 1},
	"hex":   {1, 1},
	"env":   {1, 2},
	"bytes": {2, 2},
	"int":   {1, 1},
}

// --- lexing -----------------------------------------------------------

type tokKind int

const (
	tEOF tokKind = iota
	tInt
	tString
	tIdent
	tOp
)

type token struct {
	kind tokKind
	off  int // byte offset in the line
	text string
	ival int64
	sval []byte
}

// operators, longest first so that "<=" wins over "<".
var operators = []string{"<<", ">>", "==", "!=", "<=", ">=", "&&", "||",
	"+", "-", "*", "/", "%", "&", "|", "^", "!", "<", ">", "(", ")", "[", "]", ",", ":"}

// lexExpr splits text[start:end] of line into tokens.
func lexExpr(l *srcLine, start, end int) ([]token, error) {
	var toks []token
	s := l.text
	i := start
	for i < end {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case isDigit(c):
			j := i
			base := 10
			if c == '0' && j+1 < end && (s[j+1] == 'x' || s[j+1] == 'X') {
				base = 16
				j += 2
			}
			k := j
			for k < end && isAlnum(s[k]) {
				k++
			}
			v, err := strconv.ParseInt(s[j:k], base, 64)
			if err != nil || k == j {
				return nil, l.errorf(i, "bad number %q", s[i:k])
			}
			toks = append(toks, token{kind: tInt, off: i, text: s[i:k], ival: v})
			i = k
		case isIdentStart(c):
			j := i
			for j < end && isIdentChar(s[j]) {
				j++
			}
			toks = append(toks, token{kind: tIdent, off: i, text: s[i:j]})
			i = j
		case c == '"':
			b, n, err := parseString(s[i:end])
			if err != nil {
				return nil, l.errorf(i, "%v", err)
			}
			toks = append(toks, token{kind: tString, off: i, text: s[i : i+n], sval: b})
			i += n
		default:
			op := ""
			for _, o := range operators {
				if strings.HasPrefix(s[i:end], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, l.errorf(i, "unexpected %q in expression", rune(c))
			}
			toks = append(toks, token{kind: tOp, off: i, text: op})
			i += len(op)
		}
	}
	toks = append(toks, token{kind: tEOF, off: end})
	return toks, nil
}

// parseString reads a double-quoted string at the start of s: escapes \\,
// \", \n, \t, \r, \0 and \xHH. It returns the bytes and the length taken.
func parseString(s string) ([]byte, int, error) {
	if s == "" || s[0] != '"' {
		return nil, 0, fmt.Errorf("expected a string")
	}
	var out []byte
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return out, i + 1, nil
		case '\\':
			if i+1 >= len(s) {
				return nil, 0, fmt.Errorf("unterminated string")
			}
			i++
			switch s[i] {
			case '\\', '"':
				out = append(out, s[i])
			case 'n':
				out = append(out, '\n')
			case 't':
				out = append(out, '\t')
			case 'r':
				out = append(out, '\r')
			case '0':
				out = append(out, 0)
			case 'x':
				if i+2 >= len(s) {
					return nil, 0, fmt.Errorf("\\x needs two hex digits")
				}
				b, err := hex.DecodeString(s[i+1 : i+3])
				if err != nil {
					return nil, 0, fmt.Errorf("\\x needs two hex digits")
				}
				out = append(out, b[0])
				i += 2
			default:
				return nil, 0, fmt.Errorf("unknown escape \\%c", s[i])
			}
		default:
			out = append(out, c)
		}
	}
	return nil, 0, fmt.Errorf("unterminated string")
}

func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isHexDigit(c byte) bool   { return isDigit(c) || 'A' <= c&^0x20 && c&^0x20 <= 'F' }
func isLetter(c byte) bool     { return 'A' <= c&^0x20 && c&^0x20 <= 'Z' }
func isAlnum(c byte) bool      { return isDigit(c) || isLetter(c) }
func isIdentStart(c byte) bool { return isLetter(c) || c == '_' }
func isIdentChar(c byte) bool  { return isAlnum(c) || c == '_' }

// validName reports whether s can name a variable.
func validName(s string) bool {
	if s == "" || !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return true
}

// --- parsing ----------------------------------------------------------

// binary operator precedence, as in Go.
var precedence = map[string]int{
	"||": 1,
	"&&": 2,
	"==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
	"+": 4, "-": 4, "|": 4, "^": 4,
	"*": 5, "/": 5, "%": 5, "<<": 5, ">>": 5, "&": 5,
}

// maxExprDepth bounds nesting so that hostile input cannot exhaust the
// stack.
const maxExprDepth = 64

type exprParser struct {
	l     *srcLine
	toks  []token
	i     int
	depth int
}

// parseExpr parses text[start:end] of line as one expression.
func parseExpr(l *srcLine, start, end int) (Expr, error) {
	toks, err := lexExpr(l, start, end)
	if err != nil {
		return nil, err
	}
	p := &exprParser{l: l, toks: toks}
	if p.peek().kind == tEOF {
		return nil, l.errorf(start, "expected an expression")
	}
	e, err := p.binary(1)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, l.errorf(t.off, "unexpected %q after the expression", t.text)
	}
	return e, nil
}

func (p *exprParser) peek() token { return p.toks[p.i] }
func (p *exprParser) next() token { t := p.toks[p.i]; p.i++; return t }

func (p *exprParser) isOp(s string) bool {
	t := p.peek()
	return t.kind == tOp && t.text == s
}

func (p *exprParser) expect(s string) error {
	if !p.isOp(s) {
		t := p.peek()
		if t.kind == tEOF {
			return p.l.errorf(t.off, "expected %q", s)
		}
		return p.l.errorf(t.off, "expected %q, found %q", s, t.text)
	}
	p.i++
	return nil
}

func (p *exprParser) binary(minPrec int) (Expr, error) {
	x, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec, ok := precedence[t.text]
		if t.kind != tOp || !ok || prec < minPrec {
			return x, nil
		}
		p.i++
		y, err := p.binary(prec + 1)
		if err != nil {
			return nil, err
		}
		x = &binaryExpr{p: p.l.pos(t.off), op: t.text, x: x, y: y}
	}
}

func (p *exprParser) unary() (Expr, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxExprDepth {
		return nil, p.l.errorf(p.peek().off, "expression nested too deeply")
	}
	t := p.peek()
	if t.kind == tOp && (t.text == "-" || t.text == "!") {
		p.i++
		x, err := p.unary()
		if err != nil {
			return nil, err
		}
		return &unaryExpr{p: p.l.pos(t.off), op: t.text, x: x}, nil
	}
	return p.postfix()
}

func (p *exprParser) postfix() (Expr, error) {
	x, err := p.primary()
	if err != nil {
		return nil, err
	}
	for p.isOp("[") {
		t := p.next()
		ix := &indexExpr{p: p.l.pos(t.off), x: x}
		if !p.isOp(":") {
			if ix.lo, err = p.binary(1); err != nil {
				return nil, err
			}
		}
		if p.isOp(":") {
			p.i++
			ix.slice = true
			if !p.isOp("]") {
				if ix.hi, err = p.binary(1); err != nil {
					return nil, err
				}
			}
		} else if ix.lo == nil {
			return nil, p.l.errorf(p.peek().off, "expected an index")
		}
		if err := p.expect("]"); err != nil {
			return nil, err
		}
		x = ix
	}
	return x, nil
}

func (p *exprParser) primary() (Expr, error) {
	t := p.next()
	pos := p.l.pos(t.off)
	switch t.kind {
	case tInt:
		return &litExpr{p: pos, v: Int(t.ival), src: t.text}, nil
	case tString:
		return &litExpr{p: pos, v: Value{b: t.sval, text: true}, src: t.text}, nil
	case tIdent:
		if !p.isOp("(") {
			return &varExpr{p: pos, name: t.text}, nil
		}
		arity, ok := builtinFuncs[t.text]
		if !ok {
			return nil, p.l.errorf(t.off, "unknown function %s (have: len, int, bytes, unhex, hex, env)", t.text)
		}
		p.i++
		call := &callExpr{p: pos, name: t.text}
		for !p.isOp(")") {
			if len(call.args) > 0 {
				if err := p.expect(","); err != nil {
					return nil, err
				}
			}
			a, err := p.binary(1)
			if err != nil {
				return nil, err
			}
			call.args = append(call.args, a)
		}
		p.i++
		if n := len(call.args); n < arity[0] || n > arity[1] {
			return nil, p.l.errorf(t.off, "%s takes %s, got %d", t.name(), arityText(arity), n)
		}
		return call, nil
	case tOp:
		if t.text == "(" {
			x, err := p.binary(1)
			if err != nil {
				return nil, err
			}
			if err := p.expect(")"); err != nil {
				return nil, err
			}
			return x, nil
		}
	case tEOF:
		return nil, p.l.errorf(t.off, "expression ends too early")
	}
	return nil, p.l.errorf(t.off, "unexpected %q", t.text)
}

func (t token) name() string { return t.text + "()" }

func arityText(a [2]int) string {
	switch {
	case a[0] == a[1] && a[0] == 1:
		return "1 argument"
	case a[0] == a[1]:
		return fmt.Sprintf("%d arguments", a[0])
	}
	return fmt.Sprintf("%d to %d arguments", a[0], a[1])
}

// --- evaluation -------------------------------------------------------

// scope is what evaluation reads: variables (including the built-in ones
// describing the last response) and the environment.
type scope interface {
	lookup(name string) (Value, bool)
	getenv(name string) (string, bool)
}

// evalError is a run-time error at a position.
func evalError(p Pos, format string, a ...any) error {
	return &Error{Pos: p, Msg: fmt.Sprintf(format, a...)}
}

func eval(e Expr, s scope) (Value, error) {
	switch e := e.(type) {
	case *litExpr:
		return e.v, nil
	case *varExpr:
		v, ok := s.lookup(e.name)
		if !ok {
			if reservedName(e.name) {
				return Value{}, evalError(e.p, "%s has no value yet: no command has been sent", e.name)
			}
			return Value{}, evalError(e.p, "undefined variable %s", e.name)
		}
		return v, nil
	case *unaryExpr:
		x, err := eval(e.x, s)
		if err != nil {
			return Value{}, err
		}
		if e.op == "!" {
			return boolValue(!x.Truth(), x.secret), nil
		}
		n, err := x.AsInt()
		if err != nil {
			return Value{}, evalError(e.p, "%v", err)
		}
		return Value{isInt: true, i: -n, secret: x.secret}, nil
	case *binaryExpr:
		return evalBinary(e, s)
	case *indexExpr:
		return evalIndex(e, s)
	case *callExpr:
		return evalCall(e, s)
	}
	return Value{}, fmt.Errorf("script: unknown expression %T", e)
}

func boolValue(b, secret bool) Value {
	v := Int(0)
	if b {
		v.i = 1
	}
	v.secret = secret
	return v
}

func evalBinary(e *binaryExpr, s scope) (Value, error) {
	x, err := eval(e.x, s)
	if err != nil {
		return Value{}, err
	}
	// && and || short-circuit, as people expect from "n > 0 && data[0] == 1".
	switch e.op {
	case "&&":
		if !x.Truth() {
			return boolValue(false, x.secret), nil
		}
		y, err := eval(e.y, s)
		if err != nil {
			return Value{}, err
		}
		return boolValue(y.Truth(), x.secret || y.secret), nil
	case "||":
		if x.Truth() {
			return boolValue(true, x.secret), nil
		}
		y, err := eval(e.y, s)
		if err != nil {
			return Value{}, err
		}
		return boolValue(y.Truth(), x.secret || y.secret), nil
	}
	y, err := eval(e.y, s)
	if err != nil {
		return Value{}, err
	}
	secret := x.secret || y.secret
	switch e.op {
	case "==", "!=":
		eq, err := x.Equal(y)
		if err != nil {
			return Value{}, evalError(e.p, "%v", err)
		}
		return boolValue(eq == (e.op == "=="), secret), nil
	}
	a, err := x.AsInt()
	if err != nil {
		return Value{}, evalError(e.x.Pos(), "%v", err)
	}
	b, err := y.AsInt()
	if err != nil {
		return Value{}, evalError(e.y.Pos(), "%v", err)
	}
	var r int64
	switch e.op {
	case "<":
		return boolValue(a < b, secret), nil
	case "<=":
		return boolValue(a <= b, secret), nil
	case ">":
		return boolValue(a > b, secret), nil
	case ">=":
		return boolValue(a >= b, secret), nil
	case "+":
		r = a + b
	case "-":
		r = a - b
	case "*":
		r = a * b
	case "/", "%":
		if b == 0 {
			return Value{}, evalError(e.p, "division by zero")
		}
		if e.op == "/" {
			r = a / b
		} else {
			r = a % b
		}
	case "&":
		r = a & b
	case "|":
		r = a | b
	case "^":
		r = a ^ b
	case "<<", ">>":
		if b < 0 {
			return Value{}, evalError(e.p, "negative shift count %d", b)
		}
		if b >= 64 {
			b = 63 // a shift past the width saturates instead of panicking
			if e.op == "<<" {
				return Value{isInt: true, secret: secret}, nil
			}
		}
		if e.op == "<<" {
			r = a << uint(b)
		} else {
			r = a >> uint(b)
		}
	default:
		return Value{}, evalError(e.p, "unknown operator %s", e.op)
	}
	return Value{isInt: true, i: r, secret: secret}, nil
}

// index resolves a possibly negative index against n (Python style: -1 is
// the last byte). allowEnd accepts n itself, for slice bounds.
func index(v Value, n int, allowEnd bool) (int, bool) {
	i, err := v.AsInt()
	if err != nil {
		return 0, false
	}
	if i < 0 {
		i += int64(n)
	}
	if i < 0 || i > int64(n) || i == int64(n) && !allowEnd {
		return 0, false
	}
	return int(i), true
}

func evalIndex(e *indexExpr, s scope) (Value, error) {
	x, err := eval(e.x, s)
	if err != nil {
		return Value{}, err
	}
	b, err := x.AsBytes()
	if err != nil {
		return Value{}, evalError(e.p, "cannot index: %v", err)
	}
	bound := func(ex Expr, def int, allowEnd bool) (int, error) {
		if ex == nil {
			return def, nil
		}
		v, err := eval(ex, s)
		if err != nil {
			return 0, err
		}
		i, ok := index(v, len(b), allowEnd)
		if !ok {
			return 0, evalError(ex.Pos(), "index %s out of range for %d bytes", v, len(b))
		}
		return i, nil
	}
	if !e.slice {
		i, err := bound(e.lo, 0, false)
		if err != nil {
			return Value{}, err
		}
		return Value{isInt: true, i: int64(b[i]), secret: x.secret}, nil
	}
	lo, err := bound(e.lo, 0, true)
	if err != nil {
		return Value{}, err
	}
	hi, err := bound(e.hi, len(b), true)
	if err != nil {
		return Value{}, err
	}
	if lo > hi {
		return Value{}, evalError(e.p, "slice [%d:%d] runs backwards", lo, hi)
	}
	return Value{b: append([]byte{}, b[lo:hi]...), secret: x.secret, text: x.text}, nil
}

func evalCall(e *callExpr, s scope) (Value, error) {
	args := make([]Value, len(e.args))
	secret := false
	for i, a := range e.args {
		v, err := eval(a, s)
		if err != nil {
			return Value{}, err
		}
		args[i] = v
		secret = secret || v.secret
	}
	fail := func(format string, a ...any) (Value, error) {
		return Value{}, evalError(e.p, "%s: %s", e.name, fmt.Sprintf(format, a...))
	}
	switch e.name {
	case "len":
		b, err := args[0].AsBytes()
		if err != nil {
			return fail("%v", err)
		}
		return Value{isInt: true, i: int64(len(b)), secret: secret}, nil
	case "int":
		n, err := args[0].AsInt()
		if err != nil {
			return fail("%v", err)
		}
		return Value{isInt: true, i: n, secret: secret}, nil
	case "bytes":
		w, err := args[1].AsInt()
		if err != nil || w < 1 || w > 8 {
			return fail("the width must be 1 to 8 bytes")
		}
		b, err := args[0].Encode(int(w))
		if err != nil {
			return fail("%v", err)
		}
		return Value{b: b, secret: secret}, nil
	case "unhex":
		b, err := args[0].AsBytes()
		if err != nil {
			return fail("%v", err)
		}
		out, err := decodeHexText(string(b))
		if err != nil {
			return fail("%v", err)
		}
		return Value{b: out, secret: secret}, nil
	case "hex":
		w := 0
		if n, err := args[0].AsInt(); err == nil && args[0].isInt {
			// A number takes as many bytes as it needs: hex(sw) is "6A82".
			for w = 1; w < 8 && uint64(n) >= 1<<(8*uint(w)); w++ {
			}
		}
		b, err := args[0].Encode(w)
		if err != nil {
			return fail("%v", err)
		}
		return Value{b: []byte(strings.ToUpper(hex.EncodeToString(b))), secret: secret, text: true}, nil
	case "env":
		name, err := args[0].AsBytes()
		if err != nil {
			return fail("the name must be a string")
		}
		if v, ok := s.getenv(string(name)); ok {
			return Value{b: []byte(v), secret: secret, text: true}, nil
		}
		if len(args) == 2 {
			return args[1], nil
		}
		return fail("environment variable %s is not set", name)
	}
	return fail("unknown function")
}

// decodeHexText decodes hex that may hold spaces, tabs or colons.
func decodeHexText(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', ':', '\n', '\r':
			return -1
		}
		return r
	}, s)
	b, err := hex.DecodeString(clean)
	if err != nil {
		// The text is not quoted back: it may be a mistyped key.
		return nil, fmt.Errorf("not hex (%d characters; want pairs of 0-9, A-F)", len(clean))
	}
	return b, nil
}
