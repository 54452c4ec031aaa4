package provision

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	gpwire "github.com/valuechip/valuechip/apdu/gp"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
)

// Wire messages of the provisioning protocol (docs/provision.md §3). Every
// body is JSON (Content-Type application/json); APDUs travel as upper-case
// hex strings.

// ContentType is the media type of every request and response body.
const ContentType = "application/json"

// Paths served by Server.Handler.
const (
	PathRegister = "/v1/register"
	PathSession  = "/v1/session/" // + registration ID
)

// Limits of the protocol, enforced by both sides.
const (
	// MaxBody is the largest request or response body accepted.
	MaxBody = 1 << 20
	// MaxAPDUs is the most APDUs one message carries.
	MaxAPDUs = 16
	// MaxHolderLen is the longest holder account, in bytes.
	MaxHolderLen = 64
)

// Errors of the protocol. Server answers carry a code (ErrorBody.Code)
// that the device maps back to them, so errors.Is works on both sides.
var (
	// ErrMalformed: a message that does not parse or breaks a rule of §3.
	ErrMalformed = errors.New("provision: malformed message")
	// ErrReplay: a session message with the wrong sequence number or
	// exchange nonce (replayed, reordered or forged); the session is
	// aborted.
	ErrReplay = errors.New("provision: message out of sequence (replayed?)")
	// ErrUnknown: no such registration or session.
	ErrUnknown = errors.New("provision: unknown registration or session")
	// ErrUnauthorized: the registration token is missing or wrong.
	ErrUnauthorized = errors.New("provision: wrong registration token")
	// ErrBusy: the card already has an active session, or the server its
	// maximum number of sessions.
	ErrBusy = errors.New("provision: busy")
	// ErrAlreadyIssued: the card was already issued; it is not installed
	// twice.
	ErrAlreadyIssued = errors.New("provision: card already issued")
	// ErrAborted: the installation failed (the card refused a command, a
	// MAC did not verify, the relay timed out); the card can be
	// provisioned again.
	ErrAborted = errors.New("provision: installation aborted")
	// ErrWrongCard: the card behind the relay is not the registered one.
	ErrWrongCard = errors.New("provision: not the registered card")
)

// errorCodes maps the sentinel errors to the codes of ErrorBody.
var errorCodes = []struct {
	code string
	err  error
}{
	{"malformed", ErrMalformed},
	{"replay", ErrReplay},
	{"unknown", ErrUnknown},
	{"unauthorized", ErrUnauthorized},
	{"busy", ErrBusy},
	{"issued", ErrAlreadyIssued},
	{"aborted", ErrAborted},
	{"wrong_card", ErrWrongCard},
}

func codeOf(err error) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

func errOfCode(code string) error {
	for _, c := range errorCodes {
		if c.code == code {
			return c.err
		}
	}
	return nil
}

// RegisterRequest is the body of POST /v1/register: what the device read
// from the card's ISD with GET DATA (outside any secure channel), and the
// holder's account.
type RegisterRequest struct {
	// CPLC is GET DATA 9F7F, value only (42 bytes or more), hex.
	CPLC string `json:"cplc"`
	// KDD is GET DATA CF: the 10-byte key diversification data the card
	// also returns in INITIALIZE UPDATE, hex.
	KDD string `json:"kdd"`
	// CIN is GET DATA 45 (card image number), hex; optional.
	CIN string `json:"cin,omitempty"`
	// Holder is the holder's account, 1-64 printable ASCII characters.
	Holder string `json:"holder"`
}

// RegisterResponse answers a registration.
type RegisterResponse struct {
	// Registration is the ID of the registration: the session URL is
	// PathSession + Registration.
	Registration string `json:"registration"`
	// Token authenticates the device's session requests (Authorization:
	// Bearer). It is shown once; the server keeps only its hash.
	Token string `json:"token"`
	// CardID is the e-money ID assigned to the card: 16 decimal digits
	// (BCD, docs/iso8583.md §3.2), the last a Luhn check digit.
	CardID string `json:"card_id"`
	// TerminalID is the terminal ID assigned to the holder's device
	// (8 characters, ISO 8583 DE 41).
	TerminalID string `json:"terminal_id"`
}

// SessionRequest is the body of POST /v1/session/{registration}. The first
// request of a session has no Session and Seq 0; it may carry the PIN the
// holder chose. Every later request names the session, repeats the
// sequence number and nonce of the server's last answer, and carries the
// responses to its commands, in order.
type SessionRequest struct {
	Session   string   `json:"session,omitempty"`
	Seq       uint64   `json:"seq"`
	Nonce     string   `json:"nonce,omitempty"`
	Responses []string `json:"responses,omitempty"`
	// PIN, first request only: the cardholder PIN to personalise, 4-12
	// digits. Empty: the server chooses one and returns it at the end.
	PIN string `json:"pin,omitempty"`
	// Error, instead of Responses: the device could not reach the card;
	// the server aborts the session.
	Error string `json:"error,omitempty"`
}

// Session statuses in SessionResponse.
const (
	StatusRunning = "running"
	StatusIssued  = "issued"
	StatusFailed  = "failed"
)

// SessionResponse is the server's answer: the next commands for the card
// (Status running), or the outcome.
type SessionResponse struct {
	Session  string   `json:"session"`
	Seq      uint64   `json:"seq"`
	Nonce    string   `json:"nonce,omitempty"`
	Status   string   `json:"status"`
	Commands []string `json:"commands,omitempty"`
	// Outcome, when Status is issued.
	CardID     string `json:"card_id,omitempty"`
	TerminalID string `json:"terminal_id,omitempty"`
	// PIN is the PIN the server chose, when the device sent none.
	PIN string `json:"pin,omitempty"`
	// Error, when Status is failed.
	Error string `json:"error,omitempty"`
}

// ErrorBody is the body of every 4xx/5xx answer.
type ErrorBody struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// decodeJSON reads one JSON object from r: unknown fields, trailing data
// and bodies over MaxBody are errors wrapping ErrMalformed.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(r, MaxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if dec.InputOffset() > MaxBody {
		return fmt.Errorf("%w: body over %d bytes", ErrMalformed, MaxBody)
	}
	return nil
}

// registration is a validated RegisterRequest.
type registration struct {
	cplc   []byte
	kdd    [scp03.KDDLen]byte
	cin    []byte
	holder string
	serial [4]byte // CPLC IC serial number
}

// parseRegister decodes and validates a registration request.
func parseRegister(r io.Reader) (registration, error) {
	var req RegisterRequest
	if err := decodeJSON(r, &req); err != nil {
		return registration{}, err
	}
	return req.validate()
}

func (req RegisterRequest) validate() (registration, error) {
	var reg registration
	var err error
	if reg.cplc, err = hexField("cplc", req.CPLC, gpwire.CPLCLen, 255); err != nil {
		return reg, err
	}
	c, err := gpwire.ParseCPLC(reg.cplc)
	if err != nil {
		return reg, fmt.Errorf("%w: cplc: %w", ErrMalformed, err)
	}
	reg.serial = c.ICSerialNumber
	kdd, err := hexField("kdd", req.KDD, scp03.KDDLen, scp03.KDDLen)
	if err != nil {
		return reg, err
	}
	copy(reg.kdd[:], kdd)
	if req.CIN != "" {
		if reg.cin, err = hexField("cin", req.CIN, 1, 127); err != nil {
			return reg, err
		}
	}
	if err := checkHolder(req.Holder); err != nil {
		return reg, err
	}
	reg.holder = req.Holder
	return reg, nil
}

// checkHolder accepts 1-64 printable ASCII characters without leading or
// trailing space: an account reference, which host/registry keeps as the
// card's holder reference.
func checkHolder(h string) error {
	if h == "" || len(h) > MaxHolderLen || strings.TrimSpace(h) != h {
		return fmt.Errorf("%w: holder: 1 to %d printable ASCII characters without surrounding spaces", ErrMalformed, MaxHolderLen)
	}
	for i := 0; i < len(h); i++ {
		if h[i] < 0x20 || h[i] > 0x7E {
			return fmt.Errorf("%w: holder: 1 to %d printable ASCII characters", ErrMalformed, MaxHolderLen)
		}
	}
	return nil
}

func hexField(name, s string, minLen, maxLen int) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not hex", ErrMalformed, name)
	}
	if len(b) < minLen || len(b) > maxLen {
		return nil, fmt.Errorf("%w: %s of %d bytes, want %d to %d", ErrMalformed, name, len(b), minLen, maxLen)
	}
	return b, nil
}

// exchange is a validated SessionRequest.
type exchange struct {
	session   string
	seq       uint64
	nonce     []byte
	responses [][]byte
	pin       string
	devErr    string
}

// nonceLen is the length of the per-exchange nonce, bytes.
const nonceLen = 16

// parseSession decodes and validates a session request.
func parseSession(r io.Reader) (exchange, error) {
	var req SessionRequest
	if err := decodeJSON(r, &req); err != nil {
		return exchange{}, err
	}
	return req.validate()
}

func (req SessionRequest) validate() (exchange, error) {
	x := exchange{session: req.Session, seq: req.Seq, pin: req.PIN, devErr: req.Error}
	if len(req.Responses) > MaxAPDUs {
		return x, fmt.Errorf("%w: %d responses, at most %d", ErrMalformed, len(req.Responses), MaxAPDUs)
	}
	if len(req.Error) > 512 || !utf8.ValidString(req.Error) {
		return x, fmt.Errorf("%w: error text", ErrMalformed)
	}
	if req.Session == "" {
		// Start of a session.
		if req.Seq != 0 || req.Nonce != "" || len(req.Responses) > 0 || req.Error != "" {
			return x, fmt.Errorf("%w: the first request of a session carries only the PIN", ErrMalformed)
		}
		if req.PIN != "" {
			if _, err := wire.EncodePIN(req.PIN); err != nil {
				return x, fmt.Errorf("%w: pin: %w", ErrMalformed, err)
			}
		}
		return x, nil
	}
	if !validID(req.Session) {
		return x, fmt.Errorf("%w: session ID", ErrMalformed)
	}
	if req.PIN != "" {
		return x, fmt.Errorf("%w: the PIN goes in the first request only", ErrMalformed)
	}
	n, err := hexField("nonce", req.Nonce, nonceLen, nonceLen)
	if err != nil {
		return x, err
	}
	x.nonce = n
	if req.Error == "" && len(req.Responses) == 0 {
		return x, fmt.Errorf("%w: no responses", ErrMalformed)
	}
	for i, s := range req.Responses {
		b, err := hexField(fmt.Sprintf("response %d", i), s, 2, 65538)
		if err != nil {
			return x, err
		}
		x.responses = append(x.responses, b)
	}
	return x, nil
}

// idLen is the length of registration and session IDs: 16 random bytes
// as 32 lower-case hex digits.
const idLen = 32

func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseSessionResponse decodes and checks a server answer on the device.
func parseSessionResponse(r io.Reader) (SessionResponse, [][]byte, error) {
	var resp SessionResponse
	if err := decodeJSON(r, &resp); err != nil {
		return resp, nil, err
	}
	switch resp.Status {
	case StatusRunning:
		if !validID(resp.Session) || len(resp.Commands) == 0 || len(resp.Commands) > MaxAPDUs {
			return resp, nil, fmt.Errorf("%w: running session without a session ID or commands", ErrMalformed)
		}
		if _, err := hexField("nonce", resp.Nonce, nonceLen, nonceLen); err != nil {
			return resp, nil, err
		}
	case StatusIssued, StatusFailed:
		if len(resp.Commands) > 0 {
			return resp, nil, fmt.Errorf("%w: commands in a finished session", ErrMalformed)
		}
		return resp, nil, nil
	default:
		return resp, nil, fmt.Errorf("%w: status %q", ErrMalformed, resp.Status)
	}
	cmds := make([][]byte, len(resp.Commands))
	for i, s := range resp.Commands {
		b, err := hexField(fmt.Sprintf("command %d", i), s, 4, 65544)
		if err != nil {
			return resp, nil, err
		}
		cmds[i] = b
	}
	return resp, cmds, nil
}

// CardID numbering: docs/provision.md §4.

// NewCardID builds the CardID for sequence number seq under a decimal
// prefix: prefix || seq zero-padded || Luhn check digit, 16 digits packed
// as BCD. It fails when seq does not fit.
func NewCardID(prefix string, seq uint64) (wire.CardID, error) {
	var id wire.CardID
	for _, c := range prefix {
		if c < '0' || c > '9' {
			return id, fmt.Errorf("provision: card ID prefix %q is not decimal", prefix)
		}
	}
	width := 2*wire.CardIDLen - 1 - len(prefix)
	if width < 1 {
		return id, fmt.Errorf("provision: card ID prefix %q leaves no room for a number", prefix)
	}
	body := fmt.Sprintf("%s%0*d", prefix, width, seq)
	if len(body) != 2*wire.CardIDLen-1 {
		return id, fmt.Errorf("provision: card number %d does not fit %d digits after prefix %q", seq, width, prefix)
	}
	digits := body + string(rune('0'+luhn(body)))
	for i := range id {
		id[i] = (digits[2*i]-'0')<<4 | (digits[2*i+1] - '0')
	}
	return id, nil
}

// luhn returns the check digit to append to the decimal string s (ISO/IEC
// 7812-1 Annex B).
func luhn(s string) int {
	sum := 0
	double := true
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10
}

// ValidCardID reports whether id is 16 BCD digits with a valid Luhn check
// digit.
func ValidCardID(id wire.CardID) bool {
	s := strings.ToUpper(hex.EncodeToString(id[:]))
	for i := 0; i < len(s); i++ {
		if s[i] > '9' {
			return false
		}
	}
	return luhn(s[:len(s)-1]) == int(s[len(s)-1]-'0')
}
