package server

import (
	"context"
	"errors"
	"time"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/ledger"
)

// The server consumes the registry, the key source and the ledger through the
// narrow interfaces of this file, so that the message handlers can be tested
// with in-memory fakes and the real stores can be swapped (an HSM for Keys,
// another database for the ledger) without touching the protocol code.

// Errors the dependencies return; the server maps them to DE 39
// (docs/iso8583.md §9).
var (
	// ErrNotFound: no such terminal, card, session or seed.
	ErrNotFound = errors.New("server: not found")
	// ErrUnavailable: a dependency (key source, funding source) is down;
	// answered with 91 so the terminal retries later.
	ErrUnavailable = errors.New("server: dependency unavailable")
	// ErrInsufficientFunds: the funding source cannot pay the load (51).
	ErrInsufficientFunds = errors.New("server: insufficient funds")
	// ErrReversedBefore: a reversal of this load (terminal, STAN, DE 7)
	// arrived before the load itself; the load is refused (12).
	ErrReversedBefore = errors.New("server: load reversed before it arrived")
)

// Terminal is an enrolled terminal as the registry knows it.
type Terminal struct {
	ID         string // DE 41, 8 characters
	MerchantID string // DE 42, 15 characters
	Active     bool
	TMK        iso8583.Key // terminal master key, MACs the sign-on (docs/iso8583.md §2.1)
}

// SeedInfo is a transaction-number seed and the terminal it was issued to.
type SeedInfo struct {
	TerminalID string
	Seed       iso8583.Seed
}

// CardStatus is the issuer's status of a card.
type CardStatus string

// Card statuses.
const (
	CardActive    CardStatus = "active"
	CardBlocked   CardStatus = "blocked"   // no loads (57)
	CardHotlisted CardStatus = "hotlisted" // lost/stolen/cloned (62)
)

// Card is an issued card as the registry knows it.
type Card struct {
	ID         string // CardID, 16 upper-case hex digits
	Currency   string // ISO 4217 numeric, "978"
	Status     CardStatus
	MaxBalance int64     // minor units; 0 means no limit known to the server
	MaxLoad    int64     // per-load limit, 0 none (61)
	Expires    time.Time // zero: no expiry (54)
}

// Registry is the part of host/registry the server uses.
type Registry interface {
	// Terminal returns an enrolled terminal (ErrNotFound otherwise).
	Terminal(ctx context.Context, id string) (Terminal, error)
	// SignOn starts a session: fresh working key and seed, persisted,
	// returned in clear for the DE 48 key block (docs/iso8583.md §4).
	SignOn(ctx context.Context, terminalID string) (iso8583.SignOnKeys, error)
	// SignOff ends the session (its seeds stay valid for advices).
	SignOff(ctx context.Context, terminalID string) error
	// WorkingKey is the working key of the terminal's current session
	// (ErrNotFound when not signed on).
	WorkingKey(ctx context.Context, terminalID string) (iso8583.Key, error)
	// Seed finds a seed by ID (the current or, within its grace period,
	// the previous one; ErrNotFound otherwise). The server checks its
	// validity and terminal.
	Seed(ctx context.Context, seedID uint32) (SeedInfo, error)
	// Card returns an issued card (ErrNotFound otherwise).
	Card(ctx context.Context, cardID string) (Card, error)
}

// Keys supplies the issuer master keys (host/keystore.Source; an HSM can
// replace it). The server needs MK_LOAD and MK_TC (docs/purse.md §5.1).
// Masters returns copies: the server wipes them after each use.
type Keys interface {
	Masters(ctx context.Context) (wire.Keys, error)
}

// Ledger is the part of host/ledger the server posts through.
type Ledger interface {
	EnsureAccount(ctx context.Context, kind ledger.AccountKind, ref, currency string) (ledger.Account, error)
	Balance(ctx context.Context, id string) (int64, error)
	Begin(ctx context.Context, r ledger.BeginRequest) (ledger.Txn, error)
	Complete(ctx context.Context, r ledger.CompleteRequest) (ledger.Txn, error)
	Reverse(ctx context.Context, r ledger.ReverseRequest) (ledger.Txn, error)
	Txn(ctx context.Context, key string) (ledger.Txn, error)
	RecordATC(ctx context.Context, a ledger.ATCAdvice) (ledger.ATCResult, error)
}

// DebitAdvice is one offline debit to post: purse shadow → merchant
// payable, with its ATC recorded (host/ledger DebitAdvice).
type DebitAdvice struct {
	Key                            string // idempotency key
	CardID, TerminalID, MerchantID string
	ATC                            uint32
	Digest                         string // hex TC
	Amount                         int64
	Currency                       string
	Memo                           string
}

// AdviceResult is the outcome of one debit advice.
type AdviceResult struct {
	Replayed  bool // the identical advice was posted before (94)
	Duplicate bool // same card and ATC, another record: clone or rollback (docs/purse.md §9.5)
	Gaps      []ledger.ATCRange
	Err       error
}

// Totals are the counts and amounts of one terminal's batch
// (docs/iso8583.md §2.6).
type Totals struct {
	Loads, LoadReversals, Debits                int64
	LoadAmount, LoadReversalAmount, DebitAmount int64
	Currency                                    string
}

// Advices posts debit advices (group-committed) and closes reconciliation
// batches.
type Advices interface {
	// SubmitAdvice posts one advice, batched with concurrent ones.
	SubmitAdvice(ctx context.Context, a DebitAdvice) AdviceResult
	// OpenBatchTotals are the totals of the terminal's open batch.
	OpenBatchTotals(ctx context.Context, terminalID string) (Totals, error)
	// CloseBatch closes the open batch under key and returns its totals;
	// the same key again returns the same totals.
	CloseBatch(ctx context.Context, terminalID, key string) (Totals, error)
}

// LoadAuth is the server's record of an authorised load: what the 0200
// asked and what the 0210 answered. It is written before the ledger
// posting so that a repeated 0200 gets the identical 0210, and a completion
// advice or reversal finds the load (docs/server.md §3).
type LoadAuth struct {
	Key           string // "load/<terminal>/<DE 62 hex>", the ledger transaction key
	TerminalID    string
	MerchantID    string
	STAN          string // DE 11 of the 0200
	Transmission  string // DE 7 of the 0200
	CardID        string
	ATC           uint32
	Amount        int64
	Currency      string
	BalanceBefore uint32
	KeyVersion    byte
	S1, S2        wire.MAC
	DateTime      wire.DateTime
	AuthRef       uint32
	CreatedAt     time.Time
}

// Loads stores load authorisations.
type Loads interface {
	// PutLoad stores l unless a load with its key exists, and returns the
	// stored one (the first writer wins: two racing identical 0200s get
	// the same S2). A load whose terminal, STAN and DE 7 a reversal named
	// before (UnknownReversal) is not stored: ErrReversedBefore.
	PutLoad(ctx context.Context, l LoadAuth) (LoadAuth, error)
	// UnknownReversal is called for a reversal whose load LoadByOriginal
	// did not find. Atomically with PutLoad, it returns the load if it
	// was stored meanwhile, or records that the load is reversed before
	// it arrived (ErrNotFound).
	UnknownReversal(ctx context.Context, terminalID, stan, transmission string, at time.Time) (LoadAuth, error)
	// LoadByKey returns a load by key (ErrNotFound).
	LoadByKey(ctx context.Context, key string) (LoadAuth, error)
	// LoadByOriginal finds the load a reversal names in DE 90
	// (ErrNotFound).
	LoadByOriginal(ctx context.Context, terminalID, stan, transmission string) (LoadAuth, error)
	// LoadsByCardATC lists the loads authorised for a card at an ATC.
	LoadsByCardATC(ctx context.Context, cardID string, atc uint32) ([]LoadAuth, error)
}
