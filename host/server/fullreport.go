package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/valuechip/valuechip/host/crosscheck"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/wallet"
)

// FullReport is what `valuechip report` prints: the ledger's settlement
// report (docs/ledger.md §7), the second channel's discrepancies
// (docs/crosscheck.md §3) and the network wallets' totals (docs/wallet.md).
type FullReport struct {
	Ledger        ledger.Report
	Discrepancies []crosscheck.Discrepancy
	Wallets       []WalletTotals // by currency
}

// WalletTotals sums the wallets of one currency.
type WalletTotals struct {
	Currency string `json:"currency"`
	Wallets  int    `json:"wallets"`
	// Balance is the sum of the holders' balances (positive: the issuer
	// owes the holders).
	Balance int64 `json:"balance"`
	// CreditDrawn is the sum of the negative balances, as a positive
	// amount: what holders owe on their credit lines.
	CreditDrawn int64 `json:"credit_drawn"`
	Limit       int64 `json:"credit_limit"` // sum of the credit limits
	Available   int64 `json:"available"`    // sum of limit + balance
}

// BuildReport reads the report from the database in three steps (ledger,
// cross-check, wallets); each is consistent in itself. The cross-check and
// wallet tables are created when missing, so the report also runs on a
// database that never had an upload or a wallet.
func BuildReport(ctx context.Context, db *sqldb.DB) (FullReport, error) {
	led, err := ledger.New(ctx, db)
	if err != nil {
		return FullReport{}, err
	}
	var r FullReport
	if r.Ledger, err = led.Report(ctx); err != nil {
		return FullReport{}, err
	}
	// No key source: the report only recomputes, it verifies nothing new.
	xc, err := crosscheck.New(ctx, db, nil, crosscheck.LedgerReports{Ledger: led})
	if err != nil {
		return FullReport{}, err
	}
	if r.Discrepancies, err = xc.Discrepancies(ctx, crosscheck.Filter{}); err != nil {
		return FullReport{}, err
	}
	ws, err := wallet.New(ctx, db, led, wallet.Options{})
	if err != nil {
		return FullReport{}, err
	}
	list, err := ws.List(ctx)
	if err != nil {
		return FullReport{}, err
	}
	by := map[string]*WalletTotals{}
	for _, w := range list {
		// List has no balances; Show reads them from the ledger.
		full, err := ws.Show(ctx, w.Holder)
		if err != nil {
			return FullReport{}, fmt.Errorf("wallet %s: %w", w.Holder, err)
		}
		t := by[full.Currency]
		if t == nil {
			t = &WalletTotals{Currency: full.Currency}
			by[full.Currency] = t
		}
		t.Wallets++
		t.Balance += full.Balance
		if full.Balance < 0 {
			t.CreditDrawn -= full.Balance
		}
		t.Limit += full.Limit
		t.Available += full.Available
	}
	for _, t := range by {
		r.Wallets = append(r.Wallets, *t)
	}
	sort.Slice(r.Wallets, func(i, j int) bool { return r.Wallets[i].Currency < r.Wallets[j].Currency })
	return r, nil
}

// Report builds the full report on the service's database.
func (s *Service) Report(ctx context.Context) (FullReport, error) { return BuildReport(ctx, s.DB) }

type fullReportJSON struct {
	reportJSON
	Discrepancies []crosscheck.Discrepancy `json:"discrepancies"`
	Wallets       []WalletTotals           `json:"wallets"`
}

// WriteFullReport prints the settlement report of WriteReport followed by
// the discrepancies and the wallet totals; with asJSON one document with
// the fields of WriteReport's plus "discrepancies" and "wallets". Like
// WriteReport it returns ErrImbalance (after printing) when the ledger is
// out of balance; discrepancies are findings, not errors.
func WriteFullReport(w io.Writer, r FullReport, asJSON bool) error {
	if asJSON {
		var buf bytes.Buffer
		rerr := WriteReport(&buf, r.Ledger, true)
		if rerr != nil && !errors.Is(rerr, ErrImbalance) {
			return rerr
		}
		var out fullReportJSON
		if err := json.Unmarshal(buf.Bytes(), &out.reportJSON); err != nil {
			return err
		}
		out.Discrepancies, out.Wallets = r.Discrepancies, r.Wallets
		if out.Discrepancies == nil {
			out.Discrepancies = []crosscheck.Discrepancy{}
		}
		if out.Wallets == nil {
			out.Wallets = []WalletTotals{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
		return rerr
	}
	rerr := WriteReport(w, r.Ledger, false)
	if rerr != nil && !errors.Is(rerr, ErrImbalance) {
		return rerr
	}
	fmt.Fprintln(w)
	if len(r.Discrepancies) == 0 {
		fmt.Fprintln(w, "DISCREPANCIES: none (every uploaded card log matches what the terminals reported)")
	} else {
		fmt.Fprintf(w, "DISCREPANCIES: %d\n", len(r.Discrepancies))
		tw := tabwriter.NewWriter(&trimWriter{w: w}, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CARD\tATC\tKIND\tTERMINAL\tCARD AMOUNT\tREPORTED\tDETAIL")
		for _, d := range r.Discrepancies {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", d.CardID, d.ATC, d.Kind, d.TerminalID,
				money(d.CardAmount), money(d.ReportedAmount), d.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(r.Wallets) == 0 {
		fmt.Fprintln(w, "WALLETS: none")
		return rerr
	}
	tw := tabwriter.NewWriter(&trimWriter{w: w}, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WALLETS\twallets\tbalance\tcredit drawn\tcredit limit\tavailable")
	for _, t := range r.Wallets {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", t.Currency, t.Wallets, money(t.Balance), money(t.CreditDrawn),
			money(t.Limit), money(t.Available))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return rerr
}
