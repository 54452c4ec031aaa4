package scp03

import (
	"crypto/aes"
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// Key is an AES key (16, 24 or 32 bytes). It never prints its bytes: fmt
// (every verb, including %x and %#v), log/slog and encoding.TextMarshaler
// render it as "AES-128 key KCV 504A77". Use []byte(k) deliberately to get
// at the bytes.
type Key []byte

func validKeyLen(n int) bool { return n == 16 || n == 24 || n == 32 }

// Check returns an error wrapping ErrBadKey unless k is an AES key.
func (k Key) Check() error {
	if !validKeyLen(len(k)) {
		return fmt.Errorf("%w: %d bytes, want 16, 24 or 32", ErrBadKey, len(k))
	}
	return nil
}

// KCV returns the key check value of an AES key: the three most
// significant bytes of AES(key, 16 × '01') (Amd D §7.2.2).
func KCV(key []byte) ([3]byte, error) {
	var kcv [3]byte
	if err := Key(key).Check(); err != nil {
		return kcv, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return kcv, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	var blk [aes.BlockSize]byte
	for i := range blk {
		blk[i] = 0x01
	}
	b.Encrypt(blk[:], blk[:])
	copy(kcv[:], blk[:3])
	return kcv, nil
}

// KCV returns the key check value (Amd D §7.2.2).
func (k Key) KCV() ([3]byte, error) { return KCV(k) }

// Equal reports in constant time whether two keys are identical.
func (k Key) Equal(o Key) bool { return subtle.ConstantTimeCompare(k, o) == 1 }

// String describes the key without revealing it: "AES-256 key KCV
// 1A2B3C".
func (k Key) String() string {
	if len(k) == 0 {
		return "no key"
	}
	kcv, err := KCV(k)
	if err != nil {
		return fmt.Sprintf("invalid key (%d bytes)", len(k))
	}
	return fmt.Sprintf("AES-%d key KCV %X", len(k)*8, kcv)
}

// GoString masks the key for %#v.
func (k Key) GoString() string { return "scp03.Key(" + k.String() + ")" }

// Format masks the key for every fmt verb.
func (k Key) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(k.GoString()))
		return
	}
	_, _ = f.Write([]byte(k.String()))
}

// LogValue masks the key in log/slog output.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText masks the key in encoding/json, encoding/xml and similar
// output; Key deliberately has no way to serialise its bytes.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Wipe overwrites the key bytes with zeros.
func (k Key) Wipe() { clear(k) }

// StaticKeys is a Security Domain's SCP03 key set (Amd D §6.1 Table 6-1):
// Key-ENC and Key-MAC, from which the session keys are derived, and
// Key-DEK for sensitive data. Printing it shows only KCVs.
type StaticKeys struct {
	ENC, MAC, DEK Key
}

// Check verifies that the three keys are AES keys of the same length
// (Amd D §6.1: "a complete key set ... having the same length").
func (s StaticKeys) Check() error {
	for _, k := range []struct {
		name string
		key  Key
	}{{"Key-ENC", s.ENC}, {"Key-MAC", s.MAC}, {"Key-DEK", s.DEK}} {
		if err := k.key.Check(); err != nil {
			return fmt.Errorf("%s: %w", k.name, err)
		}
	}
	if len(s.ENC) != len(s.MAC) || len(s.ENC) != len(s.DEK) {
		return fmt.Errorf("%w: key set mixes lengths %d/%d/%d", ErrBadKey, len(s.ENC), len(s.MAC), len(s.DEK))
	}
	return nil
}

// SessionKeys are the keys of one secure channel session (Amd D §6.2.1):
// S-ENC, S-MAC and S-RMAC, plus the static Key-DEK, which SCP03 uses
// as is for sensitive data (no session DEK, Amd D §6.2.8).
type SessionKeys struct {
	ENC, MAC, RMAC, DEK Key
}

// Wipe overwrites all four keys with zeros.
func (s SessionKeys) Wipe() {
	s.ENC.Wipe()
	s.MAC.Wipe()
	s.RMAC.Wipe()
	s.DEK.Wipe()
}

// writeMasked is the Format of every type holding keys: whatever the
// verb, only the masked description is printed. Containers format
// themselves rather than relying on fmt to reach their Key fields,
// because fmt bypasses methods when it reports a bad verb.
func writeMasked(f fmt.State, s string) { _, _ = f.Write([]byte(s)) }

// String lists the KCVs of the key set.
func (s StaticKeys) String() string {
	return fmt.Sprintf("{ENC: %s, MAC: %s, DEK: %s}", s.ENC, s.MAC, s.DEK)
}

// Format masks the keys for every fmt verb.
func (s StaticKeys) Format(f fmt.State, _ rune) { writeMasked(f, s.String()) }

// LogValue masks the keys in log/slog output.
func (s StaticKeys) LogValue() slog.Value { return slog.StringValue(s.String()) }

// String lists the KCVs of the session keys.
func (s SessionKeys) String() string {
	return fmt.Sprintf("{S-ENC: %s, S-MAC: %s, S-RMAC: %s, DEK: %s}", s.ENC, s.MAC, s.RMAC, s.DEK)
}

// Format masks the keys for every fmt verb.
func (s SessionKeys) Format(f fmt.State, _ rune) { writeMasked(f, s.String()) }

// LogValue masks the keys in log/slog output.
func (s SessionKeys) LogValue() slog.Value { return slog.StringValue(s.String()) }
