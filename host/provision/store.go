package provision

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Component is the sqldb migration component of the prov_ tables.
const Component = "provision"

// Migrate creates or upgrades the prov_ tables.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	return db.Migrate(ctx, Component, sub)
}

// Registration statuses.
const (
	regRegistered = "registered"
	regIssued     = "issued"
)

// record is a row of prov_registrations.
type record struct {
	id         string
	kdd        [10]byte
	serial     string
	holder     string
	cardID     wire.CardID
	terminalID string
	tokenHash  [sha256.Size]byte
	status     string
	attempts   int
}

type store struct{ db *sqldb.DB }

func micros(t time.Time) int64 { return t.UnixMicro() }

func tokenHash(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }

// register records a registration, or renews the token of the chip's
// earlier registration if it is not issued yet (the CardID and terminal ID
// stay). It returns the record.
func (s store) register(ctx context.Context, reg registration, newID, token string, cfg *Config, now time.Time) (record, error) {
	var out record
	th := tokenHash(token)
	kdd := strings.ToUpper(hex.EncodeToString(reg.kdd[:]))
	err := s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		rec, err := scanRecord(tx.QueryRow(ctx, selectRecord+` WHERE kdd = ?`, kdd))
		switch {
		case err == nil:
			if rec.status == regIssued {
				return fmt.Errorf("%w: card %X", ErrAlreadyIssued, rec.cardID[:])
			}
			if _, err := tx.Exec(ctx, `UPDATE prov_registrations SET cplc = ?, cin = ?, holder = ?, token_hash = ?, updated_at = ? WHERE id = ?`,
				hexUpper(reg.cplc), hexUpper(reg.cin), reg.holder, hexUpper(th[:]), micros(now), rec.id); err != nil {
				return err
			}
			rec.holder, rec.tokenHash = reg.holder, th
			out = rec
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		cardSeq, err := nextValue(ctx, tx, "card")
		if err != nil {
			return err
		}
		termSeq, err := nextValue(ctx, tx, "terminal")
		if err != nil {
			return err
		}
		id, err := NewCardID(cfg.CardIDPrefix, uint64(cardSeq))
		if err != nil {
			return err
		}
		tid, err := terminalID(cfg.TerminalPrefix, termSeq)
		if err != nil {
			return err
		}
		out = record{id: newID, kdd: reg.kdd, serial: hexUpper(reg.serial[:]), holder: reg.holder, cardID: id,
			terminalID: tid, tokenHash: th, status: regRegistered}
		_, err = tx.Exec(ctx, `INSERT INTO prov_registrations (id, kdd, cplc, ic_serial, cin, holder, card_id, terminal_id, token_hash, status, attempts, created_at, updated_at, issued_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, 0)`,
			newID, kdd, hexUpper(reg.cplc), out.serial, hexUpper(reg.cin), reg.holder, hexUpper(id[:]), tid, hexUpper(th[:]), regRegistered, micros(now), micros(now))
		return err
	})
	return out, err
}

// nextValue takes the next number of a counter. The UPDATE comes first so
// that concurrent transactions queue on the row lock (PostgreSQL) or the
// write lock (SQLite) instead of reading the same value.
func nextValue(ctx context.Context, tx sqldb.Tx, name string) (int64, error) {
	if _, err := tx.Exec(ctx, `UPDATE prov_counters SET next_value = next_value + 1 WHERE name = ?`, name); err != nil {
		return 0, err
	}
	var v int64
	if err := tx.QueryRow(ctx, `SELECT next_value FROM prov_counters WHERE name = ?`, name).Scan(&v); err != nil {
		return 0, err
	}
	return v - 1, nil
}

// terminalID formats a device terminal ID: the prefix and the number,
// zero-padded to 8 characters (ISO 8583 DE 41).
func terminalID(prefix string, n int64) (string, error) {
	width := 8 - len(prefix)
	s := fmt.Sprintf("%s%0*d", prefix, width, n)
	if width < 1 || len(s) != 8 {
		return "", fmt.Errorf("provision: terminal number %d does not fit 8 characters after prefix %q", n, prefix)
	}
	return s, nil
}

const selectRecord = `SELECT id, kdd, ic_serial, holder, card_id, terminal_id, token_hash, status, attempts FROM prov_registrations`

func scanRecord(row *sql.Row) (record, error) {
	var r record
	var kdd, cardID, th string
	if err := row.Scan(&r.id, &kdd, &r.serial, &r.holder, &cardID, &r.terminalID, &th, &r.status, &r.attempts); err != nil {
		return r, err
	}
	for _, f := range []struct {
		s   string
		dst []byte
	}{{kdd, r.kdd[:]}, {cardID, r.cardID[:]}, {th, r.tokenHash[:]}} {
		b, err := hex.DecodeString(f.s)
		if err != nil || len(b) != len(f.dst) {
			return r, fmt.Errorf("provision: corrupt registration %s", r.id)
		}
		copy(f.dst, b)
	}
	return r, nil
}

// lookup reads a registration by ID; ErrUnknown when there is none.
func (s store) lookup(ctx context.Context, id string) (record, error) {
	var rec record
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		var err error
		rec, err = scanRecord(tx.QueryRow(ctx, selectRecord+` WHERE id = ?`, id))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return rec, ErrUnknown
	}
	return rec, err
}

// sessionStarted records a new session and counts the attempt.
func (s store) sessionStarted(ctx context.Context, id, regID string, now time.Time) error {
	return s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO prov_sessions (id, registration_id, started_at, ended_at, outcome, error, exchanges) VALUES (?, ?, ?, 0, ?, '', 0)`,
			id, regID, micros(now), StatusRunning); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE prov_registrations SET attempts = attempts + 1, updated_at = ? WHERE id = ?`, micros(now), regID)
		return err
	})
}

// sessionEnded records how a session ended.
func (s store) sessionEnded(ctx context.Context, id, outcome, errText string, exchanges int, now time.Time) error {
	return s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE prov_sessions SET ended_at = ?, outcome = ?, error = ?, exchanges = ? WHERE id = ?`,
			micros(now), outcome, errText, exchanges, id)
		return err
	})
}

// markIssued records the card as issued.
func (s store) markIssued(ctx context.Context, regID string, now time.Time) error {
	return s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE prov_registrations SET status = ?, issued_at = ?, updated_at = ? WHERE id = ? AND status = ?`,
			regIssued, micros(now), micros(now), regID, regRegistered)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n != 1 {
			return fmt.Errorf("%w: registration %s", ErrAlreadyIssued, regID)
		}
		return nil
	})
}

// SessionRecord is a row of prov_sessions, for reports and tests.
type SessionRecord struct {
	ID        string
	Started   time.Time
	Ended     time.Time
	Outcome   string
	Error     string
	Exchanges int
}

func (s store) sessions(ctx context.Context, regID string) ([]SessionRecord, error) {
	var out []SessionRecord
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `SELECT id, started_at, ended_at, outcome, error, exchanges FROM prov_sessions WHERE registration_id = ? ORDER BY started_at, id`, regID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r SessionRecord
			var st, en int64
			if err := rows.Scan(&r.ID, &st, &en, &r.Outcome, &r.Error, &r.Exchanges); err != nil {
				return err
			}
			r.Started = time.UnixMicro(st)
			if en != 0 {
				r.Ended = time.UnixMicro(en)
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

func hexUpper(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }
