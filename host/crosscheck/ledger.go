package crosscheck

import (
	"context"

	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/ledger"
)

// AdviceSource is the part of the ledger the cross-check reads;
// *ledger.SQLStore implements it.
type AdviceSource interface {
	CardAdvices(ctx context.Context, cardID string) ([]ledger.AdviceRecord, error)
}

// LedgerReports adapts the ledger's advice records (debit advices and load
// completions, docs/ledger.md) to Reports. Card IDs are upper-case hex, as
// the money server writes them.
type LedgerReports struct{ Ledger AdviceSource }

// TerminalReports implements Reports.
func (l LedgerReports) TerminalReports(ctx context.Context, id purse.CardID) ([]TerminalReport, error) {
	recs, err := l.Ledger.CardAdvices(ctx, cardHex(id))
	if err != nil {
		return nil, err
	}
	out := make([]TerminalReport, 0, len(recs))
	for _, r := range recs {
		out = append(out, TerminalReport{ATC: r.ATC, Kind: string(r.Kind), TerminalID: r.TerminalID,
			MerchantID: r.MerchantID, Amount: r.Amount, Digest: r.Digest})
	}
	return out, nil
}
