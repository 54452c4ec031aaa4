package iso8583

import (
	"crypto/aes"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/moov-io/iso8583"
	"github.com/valuechip/valuechip/apdu/cmac"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// Errors of the transaction number (DE 62, docs/iso8583.md §7). The server
// answers both with response code 63; ErrSeedExpired also tells the terminal
// to sign on again.
var (
	ErrTxnNumber   = errors.New("iso8583: transaction number does not match the transaction")
	ErrSeedExpired = errors.New("iso8583: transaction-number seed unknown or expired")
)

// Tags of the sign-on key block in DE 48 of 0810 (docs/iso8583.md §4).
const (
	TagWorkingKey    tlv.Tag = 0xDF01 // 16, working key encrypted under the TMK
	TagWorkingKCV    tlv.Tag = 0xDF02 // 3
	TagSeedID        tlv.Tag = 0xDF03 // 4
	TagSeedKey       tlv.Tag = 0xDF04 // 16, seed key encrypted under the TMK
	TagSeedKCV       tlv.Tag = 0xDF05 // 3
	TagSeedNotAfter  tlv.Tag = 0xDF06 // 4, Unix seconds, UTC
	signOnKeyLen             = 16
	tnLabel                  = "TN"
	tnCMACPrefixSize         = 8
)

// Seed is the transaction-number seed handed out at sign-on: an AES-128 key,
// its identifier and the end of its validity.
type Seed struct {
	ID       uint32
	Key      Key
	NotAfter time.Time
}

// SignOnKeys is the key block of a sign-on response: the working key that
// MACs every later message of the session (DE 64/128) and the seed.
type SignOnKeys struct {
	WorkingKey Key
	Seed       Seed
}

func ecb(tmk Key, in []byte, decrypt bool) ([]byte, error) {
	if len(tmk) != signOnKeyLen || len(in) != signOnKeyLen {
		return nil, fmt.Errorf("%w: AES-128 keys only", ErrBadKey)
	}
	c, err := aes.NewCipher(tmk)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	out := make([]byte, signOnKeyLen)
	if decrypt {
		c.Decrypt(out, in)
	} else {
		c.Encrypt(out, in)
	}
	return out, nil
}

// Encode returns the DE 48 key block: each key encrypted under the terminal
// master key (AES-128, one block) followed by its KCV, the seed ID and its
// expiry.
func (k SignOnKeys) Encode(tmk Key) ([]byte, error) {
	wk, err := ecb(tmk, k.WorkingKey, false)
	if err != nil {
		return nil, err
	}
	sk, err := ecb(tmk, k.Seed.Key, false)
	if err != nil {
		return nil, err
	}
	wkcv, err := k.WorkingKey.KCV()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	skcv, err := k.Seed.Key.KCV()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	b, err := tlv.EncodeList([]tlv.TLV{
		{Tag: TagWorkingKey, Value: wk},
		{Tag: TagWorkingKCV, Value: wkcv[:]},
		{Tag: TagSeedID, Value: u32(k.Seed.ID)},
		{Tag: TagSeedKey, Value: sk},
		{Tag: TagSeedKCV, Value: skcv[:]},
		{Tag: TagSeedNotAfter, Value: u32(uint32(k.Seed.NotAfter.Unix()))},
	})
	if err != nil {
		return nil, fmt.Errorf("iso8583: encode DE 48: %w", err)
	}
	return b, nil
}

// DecodeSignOnKeys decrypts the DE 48 key block with the terminal master key
// and checks both KCVs. A malformed block wraps ErrMalformed, a KCV mismatch
// ErrBadKey.
func DecodeSignOnKeys(b []byte, tmk Key) (SignOnKeys, error) {
	var k SignOnKeys
	list, err := tlv.Parse(b)
	if err != nil {
		return k, fmt.Errorf("%w: DE 48: %v", ErrMalformed, err)
	}
	get := func(tag tlv.Tag, n int) ([]byte, error) {
		o, ok := tlv.Find(list, tag)
		if !ok || len(o.Value) != n || len(tlv.FindAll(list, tag)) != 1 {
			return nil, fmt.Errorf("%w: DE 48: tag %X missing or not %d bytes", ErrMalformed, uint32(tag), n)
		}
		return o.Value, nil
	}
	var v [6][]byte
	for i, f := range []struct {
		tag tlv.Tag
		n   int
	}{{TagWorkingKey, 16}, {TagWorkingKCV, 3}, {TagSeedID, 4}, {TagSeedKey, 16}, {TagSeedKCV, 3}, {TagSeedNotAfter, 4}} {
		if v[i], err = get(f.tag, f.n); err != nil {
			return k, err
		}
	}
	wk, err := ecb(tmk, v[0], true)
	if err != nil {
		return k, err
	}
	sk, err := ecb(tmk, v[3], true)
	if err != nil {
		return k, err
	}
	k.WorkingKey, k.Seed.Key = Key(wk), Key(sk)
	for _, c := range []struct {
		key Key
		kcv []byte
	}{{k.WorkingKey, v[1]}, {k.Seed.Key, v[4]}} {
		got, err := c.key.KCV()
		if err != nil || subtle.ConstantTimeCompare(got[:], c.kcv) != 1 {
			return SignOnKeys{}, fmt.Errorf("%w: DE 48 key check value mismatch", ErrBadKey)
		}
	}
	k.Seed.ID = binary.BigEndian.Uint32(v[2])
	k.Seed.NotAfter = time.Unix(int64(binary.BigEndian.Uint32(v[5])), 0).UTC()
	return k, nil
}

// txnFields are the data elements bound by the transaction number, in this
// order (docs/iso8583.md §7).
var txnFields = []int{DEPAN, DEProcessingCode, DEAmount, DETransmission, DESTAN,
	DETerminalID, DEMerchantID, DECurrency, DEICC, DEOriginalData}

// TxnNumberInput returns the input of the transaction number: 'TN' ‖ seed ID
// (4) ‖ MTI digits 1–3 ‖ for each of DE 2, 3, 4, 7, 11, 41, 42, 49, 55, 90:
// field number (1) ‖ length (2, big-endian) ‖ the field as packed, prefix
// included (length 0 if absent). The MTI's origin digit is left out so that
// a repeat (0221, 0421) has the number of its original.
func TxnNumberInput(seedID uint32, msg *iso8583.Message) ([]byte, error) {
	mti, err := msg.GetMTI()
	if err != nil || len(mti) != 4 {
		return nil, fmt.Errorf("%w: MTI missing", ErrMalformed)
	}
	in := append([]byte(tnLabel), u32(seedID)...)
	in = append(in, mti[:3]...)
	fields := msg.GetFields()
	for _, id := range txnFields {
		var p []byte
		if f, ok := fields[id]; ok {
			if p, err = f.Pack(); err != nil {
				return nil, fmt.Errorf("%w: DE %d: %v", ErrMalformed, id, err)
			}
		}
		in = append(in, byte(id))
		in = binary.BigEndian.AppendUint16(in, uint16(len(p)))
		in = append(in, p...)
	}
	return in, nil
}

// TxnNumber returns DE 62 of msg: seed ID (4) ‖ the first 8 bytes of
// AES-CMAC(seed key, TxnNumberInput).
func (s Seed) TxnNumber(msg *iso8583.Message) ([TxnNumberLen]byte, error) {
	var out [TxnNumberLen]byte
	in, err := TxnNumberInput(s.ID, msg)
	if err != nil {
		return out, err
	}
	sum, err := cmac.Sum(s.Key, in)
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	binary.BigEndian.PutUint32(out[:4], s.ID)
	copy(out[4:], sum[:tnCMACPrefixSize])
	return out, nil
}

// SetTxnNumber computes the transaction number of msg and stores it in DE 62.
func (s Seed) SetTxnNumber(msg *iso8583.Message) error {
	tn, err := s.TxnNumber(msg)
	if err != nil {
		return err
	}
	if err := msg.BinaryField(DETxnNumber, tn[:]); err != nil {
		return fmt.Errorf("iso8583: set DE 62: %w", err)
	}
	return nil
}

// TxnSeedID returns the seed ID of DE 62, for the server to find the seed.
func TxnSeedID(msg *iso8583.Message) (uint32, error) {
	f, ok := msg.GetFields()[DETxnNumber]
	if !ok {
		return 0, fmt.Errorf("%w: DE 62 missing", ErrTxnNumber)
	}
	b, err := f.Bytes()
	if err != nil || len(b) != TxnNumberLen {
		return 0, fmt.Errorf("%w: DE 62 missing", ErrTxnNumber)
	}
	return binary.BigEndian.Uint32(b), nil
}

// VerifyTxnNumber checks DE 62 of msg against s at time now: the seed ID must
// be s.ID and now not after s.NotAfter (else ErrSeedExpired), and the number
// must match the transaction data (else ErrTxnNumber, constant time).
func (s Seed) VerifyTxnNumber(msg *iso8583.Message, now time.Time) error {
	id, err := TxnSeedID(msg)
	if err != nil {
		return err
	}
	if id != s.ID || now.After(s.NotAfter) {
		return ErrSeedExpired
	}
	want, err := s.TxnNumber(msg)
	if err != nil {
		return err
	}
	got, _ := msg.GetBytes(DETxnNumber)
	if subtle.ConstantTimeCompare(want[:], got) != 1 {
		return ErrTxnNumber
	}
	return nil
}
