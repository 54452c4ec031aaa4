package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/valuechip/valuechip/host/ledger"
)

// ErrImbalance: the ledger's balances do not sum to zero (docs/ledger.md
// §7); `valuechip report` exits non-zero.
var ErrImbalance = errors.New("server: the ledger is out of balance")

// reportJSON is the --json form of the report.
type reportJSON struct {
	Balances   []balanceJSON    `json:"balances"`
	Merchants  []merchantJSON   `json:"merchants"`
	InProgress []inProgressJSON `json:"in_progress"`
	Imbalance  map[string]int64 `json:"imbalance"`
}

type balanceJSON struct {
	Kind     string `json:"kind"`
	Currency string `json:"currency"`
	Accounts int    `json:"accounts"`
	Total    int64  `json:"total"`
}

type merchantJSON struct {
	Merchant string `json:"merchant"`
	Currency string `json:"currency"`
	Owed     int64  `json:"owed"`
}

type inProgressJSON struct {
	Kind      string    `json:"kind"`
	Currency  string    `json:"currency"`
	Count     int64     `json:"count"`
	Amount    int64     `json:"amount"`
	Oldest    time.Time `json:"oldest"`
	OldestKey string    `json:"oldest_key"`
}

// money renders minor units with two decimals (every currency of the
// profile has 2; the integer is exact).
func money(v int64) string {
	sign := ""
	if v < 0 {
		sign = "-"
		if v == -v { // MinInt64
			return fmt.Sprint(v)
		}
		v = -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

// WriteReport prints the settlement report: balances by account kind,
// what each merchant is owed, the loads still in progress, and the
// imbalance, which must be zero (ErrImbalance otherwise, after printing).
// Liabilities (purses, merchants) are negative ledger balances; the table
// shows them as the ledger holds them.
func WriteReport(w io.Writer, r ledger.Report, asJSON bool) error {
	bad := false
	for _, v := range r.Imbalance {
		if v != 0 {
			bad = true
		}
	}
	if asJSON {
		out := reportJSON{Balances: []balanceJSON{}, Merchants: []merchantJSON{}, InProgress: []inProgressJSON{}}
		for _, k := range r.ByKind {
			out.Balances = append(out.Balances, balanceJSON{string(k.Kind), k.Currency, k.Accounts, k.Total})
		}
		for _, m := range r.Merchants {
			out.Merchants = append(out.Merchants, merchantJSON{m.Ref, m.Currency, -m.Balance})
		}
		for _, p := range r.InProgress {
			out.InProgress = append(out.InProgress, inProgressJSON{p.Kind, p.Currency, p.Count, p.Amount, p.Oldest, p.OldestKey})
		}
		out.Imbalance = r.Imbalance
		if out.Imbalance == nil {
			out.Imbalance = map[string]int64{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(&trimWriter{w: w}, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "BALANCES\tcurrency\taccounts\ttotal")
		for _, k := range r.ByKind {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", k.Kind, k.Currency, k.Accounts, money(k.Total))
		}
		fmt.Fprintln(tw, "\t\t\t")
		fmt.Fprintln(tw, "MERCHANTS\tcurrency\t\towed")
		for _, m := range r.Merchants {
			fmt.Fprintf(tw, "%s\t%s\t\t%s\n", m.Ref, m.Currency, money(-m.Balance))
		}
		fmt.Fprintln(tw, "\t\t\t")
		fmt.Fprintln(tw, "IN PROGRESS\tcurrency\tcount\tamount")
		for _, p := range r.InProgress {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s (oldest %s)\n", p.Kind, p.Currency, p.Count, money(p.Amount),
				p.Oldest.UTC().Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		cur := make([]string, 0, len(r.Imbalance))
		for c := range r.Imbalance {
			cur = append(cur, c)
		}
		sort.Strings(cur)
		fmt.Fprint(w, "\nimbalance:")
		if len(cur) == 0 {
			fmt.Fprint(w, " 0")
		}
		for _, c := range cur {
			fmt.Fprintf(w, " %s %s", c, money(r.Imbalance[c]))
		}
		fmt.Fprintln(w)
	}
	if bad {
		return fmt.Errorf("%w: %v", ErrImbalance, r.Imbalance)
	}
	return nil
}

// trimWriter drops the trailing blanks tabwriter pads short rows with (the
// blank separator rows of one aligned table). tabwriter writes cell by cell,
// so it holds back a partial line until its newline arrives; every table
// here ends with one.
type trimWriter struct {
	w       io.Writer
	pending []byte
}

func (t *trimWriter) Write(p []byte) (int, error) {
	t.pending = append(t.pending, p...)
	var out []byte
	for {
		i := bytes.IndexByte(t.pending, '\n')
		if i < 0 {
			break
		}
		out = append(out, bytes.TrimRight(t.pending[:i], " ")...)
		out = append(out, '\n')
		t.pending = t.pending[i+1:]
	}
	if len(out) > 0 {
		if _, err := t.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
