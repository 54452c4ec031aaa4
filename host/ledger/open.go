package ledger

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"sync"
	"time"

	"github.com/valuechip/valuechip/host/sqldb"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// component names the ledger's migrations in schema_migrations; its tables
// are prefixed "ledger_" (docs/ledger.md §9).
const component = "ledger"

// legacyMigrations is the table in which ledgers created before host/sqldb
// recorded their migrations; New moves its rows to schema_migrations.
const legacyMigrations = "ledger_schema_migrations"

// SQLStore is the database/sql implementation of Store for SQLite and
// PostgreSQL, over a shared *sqldb.DB.
type SQLStore struct {
	db *sqldb.DB
	// owned: the store opened db itself (Open) and closes it on Close.
	owned bool
	// stripes are in-process account locks for PostgreSQL: a transaction
	// takes the stripes of the accounts it will touch, in ascending order,
	// so postings on one hot account (the float, a funding account) queue
	// here instead of failing each other with serialization errors.
	// Correctness does not depend on them (SERIALIZABLE does); they only
	// keep retries rare within one process.
	stripes [64]sync.Mutex
	// now is the clock (tests may replace it).
	now func() time.Time

	mu     sync.Mutex
	closed bool
}

var _ Store = (*SQLStore)(nil)

// New returns the ledger stored in db, migrating its schema (component
// "ledger") to the current version. The caller keeps ownership of db: Close
// of the store does not close it.
func New(ctx context.Context, db *sqldb.DB) (*SQLStore, error) {
	if err := db.ImportLegacyMigrations(ctx, component, legacyMigrations); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	sub, err := fs.Sub(migrationFS, "migrations")
	if err != nil {
		return nil, fmt.Errorf("ledger: migrations: %w", err)
	}
	if err := db.Migrate(ctx, component, sub); err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &SQLStore{db: db, now: time.Now}, nil
}

// Open opens (creating if needed) the ledger named by dsn (see sqldb.Open:
// "postgres://…", "sqlite:PATH", "file:PATH" or a plain path) and migrates
// its schema. The store owns the database and closes it on Close.
func Open(ctx context.Context, dsn string) (*SQLStore, error) {
	db, err := sqldb.Open(ctx, dsn)
	if errors.Is(err, sqldb.ErrInvalidDSN) {
		return nil, fmt.Errorf("ledger: %w: %w", ErrInvalid, err)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	s, err := New(ctx, db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	s.owned = true
	return s, nil
}

// Close closes the store; further calls fail with ErrClosed. The database is
// closed only when the store opened it (Open).
func (s *SQLStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.owned {
		if err := s.db.Close(); err != nil {
			return fmt.Errorf("ledger: close: %w", err)
		}
	}
	return nil
}

// Dialect names the engine: "sqlite" or "postgres".
func (s *SQLStore) Dialect() string { return s.db.Dialect().String() }

// DB is the database the store lives in.
func (s *SQLStore) DB() *sqldb.DB { return s.db }

// lockAccounts takes the in-process stripes of the accounts (PostgreSQL
// only) and returns the function that releases them.
func (s *SQLStore) lockAccounts(accounts ...string) func() {
	if s.db.Dialect() != sqldb.Postgres || len(accounts) == 0 {
		return func() {}
	}
	var want [len(s.stripes)]bool
	for _, a := range accounts {
		h := fnv.New32a()
		_, _ = h.Write([]byte(a))
		want[h.Sum32()%uint32(len(s.stripes))] = true
	}
	var held []int
	for i, w := range want {
		if w {
			s.stripes[i].Lock()
			held = append(held, i)
		}
	}
	return func() {
		for j := len(held) - 1; j >= 0; j-- {
			s.stripes[held[j]].Unlock()
		}
	}
}

func legAccounts(legs []Leg) []string {
	out := make([]string, len(legs))
	for i, l := range legs {
		out[i] = l.Account
	}
	return out
}

// inTx runs fn in a transaction of the shared database (serializable,
// retried whole: sqldb.DB.Tx). fn must be safe to re-run.
func (s *SQLStore) inTx(ctx context.Context, write bool, fn func(sqldb.Tx) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	err := s.db.Tx(ctx, write, fn)
	if errors.Is(err, sqldb.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// newID returns a random 128-bit identifier in hex (no sequences: portable
// and contention-free on distributed engines).
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ledger: random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
