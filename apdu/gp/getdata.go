package gp

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/valuechip/valuechip/apdu/tlv"
)

// CPLCLen is the length of the CPLC data value.
const CPLCLen = 42

// CPLC is the Card Production Life Cycle data returned by GET DATA '9F7F'
// (GPCS §11.3, Table 11-27 lists the tag; the 42-byte layout below is
// the one GP cards inherited from Visa's Open Platform card
// implementation). Dates are two bytes: the last digit of the year and the
// day of the year, BCD coded ("YDDD"): 6042 is day 42 of a year ending in
// 6, 11 February 2026 for example.
type CPLC struct {
	ICFabricator                  [2]byte
	ICType                        [2]byte
	OSID                          [2]byte // operating system identifier
	OSReleaseDate                 [2]byte
	OSReleaseLevel                [2]byte
	ICFabricationDate             [2]byte
	ICSerialNumber                [4]byte
	ICBatchIdentifier             [2]byte
	ICModuleFabricator            [2]byte
	ICModulePackagingDate         [2]byte
	ICCManufacturer               [2]byte
	ICEmbeddingDate               [2]byte
	ICPrePersonalizer             [2]byte
	ICPrePersonalizationDate      [2]byte
	ICPrePersonalizationEquipment [4]byte
	ICPersonalizer                [2]byte
	ICPersonalizationDate         [2]byte
	ICPersonalizationEquipment    [4]byte
}

// fields lists the CPLC fields in wire order with their names.
func (c *CPLC) fields() []struct {
	name string
	b    []byte
} {
	return []struct {
		name string
		b    []byte
	}{
		{"ic_fabricator", c.ICFabricator[:]},
		{"ic_type", c.ICType[:]},
		{"os_id", c.OSID[:]},
		{"os_release_date", c.OSReleaseDate[:]},
		{"os_release_level", c.OSReleaseLevel[:]},
		{"ic_fabrication_date", c.ICFabricationDate[:]},
		{"ic_serial_number", c.ICSerialNumber[:]},
		{"ic_batch_identifier", c.ICBatchIdentifier[:]},
		{"ic_module_fabricator", c.ICModuleFabricator[:]},
		{"ic_module_packaging_date", c.ICModulePackagingDate[:]},
		{"icc_manufacturer", c.ICCManufacturer[:]},
		{"ic_embedding_date", c.ICEmbeddingDate[:]},
		{"ic_pre_personalizer", c.ICPrePersonalizer[:]},
		{"ic_pre_personalization_date", c.ICPrePersonalizationDate[:]},
		{"ic_pre_personalization_equipment", c.ICPrePersonalizationEquipment[:]},
		{"ic_personalizer", c.ICPersonalizer[:]},
		{"ic_personalization_date", c.ICPersonalizationDate[:]},
		{"ic_personalization_equipment", c.ICPersonalizationEquipment[:]},
	}
}

// Value returns the 42-byte value.
func (c CPLC) Value() []byte {
	out := make([]byte, 0, CPLCLen)
	for _, f := range c.fields() {
		out = append(out, f.b...)
	}
	return out
}

// Bytes returns the GET DATA response data: 9F7F 2A <value>.
func (c CPLC) Bytes() []byte {
	return append([]byte{0x9F, 0x7F, CPLCLen}, c.Value()...)
}

// ParseCPLC decodes CPLC data, with or without the 9F7F header. Cards that
// append proprietary bytes after the 42 defined ones are accepted; the
// extra bytes are ignored.
func ParseCPLC(b []byte) (CPLC, error) {
	v := b
	if len(b) >= 2 && b[0] == 0x9F && b[1] == 0x7F {
		t, _, err := tlv.ParseOne(b)
		if err != nil {
			return CPLC{}, errorf(ErrMalformed, "CPLC: %w", err)
		}
		v = t.Value
	}
	if len(v) < CPLCLen {
		return CPLC{}, errorf(ErrMalformed, "CPLC of %d bytes, want %d", len(v), CPLCLen)
	}
	var c CPLC
	off := 0
	for _, f := range c.fields() {
		off += copy(f.b, v[off:])
	}
	return c, nil
}

// Fields returns the fields as name → upper-case hex, for display.
func (c CPLC) Fields() [][2]string {
	fs := c.fields()
	out := make([][2]string, len(fs))
	for i, f := range fs {
		out[i] = [2]string{f.name, strings.ToUpper(hex.EncodeToString(f.b))}
	}
	return out
}

// MarshalJSON renders the fields as an object of hex strings.
func (c CPLC) MarshalJSON() ([]byte, error) {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, f := range c.Fields() {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, "%q:%q", f[0], f[1])
	}
	sb.WriteByte('}')
	return []byte(sb.String()), nil
}

// UnmarshalJSON is the inverse of MarshalJSON; missing fields stay zero.
func (c *CPLC) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for _, f := range c.fields() {
		s, ok := m[f.name]
		if !ok {
			continue
		}
		v, err := hex.DecodeString(s)
		if err != nil || len(v) != len(f.b) {
			return errorf(ErrMalformed, "CPLC field %s: %q", f.name, s)
		}
		copy(f.b, v)
	}
	return nil
}

// KeyInfo is one key of the Key Information Template (GET DATA 'E0',
// GPCS §11.3.3.1, Table 11-29 basic format): 'C0' L key identifier, key
// version number, then a type and a length for each component.
type KeyInfo struct {
	ID         byte
	Version    byte
	Components []KeyInfoComponent
}

// KeyInfoComponent is one key type and length of a KeyInfo.
type KeyInfoComponent struct {
	Type   byte
	Length int
}

// String renders "key 01 version 30: AES-16".
func (k KeyInfo) String() string {
	parts := make([]string, len(k.Components))
	for i, c := range k.Components {
		parts[i] = fmt.Sprintf("%s-%d", KeyTypeName(c.Type), c.Length)
	}
	return fmt.Sprintf("key %02X version %02X: %s", k.ID, k.Version, strings.Join(parts, ", "))
}

// KeyTypeName names a key type byte (GPCS §11.1.8).
func KeyTypeName(t byte) string {
	switch t {
	case KeyTypeAES:
		return "AES"
	case 0x80:
		return "DES"
	case 0x82:
		return "3DES-CBC"
	case KeyTypeECCPublic:
		return "ECC-public"
	case 0xB1:
		return "ECC-private"
	case KeyTypeECCParams:
		return "ECC-params"
	case 0xA0, 0xA1:
		return "RSA-public"
	}
	return fmt.Sprintf("type-%02X", t)
}

// EncodeKeyInfo builds the Key Information Template: E0 { C0 ... }.
// Component lengths of 256 or more need the extended format and are
// refused.
func EncodeKeyInfo(keys []KeyInfo) ([]byte, error) {
	var kids []tlv.TLV
	for _, k := range keys {
		v := []byte{k.ID, k.Version}
		for _, c := range k.Components {
			if c.Length < 0 || c.Length > 0xFF {
				return nil, errorf(ErrTooLong, "key component length %d", c.Length)
			}
			v = append(v, c.Type, byte(c.Length))
		}
		kids = append(kids, tlv.TLV{Tag: 0xC0, Value: v})
	}
	value, err := tlv.EncodeList(kids)
	if err != nil {
		return nil, errorf(ErrTooLong, "key information: %w", err)
	}
	out, err := tlv.Encode(TagKeyInfo, value)
	if err != nil {
		return nil, errorf(ErrTooLong, "key information: %w", err)
	}
	return out, nil
}

// ParseKeyInfo decodes a Key Information Template (with or without the E0
// header). The extended format ('FF' type bytes) wraps ErrUnsupported.
func ParseKeyInfo(b []byte) ([]KeyInfo, error) {
	list, err := tlv.Parse(b)
	if err != nil {
		return nil, errorf(ErrMalformed, "key information: %w", err)
	}
	if len(list) == 1 && list[0].Tag == TagKeyInfo {
		if list, err = tlv.Parse(list[0].Value); err != nil {
			return nil, errorf(ErrMalformed, "key information: %w", err)
		}
	}
	var out []KeyInfo
	for _, t := range list {
		if t.Tag != 0xC0 {
			return nil, errorf(ErrMalformed, "key information: tag %s, want C0", t.Tag)
		}
		v := t.Value
		if len(v) < 2 {
			return nil, errorf(ErrMalformed, "key information entry of %d bytes", len(v))
		}
		k := KeyInfo{ID: v[0], Version: v[1]}
		comps := v[2:]
		for len(comps) > 0 {
			if comps[0] == KeyTypeExtended {
				return nil, errorf(ErrUnsupported, "extended key information format")
			}
			if len(comps) < 2 {
				return nil, errorf(ErrMalformed, "key %02X/%02X: truncated component", k.ID, k.Version)
			}
			k.Components = append(k.Components, KeyInfoComponent{Type: comps[0], Length: int(comps[1])})
			comps = comps[2:]
		}
		out = append(out, k)
	}
	return out, nil
}

// Card recognition data object identifiers (GPCS Annex H.2): all under
// {iso(1) member-body(2) us(840) globalPlatform(114283)}, DER 2A864886FC6B.
var (
	oidGP           = []byte{0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B}
	oidRecognition  = append(clone(oidGP), 0x01) // card recognition data
	oidCardMgmt     = append(clone(oidGP), 0x02) // + version arcs
	oidCardIDScheme = append(clone(oidGP), 0x03)
	oidSCP          = append(clone(oidGP), 0x04) // + SCP id, i
)

// SCPInfo is one secure channel protocol a card announces.
type SCPInfo struct {
	ID byte // '03' for SCP03
	I  byte // the "i" implementation option
}

// CardData is the part of the card recognition data (GET DATA '66',
// GPCS Annex H.2, Table H-1) that hosts use: the GlobalPlatform version of
// the card manager and the secure channel protocols. Objects this package
// does not interpret are kept in Extra.
type CardData struct {
	// Version is the card management type and version, as OID arcs after
	// globalPlatform 2: {2, 3, 1} for GP 2.3.1.
	Version []byte
	SCPs    []SCPInfo
	Extra   []tlv.TLV
}

// VersionString renders Version as "2.3.1".
func (c CardData) VersionString() string {
	parts := make([]string, len(c.Version))
	for i, v := range c.Version {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ".")
}

// Bytes encodes 66 { 73 { 06 <recognition OID>, 60 { 06 <GP 2 version> },
// 63 { 06 <card identification scheme> }, 64 { 06 <GP 4 scp i> }... } }.
// Version arcs and SCP values must be below 128 (one OID byte each).
func (c CardData) Bytes() ([]byte, error) {
	oid := func(prefix []byte, arcs ...byte) tlv.TLV {
		return tlv.TLV{Tag: 0x06, Value: append(clone(prefix), arcs...)}
	}
	for _, v := range c.Version {
		if v >= 0x80 {
			return nil, errorf(ErrTooLong, "version arc %d", v)
		}
	}
	kids := []tlv.TLV{
		oid(oidRecognition),
		{Tag: 0x60, Children: []tlv.TLV{oid(oidCardMgmt, c.Version...)}},
		{Tag: 0x63, Children: []tlv.TLV{oid(oidCardIDScheme)}},
	}
	for _, s := range c.SCPs {
		if s.ID >= 0x80 || s.I >= 0x80 {
			return nil, errorf(ErrTooLong, "SCP %02X i %02X", s.ID, s.I)
		}
		kids = append(kids, tlv.TLV{Tag: 0x64, Children: []tlv.TLV{oid(oidSCP, s.ID, s.I)}})
	}
	kids = append(kids, c.Extra...)
	out, err := tlv.TLV{Tag: TagCardData, Children: []tlv.TLV{{Tag: 0x73, Children: kids}}}.Bytes()
	if err != nil {
		return nil, errorf(ErrTooLong, "card data: %w", err)
	}
	return out, nil
}

// ParseCardData decodes card recognition data: 66 { 73 { ... } }, or the
// bare 73 template.
func ParseCardData(b []byte) (CardData, error) {
	list, err := tlv.Parse(b)
	if err != nil {
		return CardData{}, errorf(ErrMalformed, "card data: %w", err)
	}
	rec, ok := tlv.Find(list, TagCardData, 0x73)
	if !ok {
		if rec, ok = tlv.Find(list, 0x73); !ok {
			return CardData{}, errorf(ErrMalformed, "card data lacks the 73 template")
		}
	}
	if len(rec.Children) == 0 && len(rec.Value) > 0 {
		return CardData{}, errorf(ErrMalformed, "card data template does not parse")
	}
	var c CardData
	for _, t := range rec.Children {
		oidOf := func() ([]byte, bool) {
			if o, ok := tlv.Find(t.Children, 0x06); ok {
				return o.Value, true
			}
			return nil, false
		}
		switch t.Tag {
		case 0x06:
			// the recognition data OID itself
		case 0x60:
			o, ok := oidOf()
			if !ok || !hasPrefix(o, oidCardMgmt) {
				return CardData{}, errorf(ErrMalformed, "card management type OID")
			}
			c.Version = clone(o[len(oidCardMgmt):])
		case 0x64:
			o, ok := oidOf()
			if !ok || !hasPrefix(o, oidSCP) || len(o) != len(oidSCP)+2 {
				return CardData{}, errorf(ErrMalformed, "secure channel protocol OID")
			}
			c.SCPs = append(c.SCPs, SCPInfo{ID: o[len(oidSCP)], I: o[len(oidSCP)+1]})
		case 0x63:
			// card identification scheme: nothing to keep
		default:
			c.Extra = append(c.Extra, t)
		}
	}
	return c, nil
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}
