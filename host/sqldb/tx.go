package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Retry policy (docs/ledger.md §8): up to MaxAttempts runs of the whole
// transaction, jittered exponential backoff capped at maxBackoff.
const (
	MaxAttempts = 100
	maxBackoff  = 50 * time.Millisecond
)

// Tx is one database transaction handed to the function given to DB.Tx.
// Statements use '?' placeholders, rebound to $1, $2, … on PostgreSQL.
type Tx struct {
	d  *DB
	tx *sql.Tx
	st *txState
}

type txState struct {
	stmts map[string]*sql.Stmt // cached statements bound to this transaction
}

// prepared is q's cached statement bound to the transaction, or nil
// (statements with placeholders only: others are usually built at run time,
// e.g. DDL).
func (t Tx) prepared(ctx context.Context, q string) *sql.Stmt {
	if !strings.Contains(q, "?") {
		return nil
	}
	return t.preparedAlways(ctx, q)
}

func (t Tx) preparedAlways(ctx context.Context, q string) *sql.Stmt {
	if st, ok := t.st.stmts[q]; ok {
		return st
	}
	st := t.d.stmt(ctx, q)
	if st != nil {
		st = t.tx.StmtContext(ctx, st)
		if t.st.stmts == nil {
			t.st.stmts = map[string]*sql.Stmt{}
		}
		t.st.stmts[q] = st
	}
	return st
}

// Dialect is the engine of the transaction's database.
func (t Tx) Dialect() Dialect { return t.d.dialect }

// Exec runs a statement.
func (t Tx) Exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := t.prepared(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, t.d.Rebind(q), args...)
}

// Query runs a query.
func (t Tx) Query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := t.prepared(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, t.d.Rebind(q), args...)
}

// QueryRow runs a query returning at most one row.
func (t Tx) QueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := t.prepared(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, t.d.Rebind(q), args...)
}

// Savepoint runs fn inside a savepoint of the transaction: when fn fails, what
// it wrote is rolled back and the transaction goes on (so one bad item of a
// batch does not spoil the others). A retryable error (see Retryable) is
// returned as is, without rolling back to the savepoint: the whole
// transaction has to run again.
//
// Every savepoint has the same name: SQL resolves a name to the innermost
// savepoint holding it, which is exactly the nesting of Savepoint calls, and
// fixed statements are prepared once (SQLite).
//
// On PostgreSQL each savepoint that writes is a subtransaction; beyond 64 in
// one transaction the server's subtransaction cache overflows and every
// later statement gets slower, so keep batches of savepoints to about 64
// there (Batcher does).
func (t Tx) Savepoint(ctx context.Context, fn func(Tx) error) error {
	if err := t.execFixed(ctx, "SAVEPOINT sqldb_sp"); err != nil {
		return fmt.Errorf("sqldb: savepoint: %w", err)
	}
	if err := fn(t); err != nil {
		if Retryable(err) {
			return err
		}
		if rerr := t.execFixed(ctx, "ROLLBACK TO SAVEPOINT sqldb_sp"); rerr != nil {
			return fmt.Errorf("sqldb: rollback to savepoint: %w (after %w)", rerr, err)
		}
		if rerr := t.execFixed(ctx, "RELEASE SAVEPOINT sqldb_sp"); rerr != nil {
			return fmt.Errorf("sqldb: release savepoint: %w (after %w)", rerr, err)
		}
		return err
	}
	if err := t.execFixed(ctx, "RELEASE SAVEPOINT sqldb_sp"); err != nil {
		return fmt.Errorf("sqldb: release savepoint: %w", err)
	}
	return nil
}

// execFixed runs a constant statement of this package, prepared once.
func (t Tx) execFixed(ctx context.Context, q string) error {
	if st := t.preparedAlways(ctx, q); st != nil {
		_, err := st.ExecContext(ctx)
		return err
	}
	_, err := t.tx.ExecContext(ctx, q)
	return err
}

// Rebind turns '?' placeholders into $1, $2, … on PostgreSQL and returns q
// unchanged on SQLite. Statements must not contain a literal question mark
// (docs/ledger.md §10).
func (d *DB) Rebind(q string) string {
	if d.dialect != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
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

// Tx runs fn in a transaction and commits it: SERIALIZABLE on PostgreSQL
// (READ ONLY unless write), BEGIN IMMEDIATE under the in-process writer mutex
// on SQLite. The whole function is run again, after a jittered backoff, on
// serialization failures, deadlocks, unique-key races, busy/locked SQLite
// databases and ErrRetry — up to MaxAttempts times — so fn must be safe to
// re-run: it must not keep effects outside the transaction from a failed
// attempt.
func (d *DB) Tx(ctx context.Context, write bool, fn func(Tx) error) error {
	var err error
	for attempt := 0; attempt < MaxAttempts; attempt++ {
		if d.isClosed() {
			return ErrClosed
		}
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("sqldb: %w (last error: %w)", ctx.Err(), err)
			case <-time.After(backoff(attempt)):
			}
		}
		err = d.runTx(ctx, write, fn)
		if err == nil || !Retryable(err) {
			return err
		}
	}
	return fmt.Errorf("sqldb: gave up after %d attempts: %w", MaxAttempts, err)
}

func (d *DB) runTx(ctx context.Context, write bool, fn func(Tx) error) (err error) {
	opts := &sql.TxOptions{}
	if d.dialect == Postgres {
		opts.Isolation = sql.LevelSerializable
		opts.ReadOnly = !write
	} else {
		d.wmu.Lock()
		defer d.wmu.Unlock()
	}
	t, err := d.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("sqldb: begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = t.Rollback()
		}
	}()
	if err = fn(Tx{d: d, tx: t, st: &txState{}}); err != nil {
		return err
	}
	if err = t.Commit(); err != nil {
		return fmt.Errorf("sqldb: commit: %w", err)
	}
	return nil
}

// backoff is a jittered exponential delay for retry attempt n ≥ 1.
func backoff(n int) time.Duration {
	d := time.Millisecond << min(n, 6)
	d = min(d, maxBackoff)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// Retryable reports whether err means "run the whole transaction again":
// ErrRetry, PostgreSQL 40001 (serialization failure), 40P01 (deadlock) and
// 23505 (unique violation: a race on an idempotency key that the next attempt
// sees as a replay), SQLite BUSY and LOCKED.
func Retryable(err error) bool {
	if errors.Is(err, ErrRetry) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "23505":
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
