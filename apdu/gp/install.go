package gp

import (
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// INSTALL P1 bits (GPCS §11.5.2.1, Table 11-40). Variants combine them:
// '0C' is [for install and make selectable], '0E' the combined
// [for load, install and make selectable].
const (
	InstallMoreCommands       byte = 0x80 // b8: more INSTALL commands follow (§11.1.5.1 chaining)
	InstallForRegistryUpdate  byte = 0x40
	InstallForPersonalization byte = 0x20
	InstallForExtradition     byte = 0x10
	InstallForMakeSelectable  byte = 0x08
	InstallForInstall         byte = 0x04
	InstallForLoad            byte = 0x02
)

// INSTALL P2 values (GPCS Table 11-41).
const (
	InstallNoInfo        byte = 0x00
	InstallCombinedStart byte = 0x01 // beginning of the combined load, install and make selectable process
	InstallCombinedEnd   byte = 0x03 // end of it
)

// Install is the data of one INSTALL command (GPCS §11.5.2.3). Which fields
// are used depends on the variant in P1; the data field is length-value
// coded without tags, in this order:
//
//	[for load]             (Table 11-42) LoadFileAID, SecurityDomainAID, LoadFileDataBlockHash, Parameters, Token
//	[for install]          (Table 11-43) LoadFileAID, ModuleAID, ApplicationAID, Privileges, Parameters, Token
//	[for make selectable]  (Table 11-44) '00', '00', ApplicationAID, Privileges, Parameters, Token
//	[for personalization]  (Table 11-47) '00', '00', ApplicationAID, '00', '00', '00'
//	[for extradition]      (Table 11-45) SecurityDomainAID, '00', ApplicationAID, '00', Parameters, Token
//	[for registry update]  (Table 11-46) SecurityDomainAID, '00', ApplicationAID, Privileges, Parameters, Token
//
// Every length is one byte except those of Parameters and Token, which are
// BER lengths of 1 to 3 bytes ('00'-'7F', '81 xx', '82 xx xx') since GP 2.2.
type Install struct {
	// P1 is the variant: a combination of the InstallFor* bits (b8, "more
	// commands", is set by Command when chaining and ignored here).
	P1 byte
	// P2 is InstallNoInfo or one of the combined-process markers.
	P2 byte

	// LoadFileAID is the load file to load ([for load]) or the
	// executable load file holding the module ([for install]).
	LoadFileAID []byte
	// SecurityDomainAID is the security domain to associate the load
	// file with ([for load], empty for the ISD's choice) or the target
	// of an extradition or registry update.
	SecurityDomainAID []byte
	// LoadFileDataBlockHash is the hash of the Load File Data Block
	// ([for load]; empty when neither DAP nor Delegated Management needs
	// it). On this chip it is SHA-256 of the manifest.
	LoadFileDataBlockHash []byte
	// ModuleAID is the executable module to instantiate ([for install]).
	ModuleAID []byte
	// ApplicationAID is the instance to create, make selectable,
	// personalise, extradite or update.
	ApplicationAID []byte
	// Privileges is empty, one or three bytes.
	Privileges []byte
	// Parameters are the load parameters ([for load], Table 11-48), the
	// install parameters ([for install], Table 11-49: must contain 'C9',
	// see InstallParams) or the make selectable / extradition / registry
	// update parameters.
	Parameters []byte
	// Token is the Delegated Management token, usually empty.
	Token []byte
}

// variant returns the data layout that P1 selects, the most significant
// operation winning as GPCS §11.5.2.3 orders them.
func installVariant(p1 byte) byte {
	p1 &^= InstallMoreCommands
	switch {
	case p1&InstallForLoad != 0:
		return InstallForLoad
	case p1&InstallForInstall != 0:
		return InstallForInstall
	case p1&InstallForMakeSelectable != 0:
		return InstallForMakeSelectable
	case p1&InstallForPersonalization != 0:
		return InstallForPersonalization
	case p1&InstallForExtradition != 0:
		return InstallForExtradition
	case p1&InstallForRegistryUpdate != 0:
		return InstallForRegistryUpdate
	}
	return 0
}

// fields returns the six (five for [for load]) length-value fields and
// whether the last two have BER lengths.
func (in Install) fields() ([][]byte, error) {
	switch installVariant(in.P1) {
	case InstallForLoad:
		return [][]byte{in.LoadFileAID, in.SecurityDomainAID, in.LoadFileDataBlockHash, in.Parameters, in.Token}, nil
	case InstallForInstall:
		return [][]byte{in.LoadFileAID, in.ModuleAID, in.ApplicationAID, in.Privileges, in.Parameters, in.Token}, nil
	case InstallForMakeSelectable:
		return [][]byte{nil, nil, in.ApplicationAID, in.Privileges, in.Parameters, in.Token}, nil
	case InstallForPersonalization:
		return [][]byte{nil, nil, in.ApplicationAID, nil, nil, nil}, nil
	case InstallForExtradition:
		return [][]byte{in.SecurityDomainAID, nil, in.ApplicationAID, nil, in.Parameters, in.Token}, nil
	case InstallForRegistryUpdate:
		return [][]byte{in.SecurityDomainAID, nil, in.ApplicationAID, in.Privileges, in.Parameters, in.Token}, nil
	}
	return nil, errorf(ErrMalformed, "INSTALL P1 %02X names no variant", in.P1)
}

// Bytes encodes the data field. It fails when a field does not fit its
// length (ErrTooLong) or P1 names no variant; it does not enforce the
// rules Validate checks, so that tests can build invalid commands.
func (in Install) Bytes() ([]byte, error) {
	fs, err := in.fields()
	if err != nil {
		return nil, err
	}
	var out []byte
	for i, f := range fs {
		if i >= len(fs)-2 { // Parameters and Token: BER length
			if len(f) > 0xFFFF {
				return nil, errorf(ErrTooLong, "INSTALL field %d of %d bytes", i+1, len(f))
			}
			out = appendBERLength(out, len(f))
		} else {
			if len(f) > 0xFF {
				return nil, errorf(ErrTooLong, "INSTALL field %d of %d bytes", i+1, len(f))
			}
			out = append(out, byte(len(f)))
		}
		out = append(out, f...)
	}
	return out, nil
}

// Command builds the INSTALL command (GPCS §11.5.2): CLA '80', INS 'E6',
// P1 the variant, P2, Le '00' (Table 11-39: the response is one '00' byte
// or a Delegated Management confirmation).
func (in Install) Command() (apdu.Command, error) {
	data, err := in.Bytes()
	if err != nil {
		return apdu.Command{}, err
	}
	if len(data) > apdu.MaxShortNc {
		return apdu.Command{}, errorf(ErrTooLong, "INSTALL data of %d bytes exceeds one short APDU", len(data))
	}
	return apdu.Command{CLA: CLA, INS: INSInstall, P1: in.P1 &^ InstallMoreCommands, P2: in.P2, Data: data, Ne: apdu.MaxShortNe}, nil
}

// Validate checks the rules of GPCS §11.5.2.3 for the variant: AIDs of 5 to
// 16 bytes where mandatory, empty or 1 or 3 bytes of privileges, install
// parameters that contain 'C9', a hash of at most 127 bytes.
func (in Install) Validate() error {
	switch installVariant(in.P1) {
	case InstallForLoad:
		if err := checkAID("load file AID", in.LoadFileAID); err != nil {
			return err
		}
		if err := checkOptionalAID("security domain AID", in.SecurityDomainAID); err != nil {
			return err
		}
		if len(in.LoadFileDataBlockHash) > 0x7F {
			return errorf(ErrMalformed, "load file data block hash of %d bytes", len(in.LoadFileDataBlockHash))
		}
		return nil
	case InstallForInstall:
		if err := checkAID("executable load file AID", in.LoadFileAID); err != nil {
			return err
		}
		if err := checkAID("executable module AID", in.ModuleAID); err != nil {
			return err
		}
		if err := checkAID("application AID", in.ApplicationAID); err != nil {
			return err
		}
		if _, err := ParsePrivileges(in.Privileges); err != nil {
			return err
		}
		if _, err := ParseInstallParams(in.Parameters); err != nil {
			return err
		}
		return nil
	case InstallForMakeSelectable:
		if err := checkAID("application AID", in.ApplicationAID); err != nil {
			return err
		}
		return checkOptionalPrivileges(in.Privileges)
	case InstallForExtradition, InstallForRegistryUpdate:
		if err := checkOptionalAID("security domain AID", in.SecurityDomainAID); err != nil {
			return err
		}
		if err := checkAID("application AID", in.ApplicationAID); err != nil {
			return err
		}
		return checkOptionalPrivileges(in.Privileges)
	case InstallForPersonalization:
		return checkAID("application AID", in.ApplicationAID)
	}
	return errorf(ErrMalformed, "INSTALL P1 %02X names no variant", in.P1)
}

func checkOptionalPrivileges(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := ParsePrivileges(b)
	return err
}

// ParseInstall decodes the data field of an INSTALL command with the given
// P1 and checks it with Validate. Fields that the variant requires to be
// empty must be empty. The returned slices alias data.
func ParseInstall(p1 byte, data []byte) (Install, error) {
	in := Install{P1: p1 &^ InstallMoreCommands}
	n := 6
	if installVariant(p1) == InstallForLoad {
		n = 5
	}
	if installVariant(p1) == 0 {
		return Install{}, errorf(ErrMalformed, "INSTALL P1 %02X names no variant", p1)
	}
	fs := make([][]byte, n)
	rest := data
	for i := range fs {
		var f []byte
		var err error
		if i >= n-2 {
			f, rest, err = readBERLV(rest)
		} else {
			f, rest, err = readLV(rest)
		}
		if err != nil {
			return Install{}, errorf(ErrMalformed, "INSTALL field %d: %w", i+1, err)
		}
		fs[i] = f
	}
	if len(rest) != 0 {
		return Install{}, errorf(ErrMalformed, "%d bytes after the INSTALL token", len(rest))
	}
	mustBeEmpty := func(idx ...int) error {
		for _, i := range idx {
			if len(fs[i]) != 0 {
				return errorf(ErrMalformed, "INSTALL field %d must be empty for P1 %02X", i+1, p1)
			}
		}
		return nil
	}
	var err error
	switch installVariant(p1) {
	case InstallForLoad:
		in.LoadFileAID, in.SecurityDomainAID, in.LoadFileDataBlockHash, in.Parameters, in.Token = fs[0], fs[1], fs[2], fs[3], fs[4]
	case InstallForInstall:
		in.LoadFileAID, in.ModuleAID, in.ApplicationAID, in.Privileges, in.Parameters, in.Token = fs[0], fs[1], fs[2], fs[3], fs[4], fs[5]
	case InstallForMakeSelectable:
		err = mustBeEmpty(0, 1)
		in.ApplicationAID, in.Privileges, in.Parameters, in.Token = fs[2], fs[3], fs[4], fs[5]
	case InstallForPersonalization:
		err = mustBeEmpty(0, 1, 3, 4, 5)
		in.ApplicationAID = fs[2]
	case InstallForExtradition:
		err = mustBeEmpty(1, 3)
		in.SecurityDomainAID, in.ApplicationAID, in.Parameters, in.Token = fs[0], fs[2], fs[4], fs[5]
	case InstallForRegistryUpdate:
		err = mustBeEmpty(1)
		in.SecurityDomainAID, in.ApplicationAID, in.Privileges, in.Parameters, in.Token = fs[0], fs[2], fs[3], fs[4], fs[5]
	}
	if err != nil {
		return Install{}, err
	}
	if err := in.Validate(); err != nil {
		return Install{}, err
	}
	return in, nil
}

// InstallParams are the install parameters of INSTALL [for install] (GPCS
// Table 11-49): 'C9' with the application-specific parameters, passed to
// the new instance, always present (possibly empty), then optionally 'EF'
// with system-specific parameters (Table 11-50: 'C7' volatile memory
// quota, 'C8' non-volatile quota, 'CF' implicit selection, ...), kept raw.
type InstallParams struct {
	Application []byte
	System      []byte
}

// Bytes encodes C9 L app [EF L system]; System is omitted when empty.
func (p InstallParams) Bytes() ([]byte, error) {
	out, err := tlv.Encode(TagInstallAppParams, p.Application)
	if err != nil {
		return nil, errorf(ErrTooLong, "install parameters: %w", err)
	}
	if len(p.System) > 0 {
		ef, err := tlv.Encode(TagInstallSystemParams, p.System)
		if err != nil {
			return nil, errorf(ErrTooLong, "system parameters: %w", err)
		}
		out = append(out, ef...)
	}
	return out, nil
}

// ParseInstallParams decodes install parameters. 'C9' is mandatory (GPCS
// Table 11-49); other tags than 'C9', 'EF' and the Delegated Management
// control reference templates are refused, as is a repeated tag.
func ParseInstallParams(b []byte) (InstallParams, error) {
	list, err := tlv.Parse(b)
	if err != nil {
		return InstallParams{}, errorf(ErrMalformed, "install parameters: %w", err)
	}
	var p InstallParams
	seen := map[tlv.Tag]bool{}
	for _, t := range list {
		if seen[t.Tag] {
			return InstallParams{}, errorf(ErrMalformed, "install parameters repeat tag %s", t.Tag)
		}
		seen[t.Tag] = true
		switch t.Tag {
		case TagInstallAppParams:
			p.Application = t.Value
		case TagInstallSystemParams:
			p.System = t.Value
		case 0xEA, 0xB6: // TLV-coded parameters, control reference template: allowed, ignored
		default:
			return InstallParams{}, errorf(ErrMalformed, "install parameters: unexpected tag %s", t.Tag)
		}
	}
	if !seen[TagInstallAppParams] {
		return InstallParams{}, errorf(ErrMalformed, "install parameters lack tag C9")
	}
	return p, nil
}

// appendBERLength appends a definite BER length of n (n <= 0xFFFF).
func appendBERLength(dst []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n <= 0xFF:
		return append(dst, 0x81, byte(n))
	}
	return append(dst, 0x82, byte(n>>8), byte(n))
}

// readLV reads a one-byte length and that many bytes.
func readLV(b []byte) (v, rest []byte, err error) {
	if len(b) < 1 {
		return nil, nil, fmt.Errorf("length byte missing")
	}
	n := int(b[0])
	if len(b)-1 < n {
		return nil, nil, fmt.Errorf("length %d with %d bytes left", n, len(b)-1)
	}
	return b[1 : 1+n : 1+n], b[1+n:], nil
}

// readBERLV reads a BER length of at most '82 xx xx' and that many bytes.
func readBERLV(b []byte) (v, rest []byte, err error) {
	if len(b) < 1 {
		return nil, nil, fmt.Errorf("length byte missing")
	}
	n, hdr := int(b[0]), 1
	switch {
	case b[0] == 0x81 && len(b) >= 2:
		n, hdr = int(b[1]), 2
	case b[0] == 0x82 && len(b) >= 3:
		n, hdr = int(b[1])<<8|int(b[2]), 3
	case b[0] >= 0x80:
		return nil, nil, fmt.Errorf("bad length field %02X", b[0])
	}
	if len(b)-hdr < n {
		return nil, nil, fmt.Errorf("length %d with %d bytes left", n, len(b)-hdr)
	}
	return b[hdr : hdr+n : hdr+n], b[hdr+n:], nil
}
