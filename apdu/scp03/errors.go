package scp03

import (
	"errors"

	"github.com/valuechip/valuechip/apdu"
)

// Errors. Functions return them wrapped with %w and context; match them
// with errors.Is. A failure that aborts a secure channel session (Amd D
// §5.6) matches ErrSecurity as well as its specific cause.
var (
	// ErrBadKey: a key is not an AES-128/192/256 key, or the keys of a
	// set differ in length (Amd D §6.1).
	ErrBadKey = errors.New("scp03: invalid key")
	// ErrBadMAC: a C-MAC or R-MAC does not verify (Amd D §6.2.4, §6.2.5).
	ErrBadMAC = errors.New("scp03: MAC verification failed")
	// ErrBadCryptogram: a card or host cryptogram does not verify
	// (Amd D §6.2.2.2, §6.2.2.3).
	ErrBadCryptogram = errors.New("scp03: cryptogram verification failed")
	// ErrBadChallenge: a pseudo-random card challenge is not the one the
	// sequence counter and AID predict (Amd D §6.2.2.1).
	ErrBadChallenge = errors.New("scp03: unexpected pseudo-random card challenge")
	// ErrBadPadding: decrypted data is not padded per Amd D §4.1.4, or the
	// ciphertext is not a whole number of blocks.
	ErrBadPadding = errors.New("scp03: bad padding")
	// ErrSecurity is the "security error" of Amd D §5.6: the command is
	// rejected and the session aborted.
	ErrSecurity = errors.New("scp03: security error")
	// ErrSessionAborted: the secure channel session was aborted earlier in
	// the same application session (Amd D §5.6).
	ErrSessionAborted = errors.New("scp03: secure channel session aborted")
	// ErrAuthenticationFailed: EXTERNAL AUTHENTICATE, or the host's check
	// of the card, failed (GPCS D.4.2: '6300').
	ErrAuthenticationFailed = errors.New("scp03: authentication failed")
	// ErrState: a call out of order (EXTERNAL AUTHENTICATE without
	// INITIALIZE UPDATE, Wrap before the handshake, ...).
	ErrState = errors.New("scp03: command out of sequence")
	// ErrMalformed: a message does not have the Amd D layout.
	ErrMalformed = errors.New("scp03: malformed message")
	// ErrWrongLength: a command data field has the wrong length.
	ErrWrongLength = errors.New("scp03: wrong length")
	// ErrBadParameter: P1/P2 of a handshake command are wrong.
	ErrBadParameter = errors.New("scp03: incorrect P1-P2")
	// ErrBadLevel: a security level that Amd D Table 7-3 does not define,
	// or that the card's "i" parameter does not support (Amd D Table 5-1).
	ErrBadLevel = errors.New("scp03: invalid or unsupported security level")
	// ErrUnsupported: a protocol feature this package does not implement
	// (another SCP, S16 mode, RFU bits of "i").
	ErrUnsupported = errors.New("scp03: unsupported")
	// ErrKeyNotFound: no key set with the requested version (Amd D
	// §7.1.1: "referenced data not found").
	ErrKeyNotFound = errors.New("scp03: key set not found")
	// ErrSequenceExhausted: the sequence counter reached FFFFFF (Amd D
	// §6.2.2.1: "conditions of use not satisfied").
	ErrSequenceExhausted = errors.New("scp03: sequence counter exhausted")
)

// StatusFor returns the status word a card answers for err: 9000 for nil,
// the GP/ISO status named by Amd D or GPCS for the errors of this package,
// and 6F00 for anything else.
func StatusFor(err error) apdu.SW {
	switch {
	case err == nil:
		return apdu.SWNoError
	case errors.Is(err, ErrAuthenticationFailed):
		return apdu.ErrNVMChanged // '6300', GPCS D.4.2
	case errors.Is(err, ErrSecurity), errors.Is(err, ErrSessionAborted), errors.Is(err, ErrBadMAC):
		return apdu.ErrSecurityStatus // '6982', Amd D §5.6 security error
	case errors.Is(err, ErrKeyNotFound):
		return apdu.ErrRefDataNotFound // '6A88', Amd D §7.1.1
	case errors.Is(err, ErrSequenceExhausted), errors.Is(err, ErrState):
		return apdu.ErrConditionsNotMet // '6985', Amd D §6.2.2.1
	case errors.Is(err, ErrWrongLength), errors.Is(err, apdu.ErrBadLength), errors.Is(err, apdu.ErrCommandTooShort):
		return apdu.ErrWrongLength // '6700'
	case errors.Is(err, ErrBadParameter), errors.Is(err, ErrBadLevel):
		return apdu.ErrIncorrectP1P2 // '6A86'
	case errors.Is(err, ErrMalformed):
		return apdu.ErrWrongData // '6A80'
	}
	return apdu.ErrUnknown
}
