package sqldb_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

func TestSQLiteDurabilitySettings(t *testing.T) {
	db := dbtest.Open(t, "sqlite")
	var mode string
	var sync, fk, busy int
	require.NoError(t, db.SQL().QueryRow("PRAGMA journal_mode").Scan(&mode))
	require.NoError(t, db.SQL().QueryRow("PRAGMA synchronous").Scan(&sync))
	require.NoError(t, db.SQL().QueryRow("PRAGMA foreign_keys").Scan(&fk))
	require.NoError(t, db.SQL().QueryRow("PRAGMA busy_timeout").Scan(&busy))
	assert.Equal(t, "wal", mode)
	assert.Equal(t, 2, sync, "synchronous=FULL")
	assert.Equal(t, 1, fk)
	assert.Equal(t, 10000, busy)
	assert.Equal(t, sqldb.SQLite, db.Dialect())
}

func count(t *testing.T, db *sqldb.DB, q string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, db.Tx(context.Background(), false, func(tx sqldb.Tx) error {
		return tx.QueryRow(context.Background(), q, args...).Scan(&n)
	}))
	return n
}

func TestMigrate(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		v1 := fstest.MapFS{
			"0001_init.sql": {Data: []byte("-- first\nCREATE TABLE a_items (\n  id TEXT NOT NULL PRIMARY KEY\n);\nCREATE INDEX a_items_id ON a_items (id);\n")},
		}
		other := fstest.MapFS{
			"0001_init.sql": {Data: []byte("CREATE TABLE b_items (id TEXT NOT NULL PRIMARY KEY);\n")},
		}
		for i := 0; i < 2; i++ {
			require.NoError(t, db.Migrate(ctx, "a", v1))
			require.NoError(t, db.Migrate(ctx, "b", other))
		}
		got, err := db.AppliedMigrations(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, []int64{1}, got)

		v2 := fstest.MapFS{"0001_init.sql": v1["0001_init.sql"],
			"0002_more.sql": {Data: []byte("ALTER TABLE a_items ADD COLUMN n BIGINT NOT NULL DEFAULT 0;\nINSERT INTO a_items (id, n) VALUES ('x', 7);\n")}}
		require.NoError(t, db.Migrate(ctx, "a", v2))
		require.NoError(t, db.Migrate(ctx, "a", v2))
		got, err = db.AppliedMigrations(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, []int64{1, 2}, got)
		assert.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM a_items WHERE n = ?", 7))
		assert.Equal(t, 3, count(t, db, "SELECT COUNT(*) FROM schema_migrations"))

		// A failing migration leaves neither its changes nor its row.
		bad := fstest.MapFS{"0003_bad.sql": {Data: []byte("INSERT INTO a_items (id, n) VALUES ('y', 1);\nINSERT INTO nowhere VALUES (1);\n")}}
		require.Error(t, db.Migrate(ctx, "a", bad))
		assert.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM a_items WHERE id = ?", "y"))
		got, err = db.AppliedMigrations(ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, []int64{1, 2}, got)

		require.ErrorIs(t, db.Migrate(ctx, "Bad-Name", v1), sqldb.ErrMigration)
	})
}

func TestImportLegacyMigrations(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		require.NoError(t, db.Tx(ctx, true, func(tx sqldb.Tx) error {
			if _, err := tx.Exec(ctx, `CREATE TABLE old_schema_migrations (version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO old_schema_migrations VALUES (1, '0001_init.sql', 5)`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `CREATE TABLE old_items (id TEXT NOT NULL PRIMARY KEY)`)
			return err
		}))
		require.NoError(t, db.ImportLegacyMigrations(ctx, "old", "old_schema_migrations"))
		require.NoError(t, db.ImportLegacyMigrations(ctx, "old", "old_schema_migrations"), "no old table: nothing to do")
		ok, err := db.TableExists(ctx, "old_schema_migrations")
		require.NoError(t, err)
		assert.False(t, ok)
		// 0001 is recorded, so it is not run again (it would fail: the table exists).
		require.NoError(t, db.Migrate(ctx, "old", fstest.MapFS{
			"0001_init.sql": {Data: []byte("CREATE TABLE old_items (id TEXT NOT NULL PRIMARY KEY);\n")},
		}))
		got, err := db.AppliedMigrations(ctx, "old")
		require.NoError(t, err)
		assert.Equal(t, []int64{1}, got)
	})
}

func TestTx(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		require.NoError(t, db.Migrate(ctx, "t", fstest.MapFS{
			"0001_init.sql": {Data: []byte("CREATE TABLE t_kv (k TEXT NOT NULL PRIMARY KEY, v BIGINT NOT NULL);\n")},
		}))

		// ErrRetry runs the function again; effects of failed attempts are gone.
		runs := 0
		require.NoError(t, db.Tx(ctx, true, func(tx sqldb.Tx) error {
			runs++
			if _, err := tx.Exec(ctx, `INSERT INTO t_kv (k, v) VALUES (?, ?)`, "a", runs); err != nil {
				return err
			}
			if runs < 3 {
				return sqldb.ErrRetry
			}
			return nil
		}))
		assert.Equal(t, 3, runs)
		assert.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM t_kv WHERE k = ? AND v = ?", "a", 3))

		// Another error rolls back and is returned once.
		boom := errors.New("boom")
		runs = 0
		err := db.Tx(ctx, true, func(tx sqldb.Tx) error {
			runs++
			if _, err := tx.Exec(ctx, `INSERT INTO t_kv (k, v) VALUES (?, ?)`, "b", 1); err != nil {
				return err
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		assert.Equal(t, 1, runs)
		assert.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM t_kv WHERE k = ?", "b"))

		// A failing savepoint is rolled back alone.
		var spErrs []error
		require.NoError(t, db.Tx(ctx, true, func(tx sqldb.Tx) error {
			spErrs = spErrs[:0]
			for _, k := range []string{"c", "x", "d"} {
				spErrs = append(spErrs, tx.Savepoint(ctx, func(tx sqldb.Tx) error {
					if _, err := tx.Exec(ctx, `INSERT INTO t_kv (k, v) VALUES (?, ?)`, k+"2", 1); err != nil {
						return err
					}
					if k == "x" {
						return boom
					}
					_, err := tx.Exec(ctx, `INSERT INTO t_kv (k, v) VALUES (?, ?)`, k, 1)
					return err
				}))
			}
			return nil
		}))
		require.Len(t, spErrs, 3)
		assert.NoError(t, spErrs[0])
		assert.ErrorIs(t, spErrs[1], boom)
		assert.NoError(t, spErrs[2])
		assert.Equal(t, 4, count(t, db, "SELECT COUNT(*) FROM t_kv WHERE k IN (?, ?, ?, ?)", "c", "c2", "d", "d2"))
		assert.Equal(t, 0, count(t, db, "SELECT COUNT(*) FROM t_kv WHERE k = ?", "x2"), "rolled back to its savepoint")

		// A failed statement inside a savepoint does not spoil the transaction
		// (PostgreSQL aborts the transaction until ROLLBACK TO SAVEPOINT).
		require.NoError(t, db.Tx(ctx, true, func(tx sqldb.Tx) error {
			err := tx.Savepoint(ctx, func(tx sqldb.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO nowhere (x) VALUES (1)`)
				return err
			})
			if err == nil {
				return errors.New("expected an error")
			}
			_, err = tx.Exec(ctx, `INSERT INTO t_kv (k, v) VALUES (?, ?)`, "e", 1)
			return err
		}))
		assert.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM t_kv WHERE k = ?", "e"))

		// Read-only transactions cannot write on PostgreSQL.
		if db.Dialect() == sqldb.Postgres {
			err := db.Tx(ctx, false, func(tx sqldb.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO t_kv (k, v) VALUES (?, ?)`, "ro", 1)
				return err
			})
			require.Error(t, err)
		}

		require.NoError(t, db.Close())
		require.ErrorIs(t, db.Tx(ctx, false, func(sqldb.Tx) error { return nil }), sqldb.ErrClosed)
	})
}

// Concurrent read-modify-write of one row: serializable retries (PostgreSQL)
// or the writer mutex (SQLite) make every increment count.
func TestTxConcurrentIncrements(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		require.NoError(t, db.Migrate(ctx, "t", fstest.MapFS{
			"0001_init.sql": {Data: []byte("CREATE TABLE t_kv (k TEXT NOT NULL PRIMARY KEY, v BIGINT NOT NULL);\nINSERT INTO t_kv (k, v) VALUES ('n', 0);\n")},
		}))
		const workers, per = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					err := db.Tx(ctx, true, func(tx sqldb.Tx) error {
						var v int64
						if err := tx.QueryRow(ctx, `SELECT v FROM t_kv WHERE k = ?`, "n").Scan(&v); err != nil {
							return err
						}
						_, err := tx.Exec(ctx, `UPDATE t_kv SET v = ? WHERE k = ?`, v+1, "n")
						return err
					})
					if err != nil {
						errs <- fmt.Errorf("increment: %w", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		assert.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM t_kv WHERE k = ? AND v = ?", "n", workers*per))
	})
}

// Servers starting together migrate once: on PostgreSQL the advisory lock
// serialises them, on SQLite BEGIN IMMEDIATE does.
func TestMigrateConcurrent(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		files := fstest.MapFS{
			"0001_init.sql": {Data: []byte("CREATE TABLE c_items (id TEXT NOT NULL PRIMARY KEY);\n")},
			"0002_more.sql": {Data: []byte("CREATE TABLE c_more (id TEXT NOT NULL PRIMARY KEY);\n")},
		}
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = db.Migrate(ctx, "c", files)
			}(i)
		}
		wg.Wait()
		for _, err := range errs {
			require.NoError(t, err)
		}
		got, err := db.AppliedMigrations(ctx, "c")
		require.NoError(t, err)
		assert.Equal(t, []int64{1, 2}, got)
	})
}
