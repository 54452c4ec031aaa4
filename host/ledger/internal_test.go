package ledger

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite"
)

// Open with a postgres:// DSN goes through the pgx adapter; nothing listens
// on port 1, so it must fail cleanly (no PostgreSQL server needed).
func TestOpenPostgresUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://ledger@127.0.0.1:1/ledger?connect_timeout=2&sslmode=disable")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "connect postgres")
}

// A ledger file created before host/sqldb (its migrations recorded in
// ledger_schema_migrations) opens, keeps its data, and has its bookkeeping
// moved to schema_migrations.
func TestOpenLegacyLedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	require.NoError(t, err)
	body, err := migrationFS.ReadFile("migrations/0001_init.sql")
	require.NoError(t, err)
	for _, stmt := range []string{
		`CREATE TABLE ledger_schema_migrations (version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`,
		`INSERT INTO ledger_schema_migrations VALUES (1, '0001_init.sql', 1)`,
	} {
		_, err := raw.Exec(stmt)
		require.NoError(t, err)
	}
	for _, stmt := range strings.Split(string(body), ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		_, err := raw.Exec(stmt)
		require.NoError(t, err, stmt)
	}
	_, err = raw.Exec(`INSERT INTO ledger_accounts (id, kind, ref, currency, balance, created_at) VALUES ('funding:bank:978', 'funding', 'bank', '978', 0, 1)`)
	require.NoError(t, err)
	require.NoError(t, raw.Close())

	s, err := Open(context.Background(), path)
	require.NoError(t, err)
	defer s.Close()
	a, err := s.Account(context.Background(), "funding:bank:978")
	require.NoError(t, err)
	assert.Equal(t, KindFunding, a.Kind)
	applied, err := s.db.AppliedMigrations(context.Background(), component)
	require.NoError(t, err)
	assert.Len(t, applied, len(migrationFiles(t)))
	assert.Equal(t, int64(1), applied[0])
}

// New leaves the database to its owner: closing the store does not close it,
// and a second store (or another component) can use it.
func TestNewDoesNotOwnDB(t *testing.T) {
	forEach(t, func(t *testing.T, s *SQLStore) {
		ctx := context.Background()
		require.NoError(t, s.Close())
		_, err := s.EnsureAccount(ctx, KindPurse, "01", eur)
		require.ErrorIs(t, err, ErrClosed)
		require.NoError(t, s.DB().SQL().PingContext(ctx))
		s2, err := New(ctx, s.DB())
		require.NoError(t, err, "migrating again is a no-op")
		_, err = s2.EnsureAccount(ctx, KindPurse, "01", eur)
		require.NoError(t, err)
		assert.Equal(t, s.Dialect(), s2.Dialect())
	})
}
