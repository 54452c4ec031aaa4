package atr

import (
	"bytes"
	"fmt"
)

// Category indicators: the first historical byte (ISO/IEC 7816-4 §8.1.1.1).
const (
	// CategoryStatusLast: compact-TLV objects, then a mandatory 3-byte status
	// indicator (LCS, SW1, SW2) as the last three historical bytes.
	CategoryStatusLast byte = 0x00
	// CategoryDIR: the next byte is a DIR data reference.
	CategoryDIR byte = 0x10
	// CategoryCompactTLV: compact-TLV objects follow, the status indicator
	// (if any) being one of them.
	CategoryCompactTLV byte = 0x80
)

// Compact-TLV tag numbers (ISO/IEC 7816-4 §8.1.1.2). Compact tag n stands
// for the BER-TLV tag 4n of the interindustry application class.
const (
	TagCountryCode   byte = 0x1
	TagIssuerID      byte = 0x2
	TagServiceData   byte = 0x3
	TagInitialAccess byte = 0x4
	TagIssuerData    byte = 0x5
	TagPreIssuing    byte = 0x6
	TagCapabilities  byte = 0x7
	TagStatus        byte = 0x8
	TagApplicationID byte = 0xF
)

// pcscRID is the registered application provider identifier of the PC/SC
// Workgroup, which heads the AID in the historical bytes of contactless
// storage cards; the AID goes on with the standard byte and two card name
// bytes.
var pcscRID = []byte{0xA0, 0x00, 0x00, 0x03, 0x06}

const pcscStorageAIDSize = 8

// CompactTLV is one compact-TLV data object of the historical bytes: a tag
// number (the high nibble of its first byte) and a value of up to 15 bytes.
type CompactTLV struct {
	Tag   byte
	Value []byte
}

// StorageCard is the identification a PC/SC Part 3 reader puts in the
// historical bytes of a memory card without ISO 14443-4 (80 4F 0C A0 00 00
// 03 06 SS NN NN 00 00 00 00; PC/SC Part 3 §3.1.3.2.3).
type StorageCard struct {
	Standard byte   // SS: which standard and layer the card follows
	Name     uint16 // NN NN: card name registered with PC/SC
}

// Historical is the decoded form of the historical bytes.
type Historical struct {
	// Raw holds all the historical bytes; Category is Raw[0] and is
	// meaningless when Raw is empty.
	Raw      []byte
	Category byte
	// Objects are the compact-TLV objects (categories 00 and 80; the PC/SC
	// storage-card AID appears here with TagApplicationID).
	Objects []CompactTLV
	// Status is the status indicator: the last three bytes for category
	// 00, the value of a tag 8 object for category 80. One byte is a life
	// cycle status, two a status word, three both.
	Status []byte
	// Data holds the DIR data reference for category 10 and everything
	// after the category byte for proprietary or RFU categories.
	Data []byte
	// Storage is set for a PC/SC Part 3 contactless storage card.
	Storage *StorageCard
}

// ParseHistorical decodes historical bytes per ISO/IEC 7816-4 §8.1.1.
// Malformed objects give an error wrapping ErrTruncated; the Historical
// returned with it holds what was decoded before the fault.
func ParseHistorical(b []byte) (*Historical, error) {
	h := &Historical{Raw: b}
	if len(b) == 0 {
		return h, nil
	}
	h.Category = b[0]
	switch h.Category {
	case CategoryStatusLast:
		if len(b) < 4 {
			return h, fmt.Errorf("%w: category 00 needs a 3-byte status indicator, %d bytes follow", ErrTruncated, len(b)-1)
		}
		h.Status = b[len(b)-3:]
		return h, h.parseObjects(b[1 : len(b)-3])
	case CategoryCompactTLV:
		body := b[1:]
		// PC/SC Part 3 writes the storage-card AID as the BER-TLV 4F 0C ...
		// rather than compact-TLV F-tagged. Read it that way only when the
		// compact reading (tag 4, 15 bytes) cannot fit, so that genuine
		// initial access data objects are left alone.
		if len(body) >= 2 && body[0] == 0x4F && len(body) < 16 && int(body[1]) <= len(body)-2 {
			aid := body[2 : 2+int(body[1])]
			h.Objects = append(h.Objects, CompactTLV{Tag: TagApplicationID, Value: aid})
			if len(aid) >= pcscStorageAIDSize && bytes.Equal(aid[:len(pcscRID)], pcscRID) {
				h.Storage = &StorageCard{Standard: aid[5], Name: uint16(aid[6])<<8 | uint16(aid[7])}
			}
			body = body[2+len(aid):]
		}
		if err := h.parseObjects(body); err != nil {
			return h, err
		}
		if v, ok := h.Find(TagStatus); ok {
			h.Status = v
		}
		return h, nil
	default:
		// Category 10 (DIR data reference), 81..8F (RFU) and every other
		// value (proprietary) carry no structure this package knows.
		h.Data = b[1:]
		return h, nil
	}
}

func (h *Historical) parseObjects(b []byte) error {
	for i := 0; i < len(b); {
		tag, n := b[i]>>4, int(b[i]&0x0F)
		if len(b)-i-1 < n {
			return fmt.Errorf("%w: compact-TLV %02X needs %d bytes, %d left", ErrTruncated, b[i], n, len(b)-i-1)
		}
		h.Objects = append(h.Objects, CompactTLV{Tag: tag, Value: b[i+1 : i+1+n]})
		i += 1 + n
	}
	return nil
}

// Find returns the value of the first compact-TLV object with the tag.
func (h *Historical) Find(tag byte) ([]byte, bool) {
	for _, o := range h.Objects {
		if o.Tag == tag {
			return o.Value, true
		}
	}
	return nil, false
}

// Capabilities returns the card capabilities object (compact tag 7), if any.
func (h *Historical) Capabilities() (Capabilities, bool) {
	v, ok := h.Find(TagCapabilities)
	return Capabilities(v), ok
}

// Capabilities is the value of the card capabilities object: up to three
// software function tables (ISO/IEC 7816-4 §8.1.1.2.7).
// Absent tables read as zero.
type Capabilities []byte

func (c Capabilities) table(i int) byte {
	if i < len(c) {
		return c[i]
	}
	return 0
}

// Selection returns the first software function table: the DF selection
// methods (b8 full DF name, b7 partial DF name, b6 path, b5 file
// identifier, b4 implicit) and EF addressing (b3 short EF identifier, b2
// record number, b1 record identifier).
func (c Capabilities) Selection() byte { return c.table(0) }

// DataCoding returns the second software function table, the data coding
// byte (ISO/IEC 7816-4 §8.1.1.2.7).
func (c Capabilities) DataCoding() byte { return c.table(1) }

// CommandChaining reports b8 of the third table: the card accepts command
// chaining (CLA b5, ISO/IEC 7816-4 command chaining).
func (c Capabilities) CommandChaining() bool { return c.table(2)&0x80 != 0 }

// ExtendedLength reports b7 of the third table: the card accepts extended
// Lc and Le fields.
func (c Capabilities) ExtendedLength() bool { return c.table(2)&0x40 != 0 }

// LogicalChannels returns the number of logical channels the card supports
// (third table b5b4 assignment, b3b2b1 count - 1; 8 means eight or more),
// 1 when it supports only the basic channel.
func (c Capabilities) LogicalChannels() int {
	t := c.table(2)
	if t&0x18 == 0 {
		return 1
	}
	return int(t&0x07) + 1
}

// DecodeHistorical decodes the ATR's historical bytes with ParseHistorical.
func (a *ATR) DecodeHistorical() (*Historical, error) { return ParseHistorical(a.Historical) }
