package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/valuechip/valuechip/host/sqldb"
)

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

// EnsureAccount implements Store.
func (s *SQLStore) EnsureAccount(ctx context.Context, kind AccountKind, ref, currency string) (Account, error) {
	if !kind.Valid() {
		return Account{}, fmt.Errorf("%w: account kind %q", ErrInvalid, kind)
	}
	if ref == "" || len(ref) > 128 {
		return Account{}, fmt.Errorf("%w: account ref %q", ErrInvalid, ref)
	}
	if !validCurrency(currency) {
		return Account{}, fmt.Errorf("%w: currency %q is not an ISO 4217 numeric code", ErrInvalid, currency)
	}
	id := AccountID(kind, ref, currency)
	var a Account
	err := s.inTx(ctx, true, func(t sqldb.Tx) error {
		if _, err := t.Exec(ctx, `INSERT INTO ledger_accounts (id, kind, ref, currency, balance, created_at)
VALUES (?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO NOTHING`, id, string(kind), ref, currency, micros(s.now())); err != nil {
			return fmt.Errorf("ledger: create account %s: %w", id, err)
		}
		var err error
		a, err = s.account(ctx, t, id)
		return err
	})
	return a, err
}

// Account implements Store.
func (s *SQLStore) Account(ctx context.Context, id string) (Account, error) {
	var a Account
	err := s.inTx(ctx, false, func(t sqldb.Tx) error {
		var err error
		a, err = s.account(ctx, t, id)
		return err
	})
	return a, err
}

// Balance implements Store.
func (s *SQLStore) Balance(ctx context.Context, id string) (int64, error) {
	a, err := s.Account(ctx, id)
	return a.Balance, err
}

func (s *SQLStore) account(ctx context.Context, t sqldb.Tx, id string) (Account, error) {
	var (
		a    Account
		kind string
		at   int64
	)
	err := t.QueryRow(ctx, `SELECT id, kind, ref, currency, balance, created_at FROM ledger_accounts WHERE id = ?`, id).
		Scan(&a.ID, &kind, &a.Ref, &a.Currency, &a.Balance, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Account{}, fmt.Errorf("%w: account %s", ErrNotFound, id)
	}
	if err != nil {
		return Account{}, fmt.Errorf("ledger: read account %s: %w", id, err)
	}
	a.Kind = AccountKind(kind)
	a.CreatedAt = fromMicros(at)
	return a, nil
}

// Post implements Store.
func (s *SQLStore) Post(ctx context.Context, p Posting) (Receipt, error) {
	if err := validKey(p.Key); err != nil {
		return Receipt{}, err
	}
	if strings.HasPrefix(p.Key, txnPrefix) || strings.HasPrefix(p.Key, advicePrefix) {
		return Receipt{}, fmt.Errorf("%w: keys starting with %q or %q are reserved for transactions and advices",
			ErrInvalid, txnPrefix, advicePrefix)
	}
	if err := validateLegs(p.Legs); err != nil {
		return Receipt{}, err
	}
	if err := errors.Join(validateFloors(p.Legs, p.Floors), validateFloors(p.Legs, p.Ceilings)); err != nil {
		return Receipt{}, err
	}
	hash := postingHash(p.Memo, p.Legs)
	defer s.lockAccounts(legAccounts(p.Legs)...)()
	var r Receipt
	err := s.inTx(ctx, true, func(t sqldb.Tx) error {
		old, oldHash, found, err := s.postingByKey(ctx, t, p.Key)
		if err != nil {
			return err
		}
		if found {
			if oldHash != hash {
				return fmt.Errorf("%w: posting %q", ErrConflict, p.Key)
			}
			r = old
			r.Replayed = true
			return nil
		}
		r, err = s.insertPosting(ctx, t, p.Key, p.Memo, "", p.Legs, hash, p.Floors, p.Ceilings)
		return err
	})
	if err != nil {
		return Receipt{}, err
	}
	return r, nil
}

// PostingByKey implements Store.
func (s *SQLStore) PostingByKey(ctx context.Context, key string) (Receipt, error) {
	var r Receipt
	err := s.inTx(ctx, false, func(t sqldb.Tx) error {
		var (
			found bool
			err   error
		)
		r, _, found, err = s.postingByKey(ctx, t, key)
		if err == nil && !found {
			err = fmt.Errorf("%w: posting %q", ErrNotFound, key)
		}
		return err
	})
	return r, err
}

func (s *SQLStore) postingByKey(ctx context.Context, t sqldb.Tx, key string) (Receipt, string, bool, error) {
	var (
		r    Receipt
		hash string
		at   int64
	)
	err := t.QueryRow(ctx, `SELECT id, idem_key, request_hash, memo, txn_key, created_at FROM ledger_postings WHERE idem_key = ?`, key).
		Scan(&r.ID, &r.Key, &hash, &r.Memo, &r.TxnKey, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return Receipt{}, "", false, nil
	}
	if err != nil {
		return Receipt{}, "", false, fmt.Errorf("ledger: read posting %q: %w", key, err)
	}
	r.CreatedAt = fromMicros(at)
	r.Legs, err = s.legs(ctx, t, r.ID)
	if err != nil {
		return Receipt{}, "", false, err
	}
	return r, hash, true, nil
}

func (s *SQLStore) legs(ctx context.Context, t sqldb.Tx, postingID string) ([]Leg, error) {
	rows, err := t.Query(ctx, `SELECT account_id, amount, currency FROM ledger_legs WHERE posting_id = ? ORDER BY seq`, postingID)
	if err != nil {
		return nil, fmt.Errorf("ledger: read legs: %w", err)
	}
	defer rows.Close()
	var out []Leg
	for rows.Next() {
		var l Leg
		if err := rows.Scan(&l.Account, &l.Amount, &l.Currency); err != nil {
			return nil, fmt.Errorf("ledger: read legs: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: read legs: %w", err)
	}
	return out, nil
}

// insertPosting writes a validated posting and moves the balances, after
// checking the floors and ceilings against the new balances. The caller has
// checked that key is unused in this transaction.
func (s *SQLStore) insertPosting(ctx context.Context, t sqldb.Tx, key, memo, txnKey string, legs []Leg, hash string,
	floors, ceilings map[string]int64) (Receipt, error) {
	// Compute every new balance first, with overflow checks, so nothing is
	// written for a posting that cannot apply.
	balances := map[string]int64{}
	var order []string
	for i, l := range legs {
		b, seen := balances[l.Account]
		if !seen {
			a, err := s.account(ctx, t, l.Account)
			if err != nil {
				return Receipt{}, fmt.Errorf("leg %d: %w", i, err)
			}
			if a.Currency != l.Currency {
				return Receipt{}, fmt.Errorf("%w: leg %d is in %s, account %s is in %s", ErrCurrency, i, l.Currency, a.ID, a.Currency)
			}
			b = a.Balance
			order = append(order, l.Account)
		}
		nb, err := checkedAdd(b, l.Amount)
		if err != nil {
			return Receipt{}, fmt.Errorf("leg %d on %s: %w", i, l.Account, err)
		}
		balances[l.Account] = nb
	}
	for acc, floor := range floors {
		if b := balances[acc]; b < floor {
			return Receipt{}, fmt.Errorf("%w: %s would be %d, below %d", ErrInsufficientFunds, acc, b, floor)
		}
	}
	for acc, ceiling := range ceilings {
		if b := balances[acc]; b > ceiling {
			return Receipt{}, fmt.Errorf("%w: %s would be %d, above %d", ErrInsufficientFunds, acc, b, ceiling)
		}
	}
	rc, err := s.writePosting(ctx, t, key, memo, txnKey, legs, hash, micros(s.now()))
	if err != nil {
		return Receipt{}, err
	}
	for _, acc := range order {
		if _, err := t.Exec(ctx, `UPDATE ledger_accounts SET balance = ? WHERE id = ?`, balances[acc], acc); err != nil {
			return Receipt{}, fmt.Errorf("ledger: update balance %s: %w", acc, err)
		}
	}
	return rc, nil
}

// writePosting inserts a posting and its legs; the caller moves the
// balances.
func (s *SQLStore) writePosting(ctx context.Context, t sqldb.Tx, key, memo, txnKey string, legs []Leg, hash string, now int64) (Receipt, error) {
	id, err := newID(t.Dialect())
	if err != nil {
		return Receipt{}, err
	}
	if _, err := t.Exec(ctx, `INSERT INTO ledger_postings (id, idem_key, request_hash, memo, txn_key, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		id, key, hash, memo, txnKey, now); err != nil {
		return Receipt{}, fmt.Errorf("ledger: insert posting %q: %w", key, err)
	}
	// One multi-row INSERT for the legs: one round trip on PostgreSQL.
	q := legsInsert(len(legs))
	args := make([]any, 0, 5*len(legs))
	for i, l := range legs {
		args = append(args, id, i, l.Account, l.Amount, l.Currency)
	}
	if _, err := t.Exec(ctx, q, args...); err != nil {
		return Receipt{}, fmt.Errorf("ledger: insert legs: %w", err)
	}
	return Receipt{
		ID: id, Key: key, Memo: memo, TxnKey: txnKey,
		Legs: append([]Leg(nil), legs...), CreatedAt: fromMicros(now),
	}, nil
}

func beginKey(k string) string    { return txnPrefix + k + "/begin" }
func completeKey(k string) string { return txnPrefix + k + "/complete" }
func reverseKey(k string) string  { return txnPrefix + k + "/reverse" }

// Begin implements Store.
func (s *SQLStore) Begin(ctx context.Context, r BeginRequest) (Txn, error) {
	if err := validKey(r.Key); err != nil {
		return Txn{}, err
	}
	switch {
	case r.Kind == "":
		return Txn{}, fmt.Errorf("%w: transaction kind is empty", ErrInvalid)
	case r.CardID == "":
		return Txn{}, fmt.Errorf("%w: card ID is empty", ErrInvalid)
	case r.Amount < 0:
		return Txn{}, fmt.Errorf("%w: negative transaction amount %d", ErrInvalid, r.Amount)
	case !validCurrency(r.Currency):
		return Txn{}, fmt.Errorf("%w: currency %q is not an ISO 4217 numeric code", ErrInvalid, r.Currency)
	}
	if len(r.Legs) > 0 {
		if err := validateLegs(r.Legs); err != nil {
			return Txn{}, err
		}
	}
	if err := validateFloors(r.Legs, r.Floors); err != nil {
		return Txn{}, err
	}
	hash := beginHash(r)
	defer s.lockAccounts(legAccounts(r.Legs)...)()
	var out Txn
	err := s.inTx(ctx, true, func(t sqldb.Tx) error {
		old, oldHash, _, found, err := s.txn(ctx, t, r.Key)
		if err != nil {
			return err
		}
		if found {
			if oldHash != hash {
				return fmt.Errorf("%w: transaction %q", ErrConflict, r.Key)
			}
			out = old
			out.Replayed = true
			return nil
		}
		postingID := ""
		if len(r.Legs) > 0 {
			rc, err := s.insertPosting(ctx, t, beginKey(r.Key), r.Memo, r.Key, r.Legs, postingHash(r.Memo, r.Legs), r.Floors, nil)
			if err != nil {
				return err
			}
			postingID = rc.ID
		}
		now := micros(s.now())
		if _, err := t.Exec(ctx, `INSERT INTO ledger_txns (idem_key, kind, card_id, terminal_id, merchant_id, amount, currency, state,
request_hash, begin_posting, end_posting, end_hash, batch, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', 0, ?, ?)`,
			r.Key, r.Kind, r.CardID, r.TerminalID, r.MerchantID, r.Amount, r.Currency, string(StateInProgress), hash, postingID, now, now); err != nil {
			return fmt.Errorf("ledger: insert transaction %q: %w", r.Key, err)
		}
		out = Txn{
			Key: r.Key, Kind: r.Kind, CardID: r.CardID, TerminalID: r.TerminalID, MerchantID: r.MerchantID, Amount: r.Amount,
			Currency: r.Currency, State: StateInProgress, BeginPosting: postingID,
			CreatedAt: fromMicros(now), UpdatedAt: fromMicros(now),
		}
		return nil
	})
	if err != nil {
		return Txn{}, err
	}
	return out, nil
}

// Complete implements Store.
func (s *SQLStore) Complete(ctx context.Context, r CompleteRequest) (Txn, error) {
	if err := validKey(r.Key); err != nil {
		return Txn{}, err
	}
	if len(r.Legs) > 0 {
		if err := validateLegs(r.Legs); err != nil {
			return Txn{}, err
		}
	}
	if r.ATC != 0 {
		if err := validDigest(r.Digest); err != nil {
			return Txn{}, err
		}
	}
	hash := completeHash(r)
	defer s.lockAccounts(legAccounts(r.Legs)...)()
	var record func(sqldb.Tx, *Txn, int64) error
	if r.ATC != 0 {
		record = func(t sqldb.Tx, x *Txn, now int64) error {
			return s.recordLoad(ctx, t, x, r, now)
		}
	}
	x, err := s.finish(ctx, r.Key, StateCompleted, hash, func(t sqldb.Tx, cur Txn) ([]Leg, string, string) {
		return r.Legs, r.Memo, completeKey(r.Key)
	}, record)
	if err == nil && x.Replayed && r.ATC != 0 {
		err = s.inTx(ctx, false, func(t sqldb.Tx) error {
			var err error
			x.ATC, err = s.atcPicture(ctx, t, x.CardID)
			x.ATC.Status = ATCRepeat
			return err
		})
	}
	if err != nil {
		return Txn{}, err
	}
	return x, nil
}

// recordLoad records the card record of a load completion: its ATC (as
// RecordATC) and its row in ledger_advices (kind load), in the completion's
// database transaction.
func (s *SQLStore) recordLoad(ctx context.Context, t sqldb.Tx, x *Txn, r CompleteRequest, now int64) error {
	var (
		key   string
		found bool
	)
	err := t.QueryRow(ctx, `SELECT idem_key FROM ledger_advices WHERE card_id = ? AND atc = ? AND digest = ?`,
		x.CardID, int64(r.ATC), r.Digest).Scan(&key)
	switch {
	case err == nil:
		found = true
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("ledger: read advice: %w", err)
	}
	if found {
		return fmt.Errorf("%w: card %s ATC %d record %s was already reported (%s)", ErrConflict, x.CardID, r.ATC, r.Digest, key)
	}
	res, err := s.recordATC(ctx, t, ATCAdvice{CardID: x.CardID, ATC: r.ATC, Digest: r.Digest, TerminalID: x.TerminalID}, now)
	if err != nil {
		return err
	}
	if _, err := t.Exec(ctx, `INSERT INTO ledger_advices (card_id, atc, digest, kind, idem_key, request_hash, terminal_id,
merchant_id, amount, currency, posting_key, status, batch, created_at) VALUES (?, ?, ?, ?, ?, '', ?, ?, ?, ?, '', ?, ?, ?)`,
		x.CardID, int64(r.ATC), r.Digest, string(AdviceLoad), x.Key, x.TerminalID, x.MerchantID, x.Amount, x.Currency,
		string(res.Status), x.Batch, now); err != nil {
		return fmt.Errorf("ledger: record load completion: %w", err)
	}
	x.ATC = res
	return nil
}

// Reverse implements Store.
func (s *SQLStore) Reverse(ctx context.Context, r ReverseRequest) (Txn, error) {
	if err := validKey(r.Key); err != nil {
		return Txn{}, err
	}
	hash := reverseHash(r)
	// The begin posting is immutable: read its accounts first to take
	// their locks (a missing transaction is reported inside finish).
	if x, err := s.Txn(ctx, r.Key); err == nil && x.BeginPosting != "" {
		if rc, err := s.PostingByKey(ctx, beginKey(r.Key)); err == nil {
			defer s.lockAccounts(legAccounts(rc.Legs)...)()
		}
	}
	return s.finish(ctx, r.Key, StateReversed, hash, func(t sqldb.Tx, cur Txn) ([]Leg, string, string) {
		return nil, "reversal: " + r.Reason, reverseKey(r.Key)
	}, nil)
}

// finish moves an in-progress transaction to the target state with its
// posting, in one database transaction, and counts it in the terminal's open
// batch. posting returns the legs to post (for a reversal: none, the
// negation of the begin posting is computed here), the memo and the posting
// key; record, if not nil, runs last in the same transaction.
func (s *SQLStore) finish(ctx context.Context, key string, target TxnState, hash string,
	posting func(sqldb.Tx, Txn) ([]Leg, string, string), record func(sqldb.Tx, *Txn, int64) error) (Txn, error) {
	var out Txn
	err := s.inTx(ctx, true, func(t sqldb.Tx) error {
		cur, _, endHash, found, err := s.txn(ctx, t, key)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: transaction %q", ErrNotFound, key)
		}
		switch cur.State {
		case target:
			if endHash != hash {
				return fmt.Errorf("%w: transaction %q is already %s by a different request", ErrConflict, key, target)
			}
			out = cur
			out.Replayed = true
			return nil
		case StateInProgress:
		default:
			return fmt.Errorf("%w: transaction %q is %s, cannot become %s", ErrIllegalTransition, key, cur.State, target)
		}
		legs, memo, pkey := posting(t, cur)
		if target == StateReversed && cur.BeginPosting != "" {
			begin, err := s.legs(ctx, t, cur.BeginPosting)
			if err != nil {
				return err
			}
			legs = negate(begin)
		}
		postingID := ""
		if len(legs) > 0 {
			rc, err := s.insertPosting(ctx, t, pkey, memo, key, legs, postingHash(memo, legs), nil, nil)
			if err != nil {
				return err
			}
			postingID = rc.ID
		}
		var batch int64
		if cur.TerminalID != "" {
			var err error
			if batch, err = openBatch(ctx, t, cur.TerminalID); err != nil {
				return err
			}
		}
		now := micros(s.now())
		res, err := t.Exec(ctx, `UPDATE ledger_txns SET state = ?, end_posting = ?, end_hash = ?, batch = ?, updated_at = ?
WHERE idem_key = ? AND state = ?`, string(target), postingID, hash, batch, now, key, string(StateInProgress))
		if err != nil {
			return fmt.Errorf("ledger: update transaction %q: %w", key, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("ledger: update transaction %q: %w", key, err)
		} else if n != 1 {
			return sqldb.ErrRetry
		}
		out = cur
		out.State = target
		out.EndPosting = postingID
		out.Batch = batch
		out.UpdatedAt = fromMicros(now)
		if record != nil {
			return record(t, &out, now)
		}
		return nil
	})
	if err != nil {
		return Txn{}, err
	}
	return out, nil
}

// Txn implements Store.
func (s *SQLStore) Txn(ctx context.Context, key string) (Txn, error) {
	var out Txn
	err := s.inTx(ctx, false, func(t sqldb.Tx) error {
		var (
			found bool
			err   error
		)
		out, _, _, found, err = s.txn(ctx, t, key)
		if err == nil && !found {
			err = fmt.Errorf("%w: transaction %q", ErrNotFound, key)
		}
		return err
	})
	return out, err
}

func (s *SQLStore) txn(ctx context.Context, t sqldb.Tx, key string) (Txn, string, string, bool, error) {
	var (
		x                Txn
		state, rh, eh    string
		created, updated int64
	)
	err := t.QueryRow(ctx, `SELECT idem_key, kind, card_id, terminal_id, merchant_id, amount, currency, state, request_hash,
begin_posting, end_posting, end_hash, batch, created_at, updated_at FROM ledger_txns WHERE idem_key = ?`, key).
		Scan(&x.Key, &x.Kind, &x.CardID, &x.TerminalID, &x.MerchantID, &x.Amount, &x.Currency, &state, &rh,
			&x.BeginPosting, &x.EndPosting, &eh, &x.Batch, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return Txn{}, "", "", false, nil
	}
	if err != nil {
		return Txn{}, "", "", false, fmt.Errorf("ledger: read transaction %q: %w", key, err)
	}
	x.State = TxnState(state)
	x.CreatedAt = fromMicros(created)
	x.UpdatedAt = fromMicros(updated)
	return x, rh, eh, true, nil
}

// RecordATC implements Store.
func (s *SQLStore) RecordATC(ctx context.Context, a ATCAdvice) (ATCResult, error) {
	switch {
	case a.CardID == "":
		return ATCResult{}, fmt.Errorf("%w: card ID is empty", ErrInvalid)
	case a.ATC == 0:
		return ATCResult{}, fmt.Errorf("%w: ATC 0 is never a value change", ErrInvalid)
	case a.Digest == "":
		return ATCResult{}, fmt.Errorf("%w: empty record digest", ErrInvalid)
	}
	var res ATCResult
	err := s.inTx(ctx, true, func(t sqldb.Tx) error {
		var err error
		res, err = s.recordATC(ctx, t, a, micros(s.now()))
		return err
	})
	if err != nil {
		return ATCResult{}, err
	}
	return res, nil
}

// recordATC records an ATC advice inside a transaction (RecordATC). The
// card's row keeps its last ATC and how many distinct ATCs were recorded, so
// the gap this advice opens and the number of ATCs missing below the last
// are known in O(1), without reading the card's history (Card lists the
// gaps).
func (s *SQLStore) recordATC(ctx context.Context, t sqldb.Tx, a ATCAdvice, now int64) (ATCResult, error) {
	var res ATCResult
	ins, err := t.Exec(ctx, `INSERT INTO ledger_card_atcs (card_id, atc, digest, terminal_id, seen_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (card_id, atc) DO NOTHING`, a.CardID, int64(a.ATC), a.Digest, a.TerminalID, now)
	if err != nil {
		return res, fmt.Errorf("ledger: record ATC: %w", err)
	}
	n, err := ins.RowsAffected()
	if err != nil {
		return res, fmt.Errorf("ledger: record ATC: %w", err)
	}
	var (
		last, seen int64
		exists     = true
	)
	err = t.QueryRow(ctx, `SELECT last_atc, seen FROM ledger_cards WHERE card_id = ?`, a.CardID).Scan(&last, &seen)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		exists = false
	case err != nil:
		return res, fmt.Errorf("ledger: read card: %w", err)
	}
	dup := int64(0)
	if n == 1 {
		res.Status = ATCNew
		seen++
		res.Gaps, last = advanceATC(last, a.ATC)
	} else {
		var digest string
		if err := t.QueryRow(ctx, `SELECT digest FROM ledger_card_atcs WHERE card_id = ? AND atc = ?`,
			a.CardID, int64(a.ATC)).Scan(&digest); err != nil {
			return res, fmt.Errorf("ledger: read ATC: %w", err)
		}
		res.Status = ATCRepeat
		if digest != a.Digest {
			res.Status = ATCDuplicate
			dup = 1
			known, err := duplicateKnown(ctx, t, a.CardID, a.ATC, a.Digest)
			if err != nil {
				return res, err
			}
			if !known {
				id, err := newID(t.Dialect())
				if err != nil {
					return res, err
				}
				if _, err := t.Exec(ctx, `INSERT INTO ledger_atc_duplicates (id, card_id, atc, digest, terminal_id, seen_at) VALUES (?, ?, ?, ?, ?, ?)`,
					id, a.CardID, int64(a.ATC), a.Digest, a.TerminalID, now); err != nil {
					return res, fmt.Errorf("ledger: record ATC duplicate: %w", err)
				}
			}
		}
	}
	if exists {
		if _, err := t.Exec(ctx, `UPDATE ledger_cards SET last_atc = ?, seen = ?, duplicates = duplicates + ?, updated_at = ? WHERE card_id = ?`,
			last, seen, dup, now, a.CardID); err != nil {
			return res, fmt.Errorf("ledger: update card: %w", err)
		}
	} else if _, err := t.Exec(ctx, `INSERT INTO ledger_cards (card_id, last_atc, seen, duplicates, updated_at) VALUES (?, ?, ?, ?, ?)`,
		a.CardID, last, seen, dup, now); err != nil {
		return res, fmt.Errorf("ledger: record card: %w", err)
	}
	res.LastATC = uint32(last)
	res.Missing = missing(last, seen)
	return res, nil
}

// advanceATC is the card's last ATC after a new ATC, and the gap the new
// ATC opens above the previous last one (nil when it is the next one or
// fills an older gap).
func advanceATC(last int64, atc uint32) ([]ATCRange, int64) {
	if int64(atc) <= last {
		return nil, last
	}
	var gap []ATCRange
	if int64(atc) > last+1 {
		gap = []ATCRange{{From: uint32(last + 1), To: atc - 1}}
	}
	return gap, int64(atc)
}

// missing is the number of ATCs in 1..last never recorded, from the card's
// counters (every recorded ATC is in 1..last).
func missing(last, seen int64) uint32 {
	if seen >= last {
		return 0
	}
	return uint32(last - seen)
}

// duplicateKnown reports whether the duplicate record is already listed.
func duplicateKnown(ctx context.Context, t sqldb.Tx, cardID string, atc uint32, digest string) (bool, error) {
	var k int
	if err := t.QueryRow(ctx, `SELECT COUNT(*) FROM ledger_atc_duplicates WHERE card_id = ? AND atc = ? AND digest = ?`,
		cardID, int64(atc), digest).Scan(&k); err != nil {
		return false, fmt.Errorf("ledger: read ATC duplicates: %w", err)
	}
	return k > 0, nil
}

// atcPicture is the card's last ATC and missing count (Status and Gaps
// left empty); a card never seen has neither.
func (s *SQLStore) atcPicture(ctx context.Context, t sqldb.Tx, cardID string) (ATCResult, error) {
	var res ATCResult
	var last, seen int64
	err := t.QueryRow(ctx, `SELECT last_atc, seen FROM ledger_cards WHERE card_id = ?`, cardID).Scan(&last, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("ledger: read card: %w", err)
	}
	res.LastATC = uint32(last)
	res.Missing = missing(last, seen)
	return res, nil
}

func (s *SQLStore) seenATCs(ctx context.Context, t sqldb.Tx, cardID string) ([]uint32, error) {
	rows, err := t.Query(ctx, `SELECT atc FROM ledger_card_atcs WHERE card_id = ? ORDER BY atc`, cardID)
	if err != nil {
		return nil, fmt.Errorf("ledger: read ATCs: %w", err)
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("ledger: read ATCs: %w", err)
		}
		out = append(out, uint32(v))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: read ATCs: %w", err)
	}
	return out, nil
}

// Card implements Store.
func (s *SQLStore) Card(ctx context.Context, cardID string) (CardStatus, error) {
	var cs CardStatus
	err := s.inTx(ctx, false, func(t sqldb.Tx) error {
		cs = CardStatus{CardID: cardID}
		var last int64
		err := t.QueryRow(ctx, `SELECT last_atc FROM ledger_cards WHERE card_id = ?`, cardID).Scan(&last)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: card %s", ErrNotFound, cardID)
		}
		if err != nil {
			return fmt.Errorf("ledger: read card: %w", err)
		}
		cs.LastATC = uint32(last)
		seen, err := s.seenATCs(ctx, t, cardID)
		if err != nil {
			return err
		}
		cs.Seen = len(seen)
		cs.Gaps = gaps(seen, cs.LastATC)
		rows, err := t.Query(ctx, `SELECT atc, digest, terminal_id FROM ledger_atc_duplicates WHERE card_id = ? ORDER BY atc, seen_at, id`, cardID)
		if err != nil {
			return fmt.Errorf("ledger: read ATC duplicates: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			d := ATCAdvice{CardID: cardID}
			var atc int64
			if err := rows.Scan(&atc, &d.Digest, &d.TerminalID); err != nil {
				return fmt.Errorf("ledger: read ATC duplicates: %w", err)
			}
			d.ATC = uint32(atc)
			cs.Duplicates = append(cs.Duplicates, d)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("ledger: read ATC duplicates: %w", err)
		}
		return nil
	})
	if err != nil {
		return CardStatus{}, err
	}
	return cs, nil
}

// Report implements Store.
func (s *SQLStore) Report(ctx context.Context) (Report, error) {
	var rep Report
	err := s.inTx(ctx, false, func(t sqldb.Tx) error {
		rep = Report{Imbalance: map[string]int64{}}
		rows, err := t.Query(ctx, `SELECT kind, currency, COUNT(*), CAST(SUM(balance) AS BIGINT) FROM ledger_accounts
GROUP BY kind, currency ORDER BY kind, currency`)
		if err != nil {
			return fmt.Errorf("ledger: report: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				k    KindTotal
				kind string
			)
			if err := rows.Scan(&kind, &k.Currency, &k.Accounts, &k.Total); err != nil {
				return fmt.Errorf("ledger: report: %w", err)
			}
			k.Kind = AccountKind(kind)
			rep.ByKind = append(rep.ByKind, k)
			sum, err := checkedAdd(rep.Imbalance[k.Currency], k.Total)
			if err != nil {
				return fmt.Errorf("ledger: report: %w", err)
			}
			rep.Imbalance[k.Currency] = sum
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("ledger: report: %w", err)
		}
		mrows, err := t.Query(ctx, `SELECT id, kind, ref, currency, balance, created_at FROM ledger_accounts
WHERE kind = ? ORDER BY ref, currency`, string(KindMerchant))
		if err != nil {
			return fmt.Errorf("ledger: report merchants: %w", err)
		}
		defer mrows.Close()
		for mrows.Next() {
			var (
				a    Account
				kind string
				at   int64
			)
			if err := mrows.Scan(&a.ID, &kind, &a.Ref, &a.Currency, &a.Balance, &at); err != nil {
				return fmt.Errorf("ledger: report merchants: %w", err)
			}
			a.Kind = AccountKind(kind)
			a.CreatedAt = fromMicros(at)
			rep.Merchants = append(rep.Merchants, a)
		}
		if err := mrows.Err(); err != nil {
			return fmt.Errorf("ledger: report merchants: %w", err)
		}
		if rep.InProgress, err = inProgress(ctx, t); err != nil {
			return err
		}
		// Byte order, whatever the database collation.
		sort.SliceStable(rep.Merchants, func(i, j int) bool {
			if rep.Merchants[i].Ref != rep.Merchants[j].Ref {
				return rep.Merchants[i].Ref < rep.Merchants[j].Ref
			}
			return rep.Merchants[i].Currency < rep.Merchants[j].Currency
		})
		sort.SliceStable(rep.ByKind, func(i, j int) bool {
			if rep.ByKind[i].Kind != rep.ByKind[j].Kind {
				return rep.ByKind[i].Kind < rep.ByKind[j].Kind
			}
			return rep.ByKind[i].Currency < rep.ByKind[j].Currency
		})
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	return rep, nil
}

// inProgress sums the transactions still in progress per kind and currency,
// with the oldest of each (Report).
func inProgress(ctx context.Context, t sqldb.Tx) ([]InProgressTotal, error) {
	rows, err := t.Query(ctx, `SELECT kind, currency, COUNT(*), CAST(SUM(amount) AS BIGINT), MIN(created_at) FROM ledger_txns
WHERE state = ? GROUP BY kind, currency`, string(StateInProgress))
	if err != nil {
		return nil, fmt.Errorf("ledger: report in progress: %w", err)
	}
	var out []InProgressTotal
	var oldest []int64
	for rows.Next() {
		var (
			p  InProgressTotal
			at int64
		)
		if err := rows.Scan(&p.Kind, &p.Currency, &p.Count, &p.Amount, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("ledger: report in progress: %w", err)
		}
		p.Oldest = fromMicros(at)
		out = append(out, p)
		oldest = append(oldest, at)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("ledger: report in progress: %w", err)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ledger: report in progress: %w", err)
	}
	for i := range out {
		// Ties on the creation time resolve to the smallest key, in byte
		// order whatever the collation.
		keys, err := t.Query(ctx, `SELECT idem_key FROM ledger_txns WHERE state = ? AND kind = ? AND currency = ? AND created_at = ?`,
			string(StateInProgress), out[i].Kind, out[i].Currency, oldest[i])
		if err != nil {
			return nil, fmt.Errorf("ledger: report in progress: %w", err)
		}
		for keys.Next() {
			var k string
			if err := keys.Scan(&k); err != nil {
				keys.Close()
				return nil, fmt.Errorf("ledger: report in progress: %w", err)
			}
			if out[i].OldestKey == "" || k < out[i].OldestKey {
				out[i].OldestKey = k
			}
		}
		if err := keys.Close(); err != nil {
			return nil, fmt.Errorf("ledger: report in progress: %w", err)
		}
		if err := keys.Err(); err != nil {
			return nil, fmt.Errorf("ledger: report in progress: %w", err)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Currency < out[j].Currency
	})
	return out, nil
}

// legsInserts caches the INSERT statements for postings of 2..8 legs.
var legsInserts = func() []string {
	out := make([]string, 9)
	for n := 2; n < len(out); n++ {
		out[n] = buildLegsInsert(n)
	}
	return out
}()

func legsInsert(n int) string {
	if n >= 2 && n < len(legsInserts) {
		return legsInserts[n]
	}
	return buildLegsInsert(n)
}

func buildLegsInsert(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO ledger_legs (posting_id, seq, account_id, amount, currency) VALUES `)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?)")
	}
	return b.String()
}
