package scp03

import (
	"crypto/subtle"
	"fmt"

	"github.com/valuechip/valuechip/apdu/cmac"
)

// Derivation constants, the last byte of the KDF label (Amd D §4.1.5
// Table 4-1).
const (
	DeriveCardCryptogram byte = 0x00 // card authentication cryptogram
	DeriveHostCryptogram byte = 0x01 // host authentication cryptogram
	DeriveCardChallenge  byte = 0x02 // pseudo-random card challenge
	DeriveSENC           byte = 0x04 // session key S-ENC
	DeriveSMAC           byte = 0x06 // session key S-MAC
	DeriveSRMAC          byte = 0x07 // session key S-RMAC
)

// Lengths of the S8 mode (Amd D §6.2.2, §7.1.1.1 Table 7-2).
const (
	ChallengeLen  = 8  // host and card challenges
	CryptogramLen = 8  // card and host cryptograms
	MACLen        = 8  // C-MAC and R-MAC (Amd D §6.2.4)
	KDDLen        = 10 // key diversification data
	// cryptogramBits is "L" for challenges and cryptograms: '0040'.
	cryptogramBits = 64
	// MaxSequence is the largest 3-byte sequence counter (Amd D §6.2.2.1).
	MaxSequence = 0xFFFFFF
)

// DeriveData is the SCP03 data derivation scheme (Amd D §4.1.5): NIST SP
// 800-108 §5.1 KDF in counter mode with PRF = AES-CMAC (full 16-byte
// output), whose input for block i is
//
//	label: 11 × '00' || constant  (12 bytes)
//	separation indicator '00'      (1 byte)
//	L, output length in bits       (2 bytes, big-endian)
//	i, the counter from 1          (1 byte)
//	context                        (rest)
//
// SP 800-108 §5 allows this reordering of the fixed input fields. The
// result is the first bits/8 bytes of K(1) || K(2) || ...; bits must be a
// positive multiple of 8 of at most 255 blocks. Amd D uses L = 64 for
// cryptograms and challenges and the key length in bits for session keys
// (L = 192 and 256 need the second block, i = '02').
func DeriveData(key []byte, constant byte, context []byte, bits int) ([]byte, error) {
	if err := Key(key).Check(); err != nil {
		return nil, err
	}
	blocks := (bits + 127) / 128
	if bits <= 0 || bits%8 != 0 || blocks > 255 {
		return nil, fmt.Errorf("scp03: KDF output length %d bits not a positive multiple of 8 up to %d", bits, 255*128)
	}
	m, err := cmac.NewMAC(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	var fixed [16]byte
	fixed[11] = constant
	// fixed[12] is the '00' separation indicator.
	fixed[13], fixed[14] = byte(bits>>8), byte(bits)
	out := make([]byte, 0, blocks*cmac.Size)
	for i := 1; i <= blocks; i++ {
		fixed[15] = byte(i)
		k := m.Sum(fixed[:], context)
		out = append(out, k[:]...)
	}
	return out[:bits/8], nil
}

func checkChallenges(hostChallenge, cardChallenge []byte) error {
	if len(hostChallenge) != ChallengeLen || len(cardChallenge) != ChallengeLen {
		return fmt.Errorf("%w: challenges of %d and %d bytes, want %d", ErrMalformed, len(hostChallenge), len(cardChallenge), ChallengeLen)
	}
	return nil
}

// sessionContext is the KDF context of session keys and cryptograms: host
// challenge || card challenge (Amd D §6.2.1, §6.2.2.2, §6.2.2.3).
func sessionContext(hostChallenge, cardChallenge []byte) []byte {
	ctx := make([]byte, 0, 2*ChallengeLen)
	ctx = append(ctx, hostChallenge...)
	return append(ctx, cardChallenge...)
}

// DeriveSessionKeys derives the session keys of a secure channel (Amd D
// §6.2.1 Table 6-2): S-ENC from Key-ENC with constant '04', S-MAC and
// S-RMAC from Key-MAC with '06' and '07', each with L = key length in bits
// and context = host challenge || card challenge. DEK is a copy of the
// static Key-DEK.
func DeriveSessionKeys(static StaticKeys, hostChallenge, cardChallenge []byte) (SessionKeys, error) {
	if err := static.Check(); err != nil {
		return SessionKeys{}, err
	}
	if err := checkChallenges(hostChallenge, cardChallenge); err != nil {
		return SessionKeys{}, err
	}
	ctx := sessionContext(hostChallenge, cardChallenge)
	var sk SessionKeys
	var err error
	if sk.ENC, err = DeriveData(static.ENC, DeriveSENC, ctx, len(static.ENC)*8); err != nil {
		return SessionKeys{}, err
	}
	if sk.MAC, err = DeriveData(static.MAC, DeriveSMAC, ctx, len(static.MAC)*8); err != nil {
		return SessionKeys{}, err
	}
	if sk.RMAC, err = DeriveData(static.MAC, DeriveSRMAC, ctx, len(static.MAC)*8); err != nil {
		return SessionKeys{}, err
	}
	sk.DEK = append(Key(nil), static.DEK...)
	return sk, nil
}

func cryptogram(sMAC Key, constant byte, hostChallenge, cardChallenge []byte) ([CryptogramLen]byte, error) {
	var c [CryptogramLen]byte
	if err := checkChallenges(hostChallenge, cardChallenge); err != nil {
		return c, err
	}
	out, err := DeriveData(sMAC, constant, sessionContext(hostChallenge, cardChallenge), cryptogramBits)
	if err != nil {
		return c, err
	}
	copy(c[:], out)
	return c, nil
}

// CardCryptogram computes the card authentication cryptogram (Amd D
// §6.2.2.2): KDF(S-MAC, '00', L = 64, host challenge || card challenge).
func CardCryptogram(sMAC Key, hostChallenge, cardChallenge []byte) ([CryptogramLen]byte, error) {
	return cryptogram(sMAC, DeriveCardCryptogram, hostChallenge, cardChallenge)
}

// HostCryptogram computes the host authentication cryptogram (Amd D
// §6.2.2.3): KDF(S-MAC, '01', L = 64, host challenge || card challenge).
func HostCryptogram(sMAC Key, hostChallenge, cardChallenge []byte) ([CryptogramLen]byte, error) {
	return cryptogram(sMAC, DeriveHostCryptogram, hostChallenge, cardChallenge)
}

// PseudoRandomChallenge computes the card challenge of a Security Domain
// configured for pseudo-random challenges (Amd D §6.2.2.1):
// KDF(static Key-ENC, '02', L = 64, sequence counter (3 bytes) || AID),
// where the AID (5 to 16 bytes) is that of the application invoking the
// secure channel and sequence is the counter value after the increment
// that INITIALIZE UPDATE triggers.
func PseudoRandomChallenge(keyENC Key, sequence uint32, aid []byte) ([ChallengeLen]byte, error) {
	var c [ChallengeLen]byte
	if sequence > MaxSequence {
		return c, fmt.Errorf("%w: sequence counter %#x exceeds 3 bytes", ErrMalformed, sequence)
	}
	if len(aid) < 5 || len(aid) > 16 {
		return c, fmt.Errorf("%w: AID of %d bytes, want 5 to 16", ErrMalformed, len(aid))
	}
	ctx := append([]byte{byte(sequence >> 16), byte(sequence >> 8), byte(sequence)}, aid...)
	out, err := DeriveData(keyENC, DeriveCardChallenge, ctx, cryptogramBits)
	if err != nil {
		return c, err
	}
	copy(c[:], out)
	return c, nil
}

// equal8 compares two 8-byte values in constant time.
func equal8(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
