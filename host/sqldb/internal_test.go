package sqldb

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRebind(t *testing.T) {
	pg := &DB{dialect: Postgres}
	lite := &DB{dialect: SQLite}
	q := `SELECT a FROM t WHERE b = ? AND c = ?`
	assert.Equal(t, `SELECT a FROM t WHERE b = $1 AND c = $2`, pg.Rebind(q))
	assert.Equal(t, q, lite.Rebind(q))
	assert.Equal(t, `SELECT 1`, pg.Rebind(`SELECT 1`))
	assert.Equal(t, "sqlite", SQLite.String())
	assert.Equal(t, "postgres", Postgres.String())
}

func TestSplitSQL(t *testing.T) {
	got := SplitSQL("-- comment\nCREATE TABLE a (\n  x BIGINT\n);\n\nCREATE INDEX i ON a (x);\nSELECT 1")
	assert.Equal(t, []string{"CREATE TABLE a (\n  x BIGINT\n)", "CREATE INDEX i ON a (x)", "SELECT 1"}, got)
}

func TestSQLiteDSN(t *testing.T) {
	for _, in := range []string{"/tmp/x.db", "sqlite:/tmp/x.db", "file:/tmp/x.db"} {
		got, err := sqliteDSN(in)
		require.NoError(t, err)
		assert.Contains(t, got, "file:/tmp/x.db?")
		assert.Contains(t, got, "_txlock=immediate")
		assert.Contains(t, got, "synchronous%28FULL%29")
		assert.Contains(t, got, "journal_mode%28WAL%29")
		assert.Contains(t, got, "busy_timeout%2810000%29")
		assert.Contains(t, got, "foreign_keys%281%29")
	}
	got, err := sqliteDSN("sqlite:/tmp/x.db?_txlock=exclusive")
	require.NoError(t, err)
	assert.Contains(t, got, "_txlock=exclusive")
	for _, bad := range []string{"", "sqlite:", "sqlite::memory:", ":memory:", "/tmp/x.db?%zz"} {
		_, err := sqliteDSN(bad)
		assert.ErrorIs(t, err, ErrInvalidDSN, bad)
	}
}

// Open with a postgres:// DSN goes through the pgx adapter; nothing listens
// on port 1, so it must fail cleanly (no PostgreSQL server needed).
func TestOpenPostgresUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://x@127.0.0.1:1/x?connect_timeout=2&sslmode=disable")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connect postgres")
}

func TestListMigrations(t *testing.T) {
	m, err := listMigrations(fstest.MapFS{
		"0010_b.sql": {}, "0002_a.sql": {}, "README.md": {},
	})
	require.NoError(t, err)
	assert.Equal(t, []migration{{2, "0002_a.sql"}, {10, "0010_b.sql"}}, m)
	for _, bad := range []fstest.MapFS{
		{"init.sql": {}},
		{"0000_zero.sql": {}},
		{"x1_a.sql": {}},
		{"0001_a.sql": {}, "1_b.sql": {}},
	} {
		_, err := listMigrations(bad)
		assert.ErrorIs(t, err, ErrMigration)
	}
}

func TestValidIdent(t *testing.T) {
	for _, ok := range []string{"ledger", "reg", "a_1", "_x"} {
		assert.True(t, validIdent(ok), ok)
	}
	for _, bad := range []string{"", "1a", "Ledger", "a-b", "a;DROP", "a b"} {
		assert.False(t, validIdent(bad), bad)
	}
}
