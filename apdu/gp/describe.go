package gp

import (
	"fmt"
	"strings"
)

// Privilege is one privilege bit, numbered as byte 1 || byte 2 || byte 3 of
// the privileges field read big-endian (GPCS §11.1.2, Tables 11-7 to 11-9).
type Privilege uint32

// Privileges of byte 1.
const (
	PrivSecurityDomain    Privilege = 0x800000 // b8
	PrivDAPVerification   Privilege = 0x400000 // b7, only with PrivSecurityDomain ('C0')
	PrivDelegatedMgmt     Privilege = 0x200000 // b6, only with PrivSecurityDomain ('A0')
	PrivCardLock          Privilege = 0x100000 // b5
	PrivCardTerminate     Privilege = 0x080000 // b4
	PrivCardReset         Privilege = 0x040000 // b3, "Default Selected" before GP 2.2
	PrivCVMManagement     Privilege = 0x020000 // b2
	PrivMandatedDAP       Privilege = 0x010000 // b1, with DAP verification ('C1')
	PrivTrustedPath       Privilege = 0x008000 // byte 2 b8
	PrivAuthorizedMgmt    Privilege = 0x004000 // byte 2 b7
	PrivTokenMgmt         Privilege = 0x002000 // byte 2 b6
	PrivGlobalDelete      Privilege = 0x001000 // byte 2 b5
	PrivGlobalLock        Privilege = 0x000800 // byte 2 b4
	PrivGlobalRegistry    Privilege = 0x000400 // byte 2 b3
	PrivFinalApplication  Privilege = 0x000200 // byte 2 b2
	PrivGlobalService     Privilege = 0x000100 // byte 2 b1
	PrivReceiptGeneration Privilege = 0x000080 // byte 3 b8
	PrivCipheredLoadFile  Privilege = 0x000040 // byte 3 b7
	PrivContactlessActive Privilege = 0x000020 // byte 3 b6
	PrivContactlessSelf   Privilege = 0x000010 // byte 3 b5
)

var privilegeNames = []struct {
	p    Privilege
	name string
}{
	{PrivSecurityDomain, "Security Domain"},
	{PrivDAPVerification, "DAP Verification"},
	{PrivDelegatedMgmt, "Delegated Management"},
	{PrivCardLock, "Card Lock"},
	{PrivCardTerminate, "Card Terminate"},
	{PrivCardReset, "Card Reset"},
	{PrivCVMManagement, "CVM Management"},
	{PrivMandatedDAP, "Mandated DAP Verification"},
	{PrivTrustedPath, "Trusted Path"},
	{PrivAuthorizedMgmt, "Authorized Management"},
	{PrivTokenMgmt, "Token Verification"},
	{PrivGlobalDelete, "Global Delete"},
	{PrivGlobalLock, "Global Lock"},
	{PrivGlobalRegistry, "Global Registry"},
	{PrivFinalApplication, "Final Application"},
	{PrivGlobalService, "Global Service"},
	{PrivReceiptGeneration, "Receipt Generation"},
	{PrivCipheredLoadFile, "Ciphered Load File Data Block"},
	{PrivContactlessActive, "Contactless Activation"},
	{PrivContactlessSelf, "Contactless Self-Activation"},
}

// Privileges is the three-byte privileges field (GPCS §11.1.2). INSTALL
// may carry one byte (byte 1 only); GET STATUS returns three.
type Privileges [3]byte

// NewPrivileges sets the given bits.
func NewPrivileges(ps ...Privilege) Privileges {
	var v Privilege
	for _, p := range ps {
		v |= p
	}
	return Privileges{byte(v >> 16), byte(v >> 8), byte(v)}
}

// ParsePrivileges reads a privileges field of one or three bytes (GPCS
// Table 11-43: "Length of Privileges field: '01' or '03'").
func ParsePrivileges(b []byte) (Privileges, error) {
	switch len(b) {
	case 1:
		return Privileges{b[0]}, nil
	case 3:
		return Privileges{b[0], b[1], b[2]}, nil
	}
	return Privileges{}, errorf(ErrMalformed, "privileges of %d bytes, want 1 or 3", len(b))
}

func (p Privileges) value() Privilege {
	return Privilege(p[0])<<16 | Privilege(p[1])<<8 | Privilege(p[2])
}

// Has reports whether every bit of q is set.
func (p Privileges) Has(q Privilege) bool { return p.value()&q == q }

// Bytes returns the three-byte encoding.
func (p Privileges) Bytes() []byte { return []byte{p[0], p[1], p[2]} }

// Names lists the privileges set, in specification order. DAP
// Verification, Delegated Management and Mandated DAP are only meaningful
// with Security Domain; they are listed as set.
func (p Privileges) Names() []string {
	var out []string
	v := p.value()
	for _, n := range privilegeNames {
		if v&n.p != 0 {
			out = append(out, n.name)
		}
	}
	if rfu := v & 0x00000F; rfu != 0 {
		out = append(out, fmt.Sprintf("RFU %06X", uint32(rfu)))
	}
	return out
}

// String renders the hex value and the names: "800000 (Security Domain)".
func (p Privileges) String() string {
	names := p.Names()
	if len(names) == 0 {
		return fmt.Sprintf("%X (none)", p[:])
	}
	return fmt.Sprintf("%X (%s)", p[:], strings.Join(names, ", "))
}

// Life cycle state bytes (GPCS §11.1.1, Tables 11-3 to 11-6).
const (
	LoadFileLoaded byte = 0x01 // executable load file

	AppInstalled  byte = 0x03 // application or security domain
	AppSelectable byte = 0x07
	AppLockedBit  byte = 0x80 // b8 set: locked, b7..b1 keep the previous state
	// SDPersonalized is the PERSONALIZED state of a security domain.
	SDPersonalized byte = 0x0F
	// SDLocked is the usual LOCKED value of a security domain ('83').
	SDLocked byte = 0x83

	CardOPReady     byte = 0x01
	CardInitialized byte = 0x07
	CardSecured     byte = 0x0F
	CardLocked      byte = 0x7F
	CardTerminated  byte = 0xFF
)

// Kind says what a registry entry describes, which decides how its life
// cycle byte reads (GPCS §11.1.1).
type Kind int

// Registry entry kinds, named after the GET STATUS P1 that returns them.
const (
	KindCard           Kind = iota + 1 // the ISD: its life cycle is the card's (P1 '80')
	KindApplication                    // an application (P1 '40', no SD privilege)
	KindSecurityDomain                 // a supplementary security domain (P1 '40')
	KindLoadFile                       // an executable load file (P1 '20' / '10')
)

func (k Kind) String() string {
	switch k {
	case KindCard:
		return "ISD"
	case KindApplication:
		return "application"
	case KindSecurityDomain:
		return "security domain"
	case KindLoadFile:
		return "load file"
	}
	return "unknown"
}

// LifeCycleName decodes a life cycle state byte for the kind of entry:
// "SELECTABLE", "LOCKED (was SELECTABLE)", "SECURED", or the hex value
// when the byte has no meaning for that kind.
func LifeCycleName(kind Kind, state byte) string {
	switch kind {
	case KindCard:
		switch state {
		case CardOPReady:
			return "OP_READY"
		case CardInitialized:
			return "INITIALIZED"
		case CardSecured:
			return "SECURED"
		case CardLocked:
			return "CARD_LOCKED"
		case CardTerminated:
			return "TERMINATED"
		}
	case KindLoadFile:
		if state == LoadFileLoaded {
			return "LOADED"
		}
	case KindApplication, KindSecurityDomain:
		if state&AppLockedBit != 0 && state&0x03 == 0x03 {
			prev := state &^ AppLockedBit
			if prev == AppInstalled || prev == 0 {
				return "LOCKED"
			}
			return "LOCKED (was " + LifeCycleName(kind, prev) + ")"
		}
		switch {
		case state == AppInstalled:
			return "INSTALLED"
		case state == AppSelectable:
			return "SELECTABLE"
		case kind == KindSecurityDomain && state == SDPersonalized:
			return "PERSONALIZED"
		case kind == KindApplication && state&0x87 == 0x07:
			// 0xxxx111: application specific (Table 11-4).
			return fmt.Sprintf("SELECTABLE (application-specific %02X)", state)
		}
	}
	return fmt.Sprintf("%02X", state)
}
