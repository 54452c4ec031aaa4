package script

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/valuechip/valuechip/reader"
)

// Template is hex with interpolations, as in command lines, set, select
// and expect data:
//
//	80 10 00 00 ${len(msg)} ${msg} 00
//	"1234"                 text, as its bytes
//	6F ?? 84 08 *          a pattern: ? or x for any nibble, * for any rest
//
// Hex digits may be separated by spaces, tabs or colons; a byte may not be
// split around an interpolation.
type Template struct {
	P     Pos
	parts []tpart
	rest  bool // a trailing "*": any further bytes match (patterns only)
	src   string
}

type tpart struct {
	p     Pos
	lit   []byte
	mask  []byte // per-byte nibble mask of a pattern literal; nil = exact
	expr  Expr   // an interpolation
	width int    // its width in bytes, 0 = natural
	env   string // ${env:NAME}
}

// Describe returns the template as written.
func (t *Template) Describe() string { return t.src }

// Literal reports whether the template holds no interpolation.
func (t *Template) Literal() bool {
	for _, p := range t.parts {
		if p.expr != nil || p.env != "" {
			return false
		}
	}
	return true
}

// findClose returns the index of the "}" that closes an interpolation whose
// content starts at i, skipping strings and nested braces, or -1.
func findClose(s string, i, end int) int {
	depth := 0
	for i < end {
		switch s[i] {
		case '"':
			_, n, err := parseString(s[i:end])
			if err != nil {
				return -1
			}
			i += n
			continue
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return i
			}
			depth--
		}
		i++
	}
	return -1
}

// parseInterp parses the inside of ${...} at s[start:end].
func parseInterp(l *srcLine, start, end int) (tpart, error) {
	part := tpart{p: l.pos(start - 2)}
	inner := l.text[start:end]
	trimmed := strings.TrimSpace(inner)
	if name, ok := strings.CutPrefix(trimmed, "env:"); ok {
		name = strings.TrimSpace(name)
		if !validName(name) {
			return part, l.errorf(start, "bad environment variable name %q", name)
		}
		part.env = name
		return part, nil
	}
	// A width suffix ":N" at the top level (not inside a slice's brackets).
	depth, colon := 0, -1
	for i := start; i < end; i++ {
		switch l.text[i] {
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '"':
			if _, n, err := parseString(l.text[i:end]); err == nil {
				i += n - 1
			}
		case ':':
			if depth == 0 {
				colon = i
			}
		}
	}
	exprEnd := end
	if colon >= 0 {
		w := strings.TrimSpace(l.text[colon+1 : end])
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 || n > 65535 {
			return part, l.errorf(colon+1, "bad width %q after ':' (want a number of bytes)", w)
		}
		part.width = n
		exprEnd = colon
	}
	e, err := parseExpr(l, start, exprEnd)
	if err != nil {
		return part, err
	}
	part.expr = e
	return part, nil
}

// parseTemplate parses l.text[start:end]; wild allows the pattern forms
// (? and x nibbles, a trailing *).
func parseTemplate(l *srcLine, start, end int, wild bool) (*Template, error) {
	t := &Template{P: l.pos(start), src: strings.TrimSpace(l.text[start:end])}
	s := l.text
	var lit []byte
	var mask []byte
	hasMask := false
	half := -1 // offset of a pending high nibble
	var hi, hiMask byte
	flush := func() {
		if len(lit) > 0 {
			p := tpart{lit: lit}
			if hasMask {
				p.mask = mask
			}
			t.parts = append(t.parts, p)
		}
		lit, mask, hasMask = nil, nil, false
	}
	boundary := func(i int, what string) error {
		if half >= 0 {
			return l.errorf(half, "odd number of hex digits before %s", what)
		}
		return nil
	}
	nibble := func(v, m byte, i int) {
		if half < 0 {
			hi, hiMask, half = v, m, i
			return
		}
		lit = append(lit, hi<<4|v)
		mask = append(mask, hiMask<<4|m)
		if hiMask != 0xF || m != 0xF {
			hasMask = true
		}
		half = -1
	}
	for i := start; i < end; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == ':':
			i++
		case t.rest:
			return nil, l.errorf(i, "nothing may follow the '*' that ends a pattern")
		case isHexDigit(c):
			nibble(hexVal(c), 0xF, i)
			i++
		case wild && (c == '?' || c == 'x' || c == 'X'):
			nibble(0, 0, i)
			i++
		case wild && c == '*':
			if err := boundary(i, "'*'"); err != nil {
				return nil, err
			}
			t.rest = true
			i++
		case c == '$' && i+1 < end && s[i+1] == '{':
			if err := boundary(i, "${...}"); err != nil {
				return nil, err
			}
			flush()
			j := findClose(s, i+2, end)
			if j < 0 {
				return nil, l.errorf(i, "unclosed ${")
			}
			part, err := parseInterp(l, i+2, j)
			if err != nil {
				return nil, err
			}
			t.parts = append(t.parts, part)
			i = j + 1
		case c == '"':
			if err := boundary(i, "a string"); err != nil {
				return nil, err
			}
			b, n, err := parseString(s[i:end])
			if err != nil {
				return nil, l.errorf(i, "%v", err)
			}
			for _, x := range b {
				lit = append(lit, x)
				mask = append(mask, 0xFF)
			}
			i += n
		default:
			hint := ""
			if !wild && (c == '?' || c == '*' || c == 'x' || c == 'X') {
				hint = " (wildcards are for expect data patterns)"
			}
			return nil, l.errorf(i, "unexpected %q in hex%s", rune(c), hint)
		}
	}
	if err := boundary(end, "the end"); err != nil {
		return nil, err
	}
	flush()
	return t, nil
}

func hexVal(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// expanded is an evaluated template.
type expanded struct {
	b      []byte
	mask   []byte // nil when every bit counts
	rest   bool
	secret []reader.Span
}

// expand evaluates the template in scope s.
func (t *Template) expand(s scope) (expanded, error) {
	var out expanded
	out.rest = t.rest
	for _, p := range t.parts {
		var b []byte
		var secret bool
		switch {
		case p.lit != nil:
			b = p.lit
			if p.mask != nil {
				if out.mask == nil {
					out.mask = fullMask(len(out.b))
				}
				out.b = append(out.b, b...)
				out.mask = append(out.mask, p.mask...)
				continue
			}
		case p.env != "":
			v, ok := s.getenv(p.env)
			if !ok {
				return out, evalError(p.p, "environment variable %s is not set", p.env)
			}
			var err error
			if b, err = decodeHexText(v); err != nil {
				return out, evalError(p.p, "environment variable %s: %v (use env(%q) for text)", p.env, err, p.env)
			}
		default:
			v, err := eval(p.expr, s)
			if err != nil {
				return out, err
			}
			if b, err = v.Encode(p.width); err != nil {
				return out, evalError(p.p, "${%s}: %v", p.expr, err)
			}
			secret = v.secret
		}
		if secret && len(b) > 0 {
			out.secret = append(out.secret, reader.Span{Start: len(out.b), End: len(out.b) + len(b)})
		}
		out.b = append(out.b, b...)
		if out.mask != nil {
			out.mask = append(out.mask, fullMask(len(b))...)
		}
		if len(out.b) > maxTemplateBytes {
			return out, evalError(t.P, "more than %d bytes", maxTemplateBytes)
		}
	}
	return out, nil
}

// maxTemplateBytes bounds what one template may produce: the largest
// extended command plus room for its header and lengths.
const maxTemplateBytes = 65544

func fullMask(n int) []byte {
	m := make([]byte, n)
	for i := range m {
		m[i] = 0xFF
	}
	return m
}

// match reports whether b fits the expanded pattern.
func (e expanded) match(b []byte) bool {
	if len(b) < len(e.b) || !e.rest && len(b) != len(e.b) {
		return false
	}
	for i, x := range e.b {
		m := byte(0xFF)
		if e.mask != nil {
			m = e.mask[i]
		}
		if b[i]&m != x&m {
			return false
		}
	}
	return true
}

// describe renders the expanded pattern for messages: hex, "?" for
// wildcard nibbles, "**" for secret bytes, "*" for an open end.
func (e expanded) describe() string {
	const digits = "0123456789ABCDEF"
	var sb strings.Builder
	for i, x := range e.b {
		if inSpans(e.secret, i) {
			sb.WriteString("**")
			continue
		}
		m := byte(0xFF)
		if e.mask != nil {
			m = e.mask[i]
		}
		for _, sh := range []uint{4, 0} {
			if m>>sh&0xF == 0 {
				sb.WriteByte('?')
			} else {
				sb.WriteByte(digits[x>>sh&0xF])
			}
		}
	}
	if e.rest {
		sb.WriteByte('*')
	}
	return sb.String()
}

func inSpans(spans []reader.Span, i int) bool {
	for _, s := range spans {
		if s.Start <= i && i < s.End {
			return true
		}
	}
	return false
}

// Text is free text with ${...} interpolations (print, fail).
type Text struct {
	parts []textPart
}

type textPart struct {
	lit    string
	interp *tpart
}

// parseText parses l.text[start:end]; surrounding double quotes are
// optional and removed.
func parseText(l *srcLine, start, end int) (*Text, error) {
	s := l.text
	for start < end && (s[start] == ' ' || s[start] == '\t') {
		start++
	}
	for end > start && (s[end-1] == ' ' || s[end-1] == '\t') {
		end--
	}
	if end-start >= 2 && s[start] == '"' && s[end-1] == '"' {
		start++
		end--
	}
	t := &Text{}
	litStart := start
	for i := start; i < end; i++ {
		if s[i] != '$' || i+1 >= end || s[i+1] != '{' {
			continue
		}
		if i > litStart {
			t.parts = append(t.parts, textPart{lit: s[litStart:i]})
		}
		j := findClose(s, i+2, end)
		if j < 0 {
			return nil, l.errorf(i, "unclosed ${")
		}
		part, err := parseInterp(l, i+2, j)
		if err != nil {
			return nil, err
		}
		t.parts = append(t.parts, textPart{interp: &part})
		i = j
		litStart = j + 1
	}
	if litStart < end {
		t.parts = append(t.parts, textPart{lit: s[litStart:end]})
	}
	return t, nil
}

// expand renders the text: numbers in decimal, bytes in hex, secrets as
// "****".
func (t *Text) expand(s scope) (string, error) {
	var sb strings.Builder
	for _, p := range t.parts {
		if p.interp == nil {
			sb.WriteString(p.lit)
			continue
		}
		if p.interp.env != "" {
			v, ok := s.getenv(p.interp.env)
			if !ok {
				return "", evalError(p.interp.p, "environment variable %s is not set", p.interp.env)
			}
			sb.WriteString(v)
			continue
		}
		v, err := eval(p.interp.expr, s)
		if err != nil {
			return "", err
		}
		if p.interp.width > 0 && !v.secret {
			b, err := v.Encode(p.interp.width)
			if err != nil {
				return "", evalError(p.interp.p, "%v", err)
			}
			v = Value{b: b}
		}
		sb.WriteString(v.String())
	}
	return sb.String(), nil
}

// String renders a Text as parsed, for errors.
func (t *Text) String() string {
	var sb strings.Builder
	for _, p := range t.parts {
		switch {
		case p.interp == nil:
			sb.WriteString(p.lit)
		case p.interp.env != "":
			fmt.Fprintf(&sb, "${env:%s}", p.interp.env)
		default:
			fmt.Fprintf(&sb, "${%v}", p.interp.expr)
		}
	}
	return sb.String()
}
