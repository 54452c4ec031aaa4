package gp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/subtle"
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/scp03"
)

// Key types of PUT KEY key data fields (GPCS §11.1.8, key type coding).
const (
	KeyTypeAES       byte = 0x88
	KeyTypeECCPublic byte = 0xB0 // ECC public key: the uncompressed point 04 || X || Y
	KeyTypeECCParams byte = 0xF0 // ECC key parameters reference
	KeyTypeExtended  byte = 0xFF // extended key format (not handled)
)

// ECCParamsP256 is the key parameters reference this chip uses for
// NIST P-256 (secp256r1) in a 'F0' component.
const ECCParamsP256 byte = 0x00

// DAPKeyVersion and DAPKeyID are where this chip keeps the issuer's DAP
// verification key in a security domain (docs/loadfile.md): PUT KEY with
// new KVN '73' and key identifier '01'.
const (
	DAPKeyVersion byte = 0x73
	DAPKeyID      byte = 0x01
)

// PUT KEY parameter bits (GPCS §11.8.2.1-§11.8.2.2).
const (
	PutKeyMoreCommands byte = 0x80 // P1 b8
	PutKeyMultiple     byte = 0x80 // P2 b8: several keys, identifiers from P2 b7..b1 up
)

// KeyComponent is one key data field of PUT KEY (GPCS §11.8.2.3, Table
// 11-70): key type, key (or component) value with a BER length, and a key
// check value with a one-byte length. For AES (Amd D §7.2.1 Table 7-10)
// the value is the clear key length (one byte) followed by the key
// encrypted with Key-DEK; see EncryptAESKey and DecryptAES.
type KeyComponent struct {
	Type  byte
	Value []byte
	KCV   []byte
}

// PutKey is a PUT KEY command (GPCS §11.8, Amd D §7.2).
type PutKey struct {
	// ReplaceKVN is P1 b7..b1: the key version to replace, '00' to add a
	// new key set.
	ReplaceKVN byte
	// KeyID is P2 b7..b1: the identifier of the (first) key.
	KeyID byte
	// Multiple is P2 b8: the components are several keys with
	// consecutive identifiers (ENC '01', MAC '02', DEK '03' for SCP03),
	// rather than components of one key.
	Multiple bool
	// NewKVN is the first data byte: the version of the new keys.
	NewKVN     byte
	Components []KeyComponent
}

// Bytes encodes the data field: new KVN || key data fields.
func (p PutKey) Bytes() ([]byte, error) {
	out := []byte{p.NewKVN}
	for i, c := range p.Components {
		if len(c.Value) > 0xFFFF || len(c.KCV) > 0xFF {
			return nil, errorf(ErrTooLong, "PUT KEY component %d", i+1)
		}
		out = append(out, c.Type)
		out = appendBERLength(out, len(c.Value))
		out = append(out, c.Value...)
		out = append(out, byte(len(c.KCV)))
		out = append(out, c.KCV...)
	}
	return out, nil
}

// Command builds PUT KEY: CLA '80', INS 'D8', P1 ReplaceKVN, P2 KeyID (|
// '80' when Multiple), Le '00' (the response is KVN || KCVs).
func (p PutKey) Command() (apdu.Command, error) {
	data, err := p.Bytes()
	if err != nil {
		return apdu.Command{}, err
	}
	if len(data) > apdu.MaxShortNc {
		return apdu.Command{}, errorf(ErrTooLong, "PUT KEY data of %d bytes", len(data))
	}
	p2 := p.KeyID & 0x7F
	if p.Multiple {
		p2 |= PutKeyMultiple
	}
	return apdu.Command{CLA: CLA, INS: INSPutKey, P1: p.ReplaceKVN & 0x7F, P2: p2, Data: data, Ne: apdu.MaxShortNe}, nil
}

// ParsePutKey decodes a PUT KEY command's P1, P2 and data field. The
// extended key format ('FF') wraps ErrUnsupported; a KVN outside '01'-'7F'
// wraps ErrMalformed.
func ParsePutKey(p1, p2 byte, data []byte) (PutKey, error) {
	p := PutKey{ReplaceKVN: p1 & 0x7F, KeyID: p2 & 0x7F, Multiple: p2&PutKeyMultiple != 0}
	if len(data) < 1 {
		return PutKey{}, errorf(ErrMalformed, "PUT KEY without data")
	}
	p.NewKVN = data[0]
	if p.NewKVN == 0 || p.NewKVN > 0x7F {
		return PutKey{}, errorf(ErrMalformed, "new key version %02X outside 01-7F", p.NewKVN)
	}
	rest := data[1:]
	for len(rest) > 0 {
		var c KeyComponent
		c.Type = rest[0]
		if c.Type == KeyTypeExtended {
			return PutKey{}, errorf(ErrUnsupported, "extended key format")
		}
		v, r, err := readBERLV(rest[1:])
		if err != nil {
			return PutKey{}, errorf(ErrMalformed, "PUT KEY component %d: %w", len(p.Components)+1, err)
		}
		kcv, r, err := readLV(r)
		if err != nil {
			return PutKey{}, errorf(ErrMalformed, "PUT KEY component %d KCV: %w", len(p.Components)+1, err)
		}
		c.Value, c.KCV = v, kcv
		p.Components = append(p.Components, c)
		rest = r
	}
	if len(p.Components) == 0 {
		return PutKey{}, errorf(ErrMalformed, "PUT KEY without key data")
	}
	return p, nil
}

// EncryptAESKey builds the key data field of an AES key (Amd D §7.2.1
// Table 7-10, §6.2.8): type '88', value = clear key length || AES-CBC(dek,
// ICV zero, key), KCV = the 3-byte AES KCV of the key (Amd D §7.2.2). A
// 24-byte key is padded with 8 zero bytes before encryption (Amd D §6.2.8
// leaves the padding bytes arbitrary).
func EncryptAESKey(dek, key []byte) (KeyComponent, error) {
	if err := scp03.Key(key).Check(); err != nil {
		return KeyComponent{}, errorf(ErrBadKey, "key to send: %w", err)
	}
	kcv, err := scp03.KCV(key)
	if err != nil {
		return KeyComponent{}, errorf(ErrBadKey, "%w", err)
	}
	block, err := aes.NewCipher(dek)
	if err != nil {
		return KeyComponent{}, errorf(ErrBadKey, "DEK of %d bytes", len(dek))
	}
	padded := make([]byte, (len(key)+aes.BlockSize-1)/aes.BlockSize*aes.BlockSize)
	copy(padded, key)
	value := make([]byte, 1+len(padded))
	value[0] = byte(len(key))
	cipher.NewCBCEncrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(value[1:], padded)
	clear(padded)
	return KeyComponent{Type: KeyTypeAES, Value: value, KCV: kcv[:]}, nil
}

// DecryptAES is the card side of EncryptAESKey: it decrypts the key with
// dek and checks its length and, in constant time, its KCV (wrapping
// ErrBadKCV, which a card answers with '6982', Amd D §7.2.2). The returned
// key is a fresh slice; wipe it when done.
func (c KeyComponent) DecryptAES(dek []byte) (scp03.Key, error) {
	if c.Type != KeyTypeAES {
		return nil, errorf(ErrUnsupported, "key type %02X, want 88 (AES)", c.Type)
	}
	if len(c.Value) < 1 {
		return nil, errorf(ErrMalformed, "AES key component without length")
	}
	n, enc := int(c.Value[0]), c.Value[1:]
	if n != 16 && n != 24 && n != 32 {
		return nil, errorf(ErrBadKey, "AES key of %d bytes", n)
	}
	if len(enc) != (n+15)/16*16 {
		return nil, errorf(ErrMalformed, "%d encrypted bytes for a %d-byte key", len(enc), n)
	}
	block, err := aes.NewCipher(dek)
	if err != nil {
		return nil, errorf(ErrBadKey, "DEK of %d bytes", len(dek))
	}
	clearKey := make([]byte, len(enc))
	cipher.NewCBCDecrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(clearKey, enc)
	key := scp03.Key(clearKey[:n:n])
	clear(clearKey[n:])
	if len(c.KCV) != 3 {
		key.Wipe()
		return nil, errorf(ErrBadKCV, "KCV of %d bytes, want 3", len(c.KCV))
	}
	kcv, err := key.KCV()
	if err != nil || subtle.ConstantTimeCompare(kcv[:], c.KCV) != 1 {
		key.Wipe()
		return nil, errorf(ErrBadKCV, "AES key of %d bytes", n)
	}
	return key, nil
}

// PutKeyAES builds PUT KEY for a complete SCP03 key set (Amd D §7.2):
// key identifiers '01' (ENC), '02' (MAC), '03' (DEK), P2 '81', each key
// encrypted with dek, the Key-DEK of the current secure channel. replaceKVN
// '00' adds the set as newKVN.
func PutKeyAES(newKVN, replaceKVN byte, keys scp03.StaticKeys, dek []byte) (PutKey, error) {
	if err := keys.Check(); err != nil {
		return PutKey{}, errorf(ErrBadKey, "new key set: %w", err)
	}
	if newKVN == 0 || newKVN > 0x7F {
		return PutKey{}, errorf(ErrMalformed, "new key version %02X outside 01-7F", newKVN)
	}
	p := PutKey{ReplaceKVN: replaceKVN, KeyID: 0x01, Multiple: true, NewKVN: newKVN}
	for _, k := range []scp03.Key{keys.ENC, keys.MAC, keys.DEK} {
		c, err := EncryptAESKey(dek, k)
		if err != nil {
			return PutKey{}, err
		}
		p.Components = append(p.Components, c)
	}
	return p, nil
}

// AESKeys decrypts and checks every component as an AES key (see
// DecryptAES). On error, keys decrypted so far are wiped.
func (p PutKey) AESKeys(dek []byte) ([]scp03.Key, error) {
	keys := make([]scp03.Key, 0, len(p.Components))
	for i, c := range p.Components {
		k, err := c.DecryptAES(dek)
		if err != nil {
			for _, k := range keys {
				k.Wipe()
			}
			return nil, fmt.Errorf("PUT KEY component %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// PutKeyECCPublic builds PUT KEY for an ECC public key on P-256 (GPCS
// §11.8.2.3): one key (P2 b8 clear) with two components, 'B0' the
// uncompressed point in clear (a public key needs no DEK) and 'F0' the
// key parameters reference ECCParamsP256, neither with a KCV. This is how
// this chip receives the issuer's DAP verification key (KVN DAPKeyVersion,
// key ID DAPKeyID; docs/loadfile.md).
func PutKeyECCPublic(newKVN, replaceKVN, keyID byte, pub *ecdsa.PublicKey) (PutKey, error) {
	point, err := encodeP256(pub)
	if err != nil {
		return PutKey{}, err
	}
	return PutKey{ReplaceKVN: replaceKVN, KeyID: keyID, NewKVN: newKVN, Components: []KeyComponent{
		{Type: KeyTypeECCPublic, Value: point},
		{Type: KeyTypeECCParams, Value: []byte{ECCParamsP256}},
	}}, nil
}

// ECCPublicKey returns the P-256 public key of a PUT KEY built by
// PutKeyECCPublic, checking that the point is on the curve.
func (p PutKey) ECCPublicKey() (*ecdsa.PublicKey, error) {
	var point []byte
	params := -1
	for _, c := range p.Components {
		switch c.Type {
		case KeyTypeECCPublic:
			point = c.Value
		case KeyTypeECCParams:
			if len(c.Value) != 1 {
				return nil, errorf(ErrMalformed, "ECC parameters reference of %d bytes", len(c.Value))
			}
			params = int(c.Value[0])
		default:
			return nil, errorf(ErrUnsupported, "key type %02X in an ECC public key", c.Type)
		}
	}
	if point == nil {
		return nil, errorf(ErrMalformed, "no B0 ECC public key component")
	}
	if params != int(ECCParamsP256) {
		return nil, errorf(ErrUnsupported, "ECC parameters reference %d, want %02X (P-256)", params, ECCParamsP256)
	}
	return ParseP256(point)
}

// ParseP256 decodes an uncompressed P-256 point (04 || X || Y) and checks
// that it is on the curve.
func ParseP256(point []byte) (*ecdsa.PublicKey, error) {
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	if err != nil {
		return nil, errorf(ErrBadKey, "not a P-256 public point (%d bytes)", len(point))
	}
	return pub, nil
}

// encodeP256 returns the uncompressed point of a P-256 public key.
func encodeP256(pub *ecdsa.PublicKey) ([]byte, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, errorf(ErrBadKey, "DAP keys are ECDSA P-256")
	}
	k, err := pub.ECDH()
	if err != nil {
		return nil, errorf(ErrBadKey, "P-256 public key: %w", err)
	}
	return k.Bytes(), nil
}

// PutKeyResponse is the response data of PUT KEY (GPCS §11.8.3): the key
// version number followed by the 3-byte KCV of each key that has one.
type PutKeyResponse struct {
	KVN  byte
	KCVs [][3]byte
}

// Bytes encodes KVN || KCVs.
func (r PutKeyResponse) Bytes() []byte {
	out := []byte{r.KVN}
	for _, k := range r.KCVs {
		out = append(out, k[:]...)
	}
	return out
}

// ParsePutKeyResponse decodes KVN || KCVs (3 bytes each).
func ParsePutKeyResponse(data []byte) (PutKeyResponse, error) {
	if len(data) < 1 || (len(data)-1)%3 != 0 {
		return PutKeyResponse{}, errorf(ErrMalformed, "PUT KEY response of %d bytes", len(data))
	}
	r := PutKeyResponse{KVN: data[0]}
	for i := 1; i < len(data); i += 3 {
		r.KCVs = append(r.KCVs, [3]byte{data[i], data[i+1], data[i+2]})
	}
	return r, nil
}

// Expected returns the response the card should give to p: NewKVN and the
// KCV of every component that carries one.
func (p PutKey) Expected() PutKeyResponse {
	r := PutKeyResponse{KVN: p.NewKVN}
	for _, c := range p.Components {
		if len(c.KCV) == 3 {
			r.KCVs = append(r.KCVs, [3]byte{c.KCV[0], c.KCV[1], c.KCV[2]})
		}
	}
	return r
}
