package dbtest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/sqldb"
)

func TestEach(t *testing.T) {
	var seen []sqldb.Dialect
	Each(t, func(t *testing.T, db *sqldb.DB) {
		seen = append(seen, db.Dialect())
		require.NoError(t, db.SQL().PingContext(context.Background()))
	})
	require.NotEmpty(t, seen)
	assert.Equal(t, sqldb.SQLite, seen[0])
}

// The database a test gets is dropped when the test ends.
func TestPostgresDropped(t *testing.T) {
	var dsn string
	t.Run("inner", func(t *testing.T) {
		dsn = PostgresDSN(t)
		OpenDSN(t, dsn)
	})
	if dsn == "" {
		t.Skip("PostgreSQL not configured")
	}
	_, err := sqldb.Open(context.Background(), dsn)
	require.Error(t, err, "database still exists after cleanup")
}
