package scp03

import "strings"

// SecurityLevel is the P1 of EXTERNAL AUTHENTICATE (Amd D §7.1.2.1 Table
// 7-3), a bit map of the protections required for the rest of the
// session. Only the six combinations of Table 7-3 are valid; see Valid.
type SecurityLevel byte

// Security level bits (Amd D Table 7-3; the same bits as in the GP API's
// Current Security Level, Amd D §5.5).
const (
	// LevelNone: no secure messaging expected, but the session is
	// AUTHENTICATED.
	LevelNone SecurityLevel = 0x00
	// LevelCMAC: commands carry a C-MAC (Amd D §6.2.4).
	LevelCMAC SecurityLevel = 0x01
	// LevelCDEC: command data is encrypted (Amd D §6.2.6); always with
	// C-MAC.
	LevelCDEC SecurityLevel = 0x02
	// LevelRMAC: responses carry an R-MAC (Amd D §6.2.5).
	LevelRMAC SecurityLevel = 0x10
	// LevelRENC: response data is encrypted (Amd D §6.2.7); always with
	// R-MAC and C-DECRYPTION.
	LevelRENC SecurityLevel = 0x20

	// LevelAll is '33': C-DECRYPTION, R-ENCRYPTION, C-MAC and R-MAC.
	LevelAll = LevelCMAC | LevelCDEC | LevelRMAC | LevelRENC
)

// Levels lists the six valid security levels of Amd D Table 7-3.
var Levels = []SecurityLevel{
	LevelNone,
	LevelCMAC,
	LevelCMAC | LevelCDEC,
	LevelCMAC | LevelRMAC,
	LevelCMAC | LevelCDEC | LevelRMAC,
	LevelAll,
}

// Valid reports whether l is one of the combinations of Amd D Table 7-3:
// '00', '01', '03', '11', '13', '33'. C-DECRYPTION requires C-MAC, R-MAC
// comes only with C-MAC, and R-ENCRYPTION requires R-MAC and
// C-DECRYPTION (Amd D §5.5).
func (l SecurityLevel) Valid() bool {
	switch l {
	case 0x00, 0x01, 0x03, 0x11, 0x13, 0x33:
		return true
	}
	return false
}

// Has reports whether every bit of f is set in l.
func (l SecurityLevel) Has(f SecurityLevel) bool { return l&f == f }

// String lists the protections: "C-MAC+C-DEC+R-MAC+R-ENC", "none", or
// the hex value for an invalid level.
func (l SecurityLevel) String() string {
	if !l.Valid() {
		return "invalid security level " + hex2(byte(l))
	}
	if l == LevelNone {
		return "none"
	}
	var parts []string
	for _, b := range []struct {
		bit  SecurityLevel
		name string
	}{{LevelCMAC, "C-MAC"}, {LevelCDEC, "C-DEC"}, {LevelRMAC, "R-MAC"}, {LevelRENC, "R-ENC"}} {
		if l.Has(b.bit) {
			parts = append(parts, b.name)
		}
	}
	return strings.Join(parts, "+")
}

func hex2(b byte) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[b>>4], digits[b&0x0F]})
}

// IParam is the SCP03 "i" parameter of the key information (Amd D §5.1
// Table 5-1).
type IParam byte

// "i" bits (Amd D Table 5-1).
const (
	// IPseudoRandom (b5): pseudo-random card challenge and a sequence
	// counter in the INITIALIZE UPDATE response.
	IPseudoRandom IParam = 0x10
	// IRMAC (b6): R-MAC support.
	IRMAC IParam = 0x20
	// IRENC (b7, with b6): R-ENCRYPTION support.
	IRENC IParam = 0x40
)

// Valid reports whether i is a v1.1.1 value: b4..b1 RFU (0), b8 reserved
// (0), and b7 only together with b6 (Table 5-1 lists 00, 01 and 11 for
// b7b6). Values with b1 set belong to the later S16 mode, which this
// package does not implement.
func (i IParam) Valid() bool {
	if i&0x8F != 0 {
		return false
	}
	return i&IRENC == 0 || i&IRMAC != 0
}

// PseudoRandom reports b5: pseudo-random card challenges.
func (i IParam) PseudoRandom() bool { return i&IPseudoRandom != 0 }

// Supports reports whether a card announcing i can run a session at level
// l: R-MAC needs b6 and R-ENCRYPTION needs b7 (Amd D Table 5-1).
func (i IParam) Supports(l SecurityLevel) bool {
	if !l.Valid() {
		return false
	}
	if l.Has(LevelRMAC) && i&IRMAC == 0 {
		return false
	}
	if l.Has(LevelRENC) && i&IRENC == 0 {
		return false
	}
	return true
}
