package terminal_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/reader/emu"
)

// BenchmarkDebitTransaction measures complete offline debits through the
// terminal on the in-process chip: SELECT, GET PURSE DATA, INITIALIZE
// DEBIT, M1 from the software SAM (K_DEBIT diversified, SK_D), the
// journal write (in memory), DEBIT, M2 verified by the SAM — and the
// card's side (docs/purse.md §3.7, §3.8, §9.2). Advices to the authority
// are batched later and not timed. One core:
//
//	go test -run '^$' -bench DebitTransaction -cpu 1 ./host/terminal/
func BenchmarkDebitTransaction(b *testing.B) {
	img, err := issue(wire.Limits{MaxBalance: wire.NoLimit, MaxLoad: wire.NoLimit, MaxDebit: 10000, PINFreeLimit: wire.NoLimit, OfflineLimit: wire.NoLimit})
	require.NoError(b, err)
	c := loadChip(b, img)
	m := terminal.DevMasters()
	sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
	require.NoError(b, err)
	auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
	require.NoError(b, err)
	ctx := context.Background()
	tr := emu.Connect(c, "emu:bench")
	_, err = terminal.New(terminal.Config{Authority: auth, TerminalID: testTID}).Load(ctx, tr, 0xF0000000)
	require.NoError(b, err)
	term := terminal.New(terminal.Config{SAM: sam, TerminalID: testTID})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := term.Pay(ctx, tr, 1, terminal.PayOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}
