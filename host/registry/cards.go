package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/valuechip/valuechip/host/sqldb"
)

// Card is an issued purse as the server knows it.
type Card struct {
	CardID     string // 16 hex digits (upper case when returned)
	Currency   string // ISO 4217 numeric, 3 digits ("978")
	Status     Status // Active (default when empty), Blocked or Hotlisted
	MaxBalance int64  // minor units, 1..2^32-1 (the purse's 4-byte balance)
	KeyVersion byte   // version of the K_LOAD/K_DEBIT/K_TC masters, 1..255
	HolderRef  string // opaque reference to the holder, may be empty
	Reason     string // of the last status change
	IssuedAt   time.Time
	UpdatedAt  time.Time
}

// Change is one entry of a change feed: the status an ID (CardID or
// terminal ID) has had since Version.
type Change struct {
	Version int64
	ID      string
	Status  Status
	Reason  string
	At      time.Time
}

func validCardStatus(st Status) error {
	switch st {
	case Active, Blocked, Hotlisted:
		return nil
	}
	return fmt.Errorf("%w: card status %q: want active, blocked or hotlisted", ErrInvalid, st)
}

// norm checks c and returns it in stored form.
func (c Card) norm() (Card, error) {
	id, err := NormCardID(c.CardID)
	if err != nil {
		return Card{}, err
	}
	c.CardID = id
	if c.Status == "" {
		c.Status = Active
	}
	if err := validCardStatus(c.Status); err != nil {
		return Card{}, err
	}
	if len(c.Currency) != 3 || c.Currency == "000" || c.Currency[0] < '0' || c.Currency[0] > '9' ||
		c.Currency[1] < '0' || c.Currency[1] > '9' || c.Currency[2] < '0' || c.Currency[2] > '9' {
		return Card{}, fmt.Errorf("%w: currency %q: want an ISO 4217 numeric code 001..999 (DE 49 n 3)", ErrInvalid, c.Currency)
	}
	if c.MaxBalance <= 0 || c.MaxBalance > math.MaxUint32 {
		return Card{}, fmt.Errorf("%w: maximum balance %d: want 1..%d minor units", ErrInvalid, c.MaxBalance, uint32(math.MaxUint32))
	}
	if c.KeyVersion == 0 {
		return Card{}, fmt.Errorf("%w: key version 00: want 01..FF", ErrInvalid)
	}
	if err := validText("holder reference", c.HolderRef); err != nil {
		return Card{}, err
	}
	if err := validText("reason", c.Reason); err != nil {
		return Card{}, err
	}
	return c, nil
}

// sameRegistration reports whether two cards carry the same registration
// data (times and reason aside).
func sameRegistration(a, b Card) bool {
	return a.CardID == b.CardID && a.Currency == b.Currency && a.Status == b.Status &&
		a.MaxBalance == b.MaxBalance && a.KeyVersion == b.KeyVersion && a.HolderRef == b.HolderRef
}

// RegisterCard records an issued card. Registering the same card again with
// identical data returns the stored card (idempotent retry); different data
// gives ErrExists. The registration is a change of the card list (a card
// registered Hotlisted enters the hotlist at once).
func (s *Store) RegisterCard(ctx context.Context, c Card) (Card, error) {
	c, err := c.norm()
	if err != nil {
		return Card{}, err
	}
	now := s.now().UTC()
	var out Card
	err = s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		res, err := tx.Exec(ctx, `INSERT INTO reg_cards (card_id, currency, status, max_balance, key_version, holder_ref, reason, issued_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (card_id) DO NOTHING`,
			c.CardID, c.Currency, string(c.Status), c.MaxBalance, int64(c.KeyVersion), c.HolderRef, c.Reason, micros(now), micros(now))
		if err != nil {
			return fmt.Errorf("registry: insert card: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("registry: insert card: %w", err)
		}
		if n == 0 {
			old, err := scanCard(tx.QueryRow(ctx, `SELECT `+cardCols+` FROM reg_cards WHERE card_id = ?`, c.CardID))
			if err != nil {
				return fmt.Errorf("registry: read card: %w", err)
			}
			if !sameRegistration(old, c) {
				return fmt.Errorf("%w: card %s with different data", ErrExists, c.CardID)
			}
			out = old
			return nil
		}
		out = c
		out.IssuedAt, out.UpdatedAt = fromMicros(micros(now)), fromMicros(micros(now))
		reason := c.Reason
		if reason == "" {
			reason = "registered"
		}
		return cardChange(ctx, tx, c.CardID, c.Status, reason, now)
	})
	if err != nil {
		return Card{}, err
	}
	return out, nil
}

func cardChange(ctx context.Context, tx sqldb.Tx, id string, st Status, reason string, now time.Time) error {
	v, err := bump(ctx, tx, cardsCounter)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO reg_card_changes (version, card_id, status, reason, changed_at) VALUES (?, ?, ?, ?, ?)`,
		v, id, string(st), reason, micros(now)); err != nil {
		return fmt.Errorf("registry: record card change: %w", err)
	}
	return nil
}

const cardCols = `card_id, currency, status, max_balance, key_version, holder_ref, reason, issued_at, updated_at`

func scanCard(r scanner) (Card, error) {
	var (
		c          Card
		st         string
		kv, is, up int64
	)
	if err := r.Scan(&c.CardID, &c.Currency, &st, &c.MaxBalance, &kv, &c.HolderRef, &c.Reason, &is, &up); err != nil {
		return Card{}, err
	}
	c.Status, c.KeyVersion, c.IssuedAt, c.UpdatedAt = Status(st), byte(kv), fromMicros(is), fromMicros(up)
	return c, nil
}

// Card returns a registered card (ErrNotFound if none).
func (s *Store) Card(ctx context.Context, id string) (Card, error) {
	id, err := NormCardID(id)
	if err != nil {
		return Card{}, err
	}
	var c Card
	err = s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		var err error
		c, err = scanCard(tx.QueryRow(ctx, `SELECT `+cardCols+` FROM reg_cards WHERE card_id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: card %s", ErrNotFound, id)
		}
		return err
	})
	return c, err
}

// ListCards returns every card, ordered by CardID.
func (s *Store) ListCards(ctx context.Context) ([]Card, error) {
	var out []Card
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `SELECT `+cardCols+` FROM reg_cards`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			c, err := scanCard(rows)
			if err != nil {
				return err
			}
			out = append(out, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("registry: list cards: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CardID < out[j].CardID })
	return out, nil
}

// SetCardStatus sets a card Active, Blocked or Hotlisted with a reason. A
// change bumps the card version in the same transaction; setting the status
// the card already has changes nothing (no new version). SetCardStatuses
// does the same for many cards, a chunk per transaction.
func (s *Store) SetCardStatus(ctx context.Context, id string, st Status, reason string) error {
	id, err := NormCardID(id)
	if err != nil {
		return err
	}
	if err := validCardStatus(st); err != nil {
		return err
	}
	if err := validText("reason", reason); err != nil {
		return err
	}
	now := s.now().UTC()
	return s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		var cur string
		err := tx.QueryRow(ctx, `SELECT status FROM reg_cards WHERE card_id = ?`, id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: card %s", ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("registry: card status: %w", err)
		}
		if Status(cur) == st {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE reg_cards SET status = ?, reason = ?, updated_at = ? WHERE card_id = ?`,
			string(st), reason, micros(now), id); err != nil {
			return fmt.Errorf("registry: set card status: %w", err)
		}
		return cardChange(ctx, tx, id, st, reason, now)
	})
}

// HotlistVersion returns the current version of the card list.
func (s *Store) HotlistVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) (err error) {
		v, err = version(ctx, tx, cardsCounter)
		return err
	})
	return v, err
}

// Hotlist returns the hotlisted CardIDs, ordered, and the card version they
// reflect (read in one transaction): a cache built from it and then fed
// HotlistChanges(version) misses nothing.
func (s *Store) Hotlist(ctx context.Context) ([]string, int64, error) {
	return s.list(ctx, `SELECT card_id FROM reg_cards WHERE status = ?`, string(Hotlisted), cardsCounter)
}

// HotlistPage returns up to limit hotlisted CardIDs greater than after (""
// for the first page), in ascending order, for loading a large hotlist
// without holding it twice in memory. Pages are separate reads: read
// HotlistVersion first, page until a short page, then apply
// HotlistChanges(that version) — every card changed meanwhile is in it.
func (s *Store) HotlistPage(ctx context.Context, after string, limit int) ([]string, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: page size %d", ErrInvalid, limit)
	}
	var ids []string
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		ids = ids[:0]
		// CardIDs are upper-case hex: byte order, so any collation agrees
		// with the Go comparison the caller makes.
		rows, err := tx.Query(ctx, `SELECT card_id FROM reg_cards WHERE status = ? AND card_id > ? ORDER BY card_id LIMIT ?`,
			string(Hotlisted), after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("registry: hotlist page: %w", err)
	}
	return ids, nil
}

// HotlistChanges returns the cards whose status changed after version since
// (registration included), each once with its latest status, ordered by
// version, and the current card version to pass as since next time. A card
// is on the hotlist exactly when its latest status is Hotlisted.
func (s *Store) HotlistChanges(ctx context.Context, since int64) ([]Change, int64, error) {
	return s.changes(ctx, `SELECT version, card_id, status, reason, changed_at FROM reg_card_changes WHERE version > ?`, since, cardsCounter)
}

// list reads the IDs of one query and the counter in one transaction.
func (s *Store) list(ctx context.Context, q, arg, counter string) ([]string, int64, error) {
	var (
		ids []string
		v   int64
	)
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		ids = ids[:0]
		var err error
		if v, err = version(ctx, tx, counter); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, q, arg)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("registry: %s list: %w", counter, err)
	}
	sort.Strings(ids)
	return ids, v, nil
}

// changes reads a change feed after since and the counter in one
// transaction, keeping the latest change of each ID.
func (s *Store) changes(ctx context.Context, q string, since int64, counter string) ([]Change, int64, error) {
	if since < 0 {
		return nil, 0, fmt.Errorf("%w: version %d", ErrInvalid, since)
	}
	var (
		all []Change
		v   int64
	)
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		all = all[:0]
		var err error
		if v, err = version(ctx, tx, counter); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, q, since)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				c  Change
				st string
				at int64
			)
			if err := rows.Scan(&c.Version, &c.ID, &st, &c.Reason, &at); err != nil {
				return err
			}
			c.Status, c.At = Status(st), fromMicros(at)
			all = append(all, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("registry: %s changes: %w", counter, err)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Version < all[j].Version })
	last := make(map[string]int, len(all))
	for i, c := range all {
		last[c.ID] = i
	}
	out := all[:0]
	for i, c := range all {
		if last[c.ID] == i {
			out = append(out, c)
		}
	}
	return out, v, nil
}
