package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

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
// database transaction — one commit, one fsync, for the whole slice. The
// results are in the order of advices, as if the advices had been applied
// one after the other.
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
// The work is set-based (docs/ledger.md §11): what the batch needs is read
// with a few multi-row SELECTs, every advice is decided in memory in order
// (so an advice that fails is refused before anything is written, and does
// not spoil the others), then the batch is written with multi-row INSERTs and
// one UPDATE per chunk of touched accounts and cards. Should a write fail
// unexpectedly (not a serialization failure, which retries the whole
// transaction), the batch is applied again one advice per savepoint
// (applyOneByOne), so that only the advice at fault fails.
//
// Advices failing validation are answered without touching the database. An
// error of the transaction itself (closed store, context, database down) is
// set on every advice: none of them was posted.
func (s *SQLStore) ApplyAdvices(ctx context.Context, advices []DebitAdvice) []AdviceResult {
	return s.applyAdvices(ctx, advices, true)
}

// applyAdvices is ApplyAdvices; setBased false goes straight to the
// per-advice path (tests compare the two).
func (s *SQLStore) applyAdvices(ctx context.Context, advices []DebitAdvice, setBased bool) []AdviceResult {
	out := make([]AdviceResult, len(advices))
	var (
		items    []adviceItem
		accounts []string
	)
	for i, a := range advices {
		if err := validateAdvice(a); err != nil {
			out[i].Err = err
			continue
		}
		items = append(items, adviceItem{i: i, a: a, hash: adviceHash(a)})
		accounts = append(accounts, legAccounts(debitLegs(a))...)
	}
	if len(items) == 0 {
		return out
	}
	defer s.lockAccounts(accounts...)()
	attempt := make([]AdviceResult, len(advices))
	var (
		setErr error
		err    = errFallback
	)
	if setBased {
		err = s.inTx(ctx, true, func(t sqldb.Tx) error {
			err := s.applySet(ctx, t, items, attempt)
			if err != nil && !sqldb.Retryable(err) && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
				setErr = err
				return errFallback
			}
			return err
		})
	}
	if errors.Is(err, errFallback) {
		err = s.inTx(ctx, true, func(t sqldb.Tx) error {
			return s.applyOneByOne(ctx, t, advices, items, attempt)
		})
		if err != nil {
			err = fmt.Errorf("%w (set-based attempt: %w)", err, setErr)
		}
	}
	for _, it := range items {
		if err != nil {
			out[it.i] = AdviceResult{Err: err}
		} else {
			out[it.i] = attempt[it.i]
		}
	}
	return out
}

// errFallback ends a set-based attempt that failed for a reason other than
// a serialization failure: the batch is applied advice by advice instead.
var errFallback = errors.New("ledger: set-based advice batch failed")

type adviceItem struct {
	i    int
	a    DebitAdvice
	hash string
}

// applyOneByOne applies the advices one savepoint each: the fallback of
// applySet, slower (a dozen statements per advice) but able to isolate an
// advice whose write fails.
func (s *SQLStore) applyOneByOne(ctx context.Context, t sqldb.Tx, advices []DebitAdvice, items []adviceItem, attempt []AdviceResult) error {
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

// The set-based path of ApplyAdvices (docs/ledger.md §11).

type recordID struct {
	card   string
	atc    uint32
	digest string
}

type cardATC struct {
	card string
	atc  uint32
}

// knownRecord is a card record in ledger_advices, or posted earlier in the
// batch (rc set).
type knownRecord struct {
	kind, hash string
	rc         *Receipt
}

type keyTriple struct {
	key, card string
	atc       uint32
}

type keyUse struct {
	card string
	atc  uint32
	kind string
}

// cardState is a card's ATC counters (ledger_cards) as the batch leaves them.
type cardState struct {
	last, seen, dups int64
	exists, touched  bool
}

// accountState is an account's balance as the batch leaves it.
type accountState struct {
	kind            AccountKind
	ref, currency   string
	balance         int64
	exists, touched bool
}

// adviceSet is what applySet knows of the batch's records, cards and
// accounts, read from the database and updated advice by advice in memory.
type adviceSet struct {
	records map[recordID]*knownRecord
	keys    map[string][]keyUse // uses in this batch
	// keyConflicts: (key, card, ATC) → "card/ATC" of a debit recorded
	// before the batch under that key for another card or ATC.
	keyConflicts map[keyTriple]string
	atcs         map[cardATC]string // digest of the first record of each ATC
	dupKnown     map[recordID]bool  // duplicates listed in ledger_atc_duplicates
	cards        map[string]*cardState
	accounts     map[string]*accountState
	batches      map[string]int64

	// Rows to write, flat, in column order.
	postings, legs, atcRows, dupRows, adviceRows []any
	// replays of records posted before this batch: their receipts are read
	// after the decisions.
	replays []replay
}

type replay struct {
	i    int
	pkey string
}

// applySet applies the advices of items set-based in transaction t, writing
// each advice's result into res. An error means that nothing can be trusted
// of the attempt (the transaction is rolled back).
func (s *SQLStore) applySet(ctx context.Context, t sqldb.Tx, items []adviceItem, res []AdviceResult) error {
	now := micros(s.now())
	st := &adviceSet{records: map[recordID]*knownRecord{}, keys: map[string][]keyUse{}, keyConflicts: map[keyTriple]string{},
		atcs:     map[cardATC]string{},
		dupKnown: map[recordID]bool{}, cards: map[string]*cardState{}, accounts: map[string]*accountState{},
		batches: map[string]int64{}}
	if err := st.read(ctx, t, items); err != nil {
		return err
	}
	for _, it := range items {
		r, err := st.decide(ctx, t, it, now)
		if err != nil {
			if isAdviceRefusal(err) {
				res[it.i] = AdviceResult{Err: err}
				continue
			}
			return err
		}
		res[it.i] = r
	}
	if err := st.write(ctx, t, now); err != nil {
		return err
	}
	for _, rp := range st.replays {
		rc, _, ok, err := s.postingByKey(ctx, t, rp.pkey)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("ledger: posting %s of a recorded advice is missing", rp.pkey)
		}
		rc.Replayed = true
		res[rp.i].Receipt = rc
	}
	return nil
}

// isAdviceRefusal tells the errors that refuse one advice (the others go
// on) from those of the transaction.
func isAdviceRefusal(err error) bool {
	return errors.Is(err, ErrConflict) || errors.Is(err, ErrOverflow) || errors.Is(err, ErrCurrency)
}

// read loads what the batch needs, a few multi-row SELECTs per chunk of
// advices: the records and keys already posted, the ATCs already recorded,
// the cards' counters, the accounts and the terminals' open batches.
func (st *adviceSet) read(ctx context.Context, t sqldb.Tx, items []adviceItem) error {
	var (
		recArgs, keyArgs, atcArgs, cardArgs, accArgs, termArgs []any
		seenRec                                                = map[recordID]bool{}
		seenCard, seenAcc, seenTerm                            = map[string]bool{}, map[string]bool{}, map[string]bool{}
		seenKey                                                = map[keyTriple]bool{}
		seenATC                                                = map[cardATC]bool{}
	)
	for _, it := range items {
		a := it.a
		if r := (recordID{a.CardID, a.ATC, a.Digest}); !seenRec[r] {
			seenRec[r] = true
			recArgs = append(recArgs, a.CardID, int64(a.ATC), a.Digest)
		}
		if k := (keyTriple{a.Key, a.CardID, a.ATC}); !seenKey[k] {
			seenKey[k] = true
			keyArgs = append(keyArgs, a.Key, a.CardID, int64(a.ATC))
		}
		if c := (cardATC{a.CardID, a.ATC}); !seenATC[c] {
			seenATC[c] = true
			atcArgs = append(atcArgs, a.CardID, int64(a.ATC))
		}
		if !seenCard[a.CardID] {
			seenCard[a.CardID] = true
			cardArgs = append(cardArgs, a.CardID)
		}
		for _, l := range debitLegs(a) {
			if !seenAcc[l.Account] {
				seenAcc[l.Account] = true
				accArgs = append(accArgs, l.Account)
			}
		}
		if !seenTerm[a.TerminalID] {
			seenTerm[a.TerminalID] = true
			termArgs = append(termArgs, a.TerminalID)
		}
	}
	if err := queryChunks(ctx, t, &qAdviceByRecord, recArgs, func(rows *sql.Rows) error {
		var (
			card, digest string
			atc          int64
			found        sql.NullString // kind ":" request hash
		)
		if err := rows.Scan(&card, &atc, &digest, &found); err != nil {
			return err
		}
		if found.Valid {
			kind, hash, _ := strings.Cut(found.String, ":")
			st.records[recordID{card, uint32(atc), digest}] = &knownRecord{kind: kind, hash: hash}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("ledger: read advices: %w", err)
	}
	if err := queryChunks(ctx, t, &qAdviceByKey, keyArgs, func(rows *sql.Rows) error {
		var (
			key, card string
			atc       int64
			other     sql.NullString
		)
		if err := rows.Scan(&key, &card, &atc, &other); err != nil {
			return err
		}
		if other.Valid {
			st.keyConflicts[keyTriple{key, card, uint32(atc)}] = other.String
		}
		return nil
	}); err != nil {
		return fmt.Errorf("ledger: read advices: %w", err)
	}
	if err := queryChunks(ctx, t, &qCardATCs, atcArgs, func(rows *sql.Rows) error {
		var (
			card   string
			atc    int64
			digest sql.NullString
		)
		if err := rows.Scan(&card, &atc, &digest); err != nil {
			return err
		}
		if digest.Valid {
			st.atcs[cardATC{card, uint32(atc)}] = digest.String
		}
		return nil
	}); err != nil {
		return fmt.Errorf("ledger: read ATCs: %w", err)
	}
	if err := queryChunks(ctx, t, &qCards, cardArgs, func(rows *sql.Rows) error {
		var (
			card string
			c    = &cardState{exists: true}
		)
		if err := rows.Scan(&card, &c.last, &c.seen, &c.dups); err != nil {
			return err
		}
		st.cards[card] = c
		return nil
	}); err != nil {
		return fmt.Errorf("ledger: read cards: %w", err)
	}
	if err := queryChunks(ctx, t, &qAccounts, accArgs, func(rows *sql.Rows) error {
		var (
			id string
			a  = &accountState{exists: true}
		)
		if err := rows.Scan(&id, &a.currency, &a.balance); err != nil {
			return err
		}
		st.accounts[id] = a
		return nil
	}); err != nil {
		return fmt.Errorf("ledger: read accounts: %w", err)
	}
	if err := queryChunks(ctx, t, &qTerminals, termArgs, func(rows *sql.Rows) error {
		var (
			id string
			n  int64
		)
		if err := rows.Scan(&id, &n); err != nil {
			return err
		}
		st.batches[id] = n
		return nil
	}); err != nil {
		return fmt.Errorf("ledger: read terminal batches: %w", err)
	}
	return nil
}

// decide applies one advice to the in-memory state, as applyAdvice would to
// the database, and queues its rows. A refused advice (ErrConflict,
// ErrOverflow, ErrCurrency) changes nothing.
func (st *adviceSet) decide(ctx context.Context, t sqldb.Tx, it adviceItem, now int64) (AdviceResult, error) {
	a := it.a
	rid := recordID{a.CardID, a.ATC, a.Digest}
	known, found := st.records[rid]
	if found && (known.kind != string(AdviceDebit) || known.hash != it.hash) {
		return AdviceResult{}, fmt.Errorf("%w: card %s ATC %d record %s was posted with other details", ErrConflict, a.CardID, a.ATC, a.Digest)
	}
	if other, ok := st.keyConflicts[keyTriple{a.Key, a.CardID, a.ATC}]; ok {
		card, atc, _ := strings.Cut(other, "/")
		return AdviceResult{}, fmt.Errorf("%w: advice key %q was used for card %s ATC %s", ErrConflict, a.Key, card, atc)
	}
	for _, u := range st.keys[a.Key] {
		// A load completion whose transaction key equals this key does
		// not count; a second digest for the same card and ATC may share
		// the key (a duplicate).
		if u.kind == string(AdviceDebit) && (u.card != a.CardID || u.atc != a.ATC) {
			return AdviceResult{}, fmt.Errorf("%w: advice key %q was used for card %s ATC %d", ErrConflict, a.Key, u.card, u.atc)
		}
	}
	c := st.cards[a.CardID]
	if found {
		r := AdviceResult{ATC: ATCResult{Status: ATCRepeat}}
		if c != nil {
			r.ATC.LastATC, r.ATC.Missing = uint32(c.last), missing(c.last, c.seen)
		}
		if known.rc != nil {
			r.Receipt = *known.rc
			r.Receipt.Legs = append([]Leg(nil), known.rc.Legs...)
			r.Receipt.Replayed = true
		} else {
			st.replays = append(st.replays, replay{i: it.i, pkey: adviceKey(a)})
		}
		return r, nil
	}

	// Every check that can refuse the advice comes first.
	legs := debitLegs(a)
	refs := [2]struct {
		kind AccountKind
		ref  string
	}{{KindPurse, a.CardID}, {KindMerchant, a.MerchantID}}
	var newBal [2]int64
	for i, l := range legs {
		var bal int64
		if acc := st.accounts[l.Account]; acc != nil {
			if acc.currency != l.Currency {
				return AdviceResult{}, fmt.Errorf("%w: account %s is in %s", ErrCurrency, l.Account, acc.currency)
			}
			bal = acc.balance
		}
		nb, err := checkedAdd(bal, l.Amount)
		if err != nil {
			return AdviceResult{}, fmt.Errorf("leg %d on %s: %w", i, l.Account, err)
		}
		newBal[i] = nb
	}
	var atc ATCResult
	ca := cardATC{a.CardID, a.ATC}
	digest, recorded := st.atcs[ca]
	var addDup bool
	if recorded && digest != a.Digest {
		listed, ok := st.dupKnown[rid]
		if !ok {
			var err error
			if listed, err = duplicateKnown(ctx, t, a.CardID, a.ATC, a.Digest); err != nil {
				return AdviceResult{}, err
			}
		}
		addDup = !listed
	}
	id, err := newID(t.Dialect())
	if err != nil {
		return AdviceResult{}, err
	}

	// Decided: update the state and queue the rows.
	if c == nil {
		c = &cardState{}
		st.cards[a.CardID] = c
	}
	c.touched = true
	switch {
	case !recorded:
		atc.Status = ATCNew
		c.seen++
		atc.Gaps, c.last = advanceATC(c.last, a.ATC)
		st.atcs[ca] = a.Digest
		st.atcRows = append(st.atcRows, a.CardID, int64(a.ATC), a.Digest, a.TerminalID, now)
	case digest == a.Digest:
		atc.Status = ATCRepeat
	default:
		atc.Status = ATCDuplicate
		c.dups++
		st.dupKnown[rid] = true
		if addDup {
			did, err := newID(t.Dialect())
			if err != nil {
				return AdviceResult{}, err
			}
			st.dupRows = append(st.dupRows, did, a.CardID, int64(a.ATC), a.Digest, a.TerminalID, now)
		}
	}
	atc.LastATC, atc.Missing = uint32(c.last), missing(c.last, c.seen)
	for i, l := range legs {
		acc := st.accounts[l.Account]
		if acc == nil {
			acc = &accountState{currency: l.Currency}
			st.accounts[l.Account] = acc
		}
		acc.kind, acc.ref = refs[i].kind, refs[i].ref
		acc.balance, acc.touched = newBal[i], true
	}
	pkey := adviceKey(a)
	st.postings = append(st.postings, id, pkey, postingHash(a.Memo, legs), a.Memo, a.Key, now)
	for i, l := range legs {
		st.legs = append(st.legs, id, i, l.Account, l.Amount, l.Currency)
	}
	batch, ok := st.batches[a.TerminalID]
	if !ok {
		batch = 1 // a terminal that never closed a batch (openBatch)
	}
	st.adviceRows = append(st.adviceRows, a.CardID, int64(a.ATC), a.Digest, string(AdviceDebit), a.Key, it.hash, a.TerminalID,
		a.MerchantID, a.Amount, a.Currency, pkey, string(atc.Status), batch, now)
	rc := Receipt{ID: id, Key: pkey, Memo: a.Memo, TxnKey: a.Key, Legs: legs, CreatedAt: fromMicros(now)}
	st.records[rid] = &knownRecord{kind: string(AdviceDebit), hash: it.hash, rc: &rc}
	st.keys[a.Key] = append(st.keys[a.Key], keyUse{card: a.CardID, atc: a.ATC, kind: string(AdviceDebit)})
	out := rc
	out.Legs = append([]Leg(nil), legs...)
	return AdviceResult{Receipt: out, ATC: atc}, nil
}

// write stores what decide queued: accounts first (the legs reference
// them), then postings, legs, ATCs, duplicates, cards, balances and the
// advice records. Existing rows are updated in key order (a fixed lock
// order on PostgreSQL).
func (st *adviceSet) write(ctx context.Context, t sqldb.Tx, now int64) error {
	var newAccounts, balances []any
	for _, id := range sortedKeys(st.accounts) {
		a := st.accounts[id]
		switch {
		case !a.touched:
		case a.exists:
			balances = append(balances, id, a.balance)
		default:
			newAccounts = append(newAccounts, id, string(a.kind), a.ref, a.currency, a.balance, now)
		}
	}
	var newCards, cards []any
	for _, id := range sortedKeys(st.cards) {
		c := st.cards[id]
		switch {
		case !c.touched:
		case c.exists:
			cards = append(cards, id, c.last, c.seen, c.dups)
		default:
			newCards = append(newCards, id, c.last, c.seen, c.dups, now)
		}
	}
	for _, w := range []struct {
		what string
		q    *chunkStmt
		args []any
	}{
		{"create accounts", &xAccounts, newAccounts},
		{"update balances", &uBalances, balances},
		{"insert postings", &xPostings, st.postings},
		{"insert legs", &xLegs, st.legs},
		{"record ATCs", &xCardATCs, st.atcRows},
		{"record ATC duplicates", &xDuplicates, st.dupRows},
		{"record cards", &xCards, newCards},
		{"update cards", &uCards, cards},
		{"record advices", &xAdvices, st.adviceRows},
	} {
		if err := execChunks(ctx, t, w.q, w.args, now); err != nil {
			return fmt.Errorf("ledger: %s: %w", w.what, err)
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// chunkStmt is a statement over a variable number of rows: head, then the
// row term k times joined by sep, then tail — or, for a CASE update (cols
// set), UPDATE table SET col = CASE key WHEN ? THEN ? … END, … [, timeCol =
// ?] WHERE key IN (…). Row counts are powers of two up to max (queries are
// padded by repeating their last row, writes are split), so that a handful
// of statement texts serve every batch and stay prepared (sqldb caches
// statements by text).
type chunkStmt struct {
	head, term, sep, tail string
	// CASE update: the table, its key column, the columns set (a row is
	// the key then one value per column) and the time column ("": none).
	table, key, timeCol string
	cols                []string

	per int // arguments per row
	max int // rows per statement, a power of two

	mu   sync.Mutex
	text map[int]string
}

func (c *chunkStmt) sql(k int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if q, ok := c.text[k]; ok {
		return q
	}
	var b strings.Builder
	if len(c.cols) == 0 {
		b.WriteString(c.head)
		for i := 0; i < k; i++ {
			if i > 0 {
				b.WriteString(c.sep)
			}
			b.WriteString(c.term)
		}
		b.WriteString(c.tail)
	} else {
		// Standard SQL on every engine of docs/ledger.md §10 (UPDATE …
		// FROM is not); the CASTs type the parameters on PostgreSQL.
		b.WriteString("UPDATE " + c.table + " SET ")
		for j, col := range c.cols {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString(col + " = CASE " + c.key)
			for i := 0; i < k; i++ {
				b.WriteString(" WHEN ? THEN CAST(? AS BIGINT)")
			}
			b.WriteString(" END")
		}
		if c.timeCol != "" {
			b.WriteString(", " + c.timeCol + " = ?")
		}
		b.WriteString(" WHERE " + c.key + " IN (")
		for i := 0; i < k; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("?")
		}
		b.WriteString(")")
	}
	if c.text == nil {
		c.text = map[int]string{}
	}
	c.text[k] = b.String()
	return c.text[k]
}

func pow2Ceil(n int) int {
	k := 1
	for k < n {
		k <<= 1
	}
	return k
}

func pow2Floor(n int) int {
	k := 1
	for k*2 <= n {
		k <<= 1
	}
	return k
}

// queryChunks runs the query c over the rows of args (c.per arguments
// each), up to c.max rows per statement, padding the last statement to a
// power of two with its last row; scan is called for every row returned.
func queryChunks(ctx context.Context, t sqldb.Tx, c *chunkStmt, args []any, scan func(*sql.Rows) error) error {
	n := len(args) / c.per
	for start := 0; start < n; {
		k := min(c.max, pow2Ceil(n-start))
		end := min(start+k, n)
		a := make([]any, 0, k*c.per)
		a = append(a, args[start*c.per:end*c.per]...)
		for j := end - start; j < k; j++ {
			a = append(a, args[(end-1)*c.per:end*c.per]...)
		}
		if err := queryRows(ctx, t, c.sql(k), a, scan); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func queryRows(ctx context.Context, t sqldb.Tx, q string, args []any, scan func(*sql.Rows) error) error {
	rows, err := t.Query(ctx, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// execChunks runs the statement c over the rows of args, in statements of
// a power of two of rows up to c.max.
func execChunks(ctx context.Context, t sqldb.Tx, c *chunkStmt, args []any, now int64) error {
	n := len(args) / c.per
	for start := 0; start < n; {
		k := min(c.max, pow2Floor(n-start))
		rows := args[start*c.per : (start+k)*c.per]
		a := rows
		if len(c.cols) > 0 {
			a = caseArgs(c, rows, k, now)
		}
		if _, err := t.Exec(ctx, c.sql(k), a...); err != nil {
			return err
		}
		start += k
	}
	return nil
}

// caseArgs lays out the arguments of a CASE update of k rows (key, value
// per column): for each column the (key, value) of every row, then the
// time, then the keys of the IN list.
func caseArgs(c *chunkStmt, rows []any, k int, now int64) []any {
	out := make([]any, 0, 2*len(c.cols)*k+1+k)
	for j := range c.cols {
		for r := 0; r < k; r++ {
			out = append(out, rows[r*c.per], rows[r*c.per+1+j])
		}
	}
	if c.timeCol != "" {
		out = append(out, now)
	}
	for r := 0; r < k; r++ {
		out = append(out, rows[r*c.per])
	}
	return out
}

// The statements of applySet. Reads are chunked by 64 rows, writes by at
// most about 1,000 arguments (well below SQLite's and PostgreSQL's limits).
var (
	// Each lookup is a scalar subquery per row of a VALUES list (columns
	// column1, … on both engines): one primary-key or index probe per row
	// whatever the table's statistics. PostgreSQL plans an OR of 64
	// conjunctions slowly, and a join to VALUES as a hash join over a
	// sequential scan while the table looks small. The CASTs type the ATC
	// column on PostgreSQL. A record's kind and request hash come as one
	// string (kinds hold no ':'), a key's use for another card or ATC as
	// "card/ATC" (card IDs hold no '/').
	qAdviceByRecord = chunkStmt{head: `SELECT v.column1, v.column2, v.column3, (SELECT a.kind || ':' || a.request_hash FROM ledger_advices a
WHERE a.card_id = v.column1 AND a.atc = v.column2 AND a.digest = v.column3) FROM (VALUES `,
		term: `(?, CAST(? AS BIGINT), ?)`, sep: `, `, tail: `) v`, per: 3, max: 64}
	qAdviceByKey = chunkStmt{head: `SELECT v.column1, v.column2, v.column3, (SELECT MIN(a.card_id || '/' || CAST(a.atc AS TEXT)) FROM ledger_advices a
WHERE a.idem_key = v.column1 AND a.kind = 'debit' AND (a.card_id <> v.column2 OR a.atc <> v.column3)) FROM (VALUES `,
		term: `(?, ?, CAST(? AS BIGINT))`, sep: `, `, tail: `) v`, per: 3, max: 64}
	qCardATCs = chunkStmt{head: `SELECT v.column1, v.column2, (SELECT c.digest FROM ledger_card_atcs c
WHERE c.card_id = v.column1 AND c.atc = v.column2) FROM (VALUES `,
		term: `(?, CAST(? AS BIGINT))`, sep: `, `, tail: `) v`, per: 2, max: 64}
	qCards = chunkStmt{head: `SELECT card_id, last_atc, seen, duplicates FROM ledger_cards WHERE card_id IN (`,
		term: `?`, sep: `, `, tail: `)`, per: 1, max: 64}
	qAccounts = chunkStmt{head: `SELECT id, currency, balance FROM ledger_accounts WHERE id IN (`,
		term: `?`, sep: `, `, tail: `)`, per: 1, max: 64}
	qTerminals = chunkStmt{head: `SELECT terminal_id, batch FROM ledger_terminals WHERE terminal_id IN (`,
		term: `?`, sep: `, `, tail: `)`, per: 1, max: 64}

	xAccounts = chunkStmt{head: `INSERT INTO ledger_accounts (id, kind, ref, currency, balance, created_at) VALUES `,
		term: `(?, ?, ?, ?, ?, ?)`, sep: `, `, per: 6, max: 128}
	xPostings = chunkStmt{head: `INSERT INTO ledger_postings (id, idem_key, request_hash, memo, txn_key, created_at) VALUES `,
		term: `(?, ?, ?, ?, ?, ?)`, sep: `, `, per: 6, max: 128}
	xLegs = chunkStmt{head: `INSERT INTO ledger_legs (posting_id, seq, account_id, amount, currency) VALUES `,
		term: `(?, ?, ?, ?, ?)`, sep: `, `, per: 5, max: 128}
	xCardATCs = chunkStmt{head: `INSERT INTO ledger_card_atcs (card_id, atc, digest, terminal_id, seen_at) VALUES `,
		term: `(?, ?, ?, ?, ?)`, sep: `, `, per: 5, max: 128}
	xDuplicates = chunkStmt{head: `INSERT INTO ledger_atc_duplicates (id, card_id, atc, digest, terminal_id, seen_at) VALUES `,
		term: `(?, ?, ?, ?, ?, ?)`, sep: `, `, per: 6, max: 128}
	xCards = chunkStmt{head: `INSERT INTO ledger_cards (card_id, last_atc, seen, duplicates, updated_at) VALUES `,
		term: `(?, ?, ?, ?, ?)`, sep: `, `, per: 5, max: 128}
	xAdvices = chunkStmt{head: `INSERT INTO ledger_advices (card_id, atc, digest, kind, idem_key, request_hash, terminal_id,
merchant_id, amount, currency, posting_key, status, batch, created_at) VALUES `,
		term: `(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, sep: `, `, per: 14, max: 64}

	uCards = chunkStmt{table: "ledger_cards", key: "card_id", cols: []string{"last_atc", "seen", "duplicates"},
		timeCol: "updated_at", per: 4, max: 64}
	uBalances = chunkStmt{table: "ledger_accounts", key: "id", cols: []string{"balance"}, per: 2, max: 64}
)
