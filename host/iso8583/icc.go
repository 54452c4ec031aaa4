package iso8583

import (
	"encoding/binary"
	"fmt"

	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// Private BER-TLV tags of the purse data in DE 55 (docs/iso8583.md §5.1).
// All are primitive, private class (first byte DF).
const (
	TagCardID        tlv.Tag = 0xDF60 // 8, CardID
	TagATC           tlv.Tag = 0xDF61 // 4, ATC' of the transaction
	TagAmount        tlv.Tag = 0xDF62 // 4, purse amount, minor units
	TagCurrency      tlv.Tag = 0xDF63 // 2, purse currency, BCD
	TagBalanceBefore tlv.Tag = 0xDF64 // 4
	TagBalanceAfter  tlv.Tag = 0xDF65 // 4
	TagKeyVersion    tlv.Tag = 0xDF66 // 1, K_LOAD/K_DEBIT version
	TagCardNonce     tlv.Tag = 0xDF67 // 8
	TagHostNonce     tlv.Tag = 0xDF68 // 8
	TagS1            tlv.Tag = 0xDF69 // 8
	TagS2            tlv.Tag = 0xDF6A // 8
	TagDateTime      tlv.Tag = 0xDF6B // 7, purse date-time
	TagAuthRef       tlv.Tag = 0xDF6C // 4, authorisation reference
	TagTC            tlv.Tag = 0xDF6D // 8
	TagLogRecord     tlv.Tag = 0xDF6E // 58, docs/purse.md §6
	TagM1            tlv.Tag = 0xDF6F // 8
)

// ICCData is the purse data of DE 55. A nil field is absent. Which fields
// each message carries is listed in docs/iso8583.md §5.2.
type ICCData struct {
	CardID        *purse.CardID
	ATC           *uint32
	Amount        *uint32
	Currency      *purse.Currency
	BalanceBefore *uint32
	BalanceAfter  *uint32
	KeyVersion    *byte
	CardNonce     *purse.Nonce
	HostNonce     *purse.Nonce
	S1            *purse.MAC
	S2            *purse.MAC
	DateTime      *purse.DateTime
	AuthRef       *uint32
	TC            *purse.MAC
	LogRecord     *purse.LogRecord
	M1            *purse.MAC
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// Encode returns the BER-TLV encoding of d, objects in ascending tag order.
func (d ICCData) Encode() ([]byte, error) {
	var list []tlv.TLV
	add := func(tag tlv.Tag, ok bool, v func() []byte) {
		if ok {
			list = append(list, tlv.TLV{Tag: tag, Value: v()})
		}
	}
	add(TagCardID, d.CardID != nil, func() []byte { return d.CardID[:] })
	add(TagATC, d.ATC != nil, func() []byte { return u32(*d.ATC) })
	add(TagAmount, d.Amount != nil, func() []byte { return u32(*d.Amount) })
	add(TagCurrency, d.Currency != nil, func() []byte { return d.Currency[:] })
	add(TagBalanceBefore, d.BalanceBefore != nil, func() []byte { return u32(*d.BalanceBefore) })
	add(TagBalanceAfter, d.BalanceAfter != nil, func() []byte { return u32(*d.BalanceAfter) })
	add(TagKeyVersion, d.KeyVersion != nil, func() []byte { return []byte{*d.KeyVersion} })
	add(TagCardNonce, d.CardNonce != nil, func() []byte { return d.CardNonce[:] })
	add(TagHostNonce, d.HostNonce != nil, func() []byte { return d.HostNonce[:] })
	add(TagS1, d.S1 != nil, func() []byte { return d.S1[:] })
	add(TagS2, d.S2 != nil, func() []byte { return d.S2[:] })
	add(TagDateTime, d.DateTime != nil, func() []byte { return d.DateTime[:] })
	add(TagAuthRef, d.AuthRef != nil, func() []byte { return u32(*d.AuthRef) })
	add(TagTC, d.TC != nil, func() []byte { return d.TC[:] })
	add(TagLogRecord, d.LogRecord != nil, func() []byte { return d.LogRecord.Bytes() })
	add(TagM1, d.M1 != nil, func() []byte { return d.M1[:] })
	b, err := tlv.EncodeList(list)
	if err != nil {
		return nil, fmt.Errorf("iso8583: encode DE 55: %w", err)
	}
	return b, nil
}

// DecodeICC parses DE 55. Unknown or repeated tags, wrong lengths and
// constructed objects wrap ErrMalformed (response code 30).
func DecodeICC(b []byte) (ICCData, error) {
	var d ICCData
	list, err := tlv.Parse(b)
	if err != nil {
		return d, fmt.Errorf("%w: DE 55: %v", ErrMalformed, err)
	}
	seen := map[tlv.Tag]bool{}
	for _, o := range list {
		if seen[o.Tag] {
			return d, fmt.Errorf("%w: DE 55: tag %X repeated", ErrMalformed, uint32(o.Tag))
		}
		seen[o.Tag] = true
		v := o.Value
		fixed := func(n int) error {
			if len(v) != n || o.Children != nil {
				return fmt.Errorf("%w: DE 55: tag %X has %d bytes, want %d", ErrMalformed, uint32(o.Tag), len(v), n)
			}
			return nil
		}
		num := func() (*uint32, error) {
			if err := fixed(4); err != nil {
				return nil, err
			}
			x := binary.BigEndian.Uint32(v)
			return &x, nil
		}
		switch o.Tag {
		case TagCardID:
			if err = fixed(purse.CardIDLen); err == nil {
				d.CardID = new(purse.CardID(v))
			}
		case TagATC:
			d.ATC, err = num()
		case TagAmount:
			d.Amount, err = num()
		case TagCurrency:
			if err = fixed(2); err == nil {
				d.Currency = new(purse.Currency(v))
			}
		case TagBalanceBefore:
			d.BalanceBefore, err = num()
		case TagBalanceAfter:
			d.BalanceAfter, err = num()
		case TagKeyVersion:
			if err = fixed(1); err == nil {
				d.KeyVersion = new(v[0])
			}
		case TagCardNonce:
			if err = fixed(purse.NonceLen); err == nil {
				d.CardNonce = new(purse.Nonce(v))
			}
		case TagHostNonce:
			if err = fixed(purse.NonceLen); err == nil {
				d.HostNonce = new(purse.Nonce(v))
			}
		case TagS1:
			if err = fixed(purse.MACLen); err == nil {
				d.S1 = new(purse.MAC(v))
			}
		case TagS2:
			if err = fixed(purse.MACLen); err == nil {
				d.S2 = new(purse.MAC(v))
			}
		case TagDateTime:
			if err = fixed(purse.DateTimeLen); err == nil {
				d.DateTime = new(purse.DateTime(v))
			}
		case TagAuthRef:
			d.AuthRef, err = num()
		case TagTC:
			if err = fixed(purse.MACLen); err == nil {
				d.TC = new(purse.MAC(v))
			}
		case TagLogRecord:
			if err = fixed(purse.LogRecordLen); err == nil {
				var r purse.LogRecord
				if r, err = purse.ParseLogRecord(v); err != nil {
					err = fmt.Errorf("%w: DE 55 log record: %v", ErrMalformed, err)
				}
				d.LogRecord = &r
			}
		case TagM1:
			if err = fixed(purse.MACLen); err == nil {
				d.M1 = new(purse.MAC(v))
			}
		default:
			err = fmt.Errorf("%w: DE 55: unknown tag %X", ErrMalformed, uint32(o.Tag))
		}
		if err != nil {
			return ICCData{}, err
		}
	}
	return d, nil
}

// PANOf renders a CardID as DE 2: its 16 hex digits, which are decimal
// because the issuer assigns CardIDs in BCD (docs/iso8583.md §3.2). A CardID
// with a nibble A–F has no PAN (ErrMalformed; the server answers 14).
func PANOf(id purse.CardID) (string, error) {
	s := fmt.Sprintf("%X", id[:])
	if !digits(s) {
		return "", fmt.Errorf("%w: CardID %s is not BCD", ErrMalformed, s)
	}
	return s, nil
}

// CardIDOf parses DE 2 back into a CardID.
func CardIDOf(pan string) (purse.CardID, error) {
	var id purse.CardID
	if len(pan) != 2*purse.CardIDLen || !digits(pan) {
		return id, fmt.Errorf("%w: PAN is not 16 digits", ErrMalformed)
	}
	for i := range id {
		id[i] = (pan[2*i]-'0')<<4 | (pan[2*i+1] - '0')
	}
	return id, nil
}
