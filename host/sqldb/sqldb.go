// Package sqldb is the database layer the money server's stores share
// (ledger, registry, validity lists, …): one *DB opened from a DSN on SQLite
// (modernc.org/sqlite, pure Go, the embedded default) or PostgreSQL (pgx),
// serializable transactions retried whole on serialization failures and busy
// databases, '?' placeholders rebound for PostgreSQL, and per-component schema
// migrations.
//
// The rules for the SQL the stores write are in docs/ledger.md §10: portable
// types, application-generated IDs, times as BIGINT Unix microseconds, table
// names prefixed by component.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Errors of this package; match them with errors.Is.
var (
	// ErrInvalidDSN: the DSN cannot name a durable database (empty,
	// ":memory:", bad query string).
	ErrInvalidDSN = errors.New("sqldb: invalid DSN")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("sqldb: database closed")
	// ErrRetry may be returned by a transaction function to have the whole
	// transaction run again (e.g. it lost a race on a key that the next
	// attempt will see).
	ErrRetry = errors.New("sqldb: retry")
)

// Dialect is the database engine behind a DB.
type Dialect int

// The engines.
const (
	SQLite Dialect = iota
	Postgres
)

func (d Dialect) String() string {
	if d == Postgres {
		return "postgres"
	}
	return "sqlite"
}

// DB is an open database shared by the stores of one process. It is safe for
// concurrent use.
type DB struct {
	db      *sql.DB
	dialect Dialect
	// wmu serialises transactions inside this process on SQLite, which has a
	// single writer anyway (and BEGIN IMMEDIATE makes every transaction a
	// writer); other processes wait on busy_timeout and are retried
	// (docs/ledger.md §8).
	wmu sync.Mutex

	mu     sync.Mutex
	closed bool
	// stmts caches prepared statements by query text (SQLite only, where
	// parsing a statement costs as much as running it; pgx caches its own
	// per connection). database/sql re-prepares a cached statement on
	// another connection when needed.
	stmts map[string]*sql.Stmt
}

// maxCachedStmts bounds the statement cache; statements beyond it are
// prepared per use.
const maxCachedStmts = 256

// Open opens (creating if needed, for SQLite) the database named by dsn:
//
//   - "postgres://…" or "postgresql://…": PostgreSQL through pgx (pgdriver.go);
//   - "sqlite:PATH", "file:PATH" or a plain PATH: SQLite through
//     modernc.org/sqlite with WAL, synchronous=FULL, foreign keys,
//     busy_timeout=10000 and BEGIN IMMEDIATE transactions (docs/ledger.md §8).
//
// It pings the server before returning. It does not migrate anything: each
// store calls Migrate for its own component.
func Open(ctx context.Context, dsn string) (*DB, error) {
	d := &DB{}
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		d.dialect = Postgres
		registerPGDriver()
		d.db, err = sql.Open(pgDriverName, dsn)
	default:
		d.dialect = SQLite
		var sdsn string
		sdsn, err = sqliteDSN(dsn)
		if err == nil {
			d.db, err = sql.Open("sqlite", sdsn)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sqldb: open %s: %w", d.dialect, err)
	}
	if d.dialect == SQLite {
		// A few connections for concurrent readers (WAL); writers are
		// serialised by wmu.
		d.db.SetMaxOpenConns(4)
		d.db.SetMaxIdleConns(4)
		d.db.SetConnMaxIdleTime(0)
	} else {
		// Stores queue hot rows in-process (e.g. the ledger's account
		// stripes), so a modest pool suffices and leaves server connections
		// for other processes.
		d.db.SetMaxOpenConns(16)
		d.db.SetMaxIdleConns(16)
	}
	if err := d.db.PingContext(ctx); err != nil {
		_ = d.db.Close()
		return nil, fmt.Errorf("sqldb: connect %s: %w", d.dialect, err)
	}
	return d, nil
}

// sqliteDSN turns "sqlite:PATH", "file:PATH?…" or "PATH" into a modernc DSN
// with the durability settings. Parameters given by the caller are kept.
func sqliteDSN(dsn string) (string, error) {
	rest := strings.TrimPrefix(dsn, "sqlite:")
	rest = strings.TrimPrefix(rest, "file:")
	path, query, _ := strings.Cut(rest, "?")
	if path == "" || path == ":memory:" {
		return "", fmt.Errorf("%w: a database file is needed, got %q", ErrInvalidDSN, dsn)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("%w: sqlite DSN query: %v", ErrInvalidDSN, err)
	}
	// temp_store(MEMORY) keeps the statement journals of savepoints in
	// memory instead of temporary files; it does not touch durability (the
	// database and its WAL are fsynced as before). wal_autocheckpoint(50000)
	// lets the WAL grow to ~200 MB between checkpoints instead of ~4 MB. The
	// checkpoint runs in the connection that commits — for debit advices the
	// group commit's one writer — and copies every distinct page of the WAL
	// into the database: a page written by many commits (hot accounts, the
	// right edges of indexes, a card's latest entries) is copied once per
	// checkpoint instead of once per few commits. Measured with `valuechip
	// bench server`: steady-state advices/s +15–25 % over 10,000 frames,
	// which was itself ~15 % over the default (docs/ledger.md §11); a
	// background checkpointer on its own connection did worse. Durability is
	// the WAL's, unchanged; the cost is disk (the WAL file keeps its largest
	// size) and a longer WAL to replay after a crash. cache_size(-32768)
	// gives each connection a 32 MiB page cache instead of 2 MiB, so the
	// index pages a batch of advices walks stay in memory as the ledger grows.
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)", "temp_store(MEMORY)", "wal_autocheckpoint(50000)", "cache_size(-32768)"} {
		q.Add("_pragma", p)
	}
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode(), nil
}

// Dialect is the engine.
func (d *DB) Dialect() Dialect { return d.dialect }

// SQL is the underlying pool, for what Tx does not cover (tests, PRAGMA
// reads). Writes should go through Tx so they are serialised and retried.
func (d *DB) SQL() *sql.DB { return d.db }

// Close closes the database. Later transactions fail with ErrClosed.
func (d *DB) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	for _, st := range d.stmts {
		_ = st.Close()
	}
	d.stmts = nil
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("sqldb: close: %w", err)
	}
	return nil
}

func (d *DB) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// stmt returns the cached prepared statement for q (SQLite only),
// preparing it on first use; nil means "do not cache". The lock is not held
// while preparing (that takes a connection from the pool).
func (d *DB) stmt(ctx context.Context, q string) *sql.Stmt {
	if d.dialect != SQLite {
		return nil
	}
	d.mu.Lock()
	st, ok := d.stmts[q]
	full := len(d.stmts) >= maxCachedStmts
	d.mu.Unlock()
	if ok || full {
		return st
	}
	st, err := d.db.PrepareContext(ctx, q)
	if err != nil {
		return nil // the caller runs q unprepared and reports the error
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if other, ok := d.stmts[q]; ok || d.closed {
		_ = st.Close()
		return other
	}
	if d.stmts == nil {
		d.stmts = map[string]*sql.Stmt{}
	}
	d.stmts[q] = st
	return st
}
