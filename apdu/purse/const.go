package purse

import (
	"errors"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/tlv"
)

// AIDs of the purse (docs/purse.md §2). F0 is the unregistered proprietary
// category of ISO/IEC 7816-5 §5.3; "PURSE" in ASCII follows. A production
// issuer replaces them with AIDs under its own RID.

// PackageAID returns the purse's load file (package) AID,
// F0 00 00 00 01 50 55 52 53 45.
func PackageAID() []byte { return []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45} }

// ModuleAID returns the executable module ("applet class") AID, the
// package AID followed by 01 (as protocols.md §3.7 and docs/loadfile.md).
func ModuleAID() []byte { return append(PackageAID(), 0x01) }

// AID returns the default instance AID, equal to the module AID (the Java
// Card convention for a package's first instance). Terminals select it.
func AID() []byte { return append(PackageAID(), 0x01) }

// Class bytes (docs/purse.md §3.1; ISO/IEC 7816-4 §5.4.1, GPCS §11.1.4).
const (
	CLA    byte = 0x80 // proprietary commands, no secure messaging, channel 0
	CLAISO byte = 0x00 // interindustry commands (SELECT, VERIFY, GET CHALLENGE, READ RECORD)
)

// Instruction bytes (docs/purse.md §3.2). The value commands deliberately
// avoid INS 50, GP's INITIALIZE UPDATE: after a reset the issuer security
// domain is selected again, and a terminal that resends a purse command
// without re-selecting then gets 6D00, never a secure-channel handshake.
const (
	INSSelect              byte = 0xA4
	INSVerify              byte = 0x20
	INSGetChallenge        byte = 0x84
	INSReadRecord          byte = 0xB2
	INSInitializeLoad      byte = 0x40
	INSCreditLoad          byte = 0x42
	INSInitializeDebit     byte = 0x44
	INSDebit               byte = 0x46
	INSSetStatus           byte = 0x48
	INSGetTransactionProof byte = 0x5A
	INSGetPurseData        byte = 0x5C
	INSStoreData           byte = 0xE2 // routed by the security domain, never sent to the purse
)

// P1/P2 values.
const (
	// PINReference is P2 of VERIFY: the application's specific PIN
	// (ISO/IEC 7816-4 §11.5.6, b8 = 1 specific, reference 0).
	PINReference byte = 0x80
	// LogSFI is the short file identifier of the transaction log; READ
	// RECORD uses P2 = SFI<<3 | 4, "read record P1" (ISO/IEC 7816-4).
	LogSFI       byte = 0x18
	LogReadP2    byte = LogSFI<<3 | 0x04
	ChallengeLen      = 8
)

// SET STATUS operations (P1 of INS 48, docs/purse.md §3.11).
const (
	OpBlock    byte = 0x01 // ACTIVE → BLOCKED
	OpUnblock  byte = 0x02 // BLOCKED → ACTIVE
	OpResetPIN byte = 0x03 // PIN try counter back to its limit
)

// Life cycle states of the purse (docs/purse.md §4.2), in the FCI, GET
// PURSE DATA and the card's state record.
const (
	StatePersonalising byte = 0x00
	StateActive        byte = 0x01
	StateBlocked       byte = 0x02
)

// Flags byte of GET PURSE DATA (docs/purse.md §3.4).
const (
	FlagJournalPending byte = 0x01 // a value change is journaled but not yet applied
	FlagRecovered      byte = 0x02 // the last value change was completed by recovery at power-up
	FlagPINVerified    byte = 0x04 // the PIN is verified on this logical channel
	FlagSessionOpen    byte = 0x08 // an INITIALIZE awaits its completion on this channel
)

// Transaction types of the log and of TC (docs/purse.md §6).
const (
	TypeLoad  byte = 0x02
	TypeDebit byte = 0x06
)

// Sizes of data objects (docs/purse.md §4.1).
const (
	CardIDLen     = 8
	TerminalIDLen = 8
	NonceLen      = 8
	MACLen        = 8
	DateTimeLen   = 7
	LogCapacity   = 16 // records kept in the cyclic log
	// MaxATC is the last ATC the purse uses: a purse whose ATC has reached
	// it refuses further value changes (SWATCExhausted) rather than wrap.
	MaxATC uint32 = 0xFFFFFFFF
	// NoLimit disables a personalised limit.
	NoLimit uint32 = 0xFFFFFFFF
	// MaxPINTries is the highest try limit (the x of 63Cx is 4 bits).
	MaxPINTries = 15
	// AppVersion is the specification version this package implements.
	AppVersion uint16 = 0x0100
)

// FCI tags (docs/purse.md §3.3): private-class primitive objects inside
// the FCI proprietary template A5.
const (
	TagFCI          tlv.Tag = 0x6F
	TagDFName       tlv.Tag = 0x84
	TagProprietary  tlv.Tag = 0xA5
	TagVersion      tlv.Tag = 0xDF01
	TagLifeCycle    tlv.Tag = 0xDF02
	TagCardID       tlv.Tag = 0xDF03
	TagCurrency     tlv.Tag = 0xDF04
	TagKeyVersions  tlv.Tag = 0xDF05
	TagPINFreeLimit tlv.Tag = 0xDF06
	TagLogCapacity  tlv.Tag = 0xDF07
)

// Status words of the purse beyond ISO/IEC 7816-4's (docs/purse.md §7).
// 94xx are proprietary (SW1 9X, ISO/IEC 7816-4 §5.6), following the
// PBOC purse's use of 9401 for an insufficient balance.
const (
	SWInsufficientFunds apdu.SW = 0x9401 // debit amount above the balance
	SWATCExhausted      apdu.SW = 0x9402 // the ATC reached MaxATC: no more value changes
	SWMaxBalance        apdu.SW = 0x9403 // load would exceed the maximum balance
	SWAmountLimit       apdu.SW = 0x9404 // amount above the per-transaction limit
	SWOfflineLimit      apdu.SW = 0x9405 // cumulative offline debits since the last load would exceed the limit
	SWPurseBlocked      apdu.SW = 0x6A81 // value changes refused: the purse is BLOCKED
	SWBlockedSelected   apdu.SW = 0x6283 // SELECT: purse BLOCKED (selected, read-only)
)

// Errors of this package. Parsers wrap ErrMalformed; key and MAC
// functions wrap ErrBadKey.
var (
	ErrMalformed = errors.New("purse: malformed data")
	ErrBadKey    = errors.New("purse: invalid key")
	ErrMissing   = errors.New("purse: mandatory data missing")
	ErrBadPIN    = errors.New("purse: invalid PIN")
	ErrNotFound  = errors.New("purse: no example of that name")
)
