package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/valuechip/valuechip/host/sqldb"
)

func validDigest(d string) error {
	if d == "" {
		return fmt.Errorf("%w: empty record digest", ErrInvalid)
	}
	if len(d) > 128 {
		return fmt.Errorf("%w: record digest longer than 128 bytes", ErrInvalid)
	}
	return nil
}

func validRef(what, v string) error {
	if v == "" || len(v) > 128 || strings.ContainsRune(v, '/') {
		return fmt.Errorf("%w: %s %q", ErrInvalid, what, v)
	}
	return nil
}

func validateAdvice(a DebitAdvice) error {
	if err := validKey(a.Key); err != nil {
		return err
	}
	for _, f := range []struct{ what, v string }{
		{"card ID", a.CardID}, {"terminal ID", a.TerminalID}, {"merchant ID", a.MerchantID},
	} {
		if err := validRef(f.what, f.v); err != nil {
			return err
		}
	}
	switch {
	case a.ATC == 0:
		return fmt.Errorf("%w: ATC 0 is never a value change", ErrInvalid)
	case a.Amount <= 0:
		return fmt.Errorf("%w: debit amount %d", ErrInvalid, a.Amount)
	case !validCurrency(a.Currency):
		return fmt.Errorf("%w: currency %q is not an ISO 4217 numeric code", ErrInvalid, a.Currency)
	}
	return validDigest(a.Digest)
}

// adviceKey is the posting key of an advice: its card record, under a
// reserved prefix (card IDs and ATCs hold no '/').
func adviceKey(a DebitAdvice) string {
	return advicePrefix + a.CardID + "/" + strconv.FormatUint(uint64(a.ATC), 10) + "/" + a.Digest
}

// debitLegs are the legs of a debit (docs/ledger.md §2): the purse shadow, a
// liability with a negative balance, is debited (+); the merchant payable is
// credited (−).
func debitLegs(a DebitAdvice) []Leg {
	return []Leg{
		{Account: AccountID(KindPurse, a.CardID, a.Currency), Amount: a.Amount, Currency: a.Currency},
		{Account: AccountID(KindMerchant, a.MerchantID, a.Currency), Amount: -a.Amount, Currency: a.Currency},
	}
}

// adviceBatch holds what one attempt of ApplyAdvices learnt so far in its
// database transaction; it is rebuilt on every attempt.
type adviceBatch struct {
	now     int64
	batches map[string]int64 // terminal → open batch
	// balances of the accounts this transaction has read or written (the
	// merchant payables of a batch are few and hot): an advice reads only
	// the accounts missing here.
	balances map[string]int64
	// dirty accounts have a balance here that is not written yet: the
	// balances of existing accounts are written once per transaction, after
	// the last advice, instead of once per advice.
	dirty map[string]bool
}

// flush writes the dirty balances, in account order (a fixed lock order on
// PostgreSQL).
func (b *adviceBatch) flush(ctx context.Context, t sqldb.Tx) error {
	ids := make([]string, 0, len(b.dirty))
	for id := range b.dirty {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if _, err := t.Exec(ctx, `UPDATE ledger_accounts SET balance = ? WHERE id = ?`, b.balances[id], id); err != nil {
			return fmt.Errorf("ledger: update balance %s: %w", id, err)
		}
	}
	return nil
}

// ApplyAdvices implements Store. It posts each debit advice (purse shadow →
// merchant payable, created on demand) and records its ATC, all in one
// database transaction — one commit, one fsync, for the whole slice — with a
// savepoint per advice so that an advice that fails leaves no trace and does
// not spoil the others. The results are in the order of advices.
//
// The identity of an advice is its card record (CardID, ATC, Digest):
//   - a record already posted, with the same content → Receipt.Replayed,
//     ATC.Status ATCRepeat, nothing posted (whatever the key);
//   - a record already posted with different content → ErrConflict;
//   - a new digest for an ATC posted before → posted, ATC.Status
//     ATCDuplicate (the TC is genuine: the card did pay; it is the card
//     that is cloned or rolled back, purse.md §9.5);
//   - a key already used for another card or ATC → ErrConflict.
//
// Advices failing validation are answered without touching the database. An
// error of the transaction itself (closed store, context, database down) is
// set on every advice: none of them was posted.
func (s *SQLStore) ApplyAdvices(ctx context.Context, advices []DebitAdvice) []AdviceResult {
	out := make([]AdviceResult, len(advices))
	type item struct {
		i    int
		hash string
	}
	var items []item
	var accounts []string
	for i, a := range advices {
		if err := validateAdvice(a); err != nil {
			out[i].Err = err
			continue
		}
		items = append(items, item{i, adviceHash(a)})
		accounts = append(accounts, legAccounts(debitLegs(a))...)
	}
	if len(items) == 0 {
		return out
	}
	defer s.lockAccounts(accounts...)()
	attempt := make([]AdviceResult, len(advices))
	err := s.inTx(ctx, true, func(t sqldb.Tx) error {
		b := &adviceBatch{now: micros(s.now()), batches: map[string]int64{}, balances: map[string]int64{}, dirty: map[string]bool{}}
		for _, it := range items {
			var (
				r   AdviceResult
				bal []accountBalance
			)
			err := t.Savepoint(ctx, func(t sqldb.Tx) error {
				var err error
				r, bal, err = s.applyAdvice(ctx, t, b, advices[it.i], it.hash)
				return err
			})
			if err != nil {
				if sqldb.Retryable(err) {
					return err
				}
				r = AdviceResult{Err: err}
			} else {
				// Only now are the advice's balances those of the
				// transaction: a failed advice was rolled back.
				for _, ab := range bal {
					b.balances[ab.id] = ab.balance
					if ab.dirty {
						b.dirty[ab.id] = true
					}
				}
			}
			attempt[it.i] = r
		}
		return b.flush(ctx, t)
	})
	for _, it := range items {
		if err != nil {
			out[it.i] = AdviceResult{Err: err}
		} else {
			out[it.i] = attempt[it.i]
		}
	}
	return out
}

// accountBalance is an account's balance after an advice; dirty: not
// written yet (adviceBatch.flush writes it).
type accountBalance struct {
	id      string
	balance int64
	dirty   bool
}

// applyAdvice posts one advice inside its savepoint and returns the new
// balances of its accounts. Every check that can refuse it (conflicts,
// overflow) runs before its first write.
func (s *SQLStore) applyAdvice(ctx context.Context, t sqldb.Tx, b *adviceBatch, a DebitAdvice, hash string) (AdviceResult, []accountBalance, error) {
	pkey := adviceKey(a)
	found, err := s.adviceSeen(ctx, t, a, hash)
	if err != nil {
		return AdviceResult{}, nil, err
	}
	if found {
		rc, _, ok, err := s.postingByKey(ctx, t, pkey)
		if err != nil {
			return AdviceResult{}, nil, err
		}
		if !ok {
			return AdviceResult{}, nil, fmt.Errorf("ledger: posting %s of a recorded advice is missing", pkey)
		}
		rc.Replayed = true
		pic, err := s.atcPicture(ctx, t, a.CardID)
		if err != nil {
			return AdviceResult{}, nil, err
		}
		pic.Status = ATCRepeat
		return AdviceResult{Receipt: rc, ATC: pic}, nil, nil
	}

	// The two accounts, created on demand: purse shadow and merchant payable.
	legs := debitLegs(a)
	refs := [2]struct {
		kind AccountKind
		ref  string
	}{{KindPurse, a.CardID}, {KindMerchant, a.MerchantID}}
	var exists [2]bool
	newBal := make([]accountBalance, 2)
	for i, l := range legs {
		bal, ok := b.balances[l.Account]
		if !ok {
			var cur string
			err := t.QueryRow(ctx, `SELECT balance, currency FROM ledger_accounts WHERE id = ?`, l.Account).Scan(&bal, &cur)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				bal = 0
			case err != nil:
				return AdviceResult{}, nil, fmt.Errorf("ledger: read account %s: %w", l.Account, err)
			case cur != l.Currency:
				return AdviceResult{}, nil, fmt.Errorf("%w: account %s is in %s", ErrCurrency, l.Account, cur)
			default:
				ok = true
			}
		}
		exists[i] = ok
		nb, err := checkedAdd(bal, l.Amount)
		if err != nil {
			return AdviceResult{}, nil, fmt.Errorf("leg %d on %s: %w", i, l.Account, err)
		}
		newBal[i] = accountBalance{id: l.Account, balance: nb, dirty: ok}
	}

	atc, err := s.recordATC(ctx, t, ATCAdvice{CardID: a.CardID, ATC: a.ATC, Digest: a.Digest, TerminalID: a.TerminalID}, b.now)
	if err != nil {
		return AdviceResult{}, nil, err
	}
	for i, l := range legs {
		if exists[i] {
			continue // written by adviceBatch.flush
		}
		if _, err := t.Exec(ctx, `INSERT INTO ledger_accounts (id, kind, ref, currency, balance, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			l.Account, string(refs[i].kind), refs[i].ref, l.Currency, newBal[i].balance, b.now); err != nil {
			return AdviceResult{}, nil, fmt.Errorf("ledger: create account %s: %w", l.Account, err)
		}
	}
	// After the accounts: the legs reference them.
	rc, err := s.writePosting(ctx, t, pkey, a.Memo, a.Key, legs, postingHash(a.Memo, legs), b.now)
	if err != nil {
		return AdviceResult{}, nil, err
	}
	batch, ok := b.batches[a.TerminalID]
	if !ok {
		if batch, err = openBatch(ctx, t, a.TerminalID); err != nil {
			return AdviceResult{}, nil, err
		}
		b.batches[a.TerminalID] = batch
	}
	if _, err := t.Exec(ctx, `INSERT INTO ledger_advices (card_id, atc, digest, kind, idem_key, request_hash, terminal_id,
merchant_id, amount, currency, posting_key, status, batch, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.CardID, int64(a.ATC), a.Digest, string(AdviceDebit), a.Key, hash, a.TerminalID, a.MerchantID, a.Amount, a.Currency,
		pkey, string(atc.Status), batch, b.now); err != nil {
		return AdviceResult{}, nil, fmt.Errorf("ledger: record advice: %w", err)
	}
	return AdviceResult{Receipt: rc, ATC: atc}, newBal, nil
}

// adviceSeen looks the advice up, by its record and by its key in one
// query: found reports a replay of a record already posted; a record posted
// with other content, or a key used for another card or ATC, is
// ErrConflict. A second digest for the same card and ATC may share the key
// (a duplicate).
func (s *SQLStore) adviceSeen(ctx context.Context, t sqldb.Tx, a DebitAdvice, hash string) (bool, error) {
	rows, err := t.Query(ctx, `SELECT card_id, atc, digest, kind, request_hash FROM ledger_advices
WHERE (card_id = ? AND atc = ? AND digest = ?) OR idem_key = ?`, a.CardID, int64(a.ATC), a.Digest, a.Key)
	if err != nil {
		return false, fmt.Errorf("ledger: read advice: %w", err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var (
			card, digest, kind, rh string
			atc                    int64
		)
		if err := rows.Scan(&card, &atc, &digest, &kind, &rh); err != nil {
			return false, fmt.Errorf("ledger: read advice: %w", err)
		}
		switch {
		case card == a.CardID && atc == int64(a.ATC) && digest == a.Digest:
			if kind != string(AdviceDebit) || rh != hash {
				return false, fmt.Errorf("%w: card %s ATC %d record %s was posted with other details", ErrConflict, a.CardID, a.ATC, a.Digest)
			}
			found = true
		case kind != string(AdviceDebit):
			// a load completion whose transaction key equals this key
		case card != a.CardID || atc != int64(a.ATC):
			return false, fmt.Errorf("%w: advice key %q was used for card %s ATC %d", ErrConflict, a.Key, card, atc)
		}
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("ledger: read advice: %w", err)
	}
	return found, nil
}

// CardAdvices implements Store: every card record terminals reported for
// the card — debit advices and load completions that carried their ATC —
// ordered by ATC, then arrival. A card nobody reported has none (no error).
// The second channel cross-checks the card's own log against it (issue 6).
func (s *SQLStore) CardAdvices(ctx context.Context, cardID string) ([]AdviceRecord, error) {
	var out []AdviceRecord
	err := s.inTx(ctx, false, func(t sqldb.Tx) error {
		out = nil
		rows, err := t.Query(ctx, `SELECT kind, idem_key, atc, digest, terminal_id, merchant_id, amount, currency, status,
batch, created_at FROM ledger_advices WHERE card_id = ?`, cardID)
		if err != nil {
			return fmt.Errorf("ledger: read advices: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			r := AdviceRecord{CardID: cardID}
			var (
				kind, status string
				atc, at      int64
			)
			if err := rows.Scan(&kind, &r.Key, &atc, &r.Digest, &r.TerminalID, &r.MerchantID, &r.Amount, &r.Currency,
				&status, &r.Batch, &at); err != nil {
				return fmt.Errorf("ledger: read advices: %w", err)
			}
			r.Kind, r.Status, r.ATC, r.At = AdviceKind(kind), ATCStatus(status), uint32(atc), fromMicros(at)
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].ATC != out[j].ATC {
			return out[i].ATC < out[j].ATC
		}
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		// Records of one ApplyAdvices share a time: the first of an ATC is
		// the one that was not a duplicate.
		if ri, rj := statusRank(out[i].Status), statusRank(out[j].Status); ri != rj {
			return ri < rj
		}
		return out[i].Digest < out[j].Digest
	})
	return out, nil
}

func statusRank(s ATCStatus) int {
	switch s {
	case ATCNew:
		return 0
	case ATCRepeat:
		return 1
	}
	return 2
}
