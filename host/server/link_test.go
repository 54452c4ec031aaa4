package server_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/link"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/internal/dbtest"
	"github.com/valuechip/valuechip/reader/emu"
)

// TestWithLink: the terminal's real client (host/link) against the server:
// a chip loaded online, two offline payments forwarded by store-and-forward,
// the batch reconciled in balance, on both engines.
func TestWithLink(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e, _ := realEnv(t, db)
		m := terminal.DevMasters()
		l, err := link.Dial(ctx, link.Config{TerminalID: tid1, MerchantID: mid1, Server: e.addr, TMK: e.tmk[tid1], SAM: m.Debit},
			link.Options{StateDir: filepath.Join(t.TempDir(), "state"), Now: e.clk.Now})
		require.NoError(t, err)
		defer l.Close()
		sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
		require.NoError(t, err)
		term := terminal.New(terminal.Config{SAM: sam, Authority: l, TerminalID: wire.TerminalID([]byte(tid1)), Now: e.clk.Now})
		c := newChip(t)
		tap := func() *emu.Conn { return emu.Connect(c, "emu:test") }

		_, err = term.Load(ctx, tap(), 5000)
		require.NoError(t, err)
		_, err = term.Pay(ctx, tap(), 350, terminal.PayOptions{})
		require.NoError(t, err)
		_, err = term.Pay(ctx, tap(), 3000, terminal.PayOptions{PIN: "1234"})
		require.NoError(t, err)
		_, err = l.Flush(ctx)
		require.NoError(t, err)
		require.Empty(t, l.Queued())
		require.Equal(t, int64(1650), purseBalance(t, e.led, cardHex(card1)))
		bal, err := l.Balance(ctx, card1)
		require.NoError(t, err)
		t.Logf("balance via link: %+v", bal)
		rec, err := l.Reconcile(ctx)
		require.NoError(t, err)
		require.True(t, rec.InBalance, "%+v", rec)
		r, err := e.led.Report(ctx)
		require.NoError(t, err)
		require.Empty(t, r.InProgress)
	})
}
