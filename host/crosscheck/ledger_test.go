package crosscheck_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/crosscheck"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// The real key store and ledger fit the package's interfaces.
var (
	_ crosscheck.KeySource    = (*keystore.Keyring)(nil)
	_ crosscheck.AdviceSource = (*ledger.SQLStore)(nil)
)

// TestAgainstLedger runs the second channel against what the real ledger
// recorded from terminals: the load completed with its TC, ATC 2 advised as
// the card did it, ATC 3 advised for more than the card debited, ATC 4 never
// advised.
func TestAgainstLedger(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		led, err := ledger.New(ctx, db)
		require.NoError(t, err)
		s, err := crosscheck.New(ctx, db, keySource{}, crosscheck.LedgerReports{Ledger: led})
		require.NoError(t, err)
		log := cardLog(t)
		card := "1122334455667788"

		fund, err := led.EnsureAccount(ctx, ledger.KindFunding, "bank", "978")
		require.NoError(t, err)
		shadow, err := led.EnsureAccount(ctx, ledger.KindPurse, card, "978")
		require.NoError(t, err)
		_, err = led.Begin(ctx, ledger.BeginRequest{Key: "TERM0001/load/1", Kind: ledger.KindLoad, CardID: card, TerminalID: "TERM0001",
			MerchantID: "MERCHANT0000001", Amount: 5000, Currency: "978",
			Legs: []ledger.Leg{{Account: fund.ID, Amount: 5000, Currency: "978"}, {Account: shadow.ID, Amount: -5000, Currency: "978"}}})
		require.NoError(t, err)
		_, err = led.Complete(ctx, ledger.CompleteRequest{Key: "TERM0001/load/1", ATC: 1, Digest: tc(log[0])})
		require.NoError(t, err)
		var advs []ledger.DebitAdvice
		for _, r := range log[1:3] {
			amount := int64(r.Amount)
			if r.ATC == 3 {
				amount = 150 // the card debited 100
			}
			advs = append(advs, ledger.DebitAdvice{Key: fmt.Sprintf("adv/%s/%d", card, r.ATC), CardID: card, TerminalID: "TERM0001",
				MerchantID: "MERCHANT0000001", ATC: r.ATC, Digest: tc(r), Amount: amount, Currency: "978"})
		}
		for _, res := range led.ApplyAdvices(ctx, advs) {
			require.NoError(t, res.Err)
		}

		res, err := s.Submit(ctx, cardA, log)
		require.NoError(t, err)
		require.Equal(t, []string{"overcharge@3", "unreported_debit@4"}, kinds(res.Discrepancies))
		d := res.Discrepancies[0]
		require.Equal(t, crosscheck.Discrepancy{Kind: crosscheck.KindOvercharge, CardID: card, ATC: 3, TerminalID: "TERM0001",
			MerchantID: "MERCHANT0000001", CardAmount: 100, ReportedAmount: 150, CardTC: tc(log[2]), ReportedDigest: tc(log[2]),
			Detail: d.Detail}, d)

		// The device uploads again after a fifth debit: idempotent for the
		// old records, the new one unreported too.
		log = append(log, record(t, cardA, 5, purse.TypeDebit, 50, 4300))
		res, err = s.Submit(ctx, cardA, log)
		require.NoError(t, err)
		require.Equal(t, 1, res.Stored)
		require.Equal(t, []string{"overcharge@3", "unreported_debit@4", "unreported_debit@5"}, kinds(res.Discrepancies))

		// Another terminal reports ATC 4 with a record that is not the card's.
		ghost := record(t, cardA, 6, purse.TypeDebit, 200, 4100)
		for _, res := range led.ApplyAdvices(ctx, []ledger.DebitAdvice{{Key: "adv/ghost", CardID: card, TerminalID: "TERM0002",
			MerchantID: "MERCHANT0000002", ATC: 4, Digest: tc(ghost), Amount: 200, Currency: "978"}}) {
			require.NoError(t, res.Err)
		}
		all, err := s.Discrepancies(ctx, crosscheck.Filter{})
		require.NoError(t, err)
		require.Equal(t, []string{"overcharge@3", "digest_mismatch@4", "unreported_debit@5"}, kinds(all),
			"ATC 4 is now reported, by a terminal whose record is not the card's")
	})
}
