package purse

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/valuechip/valuechip/apdu"
)

// The worked examples of docs/purse.md §10 are fenced blocks whose info
// string is "example <name>":
//
//	```example load
//	# a comment
//	HostNonce = 0102030405060708
//	> 80 40 00 00 17 ... 00
//	< ... 90 00
//	```
//
// "name = hex" lines give named values, "> hex" a command APDU and "< hex"
// the card's response. The tests of apdu/purse recompute every value and
// the tests of applet/purse replay every exchange on an emulated card; a
// terminal or server implementation can run its own code against them.

// Example is one worked example.
type Example struct {
	Name   string
	Values []ExampleValue
	Steps  []ExampleStep
}

// ExampleValue is a named value of an example.
type ExampleValue struct {
	Name  string
	Value []byte
}

// ExampleStep is a command and the card's expected response.
type ExampleStep struct {
	Command  []byte
	Response []byte
}

// Value returns the named value; a missing name wraps ErrNotFound.
func (e Example) Value(name string) ([]byte, error) {
	for _, v := range e.Values {
		if v.Name == name {
			return v.Value, nil
		}
	}
	return nil, fmt.Errorf("%w: example %s has no value %s", ErrNotFound, e.Name, name)
}

// ParseExamples extracts the worked examples from markdown, in document
// order. Example names must be unique.
func ParseExamples(markdown []byte) ([]Example, error) {
	var out []Example
	var cur *Example
	sc := bufio.NewScanner(bytes.NewReader(markdown))
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if cur == nil {
			if name, ok := strings.CutPrefix(text, "```example "); ok {
				name = strings.TrimSpace(name)
				for _, e := range out {
					if e.Name == name {
						return nil, fmt.Errorf("%w: line %d: example %q defined twice", ErrMalformed, line, name)
					}
				}
				cur = &Example{Name: name}
			}
			continue
		}
		switch {
		case text == "```":
			out = append(out, *cur)
			cur = nil
		case text == "" || strings.HasPrefix(text, "#"):
		case strings.HasPrefix(text, ">"):
			b, err := apdu.DecodeHex(strings.TrimSpace(text[1:]))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			cur.Steps = append(cur.Steps, ExampleStep{Command: b})
		case strings.HasPrefix(text, "<"):
			b, err := apdu.DecodeHex(strings.TrimSpace(text[1:]))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			if len(cur.Steps) == 0 || cur.Steps[len(cur.Steps)-1].Response != nil {
				return nil, fmt.Errorf("%w: line %d: response without a command", ErrMalformed, line)
			}
			cur.Steps[len(cur.Steps)-1].Response = b
		default:
			name, hexValue, ok := strings.Cut(text, "=")
			if !ok {
				return nil, fmt.Errorf("%w: line %d: %q is not a value, command or response", ErrMalformed, line, text)
			}
			b, err := apdu.DecodeHex(strings.TrimSpace(hexValue))
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			cur.Values = append(cur.Values, ExampleValue{Name: strings.TrimSpace(name), Value: b})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("%w: example %q not closed", ErrMalformed, cur.Name)
	}
	return out, nil
}
