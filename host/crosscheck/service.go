package crosscheck

import (
	"context"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/sqldb"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Component is the sqldb migration component of this package.
const Component = "crosscheck"

// MaxRecords bounds one upload, and MaxSpan the ATC range it may cover: a
// log holds at most 255 records (the FCI's log capacity is one byte,
// docs/purse.md §3.3), 16 on the reference card.
const (
	MaxRecords = 255
	MaxSpan    = 255
)

// Errors of the service; match with errors.Is.
var (
	// ErrMalformed: the upload is not a card log (bad card ID, record
	// length, type, ATC 0, too many records, a span above MaxSpan).
	ErrMalformed = errors.New("crosscheck: malformed upload")
	// ErrKeys: the key source failed; retry later.
	ErrKeys = errors.New("crosscheck: keys unavailable")
)

// Service verifies, stores and cross-checks uploaded card logs.
type Service struct {
	db      *sqldb.DB
	keys    KeySource
	reports Reports
	now     func() time.Time
}

// New migrates the crosscheck tables and returns the service. keys may be
// nil for a service that only reports (Discrepancies): Submit then fails
// with ErrKeys.
func New(ctx context.Context, db *sqldb.DB, keys KeySource, reports Reports) (*Service, error) {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, Component, sub); err != nil {
		return nil, err
	}
	return &Service{db: db, keys: keys, reports: reports, now: time.Now}, nil
}

// Result is the server's answer to an upload.
type Result struct {
	CardID string `json:"card_id"`
	// Accepted counts the records whose TC verified, Stored those among
	// them that were new (a re-upload stores nothing).
	Accepted      int           `json:"accepted"`
	Stored        int           `json:"stored"`
	Refused       []Refused     `json:"refused"`
	Discrepancies []Discrepancy `json:"discrepancies"`
}

// ParseCardID reads 16 hex digits.
func ParseCardID(s string) (purse.CardID, error) {
	var id purse.CardID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: card ID %q: want 16 hex digits", ErrMalformed, s)
	}
	copy(id[:], b)
	return id, nil
}

func cardHex(id purse.CardID) string { return strings.ToUpper(hex.EncodeToString(id[:])) }

// ParseRecords decodes the records of an upload (docs/purse.md §6) and
// checks the limits of one upload.
func ParseRecords(raw [][]byte) ([]purse.LogRecord, error) {
	if len(raw) == 0 || len(raw) > MaxRecords {
		return nil, fmt.Errorf("%w: %d records, want 1..%d", ErrMalformed, len(raw), MaxRecords)
	}
	out := make([]purse.LogRecord, 0, len(raw))
	lo, hi := uint32(0xFFFFFFFF), uint32(0)
	for i, b := range raw {
		r, err := purse.ParseLogRecord(b)
		if err != nil {
			return nil, fmt.Errorf("%w: record %d: %w", ErrMalformed, i, err)
		}
		lo, hi = min(lo, r.ATC), max(hi, r.ATC)
		out = append(out, r)
	}
	if hi-lo >= MaxSpan {
		return nil, fmt.Errorf("%w: records span ATC %d..%d, more than one log (%d)", ErrMalformed, lo, hi, MaxSpan)
	}
	return out, nil
}

// Submit takes one upload of a card's log: it verifies every record's TC
// under the card's K_TC, stores the accepted records and the window the
// upload covers (idempotently: the same upload again stores nothing), keeps
// refused records as evidence, and returns the card's discrepancies.
func (s *Service) Submit(ctx context.Context, id purse.CardID, recs []purse.LogRecord) (*Result, error) {
	if len(recs) == 0 || len(recs) > MaxRecords {
		return nil, fmt.Errorf("%w: %d records, want 1..%d", ErrMalformed, len(recs), MaxRecords)
	}
	if s.keys == nil {
		return nil, fmt.Errorf("%w: the service was built without a key source", ErrKeys)
	}
	masters, err := s.keys.Masters(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	kTC, err := purse.DeriveCardKey(masters.TC.Key, purse.KeyTC, id)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	defer clear(kTC) // the card key lives only for this upload
	card := cardHex(id)
	res := &Result{CardID: card, Refused: []Refused{}}
	var ok []purse.LogRecord
	lo, hi := uint32(0xFFFFFFFF), uint32(0)
	for _, r := range recs {
		if r.ATC == 0 {
			return nil, fmt.Errorf("%w: record with ATC 0", ErrMalformed)
		}
		// docs/purse.md §5.4: only the server's K_TC verifies a TC; a wrong
		// one means the record was altered after the card signed it.
		if !purse.VerifyTC(kTC, id, r) {
			res.Refused = append(res.Refused, Refused{ATC: r.ATC, Record: strings.ToUpper(hex.EncodeToString(r.Bytes())), Reason: "TC does not verify under K_TC"})
			continue
		}
		ok = append(ok, r)
		lo, hi = min(lo, r.ATC), max(hi, r.ATC)
	}
	if len(ok) > 0 && hi-lo >= MaxSpan {
		return nil, fmt.Errorf("%w: records span ATC %d..%d, more than one log (%d)", ErrMalformed, lo, hi, MaxSpan)
	}
	res.Accepted = len(ok)
	now := s.now().UnixMicro()
	err = s.db.Tx(ctx, true, func(tx sqldb.Tx) error {
		res.Stored = 0
		for _, r := range ok {
			n, err := insertOnce(ctx, tx, `SELECT COUNT(*) FROM xchk_records WHERE card_id = ? AND atc = ? AND tc = ?`,
				[]any{card, int64(r.ATC), tcHex(r.TC)},
				`INSERT INTO xchk_records (card_id, atc, tc, record, uploaded_at) VALUES (?, ?, ?, ?, ?)`,
				card, int64(r.ATC), tcHex(r.TC), strings.ToUpper(hex.EncodeToString(r.Bytes())), now)
			if err != nil {
				return err
			}
			res.Stored += n
		}
		if len(ok) > 0 {
			if _, err := insertOnce(ctx, tx, `SELECT COUNT(*) FROM xchk_coverage WHERE card_id = ? AND from_atc = ? AND to_atc = ?`,
				[]any{card, int64(lo), int64(hi)},
				`INSERT INTO xchk_coverage (card_id, from_atc, to_atc, uploaded_at) VALUES (?, ?, ?, ?)`,
				card, int64(lo), int64(hi), now); err != nil {
				return err
			}
		}
		for _, r := range res.Refused {
			if _, err := insertOnce(ctx, tx, `SELECT COUNT(*) FROM xchk_refused WHERE card_id = ? AND record = ?`,
				[]any{card, r.Record},
				`INSERT INTO xchk_refused (card_id, record, atc, reason, uploaded_at) VALUES (?, ?, ?, ?, ?)`,
				card, r.Record, int64(r.ATC), r.Reason, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("crosscheck: store upload of card %s: %w", card, err)
	}
	if res.Discrepancies, err = s.Check(ctx, id); err != nil {
		return nil, err
	}
	return res, nil
}

// insertOnce inserts a row unless the probe finds it; it returns 1 when it
// inserted. Two racing uploads are serialised by the transaction (a unique
// violation is retried by sqldb and then finds the row).
func insertOnce(ctx context.Context, tx sqldb.Tx, probe string, pargs []any, ins string, iargs ...any) (int, error) {
	var n int
	if err := tx.QueryRow(ctx, probe, pargs...).Scan(&n); err != nil {
		return 0, err
	}
	if n > 0 {
		return 0, nil
	}
	if _, err := tx.Exec(ctx, ins, iargs...); err != nil {
		return 0, err
	}
	return 1, nil
}

// View returns what the server holds about a card's log.
func (s *Service) View(ctx context.Context, id purse.CardID) (CardView, error) {
	card := cardHex(id)
	v := CardView{CardID: id}
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		v.Records, v.Coverage, v.Refused = nil, nil, nil
		rows, err := tx.Query(ctx, `SELECT record FROM xchk_records WHERE card_id = ?`, card)
		if err != nil {
			return err
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return err
			}
			b, err := hex.DecodeString(h)
			if err != nil {
				rows.Close()
				return fmt.Errorf("stored record of card %s: %w", card, err)
			}
			r, err := purse.ParseLogRecord(b)
			if err != nil {
				rows.Close()
				return fmt.Errorf("stored record of card %s: %w", card, err)
			}
			v.Records = append(v.Records, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT from_atc, to_atc FROM xchk_coverage WHERE card_id = ?`, card)
		if err != nil {
			return err
		}
		for rows.Next() {
			var from, to int64
			if err := rows.Scan(&from, &to); err != nil {
				rows.Close()
				return err
			}
			v.Coverage = append(v.Coverage, Range{From: uint32(from), To: uint32(to)})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT atc, record, reason FROM xchk_refused WHERE card_id = ?`, card)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r Refused
			var atc int64
			if err := rows.Scan(&atc, &r.Record, &r.Reason); err != nil {
				return err
			}
			r.ATC = uint32(atc)
			v.Refused = append(v.Refused, r)
		}
		return rows.Err()
	})
	if err != nil {
		return CardView{}, fmt.Errorf("crosscheck: card %s: %w", card, err)
	}
	sort.Slice(v.Records, func(i, j int) bool { return v.Records[i].ATC < v.Records[j].ATC })
	sort.Slice(v.Coverage, func(i, j int) bool { return v.Coverage[i].From < v.Coverage[j].From })
	sort.Slice(v.Refused, func(i, j int) bool { return v.Refused[i].Record < v.Refused[j].Record })
	return v, nil
}

// Check cross-checks one card now: its stored log against the terminals'
// current reports.
func (s *Service) Check(ctx context.Context, id purse.CardID) ([]Discrepancy, error) {
	v, err := s.View(ctx, id)
	if err != nil {
		return nil, err
	}
	reps, err := s.reports.TerminalReports(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("crosscheck: reports of card %s: %w", cardHex(id), err)
	}
	out := Compare(v, reps)
	if out == nil {
		out = []Discrepancy{}
	}
	return out, nil
}

// Filter selects discrepancies; zero fields select everything.
type Filter struct {
	CardID     string // hex, any case
	TerminalID string
	Kinds      []Kind
}

func (f Filter) keep(d Discrepancy) bool {
	if f.TerminalID != "" && d.TerminalID != f.TerminalID {
		return false
	}
	if len(f.Kinds) == 0 {
		return true
	}
	for _, k := range f.Kinds {
		if d.Kind == k {
			return true
		}
	}
	return false
}

// Cards lists the cards with an upload (accepted or refused), ascending.
func (s *Service) Cards(ctx context.Context) ([]purse.CardID, error) {
	var ids []string
	err := s.db.Tx(ctx, false, func(tx sqldb.Tx) error {
		ids = ids[:0]
		rows, err := tx.Query(ctx, `SELECT card_id FROM xchk_coverage UNION SELECT card_id FROM xchk_refused`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				return err
			}
			ids = append(ids, c)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("crosscheck: cards: %w", err)
	}
	sort.Strings(ids)
	out := make([]purse.CardID, 0, len(ids))
	for _, c := range ids {
		id, err := ParseCardID(c)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// Discrepancies is the report: every card with an uploaded log (or the one
// of the filter) cross-checked now against the terminals' reports. Findings
// are recomputed, not stored, so a debit whose advice arrived after the
// upload no longer shows (docs/crosscheck.md §3).
func (s *Service) Discrepancies(ctx context.Context, f Filter) ([]Discrepancy, error) {
	var cards []purse.CardID
	if f.CardID != "" {
		id, err := ParseCardID(f.CardID)
		if err != nil {
			return nil, err
		}
		cards = []purse.CardID{id}
	} else {
		var err error
		if cards, err = s.Cards(ctx); err != nil {
			return nil, err
		}
	}
	out := []Discrepancy{}
	for _, id := range cards {
		ds, err := s.Check(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if f.keep(d) {
				out = append(out, d)
			}
		}
	}
	return out, nil
}
