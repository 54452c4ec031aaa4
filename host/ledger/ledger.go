package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"
)

// Errors returned by a Store. They are wrapped with context; match them with
// errors.Is.
var (
	// ErrInvalid: the request is malformed (empty key, bad currency, zero
	// amount, fewer than two legs, ...).
	ErrInvalid = errors.New("ledger: invalid request")
	// ErrUnbalanced: the legs of a posting do not sum to zero per currency.
	ErrUnbalanced = errors.New("ledger: posting does not balance")
	// ErrConflict: the idempotency key was already used for a different
	// request.
	ErrConflict = errors.New("ledger: idempotency key reused for a different request")
	// ErrNotFound: no such account, posting or transaction.
	ErrNotFound = errors.New("ledger: not found")
	// ErrCurrency: a leg's currency is not its account's currency.
	ErrCurrency = errors.New("ledger: currency mismatch")
	// ErrOverflow: a sum or a balance would leave the int64 range.
	ErrOverflow = errors.New("ledger: amount overflow")
	// ErrIllegalTransition: the transaction's state does not allow the
	// operation (e.g. completing a reversed transaction).
	ErrIllegalTransition = errors.New("ledger: illegal state transition")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("ledger: store closed")
	// ErrInsufficientFunds: a posting would leave an account below the floor
	// the request set for it (Posting.Floors, BeginRequest.Floors).
	ErrInsufficientFunds = errors.New("ledger: insufficient funds")
)

// AccountKind is the role of an account in the purse system.
type AccountKind string

// The account kinds.
const (
	// KindIssuerFloat is the issuer's float: the liability for all value held
	// on purses and owed to merchants.
	KindIssuerFloat AccountKind = "issuer_float"
	// KindPurse is the shadow of one purse; Ref is the CardID in hex.
	KindPurse AccountKind = "purse"
	// KindMerchant is what the issuer owes one merchant/terminal; Ref is the
	// merchant or terminal ID.
	KindMerchant AccountKind = "merchant"
	// KindFunding is an external source of funds for loads (bank, card
	// acquirer, cash desk); Ref names it.
	KindFunding AccountKind = "funding"
	// KindWallet is a holder's network wallet (host/wallet); Ref names the
	// holder. A liability like a purse shadow: negative when the issuer owes
	// the holder, positive when the holder has drawn on credit.
	KindWallet AccountKind = "wallet"
)

// Valid reports whether k is one of the defined kinds.
func (k AccountKind) Valid() bool {
	switch k {
	case KindIssuerFloat, KindPurse, KindMerchant, KindFunding, KindWallet:
		return true
	}
	return false
}

// Account is one ledger account. Its ID is AccountID(Kind, Ref, Currency).
type Account struct {
	ID        string
	Kind      AccountKind
	Ref       string
	Currency  string // ISO 4217 numeric code, 3 digits, e.g. "978"
	Balance   int64  // minor units; sum of all legs on the account
	CreatedAt time.Time
}

// AccountID is the deterministic identifier of the account (kind, ref,
// currency): "kind:ref:currency".
func AccountID(kind AccountKind, ref, currency string) string {
	return string(kind) + ":" + ref + ":" + currency
}

// Leg is one side of a posting: a signed amount in minor units on an account.
// Positive amounts are debits, negative amounts credits; only the sum matters.
type Leg struct {
	Account  string
	Amount   int64
	Currency string
}

// Posting is a balanced set of legs under an idempotency key.
type Posting struct {
	// Key makes the request idempotent, e.g. terminal ID + transaction number.
	// Keys starting with "txn/" or "advice/" are reserved for the postings of
	// transactions and advices.
	Key  string
	Memo string
	Legs []Leg
	// Floors are preconditions, not content: account → the lowest balance it
	// may have after the posting, checked inside the database transaction
	// (ErrInsufficientFunds otherwise). Every account named must be on a leg.
	// They are not part of the idempotency hash: a replay is answered with
	// the original receipt whatever its floors.
	Floors map[string]int64
	// Ceilings are the mirror of Floors: account → the highest balance it
	// may have after the posting (ErrInsufficientFunds otherwise). A
	// liability that may be overdrawn up to a limit — a network wallet with
	// a credit level — is a ceiling on its account: its ledger balance is
	// the negation of what the holder sees (docs/ledger.md §2).
	Ceilings map[string]int64
}

// Receipt is the durable result of a posting.
type Receipt struct {
	ID        string
	Key       string
	Memo      string
	TxnKey    string // the transaction it belongs to, "" for a plain posting
	Legs      []Leg
	CreatedAt time.Time
	// Replayed is true when the posting already existed and this is the
	// original result of an identical earlier request.
	Replayed bool
}

// TxnState is the state of a purse transaction on the server.
type TxnState string

// Transaction states: in_progress → completed | reversed.
const (
	StateInProgress TxnState = "in_progress"
	StateCompleted  TxnState = "completed"
	StateReversed   TxnState = "reversed"
)

// BeginRequest opens a purse transaction and posts its first legs atomically
// (e.g. for a load: funding → purse shadow, when S2 is issued).
type BeginRequest struct {
	Key        string // idempotency key, e.g. terminal ID + authorisation reference
	Kind       string // "load", "debit", ... (free text)
	CardID     string // hex CardID
	TerminalID string
	Amount     int64
	Currency   string
	Memo       string
	Legs       []Leg // may be empty: a transaction without a posting yet
	// MerchantID is the merchant of the terminal (DE 42), kept with the
	// transaction and in CardAdvices; optional.
	MerchantID string
	// Floors as in Posting, for the begin posting.
	Floors map[string]int64
}

// KindLoad is the transaction kind that reconciliation counts as a load
// (docs/ledger.md §12).
const KindLoad = "load"

// CompleteRequest completes an in-progress transaction, optionally posting
// more legs (e.g. a settlement step).
type CompleteRequest struct {
	Key  string
	Memo string
	Legs []Leg
	// ATC and Digest, when ATC is not 0, are the card record of the
	// completion (the load's ATC and its TC): recorded with the completion,
	// in the same database transaction, as RecordATC would, and listed by
	// CardAdvices as a load. Digest is then required.
	ATC    uint32
	Digest string
}

// ReverseRequest reverses an in-progress transaction: the ledger posts the
// exact negation of every leg posted for it so far.
type ReverseRequest struct {
	Key    string
	Reason string
}

// Txn is the server's record of a purse transaction.
type Txn struct {
	Key          string
	Kind         string
	CardID       string
	TerminalID   string
	Amount       int64
	Currency     string
	State        TxnState
	MerchantID   string
	BeginPosting string // receipt ID, "" when begun without legs
	EndPosting   string // receipt ID of the completion or reversal posting, or ""
	// Batch is the terminal batch in which the final state (completed,
	// reversed) was counted; 0 while in progress or without a terminal.
	Batch     int64
	CreatedAt time.Time
	UpdatedAt time.Time
	// ATC is the outcome of recording the card record of a Complete that
	// carried one (zero otherwise; ATCRepeat on a replay).
	ATC ATCResult
	// Replayed is true when the operation had already been applied and this
	// is the original result.
	Replayed bool
}

// ATCAdvice reports that a card produced a value change with the given ATC
// (from a debit advice or a load completion). Digest identifies the record,
// e.g. the hex TC or a hash of the log record: two advices for one ATC with
// different digests prove a clone or a rolled-back card image (purse.md §9.5).
type ATCAdvice struct {
	CardID     string
	ATC        uint32
	Digest     string
	TerminalID string
}

// ATCStatus classifies an ATC advice.
type ATCStatus string

// ATC advice outcomes.
const (
	ATCNew       ATCStatus = "new"       // first record for this ATC
	ATCRepeat    ATCStatus = "repeat"    // same ATC, same digest: a retried advice
	ATCDuplicate ATCStatus = "duplicate" // same ATC, different digest: clone/rollback
)

// ATCRange is a closed range of ATCs [From, To].
type ATCRange struct{ From, To uint32 }

// ATCResult is the outcome of RecordATC.
type ATCResult struct {
	Status  ATCStatus
	LastATC uint32 // highest ATC seen for the card, after this advice
	// Missing is how many ATCs in 1..LastATC were never reported, after
	// this advice: the total size of the card's gaps (Card lists them).
	Missing uint32
	// Gaps are the gaps this advice opened: [previous last ATC + 1, ATC − 1]
	// when its ATC jumped ahead, nil otherwise (a repeat, the next ATC, or
	// one filling an older gap). Known in O(1) per advice (docs/ledger.md §6).
	Gaps []ATCRange
}

// CardStatus is the ATC picture of one card.
type CardStatus struct {
	CardID     string
	LastATC    uint32
	Seen       int // number of distinct ATCs recorded
	Gaps       []ATCRange
	Duplicates []ATCAdvice // every conflicting advice received
}

// KindTotal is the sum of balances of one account kind in one currency.
type KindTotal struct {
	Kind     AccountKind
	Currency string
	Accounts int
	Total    int64
}

// Report is a settlement snapshot taken in one read transaction.
type Report struct {
	ByKind []KindTotal // ordered by kind, currency
	// Merchants are the merchant payable accounts with their balances,
	// ordered by ref, currency.
	Merchants []Account
	// Imbalance is the sum of all balances per currency; always zero in a
	// consistent ledger.
	Imbalance map[string]int64
	// InProgress are the transactions still in progress (loads whose
	// completion or reversal has not arrived), per kind and currency,
	// ordered by kind, currency: what an operator has to resolve.
	InProgress []InProgressTotal
}

// InProgressTotal sums the in-progress transactions of one kind and currency.
type InProgressTotal struct {
	Kind      string
	Currency  string
	Count     int64
	Amount    int64
	Oldest    time.Time // creation time of the oldest
	OldestKey string    // its key
}

// DebitAdvice is an offline debit reported by a terminal (ISO 8583 0220,
// docs/iso8583.md §2.4) after the server verified its TC: the purse shadow
// is debited and the merchant payable credited (docs/ledger.md §2, §11).
type DebitAdvice struct {
	// Key is the caller's idempotency key, e.g. "adv/<cardhex>/<atc>". The
	// identity of an advice is its card record (CardID, ATC, Digest): a
	// repeat of a record already posted is a replay whatever its key.
	Key                            string
	CardID, TerminalID, MerchantID string
	ATC                            uint32
	Digest                         string // the record's digest, e.g. the hex TC
	Amount                         int64  // minor units, > 0
	Currency                       string
	Memo                           string
}

// AdviceResult is the outcome of one advice of ApplyAdvices.
type AdviceResult struct {
	// Receipt is the posting (Replayed for a record already posted).
	Receipt Receipt
	// ATC is the card's ATC picture after the advice: ATCNew, ATCRepeat
	// (replay), or ATCDuplicate (another digest was posted for this ATC
	// before: a clone or a rolled-back card; this one is posted too).
	ATC ATCResult
	// Err is this advice's error; the others are unaffected.
	Err error
}

// AdviceKind tells a debit advice from a load completion in CardAdvices.
type AdviceKind string

// Advice kinds.
const (
	AdviceDebit AdviceKind = "debit"
	AdviceLoad  AdviceKind = "load"
)

// AdviceRecord is one card record a terminal reported: a debit advice or a
// load completion carrying its ATC.
type AdviceRecord struct {
	Kind       AdviceKind
	Key        string // the advice's or the load transaction's key
	CardID     string
	ATC        uint32
	Digest     string
	TerminalID string
	MerchantID string
	Amount     int64
	Currency   string
	// Status is the ATC status when the record arrived: ATCNew, ATCDuplicate
	// or ATCRepeat (the ATC and digest had been recorded by RecordATC).
	Status ATCStatus
	Batch  int64 // the terminal batch it was counted in
	At     time.Time
}

// Totals are the reconciliation totals of one terminal batch (ISO 8583 0500,
// docs/iso8583.md §2.6; which records count is defined in docs/ledger.md §12).
type Totals struct {
	TerminalID string
	Batch      int64  // batch number, from 1
	Currency   string // "" when the batch is empty

	Loads, LoadAmount                 int64 // completed loads
	LoadReversals, LoadReversalAmount int64 // reversed loads
	Debits, DebitAmount               int64 // debit advices posted
}

// Store is the ledger contract. Implementations are safe for concurrent use.
type Store interface {
	// EnsureAccount creates the account (kind, ref, currency) if it does not
	// exist and returns it.
	EnsureAccount(ctx context.Context, kind AccountKind, ref, currency string) (Account, error)
	// Account returns one account by ID.
	Account(ctx context.Context, id string) (Account, error)
	// Balance returns the balance of one account in minor units.
	Balance(ctx context.Context, id string) (int64, error)
	// Post writes a balanced posting once; a retry with the same key and the
	// same content returns the original receipt (Replayed), a different
	// content under the same key fails with ErrConflict.
	Post(ctx context.Context, p Posting) (Receipt, error)
	// PostingByKey returns the receipt of the posting with the key.
	PostingByKey(ctx context.Context, key string) (Receipt, error)
	// Begin opens an in-progress transaction with its posting.
	Begin(ctx context.Context, r BeginRequest) (Txn, error)
	// Complete moves an in-progress transaction to completed.
	Complete(ctx context.Context, r CompleteRequest) (Txn, error)
	// Reverse moves an in-progress transaction to reversed, posting the
	// compensating legs.
	Reverse(ctx context.Context, r ReverseRequest) (Txn, error)
	// Txn returns a transaction by key.
	Txn(ctx context.Context, key string) (Txn, error)
	// RecordATC records an ATC advice for a card.
	RecordATC(ctx context.Context, a ATCAdvice) (ATCResult, error)
	// Card returns the ATC status of a card.
	Card(ctx context.Context, cardID string) (CardStatus, error)
	// Report returns the settlement report.
	Report(ctx context.Context) (Report, error)
	// ApplyAdvices posts debit advices in one database transaction, as if
	// one after the other (a failing advice spoils none of the others); the
	// results are in the order of the advices.
	ApplyAdvices(ctx context.Context, advices []DebitAdvice) []AdviceResult
	// CardAdvices lists what terminals reported for a card, by ATC.
	CardAdvices(ctx context.Context, cardID string) ([]AdviceRecord, error)
	// OpenBatchTotals returns the totals of the terminal's open batch.
	OpenBatchTotals(ctx context.Context, terminalID string) (Totals, error)
	// CloseBatch closes the terminal's open batch (idempotent by key) and
	// returns its totals.
	CloseBatch(ctx context.Context, terminalID, key string) (Totals, error)
	// Close releases the database.
	Close() error
}

// txnPrefix and advicePrefix reserve posting keys for the postings of
// transactions and advices.
const (
	txnPrefix    = "txn/"
	advicePrefix = "advice/"
)

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < '0' || c[i] > '9' {
			return false
		}
	}
	return true
}

func validKey(k string) error {
	if k == "" {
		return fmt.Errorf("%w: empty idempotency key", ErrInvalid)
	}
	if len(k) > 256 {
		return fmt.Errorf("%w: idempotency key longer than 256 bytes", ErrInvalid)
	}
	return nil
}

// checkedAdd adds two int64 or reports ErrOverflow.
func checkedAdd(a, b int64) (int64, error) {
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return 0, fmt.Errorf("%w: %d + %d", ErrOverflow, a, b)
	}
	return a + b, nil
}

// validateLegs checks the legs of a posting: at least two, known shape, no
// zero or MinInt64 amounts, sum zero per currency.
func validateLegs(legs []Leg) error {
	if len(legs) < 2 {
		return fmt.Errorf("%w: a posting needs at least two legs, got %d", ErrInvalid, len(legs))
	}
	sums := map[string]int64{}
	for i, l := range legs {
		if l.Account == "" {
			return fmt.Errorf("%w: leg %d has no account", ErrInvalid, i)
		}
		if !validCurrency(l.Currency) {
			return fmt.Errorf("%w: leg %d currency %q is not an ISO 4217 numeric code", ErrInvalid, i, l.Currency)
		}
		if l.Amount == 0 || l.Amount == math.MinInt64 {
			return fmt.Errorf("%w: leg %d amount %d", ErrInvalid, i, l.Amount)
		}
		s, err := checkedAdd(sums[l.Currency], l.Amount)
		if err != nil {
			return fmt.Errorf("leg %d: %w", i, err)
		}
		sums[l.Currency] = s
	}
	for c, s := range sums {
		if s != 0 {
			return fmt.Errorf("%w: currency %s sums to %d", ErrUnbalanced, c, s)
		}
	}
	return nil
}

// negate returns the compensating legs.
func negate(legs []Leg) []Leg {
	out := make([]Leg, len(legs))
	for i, l := range legs {
		out[i] = Leg{Account: l.Account, Amount: -l.Amount, Currency: l.Currency}
	}
	return out
}

// hasher builds a canonical request hash: length-prefixed fields.
type hasher struct{ b []byte }

func (h *hasher) str(s string) {
	h.b = binary.BigEndian.AppendUint64(h.b, uint64(len(s)))
	h.b = append(h.b, s...)
}

func (h *hasher) i64(v int64) { h.b = binary.BigEndian.AppendUint64(h.b, uint64(v)) }

func (h *hasher) legs(ls []Leg) {
	h.i64(int64(len(ls)))
	for _, l := range ls {
		h.str(l.Account)
		h.i64(l.Amount)
		h.str(l.Currency)
	}
}

func (h *hasher) sum() string {
	s := sha256.Sum256(h.b)
	return hex.EncodeToString(s[:])
}

func postingHash(memo string, legs []Leg) string {
	var h hasher
	h.str("posting/v1")
	h.str(memo)
	h.legs(legs)
	return h.sum()
}

// beginHash covers the request but not its floors (preconditions). Fields
// added after version 1 are hashed only when set, so the hashes of requests
// stored before them are unchanged.
func beginHash(r BeginRequest) string {
	var h hasher
	h.str("begin/v1")
	h.str(r.Kind)
	h.str(r.CardID)
	h.str(r.TerminalID)
	h.i64(r.Amount)
	h.str(r.Currency)
	h.str(r.Memo)
	h.legs(r.Legs)
	if r.MerchantID != "" {
		h.str("merchant")
		h.str(r.MerchantID)
	}
	return h.sum()
}

func completeHash(r CompleteRequest) string {
	var h hasher
	h.str("complete/v1")
	h.str(r.Memo)
	h.legs(r.Legs)
	if r.ATC != 0 {
		h.str("record")
		h.i64(int64(r.ATC))
		h.str(r.Digest)
	}
	return h.sum()
}

// adviceHash covers the card record and what is posted for it, not the key
// (the record is the identity, DebitAdvice.Key).
func adviceHash(a DebitAdvice) string {
	var h hasher
	h.str("advice/v1")
	h.str(a.CardID)
	h.i64(int64(a.ATC))
	h.str(a.Digest)
	h.str(a.TerminalID)
	h.str(a.MerchantID)
	h.i64(a.Amount)
	h.str(a.Currency)
	h.str(a.Memo)
	return h.sum()
}

// validateFloors checks that every floor (or ceiling) names an account of
// the legs.
func validateFloors(legs []Leg, floors map[string]int64) error {
	for acc := range floors {
		found := false
		for _, l := range legs {
			if l.Account == acc {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%w: floor or ceiling on %s, which the posting does not touch", ErrInvalid, acc)
		}
	}
	return nil
}

func reverseHash(r ReverseRequest) string {
	var h hasher
	h.str("reverse/v1")
	h.str(r.Reason)
	return h.sum()
}

// gaps returns the ranges of 1..last missing from the sorted ATC list.
func gaps(sorted []uint32, last uint32) []ATCRange {
	var out []ATCRange
	next := uint32(1)
	for _, a := range sorted {
		if a == 0 || a < next {
			continue
		}
		if a > next {
			out = append(out, ATCRange{From: next, To: a - 1})
		}
		if a == math.MaxUint32 {
			return out
		}
		next = a + 1
	}
	if last >= next && next != 0 {
		out = append(out, ATCRange{From: next, To: last})
	}
	return out
}
