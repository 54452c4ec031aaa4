// Package registry is the money server's record of who may transact: the
// terminals (DE 41/42 identity, status, terminal master key), their sign-on
// sessions (working key and transaction-number seeds, docs/iso8583.md §2.1,
// §4, §7), and the cards (status, currency, maximum balance, key version).
// Status changes of cards and terminals carry a monotonically increasing
// change version from which the in-memory validity lists (the card hotlist
// and the terminal whitelist) are built and refreshed.
//
// Everything lives in the database behind *sqldb.DB (tables reg_*), so a
// restarted server keeps accepting the working keys and seeds it handed out
// before. Keys are stored sealed by a Sealer (host/keystore) under a label
// that binds each blob to its row: "tmk/<terminal>", "wk/<terminal>",
// "seed/<seed ID>". docs/registry.md describes tables, statuses and versions.
package registry

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/valuechip/valuechip/host/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Errors. ErrInvalid messages name the offending field and the expected
// format.
var (
	ErrNotFound = errors.New("registry: not found")
	ErrExists   = errors.New("registry: already registered")
	ErrInvalid  = errors.New("registry: invalid")
	// ErrBlocked refuses the sign-on of a blocked terminal.
	ErrBlocked = errors.New("registry: terminal blocked")
	// ErrNoSealer: a key operation on a Store made without a Sealer.
	ErrNoSealer = errors.New("registry: no key store (sealer) given")
)

// Sealer encrypts keys at rest; host/keystore's key ring implements it
// (AES-256-GCM under the KEK with the label as additional data, so a blob
// sealed for one label does not open under another).
type Sealer interface {
	Seal(label string, plain []byte) ([]byte, error)
	Open(label string, sealed []byte) ([]byte, error)
}

// Status is the status of a terminal (Active, Blocked) or a card (Active,
// Blocked, Hotlisted).
type Status string

// Statuses.
const (
	Active    Status = "active"
	Blocked   Status = "blocked"
	Hotlisted Status = "hotlisted"
)

// Version counters, one row each in reg_versions.
const (
	cardsCounter     = "cards"
	terminalsCounter = "terminals"
)

// Store is the registry over one database. It keeps no state of its own
// beyond the database, so any number of Stores (and processes) may share it.
type Store struct {
	db     *sqldb.DB
	sealer Sealer
	now    func() time.Time

	randMu sync.Mutex
	rand   io.Reader
}

// Option configures a Store.
type Option func(*Store)

// WithRand replaces crypto/rand as the source of keys and seed IDs (tests).
func WithRand(r io.Reader) Option { return func(s *Store) { s.rand = r } }

// WithClock replaces time.Now for the creation and change times.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New migrates the registry's tables ("registry" component) and returns the
// store. sealer seals every key the registry stores; it may be nil for a
// store that only reads and changes statuses (`valuechip terminal list`),
// whose key operations then fail with ErrNoSealer.
func New(ctx context.Context, db *sqldb.DB, sealer Sealer, opts ...Option) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: registry needs a database", ErrInvalid)
	}
	s := &Store{db: db, sealer: sealer, now: time.Now, rand: rand.Reader}
	for _, o := range opts {
		o(s)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("registry: migrations: %w", err)
	}
	if err := db.Migrate(ctx, "registry", sub); err != nil {
		return nil, fmt.Errorf("registry: migrate: %w", err)
	}
	return s, nil
}

func (s *Store) read(p []byte) error {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	if _, err := io.ReadFull(s.rand, p); err != nil {
		return fmt.Errorf("registry: random: %w", err)
	}
	return nil
}

// newKey draws a fresh AES-128 key.
func (s *Store) newKey() ([]byte, error) {
	k := make([]byte, 16)
	if err := s.read(k); err != nil {
		return nil, err
	}
	return k, nil
}

func (s *Store) seal(label string, plain []byte) (string, error) {
	if s.sealer == nil {
		return "", fmt.Errorf("%w: cannot seal %s", ErrNoSealer, label)
	}
	b, err := s.sealer.Seal(label, plain)
	if err != nil {
		return "", fmt.Errorf("registry: seal %s: %w", label, err)
	}
	return hex.EncodeToString(b), nil
}

func (s *Store) open(label, sealed string) ([]byte, error) {
	if s.sealer == nil {
		return nil, fmt.Errorf("%w: cannot open %s", ErrNoSealer, label)
	}
	b, err := hex.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("registry: %s: stored blob is not hex: %w", label, err)
	}
	p, err := s.sealer.Open(label, b)
	if err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", label, err)
	}
	return p, nil
}

// micros and fromMicros convert times to the BIGINT Unix microseconds of the
// schema (docs/ledger.md §10).
func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// bump increments a version counter inside tx and returns the new value.
// The counter row is the last thing a changing transaction writes: its row
// lock (PostgreSQL) or the single writer (SQLite) orders the versions as the
// commits, so a reader that sees version V sees every change up to V.
func bump(ctx context.Context, tx sqldb.Tx, name string) (int64, error) {
	if _, err := tx.Exec(ctx, "UPDATE reg_versions SET version = version + 1 WHERE name = ?", name); err != nil {
		return 0, fmt.Errorf("registry: bump %s version: %w", name, err)
	}
	return version(ctx, tx, name)
}

func version(ctx context.Context, tx sqldb.Tx, name string) (int64, error) {
	var v int64
	if err := tx.QueryRow(ctx, "SELECT version FROM reg_versions WHERE name = ?", name).Scan(&v); err != nil {
		return 0, fmt.Errorf("registry: read %s version: %w", name, err)
	}
	return v, nil
}

// printable reports whether s consists of printable ASCII only (ISO 8583
// "ans" without the extended characters).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}

// ValidTerminalID checks a terminal ID: exactly 8 printable ASCII characters,
// not all spaces (DE 41, ans 8; it is also the purse's 8-byte terminal ID).
func ValidTerminalID(id string) error {
	if len(id) != 8 || !printable(id) || strings.TrimSpace(id) == "" {
		return fmt.Errorf("%w: terminal ID %q: want exactly 8 printable ASCII characters (DE 41 ans 8)", ErrInvalid, id)
	}
	return nil
}

// ValidMerchantID checks a merchant ID: exactly 15 printable ASCII
// characters, not all spaces (DE 42, ans 15).
func ValidMerchantID(id string) error {
	if len(id) != 15 || !printable(id) || strings.TrimSpace(id) == "" {
		return fmt.Errorf("%w: merchant ID %q: want exactly 15 printable ASCII characters (DE 42 ans 15)", ErrInvalid, id)
	}
	return nil
}

// NormCardID checks a CardID (16 hex digits, the 8-byte purse CardID of
// docs/purse.md §4.1) and returns it in upper case, the form stored.
func NormCardID(id string) (string, error) {
	if len(id) != 16 {
		return "", fmt.Errorf("%w: card ID %q: want 16 hex digits", ErrInvalid, id)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return "", fmt.Errorf("%w: card ID %q: want 16 hex digits", ErrInvalid, id)
	}
	return strings.ToUpper(id), nil
}

// validText checks a free-text field (holder reference, reason).
func validText(what, s string) error {
	if len(s) > 256 || !printable(s) {
		return fmt.Errorf("%w: %s: at most 256 printable ASCII characters", ErrInvalid, what)
	}
	return nil
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }
