package script

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/valuechip/valuechip/apdu"
)

// Human is an Observer that writes the human trace as a script runs: each
// step with its command and response (status words decoded, BER-TLV data
// as a tree, secrets as "**"), each expectation with ok or FAILED, and a
// closing line per file.
//
//	== hello.vcs
//	3:1 select F056435445535401
//	    >> 00A4040008F05643544553540100  SELECT
//	    << 6F108408F056435445535401A5049F6501FF  9000 (success)
//	       6F [16]
//	         84 [8] F056435445535401
//	         A5 [4]
//	           9F65 [1] FF
//	4:1 ok: expect sw 9000
//	== hello.vcs: ok (1 command, 1 check)
//
// Positions are line:col in the file being run, file:line:col in an
// included one.
type Human struct {
	// Frame writes the "== FILE" line before a script and the summary
	// after it; Positions starts each step and check with its position.
	// NewHuman sets both; the shell turns them off.
	Frame, Positions bool

	mu   sync.Mutex
	w    io.Writer
	file string
}

// NewHuman returns a Human writing to w.
func NewHuman(w io.Writer) *Human { return &Human{w: w, Frame: true, Positions: true} }

// Begin implements Observer.
func (h *Human) Begin(file string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.file = file
	if h.Frame {
		fmt.Fprintf(h.w, "== %s\n", file)
	}
}

// StepDone implements Observer.
func (h *Human) StepDone(s *Step) {
	h.mu.Lock()
	defer h.mu.Unlock()
	io.WriteString(h.w, h.strip(formatStep(s, h.file), s.Pos))
}

// strip removes the leading position when Positions is off.
func (h *Human) strip(line string, p Pos) string {
	if h.Positions {
		return line
	}
	return strings.TrimPrefix(line, relPos(p, h.file)+" ")
}

// CheckDone implements Observer.
func (h *Human) CheckDone(_ *Step, c *Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	io.WriteString(h.w, h.strip(formatCheck(c, h.file), c.Pos))
}

// End implements Observer.
func (h *Human) End(r *Result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Frame {
		fmt.Fprintf(h.w, "== %s: %s\n", r.File, Summary(r))
	}
}

// Summary is the one-line outcome of a script: "ok (3 commands, 2
// checks)", "FAILED at 7:1: expect sw 9000: got 6A82 (...)", "ERROR at
// ...".
func Summary(r *Result) string {
	cmds, checks, failed := r.Counts()
	counts := fmt.Sprintf("%s, %s", plural(cmds, "command"), plural(checks, "check"))
	if r.Err == nil {
		if r.Exited {
			return "ok, exited (" + counts + ")"
		}
		return "ok (" + counts + ")"
	}
	word := "ERROR"
	if errors.Is(r.Err, ErrFailed) {
		word = "FAILED"
		if failed > 1 {
			word = fmt.Sprintf("FAILED, %d of %d checks", failed, checks)
		}
	}
	var e *Error
	if errors.As(r.Err, &e) {
		return fmt.Sprintf("%s at %s: %s", word, relPos(e.Pos, r.File), e.Msg)
	}
	return word + ": " + oneLine(r.Err.Error())
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// relPos drops the file name when it is the script's own.
func relPos(p Pos, file string) string {
	if p.File == file {
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return p.String()
}

// formatStep renders one step as the human trace shows it.
func formatStep(s *Step, file string) string {
	var sb strings.Builder
	pos := relPos(s.Pos, file)
	switch s.Kind {
	case KindPrint:
		fmt.Fprintf(&sb, "%s print: %s\n", pos, s.Output)
		return sb.String()
	case KindFail:
		fmt.Fprintf(&sb, "%s FAILED: fail: %s\n", pos, s.Output)
		return sb.String()
	case KindCheck:
		if s.Err == "" {
			return "" // its check line says it all
		}
	}
	fmt.Fprintf(&sb, "%s %s\n", pos, s.Title)
	if s.Command != "" {
		sb.WriteString("    >> " + s.Command)
		var tags []string
		if s.Name != "" && s.Name != s.Title {
			tags = append(tags, s.Name)
		}
		if s.Secure {
			tags = append(tags, "(secure)")
		}
		if s.Raw {
			tags = append(tags, "(raw)")
		}
		if len(tags) > 0 {
			sb.WriteString("  " + strings.Join(tags, " "))
		}
		sb.WriteByte('\n')
	}
	if s.HasSW {
		sb.WriteString("    << ")
		if s.Data != "" {
			sb.WriteString(s.Data + "  ")
		}
		sb.WriteString(apdu.SW(s.SW).String() + "\n")
		for _, l := range strings.Split(strings.TrimRight(s.TLV, "\n"), "\n") {
			if l != "" {
				sb.WriteString("       " + l + "\n")
			}
		}
	}
	if s.ATR != "" {
		sb.WriteString("    ATR " + s.ATR + "\n")
	}
	if s.Output != "" {
		sb.WriteString("    " + s.Output + "\n")
	}
	if s.Err != "" {
		sb.WriteString("    ERROR: " + s.Err + "\n")
	}
	return sb.String()
}

func formatCheck(c *Check, file string) string {
	if c.OK {
		return fmt.Sprintf("%s ok: %s\n", relPos(c.Pos, file), c.Text)
	}
	if c.Message == "" {
		return fmt.Sprintf("%s FAILED: %s\n", relPos(c.Pos, file), c.Text)
	}
	return fmt.Sprintf("%s FAILED: %s: %s\n", relPos(c.Pos, file), c.Text, c.Message)
}

// FormatResult renders a whole result as Human would have written it live.
func FormatResult(r *Result) string {
	var sb strings.Builder
	h := NewHuman(&sb)
	h.Begin(r.File)
	for _, s := range r.Steps {
		h.StepDone(s)
		for _, c := range s.Checks {
			h.CheckDone(s, c)
		}
	}
	h.End(r)
	return sb.String()
}

// --- JSON ---------------------------------------------------------------

type jsonReport struct {
	OK      bool         `json:"ok"`
	Scripts []jsonScript `json:"scripts"`
}

type jsonScript struct {
	File     string     `json:"file"`
	OK       bool       `json:"ok"`
	Exited   bool       `json:"exited,omitempty"`
	Error    string     `json:"error,omitempty"`
	Summary  string     `json:"summary"`
	Micros   int64      `json:"duration_us"`
	Commands int        `json:"commands"`
	Checks   int        `json:"checks"`
	Failed   int        `json:"failed_checks"`
	Steps    []jsonStep `json:"steps"`
}

type jsonStep struct {
	Pos     string      `json:"pos"`
	Kind    string      `json:"kind"`
	Title   string      `json:"title"`
	Status  string      `json:"status"`
	Command string      `json:"command,omitempty"`
	Name    string      `json:"name,omitempty"`
	Data    *string     `json:"data,omitempty"`
	SW      string      `json:"sw,omitempty"`
	Meaning string      `json:"sw_meaning,omitempty"`
	TLV     string      `json:"tlv,omitempty"`
	Secure  bool        `json:"secure,omitempty"`
	Raw     bool        `json:"raw,omitempty"`
	ATR     string      `json:"atr,omitempty"`
	Output  string      `json:"output,omitempty"`
	Error   string      `json:"error,omitempty"`
	Micros  int64       `json:"duration_us"`
	Checks  []jsonCheck `json:"checks,omitempty"`
}

type jsonCheck struct {
	Pos     string `json:"pos"`
	Text    string `json:"text"`
	OK      bool   `json:"ok"`
	Message string `json:"message,omitempty"`
}

// WriteJSON writes the results as one JSON document: an "ok" flag and, per
// script, its steps with commands, responses, decoded status words and
// checks (secrets masked as in the trace).
func WriteJSON(w io.Writer, results []*Result) error {
	rep := jsonReport{OK: true, Scripts: []jsonScript{}}
	for _, r := range results {
		cmds, checks, failed := r.Counts()
		js := jsonScript{File: r.File, OK: r.OK(), Exited: r.Exited, Summary: Summary(r),
			Micros: r.Duration.Microseconds(), Commands: cmds, Checks: checks, Failed: failed, Steps: []jsonStep{}}
		if r.Err != nil {
			js.Error = oneLine(r.Err.Error())
			rep.OK = false
		}
		for _, s := range r.Steps {
			st := jsonStep{Pos: s.Pos.String(), Kind: s.Kind, Title: s.Title, Status: s.Status(),
				Command: s.Command, Name: s.Name, TLV: s.TLV, Secure: s.Secure, Raw: s.Raw,
				ATR: s.ATR, Output: s.Output, Error: s.Err, Micros: s.Duration.Microseconds()}
			if s.HasSW {
				d := s.Data
				st.Data = &d
				st.SW = fmt.Sprintf("%04X", s.SW)
				st.Meaning = apdu.SW(s.SW).Name()
			}
			for _, c := range s.Checks {
				st.Checks = append(st.Checks, jsonCheck{Pos: c.Pos.String(), Text: c.Text, OK: c.OK, Message: c.Message})
			}
			js.Steps = append(js.Steps, st)
		}
		rep.Scripts = append(rep.Scripts, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// --- JUnit --------------------------------------------------------------

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr,omitempty"`
	Line      int           `xml:"line,attr,omitempty"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"`
}

// junitText keeps multi-line output readable in the XML file.
type junitText struct {
	Text string `xml:",cdata"`
}

func seconds(micros int64) string { return fmt.Sprintf("%.6f", float64(micros)/1e6) }

// WriteJUnit writes the results as JUnit XML, one testsuite per script and
// one testcase per step, so that CI systems list every command with its
// expectations: a failed expectation is a <failure>, a step that could not
// complete an <error>, and the step's trace (masked) its system-out.
func WriteJUnit(w io.Writer, results []*Result) error {
	var all junitSuites
	var total int64
	for _, r := range results {
		suite := junitSuite{Name: r.File, Time: seconds(r.Duration.Microseconds())}
		total += r.Duration.Microseconds()
		for _, s := range r.Steps {
			if s.Kind == KindPrint && len(s.Checks) == 0 {
				continue // output, not a test
			}
			c := junitCase{
				Name:      fmt.Sprintf("%s %s", relPos(s.Pos, r.File), s.Title),
				Classname: strings.TrimSuffix(r.File, ".vcs"),
				File:      s.Pos.File,
				Line:      s.Pos.Line,
				Time:      seconds(s.Duration.Microseconds()),
				SystemOut: &junitText{Text: formatStep(s, r.File)},
			}
			var failed []string
			for _, ch := range s.Checks {
				c.SystemOut.Text += formatCheck(ch, r.File)
				if !ch.OK {
					failed = append(failed, strings.TrimSuffix(formatCheck(ch, r.File), "\n"))
				}
			}
			switch {
			case s.Err != "":
				c.Error = &junitProblem{Message: s.Err, Type: "error", Text: s.Pos.String() + ": " + s.Err}
				suite.Errors++
			case s.Kind == KindFail:
				c.Failure = &junitProblem{Message: s.Output, Type: "fail", Text: s.Pos.String() + ": fail: " + s.Output}
				suite.Failures++
			case len(failed) > 0:
				first := s.Checks[0]
				for _, ch := range s.Checks {
					if !ch.OK {
						first = ch
						break
					}
				}
				msg := first.Text
				if first.Message != "" {
					msg += ": " + first.Message
				}
				c.Failure = &junitProblem{Message: msg, Type: "expect", Text: strings.Join(failed, "\n")}
				suite.Failures++
			}
			suite.Cases = append(suite.Cases, c)
		}
		if r.Err != nil && !errors.Is(r.Err, ErrFailed) && !stepReported(r) {
			// An error outside any step (a parse error reported late, an
			// interrupted run) still shows as a failed case.
			suite.Cases = append(suite.Cases, junitCase{Name: "script", Classname: strings.TrimSuffix(r.File, ".vcs"),
				Time: seconds(0), Error: &junitProblem{Message: oneLine(r.Err.Error()), Type: "error", Text: r.Err.Error()}})
			suite.Errors++
		}
		suite.Tests = len(suite.Cases)
		all.Tests += suite.Tests
		all.Failures += suite.Failures
		all.Errors += suite.Errors
		all.Suites = append(all.Suites, suite)
	}
	all.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// stepReported reports whether r's error is already shown by a step.
func stepReported(r *Result) bool {
	for _, s := range r.Steps {
		if s.Err != "" {
			return true
		}
	}
	return false
}
