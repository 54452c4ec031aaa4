package purse

import (
	"encoding/binary"
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// Command builders (terminal and server side) and parsers of command data
// (card side) and of responses (terminal side), one pair per command of
// docs/purse.md §3. Every parser checks exact lengths and never panics;
// every builder's output parses back to the same value.

// Lengths of command data (Lc) and response data.
const (
	InitializeLoadLen          = 23
	InitializeLoadResponseLen  = 25
	CreditLoadLen              = 19
	CreditLoadResponseLen      = 16
	InitializeDebitLen         = 15
	InitializeDebitResponseLen = 17
	DebitLen                   = 27
	DebitResponseLen           = 24
	PurseDataLen               = 21
	PINBlockLen                = 8
	SetStatusLen               = 8
)

// Select is SELECT by AID with FCI requested: 00 A4 04 00 Lc AID 00.
func Select(aid []byte) apdu.Command {
	return apdu.Command{CLA: CLAISO, INS: INSSelect, P1: 0x04, P2: 0x00, Data: append([]byte(nil), aid...), Ne: apdu.MaxShortNe}
}

// FCI is the SELECT response (docs/purse.md §3.3):
//
//	6F { 84 AID, A5 { DF01 version(2), DF02 life cycle(1), DF03 CardID(8),
//	     DF04 currency(2), DF05 key versions(3: K_LOAD K_DEBIT K_TC),
//	     DF06 PIN-free debit limit(4), DF07 log capacity(1) } }
//
// A purse still personalising has only DF01 and DF02.
type FCI struct {
	AID          []byte
	Version      uint16
	LifeCycle    byte
	CardID       CardID
	Currency     Currency
	KeyVersions  [3]byte // K_LOAD, K_DEBIT, K_TC
	PINFreeLimit uint32
	LogCapacity  byte
}

// Personalised reports whether the FCI carries the personalised objects.
func (f FCI) Personalised() bool { return f.LifeCycle != StatePersonalising }

// Bytes encodes the FCI.
func (f FCI) Bytes() ([]byte, error) {
	prop := []tlv.TLV{
		{Tag: TagVersion, Value: binary.BigEndian.AppendUint16(nil, f.Version)},
		{Tag: TagLifeCycle, Value: []byte{f.LifeCycle}},
	}
	if f.Personalised() {
		prop = append(prop,
			tlv.TLV{Tag: TagCardID, Value: f.CardID[:]},
			tlv.TLV{Tag: TagCurrency, Value: f.Currency[:]},
			tlv.TLV{Tag: TagKeyVersions, Value: f.KeyVersions[:]},
			tlv.TLV{Tag: TagPINFreeLimit, Value: be32(nil, f.PINFreeLimit)},
			tlv.TLV{Tag: TagLogCapacity, Value: []byte{f.LogCapacity}},
		)
	}
	if len(f.AID) < 5 || len(f.AID) > 16 {
		return nil, fmt.Errorf("%w: AID of %d bytes", ErrMalformed, len(f.AID))
	}
	return tlv.EncodeList([]tlv.TLV{{Tag: TagFCI, Children: []tlv.TLV{
		{Tag: TagDFName, Value: f.AID},
		{Tag: TagProprietary, Children: prop},
	}}})
}

// ParseFCI decodes a SELECT response. Objects may come in any order and
// unknown objects inside A5 are ignored (later versions may add some);
// the objects this version defines must have their exact lengths.
func ParseFCI(b []byte) (FCI, error) {
	var f FCI
	list, err := tlv.Parse(b)
	if err != nil {
		return f, fmt.Errorf("%w: FCI: %w", ErrMalformed, err)
	}
	if len(list) != 1 || list[0].Tag != TagFCI {
		return f, fmt.Errorf("%w: FCI is not one 6F template", ErrMalformed)
	}
	name, ok := tlv.Find(list[0].Children, TagDFName)
	if !ok || len(name.Value) < 5 || len(name.Value) > 16 {
		return f, fmt.Errorf("%w: FCI without a valid 84 AID", ErrMalformed)
	}
	f.AID = append([]byte(nil), name.Value...)
	prop, ok := tlv.Find(list[0].Children, TagProprietary)
	if !ok {
		return f, fmt.Errorf("%w: FCI without A5", ErrMalformed)
	}
	get := func(tag tlv.Tag, n int) ([]byte, error) {
		o, ok := tlv.Find(prop.Children, tag)
		if !ok {
			return nil, fmt.Errorf("%w: FCI without %s", ErrMissing, tag)
		}
		if len(o.Value) != n || o.Tag.Constructed() {
			return nil, fmt.Errorf("%w: FCI %s of %d bytes, want %d", ErrMalformed, tag, len(o.Value), n)
		}
		return o.Value, nil
	}
	v, err := get(TagVersion, 2)
	if err != nil {
		return f, err
	}
	f.Version = binary.BigEndian.Uint16(v)
	if v, err = get(TagLifeCycle, 1); err != nil {
		return f, err
	}
	f.LifeCycle = v[0]
	if f.LifeCycle > StateBlocked {
		return f, fmt.Errorf("%w: FCI life cycle %02X", ErrMalformed, f.LifeCycle)
	}
	if !f.Personalised() {
		return f, nil
	}
	for _, o := range []struct {
		tag tlv.Tag
		dst []byte
	}{{TagCardID, f.CardID[:]}, {TagCurrency, f.Currency[:]}, {TagKeyVersions, f.KeyVersions[:]}} {
		v, err := get(o.tag, len(o.dst))
		if err != nil {
			return f, err
		}
		copy(o.dst, v)
	}
	if v, err = get(TagPINFreeLimit, 4); err != nil {
		return f, err
	}
	f.PINFreeLimit = binary.BigEndian.Uint32(v)
	if v, err = get(TagLogCapacity, 1); err != nil {
		return f, err
	}
	f.LogCapacity = v[0]
	return f, nil
}

// GetPurseData is 80 5C 00 00 00.
func GetPurseData() apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSGetPurseData, Ne: apdu.MaxShortNe}
}

// PurseData is the GET PURSE DATA response (docs/purse.md §3.4):
// balance 4 | max balance 4 | currency 2 | ATC 4 | life cycle 1 | flags 1
// | PIN tries left 1 | offline debit total 4.
type PurseData struct {
	Balance      uint32
	MaxBalance   uint32
	Currency     Currency
	ATC          uint32 // of the last value change; 0 before the first
	LifeCycle    byte
	Flags        byte
	PINTries     byte
	OfflineTotal uint32 // debits since the last load
}

// Bytes encodes the response data.
func (p PurseData) Bytes() []byte {
	b := make([]byte, 0, PurseDataLen)
	b = be32(b, p.Balance)
	b = be32(b, p.MaxBalance)
	b = append(b, p.Currency[:]...)
	b = be32(b, p.ATC)
	b = append(b, p.LifeCycle, p.Flags, p.PINTries)
	return be32(b, p.OfflineTotal)
}

// ParsePurseData decodes the GET PURSE DATA response.
func ParsePurseData(b []byte) (PurseData, error) {
	var p PurseData
	if err := fixed("purse data", b, PurseDataLen); err != nil {
		return p, err
	}
	r := reader{b}
	p.Balance, p.MaxBalance = r.u32(), r.u32()
	r.fill(p.Currency[:])
	p.ATC = r.u32()
	p.LifeCycle, p.Flags, p.PINTries = r.u8(), r.u8(), r.u8()
	p.OfflineTotal = r.u32()
	return p, nil
}

// InitializeLoad is the INITIALIZE LOAD command data (docs/purse.md
// §3.5): key version 1 | amount 4 | currency 2 | terminal ID 8 | host
// nonce 8.
type InitializeLoad struct {
	KeyVersion byte
	Amount     uint32
	Currency   Currency
	TerminalID TerminalID
	HostNonce  Nonce
}

// Bytes encodes the command data.
func (c InitializeLoad) Bytes() []byte {
	b := make([]byte, 0, InitializeLoadLen)
	b = append(b, c.KeyVersion)
	b = be32(b, c.Amount)
	b = append(b, c.Currency[:]...)
	b = append(b, c.TerminalID[:]...)
	return append(b, c.HostNonce[:]...)
}

// Command is 80 40 00 00 17 <data> 00.
func (c InitializeLoad) Command() apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSInitializeLoad, Data: c.Bytes(), Ne: apdu.MaxShortNe}
}

// ParseInitializeLoad decodes the command data (card side).
func ParseInitializeLoad(b []byte) (InitializeLoad, error) {
	var c InitializeLoad
	if err := fixed("INITIALIZE LOAD data", b, InitializeLoadLen); err != nil {
		return c, err
	}
	r := reader{b}
	c.KeyVersion, c.Amount = r.u8(), r.u32()
	r.fill(c.Currency[:])
	r.fill(c.TerminalID[:])
	r.fill(c.HostNonce[:])
	return c, nil
}

// InitializeLoadResponse is balance 4 | ATC_next 4 | key version 1 | card
// nonce 8 | S1 8.
type InitializeLoadResponse struct {
	Balance    uint32
	ATC        uint32
	KeyVersion byte
	CardNonce  Nonce
	S1         MAC
}

// Bytes encodes the response data.
func (r InitializeLoadResponse) Bytes() []byte {
	b := make([]byte, 0, InitializeLoadResponseLen)
	b = be32(b, r.Balance)
	b = be32(b, r.ATC)
	b = append(b, r.KeyVersion)
	b = append(b, r.CardNonce[:]...)
	return append(b, r.S1[:]...)
}

// ParseInitializeLoadResponse decodes the response data.
func ParseInitializeLoadResponse(b []byte) (InitializeLoadResponse, error) {
	var v InitializeLoadResponse
	if err := fixed("INITIALIZE LOAD response", b, InitializeLoadResponseLen); err != nil {
		return v, err
	}
	r := reader{b}
	v.Balance, v.ATC, v.KeyVersion = r.u32(), r.u32(), r.u8()
	r.fill(v.CardNonce[:])
	r.fill(v.S1[:])
	return v, nil
}

// CreditLoad is the CREDIT LOAD command data (docs/purse.md §3.6):
// date-time 7 | authorisation reference 4 | S2 8.
type CreditLoad struct {
	DateTime DateTime
	AuthRef  uint32
	S2       MAC
}

// Bytes encodes the command data.
func (c CreditLoad) Bytes() []byte {
	b := make([]byte, 0, CreditLoadLen)
	b = append(b, c.DateTime[:]...)
	b = be32(b, c.AuthRef)
	return append(b, c.S2[:]...)
}

// Command is 80 42 00 00 13 <data> 00.
func (c CreditLoad) Command() apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSCreditLoad, Data: c.Bytes(), Ne: apdu.MaxShortNe}
}

// ParseCreditLoad decodes the command data (card side). It does not
// validate the date-time; the card does (6A80).
func ParseCreditLoad(b []byte) (CreditLoad, error) {
	var c CreditLoad
	if err := fixed("CREDIT LOAD data", b, CreditLoadLen); err != nil {
		return c, err
	}
	r := reader{b}
	r.fill(c.DateTime[:])
	c.AuthRef = r.u32()
	r.fill(c.S2[:])
	return c, nil
}

// CreditLoadResponse is balance after 4 | ATC 4 | TC 8.
type CreditLoadResponse struct {
	BalanceAfter uint32
	ATC          uint32
	TC           MAC
}

// Bytes encodes the response data.
func (r CreditLoadResponse) Bytes() []byte {
	b := make([]byte, 0, CreditLoadResponseLen)
	b = be32(b, r.BalanceAfter)
	b = be32(b, r.ATC)
	return append(b, r.TC[:]...)
}

// ParseCreditLoadResponse decodes the response data.
func ParseCreditLoadResponse(b []byte) (CreditLoadResponse, error) {
	var v CreditLoadResponse
	if err := fixed("CREDIT LOAD response", b, CreditLoadResponseLen); err != nil {
		return v, err
	}
	r := reader{b}
	v.BalanceAfter, v.ATC = r.u32(), r.u32()
	r.fill(v.TC[:])
	return v, nil
}

// InitializeDebit is the INITIALIZE DEBIT command data (docs/purse.md
// §3.7): key version 1 | amount 4 | currency 2 | terminal ID 8.
type InitializeDebit struct {
	KeyVersion byte
	Amount     uint32
	Currency   Currency
	TerminalID TerminalID
}

// Bytes encodes the command data.
func (c InitializeDebit) Bytes() []byte {
	b := make([]byte, 0, InitializeDebitLen)
	b = append(b, c.KeyVersion)
	b = be32(b, c.Amount)
	b = append(b, c.Currency[:]...)
	return append(b, c.TerminalID[:]...)
}

// Command is 80 44 00 00 0F <data> 00.
func (c InitializeDebit) Command() apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSInitializeDebit, Data: c.Bytes(), Ne: apdu.MaxShortNe}
}

// ParseInitializeDebit decodes the command data (card side).
func ParseInitializeDebit(b []byte) (InitializeDebit, error) {
	var c InitializeDebit
	if err := fixed("INITIALIZE DEBIT data", b, InitializeDebitLen); err != nil {
		return c, err
	}
	r := reader{b}
	c.KeyVersion, c.Amount = r.u8(), r.u32()
	r.fill(c.Currency[:])
	r.fill(c.TerminalID[:])
	return c, nil
}

// InitializeDebitResponse is balance 4 | ATC_next 4 | key version 1 | card
// nonce 8.
type InitializeDebitResponse struct {
	Balance    uint32
	ATC        uint32
	KeyVersion byte
	CardNonce  Nonce
}

// Bytes encodes the response data.
func (r InitializeDebitResponse) Bytes() []byte {
	b := make([]byte, 0, InitializeDebitResponseLen)
	b = be32(b, r.Balance)
	b = be32(b, r.ATC)
	b = append(b, r.KeyVersion)
	return append(b, r.CardNonce[:]...)
}

// ParseInitializeDebitResponse decodes the response data.
func ParseInitializeDebitResponse(b []byte) (InitializeDebitResponse, error) {
	var v InitializeDebitResponse
	if err := fixed("INITIALIZE DEBIT response", b, InitializeDebitResponseLen); err != nil {
		return v, err
	}
	r := reader{b}
	v.Balance, v.ATC, v.KeyVersion = r.u32(), r.u32(), r.u8()
	r.fill(v.CardNonce[:])
	return v, nil
}

// Debit is the DEBIT command data (docs/purse.md §3.8): TSM nonce 8 | TSM
// sequence 4 | date-time 7 | M1 8.
type Debit struct {
	TSMNonce Nonce
	TSMSeq   uint32
	DateTime DateTime
	M1       MAC
}

// Bytes encodes the command data.
func (c Debit) Bytes() []byte {
	b := make([]byte, 0, DebitLen)
	b = append(b, c.TSMNonce[:]...)
	b = be32(b, c.TSMSeq)
	b = append(b, c.DateTime[:]...)
	return append(b, c.M1[:]...)
}

// Command is 80 46 00 00 1B <data> 00.
func (c Debit) Command() apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSDebit, Data: c.Bytes(), Ne: apdu.MaxShortNe}
}

// ParseDebit decodes the command data (card side).
func ParseDebit(b []byte) (Debit, error) {
	var c Debit
	if err := fixed("DEBIT data", b, DebitLen); err != nil {
		return c, err
	}
	r := reader{b}
	r.fill(c.TSMNonce[:])
	c.TSMSeq = r.u32()
	r.fill(c.DateTime[:])
	r.fill(c.M1[:])
	return c, nil
}

// DebitResponse is balance after 4 | ATC 4 | M2 8 | TC 8.
type DebitResponse struct {
	BalanceAfter uint32
	ATC          uint32
	M2           MAC
	TC           MAC
}

// Bytes encodes the response data.
func (r DebitResponse) Bytes() []byte {
	b := make([]byte, 0, DebitResponseLen)
	b = be32(b, r.BalanceAfter)
	b = be32(b, r.ATC)
	b = append(b, r.M2[:]...)
	return append(b, r.TC[:]...)
}

// ParseDebitResponse decodes the response data.
func ParseDebitResponse(b []byte) (DebitResponse, error) {
	var v DebitResponse
	if err := fixed("DEBIT response", b, DebitResponseLen); err != nil {
		return v, err
	}
	r := reader{b}
	v.BalanceAfter, v.ATC = r.u32(), r.u32()
	r.fill(v.M2[:])
	r.fill(v.TC[:])
	return v, nil
}

// GetTransactionProof is 80 5A 00 00 04 <ATC> 00; the response is the log
// record of that ATC (docs/purse.md §3.9).
func GetTransactionProof(atc uint32) apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSGetTransactionProof, Data: be32(nil, atc), Ne: apdu.MaxShortNe}
}

// ParseATC decodes GET TRANSACTION PROOF's command data.
func ParseATC(b []byte) (uint32, error) {
	if err := fixed("ATC", b, 4); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

// ReadLog is READ RECORD of log record n (1 = the newest): 00 B2 n C4 00
// (docs/purse.md §3.10).
func ReadLog(n byte) apdu.Command {
	return apdu.Command{CLA: CLAISO, INS: INSReadRecord, P1: n, P2: LogReadP2, Ne: apdu.MaxShortNe}
}

// Verify is VERIFY with a PIN block: 00 20 00 80 08 <block>; with a nil
// block it asks for the PIN status (case 1).
func Verify(block []byte) apdu.Command {
	return apdu.Command{CLA: CLAISO, INS: INSVerify, P2: PINReference, Data: append([]byte(nil), block...)}
}

// GetChallenge is 00 84 00 00 08.
func GetChallenge() apdu.Command {
	return apdu.Command{CLA: CLAISO, INS: INSGetChallenge, Ne: ChallengeLen}
}

// SetStatus is 80 48 <op> <K_LOAD version> 08 <MAC> (docs/purse.md §3.11).
func SetStatus(op, kvn byte, mac MAC) apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSSetStatus, P1: op, P2: kvn, Data: append([]byte(nil), mac[:]...)}
}
