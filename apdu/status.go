package apdu

import "fmt"

// SW is a status word (SW1 SW2, ISO/IEC 7816-4 §5.6). It implements error so
// that a card's answer can be returned and matched with errors.Is:
//
//	if errors.Is(err, apdu.ErrFileNotFound) { ... }
//
// Status words whose SW2 is a parameter (61xx, 6Cxx, 63Cx) also match their
// family sentinel: errors.Is(SW(0x63C2), ErrVerifyFailed) is true.
type SW uint16

// Named status words (ISO/IEC 7816-4 §5.6 Tables 5-6; GlobalPlatform Card
// Specification v2.3.1 §11.1.3 where marked GP).
const (
	SWNoError SW = 0x9000

	// Family sentinels for parameterised status words.
	ErrBytesRemaining SW = 0x6100 // 61xx: xx more bytes via GET RESPONSE (00 = 256)
	ErrWrongLe        SW = 0x6C00 // 6Cxx: wrong Le, xx is the exact length
	ErrVerifyFailed   SW = 0x63C0 // 63Cx: verification failed, x tries left

	ErrWarning             SW = 0x6200
	ErrDataCorrupted       SW = 0x6281
	ErrEndOfFile           SW = 0x6282
	ErrSelectedDeactivated SW = 0x6283
	ErrNVMChanged          SW = 0x6300 // GP: host cryptogram verification failed
	ErrMoreData            SW = 0x6310 // GP GET STATUS: more data available
	ErrExecution           SW = 0x6400
	ErrMemoryFailure       SW = 0x6581
	ErrWrongLength         SW = 0x6700
	ErrChannelNotSupported SW = 0x6881
	ErrSMNotSupported      SW = 0x6882
	ErrLastCommandExpected SW = 0x6883
	ErrChainingUnsupported SW = 0x6884
	ErrCommandIncompatible SW = 0x6981
	ErrSecurityStatus      SW = 0x6982
	ErrAuthBlocked         SW = 0x6983
	ErrReferenceUnusable   SW = 0x6984
	ErrConditionsNotMet    SW = 0x6985
	ErrCommandNotAllowed   SW = 0x6986
	ErrSMObjectsMissing    SW = 0x6987
	ErrSMObjectsIncorrect  SW = 0x6988
	ErrAppletSelectFailed  SW = 0x6999
	ErrWrongData           SW = 0x6A80
	ErrFuncNotSupported    SW = 0x6A81
	ErrFileNotFound        SW = 0x6A82
	ErrRecordNotFound      SW = 0x6A83
	ErrNotEnoughMemory     SW = 0x6A84
	ErrIncorrectP1P2       SW = 0x6A86
	ErrRefDataNotFound     SW = 0x6A88
	ErrWrongP1P2           SW = 0x6B00
	ErrINSNotSupported     SW = 0x6D00
	ErrCLANotSupported     SW = 0x6E00
	ErrUnknown             SW = 0x6F00
)

var swNames = map[SW]string{
	SWNoError:              "success",
	ErrBytesRemaining:      "bytes remaining",
	ErrWrongLe:             "wrong Le",
	ErrVerifyFailed:        "verification failed",
	ErrWarning:             "warning, memory unchanged",
	ErrDataCorrupted:       "part of returned data may be corrupted",
	ErrEndOfFile:           "end of file or record reached before Ne bytes",
	ErrSelectedDeactivated: "selected file or application deactivated (locked)",
	ErrNVMChanged:          "warning, memory changed (GP: authentication failed)",
	ErrMoreData:            "more data available",
	ErrExecution:           "execution error, memory unchanged",
	ErrMemoryFailure:       "memory failure",
	ErrWrongLength:         "wrong length",
	ErrChannelNotSupported: "logical channel not supported",
	ErrSMNotSupported:      "secure messaging not supported",
	ErrLastCommandExpected: "last command of the chain expected",
	ErrChainingUnsupported: "command chaining not supported",
	ErrCommandIncompatible: "command incompatible with file structure",
	ErrSecurityStatus:      "security status not satisfied",
	ErrAuthBlocked:         "authentication method blocked",
	ErrReferenceUnusable:   "reference data not usable",
	ErrConditionsNotMet:    "conditions of use not satisfied",
	ErrCommandNotAllowed:   "command not allowed",
	ErrSMObjectsMissing:    "expected secure messaging data objects missing",
	ErrSMObjectsIncorrect:  "secure messaging data objects incorrect",
	ErrAppletSelectFailed:  "applet selection failed",
	ErrWrongData:           "incorrect parameters in the data field",
	ErrFuncNotSupported:    "function not supported",
	ErrFileNotFound:        "file or application not found",
	ErrRecordNotFound:      "record not found",
	ErrNotEnoughMemory:     "not enough memory space",
	ErrIncorrectP1P2:       "incorrect parameters P1-P2",
	ErrRefDataNotFound:     "referenced data not found",
	ErrWrongP1P2:           "wrong parameters P1-P2",
	ErrINSNotSupported:     "instruction not supported",
	ErrCLANotSupported:     "class not supported",
	ErrUnknown:             "no precise diagnosis",
}

// NewSW builds a status word from its two bytes.
func NewSW(sw1, sw2 byte) SW { return SW(uint16(sw1)<<8 | uint16(sw2)) }

// SW1 returns the first byte.
func (s SW) SW1() byte { return byte(s >> 8) }

// SW2 returns the second byte.
func (s SW) SW2() byte { return byte(s) }

// OK reports whether the status word is 9000.
func (s SW) OK() bool { return s == SWNoError }

// Family returns the sentinel that a parameterised status word belongs to
// (61xx → ErrBytesRemaining, 6Cxx → ErrWrongLe, 63Cx → ErrVerifyFailed) and
// the status word itself otherwise.
func (s SW) Family() SW {
	switch {
	case s.SW1() == 0x61:
		return ErrBytesRemaining
	case s.SW1() == 0x6C:
		return ErrWrongLe
	case s&0xFFF0 == 0x63C0:
		return ErrVerifyFailed
	}
	return s
}

// BytesRemaining reports xx of 61xx as a count of bytes (00 means 256,
// ISO/IEC 7816-4 §5.3.4).
func (s SW) BytesRemaining() (int, bool) {
	if s.SW1() != 0x61 {
		return 0, false
	}
	if s.SW2() == 0 {
		return 256, true
	}
	return int(s.SW2()), true
}

// CorrectLength reports xx of 6Cxx: the exact Ne to re-send with (00 = 256).
func (s SW) CorrectLength() (int, bool) {
	if s.SW1() != 0x6C {
		return 0, false
	}
	if s.SW2() == 0 {
		return 256, true
	}
	return int(s.SW2()), true
}

// Retries reports x of 63Cx, the tries left after a failed verification.
func (s SW) Retries() (int, bool) {
	if s&0xFFF0 != 0x63C0 {
		return 0, false
	}
	return int(s & 0x0F), true
}

// IsWarning reports 62xx and 63xx (processing completed with a warning).
func (s SW) IsWarning() bool { return s.SW1() == 0x62 || s.SW1() == 0x63 }

// Name returns a short description of the status word, with the parameter
// of 61xx/6Cxx/63Cx spelt out, or "" when it is not a known one.
func (s SW) Name() string {
	if n, ok := s.BytesRemaining(); ok {
		return fmt.Sprintf("%d bytes remaining", n)
	}
	if n, ok := s.CorrectLength(); ok {
		return fmt.Sprintf("wrong Le, exact length %d", n)
	}
	if n, ok := s.Retries(); ok {
		return fmt.Sprintf("verification failed, %d tries left", n)
	}
	if n, ok := swNames[s]; ok {
		return n
	}
	switch s.SW1() {
	case 0x62:
		return "warning, memory unchanged"
	case 0x63:
		return "warning, memory changed"
	case 0x64:
		return "execution error, memory unchanged"
	case 0x65:
		return "execution error, memory changed"
	case 0x67:
		return "wrong length"
	case 0x68:
		return "function in CLA not supported"
	case 0x69:
		return "command not allowed"
	case 0x6A:
		return "wrong parameters P1-P2"
	}
	return ""
}

// String returns the hex form and, when known, the name: "6A82 (file or
// application not found)".
func (s SW) String() string {
	if n := s.Name(); n != "" {
		return fmt.Sprintf("%04X (%s)", uint16(s), n)
	}
	return fmt.Sprintf("%04X", uint16(s))
}

// Error implements error.
func (s SW) Error() string { return "card returned " + s.String() }

// Is lets a parameterised status word match its family sentinel, so
// errors.Is(SW(0x63C1), ErrVerifyFailed) holds.
func (s SW) Is(target error) bool {
	t, ok := target.(SW)
	if !ok {
		return false
	}
	return s == t || s.Family() == t
}

// Err returns nil for 9000 and the status word as an error otherwise.
func (s SW) Err() error {
	if s == SWNoError {
		return nil
	}
	return s
}
