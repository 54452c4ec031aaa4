package registry

import (
	"context"
	"fmt"
	"strings"

	"github.com/valuechip/valuechip/host/sqldb"
)

// BulkChunk is the number of cards SetCardStatuses changes per database
// transaction. Each chunk is one SELECT … IN, one UPDATE … IN, one counter
// bump and a few multi-row INSERTs; 2 000 keeps every statement well under
// SQLite's 32 766 and PostgreSQL's 65 535 bound parameters while making the
// commit (an fsync) rare enough not to dominate (docs/registry.md §2.1).
const BulkChunk = 2000

// changeRows is the number of rows per multi-row INSERT into
// reg_card_changes (5 parameters each).
const changeRows = 500

// BulkResult counts what SetCardStatuses did. Changed + Unchanged +
// len(Unknown) is the number of IDs given (a card listed twice counts twice:
// changed, then unchanged, as two SetCardStatus calls would).
type BulkResult struct {
	Changed   int      // cards whose status changed (one new card version each)
	Unchanged int      // registered cards that already had the status
	Unknown   []string // IDs (upper case, in input order) of cards not registered: nothing written for them
}

// SetCardStatuses sets the status of many cards with one reason, as
// SetCardStatus would card by card, in transactions of BulkChunk cards:
//
//   - every ID is checked first; a malformed one is ErrInvalid naming its
//     position (1-based) and nothing is written;
//   - a card that already has st is not a change (no new version);
//   - each changed card gets its own card version, in input order, in the
//     transaction of its chunk, so HotlistChanges stays exact;
//   - a card that is not registered is not written and is listed in
//     Unknown, not an error: a hotlist received from a scheme may hold other
//     issuers' cards, which the server refuses anyway (14, card not issued),
//     and reg_cards has no row to hold a status without the card's currency,
//     limit and keys (docs/registry.md §2.1).
//
// A chunk is retried whole on a serialization failure, and running the same
// call again after a failure changes only what the first run did not:
// statuses already set are no-ops. progress, when not nil, is called after
// each committed chunk with the number of IDs processed so far.
//
// On an error (the context's included) the result counts the chunks
// committed before it.
func (s *Store) SetCardStatuses(ctx context.Context, ids []string, st Status, reason string, progress func(done int)) (BulkResult, error) {
	var res BulkResult
	if err := validCardStatus(st); err != nil {
		return res, err
	}
	if err := validText("reason", reason); err != nil {
		return res, err
	}
	norm := make([]string, len(ids))
	for i, id := range ids {
		n, err := NormCardID(id)
		if err != nil {
			return res, fmt.Errorf("%w (entry %d of %d)", err, i+1, len(ids))
		}
		norm[i] = n
	}
	for start := 0; start < len(norm); start += BulkChunk {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		chunk := norm[start:min(start+BulkChunk, len(norm))]
		c, err := s.setChunk(ctx, chunk, st, reason)
		if err != nil {
			return res, err
		}
		res.Changed += c.Changed
		res.Unchanged += c.Unchanged
		res.Unknown = append(res.Unknown, c.Unknown...)
		if progress != nil {
			progress(start + len(chunk))
		}
	}
	return res, nil
}

// setChunk applies one chunk in one transaction. The result is computed
// inside the transaction function, which sqldb may run again.
func (s *Store) setChunk(ctx context.Context, ids []string, st Status, reason string) (BulkResult, error) {
	now := micros(s.now().UTC())
	var res BulkResult
	err := s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		res = BulkResult{}
		cur, err := cardStatuses(ctx, tx, ids)
		if err != nil {
			return err
		}
		var changed []string
		for _, id := range ids {
			old, ok := cur[id]
			switch {
			case !ok:
				res.Unknown = append(res.Unknown, id)
			case old == st:
				res.Unchanged++
			default:
				changed = append(changed, id)
				cur[id] = st // a second occurrence is then unchanged
			}
		}
		res.Changed = len(changed)
		if len(changed) == 0 {
			return nil
		}
		in := padded(changed)
		args := append([]any{string(st), reason, now}, in...)
		if _, err := tx.Exec(ctx, `UPDATE reg_cards SET status = ?, reason = ?, updated_at = ? WHERE card_id IN (`+marks(len(in))+`)`,
			args...); err != nil {
			return fmt.Errorf("registry: set card statuses: %w", err)
		}
		// One bump by len(changed) hands out the versions last-len+1 … last,
		// assigned in input order: the same versions len(changed)
		// SetCardStatus calls in a row would have produced (registry.go:
		// bump).
		if _, err := tx.Exec(ctx, "UPDATE reg_versions SET version = version + ? WHERE name = ?", int64(len(changed)), cardsCounter); err != nil {
			return fmt.Errorf("registry: bump %s version: %w", cardsCounter, err)
		}
		last, err := version(ctx, tx, cardsCounter)
		if err != nil {
			return err
		}
		first := last - int64(len(changed)) + 1
		for i := 0; i < len(changed); {
			part := changed[i : i+insertRows(len(changed)-i)]
			args := make([]any, 0, 5*len(part))
			for j, id := range part {
				args = append(args, first+int64(i+j), id, string(st), reason, now)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO reg_card_changes (version, card_id, status, reason, changed_at) VALUES `+
				rows(len(part), "(?, ?, ?, ?, ?)"), args...); err != nil {
				return fmt.Errorf("registry: record card changes: %w", err)
			}
			i += len(part)
		}
		return nil
	})
	if err != nil {
		return BulkResult{}, err
	}
	return res, nil
}

// cardStatuses reads the current status of the registered cards among ids.
func cardStatuses(ctx context.Context, tx sqldb.Tx, ids []string) (map[string]Status, error) {
	args := padded(ids)
	rows, err := tx.Query(ctx, `SELECT card_id, status FROM reg_cards WHERE card_id IN (`+marks(len(args))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("registry: card statuses: %w", err)
	}
	defer rows.Close()
	cur := make(map[string]Status, len(ids))
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return nil, fmt.Errorf("registry: card statuses: %w", err)
		}
		cur[id] = Status(st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("registry: card statuses: %w", err)
	}
	return cur, nil
}

// The statements have a bounded number of shapes, because sqldb keeps the
// SQLite statements it prepares (up to 256, for the life of the DB): an IN
// list of every length up to BulkChunk, or a multi-row INSERT of every
// length up to changeRows, would fill that cache with statements used once.

// padded returns ids as arguments, padded to the next power of two (or
// BulkChunk) by repeating the last ID, which an IN list ignores: 12 shapes.
func padded(ids []string) []any {
	n := 1
	for n < len(ids) {
		n *= 2
	}
	n = min(n, max(BulkChunk, len(ids)))
	args := make([]any, n)
	for i := range args {
		args[i] = ids[min(i, len(ids)-1)]
	}
	return args
}

// insertRows is the number of change rows to insert next out of left:
// changeRows, else the largest power of two not above left (10 shapes).
func insertRows(left int) int {
	if left >= changeRows {
		return changeRows
	}
	n := 1
	for n*2 <= left {
		n *= 2
	}
	return n
}

// marks returns n placeholders "?, ?, …" for an IN list.
func marks(n int) string { return rows(n, "?") }

// rows repeats one row (or placeholder) n times, comma-separated.
func rows(n int, row string) string {
	var b strings.Builder
	b.Grow(n * (len(row) + 2))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}
