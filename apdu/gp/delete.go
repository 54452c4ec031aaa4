package gp

import (
	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// DELETE P2 values (GPCS §11.2.2.2, Table 11-21).
const (
	DeleteObject           byte = 0x00 // the object only
	DeleteObjectAndRelated byte = 0x80 // a load file and its applications, or an SD and its associated content
)

// Delete is the data of a DELETE command (GPCS §11.2.2.3): either a card
// content object named by AID ('4F', Table 11-22) or keys selected by key
// identifier ('D0') and/or key version number ('D2', Table 11-23), plus an
// optional Delegated Management control reference template ('B6') and
// token ('9E'), kept raw.
type Delete struct {
	AID []byte
	// KeyID and KeyVersion select keys when HasKeyID / HasKeyVersion.
	KeyID, KeyVersion       byte
	HasKeyID, HasKeyVersion bool
	ControlReference        []byte // value of 'B6'
	Token                   []byte // value of '9E'
}

// Bytes encodes the data field: 4F L AID, or D0 01 id and/or D2 01 kvn,
// then B6 and 9E when present.
func (d Delete) Bytes() ([]byte, error) {
	var list []tlv.TLV
	if len(d.AID) > 0 {
		list = append(list, tlv.TLV{Tag: TagAID, Value: d.AID})
	}
	if d.HasKeyID {
		list = append(list, tlv.TLV{Tag: TagDeleteKeyID, Value: []byte{d.KeyID}})
	}
	if d.HasKeyVersion {
		list = append(list, tlv.TLV{Tag: TagDeleteKeyVersion, Value: []byte{d.KeyVersion}})
	}
	if len(d.ControlReference) > 0 {
		list = append(list, tlv.TLV{Tag: TagControlReference, Value: d.ControlReference})
	}
	if len(d.Token) > 0 {
		list = append(list, tlv.TLV{Tag: TagToken, Value: d.Token})
	}
	out, err := tlv.EncodeList(list)
	if err != nil {
		return nil, errorf(ErrTooLong, "DELETE data: %w", err)
	}
	return out, nil
}

// Validate checks GPCS §11.2.2.3: an AID of 5 to 16 bytes, or at least one
// key selector, not both.
func (d Delete) Validate() error {
	keys := d.HasKeyID || d.HasKeyVersion
	switch {
	case len(d.AID) > 0 && keys:
		return errorf(ErrMalformed, "DELETE names both an AID and keys")
	case len(d.AID) > 0:
		return checkAID("AID to delete", d.AID)
	case !keys:
		return errorf(ErrMalformed, "DELETE names neither an AID nor keys")
	}
	return nil
}

// Command builds DELETE (GPCS §11.2): CLA '80', INS 'E4', P1 '00', P2
// DeleteObject or DeleteObjectAndRelated, Le '00'.
func (d Delete) Command(related bool) (apdu.Command, error) {
	data, err := d.Bytes()
	if err != nil {
		return apdu.Command{}, err
	}
	p2 := DeleteObject
	if related {
		p2 = DeleteObjectAndRelated
	}
	return apdu.Command{CLA: CLA, INS: INSDelete, P1: 0x00, P2: p2, Data: data, Ne: apdu.MaxShortNe}, nil
}

// ParseDelete decodes and validates a DELETE data field. Tags other than
// 4F, D0, D2, B6 and 9E, repeated tags and key selectors that are not one
// byte are refused.
func ParseDelete(data []byte) (Delete, error) {
	list, err := tlv.Parse(data)
	if err != nil {
		return Delete{}, errorf(ErrMalformed, "DELETE data: %w", err)
	}
	var d Delete
	seen := map[tlv.Tag]bool{}
	for _, t := range list {
		if seen[t.Tag] {
			return Delete{}, errorf(ErrMalformed, "DELETE data repeats tag %s", t.Tag)
		}
		seen[t.Tag] = true
		switch t.Tag {
		case TagAID:
			if len(t.Value) == 0 {
				return Delete{}, errorf(ErrBadAID, "empty AID to delete")
			}
			d.AID = t.Value
		case TagDeleteKeyID, TagDeleteKeyVersion:
			if len(t.Value) != 1 {
				return Delete{}, errorf(ErrMalformed, "tag %s of %d bytes, want 1", t.Tag, len(t.Value))
			}
			if t.Tag == TagDeleteKeyID {
				d.KeyID, d.HasKeyID = t.Value[0], true
			} else {
				d.KeyVersion, d.HasKeyVersion = t.Value[0], true
			}
		case TagControlReference:
			d.ControlReference = t.Value
		case TagToken:
			d.Token = t.Value
		default:
			return Delete{}, errorf(ErrMalformed, "DELETE data: unexpected tag %s", t.Tag)
		}
	}
	if err := d.Validate(); err != nil {
		return Delete{}, err
	}
	return d, nil
}
