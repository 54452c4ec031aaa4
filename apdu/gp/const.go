package gp

import (
	"errors"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// Class bytes (GPCS §11.1.4, Table 11-11).
const (
	CLA       byte = 0x80 // GlobalPlatform proprietary, no secure messaging
	CLASecure byte = 0x84 // the same with secure messaging (C-MAC)
	CLAISO    byte = 0x00 // interindustry: SELECT, GET RESPONSE
)

// Instruction bytes of card content management (GPCS §11, Table 11-1).
const (
	INSDelete               byte = 0xE4
	INSGetData              byte = 0xCA
	INSGetStatus            byte = 0xF2
	INSInstall              byte = 0xE6
	INSLoad                 byte = 0xE8
	INSPutKey               byte = 0xD8
	INSSelect               byte = 0xA4
	INSSetStatus            byte = 0xF0
	INSStoreData            byte = 0xE2
	INSInitializeUpdate     byte = 0x50
	INSExternalAuthenticate byte = 0x82
)

// GET DATA tags used by this package (GPCS §11.3, Table 11-27, and Annex H).
// The tag is P1-P2 of GET DATA.
const (
	TagIIN             tlv.Tag = 0x42   // Issuer Identification Number
	TagCIN             tlv.Tag = 0x45   // Card Image Number
	TagCardData        tlv.Tag = 0x66   // Card Data: card recognition data (Annex H)
	TagKeyInfo         tlv.Tag = 0xE0   // Key Information Template (§11.3.3.1)
	TagSequenceCounter tlv.Tag = 0xC1   // SCP sequence counter of the default key version
	TagSecurityLevel   tlv.Tag = 0xD3   // current security level
	TagCPLC            tlv.Tag = 0x9F7F // Card Production Life Cycle data
)

// Other tags of GP data structures (GPCS §11.1.3 and the command sections).
const (
	TagAID                  tlv.Tag = 0x4F
	TagRegistryEntry        tlv.Tag = 0xE3   // GET STATUS response template (Table 11-36)
	TagLifeCycle            tlv.Tag = 0x9F70 // life cycle state
	TagPrivileges           tlv.Tag = 0xC5
	TagImplicitSelection    tlv.Tag = 0xCF
	TagExecutableLoadFile   tlv.Tag = 0xC4 // in GET STATUS: the application's load file AID
	TagAssociatedSD         tlv.Tag = 0xCC
	TagVersion              tlv.Tag = 0xCE // load file version number
	TagModuleAID            tlv.Tag = 0x84 // executable module AID (GET STATUS P1 '10')
	TagTagList              tlv.Tag = 0x5C
	TagDAPBlock             tlv.Tag = 0xE2 // in a load file (§11.6.2.1)
	TagDAPSignature         tlv.Tag = 0xC3
	TagLoadFileDataBlock    tlv.Tag = 0xC4 // in a load file
	TagCipheredLoadFileData tlv.Tag = 0xD4
	TagInstallAppParams     tlv.Tag = 0xC9 // application-specific install parameters (Table 11-49)
	TagInstallSystemParams  tlv.Tag = 0xEF // system-specific parameters (Table 11-50)
	TagDeleteKeyID          tlv.Tag = 0xD0 // DELETE: key identifier (Table 11-23)
	TagDeleteKeyVersion     tlv.Tag = 0xD2 // DELETE: key version number
	TagControlReference     tlv.Tag = 0xB6 // DELETE/INSTALL tokens: control reference template
	TagToken                tlv.Tag = 0x9E // Delegated Management token
)

// AID length limits (ISO/IEC 7816-4 §8.2.1.2, GPCS §11.1.6 "5 to 16 bytes").
const (
	MinAIDLen = 5
	MaxAIDLen = 16
)

// DefaultISDAID returns the AID of the Issuer Security Domain of GP 2.2 and
// later cards, A000000151000000 (GPCS Annex H.1.3). It returns a fresh copy.
func DefaultISDAID() []byte { return []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00} }

// TestKey returns the well-known GlobalPlatform test key 40 41 ... 4F, used
// as Key-ENC, Key-MAC and Key-DEK by development cards. Its AES KCV is
// 504A77. Anybody can compute every cryptogram made with it: never leave it
// on a card that holds value. It returns a fresh copy.
func TestKey() []byte {
	k := make([]byte, 16)
	for i := range k {
		k[i] = 0x40 + byte(i)
	}
	return k
}

// Errors. Every error of this package wraps one of them; match with
// errors.Is.
var (
	// ErrMalformed: data does not have the GPCS layout (truncated,
	// trailing bytes, a missing mandatory field, a wrong tag).
	ErrMalformed = errors.New("gp: malformed data")
	// ErrBadAID: an AID is not 5 to 16 bytes where the specification
	// requires one.
	ErrBadAID = errors.New("gp: invalid AID")
	// ErrTooLong: a value does not fit its length field or an APDU.
	ErrTooLong = errors.New("gp: value too long")
	// ErrTooManyBlocks: LOAD or STORE DATA would need more than 256
	// blocks (P2 is the block number, GPCS §11.6.2.2, §11.11.2.2).
	ErrTooManyBlocks = errors.New("gp: more than 256 blocks")
	// ErrBadKCV: a key check value does not match the key (Amd D §7.2.2).
	ErrBadKCV = errors.New("gp: key check value mismatch")
	// ErrBadKey: a key has the wrong type or length.
	ErrBadKey = errors.New("gp: invalid key")
	// ErrUnsupported: valid GP data this package does not handle
	// (ciphered load files, other key types, non-TLV GET STATUS).
	ErrUnsupported = errors.New("gp: unsupported")
	// ErrBadSignature: a DAP signature does not verify.
	ErrBadSignature = errors.New("gp: DAP signature verification failed")
	// ErrSequence: a LOAD or STORE DATA block out of order (GPCS §11.6.2.2:
	// block numbers start at '00' and increase by one).
	ErrSequence = errors.New("gp: block out of sequence")
)

// checkAID verifies that aid is 5 to 16 bytes.
func checkAID(what string, aid []byte) error {
	if len(aid) < MinAIDLen || len(aid) > MaxAIDLen {
		return errorf(ErrBadAID, "%s of %d bytes, want %d to %d", what, len(aid), MinAIDLen, MaxAIDLen)
	}
	return nil
}

// checkOptionalAID verifies that aid is empty or 5 to 16 bytes.
func checkOptionalAID(what string, aid []byte) error {
	if len(aid) == 0 {
		return nil
	}
	return checkAID(what, aid)
}

// Select builds SELECT by AID (ISO/IEC 7816-4 §11.2.2, GPCS §11.9): CLA
// '00', INS 'A4', P1 '04', P2 '00' (first or only occurrence), Le '00'.
// An empty aid selects the default-selected application (the ISD on most
// cards).
func Select(aid []byte) apdu.Command {
	return apdu.Command{CLA: CLAISO, INS: INSSelect, P1: 0x04, P2: 0x00, Data: clone(aid), Ne: apdu.MaxShortNe}
}

// GetData builds GET DATA for a tag (GPCS §11.3): CLA '80', INS 'CA',
// P1-P2 = the tag ('00' || tag for one-byte tags), Le '00'.
func GetData(tag tlv.Tag) apdu.Command {
	return apdu.Command{CLA: CLA, INS: INSGetData, P1: byte(tag >> 8), P2: byte(tag), Ne: apdu.MaxShortNe}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
