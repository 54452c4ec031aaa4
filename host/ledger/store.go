package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
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
	err := s.inTx(ctx, true, func(t tx) error {
		if _, err := t.exec(ctx, `INSERT INTO ledger_accounts (id, kind, ref, currency, balance, created_at)
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
	err := s.inTx(ctx, false, func(t tx) error {
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

func (s *SQLStore) account(ctx context.Context, t tx, id string) (Account, error) {
	var (
		a    Account
		kind string
		at   int64
	)
	err := t.row(ctx, `SELECT id, kind, ref, currency, balance, created_at FROM ledger_accounts WHERE id = ?`, id).
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
	if strings.HasPrefix(p.Key, txnPrefix) {
		return Receipt{}, fmt.Errorf("%w: keys starting with %q are reserved for transactions", ErrInvalid, txnPrefix)
	}
	if err := validateLegs(p.Legs); err != nil {
		return Receipt{}, err
	}
	hash := postingHash(p.Memo, p.Legs)
	defer s.lockAccounts(legAccounts(p.Legs)...)()
	var r Receipt
	err := s.inTx(ctx, true, func(t tx) error {
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
		r, err = s.insertPosting(ctx, t, p.Key, p.Memo, "", p.Legs, hash)
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
	err := s.inTx(ctx, false, func(t tx) error {
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

func (s *SQLStore) postingByKey(ctx context.Context, t tx, key string) (Receipt, string, bool, error) {
	var (
		r    Receipt
		hash string
		at   int64
	)
	err := t.row(ctx, `SELECT id, idem_key, request_hash, memo, txn_key, created_at FROM ledger_postings WHERE idem_key = ?`, key).
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

func (s *SQLStore) legs(ctx context.Context, t tx, postingID string) ([]Leg, error) {
	rows, err := t.query(ctx, `SELECT account_id, amount, currency FROM ledger_legs WHERE posting_id = ? ORDER BY seq`, postingID)
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

// insertPosting writes a validated posting and moves the balances. The
// caller has checked that key is unused in this transaction.
func (s *SQLStore) insertPosting(ctx context.Context, t tx, key, memo, txnKey string, legs []Leg, hash string) (Receipt, error) {
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
	id, err := newID()
	if err != nil {
		return Receipt{}, err
	}
	now := s.now()
	if _, err := t.exec(ctx, `INSERT INTO ledger_postings (id, idem_key, request_hash, memo, txn_key, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		id, key, hash, memo, txnKey, micros(now)); err != nil {
		return Receipt{}, fmt.Errorf("ledger: insert posting %q: %w", key, err)
	}
	for i, l := range legs {
		if _, err := t.exec(ctx, `INSERT INTO ledger_legs (posting_id, seq, account_id, amount, currency) VALUES (?, ?, ?, ?, ?)`,
			id, i, l.Account, l.Amount, l.Currency); err != nil {
			return Receipt{}, fmt.Errorf("ledger: insert leg %d: %w", i, err)
		}
	}
	for _, acc := range order {
		if _, err := t.exec(ctx, `UPDATE ledger_accounts SET balance = ? WHERE id = ?`, balances[acc], acc); err != nil {
			return Receipt{}, fmt.Errorf("ledger: update balance %s: %w", acc, err)
		}
	}
	return Receipt{
		ID: id, Key: key, Memo: memo, TxnKey: txnKey,
		Legs: append([]Leg(nil), legs...), CreatedAt: fromMicros(micros(now)),
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
	hash := beginHash(r)
	defer s.lockAccounts(legAccounts(r.Legs)...)()
	var out Txn
	err := s.inTx(ctx, true, func(t tx) error {
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
			rc, err := s.insertPosting(ctx, t, beginKey(r.Key), r.Memo, r.Key, r.Legs, postingHash(r.Memo, r.Legs))
			if err != nil {
				return err
			}
			postingID = rc.ID
		}
		now := micros(s.now())
		if _, err := t.exec(ctx, `INSERT INTO ledger_txns (idem_key, kind, card_id, terminal_id, amount, currency, state,
request_hash, begin_posting, end_posting, end_hash, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', '', ?, ?)`,
			r.Key, r.Kind, r.CardID, r.TerminalID, r.Amount, r.Currency, string(StateInProgress), hash, postingID, now, now); err != nil {
			return fmt.Errorf("ledger: insert transaction %q: %w", r.Key, err)
		}
		out = Txn{
			Key: r.Key, Kind: r.Kind, CardID: r.CardID, TerminalID: r.TerminalID, Amount: r.Amount,
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
	hash := completeHash(r)
	defer s.lockAccounts(legAccounts(r.Legs)...)()
	return s.finish(ctx, r.Key, StateCompleted, hash, func(t tx, cur Txn) ([]Leg, string, string) {
		return r.Legs, r.Memo, completeKey(r.Key)
	})
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
	var beginLegs []Leg
	return s.finish(ctx, r.Key, StateReversed, hash, func(t tx, cur Txn) ([]Leg, string, string) {
		return negate(beginLegs), "reversal: " + r.Reason, reverseKey(r.Key)
	}, func(t tx, cur Txn) error {
		beginLegs = nil
		if cur.BeginPosting == "" {
			return nil
		}
		var err error
		beginLegs, err = s.legs(ctx, t, cur.BeginPosting)
		return err
	})
}

// finish moves an in-progress transaction to the target state with its
// posting, in one database transaction. prepare hooks run first.
func (s *SQLStore) finish(ctx context.Context, key string, target TxnState, hash string,
	posting func(tx, Txn) ([]Leg, string, string), prepare ...func(tx, Txn) error) (Txn, error) {
	var out Txn
	err := s.inTx(ctx, true, func(t tx) error {
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
		for _, p := range prepare {
			if err := p(t, cur); err != nil {
				return err
			}
		}
		legs, memo, pkey := posting(t, cur)
		postingID := ""
		if len(legs) > 0 {
			rc, err := s.insertPosting(ctx, t, pkey, memo, key, legs, postingHash(memo, legs))
			if err != nil {
				return err
			}
			postingID = rc.ID
		}
		now := micros(s.now())
		res, err := t.exec(ctx, `UPDATE ledger_txns SET state = ?, end_posting = ?, end_hash = ?, updated_at = ?
WHERE idem_key = ? AND state = ?`, string(target), postingID, hash, now, key, string(StateInProgress))
		if err != nil {
			return fmt.Errorf("ledger: update transaction %q: %w", key, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("ledger: update transaction %q: %w", key, err)
		} else if n != 1 {
			return errRetry
		}
		out = cur
		out.State = target
		out.EndPosting = postingID
		out.UpdatedAt = fromMicros(now)
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
	err := s.inTx(ctx, false, func(t tx) error {
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

func (s *SQLStore) txn(ctx context.Context, t tx, key string) (Txn, string, string, bool, error) {
	var (
		x                Txn
		state, rh, eh    string
		created, updated int64
	)
	err := t.row(ctx, `SELECT idem_key, kind, card_id, terminal_id, amount, currency, state, request_hash,
begin_posting, end_posting, end_hash, created_at, updated_at FROM ledger_txns WHERE idem_key = ?`, key).
		Scan(&x.Key, &x.Kind, &x.CardID, &x.TerminalID, &x.Amount, &x.Currency, &state, &rh,
			&x.BeginPosting, &x.EndPosting, &eh, &created, &updated)
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
	err := s.inTx(ctx, true, func(t tx) error {
		now := micros(s.now())
		var digest string
		err := t.row(ctx, `SELECT digest FROM ledger_card_atcs WHERE card_id = ? AND atc = ?`, a.CardID, int64(a.ATC)).Scan(&digest)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			res.Status = ATCNew
			if _, err := t.exec(ctx, `INSERT INTO ledger_card_atcs (card_id, atc, digest, terminal_id, seen_at) VALUES (?, ?, ?, ?, ?)`,
				a.CardID, int64(a.ATC), a.Digest, a.TerminalID, now); err != nil {
				return fmt.Errorf("ledger: record ATC: %w", err)
			}
		case err != nil:
			return fmt.Errorf("ledger: read ATC: %w", err)
		case digest == a.Digest:
			res.Status = ATCRepeat
		default:
			res.Status = ATCDuplicate
			var n int
			if err := t.row(ctx, `SELECT COUNT(*) FROM ledger_atc_duplicates WHERE card_id = ? AND atc = ? AND digest = ?`,
				a.CardID, int64(a.ATC), a.Digest).Scan(&n); err != nil {
				return fmt.Errorf("ledger: read ATC duplicates: %w", err)
			}
			if n == 0 {
				id, err := newID()
				if err != nil {
					return err
				}
				if _, err := t.exec(ctx, `INSERT INTO ledger_atc_duplicates (id, card_id, atc, digest, terminal_id, seen_at) VALUES (?, ?, ?, ?, ?, ?)`,
					id, a.CardID, int64(a.ATC), a.Digest, a.TerminalID, now); err != nil {
					return fmt.Errorf("ledger: record ATC duplicate: %w", err)
				}
			}
		}
		var last int64
		err = t.row(ctx, `SELECT last_atc FROM ledger_cards WHERE card_id = ?`, a.CardID).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			last = int64(a.ATC)
			if _, err := t.exec(ctx, `INSERT INTO ledger_cards (card_id, last_atc, duplicates, updated_at) VALUES (?, ?, 0, ?)`,
				a.CardID, last, now); err != nil {
				return fmt.Errorf("ledger: record card: %w", err)
			}
		case err != nil:
			return fmt.Errorf("ledger: read card: %w", err)
		case int64(a.ATC) > last:
			last = int64(a.ATC)
		}
		dup := int64(0)
		if res.Status == ATCDuplicate {
			dup = 1
		}
		if _, err := t.exec(ctx, `UPDATE ledger_cards SET last_atc = ?, duplicates = duplicates + ?, updated_at = ? WHERE card_id = ?`,
			last, dup, now, a.CardID); err != nil {
			return fmt.Errorf("ledger: update card: %w", err)
		}
		res.LastATC = uint32(last)
		seen, err := s.seenATCs(ctx, t, a.CardID)
		if err != nil {
			return err
		}
		res.Gaps = gaps(seen, res.LastATC)
		return nil
	})
	if err != nil {
		return ATCResult{}, err
	}
	return res, nil
}

func (s *SQLStore) seenATCs(ctx context.Context, t tx, cardID string) ([]uint32, error) {
	rows, err := t.query(ctx, `SELECT atc FROM ledger_card_atcs WHERE card_id = ? ORDER BY atc`, cardID)
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
	err := s.inTx(ctx, false, func(t tx) error {
		cs = CardStatus{CardID: cardID}
		var last int64
		err := t.row(ctx, `SELECT last_atc FROM ledger_cards WHERE card_id = ?`, cardID).Scan(&last)
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
		rows, err := t.query(ctx, `SELECT atc, digest, terminal_id FROM ledger_atc_duplicates WHERE card_id = ? ORDER BY atc, seen_at, id`, cardID)
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
	err := s.inTx(ctx, false, func(t tx) error {
		rep = Report{Imbalance: map[string]int64{}}
		rows, err := t.query(ctx, `SELECT kind, currency, COUNT(*), CAST(SUM(balance) AS BIGINT) FROM ledger_accounts
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
		mrows, err := t.query(ctx, `SELECT id, kind, ref, currency, balance, created_at FROM ledger_accounts
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
