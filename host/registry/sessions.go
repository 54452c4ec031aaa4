package registry

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/sqldb"
)

const (
	// SeedGrace is how long the seeds of a terminal's earlier sign-ons stay
	// acceptable after a new sign-on, so that messages in flight land
	// (docs/iso8583.md §2.1), never beyond their own not-after.
	SeedGrace = 10 * time.Minute
	// MaxSeedTTL is the longest validity of a seed (docs/iso8583.md §4).
	MaxSeedTTL = 24 * time.Hour
	// seedDraws bounds the redraws of a seed ID that is already taken; with
	// 2^32 IDs a second draw is already rare.
	seedDraws = 32
)

func wkLabel(terminalID string) string { return "wk/" + terminalID }

func seedLabel(id uint32) string { return "seed/" + strconv.FormatUint(uint64(id), 10) }

// SignOn opens a new session for an active terminal at time now: a fresh
// working key and a fresh seed (random ID unique over all terminals and
// never reused, random key, not-after now+seedTTL truncated to the second as
// DF06 carries it), both stored sealed. The seeds of the terminal's earlier
// sign-ons stay valid until now+SeedGrace or their own not-after, whichever
// is earlier. The caller encodes the result under the TMK (TerminalKey) into
// the 0810 key block. Unknown terminal: ErrNotFound; blocked: ErrBlocked;
// seedTTL outside (0, MaxSeedTTL]: ErrInvalid.
func (s *Store) SignOn(ctx context.Context, terminalID string, now time.Time, seedTTL time.Duration) (iso8583.SignOnKeys, error) {
	if err := ValidTerminalID(terminalID); err != nil {
		return iso8583.SignOnKeys{}, err
	}
	if seedTTL <= 0 || seedTTL > MaxSeedTTL {
		return iso8583.SignOnKeys{}, fmt.Errorf("%w: seed validity %v: want more than 0 and at most %v (docs/iso8583.md §4)", ErrInvalid, seedTTL, MaxSeedTTL)
	}
	now = now.UTC()
	notAfter := now.Add(seedTTL).Truncate(time.Second)
	if notAfter.Unix() > math.MaxUint32 || !notAfter.After(now) {
		return iso8583.SignOnKeys{}, fmt.Errorf("%w: seed not-after %v: must be after the sign-on, in whole seconds, and fit DF06 (Unix seconds, 4 bytes)", ErrInvalid, notAfter)
	}
	wk, err := s.newKey()
	if err != nil {
		return iso8583.SignOnKeys{}, err
	}
	sk, err := s.newKey()
	if err != nil {
		return iso8583.SignOnKeys{}, err
	}
	wkcv, err := iso8583.Key(wk).KCV()
	if err != nil {
		return iso8583.SignOnKeys{}, err
	}
	skcv, err := iso8583.Key(sk).KCV()
	if err != nil {
		return iso8583.SignOnKeys{}, err
	}
	wkSealed, err := s.seal(wkLabel(terminalID), wk)
	if err != nil {
		return iso8583.SignOnKeys{}, err
	}
	graceEnd := micros(now.Add(SeedGrace))
	var seedID uint32
	// The function may run again (serialization retry): the seed ID is drawn
	// inside it, everything else is fixed before.
	err = s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		var st string
		err := tx.QueryRow(ctx, `SELECT status FROM reg_terminals WHERE id = ?`, terminalID).Scan(&st)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: terminal %q", ErrNotFound, terminalID)
		}
		if err != nil {
			return fmt.Errorf("registry: terminal status: %w", err)
		}
		if Status(st) != Active {
			return fmt.Errorf("%w: terminal %q is %s", ErrBlocked, terminalID, st)
		}
		if seedID, err = s.insertSeed(ctx, tx, terminalID, sk, fmt.Sprintf("%X", skcv), now, notAfter); err != nil {
			return err
		}
		// The earlier seeds end with the grace period (docs/iso8583.md §2.1);
		// those already ending sooner keep their end.
		if _, err := tx.Exec(ctx, `UPDATE reg_seeds SET valid_until = ? WHERE terminal_id = ? AND seed_id <> ? AND valid_until > ?`,
			graceEnd, terminalID, int64(seedID), graceEnd); err != nil {
			return fmt.Errorf("registry: end earlier seeds: %w", err)
		}
		res, err := tx.Exec(ctx, `INSERT INTO reg_sessions (terminal_id, wk_sealed, wk_kcv, seed_id, signed_on_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (terminal_id) DO NOTHING`, terminalID, wkSealed, fmt.Sprintf("%X", wkcv), int64(seedID), micros(now))
		if err != nil {
			return fmt.Errorf("registry: store session: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("registry: store session: %w", err)
		} else if n == 1 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE reg_sessions SET wk_sealed = ?, wk_kcv = ?, seed_id = ?, signed_on_at = ? WHERE terminal_id = ?`,
			wkSealed, fmt.Sprintf("%X", wkcv), int64(seedID), micros(now), terminalID); err != nil {
			return fmt.Errorf("registry: store session: %w", err)
		}
		return nil
	})
	if err != nil {
		return iso8583.SignOnKeys{}, err
	}
	return iso8583.SignOnKeys{
		WorkingKey: iso8583.Key(wk),
		Seed:       iso8583.Seed{ID: seedID, Key: iso8583.Key(sk), NotAfter: notAfter},
	}, nil
}

// insertSeed draws seed IDs until one is free and stores the seed under it.
// INSERT … ON CONFLICT DO NOTHING detects a taken ID without aborting the
// transaction (a unique violation would on PostgreSQL).
func (s *Store) insertSeed(ctx context.Context, tx sqldb.Tx, terminalID string, key []byte, kcv string, now, notAfter time.Time) (uint32, error) {
	var b [4]byte
	for range seedDraws {
		if err := s.read(b[:]); err != nil {
			return 0, err
		}
		id := binary.BigEndian.Uint32(b[:])
		if id == 0 {
			continue // 0 reads as "no seed"; never hand it out
		}
		sealed, err := s.seal(seedLabel(id), key)
		if err != nil {
			return 0, err
		}
		res, err := tx.Exec(ctx, `INSERT INTO reg_seeds (seed_id, terminal_id, key_sealed, key_kcv, issued_at, not_after, valid_until)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seed_id) DO NOTHING`,
			int64(id), terminalID, sealed, kcv, micros(now), micros(notAfter), micros(notAfter))
		if err != nil {
			return 0, fmt.Errorf("registry: store seed: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("registry: store seed: %w", err)
		}
		if n == 1 {
			return id, nil
		}
	}
	return 0, fmt.Errorf("registry: no free seed ID after %d draws", seedDraws)
}

// WorkingKey returns the working key of the terminal's current session,
// which MACs every message but the sign-on (docs/iso8583.md §6). ErrNotFound
// when the terminal has not signed on (or has signed off).
func (s *Store) WorkingKey(ctx context.Context, terminalID string) (iso8583.Key, error) {
	if err := ValidTerminalID(terminalID); err != nil {
		return nil, err
	}
	var sealed string
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		err := tx.QueryRow(ctx, `SELECT wk_sealed FROM reg_sessions WHERE terminal_id = ?`, terminalID).Scan(&sealed)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no session for terminal %q", ErrNotFound, terminalID)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	k, err := s.open(wkLabel(terminalID), sealed)
	if err != nil {
		return nil, err
	}
	return iso8583.Key(k), nil
}

// SignOff ends the terminal's session (0800 with DE 70 002): its working key
// is forgotten. Its seeds keep their validity, so advices already numbered
// still land. Signing off without a session is not an error.
func (s *Store) SignOff(ctx context.Context, terminalID string) error {
	if err := ValidTerminalID(terminalID); err != nil {
		return err
	}
	return s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM reg_sessions WHERE terminal_id = ?`, terminalID); err != nil {
			return fmt.Errorf("registry: sign off: %w", err)
		}
		return nil
	})
}

// Seed returns the seed with the given ID (DE 62, docs/iso8583.md §7) and the
// terminal it was handed to. The seed's NotAfter is the end of its
// acceptance: its own not-after, or the end of the grace period after the
// terminal's next sign-on, whichever is earlier; so Seed.VerifyTxnNumber(msg,
// now) refuses a superseded or expired seed with iso8583.ErrSeedExpired.
//
// The caller MUST check that the terminal matches DE 41 of the message, and
// SHOULD answer ErrNotFound (unknown or purged seed) like
// iso8583.ErrSeedExpired: response code 63, the terminal signs on again.
func (s *Store) Seed(ctx context.Context, seedID uint32) (string, iso8583.Seed, error) {
	var (
		terminal, sealed string
		until            int64
	)
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		err := tx.QueryRow(ctx, `SELECT terminal_id, key_sealed, valid_until FROM reg_seeds WHERE seed_id = ?`, int64(seedID)).
			Scan(&terminal, &sealed, &until)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && sealed == "") {
			return fmt.Errorf("%w: seed %d", ErrNotFound, seedID)
		}
		return err
	})
	if err != nil {
		return "", iso8583.Seed{}, err
	}
	k, err := s.open(seedLabel(seedID), sealed)
	if err != nil {
		return "", iso8583.Seed{}, err
	}
	return terminal, iso8583.Seed{ID: seedID, Key: iso8583.Key(k), NotAfter: fromMicros(until)}, nil
}

// PurgeSeeds wipes the sealed keys of the seeds no longer acceptable at
// before and returns how many. The rows stay, so their IDs are never handed
// out again (docs/iso8583.md §4: a seed ID is never reused).
func (s *Store) PurgeSeeds(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE reg_seeds SET key_sealed = '' WHERE valid_until < ? AND key_sealed <> ''`, micros(before))
		if err != nil {
			return fmt.Errorf("registry: purge seeds: %w", err)
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}
