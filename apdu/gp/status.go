package gp

import (
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// GET STATUS P1: which part of the registry (GPCS §11.4.2.1, Table 11-32).
const (
	StatusISD              byte = 0x80 // the Issuer Security Domain
	StatusApplications     byte = 0x40 // applications and supplementary security domains
	StatusLoadFiles        byte = 0x20 // executable load files
	StatusLoadFilesModules byte = 0x10 // executable load files and their executable modules
)

// GET STATUS P2 (GPCS Table 11-33): b2 selects the TLV response format of
// GP 2.2 (the only one this package handles), b1 asks for the next
// occurrences after a '6310' answer.
const (
	StatusFirst byte = 0x02 // TLV format, first or all occurrences
	StatusNext  byte = 0x03 // TLV format, next occurrences
)

// GetStatusRequest is a GET STATUS command (GPCS §11.4.2).
type GetStatusRequest struct {
	// P1 is one of the Status* values.
	P1 byte
	// Next asks for the occurrences after those already returned (the
	// previous answer was '6310').
	Next bool
	// AID is the search qualifier: entries whose AID starts with it;
	// empty matches every entry.
	AID []byte
	// TagList is the optional '5C' tag list (GPCS Table 11-34), raw.
	TagList []byte
}

// Command builds the command: CLA '80', INS 'F2', P1, P2 '02' or '03',
// data 4F L AID [5C L tags], Le '00'.
func (r GetStatusRequest) Command() (apdu.Command, error) {
	data, err := tlv.Encode(TagAID, r.AID)
	if err != nil || len(r.AID) > MaxAIDLen {
		return apdu.Command{}, errorf(ErrBadAID, "GET STATUS search AID of %d bytes", len(r.AID))
	}
	if len(r.TagList) > 0 {
		tl, err := tlv.Encode(TagTagList, r.TagList)
		if err != nil {
			return apdu.Command{}, errorf(ErrTooLong, "GET STATUS tag list: %w", err)
		}
		data = append(data, tl...)
	}
	p2 := StatusFirst
	if r.Next {
		p2 = StatusNext
	}
	return apdu.Command{CLA: CLA, INS: INSGetStatus, P1: r.P1, P2: p2, Data: data, Ne: apdu.MaxShortNe}, nil
}

// ParseGetStatusRequest decodes a GET STATUS command as the card receives
// it. P1 must name exactly one registry part and P2 the TLV format; the
// data must hold '4F' (GPCS §11.4.2.3: the search criteria are mandatory)
// and may hold '5C'.
func ParseGetStatusRequest(p1, p2 byte, data []byte) (GetStatusRequest, error) {
	var r GetStatusRequest
	switch p1 {
	case StatusISD, StatusApplications, StatusLoadFiles, StatusLoadFilesModules:
		r.P1 = p1
	default:
		return r, errorf(ErrMalformed, "GET STATUS P1 %02X", p1)
	}
	switch p2 {
	case StatusFirst:
	case StatusNext:
		r.Next = true
	case 0x00, 0x01:
		return r, errorf(ErrUnsupported, "GET STATUS P2 %02X asks for the deprecated non-TLV format", p2)
	default:
		return r, errorf(ErrMalformed, "GET STATUS P2 %02X", p2)
	}
	list, err := tlv.Parse(data)
	if err != nil {
		return r, errorf(ErrMalformed, "GET STATUS data: %w", err)
	}
	haveAID := false
	for _, t := range list {
		switch t.Tag {
		case TagAID:
			if haveAID || len(t.Value) > MaxAIDLen {
				return r, errorf(ErrMalformed, "GET STATUS search AID")
			}
			haveAID, r.AID = true, t.Value
		case TagTagList:
			r.TagList = t.Value
		default:
			return r, errorf(ErrMalformed, "GET STATUS data: unexpected tag %s", t.Tag)
		}
	}
	if !haveAID {
		return r, errorf(ErrMalformed, "GET STATUS data lacks the 4F search criterion")
	}
	return r, nil
}

// RegistryEntry is one 'E3' template of a GET STATUS response (GPCS
// §11.4.3.1, Table 11-36). Applications and security domains carry
// Privileges, and may carry ImplicitSelection, LoadFileAID and
// SecurityDomainAID; load files carry Version and, for P1 '10', Modules.
type RegistryEntry struct {
	AID               []byte   // '4F'
	LifeCycle         byte     // '9F70'
	Privileges        []byte   // 'C5', 1 or 3 bytes (raw, as the card sent it)
	ImplicitSelection [][]byte // 'CF', one per implicit selection parameter
	LoadFileAID       []byte   // 'C4', the application's executable load file
	Version           []byte   // 'CE', the load file's version number
	Modules           [][]byte // '84', executable module AIDs
	SecurityDomainAID []byte   // 'CC', the associated security domain
	// Extra holds objects this package does not interpret (e.g. 'EA'),
	// re-encoded after the known ones.
	Extra []tlv.TLV
}

// Privs returns the privileges, zero when absent or malformed.
func (e RegistryEntry) Privs() Privileges {
	p, _ := ParsePrivileges(e.Privileges)
	return p
}

// Bytes encodes the entry as E3 { 4F, 9F70, C5, CF..., C4, CE, 84..., CC,
// extra }.
func (e RegistryEntry) Bytes() ([]byte, error) {
	kids := []tlv.TLV{{Tag: TagAID, Value: e.AID}, {Tag: TagLifeCycle, Value: []byte{e.LifeCycle}}}
	if len(e.Privileges) > 0 {
		kids = append(kids, tlv.TLV{Tag: TagPrivileges, Value: e.Privileges})
	}
	for _, cf := range e.ImplicitSelection {
		kids = append(kids, tlv.TLV{Tag: TagImplicitSelection, Value: cf})
	}
	if len(e.LoadFileAID) > 0 {
		kids = append(kids, tlv.TLV{Tag: TagExecutableLoadFile, Value: e.LoadFileAID})
	}
	if len(e.Version) > 0 {
		kids = append(kids, tlv.TLV{Tag: TagVersion, Value: e.Version})
	}
	for _, m := range e.Modules {
		kids = append(kids, tlv.TLV{Tag: TagModuleAID, Value: m})
	}
	if len(e.SecurityDomainAID) > 0 {
		kids = append(kids, tlv.TLV{Tag: TagAssociatedSD, Value: e.SecurityDomainAID})
	}
	kids = append(kids, e.Extra...)
	value, err := tlv.EncodeList(kids)
	if err != nil {
		return nil, errorf(ErrTooLong, "registry entry: %w", err)
	}
	out, err := tlv.Encode(TagRegistryEntry, value)
	if err != nil {
		return nil, errorf(ErrTooLong, "registry entry: %w", err)
	}
	return out, nil
}

// EncodeStatus encodes entries back to back, as one GET STATUS response
// data field.
func EncodeStatus(entries []RegistryEntry) ([]byte, error) {
	var out []byte
	for _, e := range entries {
		b, err := e.Bytes()
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// StatusPage encodes entries from index start for one response of at most
// max data bytes and returns the index of the first entry left out
// (len(entries) when all fit). A card answers '6310' when next <
// len(entries) and continues at next on GET STATUS with P2 '03' (GPCS
// §11.4.2.2). An entry larger than max on its own is an error.
func StatusPage(entries []RegistryEntry, start, max int) (data []byte, next int, err error) {
	if start < 0 || start > len(entries) {
		return nil, 0, errorf(ErrMalformed, "page start %d of %d entries", start, len(entries))
	}
	for next = start; next < len(entries); next++ {
		b, err := entries[next].Bytes()
		if err != nil {
			return nil, 0, err
		}
		if len(data)+len(b) > max {
			if next == start {
				return nil, 0, errorf(ErrTooLong, "registry entry of %d bytes exceeds a %d-byte response", len(b), max)
			}
			break
		}
		data = append(data, b...)
	}
	return data, next, nil
}

// ParseStatus decodes a GET STATUS response data field: a sequence of 'E3'
// templates, each with a 4F AID and a 9F70 life cycle state. Unknown tags
// inside a template go to Extra; anything but 'E3' at the top level is an
// error.
func ParseStatus(data []byte) ([]RegistryEntry, error) {
	list, err := tlv.Parse(data)
	if err != nil {
		return nil, errorf(ErrMalformed, "GET STATUS response: %w", err)
	}
	out := make([]RegistryEntry, 0, len(list))
	for i, t := range list {
		if t.Tag != TagRegistryEntry {
			return nil, errorf(ErrMalformed, "GET STATUS response object %d has tag %s, want E3", i+1, t.Tag)
		}
		e, err := parseEntry(t)
		if err != nil {
			return nil, errorf(ErrMalformed, "GET STATUS entry %d: %v", i+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

func parseEntry(t tlv.TLV) (RegistryEntry, error) {
	kids, err := tlv.Parse(t.Value)
	if err != nil {
		return RegistryEntry{}, err
	}
	var e RegistryEntry
	haveAID, haveLC := false, false
	for _, k := range kids {
		switch k.Tag {
		case TagAID:
			if haveAID {
				return e, fmt.Errorf("repeated 4F")
			}
			haveAID, e.AID = true, k.Value
		case TagLifeCycle:
			// One byte (Table 11-36); some GP 2.1 cards send two, the
			// first being the state.
			if haveLC || len(k.Value) < 1 || len(k.Value) > 2 {
				return e, fmt.Errorf("life cycle of %d bytes", len(k.Value))
			}
			haveLC, e.LifeCycle = true, k.Value[0]
		case TagPrivileges:
			if _, err := ParsePrivileges(k.Value); err != nil {
				return e, fmt.Errorf("privileges of %d bytes", len(k.Value))
			}
			e.Privileges = k.Value
		case TagImplicitSelection:
			e.ImplicitSelection = append(e.ImplicitSelection, k.Value)
		case TagExecutableLoadFile:
			e.LoadFileAID = k.Value
		case TagVersion:
			e.Version = k.Value
		case TagModuleAID:
			e.Modules = append(e.Modules, k.Value)
		case TagAssociatedSD:
			e.SecurityDomainAID = k.Value
		default:
			e.Extra = append(e.Extra, k)
		}
	}
	if !haveAID || !haveLC {
		return e, fmt.Errorf("entry lacks 4F or 9F70")
	}
	return e, nil
}

// SET STATUS P1: the status type (GPCS §11.10.2.1, Table 11-64).
const (
	SetStatusISD       byte = 0x80 // the card life cycle (via the ISD)
	SetStatusApp       byte = 0x40 // an application or supplementary security domain
	SetStatusSDAndApps byte = 0x60 // a security domain and its associated applications
	SetStatusLockApp   byte = 0x80 // P2 for SetStatusApp: lock
	SetStatusUnlockApp byte = 0x00 // P2 for SetStatusApp: unlock (back to the pre-lock state)
)

// SetStatus builds SET STATUS (GPCS §11.10): CLA '80', INS 'F0', P1 the
// status type, P2 the new state, data the target AID (for the ISD/card
// life cycle the ISD's own AID, which the card may ignore), no Le.
func SetStatus(p1, state byte, aid []byte) apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSSetStatus, P1: p1, P2: state, Data: clone(aid)}
}
