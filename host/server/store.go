package server

import (
	"context"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/valuechip/valuechip/host/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// SQLLoads is the Loads store on the server's database (tables srv_*,
// migrated as component "server").
type SQLLoads struct{ db *sqldb.DB }

// NewSQLLoads migrates the server's tables and returns the store.
func NewSQLLoads(ctx context.Context, db *sqldb.DB) (*SQLLoads, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, fmt.Errorf("server: migrations: %w", err)
	}
	if err := db.Migrate(ctx, "server", sub); err != nil {
		return nil, fmt.Errorf("server: migrate: %w", err)
	}
	return &SQLLoads{db: db}, nil
}

const loadColumns = `load_key, terminal_id, merchant_id, stan, transmission, card_id, atc, amount, currency,
balance_before, key_version, s1, s2, date_time, auth_ref, created_at`

// PutLoad implements Loads.
func (s *SQLLoads) PutLoad(ctx context.Context, l LoadAuth) (LoadAuth, error) {
	var out LoadAuth
	err := s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		var n int64
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM srv_unknown_reversals WHERE terminal_id = ? AND stan = ? AND transmission = ?`,
			l.TerminalID, l.STAN, l.Transmission).Scan(&n); err != nil {
			return fmt.Errorf("server: check reversals: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("%w: %s STAN %s at %s", ErrReversedBefore, l.TerminalID, l.STAN, l.Transmission)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO srv_loads (`+loadColumns+`)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (load_key) DO NOTHING`,
			l.Key, l.TerminalID, l.MerchantID, l.STAN, l.Transmission, l.CardID, int64(l.ATC), l.Amount, l.Currency,
			int64(l.BalanceBefore), int64(l.KeyVersion), hex.EncodeToString(l.S1[:]), hex.EncodeToString(l.S2[:]),
			hex.EncodeToString(l.DateTime[:]), int64(l.AuthRef), l.CreatedAt.UnixMicro()); err != nil {
			return fmt.Errorf("server: insert load: %w", err)
		}
		var err error
		out, err = scanLoad(tx.QueryRow(ctx, `SELECT `+loadColumns+` FROM srv_loads WHERE load_key = ?`, l.Key))
		return err
	})
	return out, err
}

// LoadByKey implements Loads.
func (s *SQLLoads) LoadByKey(ctx context.Context, key string) (LoadAuth, error) {
	var out LoadAuth
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		var err error
		out, err = scanLoad(tx.QueryRow(ctx, `SELECT `+loadColumns+` FROM srv_loads WHERE load_key = ?`, key))
		return err
	})
	return out, err
}

// LoadByOriginal implements Loads: the latest load of the terminal with
// this STAN and DE 7.
func (s *SQLLoads) LoadByOriginal(ctx context.Context, terminalID, stan, transmission string) (LoadAuth, error) {
	ls, err := s.query(ctx, `SELECT `+loadColumns+` FROM srv_loads WHERE terminal_id = ? AND stan = ? AND transmission = ?`,
		terminalID, stan, transmission)
	if err != nil {
		return LoadAuth{}, err
	}
	if len(ls) == 0 {
		return LoadAuth{}, fmt.Errorf("%w: load of %s STAN %s at %s", ErrNotFound, terminalID, stan, transmission)
	}
	latest := ls[0]
	for _, l := range ls[1:] {
		if l.CreatedAt.After(latest.CreatedAt) {
			latest = l
		}
	}
	return latest, nil
}

// UnknownReversal implements Loads, in one transaction with the lookup so
// that it serialises with PutLoad (SERIALIZABLE on PostgreSQL, one writer
// on SQLite).
func (s *SQLLoads) UnknownReversal(ctx context.Context, tid, stan, de7 string, at time.Time) (LoadAuth, error) {
	var out LoadAuth
	err := s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		out = LoadAuth{}
		rows, err := tx.Query(ctx, `SELECT `+loadColumns+` FROM srv_loads WHERE terminal_id = ? AND stan = ? AND transmission = ?`,
			tid, stan, de7)
		if err != nil {
			return fmt.Errorf("server: query loads: %w", err)
		}
		found := false
		for rows.Next() {
			l, err := scanLoad(rows)
			if err != nil {
				_ = rows.Close()
				return err
			}
			if !found || l.CreatedAt.After(out.CreatedAt) {
				out, found = l, true
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if found {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO srv_unknown_reversals (terminal_id, stan, transmission, created_at)
VALUES (?, ?, ?, ?) ON CONFLICT (terminal_id, stan, transmission) DO NOTHING`, tid, stan, de7, at.UnixMicro()); err != nil {
			return fmt.Errorf("server: record reversal: %w", err)
		}
		return nil
	})
	if err != nil {
		return LoadAuth{}, err
	}
	if out.Key == "" {
		return LoadAuth{}, fmt.Errorf("%w: load of %s STAN %s at %s", ErrNotFound, tid, stan, de7)
	}
	return out, nil
}

// LoadsByCardATC implements Loads.
func (s *SQLLoads) LoadsByCardATC(ctx context.Context, cardID string, atc uint32) ([]LoadAuth, error) {
	return s.query(ctx, `SELECT `+loadColumns+` FROM srv_loads WHERE card_id = ? AND atc = ?`, cardID, int64(atc))
}

func (s *SQLLoads) query(ctx context.Context, q string, args ...any) ([]LoadAuth, error) {
	var out []LoadAuth
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("server: query loads: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			l, err := scanLoad(rows)
			if err != nil {
				return err
			}
			out = append(out, l)
		}
		return rows.Err()
	})
	return out, err
}

// InProgress counts the loads whose ledger transaction is still in
// progress, and their amount: authorised, neither completed nor reversed
// (docs/server.md §3). It reads the ledger's table, on the same database.
func (s *SQLLoads) InProgress(ctx context.Context) (n, amount int64, err error) {
	err = s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		return tx.QueryRow(ctx, `SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_txns
WHERE kind = 'load' AND state = 'in_progress'`).Scan(&n, &amount)
	})
	return n, amount, err
}

type rowScanner interface{ Scan(dest ...any) error }

func scanLoad(r rowScanner) (LoadAuth, error) {
	var (
		l                                  LoadAuth
		atc, before, kvn, authRef, created int64
		s1, s2, dt                         string
	)
	err := r.Scan(&l.Key, &l.TerminalID, &l.MerchantID, &l.STAN, &l.Transmission, &l.CardID, &atc, &l.Amount,
		&l.Currency, &before, &kvn, &s1, &s2, &dt, &authRef, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return LoadAuth{}, fmt.Errorf("%w: load", ErrNotFound)
	}
	if err != nil {
		return LoadAuth{}, fmt.Errorf("server: scan load: %w", err)
	}
	l.ATC, l.BalanceBefore, l.KeyVersion, l.AuthRef = uint32(atc), uint32(before), byte(kvn), uint32(authRef)
	l.CreatedAt = time.UnixMicro(created).UTC()
	for _, f := range []struct {
		dst []byte
		src string
	}{{l.S1[:], s1}, {l.S2[:], s2}, {l.DateTime[:], dt}} {
		b, err := hex.DecodeString(f.src)
		if err != nil || len(b) != len(f.dst) {
			return LoadAuth{}, fmt.Errorf("server: load %s: corrupt column", l.Key)
		}
		copy(f.dst, b)
	}
	return l, nil
}

// MemLoads is an in-memory Loads, for tests and tools.
type MemLoads struct {
	mu       sync.Mutex
	loads    map[string]LoadAuth
	reversed map[[3]string]bool
}

// NewMemLoads returns an empty in-memory store.
func NewMemLoads() *MemLoads {
	return &MemLoads{loads: map[string]LoadAuth{}, reversed: map[[3]string]bool{}}
}

// PutLoad implements Loads.
func (m *MemLoads) PutLoad(_ context.Context, l LoadAuth) (LoadAuth, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.loads[l.Key]; ok {
		return old, nil
	}
	if m.reversed[[3]string{l.TerminalID, l.STAN, l.Transmission}] {
		return LoadAuth{}, fmt.Errorf("%w: %s STAN %s", ErrReversedBefore, l.TerminalID, l.STAN)
	}
	m.loads[l.Key] = l
	return l, nil
}

// LoadByKey implements Loads.
func (m *MemLoads) LoadByKey(_ context.Context, key string) (LoadAuth, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.loads[key]; ok {
		return l, nil
	}
	return LoadAuth{}, fmt.Errorf("%w: load %s", ErrNotFound, key)
}

// LoadByOriginal implements Loads.
func (m *MemLoads) LoadByOriginal(_ context.Context, tid, stan, de7 string) (LoadAuth, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out *LoadAuth
	for _, l := range m.loads {
		if l.TerminalID == tid && l.STAN == stan && l.Transmission == de7 && (out == nil || l.CreatedAt.After(out.CreatedAt)) {
			out = &l
		}
	}
	if out == nil {
		return LoadAuth{}, fmt.Errorf("%w: load", ErrNotFound)
	}
	return *out, nil
}

// UnknownReversal implements Loads.
func (m *MemLoads) UnknownReversal(ctx context.Context, tid, stan, de7 string, _ time.Time) (LoadAuth, error) {
	if l, err := m.LoadByOriginal(ctx, tid, stan, de7); err == nil {
		return l, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Checked again under the lock: PutLoad may have run in between.
	for _, l := range m.loads {
		if l.TerminalID == tid && l.STAN == stan && l.Transmission == de7 {
			return l, nil
		}
	}
	m.reversed[[3]string{tid, stan, de7}] = true
	return LoadAuth{}, fmt.Errorf("%w: load", ErrNotFound)
}

// LoadsByCardATC implements Loads.
func (m *MemLoads) LoadsByCardATC(_ context.Context, cardID string, atc uint32) ([]LoadAuth, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []LoadAuth
	for _, l := range m.loads {
		if l.CardID == cardID && l.ATC == atc {
			out = append(out, l)
		}
	}
	return out, nil
}
