// Package dbtest gives tests a fresh, empty database on every engine the
// money server supports, so each DB-backed test runs on both SQLite and
// PostgreSQL (docs/ledger.md §10).
//
//   - "sqlite": a new database file in the test's temporary directory.
//   - "postgres": a new database vc_<random> CREATEd on the server named by
//     VALUECHIP_PG_DSN (a role allowed to create databases), DROPped WITH
//     (FORCE) at cleanup. Without VALUECHIP_PG_DSN the PostgreSQL run is
//     skipped with a reason, unless VALUECHIP_REQUIRE_PG=1 (CI), which makes
//     it fail.
//
// Every test gets its own database, so PostgreSQL tests need no cleanup of
// shared tables and may run in parallel.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/valuechip/valuechip/host/sqldb"
)

// Environment variables read by this package.
const (
	EnvPGDSN     = "VALUECHIP_PG_DSN"
	EnvRequirePG = "VALUECHIP_REQUIRE_PG"
)

// Engines lists the engine names, in the order Each runs them.
var Engines = []string{"sqlite", "postgres"}

// Each runs fn as a subtest once per engine ("sqlite", "postgres"), each with
// a fresh empty database that is closed (and, for PostgreSQL, dropped) when
// the subtest ends.
func Each(t *testing.T, fn func(t *testing.T, db *sqldb.DB)) {
	t.Helper()
	for _, e := range Engines {
		t.Run(e, func(t *testing.T) { fn(t, Open(t, e)) })
	}
}

// Open returns a fresh empty database on the engine ("sqlite" or
// "postgres"), closed at the end of the test. For "postgres" without
// VALUECHIP_PG_DSN it skips the test (fails under VALUECHIP_REQUIRE_PG=1).
func Open(t testing.TB, engine string) *sqldb.DB {
	t.Helper()
	switch engine {
	case "sqlite":
		return OpenDSN(t, "sqlite:"+filepath.Join(t.TempDir(), "test.db"))
	case "postgres":
		return OpenDSN(t, PostgresDSN(t))
	}
	t.Fatalf("dbtest: unknown engine %q", engine)
	return nil
}

// OpenDSN opens dsn with sqldb.Open and closes it at cleanup.
func OpenDSN(t testing.TB, dsn string) *sqldb.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sqldb.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// PostgresDSN creates a fresh database on the server of VALUECHIP_PG_DSN and
// returns its DSN; the database is dropped at cleanup (after cleanups
// registered later, such as closing the connections to it). It skips the test
// when VALUECHIP_PG_DSN is unset, or fails under VALUECHIP_REQUIRE_PG=1.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPGDSN)
	if admin == "" {
		if os.Getenv(EnvRequirePG) == "1" {
			t.Fatalf("dbtest: PostgreSQL required (%s=1) but %s is not set", EnvRequirePG, EnvPGDSN)
		}
		t.Skipf("dbtest: PostgreSQL skipped: set %s=postgres://… (a role that may CREATE DATABASE)", EnvPGDSN)
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("dbtest: %s: %v", EnvPGDSN, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "vc_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("dbtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// FORCE (PostgreSQL ≥ 13) ends connections a failed test left open.
		if err := adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dbtest: %v", err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// adminExec runs one statement outside a transaction (CREATE/DROP DATABASE
// cannot run inside one) on its own connection to the server of dsn.
func adminExec(ctx context.Context, dsn, stmt string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to %s server: %w", EnvPGDSN, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}
