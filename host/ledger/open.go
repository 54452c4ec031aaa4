package ledger

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	mrand "math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// dialect is what differs between the two engines: the driver, the
// placeholder style, the isolation level and which errors are retried.
type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// SQLStore is the database/sql implementation of Store for SQLite and
// PostgreSQL.
type SQLStore struct {
	db      *sql.DB
	dialect dialect
	// wmu serialises transactions inside this process on SQLite, which has a
	// single writer anyway (and BEGIN IMMEDIATE makes every transaction a
	// writer); other processes wait on busy_timeout and are retried.
	wmu sync.Mutex
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

// Open opens (creating if needed) the ledger named by dsn and migrates its
// schema to the current version.
//
//   - "postgres://…" or "postgresql://…": PostgreSQL through pgx (see pgdriver.go).
//   - "sqlite:PATH", "file:PATH" or a plain path: SQLite through
//     modernc.org/sqlite, with WAL, synchronous=FULL, foreign keys,
//     busy_timeout and BEGIN IMMEDIATE transactions.
func Open(ctx context.Context, dsn string) (*SQLStore, error) {
	var (
		s   = &SQLStore{now: time.Now}
		err error
	)
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		s.dialect = dialectPostgres
		registerPGDriver()
		s.db, err = sql.Open(pgDriverName, dsn)
	default:
		s.dialect = dialectSQLite
		var sdsn string
		sdsn, err = sqliteDSN(dsn)
		if err == nil {
			s.db, err = sql.Open("sqlite", sdsn)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", s.dialect, err)
	}
	if s.dialect == dialectSQLite {
		// A few connections for concurrent readers (WAL); writers are
		// serialised by wmu.
		s.db.SetMaxOpenConns(4)
		s.db.SetMaxIdleConns(4)
		s.db.SetConnMaxIdleTime(0)
	} else {
		// Hot accounts queue on the in-process stripes, so a modest pool
		// suffices and leaves server connections for other processes.
		s.db.SetMaxOpenConns(16)
		s.db.SetMaxIdleConns(16)
	}
	if err := s.db.PingContext(ctx); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("ledger: connect %s: %w", s.dialect, err)
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.db.Close()
		return nil, err
	}
	return s, nil
}

// sqliteDSN turns "sqlite:PATH", "file:PATH?…" or "PATH" into a modernc DSN
// with the durability settings. Parameters given by the caller are kept.
func sqliteDSN(dsn string) (string, error) {
	path := strings.TrimPrefix(dsn, "sqlite:")
	path = strings.TrimPrefix(path, "file:")
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	if path == "" || path == ":memory:" {
		return "", fmt.Errorf("%w: the ledger needs a database file, got %q", ErrInvalid, dsn)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("%w: sqlite DSN query: %v", ErrInvalid, err)
	}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)"} {
		q.Add("_pragma", p)
	}
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}
	return "file:" + path + "?" + q.Encode(), nil
}

// Close closes the database. Further calls fail with ErrClosed.
func (s *SQLStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("ledger: close: %w", err)
	}
	return nil
}

// Dialect names the engine: "sqlite" or "postgres".
func (s *SQLStore) Dialect() string { return s.dialect.String() }

// rebind turns ? placeholders into $1, $2, … for PostgreSQL. The statements
// of this package never contain a literal question mark.
func (s *SQLStore) rebind(q string) string {
	if s.dialect != dialectPostgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// tx wraps a *sql.Tx with placeholder rebinding.
type tx struct {
	s  *SQLStore
	tx *sql.Tx
}

func (t tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.tx.ExecContext(ctx, t.s.rebind(q), args...)
}

func (t tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.tx.QueryContext(ctx, t.s.rebind(q), args...)
}

func (t tx) row(ctx context.Context, q string, args ...any) *sql.Row {
	return t.tx.QueryRowContext(ctx, t.s.rebind(q), args...)
}

const (
	maxAttempts = 100
	maxBackoff  = 50 * time.Millisecond
)

// lockAccounts takes the in-process stripes of the accounts (PostgreSQL
// only) and returns the function that releases them.
func (s *SQLStore) lockAccounts(accounts ...string) func() {
	if s.dialect != dialectPostgres || len(accounts) == 0 {
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

// backoff is a jittered exponential delay for retry attempt n ≥ 1.
func backoff(n int) time.Duration {
	d := time.Millisecond << min(n, 6)
	d = min(d, maxBackoff)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// inTx runs fn in a serializable transaction and commits it, retrying the
// whole function on serialization failures, deadlocks, busy databases and
// unique-key races. fn must be safe to re-run.
func (s *SQLStore) inTx(ctx context.Context, write bool, fn func(tx) error) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			d := backoff(attempt)
			select {
			case <-ctx.Done():
				return fmt.Errorf("ledger: %w (last error: %w)", ctx.Err(), err)
			case <-time.After(d):
			}
		}
		err = s.runTx(ctx, write, fn)
		if err == nil || !s.retryable(err) {
			return err
		}
	}
	return fmt.Errorf("ledger: gave up after %d attempts: %w", maxAttempts, err)
}

func (s *SQLStore) runTx(ctx context.Context, write bool, fn func(tx) error) (err error) {
	opts := &sql.TxOptions{}
	if s.dialect == dialectPostgres {
		opts.Isolation = sql.LevelSerializable
		opts.ReadOnly = !write
	}
	if s.dialect == dialectSQLite {
		s.wmu.Lock()
		defer s.wmu.Unlock()
	}
	t, err := s.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("ledger: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = t.Rollback()
		}
	}()
	if err = fn(tx{s: s, tx: t}); err != nil {
		return err
	}
	if err = t.Commit(); err != nil {
		return fmt.Errorf("ledger: commit: %w", err)
	}
	return nil
}

// errRetry is returned by fn to ask for another attempt (a race on an
// idempotency key that the next attempt will see as a replay).
var errRetry = errors.New("ledger: retry")

func (s *SQLStore) retryable(err error) bool {
	if errors.Is(err, errRetry) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "23505": // serialization failure, deadlock, unique race
			return true
		}
		return false
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
	}
	return false
}

// migrate applies the embedded migrations in version order, each in its own
// transaction with its row in ledger_schema_migrations.
func (s *SQLStore) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ledger_schema_migrations (
    version    BIGINT NOT NULL PRIMARY KEY,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL
)`); err != nil {
		return fmt.Errorf("ledger: migrate: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("ledger: migrate: %w", err)
	}
	type mig struct {
		version int64
		name    string
	}
	var migs []mig
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		v, err := strconv.ParseInt(strings.SplitN(base, "_", 2)[0], 10, 64)
		if err != nil {
			return fmt.Errorf("ledger: migration %s: bad version: %w", base, err)
		}
		migs = append(migs, mig{v, base})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })
	for _, m := range migs {
		body, err := migrationFS.ReadFile("migrations/" + m.name)
		if err != nil {
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
		err = s.inTx(ctx, true, func(t tx) error {
			var n int
			if err := t.row(ctx, `SELECT COUNT(*) FROM ledger_schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range splitSQL(string(body)) {
				if _, err := t.exec(ctx, stmt); err != nil {
					return fmt.Errorf("%w\n%s", err, stmt)
				}
			}
			_, err := t.exec(ctx, `INSERT INTO ledger_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, s.now().UnixMicro())
			return err
		})
		if err != nil {
			return fmt.Errorf("ledger: migration %s: %w", m.name, err)
		}
	}
	return nil
}

// splitSQL splits a migration into statements at semicolons ending a line,
// dropping "--" comment lines.
func splitSQL(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		trim := strings.TrimSpace(line)
		if trim == "" || strings.HasPrefix(trim, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trim, ";") {
			stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			out = append(out, stmt)
			cur.Reset()
		}
	}
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		out = append(out, rest)
	}
	return out
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
