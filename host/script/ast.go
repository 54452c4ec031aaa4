package script

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Pos is a place in a script: file, 1-based line and 1-based column (in
// bytes).
type Pos struct {
	File string
	Line int
	Col  int
}

// String renders "file:line:col", as compilers do, so editors jump to it.
func (p Pos) String() string {
	f := p.File
	if f == "" {
		f = "-"
	}
	if p.Col <= 0 {
		return fmt.Sprintf("%s:%d", f, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", f, p.Line, p.Col)
}

// Error is a mistake in a script, found while parsing or running it, at a
// position.
type Error struct {
	Pos Pos
	Msg string
	// Err is the underlying error, if any (a transport failure, a secure
	// channel error), for errors.Is.
	Err error
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// ErrIncomplete marks a parse error that more input could fix: an if or
// repeat without its end, a line ending in a continuation backslash. The
// interactive shell asks for more lines instead of reporting it.
var ErrIncomplete = errors.New("script: incomplete input")

// ErrorList holds every parse error of a script, in order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	switch len(l) {
	case 0:
		return "no errors"
	case 1:
		return l[0].Error()
	}
	var sb strings.Builder
	for i, e := range l {
		if i == 10 {
			fmt.Fprintf(&sb, "\n(and %d more errors)", len(l)-i)
			break
		}
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(e.Error())
	}
	return sb.String()
}

// Unwrap lets errors.Is see through to each error (ErrIncomplete).
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Script is a parsed script file.
type Script struct {
	File  string
	Stmts []Stmt
}

// Stmt is one statement of a script.
type Stmt interface {
	Pos() Pos
	// Describe renders the statement for output. It never includes secret
	// values: keys and templates print as written only when they hold no
	// literal secret.
	Describe() string
}

type (
	// Send sends one command APDU: a bare hex line (scriptor's syntax) or
	// "send [raw] [secret] TEMPLATE".
	Send struct {
		P      Pos
		APDU   *Template
		Raw    bool // no GET RESPONSE, 6Cxx re-send or chaining for this one
		Secret bool // mask all its data in traces and recordings
	}
	// Select sends SELECT by AID (00 A4 04 00 Lc AID 00).
	Select struct {
		P   Pos
		AID *Template
	}
	// Reset resets the card: warm unless Cold.
	Reset struct {
		P    Pos
		Cold bool
	}
	// Exit ends the script successfully.
	Exit struct{ P Pos }
	// Expect checks the last response (or any condition).
	Expect struct {
		P    Pos
		Cond *Cond
	}
	// Set assigns bytes built from a template; Secret marks the variable.
	Set struct {
		P      Pos
		Name   string
		Value  *Template
		Secret bool
	}
	// Let assigns the value of an expression.
	Let struct {
		P     Pos
		Name  string
		Value Expr
	}
	// If runs Then when Cond holds, else Else (an "elif" is an If alone in
	// Else).
	If struct {
		P    Pos
		Cond *Cond
		Then []Stmt
		Else []Stmt
	}
	// Repeat runs Body Count times, with Var (if set) counting from 0.
	Repeat struct {
		P     Pos
		Count Expr
		Var   string
		Body  []Stmt
	}
	// Include is another script file, parsed in place.
	Include struct {
		P      Pos
		Path   string
		Script *Script
	}
	// Wait waits for a card (Tap false) or for the card to leave and come
	// back (Tap true).
	Wait struct {
		P       Pos
		Tap     bool
		Timeout time.Duration
	}
	// Secure opens a secure channel that wraps every following command until
	// "secure off" (Off).
	Secure struct {
		P        Pos
		Protocol string
		Params   []SecureParam
		Off      bool
	}
	// Print writes text with ${...} expanded.
	Print struct {
		P    Pos
		Text *Text
	}
	// Fail stops the script as failed, with a message.
	Fail struct {
		P    Pos
		Text *Text
	}
)

// SecureParam is one key=value of a secure directive.
type SecureParam struct {
	P     Pos
	Key   string
	Value *Template
}

func (s *Send) Pos() Pos    { return s.P }
func (s *Select) Pos() Pos  { return s.P }
func (s *Reset) Pos() Pos   { return s.P }
func (s *Exit) Pos() Pos    { return s.P }
func (s *Expect) Pos() Pos  { return s.P }
func (s *Set) Pos() Pos     { return s.P }
func (s *Let) Pos() Pos     { return s.P }
func (s *If) Pos() Pos      { return s.P }
func (s *Repeat) Pos() Pos  { return s.P }
func (s *Include) Pos() Pos { return s.P }
func (s *Wait) Pos() Pos    { return s.P }
func (s *Secure) Pos() Pos  { return s.P }
func (s *Print) Pos() Pos   { return s.P }
func (s *Fail) Pos() Pos    { return s.P }

func (s *Send) Describe() string {
	var sb strings.Builder
	sb.WriteString("send")
	if s.Raw {
		sb.WriteString(" raw")
	}
	if s.Secret {
		sb.WriteString(" secret")
	}
	return sb.String()
}
func (s *Select) Describe() string { return "select " + s.AID.Describe() }
func (s *Reset) Describe() string {
	if s.Cold {
		return "reset cold"
	}
	return "reset"
}
func (s *Exit) Describe() string   { return "exit" }
func (s *Expect) Describe() string { return "expect " + s.Cond.Describe() }
func (s *Set) Describe() string {
	if s.Secret {
		return "secret " + s.Name
	}
	return "set " + s.Name + " = " + s.Value.Describe()
}
func (s *Let) Describe() string     { return "let " + s.Name + " = " + s.Value.String() }
func (s *If) Describe() string      { return "if " + s.Cond.Describe() }
func (s *Repeat) Describe() string  { return "repeat " + s.Count.String() }
func (s *Include) Describe() string { return "include " + s.Path }
func (s *Wait) Describe() string {
	if s.Tap {
		return "tap"
	}
	return "wait card"
}
func (s *Secure) Describe() string {
	if s.Off {
		return "secure off"
	}
	var sb strings.Builder
	sb.WriteString("secure " + s.Protocol)
	for _, p := range s.Params {
		if secureSecretParam(p.Key) {
			continue // keys never appear in output, not even as written
		}
		sb.WriteString(" " + p.Key + "=" + p.Value.Describe())
	}
	return sb.String()
}
func (s *Print) Describe() string { return "print" }
func (s *Fail) Describe() string  { return "fail" }

// CondKind says which form a condition takes.
type CondKind int

// Condition forms.
const (
	CondSW    CondKind = iota + 1 // sw 9000 61xx
	CondData                      // data 6F??84*  or  data VALUE mask MASK
	CondMatch                     // data match "REGEX"
	CondExpr                      // any expression
)

// Cond is the condition of expect and if.
type Cond struct {
	P      Pos
	Not    bool
	Kind   CondKind
	SW     []SWPattern
	Data   *Template // CondData: the expected bytes (with wildcards)
	Mask   *Template // CondData: optional AND mask
	Regexp *regexp.Regexp
	Expr   Expr
	src    string
}

// Describe renders the condition as written (templates with secrets
// masked).
func (c *Cond) Describe() string {
	s := c.src
	if s == "" {
		switch c.Kind {
		case CondSW:
			parts := make([]string, len(c.SW))
			for i, p := range c.SW {
				parts[i] = p.String()
			}
			s = "sw " + strings.Join(parts, " ")
		case CondData:
			s = "data " + c.Data.Describe()
			if c.Mask != nil {
				s += " mask " + c.Mask.Describe()
			}
		case CondMatch:
			s = fmt.Sprintf("data match %q", c.Regexp.String())
		}
	}
	if c.Not {
		return "not " + s
	}
	return s
}

// SWPattern is a status word with optional wildcard nibbles: 9000, 63C?,
// 61xx.
type SWPattern struct {
	Value, Mask uint16
}

// Match reports whether sw fits the pattern.
func (p SWPattern) Match(sw uint16) bool { return sw&p.Mask == p.Value&p.Mask }

// String renders the pattern with "?" for wildcard nibbles.
func (p SWPattern) String() string {
	const digits = "0123456789ABCDEF"
	var b [4]byte
	for i := 0; i < 4; i++ {
		shift := uint(12 - 4*i)
		if p.Mask>>shift&0xF == 0 {
			b[i] = '?'
		} else {
			b[i] = digits[p.Value>>shift&0xF]
		}
	}
	return string(b[:])
}
