package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/host/sqldb"
)

// openBatch is the terminal's open batch: 1 until its first close.
func openBatch(ctx context.Context, t sqldb.Tx, terminalID string) (int64, error) {
	var n int64
	err := t.QueryRow(ctx, `SELECT batch FROM ledger_terminals WHERE terminal_id = ?`, terminalID).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: read terminal batch: %w", err)
	}
	return n, nil
}

// OpenBatchTotals implements Store: the totals of the terminal's open batch
// so far (docs/ledger.md §12).
func (s *SQLStore) OpenBatchTotals(ctx context.Context, terminalID string) (Totals, error) {
	if err := validRef("terminal ID", terminalID); err != nil {
		return Totals{}, err
	}
	var tot Totals
	err := s.inTx(ctx, false, func(t sqldb.Tx) error {
		n, err := openBatch(ctx, t, terminalID)
		if err != nil {
			return err
		}
		tot, err = batchTotals(ctx, t, terminalID, n)
		return err
	})
	return tot, err
}

// CloseBatch implements Store: it closes the terminal's open batch and
// returns the totals it was closed with; whatever the terminal does later
// counts in the next batch. The key (e.g. from the 0500 message: terminal ID
// + transaction number) makes it idempotent: the same key again returns the
// same totals and closes nothing; the key of another terminal is
// ErrConflict. A batch holding more than one currency cannot be closed
// (ErrCurrency): a terminal reconciles in one currency (DE 49).
func (s *SQLStore) CloseBatch(ctx context.Context, terminalID, key string) (Totals, error) {
	if err := validRef("terminal ID", terminalID); err != nil {
		return Totals{}, err
	}
	if err := validKey(key); err != nil {
		return Totals{}, err
	}
	var tot Totals
	err := s.inTx(ctx, true, func(t sqldb.Tx) error {
		tot = Totals{}
		err := t.QueryRow(ctx, `SELECT terminal_id, batch, currency, loads, load_amount, load_reversals, load_reversal_amount,
debits, debit_amount FROM ledger_batches WHERE close_key = ?`, key).Scan(&tot.TerminalID, &tot.Batch, &tot.Currency,
			&tot.Loads, &tot.LoadAmount, &tot.LoadReversals, &tot.LoadReversalAmount, &tot.Debits, &tot.DebitAmount)
		switch {
		case err == nil:
			if tot.TerminalID != terminalID {
				return fmt.Errorf("%w: batch close key %q was used for terminal %s", ErrConflict, key, tot.TerminalID)
			}
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("ledger: read batch: %w", err)
		}
		n, err := openBatch(ctx, t, terminalID)
		if err != nil {
			return err
		}
		if tot, err = batchTotals(ctx, t, terminalID, n); err != nil {
			return err
		}
		now := micros(s.now())
		if _, err := t.Exec(ctx, `INSERT INTO ledger_batches (terminal_id, batch, close_key, currency, loads, load_amount,
load_reversals, load_reversal_amount, debits, debit_amount, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			terminalID, n, key, tot.Currency, tot.Loads, tot.LoadAmount, tot.LoadReversals, tot.LoadReversalAmount,
			tot.Debits, tot.DebitAmount, now); err != nil {
			return fmt.Errorf("ledger: close batch: %w", err)
		}
		if _, err := t.Exec(ctx, `INSERT INTO ledger_terminals (terminal_id, batch, updated_at) VALUES (?, ?, ?)
ON CONFLICT (terminal_id) DO NOTHING`, terminalID, n, now); err != nil {
			return fmt.Errorf("ledger: close batch: %w", err)
		}
		res, err := t.Exec(ctx, `UPDATE ledger_terminals SET batch = ?, updated_at = ? WHERE terminal_id = ? AND batch = ?`,
			n+1, now, terminalID, n)
		if err != nil {
			return fmt.Errorf("ledger: close batch: %w", err)
		}
		if k, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("ledger: close batch: %w", err)
		} else if k != 1 {
			return sqldb.ErrRetry // closed concurrently: the next attempt sees it
		}
		return nil
	})
	if err != nil {
		return Totals{}, err
	}
	return tot, nil
}

// batchTotals computes the totals of one terminal batch from the records
// counted in it (docs/ledger.md §12).
func batchTotals(ctx context.Context, t sqldb.Tx, terminalID string, batch int64) (Totals, error) {
	tot := Totals{TerminalID: terminalID, Batch: batch}
	currencies := map[string]bool{}
	type sum struct{ count, amount *int64 }
	queries := []struct {
		q    string
		args []any
		into map[string]sum
	}{
		{`SELECT state, currency, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM ledger_txns
WHERE terminal_id = ? AND batch = ? AND kind = ? GROUP BY state, currency`,
			[]any{terminalID, batch, KindLoad}, map[string]sum{
				string(StateCompleted): {&tot.Loads, &tot.LoadAmount},
				string(StateReversed):  {&tot.LoadReversals, &tot.LoadReversalAmount},
			}},
		{`SELECT kind, currency, COUNT(*), CAST(SUM(amount) AS BIGINT) FROM ledger_advices
WHERE terminal_id = ? AND batch = ? AND kind = ? GROUP BY kind, currency`,
			[]any{terminalID, batch, string(AdviceDebit)}, map[string]sum{
				string(AdviceDebit): {&tot.Debits, &tot.DebitAmount},
			}},
	}
	for _, q := range queries {
		rows, err := t.Query(ctx, q.q, q.args...)
		if err != nil {
			return Totals{}, fmt.Errorf("ledger: batch totals: %w", err)
		}
		for rows.Next() {
			var (
				what, cur     string
				count, amount int64
			)
			if err := rows.Scan(&what, &cur, &count, &amount); err != nil {
				rows.Close()
				return Totals{}, fmt.Errorf("ledger: batch totals: %w", err)
			}
			into, ok := q.into[what]
			if !ok {
				continue // e.g. a load batch row still in progress cannot occur: batch > 0 only when final
			}
			currencies[cur] = true
			*into.count += count
			if *into.amount, err = checkedAdd(*into.amount, amount); err != nil {
				rows.Close()
				return Totals{}, fmt.Errorf("ledger: batch totals: %w", err)
			}
		}
		if err := rows.Close(); err != nil {
			return Totals{}, fmt.Errorf("ledger: batch totals: %w", err)
		}
		if err := rows.Err(); err != nil {
			return Totals{}, fmt.Errorf("ledger: batch totals: %w", err)
		}
	}
	if len(currencies) > 1 {
		return Totals{}, fmt.Errorf("%w: terminal %s batch %d holds %d currencies", ErrCurrency, terminalID, batch, len(currencies))
	}
	for c := range currencies {
		tot.Currency = c
	}
	return tot, nil
}
