package applet

import (
	"crypto/sha256"
	"errors"

	"github.com/valuechip/valuechip/apdu"
)

// This file is the contract between the chip's runtime (applet/chip) and
// the programs it runs (the card manager, the purse, the test applet). It
// follows the Java Card model (JC 3.x Runtime Environment spec §2–§7):
// applets are instances of modules, selected per logical channel, keeping
// state in persistent memory written through atomic transactions, and in
// transient memory lost on reset or deselection.

// Applet is one installed application instance. The runtime calls it with
// the command already parsed; it answers with response data and a status
// word. An applet never sees SELECT of another applet, MANAGE CHANNEL, or
// GET RESPONSE: the runtime handles those (ISO/IEC 7816-4 §7.1, §11.1).
type Applet interface {
	// Select is called when the applet is selected on env.Channel(). It
	// returns the FCI to answer with (nil: the runtime's default FCI
	// 6F{84 AID}) and 9000, or another status word to refuse selection
	// (the runtime answers 6999 for anything but a 9000/62xx/63xx).
	Select(env Env, cmd apdu.Command) ([]byte, apdu.SW)
	// Deselect is called when another application is selected on the
	// channel, the channel closes, or before a reset. It cannot fail.
	Deselect(env Env)
	// Process handles every other command addressed to the applet,
	// including the SELECT that selected it being re-sent (JC's
	// selectingApplet() is env.Selecting()).
	Process(env Env, cmd apdu.Command) ([]byte, apdu.SW)
}

// Personalizer is implemented by applets that take personalisation data
// routed by their security domain after INSTALL [for personalization]
// (GPCS v2.3.1 §11.11.2.1): the STORE DATA command's P1, P2 and clear data
// (the security domain has already unwrapped secure messaging).
type Personalizer interface {
	StoreData(env Env, p1, p2 byte, data []byte) ([]byte, apdu.SW)
}

// Env is what an applet sees of the chip while one command runs. It is
// valid only during the call it was given to.
type Env interface {
	// AID is the instance's own application identifier.
	AID() []byte
	// Channel is the logical channel the command arrived on (0..19).
	Channel() int
	// Selecting reports whether the command being processed is the
	// SELECT that selected this applet.
	Selecting() bool
	// Memory is the instance's persistent memory.
	Memory() Memory
	// Transient holds the instance's volatile state for this channel,
	// cleared on reset and power loss (CLEAR_ON_RESET). Values may be any
	// Go value; they are never saved.
	Transient() map[string]any
	// Begin, Commit and Abort delimit an atomic transaction over Memory
	// (JC javacard.framework.JCSystem.beginTransaction et al.). Writes in
	// a transaction take effect all together at Commit, or not at all if
	// power is lost first or Abort is called. A transaction still open
	// when Process returns is aborted. Begin fails with ErrInTransaction
	// when one is already open.
	Begin() error
	Commit() error
	Abort()
	// Random fills b with bytes from the card's random source
	// (deterministic in tests that inject one).
	Random(b []byte)
	// Card gives privileged access to the card's content and life cycle.
	// It is nil unless the instance has the Security Domain privilege.
	Card() CardAdmin
}

// Memory is an applet's persistent memory: named records of bytes, the
// model of a Java Card applet's persistent fields. Every Put and Delete is
// one persistent write: the runtime counts them, and tear injection can cut
// power at any of them (the call then never returns to the applet: the
// runtime unwinds the command and the card goes silent, as a real chip
// does when it loses power).
type Memory interface {
	// Get returns a copy of the record, or nil and false.
	Get(key string) ([]byte, bool)
	// Put writes the record. It fails with ErrNoMemory when the card's
	// persistent memory is full.
	Put(key string, value []byte) error
	// Delete removes the record (no error when absent).
	Delete(key string) error
	// Keys lists the records whose name starts with prefix, sorted.
	Keys(prefix string) []string
}

// Errors of the runtime, mapped to status words by StatusOf.
var (
	ErrNoMemory      = errors.New("applet: not enough persistent memory")
	ErrInTransaction = errors.New("applet: a transaction is already in progress")
	ErrNoTransaction = errors.New("applet: no transaction in progress")
	ErrNotFound      = errors.New("applet: application or load file not found")
	ErrExists        = errors.New("applet: AID already in use")
	ErrUnknownModule = errors.New("applet: load file names a module this chip does not implement")
	ErrDigest        = errors.New("applet: load file digest does not match the module's implementation")
	ErrReferenced    = errors.New("applet: object is referenced by another")
	ErrLifeCycle     = errors.New("applet: transition not allowed from the current life cycle state")
)

// StatusOf maps runtime errors to the status words a card answers
// (GPCS v2.3.1 Table 11-10 and the command sections).
func StatusOf(err error) apdu.SW {
	var sw apdu.SW
	switch {
	case err == nil:
		return apdu.SWNoError
	case errors.As(err, &sw):
		return sw
	case errors.Is(err, ErrNoMemory):
		return apdu.ErrNotEnoughMemory
	case errors.Is(err, ErrNotFound):
		return apdu.ErrRefDataNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrReferenced), errors.Is(err, ErrLifeCycle),
		errors.Is(err, ErrInTransaction), errors.Is(err, ErrNoTransaction):
		return apdu.ErrConditionsNotMet
	case errors.Is(err, ErrUnknownModule), errors.Is(err, ErrDigest):
		return apdu.ErrWrongData
	}
	return apdu.ErrUnknown
}

// Module is a built-in implementation the chip can instantiate: the Go
// counterpart of an executable module in a Java Card package. A load file
// names modules by AID and the digest of their implementation; INSTALL then
// instantiates the matching Module (see docs/loadfile.md).
type Module struct {
	// AID is the executable module's AID (the "applet class" AID).
	AID []byte
	// Name and Version describe the implementation.
	Name    string
	Version string
	// New creates an instance. params are the application-specific
	// install parameters (the value of tag C9, GPCS Table 11-49); the
	// instance reads and writes its state through env.Memory(), so New
	// is also how an instance is re-created when a card image is loaded.
	// It must not keep env.
	New func(env Env, params []byte) (Applet, error)
}

// Digest identifies the module's implementation: SHA-256 over a domain
// label, the module AID, name and version. A load file carries it for each
// module it names, and the chip refuses a load file whose digest does not
// match what it implements (docs/loadfile.md).
func (m Module) Digest() [32]byte {
	h := sha256.New()
	h.Write([]byte("valuechip module v1\x00"))
	for _, part := range [][]byte{m.AID, []byte(m.Name), []byte(m.Version)} {
		h.Write([]byte{byte(len(part) >> 8), byte(len(part))})
		h.Write(part)
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d
}

// CardAdmin is the privileged view of the chip that security domains use
// for card content management (GPCS v2.3.1 §9). Every mutating method is
// atomic: it happens completely or not at all, even if power is cut
// during it.
type CardAdmin interface {
	// Registry returns the GlobalPlatform registry entries: load files,
	// applications and security domains.
	LoadFiles() []LoadFile
	Applications() []Application
	// AddLoadFile records a load file whose modules this chip implements.
	AddLoadFile(lf LoadFile) error
	// Install instantiates module moduleAID of load file fileAID as
	// application instanceAID.
	Install(fileAID, moduleAID, instanceAID []byte, privileges Privileges, params []byte, selectable bool) error
	// Delete removes an application or a load file; with related, a load
	// file and every instance of its modules.
	Delete(aid []byte, related bool) error
	// SetLifeCycle sets an application's life cycle state byte.
	SetLifeCycle(aid []byte, state byte) error
	// CardLifeCycle and SetCardLifeCycle read and change the card's state
	// (OP_READY 01, INITIALIZED 07, SECURED 0F, CARD_LOCKED 7F,
	// TERMINATED FF).
	CardLifeCycle() byte
	SetCardLifeCycle(state byte) error
	// Personalize routes STORE DATA to an application (nil data ends the
	// personalisation session).
	Personalize(aid []byte, p1, p2 byte, data []byte) ([]byte, apdu.SW)
	// Modules lists the implementations built into the chip.
	Modules() []Module
}

// LoadFile is a registry entry for an executable load file.
type LoadFile struct {
	AID       []byte   `json:"aid"`
	Version   string   `json:"version,omitempty"`
	Modules   [][]byte `json:"modules"`
	Digest    []byte   `json:"digest,omitempty"`
	LifeCycle byte     `json:"life_cycle"`
	// SecurityDomain is the AID of the associated security domain.
	SecurityDomain []byte `json:"security_domain,omitempty"`
}

// Application is a registry entry for an application or security domain.
type Application struct {
	AID            []byte     `json:"aid"`
	LoadFile       []byte     `json:"load_file,omitempty"`
	Module         []byte     `json:"module,omitempty"`
	Privileges     Privileges `json:"privileges"`
	LifeCycle      byte       `json:"life_cycle"`
	SecurityDomain []byte     `json:"security_domain,omitempty"`
}

// Privileges are the three GlobalPlatform privilege bytes (GPCS v2.3.1
// §11.1.2, Table 11-7).
type Privileges [3]byte

// Privilege bits of byte 1.
const (
	PrivSecurityDomain    = 0x80
	PrivDAPVerification   = 0x40 // with PrivSecurityDomain
	PrivDelegatedMgmt     = 0x20 // with PrivSecurityDomain
	PrivCardLock          = 0x10
	PrivCardTerminate     = 0x08
	PrivCardReset         = 0x04 // default selected
	PrivCVMManagement     = 0x02
	PrivMandatedDAP       = 0x01 // with PrivSecurityDomain and PrivDAPVerification
	PrivAuthorizedMgmt    = 0x40 // byte 2
	PrivGlobalDelete      = 0x10 // byte 2
	PrivGlobalLock        = 0x08 // byte 2
	PrivGlobalRegistry    = 0x04 // byte 2
	PrivFinalApplication  = 0x02 // byte 2
	PrivContactlessActive = 0x20 // byte 3
)

// Has reports whether byte 1 of the privileges has all bits of mask.
func (p Privileges) Has(mask byte) bool { return p[0]&mask == mask }

// Life cycle states (GPCS v2.3.1 §11.1.1, Tables 11-3 to 11-6).
const (
	LoadFileLoaded  byte = 0x01
	AppInstalled    byte = 0x03
	AppSelectable   byte = 0x07
	SDPersonalized  byte = 0x0F
	AppLockedBit    byte = 0x80
	CardOPReady     byte = 0x01
	CardInitialized byte = 0x07
	CardSecured     byte = 0x0F
	CardLocked      byte = 0x7F
	CardTerminated  byte = 0xFF
)
