package cardmanager

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// ErrParams reports creation parameters that cannot be used.
var ErrParams = errors.New("cardmanager: invalid creation parameters")

// Tags of the creation parameters (see Params.Bytes). The GlobalPlatform
// data objects keep their GP tags; the emulator's own settings use
// context-specific tags.
const (
	tagCPLC               = gp.TagCPLC // Card Production Life Cycle data
	tagIIN                = gp.TagIIN  // GPCS §11.3.2.1 Issuer Identification Number
	tagCIN                = gp.TagCIN  // GPCS §11.3.2.1 Card Image Number
	tagKDD        tlv.Tag = 0xCF       // key diversification data (Amd D Table 7-2)
	tagIParam     tlv.Tag = 0x80       // SCP03 "i" (Amd D Table 5-1)
	tagDAP        tlv.Tag = 0x81       // 01: the ISD requires a DAP on every load file
	tagDAPKey     tlv.Tag = 0x82       // issuer public key for DAP verification
	tagKeySet     tlv.Tag = 0xA0       // one SCP03 key set
	tagKeyVersion tlv.Tag = 0x80       // in A0: KVN
	tagKeyENC     tlv.Tag = 0x81       // in A0: Key-ENC
	tagKeyMAC     tlv.Tag = 0x82       // in A0: Key-MAC
	tagKeyDEK     tlv.Tag = 0x83       // in A0: Key-DEK
)

// CPLCLen is the length of the Card Production Life Cycle data returned by
// GET DATA '9F7F': 18 fields in 42 bytes (the Visa Open Platform layout
// that GP cards kept).
const CPLCLen = gp.CPLCLen

// KDDLen is the length of the key diversification data returned by
// INITIALIZE UPDATE (Amd D Table 7-2).
const KDDLen = scp03.KDDLen

// MaxKeySets bounds the number of SCP03 key sets the ISD holds.
const MaxKeySets = 8

// Params are the creation parameters of the Issuer Security Domain: what
// the card manufacturer and issuer put into the card before it leaves the
// factory. The runtime (or a card profile) builds them with Bytes and passes
// the result as the install parameters of the ISD instance; New reads them
// once, when the ISD's persistent memory is still empty.
//
// Params print their keys masked (scp03.KeySet formats with KCVs only).
type Params struct {
	// CPLC is the 42-byte Card Production Life Cycle data (GET DATA
	// '9F7F'); nil leaves it out.
	CPLC []byte
	// IIN and CIN are the Issuer Identification Number and Card Image
	// Number (GET DATA '42' and '45'); nil leaves them out.
	IIN, CIN []byte
	// KDD is the 10-byte key diversification data returned by
	// INITIALIZE UPDATE (Amd D Table 7-2); nil means ten zero bytes.
	KDD []byte
	// I is the SCP03 "i" parameter (Amd D Table 5-1). The zero value is
	// the valid value '00' (random challenges, no R-MAC); DefaultParams
	// uses '70'.
	I scp03.IParam
	// KeySets are the initial SCP03 key sets (at least one, KVN 01..7F,
	// all three keys of one length). Their Sequence fields are ignored:
	// a new key set starts at 0 (Amd D §6.2.2.1).
	KeySets []scp03.KeySet
	// DAPRequired makes the ISD refuse load files without a valid DAP
	// block for it (GPCS v2.3.1 §9.2.1, Mandated DAP Verification).
	DAPRequired bool
	// DAPKey is the issuer's ECDSA P-256 public key for DAP verification
	// (apdu/gp.VerifyDAPHash, docs/loadfile.md), as the uncompressed
	// point 04 || X || Y (65 bytes). Required with DAPRequired; PUT KEY
	// with KVN '73' can also set or replace it later.
	DAPKey []byte
}

// TestKey is the well-known GlobalPlatform test key 40..4F (GPCS v2.3.1
// does not define it; it is the de facto default of development cards).
// Never use it on a card that holds value.
var TestKey = []byte{0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F}

// DefaultKeyVersion is the KVN of the key set DefaultParams installs.
const DefaultKeyVersion = 0x01

// DefaultParams returns development parameters: one AES-128 key set of the
// test key under KVN 01, i = '70' (pseudo-random challenges, R-MAC and
// R-ENCRYPTION), a sample CPLC, IIN and CIN, and no DAP requirement.
func DefaultParams() Params {
	key := func() scp03.Key { return append(scp03.Key(nil), TestKey...) }
	cplc := gp.CPLC{
		ICFabricator:      [2]byte{0x56, 0x43}, // "VC", not a registered fabricator code
		ICType:            [2]byte{0x00, 0x01},
		OSID:              [2]byte{0x56, 0x43},
		OSReleaseDate:     [2]byte{0x60, 0x01}, // YDDD
		OSReleaseLevel:    [2]byte{0x01, 0x00},
		ICFabricationDate: [2]byte{0x60, 0x01},
		ICSerialNumber:    [4]byte{0x00, 0x00, 0x00, 0x01},
	}.Value()
	return Params{
		CPLC: cplc,
		IIN:  []byte{0x42, 0x56, 0x43}, // illustrative, not a registered IIN
		CIN:  []byte{0x45, 0x00, 0x00, 0x00, 0x00, 0x01},
		KDD:  []byte{0x00, 0x00, 0x56, 0x43, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00},
		I:    0x70,
		KeySets: []scp03.KeySet{{
			Version: DefaultKeyVersion,
			Keys:    scp03.StaticKeys{ENC: key(), MAC: key(), DEK: key()},
		}},
	}
}

// Bytes encodes the parameters as a BER-TLV list (in this order; every
// object but A0 at most once):
//
//	9F7F 2A <CPLC>                  optional
//	42 L <IIN>                      optional
//	45 L <CIN>                      optional
//	CF 0A <KDD>                     optional, default 10 × '00'
//	80 01 <i>                       optional, default '70'
//	81 01 <01: DAP required>        optional, default '00'
//	82 41 <DAP public key>          optional; required with 81 01 01
//	A0 L { 80 01 KVN  81 L Key-ENC  82 L Key-MAC  83 L Key-DEK }   one per key set, ≥ 1
//
// Note that Bytes always writes "i", so the zero Params encode i = '00';
// only an absent 80 object means '70'. Bytes checks the parameters like
// ParseParams does.
func (p Params) Bytes() ([]byte, error) {
	if err := p.check(true); err != nil {
		return nil, err
	}
	return p.encode()
}

func (p Params) encode() ([]byte, error) {
	var list []tlv.TLV
	add := func(tag tlv.Tag, v []byte) {
		if v != nil {
			list = append(list, tlv.TLV{Tag: tag, Value: v})
		}
	}
	add(tagCPLC, p.CPLC)
	add(tagIIN, p.IIN)
	add(tagCIN, p.CIN)
	add(tagKDD, p.KDD)
	add(tagIParam, []byte{byte(p.I)})
	if p.DAPRequired {
		add(tagDAP, []byte{0x01})
	}
	add(tagDAPKey, p.DAPKey)
	for _, ks := range p.KeySets {
		list = append(list, tlv.TLV{Tag: tagKeySet, Children: []tlv.TLV{
			{Tag: tagKeyVersion, Value: []byte{ks.Version}},
			{Tag: tagKeyENC, Value: []byte(ks.Keys.ENC)},
			{Tag: tagKeyMAC, Value: []byte(ks.Keys.MAC)},
			{Tag: tagKeyDEK, Value: []byte(ks.Keys.DEK)},
		}})
	}
	b, err := tlv.EncodeList(list)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParams, err)
	}
	return b, nil
}

// String describes the parameters with the keys masked.
func (p Params) String() string {
	s := fmt.Sprintf("{CPLC: %X IIN: %X CIN: %X KDD: %X I: %02X DAPRequired: %t KeySets: [", p.CPLC, p.IIN, p.CIN, p.KDD, byte(p.I), p.DAPRequired)
	for i, ks := range p.KeySets {
		if i > 0 {
			s += " "
		}
		s += ks.String()
	}
	return s + "]}"
}

// Format masks the keys for every fmt verb.
func (p Params) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// check validates the parameters; requireKeys is false for the stored
// configuration, which keeps the key sets in records of their own.
func (p Params) check(requireKeys bool) error {
	if p.CPLC != nil && len(p.CPLC) != CPLCLen {
		return fmt.Errorf("%w: CPLC of %d bytes, want %d", ErrParams, len(p.CPLC), CPLCLen)
	}
	if p.KDD != nil && len(p.KDD) != KDDLen {
		return fmt.Errorf("%w: KDD of %d bytes, want %d", ErrParams, len(p.KDD), KDDLen)
	}
	if len(p.IIN) > 127 || len(p.CIN) > 127 {
		return fmt.Errorf("%w: IIN or CIN longer than 127 bytes", ErrParams)
	}
	if !p.I.Valid() {
		return fmt.Errorf("%w: SCP03 i parameter %02X", ErrParams, byte(p.I))
	}
	if p.DAPRequired && len(p.DAPKey) == 0 {
		return fmt.Errorf("%w: DAP required without a DAP key", ErrParams)
	}
	if p.DAPKey != nil {
		if _, err := gp.ParseP256(p.DAPKey); err != nil {
			return fmt.Errorf("%w: DAP key: %w", ErrParams, err)
		}
	}
	if requireKeys && len(p.KeySets) == 0 {
		return fmt.Errorf("%w: no SCP03 key set", ErrParams)
	}
	if len(p.KeySets) > MaxKeySets {
		return fmt.Errorf("%w: %d key sets, at most %d", ErrParams, len(p.KeySets), MaxKeySets)
	}
	seen := map[byte]bool{}
	for _, ks := range p.KeySets {
		if ks.Version == 0 || ks.Version > 0x7F {
			return fmt.Errorf("%w: key version %02X outside 01..7F", ErrParams, ks.Version)
		}
		if seen[ks.Version] {
			return fmt.Errorf("%w: key version %02X twice", ErrParams, ks.Version)
		}
		seen[ks.Version] = true
		if err := ks.Keys.Check(); err != nil {
			return fmt.Errorf("%w: key set %02X: %w", ErrParams, ks.Version, err)
		}
	}
	return nil
}

// ParseParams decodes creation parameters encoded by Params.Bytes.
// Unknown or repeated objects are refused.
func ParseParams(b []byte) (Params, error) { return parseParams(b, true) }

func parseParams(b []byte, requireKeys bool) (Params, error) {
	p := Params{I: 0x70}
	list, err := tlv.Parse(b)
	if err != nil {
		return Params{}, fmt.Errorf("%w: %w", ErrParams, err)
	}
	seen := map[tlv.Tag]bool{}
	for _, o := range list {
		if o.Tag != tagKeySet {
			if seen[o.Tag] {
				return Params{}, fmt.Errorf("%w: tag %s twice", ErrParams, o.Tag)
			}
			seen[o.Tag] = true
		}
		v := bytes.Clone(o.Value)
		switch o.Tag {
		case tagCPLC:
			p.CPLC = v
		case tagIIN:
			p.IIN = v
		case tagCIN:
			p.CIN = v
		case tagKDD:
			p.KDD = v
		case tagIParam:
			if len(v) != 1 {
				return Params{}, fmt.Errorf("%w: i parameter of %d bytes", ErrParams, len(v))
			}
			p.I = scp03.IParam(v[0])
		case tagDAP:
			if len(v) != 1 || v[0] > 1 {
				return Params{}, fmt.Errorf("%w: DAP requirement %X", ErrParams, v)
			}
			p.DAPRequired = v[0] == 1
		case tagDAPKey:
			p.DAPKey = v
		case tagKeySet:
			ks, err := parseKeySetTemplate(o)
			if err != nil {
				return Params{}, err
			}
			p.KeySets = append(p.KeySets, ks)
		default:
			return Params{}, fmt.Errorf("%w: unknown tag %s", ErrParams, o.Tag)
		}
	}
	if err := p.check(requireKeys); err != nil {
		return Params{}, err
	}
	return p, nil
}

func parseKeySetTemplate(o tlv.TLV) (scp03.KeySet, error) {
	var ks scp03.KeySet
	var have [4]bool
	for _, c := range o.Children {
		i := int(c.Tag) - int(tagKeyVersion)
		if c.Tag < tagKeyVersion || c.Tag > tagKeyDEK || have[i] {
			return ks, fmt.Errorf("%w: key set template: unexpected or repeated tag %s", ErrParams, c.Tag)
		}
		have[i] = true
		switch c.Tag {
		case tagKeyVersion:
			if len(c.Value) != 1 {
				return ks, fmt.Errorf("%w: key version of %d bytes", ErrParams, len(c.Value))
			}
			ks.Version = c.Value[0]
		case tagKeyENC:
			ks.Keys.ENC = bytes.Clone(c.Value)
		case tagKeyMAC:
			ks.Keys.MAC = bytes.Clone(c.Value)
		case tagKeyDEK:
			ks.Keys.DEK = bytes.Clone(c.Value)
		}
	}
	if have != [4]bool{true, true, true, true} {
		return ks, fmt.Errorf("%w: key set template needs 80, 81, 82 and 83", ErrParams)
	}
	return ks, nil
}
