package wallet

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Component is the sqldb migration component of this package.
const Component = "wallet"

// Errors; match with errors.Is. ResponseCode maps them to ISO 8583 DE 39.
var (
	// ErrInsufficientFunds: the purchase would take the balance below
	// −limit of the holder's level (response code 51).
	ErrInsufficientFunds = errors.New("wallet: insufficient funds")
	// ErrUnknownWallet: no wallet for the holder (response code 14).
	ErrUnknownWallet = errors.New("wallet: no such wallet")
	// ErrInvalidAmount: amount not in 1..MaxAmount (response code 13).
	ErrInvalidAmount = errors.New("wallet: invalid amount")
	// ErrInvalid: a malformed holder, merchant, key or level (code 30).
	ErrInvalid = errors.New("wallet: invalid request")
	// ErrDuplicate: the idempotency key was used for a different request,
	// or the wallet exists with another level (response code 94).
	ErrDuplicate = errors.New("wallet: key already used for a different request")
)

// Response codes (ISO 8583 DE 39, docs/iso8583.md §9) of a purchase.
const (
	CodeApproved          = "00"
	CodeInvalidAmount     = "13"
	CodeUnknownWallet     = "14"
	CodeFormatError       = "30"
	CodeInsufficientFunds = "51"
	CodeDuplicate         = "94"
	CodeSystemError       = "96"
)

// ResponseCode is the DE 39 code for the outcome of an operation.
func ResponseCode(err error) string {
	switch {
	case err == nil:
		return CodeApproved
	case errors.Is(err, ErrInsufficientFunds):
		return CodeInsufficientFunds
	case errors.Is(err, ErrUnknownWallet):
		return CodeUnknownWallet
	case errors.Is(err, ErrInvalidAmount):
		return CodeInvalidAmount
	case errors.Is(err, ErrInvalid):
		return CodeFormatError
	case errors.Is(err, ErrDuplicate):
		return CodeDuplicate
	}
	return CodeSystemError
}

// MaxAmount bounds one top-up or purchase (minor units): far above any
// real purchase, far below int64 overflow when summed.
const MaxAmount = int64(1) << 40

// Levels maps a credit level to its credit limit in minor units: how far
// below zero the wallet may go.
type Levels map[int]int64

// DefaultLevels is the credit table of docs/wallet.md §2 (EUR cents).
var DefaultLevels = Levels{0: 0, 1: 5000, 2: 20000, 3: 100000}

// Check verifies the table: at least one level, levels ≥ 0, limits in
// 0..MaxAmount.
func (l Levels) Check() error {
	if len(l) == 0 {
		return fmt.Errorf("%w: empty credit level table", ErrInvalid)
	}
	for lv, lim := range l {
		if lv < 0 || lim < 0 || lim > MaxAmount {
			return fmt.Errorf("%w: credit level %d limit %d", ErrInvalid, lv, lim)
		}
	}
	return nil
}

// Ledger is what the wallet needs from the ledger; *ledger.SQLStore
// implements it.
type Ledger interface {
	EnsureAccount(ctx context.Context, kind ledger.AccountKind, ref, currency string) (ledger.Account, error)
	Balance(ctx context.Context, id string) (int64, error)
	Post(ctx context.Context, p ledger.Posting) (ledger.Receipt, error)
}

// Options configure a Service.
type Options struct {
	Levels   Levels // DefaultLevels when nil
	Currency string // ISO 4217 numeric, "978" when empty
	Now      func() time.Time
}

// Service manages the wallets.
type Service struct {
	db       *sqldb.DB
	led      Ledger
	levels   Levels
	currency string
	now      func() time.Time

	mu      sync.Mutex
	ensured map[string]bool // accounts known to exist
}

// New migrates the wallet tables and returns the service.
func New(ctx context.Context, db *sqldb.DB, led Ledger, o Options) (*Service, error) {
	if o.Levels == nil {
		o.Levels = DefaultLevels
	}
	if err := o.Levels.Check(); err != nil {
		return nil, err
	}
	if o.Currency == "" {
		o.Currency = "978"
	}
	if !validCurrency(o.Currency) {
		return nil, fmt.Errorf("%w: currency %q", ErrInvalid, o.Currency)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, Component, sub); err != nil {
		return nil, err
	}
	return &Service{db: db, led: led, levels: maps.Clone(o.Levels), currency: o.Currency, now: o.Now, ensured: map[string]bool{}}, nil
}

// Levels returns the credit table, by level.
func (s *Service) Levels() Levels { return maps.Clone(s.levels) }

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := range 3 {
		if c[i] < '0' || c[i] > '9' {
			return false
		}
	}
	return true
}

// validName accepts 1..64 characters [A-Za-z0-9._@-]: holder and merchant
// IDs become ledger account refs and posting keys, where ':' and '/' are
// separators.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '@' || c == '-') {
			return false
		}
	}
	return true
}

// validKey accepts 1..128 printable ASCII characters.
func validKey(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// Wallet is the state of one wallet.
type Wallet struct {
	Holder   string `json:"holder"`
	Level    int    `json:"level"`
	Limit    int64  `json:"limit"` // credit limit posted at opening
	Currency string `json:"currency"`
	// Balance is the holder's balance: positive when the issuer owes the
	// holder, negative when the holder has drawn on credit.
	Balance int64 `json:"balance"`
	// Available is what a purchase may still take: Limit + Balance.
	Available int64     `json:"available"`
	CreatedAt time.Time `json:"created_at"`
}

// account is the wallet's one ledger account (docs/wallet.md §3): kind
// wallet, a liability whose balance is the negation of the holder's.
func (s *Service) account(holder string) string {
	return ledger.AccountID(ledger.KindWallet, holder, s.currency)
}

// ensure creates a ledger account once per process.
func (s *Service) ensure(ctx context.Context, kind ledger.AccountKind, ref string) (string, error) {
	id := ledger.AccountID(kind, ref, s.currency)
	s.mu.Lock()
	ok := s.ensured[id]
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	if _, err := s.led.EnsureAccount(ctx, kind, ref, s.currency); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.ensured[id] = true
	s.mu.Unlock()
	return id, nil
}

// Open opens the holder's wallet at a credit level. Opening again at the
// same level is a no-op (and repairs an opening interrupted half-way);
// another level is ErrDuplicate.
func (s *Service) Open(ctx context.Context, holder string, level int) (Wallet, error) {
	if !validName(holder) {
		return Wallet{}, fmt.Errorf("%w: holder %q", ErrInvalid, holder)
	}
	limit, ok := s.levels[level]
	if !ok {
		return Wallet{}, fmt.Errorf("%w: credit level %d not in %v", ErrInvalid, level, slices.Sorted(maps.Keys(s.levels)))
	}
	if w, err := s.row(ctx, holder); err == nil && (w.Level != level || w.Limit != limit) {
		return Wallet{}, fmt.Errorf("%w: wallet %s is open at level %d", ErrDuplicate, holder, w.Level)
	} else if err != nil && !errors.Is(err, ErrUnknownWallet) {
		return Wallet{}, err
	}
	// The account first, so a wallet whose row exists always has it.
	if _, err := s.ensure(ctx, ledger.KindWallet, holder); err != nil {
		return Wallet{}, fmt.Errorf("wallet %s: %w", holder, err)
	}
	now := s.now().UnixMicro()
	err := s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM wal_wallets WHERE holder = ?`, holder).Scan(&n); err != nil || n > 0 {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO wal_wallets (holder, level, credit, currency, created_at) VALUES (?, ?, ?, ?, ?)`,
			holder, level, limit, s.currency, now)
		return err
	})
	if err != nil {
		// Two opens raced; the row that won decides.
		if w, rerr := s.row(ctx, holder); rerr == nil && (w.Level != level || w.Limit != limit) {
			return Wallet{}, fmt.Errorf("%w: wallet %s is open at level %d", ErrDuplicate, holder, w.Level)
		} else if rerr != nil {
			return Wallet{}, fmt.Errorf("wallet %s: %w", holder, err)
		}
	}
	return s.Show(ctx, holder)
}

func (s *Service) row(ctx context.Context, holder string) (Wallet, error) {
	w := Wallet{Holder: holder}
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		var created int64
		err := tx.QueryRow(ctx, `SELECT level, credit, currency, created_at FROM wal_wallets WHERE holder = ?`, holder).
			Scan(&w.Level, &w.Limit, &w.Currency, &created)
		w.CreatedAt = time.UnixMicro(created).UTC()
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return Wallet{}, fmt.Errorf("%w: %s", ErrUnknownWallet, holder)
	}
	if err != nil {
		return Wallet{}, fmt.Errorf("wallet %s: %w", holder, err)
	}
	if w.Currency != s.currency {
		return Wallet{}, fmt.Errorf("wallet %s: currency %s, the service runs %s", holder, w.Currency, s.currency)
	}
	return w, nil
}

// Show returns the wallet with its balances.
func (s *Service) Show(ctx context.Context, holder string) (Wallet, error) {
	if !validName(holder) {
		return Wallet{}, fmt.Errorf("%w: holder %q", ErrInvalid, holder)
	}
	w, err := s.row(ctx, holder)
	if err != nil {
		return Wallet{}, err
	}
	v, err := s.led.Balance(ctx, s.account(holder))
	if err != nil {
		return Wallet{}, fmt.Errorf("wallet %s: %w", holder, err)
	}
	// The value account is a liability: its ledger balance is the negation
	// of what the holder sees (docs/ledger.md §2).
	w.Balance, w.Available = -v, w.Limit-v
	return w, nil
}

// TopUp credits the wallet from a funding source (e.g. "bank"), once per
// key.
func (s *Service) TopUp(ctx context.Context, holder string, amount int64, source, key string) (Outcome, error) {
	if amount <= 0 || amount > MaxAmount {
		return Outcome{Code: CodeInvalidAmount}, fmt.Errorf("%w: %d", ErrInvalidAmount, amount)
	}
	if !validName(holder) || !validName(source) || !validKey(key) {
		return Outcome{Code: CodeFormatError}, fmt.Errorf("%w: holder %q, source %q, key %q", ErrInvalid, holder, source, key)
	}
	if _, err := s.row(ctx, holder); err != nil {
		return Outcome{Code: ResponseCode(err)}, err
	}
	src, err := s.ensure(ctx, ledger.KindFunding, source)
	if err != nil {
		return Outcome{Code: CodeSystemError}, fmt.Errorf("wallet %s: %w", holder, err)
	}
	c := s.currency
	return s.post(ctx, holder, source, amount, ledger.Posting{Key: "wal/" + holder + "/topup/" + key,
		Memo: fmt.Sprintf("wallet %s top-up from %s", holder, source),
		Legs: []ledger.Leg{{Account: src, Amount: amount, Currency: c}, {Account: s.account(holder), Amount: -amount, Currency: c}}})
}

// Outcome is the answer to a top-up or a purchase.
type Outcome struct {
	Code      string `json:"code"` // ISO 8583 DE 39
	Approved  bool   `json:"approved"`
	Holder    string `json:"holder"`
	Party     string `json:"party,omitempty"` // merchant, or top-up source
	Amount    int64  `json:"amount"`
	Balance   int64  `json:"balance"`   // the holder's balance after (when approved)
	Available int64  `json:"available"` // what may still be spent
	PostingID string `json:"posting_id,omitempty"`
	// Replayed: the key was already used for this same request; this is
	// its original result, nothing was posted now.
	Replayed bool `json:"replayed"`
}

// Purchase pays merchant amount from the holder's wallet, once per key.
// It is refused with ErrInsufficientFunds (code 51), nothing posted, when
// the holder's balance would go below −limit. The check is the ledger's
// ceiling on the wallet's account, inside the posting's transaction.
func (s *Service) Purchase(ctx context.Context, holder, merchant string, amount int64, key string) (Outcome, error) {
	if amount <= 0 || amount > MaxAmount {
		return Outcome{Code: CodeInvalidAmount, Holder: holder, Party: merchant, Amount: amount}, fmt.Errorf("%w: %d", ErrInvalidAmount, amount)
	}
	if !validName(holder) || !validName(merchant) || !validKey(key) {
		return Outcome{Code: CodeFormatError, Holder: holder, Party: merchant, Amount: amount},
			fmt.Errorf("%w: holder %q, merchant %q, key %q", ErrInvalid, holder, merchant, key)
	}
	w, err := s.row(ctx, holder)
	if err != nil {
		return Outcome{Code: ResponseCode(err), Holder: holder, Party: merchant, Amount: amount}, err
	}
	m, err := s.ensure(ctx, ledger.KindMerchant, merchant)
	if err != nil {
		return Outcome{Code: CodeSystemError, Holder: holder, Party: merchant, Amount: amount}, fmt.Errorf("wallet %s: %w", holder, err)
	}
	// The credit level's limit is a ceiling on the wallet's account, checked
	// by the ledger inside the posting's transaction: concurrent purchases
	// cannot overdraw it together (no check-then-act).
	a, c := s.account(holder), s.currency
	return s.post(ctx, holder, merchant, amount, ledger.Posting{Key: "wal/" + holder + "/purchase/" + key,
		Memo:     fmt.Sprintf("wallet %s purchase at %s", holder, merchant),
		Legs:     []ledger.Leg{{Account: a, Amount: amount, Currency: c}, {Account: m, Amount: -amount, Currency: c}},
		Ceilings: map[string]int64{a: w.Limit}})
}

func (s *Service) post(ctx context.Context, holder, party string, amount int64, p ledger.Posting) (Outcome, error) {
	out := Outcome{Holder: holder, Party: party, Amount: amount}
	rc, err := s.led.Post(ctx, p)
	switch {
	case errors.Is(err, ledger.ErrInsufficientFunds):
		err = fmt.Errorf("%w: wallet %s: %d above what is available", ErrInsufficientFunds, holder, amount)
	case errors.Is(err, ledger.ErrConflict):
		err = fmt.Errorf("%w: %s", ErrDuplicate, p.Key)
	case errors.Is(err, ledger.ErrOverflow):
		err = fmt.Errorf("%w: %d: %w", ErrInvalidAmount, amount, err)
	case err != nil:
		err = fmt.Errorf("wallet %s: %w", holder, err)
	}
	out.Code = ResponseCode(err)
	if w, serr := s.Show(ctx, holder); serr == nil {
		out.Balance, out.Available = w.Balance, w.Available
	}
	if err != nil {
		return out, err
	}
	out.Approved, out.PostingID, out.Replayed = true, rc.ID, rc.Replayed
	return out, nil
}

// List returns every wallet (without balances), by holder.
func (s *Service) List(ctx context.Context) ([]Wallet, error) {
	var out []Wallet
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `SELECT holder, level, credit, currency, created_at FROM wal_wallets`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var w Wallet
			var created int64
			if err := rows.Scan(&w.Holder, &w.Level, &w.Limit, &w.Currency, &created); err != nil {
				return err
			}
			w.CreatedAt = time.UnixMicro(created).UTC()
			out = append(out, w)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("wallets: %w", err)
	}
	slices.SortFunc(out, func(a, b Wallet) int {
		if a.Holder < b.Holder {
			return -1
		}
		if a.Holder > b.Holder {
			return 1
		}
		return 0
	})
	return out, nil
}
