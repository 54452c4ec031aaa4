package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRebind(t *testing.T) {
	pg := &SQLStore{dialect: dialectPostgres}
	lite := &SQLStore{dialect: dialectSQLite}
	q := `SELECT a FROM t WHERE b = ? AND c = ?`
	assert.Equal(t, `SELECT a FROM t WHERE b = $1 AND c = $2`, pg.rebind(q))
	assert.Equal(t, q, lite.rebind(q))
	assert.Equal(t, `SELECT 1`, pg.rebind(`SELECT 1`))
}

func TestSplitSQL(t *testing.T) {
	got := splitSQL("-- comment\nCREATE TABLE a (\n  x BIGINT\n);\n\nCREATE INDEX i ON a (x);\n")
	assert.Equal(t, []string{"CREATE TABLE a (\n  x BIGINT\n)", "CREATE INDEX i ON a (x)"}, got)
}

func TestSQLiteDSN(t *testing.T) {
	for _, in := range []string{"/tmp/x.db", "sqlite:/tmp/x.db", "file:/tmp/x.db"} {
		got, err := sqliteDSN(in)
		require.NoError(t, err)
		assert.Contains(t, got, "file:/tmp/x.db?")
		assert.Contains(t, got, "_txlock=immediate")
		assert.Contains(t, got, "synchronous%28FULL%29")
		assert.Contains(t, got, "journal_mode%28WAL%29")
	}
	got, err := sqliteDSN("sqlite:/tmp/x.db?_txlock=exclusive")
	require.NoError(t, err)
	assert.Contains(t, got, "_txlock=exclusive")
	for _, bad := range []string{"", "sqlite:", "sqlite::memory:"} {
		_, err := sqliteDSN(bad)
		assert.ErrorIs(t, err, ErrInvalid, bad)
	}
}

// Open with a postgres:// DSN goes through the pgx adapter; nothing listens
// on port 1, so it must fail cleanly (no PostgreSQL server needed).
func TestOpenPostgresUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://ledger@127.0.0.1:1/ledger?connect_timeout=2&sslmode=disable")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connect postgres")
}
