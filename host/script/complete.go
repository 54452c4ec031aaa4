package script

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// KnownAIDs are application identifiers worth offering before any was
// selected: the valuechip test applet and the GlobalPlatform Issuer
// Security Domain.
var KnownAIDs = []string{
	"F056435445535401", // valuechip test applet
	"A000000151000000", // GlobalPlatform ISD
	"A0000001510000",   // GlobalPlatform ISD (older cards)
}

// Complete returns the words that can complete the one the cursor is in
// (line[:pos]): directives at the start of a line, their sub-words after
// them, AIDs after select, and variable and function names inside ${ or
// in an expression. Each candidate is a whole word; the second result is
// the length of the prefix it replaces.
func (in *Interpreter) Complete(line string, pos int) ([]string, int) {
	if pos < 0 || pos > len(line) {
		pos = len(line)
	}
	head := line[:pos]
	// Inside an unclosed ${ ... : variables and functions.
	if i := strings.LastIndex(head, "${"); i >= 0 && !strings.Contains(head[i:], "}") {
		prefix := identSuffix(head)
		return filterPrefix(in.exprNames(true), prefix), len(prefix)
	}
	words := strings.Fields(head)
	atWordStart := head == "" || strings.HasSuffix(head, " ") || strings.HasSuffix(head, "\t")
	prefix := ""
	if !atWordStart && len(words) > 0 {
		prefix = words[len(words)-1]
		words = words[:len(words)-1]
	}
	if len(words) == 0 {
		kw := Keywords()
		sort.Strings(kw)
		return filterPrefix(kw, strings.ToLower(prefix)), len(prefix)
	}
	first := strings.ToLower(words[0])
	var cands []string
	switch first {
	case "select":
		if len(words) == 1 {
			cands = append(in.AIDs(), KnownAIDs...)
		}
	case "reset":
		if len(words) == 1 {
			cands = []string{"cold", "warm"}
		}
	case "wait":
		if len(words) == 1 {
			cands = []string{"card"}
		} else {
			cands = []string{"timeout"}
		}
	case "tap":
		cands = []string{"timeout"}
	case "send":
		cands = []string{"raw", "secret"}
	case "secure":
		if len(words) == 1 {
			cands = []string{"scp03", "off"}
		} else if keys, ok := secureParamKeys[strings.ToLower(words[1])]; ok {
			for _, k := range keys {
				cands = append(cands, k+"=")
			}
			if lv, ok := strings.CutPrefix(prefix, "level="); ok {
				p := lv[strings.LastIndexAny(lv, "+,")+1:]
				base := prefix[:len(prefix)-len(p)]
				var out []string
				for _, w := range []string{"mac", "enc", "rmac", "renc", "none"} {
					if strings.HasPrefix(w, p) {
						out = append(out, base+w)
					}
				}
				return out, len(prefix)
			}
		}
	case "expect", "if", "elif", "else":
		last := strings.ToLower(words[len(words)-1])
		switch {
		case last == "data":
			cands = []string{"match"}
		case last == "sw":
			cands = []string{"9000", "61xx", "63C?", "6Cxx"}
		case len(words) == 1 || last == "not" || first == "else" && last == "if":
			cands = append([]string{"sw", "data", "not"}, in.exprNames(false)...)
		default:
			cands = in.exprNames(false)
		}
	case "let", "repeat", "print", "fail":
		if first == "let" && len(words) < 3 {
			break
		}
		p := identSuffix(prefix)
		return filterPrefix(in.exprNames(false), p), len(p)
	case "include":
		return completeFile(prefix), len(prefix)
	}
	return filterPrefix(dedupe(cands), prefix), len(prefix)
}

// exprNames lists what an expression can name: variables, built-ins and
// functions (with "env:" inside ${ ).
func (in *Interpreter) exprNames(interp bool) []string {
	names := in.VarNames()
	for f := range builtinFuncs {
		names = append(names, f+"(")
	}
	if interp {
		names = append(names, "env:")
	}
	sort.Strings(names)
	return names
}

// identSuffix returns the identifier characters at the end of s.
func identSuffix(s string) string {
	i := len(s)
	for i > 0 && (isIdentChar(s[i-1]) || s[i-1] == ':') {
		i--
	}
	return s[i:]
}

func filterPrefix(list []string, prefix string) []string {
	var out []string
	lp := strings.ToLower(prefix)
	for _, w := range list {
		if strings.HasPrefix(strings.ToLower(w), lp) {
			out = append(out, w)
		}
	}
	return out
}

func dedupe(list []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range list {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

func completeFile(prefix string) []string {
	matches, err := filepath.Glob(prefix + "*")
	if err != nil {
		return nil
	}
	var out []string
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.IsDir() {
			m += string(filepath.Separator)
		}
		out = append(out, m)
	}
	return out
}

// ParseDefine parses a command-line definition NAME=VALUE, where VALUE is
// written as in set: hex bytes, "text" in double quotes, or both.
func ParseDefine(def string) (string, Value, error) {
	name, value, ok := strings.Cut(def, "=")
	if !ok || !validName(name) || reservedName(name) {
		return "", Value{}, fmt.Errorf("-D %q: want NAME=VALUE with NAME made of letters, digits and _ (not sw, data, ...)", def)
	}
	l := &srcLine{file: "-D", text: value, segs: []seg{{off: 0, line: 1, col: len(name) + 2}}}
	t, err := parseTemplate(l, 0, len(value), false)
	if err != nil {
		return "", Value{}, fmt.Errorf("-D %s: %w", name, err)
	}
	if !t.Literal() {
		return "", Value{}, fmt.Errorf("-D %s: the value must be literal hex or \"text\", without ${...}", name)
	}
	e, err := t.expand(nil)
	if err != nil {
		return "", Value{}, fmt.Errorf("-D %s: %w", name, err)
	}
	return name, Bytes(e.b), nil
}
