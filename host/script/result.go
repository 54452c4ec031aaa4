package script

import (
	"errors"
	"time"
)

// Step kinds.
const (
	KindSend   = "send"   // a command APDU line or send
	KindSelect = "select" // select AID
	KindReset  = "reset"
	KindTap    = "tap"
	KindWait   = "wait"
	KindSecure = "secure"
	KindPrint  = "print"
	KindFail   = "fail"
	KindExit   = "exit"
	KindCheck  = "expect" // an expect with no command before it
)

// Step is one thing a script did that a report shows: an exchange with
// the card (with the expectations that followed it), a reset, a tap, a
// secure channel opening, a print. Every byte string in it is already
// masked: secrets appear as "**" per byte.
type Step struct {
	Pos   Pos
	Kind  string
	Title string // "select F056435445535401", "80 10 00 00", "reset cold"
	// Exchange steps.
	Command  string // the command APDU in hex, masked
	Name     string // its instruction name when known ("SELECT")
	Data     string // the response data in hex, masked
	SW       uint16
	HasSW    bool
	TLV      string // the response data as a BER-TLV tree, when it is one
	Secure   bool   // sent through a secure channel
	Raw      bool   // sent without GET RESPONSE, 6Cxx re-send or chaining
	ATR      string // after reset, tap or wait
	Output   string // print text, fail message, secure channel description
	Checks   []*Check
	Err      string // why the step could not complete
	Duration time.Duration
}

// Check is one expectation and its outcome.
type Check struct {
	Pos     Pos
	Text    string // "expect sw 9000"
	OK      bool
	Message string // on failure, what was found instead
}

// Status summarises a step: "pass", "fail" (an expectation failed, or
// fail ran) or "error" (the step could not complete).
func (s *Step) Status() string {
	switch {
	case s.Err != "":
		return "error"
	case s.Kind == KindFail:
		return "fail"
	}
	for _, c := range s.Checks {
		if !c.OK {
			return "fail"
		}
	}
	return "pass"
}

// exchange reports whether the step talked to the card with a command.
func (s *Step) exchange() bool { return s.Kind == KindSend || s.Kind == KindSelect }

// Result is the outcome of running one script file.
type Result struct {
	File     string
	Steps    []*Step
	Duration time.Duration
	// Exited is set when the script ran exit.
	Exited bool
	// Err is why the script stopped early or failed: a failed expectation
	// (wraps ErrFailed), a run-time error, a transport error. nil when
	// every step passed.
	Err error
}

// ErrFailed marks a script whose expectations failed or that ran fail.
var ErrFailed = errors.New("script: failed")

// OK reports whether the script passed.
func (r *Result) OK() bool { return r.Err == nil }

// Counts returns the number of commands sent, checks made and checks
// failed.
func (r *Result) Counts() (commands, checks, failed int) {
	for _, s := range r.Steps {
		if s.exchange() {
			commands++
		}
		for _, c := range s.Checks {
			checks++
			if !c.OK {
				failed++
			}
		}
	}
	return commands, checks, failed
}

// Observer receives a script's progress as it runs, for live output.
type Observer interface {
	// Begin is called when a script file starts.
	Begin(file string)
	// StepDone is called once per step, when it completes.
	StepDone(s *Step)
	// CheckDone is called for each expectation, after the step it belongs
	// to (nil when none does).
	CheckDone(s *Step, c *Check)
	// End is called when the script file ends.
	End(r *Result)
}

// Observers fans events out to several observers.
type Observers []Observer

func (o Observers) Begin(file string) {
	for _, x := range o {
		x.Begin(file)
	}
}

func (o Observers) StepDone(s *Step) {
	for _, x := range o {
		x.StepDone(s)
	}
}

func (o Observers) CheckDone(s *Step, c *Check) {
	for _, x := range o {
		x.CheckDone(s, c)
	}
}

func (o Observers) End(r *Result) {
	for _, x := range o {
		x.End(r)
	}
}
