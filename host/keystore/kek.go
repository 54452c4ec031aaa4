package keystore

import (
	"bytes"
	"crypto/aes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/valuechip/valuechip/internal/secretfile"
)

// EnvKEK is the environment variable LoadKEK reads when no file is given:
// the KEK as 64 hex digits.
const EnvKEK = "VALUECHIP_KEK"

// KEKLen is the length of a KEK: an AES-256 key.
const KEKLen = 32

// Errors. Match with errors.Is.
var (
	// ErrNoKEK: neither a KEK file nor $VALUECHIP_KEK was given.
	ErrNoKEK = errors.New("keystore: no key-encryption key: give a KEK file (--kek-file FILE) or set " + EnvKEK + " to 64 hex digits")
	// ErrBadKEK: the KEK is malformed (length, encoding, all zeros).
	ErrBadKEK = errors.New("keystore: bad key-encryption key")
	// ErrKEKPermissions: the KEK file is readable or writable by group or
	// others. Like ssh with private keys, the file is refused rather than
	// trusted: a KEK anyone on the machine could read protects nothing.
	ErrKEKPermissions = errors.New("keystore: KEK file permissions too open")
)

// KEK is a 256-bit key-encryption key. It never prints its bytes: fmt
// (every verb), log/slog and encoding.TextMarshaler show "KEK(kcv=1A2B3C)".
// The zero KEK is invalid; get one from LoadKEK, ParseKEK, NewKEK or
// GenerateKEK.
type KEK struct{ k *[KEKLen]byte }

// NewKEK makes a KEK from 32 raw bytes (copied).
func NewKEK(raw []byte) (KEK, error) {
	if len(raw) != KEKLen {
		return KEK{}, fmt.Errorf("%w: %d bytes, want %d (AES-256)", ErrBadKEK, len(raw), KEKLen)
	}
	var zero [KEKLen]byte
	if subtle.ConstantTimeCompare(raw, zero[:]) == 1 {
		// head -c 32 /dev/zero: a mistake, never a key.
		return KEK{}, fmt.Errorf("%w: all zeros", ErrBadKEK)
	}
	k := new([KEKLen]byte)
	copy(k[:], raw)
	return KEK{k: k}, nil
}

// GenerateKEK returns a fresh random KEK (tests, tools; operators make
// theirs with head -c 32 /dev/urandom, docs/keys.md §2).
func GenerateKEK() KEK {
	k := new([KEKLen]byte)
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails (Go 1.24+)
	return KEK{k: k}
}

// ParseKEK decodes a KEK file's content: 64 hex digits (whitespace and
// colons anywhere allowed, e.g. a trailing newline or xxd's line breaks)
// or exactly 32 raw bytes. Errors give lengths, never content.
func ParseKEK(b []byte) (KEK, error) {
	if len(b) == KEKLen && !isHexText(b) {
		if isPrintable(b) {
			// 32 random bytes are all printable with probability
			// (95/256)^32 ≈ 2^-46: this is a password, not a key.
			return KEK{}, fmt.Errorf("%w: 32 printable characters look like a passphrase, not a key; write 64 hex digits", ErrBadKEK)
		}
		return NewKEK(b)
	}
	return parseKEKHex(b, len(b))
}

// parseKEKHex decodes 64 hex digits, ignoring whitespace and colons. n is
// the input length errors report.
func parseKEKHex(b []byte, n int) (KEK, error) {
	clean := bytes.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\n', '\r', ':':
			return -1
		}
		return r
	}, b)
	if len(clean) == 0 {
		return KEK{}, fmt.Errorf("%w: empty", ErrBadKEK)
	}
	if !isHexText(clean) || len(clean)%2 != 0 {
		return KEK{}, fmt.Errorf("%w: neither %d hex digits nor %d raw bytes (%d bytes)", ErrBadKEK, 2*KEKLen, KEKLen, n)
	}
	raw := make([]byte, len(clean)/2)
	_, _ = hex.Decode(raw, clean) // checked by isHexText
	defer clear(raw)
	if len(raw) != KEKLen {
		return KEK{}, fmt.Errorf("%w: %d hex digits (%d bytes), want %d hex digits (AES-256)", ErrBadKEK, len(clean), len(raw), 2*KEKLen)
	}
	return NewKEK(raw)
}

func isPrintable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return true
}

func isHexText(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// LoadKEK reads the KEK from file when file is not empty, else from
// $VALUECHIP_KEK (hex), else fails with ErrNoKEK. A file readable or
// writable by group or others is refused (ErrKEKPermissions).
func LoadKEK(file string) (KEK, error) {
	if file != "" {
		return loadKEKFile(file)
	}
	if v := os.Getenv(EnvKEK); v != "" {
		if strings.TrimSpace(v) == "" {
			return KEK{}, fmt.Errorf("%w: $%s is blank", ErrBadKEK, EnvKEK)
		}
		// Hex only: an environment variable holding 32 characters is a
		// password, never 32 raw key bytes.
		k, err := parseKEKHex([]byte(v), len(v))
		if err != nil {
			return KEK{}, fmt.Errorf("$%s: %w", EnvKEK, err)
		}
		return k, nil
	}
	return KEK{}, ErrNoKEK
}

func loadKEKFile(path string) (KEK, error) {
	// A KEK file is at most 64 hex digits with some whitespace; the limit
	// keeps a wrong path (a device, a huge file) harmless.
	const limit = 4096
	buf, err := secretfile.Read(path, limit)
	defer clear(buf)
	switch {
	case errors.Is(err, secretfile.ErrExposed):
		return KEK{}, fmt.Errorf("%w: KEK file %w", ErrKEKPermissions, err)
	case errors.Is(err, secretfile.ErrTooLarge):
		return KEK{}, fmt.Errorf("%w: KEK file %s is too large (a KEK is %d hex digits)", ErrBadKEK, path, 2*KEKLen)
	case err != nil:
		return KEK{}, fmt.Errorf("%w: KEK file: %w", ErrBadKEK, err)
	}
	k, err := ParseKEK(buf)
	if err != nil {
		return KEK{}, fmt.Errorf("KEK file %s: %w", path, err)
	}
	return k, nil
}

// valid reports whether k holds a key.
func (k KEK) valid() bool { return k.k != nil }

// KCV returns the KEK's key check value: the first three bytes of
// AES-256(KEK, 16 × '01'), as for every AES key of valuechip (GPC Amd D
// §7.2.2), so an operator can compare it with an HSM's. Zero for the
// zero KEK.
func (k KEK) KCV() [3]byte {
	var kcv [3]byte
	if !k.valid() {
		return kcv
	}
	b, _ := aes.NewCipher(k.k[:]) // 32 bytes: cannot fail
	blk := bytes.Repeat([]byte{0x01}, aes.BlockSize)
	b.Encrypt(blk, blk)
	copy(kcv[:], blk)
	return kcv
}

// Equal reports in constant time whether two KEKs are the same key.
func (k KEK) Equal(o KEK) bool {
	if !k.valid() || !o.valid() {
		return k.valid() == o.valid()
	}
	return subtle.ConstantTimeCompare(k.k[:], o.k[:]) == 1
}

// String shows the KCV only: "KEK(kcv=1A2B3C)".
func (k KEK) String() string {
	if !k.valid() {
		return "KEK(none)"
	}
	return fmt.Sprintf("KEK(kcv=%X)", k.KCV())
}

// GoString masks the key for %#v.
func (k KEK) GoString() string { return "keystore." + k.String() }

// Format masks the key for every fmt verb.
func (k KEK) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(k.GoString()))
		return
	}
	_, _ = f.Write([]byte(k.String()))
}

// LogValue masks the key in log/slog output.
func (k KEK) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText masks the key in JSON and similar output.
func (k KEK) MarshalText() ([]byte, error) { return []byte(k.String()), nil }
