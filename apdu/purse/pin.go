package purse

import "fmt"

// PIN blocks (docs/purse.md §4.4): the EMV plaintext offline PIN block,
// 8 bytes: control nibble 2, PIN length N (4..12), N PIN digits, then F
// nibbles to the end: "1234" is 24 12 34 FF FF FF FF FF.

// Lengths of a PIN in digits.
const (
	MinPINLen = 4
	MaxPINLen = 12
)

// EncodePIN builds the PIN block of a PIN of 4 to 12 decimal digits.
func EncodePIN(pin string) ([]byte, error) {
	if len(pin) < MinPINLen || len(pin) > MaxPINLen {
		return nil, fmt.Errorf("%w: %d digits, want %d to %d", ErrBadPIN, len(pin), MinPINLen, MaxPINLen)
	}
	nibbles := make([]byte, 0, 2*PINBlockLen)
	nibbles = append(nibbles, 0x2, byte(len(pin)))
	for i := 0; i < len(pin); i++ {
		if pin[i] < '0' || pin[i] > '9' {
			return nil, fmt.Errorf("%w: not a decimal digit at position %d", ErrBadPIN, i+1)
		}
		nibbles = append(nibbles, pin[i]-'0')
	}
	for len(nibbles) < 2*PINBlockLen {
		nibbles = append(nibbles, 0xF)
	}
	b := make([]byte, PINBlockLen)
	for i := range b {
		b[i] = nibbles[2*i]<<4 | nibbles[2*i+1]
	}
	return b, nil
}

// CheckPINBlock validates a PIN block's format and returns the PIN
// length. The card calls it before touching the try counter, so a
// malformed block costs no try (6A80).
func CheckPINBlock(b []byte) (int, error) {
	if err := fixed("PIN block", b, PINBlockLen); err != nil {
		return 0, err
	}
	if b[0]>>4 != 0x2 {
		return 0, fmt.Errorf("%w: PIN block control nibble %X, want 2", ErrMalformed, b[0]>>4)
	}
	n := int(b[0] & 0x0F)
	if n < MinPINLen || n > MaxPINLen {
		return 0, fmt.Errorf("%w: PIN block length %d", ErrMalformed, n)
	}
	for i := 2; i < 2*PINBlockLen; i++ {
		v := b[i/2] >> 4
		if i%2 == 1 {
			v = b[i/2] & 0x0F
		}
		if i < 2+n && v > 9 {
			return 0, fmt.Errorf("%w: PIN block digit %d is %X", ErrMalformed, i-1, v)
		}
		if i >= 2+n && v != 0xF {
			return 0, fmt.Errorf("%w: PIN block filler nibble %d is %X", ErrMalformed, i+1, v)
		}
	}
	return n, nil
}
