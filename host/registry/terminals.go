package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/sqldb"
)

// Terminal is an enrolled terminal. The terminal master key itself is only
// returned by RegisterTerminal and TerminalKey; TMKKCV identifies it.
type Terminal struct {
	ID         string // DE 41, 8 characters
	MerchantID string // DE 42, 15 characters
	Status     Status // Active or Blocked
	Reason     string // of the last status change
	TMKKCV     string // key check value of the TMK, 6 hex digits
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func tmkLabel(id string) string { return "tmk/" + id }

// RegisterTerminal enrols a terminal with a fresh random terminal master key
// (AES-128, docs/iso8583.md §2.1), stored sealed under "tmk/<id>", and
// returns it once so it can be loaded into the terminal. The terminal starts
// Active; the enrolment is a change of the terminal whitelist. An ID already
// enrolled gives ErrExists (the TMK is never handed out twice).
func (s *Store) RegisterTerminal(ctx context.Context, id, merchant string) (Terminal, iso8583.Key, error) {
	if err := ValidTerminalID(id); err != nil {
		return Terminal{}, nil, err
	}
	if err := ValidMerchantID(merchant); err != nil {
		return Terminal{}, nil, err
	}
	tmk, err := s.newKey()
	if err != nil {
		return Terminal{}, nil, err
	}
	kcv, err := iso8583.Key(tmk).KCV()
	if err != nil {
		return Terminal{}, nil, err
	}
	sealed, err := s.seal(tmkLabel(id), tmk)
	if err != nil {
		return Terminal{}, nil, err
	}
	now := s.now().UTC()
	t := Terminal{ID: id, MerchantID: merchant, Status: Active, TMKKCV: fmt.Sprintf("%X", kcv), CreatedAt: now, UpdatedAt: now}
	err = s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO reg_terminals (id, merchant_id, status, tmk_sealed, tmk_kcv, reason, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			id, merchant, string(Active), sealed, t.TMKKCV, "", micros(now), micros(now))
		if err != nil {
			return fmt.Errorf("registry: insert terminal: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("registry: insert terminal: %w", err)
		} else if n == 0 {
			return fmt.Errorf("%w: terminal %q", ErrExists, id)
		}
		return terminalChange(ctx, tx, id, Active, "registered", now)
	})
	if err != nil {
		return Terminal{}, nil, err
	}
	t.CreatedAt, t.UpdatedAt = fromMicros(micros(now)), fromMicros(micros(now))
	return t, iso8583.Key(tmk), nil
}

func terminalChange(ctx context.Context, tx sqldb.Tx, id string, st Status, reason string, now time.Time) error {
	v, err := bump(ctx, tx, terminalsCounter)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO reg_terminal_changes (version, terminal_id, status, reason, changed_at) VALUES (?, ?, ?, ?, ?)`,
		v, id, string(st), reason, micros(now)); err != nil {
		return fmt.Errorf("registry: record terminal change: %w", err)
	}
	return nil
}

const terminalCols = `id, merchant_id, status, reason, tmk_kcv, created_at, updated_at`

func scanTerminal(r scanner) (Terminal, error) {
	var (
		t          Terminal
		st         string
		created, u int64
	)
	if err := r.Scan(&t.ID, &t.MerchantID, &st, &t.Reason, &t.TMKKCV, &created, &u); err != nil {
		return Terminal{}, err
	}
	t.Status, t.CreatedAt, t.UpdatedAt = Status(st), fromMicros(created), fromMicros(u)
	return t, nil
}

// Terminal returns an enrolled terminal (ErrNotFound if none).
func (s *Store) Terminal(ctx context.Context, id string) (Terminal, error) {
	if err := ValidTerminalID(id); err != nil {
		return Terminal{}, err
	}
	var t Terminal
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		var err error
		t, err = scanTerminal(tx.QueryRow(ctx, `SELECT `+terminalCols+` FROM reg_terminals WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: terminal %q", ErrNotFound, id)
		}
		return err
	})
	return t, err
}

// TerminalKey unseals and returns a terminal's master key, which MACs the
// sign-on 0800/0810 and encrypts the key block (docs/iso8583.md §2.1, §4).
func (s *Store) TerminalKey(ctx context.Context, id string) (iso8583.Key, error) {
	if err := ValidTerminalID(id); err != nil {
		return nil, err
	}
	var sealed string
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		err := tx.QueryRow(ctx, `SELECT tmk_sealed FROM reg_terminals WHERE id = ?`, id).Scan(&sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: terminal %q", ErrNotFound, id)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	k, err := s.open(tmkLabel(id), sealed)
	if err != nil {
		return nil, err
	}
	return iso8583.Key(k), nil
}

// ListTerminals returns every terminal, ordered by ID. No keys.
func (s *Store) ListTerminals(ctx context.Context) ([]Terminal, error) {
	var out []Terminal
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `SELECT `+terminalCols+` FROM reg_terminals`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			t, err := scanTerminal(rows)
			if err != nil {
				return err
			}
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list terminals: %w", err)
	}
	// Ordered in Go so the result does not depend on the collation
	// (docs/ledger.md §10).
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// SetTerminalStatus blocks (Blocked) or unblocks (Active) a terminal. A
// change bumps the terminal version in the same transaction; setting the
// status it already has changes nothing.
func (s *Store) SetTerminalStatus(ctx context.Context, id string, st Status, reason string) error {
	if err := ValidTerminalID(id); err != nil {
		return err
	}
	if st != Active && st != Blocked {
		return fmt.Errorf("%w: terminal status %q: want active or blocked", ErrInvalid, st)
	}
	if err := validText("reason", reason); err != nil {
		return err
	}
	now := s.now().UTC()
	return s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		var cur string
		err := tx.QueryRow(ctx, `SELECT status FROM reg_terminals WHERE id = ?`, id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: terminal %q", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("registry: terminal status: %w", err)
		}
		if Status(cur) == st {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE reg_terminals SET status = ?, reason = ?, updated_at = ? WHERE id = ?`,
			string(st), reason, micros(now), id); err != nil {
			return fmt.Errorf("registry: set terminal status: %w", err)
		}
		return terminalChange(ctx, tx, id, st, reason, now)
	})
}

// TerminalVersion returns the current version of the terminal list.
func (s *Store) TerminalVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) (err error) {
		v, err = version(ctx, tx, terminalsCounter)
		return err
	})
	return v, err
}

// Whitelist returns the IDs of the active terminals, ordered, and the
// terminal version they reflect (read in one transaction).
func (s *Store) Whitelist(ctx context.Context) ([]string, int64, error) {
	return s.list(ctx, `SELECT id FROM reg_terminals WHERE status = ?`, string(Active), terminalsCounter)
}

// TerminalChanges returns the terminals whose status changed after version
// since (registration included), each once with its latest status, ordered by
// version, and the current terminal version to pass as since next time.
func (s *Store) TerminalChanges(ctx context.Context, since int64) ([]Change, int64, error) {
	return s.changes(ctx, `SELECT version, terminal_id, status, reason, changed_at FROM reg_terminal_changes WHERE version > ?`, since, terminalsCounter)
}
