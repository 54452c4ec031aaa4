package keystore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// Sealer encrypts small secrets (keys, seeds) for storage and decrypts
// them. The label names what the secret is and where it belongs —
// "tmk/VCTERM01", "wk/VCTERM01", "seed/42" (docs/keys.md §1) — and is
// authenticated: a blob sealed under one label does not open under
// another, so a database row cannot be copied onto another terminal's.
type Sealer interface {
	Seal(label string, plain []byte) ([]byte, error)
	// Open fails with an error wrapping ErrUnseal for a wrong label, a
	// wrong KEK, or a damaged or truncated blob.
	Open(label string, sealed []byte) ([]byte, error)
}

// ErrUnseal reports a blob that does not open: sealed under another label
// or another KEK, or altered.
var ErrUnseal = errors.New("keystore: cannot unseal")

// Blob layout, version 1 (docs/keys.md §3):
//
//	01 || KEK KCV (3) || nonce (12) || AES-256-GCM ciphertext || tag (16)
//
// The additional data is the 4-byte header followed by the label, so the
// version and KEK identifier are authenticated too. The GCM key is not
// the KEK itself but HKDF-SHA256(KEK, info "valuechip keystore seal v1"),
// keeping the KEK's KCV (an AES encryption under the KEK) independent of
// the sealing key.
const (
	blobV1     byte = 0x01
	headerLen       = 1 + 3
	nonceLen        = 12
	tagLen          = 16
	minBlobLen      = headerLen + nonceLen + tagLen
	sealInfoV1      = "valuechip keystore seal v1"
)

// gcmSealer seals under its first KEK and opens under any of them, the one
// named by the blob's KEK identifier (rotation, docs/keys.md §4).
type gcmSealer struct {
	keks []sealKey
}

type sealKey struct {
	kcv  [3]byte
	aead cipher.AEAD
}

// NewSealer returns the AES-256-GCM Sealer of kek. Blobs sealed under the
// previous KEKs still open (KEK rotation: reseal them under kek, then drop
// the old one).
func NewSealer(kek KEK, previous ...KEK) (Sealer, error) {
	s := &gcmSealer{}
	for i, k := range append([]KEK{kek}, previous...) {
		if !k.valid() {
			return nil, fmt.Errorf("%w: KEK %d is the zero KEK", ErrBadKEK, i)
		}
		key, err := hkdf.Key(sha256.New, k.k[:], nil, sealInfoV1, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadKEK, err)
		}
		b, err := aes.NewCipher(key)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadKEK, err)
		}
		aead, err := cipher.NewGCM(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadKEK, err)
		}
		s.keks = append(s.keks, sealKey{kcv: k.KCV(), aead: aead})
	}
	return s, nil
}

func additionalData(header []byte, label string) []byte {
	ad := make([]byte, 0, len(header)+len(label))
	ad = append(ad, header...)
	return append(ad, label...)
}

// Seal encrypts plain under label with a fresh random nonce. The label
// must not be empty.
func (s *gcmSealer) Seal(label string, plain []byte) ([]byte, error) {
	if label == "" {
		return nil, errors.New("keystore: seal: empty label")
	}
	k := s.keks[0]
	out := make([]byte, headerLen+nonceLen, minBlobLen+len(plain))
	out[0] = blobV1
	copy(out[1:headerLen], k.kcv[:])
	// Random 96-bit nonces: the NIST SP 800-38D §8.3 bound of 2^32
	// messages per key is far above the number of secrets a KEK seals.
	_, _ = rand.Read(out[headerLen:]) // crypto/rand.Read never fails (Go 1.24+)
	return k.aead.Seal(out, out[headerLen:], plain, additionalData(out[:headerLen], label)), nil
}

// Open decrypts a blob sealed under label.
func (s *gcmSealer) Open(label string, sealed []byte) ([]byte, error) {
	if len(sealed) < minBlobLen {
		return nil, fmt.Errorf("%w %q: blob of %d bytes, at least %d", ErrUnseal, label, len(sealed), minBlobLen)
	}
	if sealed[0] != blobV1 {
		return nil, fmt.Errorf("%w %q: unknown blob version %02X", ErrUnseal, label, sealed[0])
	}
	var id [3]byte
	copy(id[:], sealed[1:headerLen])
	matched := false
	for _, k := range s.keks {
		// KCVs are 24 bits: two KEKs may share one, so try every match.
		if k.kcv != id {
			continue
		}
		matched = true
		plain, err := k.aead.Open(nil, sealed[headerLen:headerLen+nonceLen], sealed[headerLen+nonceLen:], additionalData(sealed[:headerLen], label))
		if err == nil {
			return plain, nil
		}
	}
	if matched {
		return nil, fmt.Errorf("%w %q: wrong label, or the blob was altered", ErrUnseal, label)
	}
	return nil, fmt.Errorf("%w %q: sealed under the KEK with KCV %X, not %s", ErrUnseal, label, id, s.kekNames())
}

func (s *gcmSealer) kekNames() string {
	names := make([]string, len(s.keks))
	for i, k := range s.keks {
		names[i] = fmt.Sprintf("%X", k.kcv)
	}
	return strings.Join(names, " or ")
}

// String shows the KEK KCVs only.
func (s *gcmSealer) String() string { return "AES-256-GCM sealer, KEK KCV " + s.kekNames() }

// GoString masks the keys for %#v.
func (s *gcmSealer) GoString() string { return "keystore.Sealer(" + s.String() + ")" }

// Format masks the keys for every fmt verb.
func (s *gcmSealer) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(s.GoString()))
		return
	}
	_, _ = f.Write([]byte(s.String()))
}
