package crosscheck

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/valuechip/valuechip/apdu/purse"
)

// Kind classifies a discrepancy (docs/crosscheck.md §3).
type Kind string

// The discrepancy kinds.
const (
	// KindOvercharge (a): a terminal reported a larger amount for the ATC
	// than the card's record debited.
	KindOvercharge Kind = "overcharge"
	// KindAmountMismatch (a): the reported amount differs from the card's
	// record in the other direction (less, or for a load).
	KindAmountMismatch Kind = "amount_mismatch"
	// KindDigestMismatch (a): same ATC and amount, but the terminal's
	// digest (TC), terminal ID or transaction type is not the card's record.
	KindDigestMismatch Kind = "digest_mismatch"
	// KindUnreportedDebit (b): a debit in the card's log that no terminal
	// reported (yet: advices are store-and-forward, docs/crosscheck.md §3).
	KindUnreportedDebit Kind = "unreported_debit"
	// KindUnreportedLoad: a load in the card's log with no completion on
	// the server (the terminal lost the card's response, docs/purse.md §9.4).
	KindUnreportedLoad Kind = "unreported_load"
	// KindUnknownATC (c): a terminal reported an ATC inside a window the
	// card's uploaded log covers, and the log has no record of it.
	KindUnknownATC Kind = "unknown_atc"
	// KindLogGap: an upload skipped an ATC inside its own range; the card's
	// log is contiguous (docs/purse.md §6), so the device or the card lies.
	KindLogGap Kind = "log_gap"
	// KindLogConflict: two records with valid TCs for the same ATC — a
	// cloned or rolled-back card image (docs/purse.md §9.5).
	KindLogConflict Kind = "log_conflict"
	// KindInvalidTC (d): an uploaded record whose TC does not verify under
	// K_TC; it was refused and is kept only as evidence.
	KindInvalidTC Kind = "invalid_tc"
)

// Kinds lists every kind, in report order.
var Kinds = []Kind{KindOvercharge, KindAmountMismatch, KindDigestMismatch, KindUnreportedDebit,
	KindUnreportedLoad, KindUnknownATC, KindLogGap, KindLogConflict, KindInvalidTC}

// Valid reports whether k is a defined kind.
func (k Kind) Valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

// TerminalReport is what a terminal told the server about one value change
// of a card: a debit advice or a load completion (the ledger's advice
// records).
type TerminalReport struct {
	ATC        uint32
	Kind       string // "load" or "debit"
	TerminalID string // DE 41, 8 characters
	MerchantID string
	Amount     int64
	Digest     string // hex TC as the terminal forwarded it
}

// Reports gives the terminal reports of one card; ledger.SQLStore does,
// through LedgerReports.
type Reports interface {
	TerminalReports(ctx context.Context, cardID purse.CardID) ([]TerminalReport, error)
}

// KeySource gives the issuer master keys (K_LOAD, K_DEBIT, K_TC masters);
// the key store's Source satisfies it. Only the TC master is used.
type KeySource interface {
	Masters(ctx context.Context) (purse.Keys, error)
}

// Discrepancy is one finding of the cross-check.
type Discrepancy struct {
	Kind   Kind   `json:"kind"`
	CardID string `json:"card_id"`
	ATC    uint32 `json:"atc"`
	// TerminalID is the terminal concerned: the reporting one, or the one
	// in the card's record when no terminal reported.
	TerminalID string `json:"terminal_id,omitempty"`
	MerchantID string `json:"merchant_id,omitempty"`
	// CardAmount is the amount in the card's record (0 when it has none).
	CardAmount int64 `json:"card_amount"`
	// ReportedAmount is the amount the terminal reported (0 when none).
	ReportedAmount int64  `json:"reported_amount"`
	CardTC         string `json:"card_tc,omitempty"`
	ReportedDigest string `json:"reported_digest,omitempty"`
	Detail         string `json:"detail"`
}

func (d Discrepancy) String() string {
	return fmt.Sprintf("card %s ATC %d %s: %s", d.CardID, d.ATC, d.Kind, d.Detail)
}

// Range is a closed range of ATCs.
type Range struct{ From, To uint32 }

func (r Range) has(atc uint32) bool { return r.From <= atc && atc <= r.To }

// Refused is an uploaded record that was not accepted.
type Refused struct {
	ATC    uint32 `json:"atc"`
	Record string `json:"record"` // hex, 58 bytes
	Reason string `json:"reason"`
}

// CardView is everything the server holds about one card's log.
type CardView struct {
	CardID   purse.CardID
	Records  []purse.LogRecord // accepted (TC verified), any order
	Coverage []Range           // the [first, last] ATC of each upload
	Refused  []Refused
}

// TerminalString renders a terminal ID as the ledger writes it: the
// 8 characters when printable ASCII (DE 41), else 16 hex digits.
func TerminalString(id purse.TerminalID) string {
	for _, c := range id {
		if c < 0x20 || c > 0x7E {
			return strings.ToUpper(hex.EncodeToString(id[:]))
		}
	}
	return string(id[:])
}

func kindOf(t byte) string {
	if t == purse.TypeLoad {
		return "load"
	}
	return "debit"
}

func tcHex(m purse.MAC) string { return strings.ToUpper(hex.EncodeToString(m[:])) }

// sameTerminal compares a reported terminal ID with the card's.
func sameTerminal(reported string, id purse.TerminalID) bool {
	return reported == string(id[:]) || strings.EqualFold(reported, hex.EncodeToString(id[:]))
}

// Compare cross-checks one card's log against the terminals' reports
// (docs/crosscheck.md §3). It is a pure function; the result is ordered by
// ATC, then kind, then terminal.
func Compare(v CardView, reports []TerminalReport) []Discrepancy {
	card := strings.ToUpper(hex.EncodeToString(v.CardID[:]))
	var out []Discrepancy
	add := func(d Discrepancy) { d.CardID = card; out = append(out, d) }

	byATC := map[uint32][]purse.LogRecord{}
	for _, r := range v.Records {
		byATC[r.ATC] = append(byATC[r.ATC], r)
	}
	for atc, rs := range byATC {
		for _, r := range rs[1:] {
			add(Discrepancy{Kind: KindLogConflict, ATC: atc, TerminalID: TerminalString(r.TerminalID),
				CardAmount: int64(r.Amount), CardTC: tcHex(r.TC),
				Detail: fmt.Sprintf("two records with valid TCs for ATC %d (%s and %s): cloned or rolled-back card", atc, tcHex(rs[0].TC), tcHex(r.TC))})
		}
	}
	reported := map[uint32]bool{}
	for _, rep := range reports {
		reported[rep.ATC] = true
		rs := byATC[rep.ATC]
		if len(rs) == 0 {
			for _, c := range v.Coverage {
				if c.has(rep.ATC) {
					add(Discrepancy{Kind: KindUnknownATC, ATC: rep.ATC, TerminalID: rep.TerminalID, MerchantID: rep.MerchantID,
						ReportedAmount: rep.Amount, ReportedDigest: rep.Digest,
						Detail: fmt.Sprintf("terminal %s reported a %s of %d at ATC %d; the card's log covering ATC %d..%d has no such record",
							rep.TerminalID, rep.Kind, rep.Amount, rep.ATC, c.From, c.To)})
					break
				}
			}
			continue
		}
		if d, ok := match(rep, rs); !ok {
			add(d)
		}
	}
	for atc, rs := range byATC {
		if reported[atc] {
			continue
		}
		r := rs[0]
		k := KindUnreportedDebit
		if r.Type == purse.TypeLoad {
			k = KindUnreportedLoad
		}
		add(Discrepancy{Kind: k, ATC: atc, TerminalID: TerminalString(r.TerminalID), CardAmount: int64(r.Amount), CardTC: tcHex(r.TC),
			Detail: fmt.Sprintf("the card's log has a %s of %d at terminal %s that no terminal reported", kindOf(r.Type), r.Amount, TerminalString(r.TerminalID))})
	}
	for _, c := range v.Coverage {
		for atc := c.From; atc <= c.To && atc >= c.From; atc++ {
			if len(byATC[atc]) == 0 {
				add(Discrepancy{Kind: KindLogGap, ATC: atc,
					Detail: fmt.Sprintf("an upload covering ATC %d..%d has no record of ATC %d; a purse log is contiguous", c.From, c.To, atc)})
			}
			if atc == c.To {
				break // c.To may be FFFFFFFF
			}
		}
	}
	for _, r := range v.Refused {
		add(Discrepancy{Kind: KindInvalidTC, ATC: r.ATC, Detail: "uploaded record refused: " + r.Reason + ": " + r.Record})
	}
	sortDiscrepancies(out)
	return dedupe(out)
}

// match compares a report with the card's record(s) of its ATC; ok when
// one record is exactly what the terminal reported.
func match(rep TerminalReport, rs []purse.LogRecord) (Discrepancy, bool) {
	r := rs[0]
	for _, c := range rs {
		if strings.EqualFold(rep.Digest, tcHex(c.TC)) {
			r = c
			break
		}
	}
	d := Discrepancy{ATC: rep.ATC, TerminalID: rep.TerminalID, MerchantID: rep.MerchantID, CardAmount: int64(r.Amount),
		ReportedAmount: rep.Amount, CardTC: tcHex(r.TC), ReportedDigest: rep.Digest}
	switch {
	case rep.Amount > int64(r.Amount) && r.Type == purse.TypeDebit:
		d.Kind = KindOvercharge
		d.Detail = fmt.Sprintf("terminal %s reported a debit of %d; the card debited %d (%d more)", rep.TerminalID, rep.Amount, r.Amount, rep.Amount-int64(r.Amount))
	case rep.Amount != int64(r.Amount):
		d.Kind = KindAmountMismatch
		d.Detail = fmt.Sprintf("terminal %s reported a %s of %d; the card's record says %s of %d", rep.TerminalID, rep.Kind, rep.Amount, kindOf(r.Type), r.Amount)
	case !strings.EqualFold(rep.Digest, tcHex(r.TC)):
		d.Kind = KindDigestMismatch
		d.Detail = fmt.Sprintf("terminal %s reported TC %s; the card's record has TC %s", rep.TerminalID, rep.Digest, tcHex(r.TC))
	case rep.Kind != kindOf(r.Type) || !sameTerminal(rep.TerminalID, r.TerminalID):
		d.Kind = KindDigestMismatch
		d.Detail = fmt.Sprintf("terminal %s reported a %s; the card's record is a %s at terminal %s", rep.TerminalID, rep.Kind, kindOf(r.Type), TerminalString(r.TerminalID))
	default:
		return Discrepancy{}, true
	}
	return d, false
}

func kindRank(k Kind) int {
	for i, v := range Kinds {
		if v == k {
			return i
		}
	}
	return len(Kinds)
}

func sortDiscrepancies(ds []Discrepancy) {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.CardID != b.CardID {
			return a.CardID < b.CardID
		}
		if a.ATC != b.ATC {
			return a.ATC < b.ATC
		}
		if a.Kind != b.Kind {
			return kindRank(a.Kind) < kindRank(b.Kind)
		}
		if a.TerminalID != b.TerminalID {
			return a.TerminalID < b.TerminalID
		}
		return a.Detail < b.Detail
	})
}

func dedupe(ds []Discrepancy) []Discrepancy {
	out := ds[:0]
	for i, d := range ds {
		if i > 0 && d == ds[i-1] {
			continue
		}
		out = append(out, d)
	}
	return out
}
