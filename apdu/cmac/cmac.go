// Package cmac implements the AES-CMAC message authentication code of NIST
// SP 800-38B (May 2005, "The CMAC Mode for Authentication") for all three
// AES key sizes; for AES-128 it is the algorithm RFC 4493 specifies.
//
// SCP03 (GlobalPlatform Card Specification v2.2 Amendment D §4.1.3) uses
// CMAC for C-MAC, R-MAC and as the PRF of its key derivation function.
//
// Two APIs are offered: [MAC], an immutable keyed object with one-shot
// [MAC.Sum] and [MAC.Verify] over a message given in parts, and [New], a
// streaming [hash.Hash]. Tags are compared in constant time. Neither type
// prints key material through fmt.
package cmac

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
)

const (
	// Size is the length of a full CMAC tag in bytes (the AES block size).
	Size = aes.BlockSize
	// BlockSize is the block size of the underlying cipher.
	BlockSize = aes.BlockSize
	// MinTagSize is the shortest truncated tag Verify accepts. SP 800-38B
	// Appendix A recommends at least 64 bits for most applications; SCP03
	// uses exactly 64 (Amd D §6.2.4).
	MinTagSize = 8
)

// ErrKeySize reports a key that is not 16, 24 or 32 bytes long.
var ErrKeySize = errors.New("cmac: AES key must be 16, 24 or 32 bytes")

// rb is the constant R_128 of SP 800-38B §5.3 (RFC 4493 §2.3 "const_Rb").
const rb = 0x87

// MAC is an AES-CMAC keyed with one key: the cipher and the two subkeys K1
// and K2 are computed once. A MAC is immutable and safe for concurrent use.
type MAC struct {
	block  cipher.Block
	k1, k2 [Size]byte
}

// NewMAC prepares a CMAC for key, which must be an AES-128, AES-192 or
// AES-256 key (SP 800-38B §6.1 subkey generation happens here).
func NewMAC(key []byte) (*MAC, error) {
	switch len(key) {
	case 16, 24, 32:
	default:
		return nil, fmt.Errorf("%w, got %d", ErrKeySize, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("cmac: %w", err)
	}
	m := &MAC{block: b}
	// SP 800-38B §6.1 / RFC 4493 §2.3: L = CIPH_K(0^128); K1 = dbl(L);
	// K2 = dbl(K1).
	var l [Size]byte
	b.Encrypt(l[:], l[:])
	double(&m.k1, &l)
	double(&m.k2, &m.k1)
	clear(l[:])
	return m, nil
}

// double sets dst to the doubling of src in GF(2^128): a left shift by one
// bit, and if the bit shifted out was 1, XOR of the last byte with R_128
// (SP 800-38B §6.1, RFC 4493 §2.3). It runs in constant time.
func double(dst, src *[Size]byte) {
	msb := src[0] >> 7
	for i := 0; i < Size-1; i++ {
		dst[i] = src[i]<<1 | src[i+1]>>7
	}
	dst[Size-1] = src[Size-1]<<1 ^ (rb & (0 - msb))
}

// Sum returns the full 16-byte CMAC of the concatenation of parts
// (SP 800-38B §6.2). Passing the message in parts avoids copying it
// together; the result is the same as for the concatenated message.
func (m *MAC) Sum(parts ...[]byte) [Size]byte {
	d := digest{mac: m}
	for _, p := range parts {
		d.write(p)
	}
	return d.sum()
}

// Verify reports whether tag is a valid, possibly truncated, CMAC of the
// concatenation of parts: it compares tag with the first len(tag) bytes of
// the computed CMAC in constant time (SP 800-38B §6.3; a truncated tag is
// the most significant Tlen bits, §6.2, with Appendix A on choosing Tlen).
// Tags shorter than MinTagSize or longer than Size are rejected.
func (m *MAC) Verify(tag []byte, parts ...[]byte) bool {
	if len(tag) < MinTagSize || len(tag) > Size {
		return false
	}
	want := m.Sum(parts...)
	return subtle.ConstantTimeCompare(want[:len(tag)], tag) == 1
}

// New returns a streaming hash.Hash computing the CMAC over everything
// written to it. Sum appends the full 16-byte tag.
func (m *MAC) New() hash.Hash { return &digest{mac: m} }

// String masks the key: a MAC never prints its cipher or subkeys. The
// masking methods have value receivers so that a MAC value, not only a
// pointer, is masked too.
func (MAC) String() string { return "cmac.MAC(key hidden)" }

// GoString masks the key for %#v.
func (m MAC) GoString() string { return m.String() }

// Format masks the key for every fmt verb.
func (m MAC) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(m.String())) }

// New returns a streaming AES-CMAC hash.Hash keyed with key.
func New(key []byte) (hash.Hash, error) {
	m, err := NewMAC(key)
	if err != nil {
		return nil, err
	}
	return m.New(), nil
}

// Sum returns the full AES-CMAC of msg under key.
func Sum(key, msg []byte) ([Size]byte, error) {
	m, err := NewMAC(key)
	if err != nil {
		return [Size]byte{}, err
	}
	return m.Sum(msg), nil
}

// Verify reports whether mac is a valid, possibly truncated (MinTagSize to
// Size bytes), AES-CMAC of msg under key, comparing in constant time. An
// invalid key makes it return false.
func Verify(key, msg, mac []byte) bool {
	m, err := NewMAC(key)
	if err != nil {
		return false
	}
	return m.Verify(mac, msg)
}

// digest is the streaming state: x is the CBC-MAC chaining block, buf holds
// the last (possibly complete) block, which must not be processed until it
// is known whether more data follows (SP 800-38B §6.2 treats the final
// block specially).
type digest struct {
	mac *MAC
	x   [Size]byte
	buf [Size]byte
	n   int
}

func (d *digest) block(b []byte) {
	subtle.XORBytes(d.x[:], d.x[:], b)
	d.mac.block.Encrypt(d.x[:], d.x[:])
}

func (d *digest) write(p []byte) {
	for len(p) > 0 {
		if d.n == Size {
			d.block(d.buf[:])
			d.n = 0
		}
		if d.n == 0 {
			// Fast path: whole blocks straight from p, keeping the last
			// one back.
			for len(p) > Size {
				d.block(p[:Size])
				p = p[Size:]
			}
		}
		k := copy(d.buf[d.n:], p)
		d.n += k
		p = p[k:]
	}
}

// sum finishes a copy of the state (SP 800-38B §6.2, RFC 4493 §2.4): a
// complete last block is XORed with K1, an incomplete
// one (including the empty message) is padded with 10* and XORed with K2.
func (d *digest) sum() [Size]byte {
	var last [Size]byte
	if d.n == Size {
		subtle.XORBytes(last[:], d.buf[:], d.mac.k1[:])
	} else {
		copy(last[:], d.buf[:d.n])
		last[d.n] = 0x80
		subtle.XORBytes(last[:], last[:], d.mac.k2[:])
	}
	subtle.XORBytes(last[:], last[:], d.x[:])
	d.mac.block.Encrypt(last[:], last[:])
	return last
}

// Write implements io.Writer; it never fails.
func (d *digest) Write(p []byte) (int, error) {
	d.write(p)
	return len(p), nil
}

// Sum appends the CMAC of the data written so far to b without changing
// the state.
func (d *digest) Sum(b []byte) []byte {
	t := d.sum()
	return append(b, t[:]...)
}

// Reset clears the state, keeping the key.
func (d *digest) Reset() {
	clear(d.x[:])
	clear(d.buf[:])
	d.n = 0
}

func (d *digest) Size() int      { return Size }
func (d *digest) BlockSize() int { return BlockSize }

// String masks the key and the state.
func (d *digest) String() string { return "cmac.hash(key hidden)" }

// GoString masks the key and the state for %#v.
func (d *digest) GoString() string { return d.String() }

// Format masks the key and the state for every fmt verb.
func (d *digest) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(d.String())) }
