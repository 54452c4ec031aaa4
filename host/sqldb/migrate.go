package sqldb

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrMigration: a migration set is malformed (bad file name, duplicate
// version, bad component or table name).
var ErrMigration = errors.New("sqldb: bad migration")

// migrationsTable records, per component, every migration applied.
const migrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    component  TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    name       TEXT   NOT NULL,
    applied_at BIGINT NOT NULL,
    PRIMARY KEY (component, version)
)`

// pgMigrationLock is the PostgreSQL advisory lock key ("vcmg") held while a
// process migrates, so that two servers starting together do not both run
// the same CREATE TABLE.
const pgMigrationLock = 0x76636d67

type migration struct {
	version int64
	name    string
}

// Migrate applies to the database, in version order, the migrations of one
// component that are not yet recorded in schema_migrations. The migrations
// are the files NNNN_name.sql at the root of fsys (use fs.Sub for a
// directory); each runs in its own transaction together with its row.
// Statements are split at ';' ending a line and "--" comment lines are
// dropped. Never edit an applied migration: add the next number.
func (d *DB) Migrate(ctx context.Context, component string, fsys fs.FS) error {
	if !validIdent(component) {
		return fmt.Errorf("%w: component %q", ErrMigration, component)
	}
	migs, err := listMigrations(fsys)
	if err != nil {
		return fmt.Errorf("sqldb: migrate %s: %w", component, err)
	}
	unlock, err := d.migrationLock(ctx)
	if err != nil {
		return fmt.Errorf("sqldb: migrate %s: %w", component, err)
	}
	defer unlock()
	if err := d.Tx(ctx, true, func(t Tx) error {
		_, err := t.Exec(ctx, migrationsTable)
		return err
	}); err != nil {
		return fmt.Errorf("sqldb: migrate %s: %w", component, err)
	}
	for _, m := range migs {
		body, err := fs.ReadFile(fsys, m.name)
		if err != nil {
			return fmt.Errorf("sqldb: migration %s/%s: %w", component, m.name, err)
		}
		err = d.Tx(ctx, true, func(t Tx) error {
			var n int
			if err := t.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE component = ? AND version = ?`,
				component, m.version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range SplitSQL(string(body)) {
				if _, err := t.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("%w\n%s", err, stmt)
				}
			}
			_, err := t.Exec(ctx, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)`,
				component, m.version, m.name, time.Now().UnixMicro())
			return err
		})
		if err != nil {
			return fmt.Errorf("sqldb: migration %s/%s: %w", component, m.name, err)
		}
	}
	return nil
}

// AppliedMigrations lists the versions of a component recorded in
// schema_migrations, ascending (none when the table does not exist yet).
func (d *DB) AppliedMigrations(ctx context.Context, component string) ([]int64, error) {
	ok, err := d.TableExists(ctx, "schema_migrations")
	if err != nil || !ok {
		return nil, err
	}
	var out []int64
	err = d.Tx(ctx, false, func(t Tx) error {
		out = out[:0]
		rows, err := t.Query(ctx, `SELECT version FROM schema_migrations WHERE component = ? ORDER BY version`, component)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqldb: applied migrations of %s: %w", component, err)
	}
	return out, nil
}

// ImportLegacyMigrations moves the bookkeeping of a component that used its
// own table (version BIGINT, name TEXT, applied_at BIGINT), as the ledger did
// before this package, into schema_migrations and drops the old table, in one
// transaction. Without the old table it does nothing. Call it before Migrate.
func (d *DB) ImportLegacyMigrations(ctx context.Context, component, table string) error {
	if !validIdent(component) || !validIdent(table) {
		return fmt.Errorf("%w: component %q, table %q", ErrMigration, component, table)
	}
	unlock, err := d.migrationLock(ctx)
	if err != nil {
		return fmt.Errorf("sqldb: import %s: %w", table, err)
	}
	defer unlock()
	ok, err := d.TableExists(ctx, table)
	if err != nil || !ok {
		return err
	}
	err = d.Tx(ctx, true, func(t Tx) error {
		if _, err := t.Exec(ctx, migrationsTable); err != nil {
			return err
		}
		rows, err := t.Query(ctx, `SELECT version, name, applied_at FROM `+table)
		if err != nil {
			return err
		}
		var old []struct {
			v, at int64
			name  string
		}
		for rows.Next() {
			var r struct {
				v, at int64
				name  string
			}
			if err := rows.Scan(&r.v, &r.name, &r.at); err != nil {
				rows.Close()
				return err
			}
			old = append(old, r)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range old {
			if _, err := t.Exec(ctx, `INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)
ON CONFLICT (component, version) DO NOTHING`, component, r.v, r.name, r.at); err != nil {
				return err
			}
		}
		_, err = t.Exec(ctx, `DROP TABLE `+table)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqldb: import %s: %w", table, err)
	}
	return nil
}

// TableExists reports whether a table of that name exists (in the current
// schema on PostgreSQL).
func (d *DB) TableExists(ctx context.Context, table string) (bool, error) {
	q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	if d.dialect == Postgres {
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?`
	}
	var n int
	err := d.Tx(ctx, false, func(t Tx) error { return t.QueryRow(ctx, q, table).Scan(&n) })
	if err != nil {
		return false, fmt.Errorf("sqldb: table %s: %w", table, err)
	}
	return n > 0, nil
}

// migrationLock serialises migrations across processes on PostgreSQL with a
// session advisory lock on a connection of its own (a transaction-level lock
// would not do: a SERIALIZABLE snapshot is taken before the lock is granted,
// so the waiter would not see the winner's tables). SQLite needs none: every
// transaction is BEGIN IMMEDIATE.
func (d *DB) migrationLock(ctx context.Context) (func(), error) {
	if d.dialect != Postgres {
		return func() {}, nil
	}
	if d.isClosed() {
		return nil, ErrClosed
	}
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(pgMigrationLock)); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return func() {
		_, _ = conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(pgMigrationLock))
		_ = conn.Close()
	}, nil
}

func listMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	var migs []migration
	seen := map[int64]string{}
	for _, n := range names {
		base := path.Base(n)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%w: %s is not NNNN_name.sql", ErrMigration, base)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("%w: %s and %s have the same version", ErrMigration, other, base)
		}
		seen[v] = base
		migs = append(migs, migration{v, n})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })
	return migs, nil
}

// validIdent accepts lower-case SQL identifiers: [a-z_][a-z0-9_]*.
func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// SplitSQL splits a migration into statements at semicolons ending a line,
// dropping "--" comment lines.
func SplitSQL(body string) []string {
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
