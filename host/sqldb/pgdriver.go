package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/jackc/pgx/v5"
)

// A minimal database/sql driver over a pgx connection. pgx's own adapter
// (github.com/jackc/pgx/v5/stdlib) imports pgxpool, whose dependency
// github.com/jackc/puddle/v2 is not in this module's go.sum; this adapter
// needs only the core pgx package. It supports exactly what the stores use:
// context-aware Exec/Query with positional $n arguments and transactions
// with an isolation level and read-only flag.

const pgDriverName = "valuechip-sqldb-pgx"

var registerPG sync.Once

func registerPGDriver() {
	registerPG.Do(func() { sql.Register(pgDriverName, pgDriver{}) })
}

type pgDriver struct{}

func (pgDriver) Open(name string) (driver.Conn, error) {
	return pgConnector{dsn: name}.Connect(context.Background())
}

func (pgDriver) OpenConnector(name string) (driver.Connector, error) {
	if _, err := pgx.ParseConfig(name); err != nil {
		return nil, err
	}
	return pgConnector{dsn: name}, nil
}

type pgConnector struct{ dsn string }

func (c pgConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := pgx.Connect(ctx, c.dsn)
	if err != nil {
		return nil, err
	}
	return &pgConn{c: conn}, nil
}

func (pgConnector) Driver() driver.Driver { return pgDriver{} }

type pgConn struct {
	c  *pgx.Conn
	tx pgx.Tx
}

var (
	_ driver.ConnBeginTx        = (*pgConn)(nil)
	_ driver.ExecerContext      = (*pgConn)(nil)
	_ driver.QueryerContext     = (*pgConn)(nil)
	_ driver.Pinger             = (*pgConn)(nil)
	_ driver.Validator          = (*pgConn)(nil)
	_ driver.NamedValueChecker  = (*pgConn)(nil)
	_ driver.ConnPrepareContext = (*pgConn)(nil)
)

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *pgConn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	return &pgStmt{c: c, q: query}, nil
}

func (c *pgConn) Close() error { return c.c.Close(context.Background()) }

func (c *pgConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *pgConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.tx != nil {
		return nil, errors.New("sqldb/pgx: transaction already open")
	}
	var o pgx.TxOptions
	switch sql.IsolationLevel(opts.Isolation) {
	case sql.LevelDefault:
	case sql.LevelSerializable:
		o.IsoLevel = pgx.Serializable
	case sql.LevelRepeatableRead, sql.LevelSnapshot:
		o.IsoLevel = pgx.RepeatableRead
	case sql.LevelReadCommitted:
		o.IsoLevel = pgx.ReadCommitted
	case sql.LevelReadUncommitted:
		o.IsoLevel = pgx.ReadUncommitted
	default:
		return nil, fmt.Errorf("sqldb/pgx: unsupported isolation level %d", opts.Isolation)
	}
	if opts.ReadOnly {
		o.AccessMode = pgx.ReadOnly
	}
	tx, err := c.c.BeginTx(ctx, o)
	if err != nil {
		return nil, err
	}
	c.tx = tx
	return pgTx{c: c}, nil
}

func (c *pgConn) CheckNamedValue(*driver.NamedValue) error { return nil }

func (c *pgConn) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

func (c *pgConn) IsValid() bool { return !c.c.IsClosed() }

func args(named []driver.NamedValue) []any {
	out := make([]any, len(named))
	for i, n := range named {
		out[i] = n.Value
	}
	return out
}

func (c *pgConn) ExecContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Result, error) {
	tag, err := c.c.Exec(ctx, query, args(named)...)
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(tag.RowsAffected()), nil
}

func (c *pgConn) QueryContext(ctx context.Context, query string, named []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.c.Query(ctx, query, args(named)...)
	if err != nil {
		return nil, err
	}
	return &pgRows{r: rows}, nil
}

type pgTx struct{ c *pgConn }

func (t pgTx) Commit() error {
	tx := t.c.tx
	t.c.tx = nil
	if tx == nil {
		return errors.New("sqldb/pgx: no transaction")
	}
	return tx.Commit(context.Background())
}

func (t pgTx) Rollback() error {
	tx := t.c.tx
	t.c.tx = nil
	if tx == nil {
		return errors.New("sqldb/pgx: no transaction")
	}
	return tx.Rollback(context.Background())
}

type pgStmt struct {
	c *pgConn
	q string
}

func (s *pgStmt) Close() error  { return nil }
func (s *pgStmt) NumInput() int { return -1 }

func (s *pgStmt) Exec(v []driver.Value) (driver.Result, error) {
	return s.c.ExecContext(context.Background(), s.q, toNamed(v))
}

func (s *pgStmt) Query(v []driver.Value) (driver.Rows, error) {
	return s.c.QueryContext(context.Background(), s.q, toNamed(v))
}

func toNamed(v []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(v))
	for i, x := range v {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: x}
	}
	return out
}

type pgRows struct {
	r    pgx.Rows
	cols []string
}

func (r *pgRows) Columns() []string {
	if r.cols == nil {
		for _, f := range r.r.FieldDescriptions() {
			r.cols = append(r.cols, f.Name)
		}
	}
	return r.cols
}

func (r *pgRows) Close() error {
	r.r.Close()
	return r.r.Err()
}

func (r *pgRows) Next(dest []driver.Value) error {
	if !r.r.Next() {
		if err := r.r.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	vals, err := r.r.Values()
	if err != nil {
		return err
	}
	for i := range dest {
		if i >= len(vals) {
			break
		}
		switch v := vals[i].(type) {
		case int16:
			dest[i] = int64(v)
		case int32:
			dest[i] = int64(v)
		case int8:
			dest[i] = int64(v)
		case float32:
			dest[i] = float64(v)
		default:
			dest[i] = v
		}
	}
	return nil
}
