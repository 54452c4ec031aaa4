package link_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/link"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/internal/dbtest"
	"github.com/valuechip/valuechip/reader/emu"
)

// realServer starts host/server with the real keystore (development
// masters), registry, ledger and load store on db, and enrols terminal
// TERM0001 and the test card. It returns the terminal's configuration.
func realServer(t testing.TB, db *sqldb.DB) (link.Config, *ledger.SQLStore) {
	t.Helper()
	ctx := context.Background()
	kr, err := keystore.Init(filepath.Join(t.TempDir(), "keyring.json"), keystore.GenerateKEK(), keystore.InitOptions{DevMasters: true})
	require.NoError(t, err)
	reg, err := registry.New(ctx, db, kr)
	require.NoError(t, err)
	led, err := ledger.New(ctx, db)
	require.NoError(t, err)
	loads, err := server.NewSQLLoads(ctx, db)
	require.NoError(t, err)
	_, tmk, err := reg.RegisterTerminal(ctx, "TERM0001", "MERCHANT0000001")
	require.NoError(t, err)
	_, err = reg.RegisterCard(ctx, registry.Card{CardID: "1122334455667788", Currency: "978", MaxBalance: 100000, KeyVersion: 1})
	require.NoError(t, err)
	adv := server.NewLedgerAdvices(led, 0, nil)
	srv, err := server.New(server.Config{Registry: server.RegistryStore{Store: reg, Now: time.Now}, Keys: kr, Ledger: led,
		Advices: adv, Loads: loads, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, l) }()
	t.Cleanup(func() {
		cancel()
		<-served
		adv.Close()
	})
	return link.Config{TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", Server: l.Addr().String(), TMK: tmk,
		SAM: terminal.DevMasters().Debit}, led
}

// TestAgainstServer runs a chip through the real money server: load
// online, pay offline twice, restart the terminal, flush the advices and
// reconcile in balance; the server's shadow balance is the card's.
func TestAgainstServer(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		cfg, _ := realServer(t, db)
		dir := t.TempDir()
		lk, err := link.Dial(ctx, cfg, link.Options{StateDir: dir})
		require.NoError(t, err)
		img, err := issuedImage()
		require.NoError(t, err)
		c, err := chip.UnmarshalImage(img, chip.WithModules(profile.Modules()...), chip.WithModules(purse.Module))
		require.NoError(t, err)
		m := terminal.DevMasters()
		sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
		require.NoError(t, err)
		term := terminal.New(terminal.Config{SAM: sam, Authority: lk, TerminalID: testTID})
		tr := emu.Connect(c, "emu:test")

		_, err = term.Load(ctx, tr, 5000)
		require.NoError(t, err)
		var paid []wire.LogRecord
		for _, a := range []uint32{350, 3000} {
			rc, err := term.Pay(ctx, tr, a, terminal.PayOptions{PIN: "1234"})
			require.NoError(t, err)
			paid = append(paid, rc.Record)
		}
		bal, err := lk.Balance(ctx, testCardID)
		require.NoError(t, err)
		require.Equal(t, int64(5000), bal.Available, "the debits are still queued")
		require.Len(t, lk.Queued(), 2)
		require.NoError(t, lk.Close())

		lk, err = link.Dial(ctx, cfg, link.Options{StateDir: dir})
		require.NoError(t, err)
		defer lk.Close()
		rep, err := lk.Flush(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, rep.Acknowledged)
		bal, err = lk.Balance(ctx, testCardID)
		require.NoError(t, err)
		require.Equal(t, int64(1650), bal.Available)

		// The same record advised again (a recovery after a crash) is a
		// duplicate: 94, no second posting, not counted twice.
		require.NoError(t, lk.Advise(ctx, testCardID, paid[0]))
		rep, err = lk.Flush(ctx)
		require.NoError(t, err)
		require.Equal(t, "94", rep.Results[0].Code)
		bal, err = lk.Balance(ctx, testCardID)
		require.NoError(t, err)
		require.Equal(t, int64(1650), bal.Available)
		res, err := lk.Reconcile(ctx)
		require.NoError(t, err)
		require.True(t, res.InBalance)
		require.Equal(t, []link.Totals{{Currency: "978", Loads: 1, LoadAmount: 5000, Debits: 2, DebitAmount: 3350}}, res.Terminal)
		res, err = lk.Reconcile(ctx)
		require.NoError(t, err)
		require.True(t, res.InBalance, "an empty batch")
	})
}

// dropping is a dialer whose connections lose the first answer of each
// listed MTI (the server processed the request; its answer never arrives).
func dropping(mtis ...string) func(ctx context.Context, addr string) (net.Conn, error) {
	drop := map[string]bool{}
	for _, m := range mtis {
		drop[m] = true
	}
	var mu sync.Mutex
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		up, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		mine, theirs := net.Pipe()
		go func() { _, _ = io.Copy(up, theirs); up.Close() }()
		go func() {
			defer theirs.Close()
			for {
				raw, err := iso8583.ReadMessage(up, 0)
				if err != nil {
					return
				}
				mu.Lock()
				lose := drop[string(raw[:4])]
				delete(drop, string(raw[:4]))
				mu.Unlock()
				if !lose && iso8583.WriteMessage(theirs, raw) != nil {
					return
				}
			}
		}()
		return mine, nil
	}
}

// TestAgainstServerLostAnswers: the 0210 is lost (the server funded the
// load), then the 0410 too: the terminal reverses with 0400, then 0420;
// the server finds the load by DE 90 and both sides count one reversal.
func TestAgainstServerLostAnswers(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		cfg, _ := realServer(t, db)
		lk, err := link.Dial(ctx, cfg, link.Options{StateDir: t.TempDir(), Timeout: 700 * time.Millisecond,
			Dial: dropping("0210", "0410")})
		require.NoError(t, err)
		defer lk.Close()
		img, err := issuedImage()
		require.NoError(t, err)
		c, err := chip.UnmarshalImage(img, chip.WithModules(profile.Modules()...), chip.WithModules(purse.Module))
		require.NoError(t, err)
		term := terminal.New(terminal.Config{Authority: lk, TerminalID: testTID})
		_, err = term.Load(ctx, emu.Connect(c, "emu:test"), 2000)
		require.ErrorIs(t, err, link.ErrTransport)
		require.Empty(t, lk.Queued(), "the 0420 was acknowledged")
		bal, err := lk.Balance(ctx, testCardID)
		require.NoError(t, err)
		require.Zero(t, bal.Available, "the funding was reversed")
		_, totals := lk.Batch()
		require.Equal(t, []link.Totals{{Currency: "978", LoadReversals: 1, LoadReversalAmount: 2000}}, totals,
			"the 0420 was answered 94 (the lost 0410 had reversed it): counted")
		res, err := lk.Reconcile(ctx)
		require.NoError(t, err)
		require.True(t, res.InBalance)
		_, err = term.Load(ctx, emu.Connect(c, "emu:test"), 700)
		require.NoError(t, err, "the card and the link carry on")
	})
}

// BenchmarkAgainstServer: offline debits queued (fsynced) and then flushed
// to host/server on SQLite; reports both rates.
func BenchmarkAgainstServer(b *testing.B) {
	db := dbtest.Open(b, "sqlite")
	ctx := context.Background()
	cfg, _ := realServer(b, db)
	lk, err := link.Dial(ctx, cfg, link.Options{StateDir: b.TempDir(), FlushWindow: 64})
	require.NoError(b, err)
	defer lk.Close()
	recs := make([]wire.LogRecord, b.N)
	for i := range recs {
		recs[i] = debitRecord(b, uint32(i+2), 1, 1_000_000-uint32(i+1))
	}
	b.ResetTimer()
	start := time.Now()
	for _, r := range recs {
		require.NoError(b, lk.Advise(ctx, testCardID, r))
	}
	queued := time.Since(start)
	rep, err := lk.Flush(ctx)
	require.NoError(b, err)
	flushed := time.Since(start) - queued
	require.Equal(b, b.N, rep.Acknowledged)
	b.ReportMetric(float64(b.N)/queued.Seconds(), "queued/s")
	b.ReportMetric(float64(b.N)/flushed.Seconds(), "flushed/s")
}
