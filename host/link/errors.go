package link

import (
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/terminal"
)

// codeText is the meaning of each response code (docs/iso8583.md §9).
var codeText = map[string]string{
	iso8583.RCApproved:           "approved",
	iso8583.RCDoNotHonour:        "do not honour",
	iso8583.RCInvalidTransaction: "invalid transaction",
	iso8583.RCInvalidAmount:      "invalid amount",
	iso8583.RCInvalidCard:        "invalid card",
	iso8583.RCFormatError:        "format error",
	iso8583.RCInsufficientFunds:  "insufficient funds",
	iso8583.RCExpiredCard:        "expired card",
	iso8583.RCNotPermittedCard:   "not permitted to cardholder",
	iso8583.RCNotPermittedTerm:   "not permitted to terminal",
	iso8583.RCExceedsLimit:       "exceeds limit",
	iso8583.RCRestrictedCard:     "restricted card",
	iso8583.RCSecurityViolation:  "security violation",
	iso8583.RCIssuerUnavailable:  "issuer unavailable",
	iso8583.RCDuplicate:          "duplicate",
	iso8583.RCSystemMalfunction:  "system malfunction",
}

// CodeText returns the meaning of a response code.
func CodeText(code string) string {
	if s, ok := codeText[code]; ok {
		return s
	}
	return "unknown response code"
}

// transient reports response codes after which the same message may
// succeed later (§9: 91 retry later, 96 server fault, 63 after a failed
// re-sign-on); an advice answered so stays queued.
func transient(code string) bool {
	switch code {
	case iso8583.RCIssuerUnavailable, iso8583.RCSystemMalfunction, iso8583.RCSecurityViolation:
		return true
	}
	return false
}

// DeclineError is a response code other than approval. It matches
// ErrDeclined; a declined load (0210) also matches terminal.ErrLoadRefused
// and a completion advice declined with 12 (TC or record wrong)
// terminal.ErrBadProof.
type DeclineError struct {
	Op   string // "load", "balance", "completion advice", …
	MTI  string // the response MTI
	Code string // DE 39
}

func (e *DeclineError) Error() string {
	return fmt.Sprintf("link: %s declined by the money server: %s response code %s (%s)", e.Op, e.MTI, e.Code, CodeText(e.Code))
}

// Unwrap lets errors.Is match ErrDeclined and the terminal's sentinels.
func (e *DeclineError) Unwrap() []error {
	errs := []error{ErrDeclined}
	if e.MTI == iso8583.MTIFinancialResponse {
		errs = append(errs, terminal.ErrLoadRefused)
	}
	if e.MTI == iso8583.MTIFinancialAdvResp && e.Code == iso8583.RCInvalidTransaction {
		errs = append(errs, terminal.ErrBadProof)
	}
	return errs
}

// ResponseCode returns the response code carried by err, if any.
func ResponseCode(err error) (string, bool) {
	var d *DeclineError
	if errors.As(err, &d) {
		return d.Code, true
	}
	return "", false
}
