package iso8583

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/moov-io/iso8583"
)

// Sentinel errors. The server maps ErrMalformed to response code 30 (format
// error) and ErrMAC and ErrTxnNumber to 63 (security violation).
var (
	ErrMalformed = errors.New("iso8583: malformed message")
	ErrMAC       = errors.New("iso8583: MAC verification failed")
	ErrNoMAC     = errors.New("iso8583: message carries no MAC")
	ErrOversize  = errors.New("iso8583: frame exceeds the maximum length")
	ErrBadKey    = errors.New("iso8583: invalid key")
)

// NetworkManagement is 0800/0810: sign-on (DE 70 001), sign-off (002) and
// echo (301), docs/iso8583.md §2.1. The 0810 of a sign-on carries the key
// block in DE 48 (SignOnKeys).
type NetworkManagement struct {
	MTI          string `iso8583:"0"`
	Transmission string `iso8583:"7"`
	STAN         string `iso8583:"11"`
	ResponseCode string `iso8583:"39"`
	TerminalID   string `iso8583:"41"`
	KeyData      []byte `iso8583:"48"`
	NetworkCode  string `iso8583:"70"`
}

// Transaction holds the fields shared by the card transactions 0100/0110,
// 0200/0210 and 0220/0221/0230 (docs/iso8583.md §2.2–2.4). Requests carry
// DE 2, 3, 4 (not 0100), 7, 11, 22, 41, 42, 49, 55 and 62; responses echo
// DE 2, 3, 4, 7, 11, 41, 42, 49 and add DE 38, 39, 54 and 55.
type Transaction struct {
	MTI               string `iso8583:"0"`
	PAN               string `iso8583:"2"`
	ProcessingCode    string `iso8583:"3"`
	Amount            int64  `iso8583:"4"`
	Transmission      string `iso8583:"7"`
	STAN              string `iso8583:"11"`
	POSEntryMode      string `iso8583:"22"`
	RRN               string `iso8583:"37"`
	AuthID            string `iso8583:"38"`
	ResponseCode      string `iso8583:"39"`
	TerminalID        string `iso8583:"41"`
	MerchantID        string `iso8583:"42"`
	Currency          string `iso8583:"49"`
	AdditionalAmounts string `iso8583:"54"`
	ICC               []byte `iso8583:"55"`
	TxnNumber         []byte `iso8583:"62"`
}

// BalanceInquiry is 0100/0110 with processing code 300000.
type BalanceInquiry Transaction

// Load is 0200/0210, the online load, with processing code 220000.
type Load Transaction

// Advice is 0220/0221/0230: load completion (220000) or offline debit
// (000000).
type Advice Transaction

// Reversal is 0400/0410 and 0420/0421/0430 (docs/iso8583.md §2.5); DE 90
// identifies the original request.
type Reversal struct {
	MTI            string `iso8583:"0"`
	PAN            string `iso8583:"2"`
	ProcessingCode string `iso8583:"3"`
	Amount         int64  `iso8583:"4"`
	Transmission   string `iso8583:"7"`
	STAN           string `iso8583:"11"`
	ResponseCode   string `iso8583:"39"`
	TerminalID     string `iso8583:"41"`
	MerchantID     string `iso8583:"42"`
	Currency       string `iso8583:"49"`
	ICC            []byte `iso8583:"55"`
	TxnNumber      []byte `iso8583:"62"`
	OriginalData   string `iso8583:"90"`
}

// Reconciliation is 0500/0510, the batch totals of one terminal
// (docs/iso8583.md §2.6). Counts are n 10 and amounts n 16, zero filled;
// NetSettlement is C or D followed by n 16.
type Reconciliation struct {
	MTI             string `iso8583:"0"`
	Transmission    string `iso8583:"7"`
	STAN            string `iso8583:"11"`
	ResponseCode    string `iso8583:"39"`
	TerminalID      string `iso8583:"41"`
	MerchantID      string `iso8583:"42"`
	Currency        string `iso8583:"49"`
	TxnNumber       []byte `iso8583:"62"`
	SettlementCode  string `iso8583:"66"`
	CreditsCount    string `iso8583:"74"`
	CreditRevCount  string `iso8583:"75"`
	DebitsCount     string `iso8583:"76"`
	DebitRevCount   string `iso8583:"77"`
	CreditsAmount   string `iso8583:"86"`
	CreditRevAmount string `iso8583:"87"`
	DebitsAmount    string `iso8583:"88"`
	DebitRevAmount  string `iso8583:"89"`
	NetSettlement   string `iso8583:"97"`
}

// Marshal builds a message of the profile from one of the message structs.
func Marshal(v any) (*iso8583.Message, error) {
	msg := NewMessage()
	if err := msg.Marshal(v); err != nil {
		return nil, fmt.Errorf("iso8583: marshal %T: %w", v, err)
	}
	return msg, nil
}

// Unmarshal copies the fields of msg into one of the message structs.
func Unmarshal(msg *iso8583.Message, v any) error {
	if err := msg.Unmarshal(v); err != nil {
		return fmt.Errorf("%w: unmarshal into %T: %v", ErrMalformed, v, err)
	}
	return nil
}

// Pack packs msg. With a key it also sets the MAC (SetMAC); without one it
// removes any MAC field, for the messages of docs/iso8583.md §4 that carry
// none.
func Pack(msg *iso8583.Message, key Key) ([]byte, error) {
	if key != nil {
		return SetMAC(msg, key)
	}
	msg.UnsetField(DEMAC)
	msg.UnsetField(DEMAC2)
	b, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("iso8583: pack: %w", err)
	}
	return b, nil
}

// Unpack parses raw strictly: the MTI must be four digits of version 0
// (1987), numeric fields must hold digits only, a MAC field must be the last
// bit of the last bitmap (DE 64 without, DE 128 with a secondary bitmap), and
// the message must be canonical — packing it again gives raw back, which
// also refuses trailing bytes and a secondary bitmap announced but empty.
// Every failure wraps ErrMalformed; moov panics on hostile input are caught
// and reported the same way.
func Unpack(raw []byte) (msg *iso8583.Message, err error) {
	msg = NewMessage()
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	if err := msg.Unpack(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	mti, _ := msg.GetMTI()
	if len(mti) != 4 || mti[0] != '0' || !digits(mti) {
		return nil, fmt.Errorf("%w: MTI %q", ErrMalformed, mti)
	}
	fields := msg.GetFields()
	for _, id := range numericFields {
		if f, ok := fields[id]; ok {
			s, err := f.String()
			if err != nil || !digits(s) {
				return nil, fmt.Errorf("%w: DE %d is not numeric", ErrMalformed, id)
			}
		}
	}
	_, has64 := fields[DEMAC]
	_, has128 := fields[DEMAC2]
	secondary := msg.Bitmap().IsSet(1)
	if has64 && (secondary || has128) {
		return nil, fmt.Errorf("%w: DE 64 in a message with a secondary bitmap", ErrMalformed)
	}
	again, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("%w: repack: %v", ErrMalformed, err)
	}
	if !bytes.Equal(again, raw) {
		return nil, fmt.Errorf("%w: not canonical or trailing data (%d bytes parsed as %d)",
			ErrMalformed, len(raw), len(again))
	}
	return msg, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// IsResponse reports whether mti is a response (function digit 1, 3, 5 or 7,
// protocols.md §5.1).
func IsResponse(mti string) bool {
	if len(mti) != 4 {
		return false
	}
	switch mti[2] {
	case '1', '3', '5', '7':
		return true
	}
	return false
}

// ResponseMTI returns the response MTI of a request or advice MTI (0200 →
// 0210, 0221 → 0230).
func ResponseMTI(mti string) (string, error) {
	if len(mti) != 4 || !digits(mti) || IsResponse(mti) {
		return "", fmt.Errorf("%w: no response to MTI %q", ErrMalformed, mti)
	}
	b := []byte(mti)
	switch b[2] {
	case '0':
		b[2] = '1'
	case '2':
		b[2] = '3'
	default:
		return "", fmt.Errorf("%w: no response to MTI %q", ErrMalformed, mti)
	}
	b[3] = '0'
	return string(b), nil
}

// ResponseCode maps an error of this package to the DE 39 the server answers
// with (docs/iso8583.md §9): nil → 00, ErrMalformed → 30, a MAC or
// transaction-number failure → 63, anything else → 96.
func ResponseCode(err error) string {
	switch {
	case err == nil:
		return RCApproved
	case errors.Is(err, ErrMalformed):
		return RCFormatError
	case errors.Is(err, ErrMAC), errors.Is(err, ErrNoMAC),
		errors.Is(err, ErrTxnNumber), errors.Is(err, ErrSeedExpired):
		return RCSecurityViolation
	}
	return RCSystemMalfunction
}
