package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	moov "github.com/moov-io/iso8583"
	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/purse"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/internal/dbtest"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

var chipLimits = wire.Limits{MaxBalance: 100000, MaxLoad: 50000, MaxDebit: 10000, PINFreeLimit: 2500, OfflineLimit: 50000}

// issuedImage personalises a purse on the sample chip once, with the
// development masters, and returns its image.
var issuedImage = sync.OnceValues(func() ([]byte, error) {
	c, err := profile.Build(profile.Sample(), chip.WithModules(purse.Module))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	s, err := hostgp.Open(ctx, connect.Stack(emu.Connect(c, "emu:issue"), connect.StackOptions{}), hostgp.Config{
		Keys: hostgp.TestKeys(), Level: scp03.LevelCMAC | scp03.LevelCDEC})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if err := terminal.Issue(ctx, s, terminal.IssueParams{Digest: purse.Module.Digest(), CardID: card1,
		Currency: wire.Currency{0x09, 0x78}, Limits: chipLimits, PIN: "1234", Masters: terminal.DevMasters()}); err != nil {
		return nil, err
	}
	return c.MarshalImage()
})

func newChip(t testing.TB) *chip.Chip {
	img, err := issuedImage()
	require.NoError(t, err)
	c, err := chip.UnmarshalImage(img, chip.WithModules(profile.Modules()...), chip.WithModules(purse.Module))
	require.NoError(t, err)
	return c
}

// isoAuthority is a minimal terminal.LoadAuthority over ISO 8583 (the real
// one is host/link): enough to drive the chip's genuine S1/TC through the
// server.
type isoAuthority struct {
	t     testing.TB
	tt    *tterm
	mu    sync.Mutex
	loads map[string]*moov.Message // 0200 by card/ATC/host nonce
}

func lkey(r terminal.LoadRequest) string {
	return fmt.Sprintf("%X/%d/%X", r.CardID[:], r.ATC, r.HostNonce[:])
}

func (a *isoAuthority) AuthorizeLoad(_ context.Context, r terminal.LoadRequest) (terminal.LoadAuth, error) {
	s := &loadSession{d: wire.LoadData{CardID: r.CardID, ATC: r.ATC, Amount: r.Amount, Currency: r.Currency,
		Balance: r.Balance, TerminalID: r.TerminalID}, cn: r.CardNonce, hn: r.HostNonce, s1: r.S1, kvn: r.KeyVersion}
	req := a.tt.loadMsg(&vcard{id: r.CardID}, s)
	a.mu.Lock()
	a.loads[lkey(r)] = req
	a.mu.Unlock()
	resp, rc := a.tt.send(req)
	if rc != "00" {
		return terminal.LoadAuth{}, fmt.Errorf("%w: response code %s", terminal.ErrLoadRefused, rc)
	}
	d := iccOf(a.t, resp)
	return terminal.LoadAuth{DateTime: *d.DateTime, AuthRef: *d.AuthRef, S2: *d.S2}, nil
}

func (a *isoAuthority) ReverseLoad(_ context.Context, r terminal.LoadRequest) error {
	a.mu.Lock()
	req := a.loads[lkey(r)]
	a.mu.Unlock()
	if req == nil {
		return nil
	}
	_, rc := a.tt.send(a.tt.reversalMsg("0400", &vcard{id: r.CardID}, req))
	if rc != "00" && rc != "94" && rc != "12" {
		return fmt.Errorf("reversal: %s", rc)
	}
	return nil
}

func (a *isoAuthority) Advise(_ context.Context, id wire.CardID, rec wire.LogRecord) error {
	_, rc := a.tt.send(a.tt.adviceMsg(&vcard{id: id}, rec))
	if rc != "00" && rc != "94" {
		return fmt.Errorf("%w: advice answered %s", terminal.ErrBadProof, rc)
	}
	return nil
}

// realEnv is a server with the real keystore (development masters),
// registry and load store on db.
func realEnv(t *testing.T, db *sqldb.DB) (*env, *registry.Store) {
	ctx := context.Background()
	kek := keystore.GenerateKEK()
	kr, err := keystore.Init(filepath.Join(t.TempDir(), "keyring.json"), kek, keystore.InitOptions{DevMasters: true})
	require.NoError(t, err)
	reg, err := registry.New(ctx, db, kr)
	require.NoError(t, err)
	e := newEnv(t, db, withSQLLoads(db), func(c *server.Config, e *env) {
		c.Keys = kr
		c.Registry = server.NewCachedRegistry(server.RegistryStore{Store: reg, Now: e.clk.Now}, 0)
		for _, id := range []string{tid1, tid2} {
			mid := map[string]string{tid1: mid1, tid2: mid2}[id]
			_, tmk, err := reg.RegisterTerminal(ctx, id, mid)
			require.NoError(t, err)
			e.tmk[id] = tmk
		}
		_, err := reg.RegisterCard(ctx, registry.Card{CardID: cardHex(card1), Currency: "978", MaxBalance: 100000, KeyVersion: 1})
		require.NoError(t, err)
	})
	return e, reg
}

// TestEndToEndChip: a personalised chip is loaded over ISO 8583, pays
// offline twice, the debits are advised, the batch reconciles, and every
// balance agrees to the cent — on SQLite and PostgreSQL, with the real
// keystore and registry.
func TestEndToEndChip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e, reg := realEnv(t, db)
		tt := e.signedOn(tid1)
		auth := &isoAuthority{t: t, tt: tt, loads: map[string]*moov.Message{}}
		sam, err := terminal.NewSoftwareSAM(terminal.DevMasters().Debit.Key, 1)
		require.NoError(t, err)
		term := terminal.New(terminal.Config{SAM: sam, Authority: auth, TerminalID: wire.TerminalID([]byte(tid1)), Now: e.clk.Now})
		c := newChip(t)
		tap := func() *emu.Conn { return emu.Connect(c, "emu:test") }

		ld, err := term.Load(ctx, tap(), 5000)
		require.NoError(t, err)
		require.Equal(t, uint32(5000), ld.Record.BalanceAfter)
		p1, err := term.Pay(ctx, tap(), 350, terminal.PayOptions{})
		require.NoError(t, err)
		p2, err := term.Pay(ctx, tap(), 3000, terminal.PayOptions{PIN: "1234"})
		require.NoError(t, err)
		info, err := term.Balance(ctx, tap())
		require.NoError(t, err)
		require.Equal(t, uint32(1650), info.Data.Balance)
		require.Equal(t, p2.Record.BalanceAfter, info.Data.Balance)
		_ = p1

		// Shadow = card, merchant owed the debits, imbalance 0.
		require.Equal(t, int64(1650), purseBalance(t, e.led, cardHex(card1)))
		m, err := e.led.Balance(ctx, ledger.AccountID(ledger.KindMerchant, mid1, "978"))
		require.NoError(t, err)
		require.Equal(t, int64(-3350), m)
		f, err := e.led.Balance(ctx, ledger.AccountID(ledger.KindFunding, server.DefaultFunding, "978"))
		require.NoError(t, err)
		require.Equal(t, int64(5000), f)
		resp, rc := tt.send(tt.balanceMsg(&vcard{id: card1}))
		require.Equal(t, "00", rc)
		de54, _ := resp.GetString(iso8583.DEAdditionalAmts)
		require.Equal(t, "0002978C000000001650", de54)

		// Reconciliation of the terminal's batch.
		resp, rc = tt.send(tt.reconMsg(1, 5000, 0, 0, 2, 3350))
		require.Equal(t, "00", rc)
		sc, _ := resp.GetString(iso8583.DESettlementCode)
		require.Equal(t, iso8583.SettlementInBalance, sc)

		// A hot-listed card can no longer be loaded; nothing posted.
		require.NoError(t, reg.SetCardStatus(ctx, cardHex(card1), registry.Hotlisted, "stolen"))
		_, err = term.Load(ctx, tap(), 100)
		require.ErrorIs(t, err, terminal.ErrLoadRefused)
		require.Equal(t, int64(1650), purseBalance(t, e.led, cardHex(card1)))
		r, err := e.led.Report(ctx)
		require.NoError(t, err)
		require.Empty(t, r.InProgress)
		for _, v := range r.Imbalance {
			require.Zero(t, v)
		}
	})
}

// TestFailurePointsOnBothEngines runs the recovery scenarios with the real
// stores on both engines: a load torn after CREDIT LOAD and resolved by
// GET TRANSACTION PROOF, and a server restart in the middle.
func TestRecoveryWithChipOnBothEngines(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		e, _ := realEnv(t, db)
		tt := e.signedOn(tid1)
		auth := &isoAuthority{t: t, tt: tt, loads: map[string]*moov.Message{}}
		sam, err := terminal.NewSoftwareSAM(terminal.DevMasters().Debit.Key, 1)
		require.NoError(t, err)
		term := terminal.New(terminal.Config{SAM: sam, Authority: auth, TerminalID: wire.TerminalID([]byte(tid1)), Now: e.clk.Now})
		c := newChip(t)

		// CREDIT LOAD's answer is lost: the card credited it.
		tr := &dropAfter{conn: emu.Connect(c, "emu:test"), ins: wire.INSCreditLoad}
		_, err = term.Load(ctx, tr, 2000)
		require.ErrorIs(t, err, terminal.ErrInterrupted)
		r, err := e.led.Report(ctx)
		require.NoError(t, err)
		require.Len(t, r.InProgress, 1, "the server's in-progress flag")

		e.shutdown() // and the server restarts meanwhile
		e.start()
		tt2 := newTTerm(t, e.addr, tid1, mid1, e.tmk[tid1], e.clk.Now)
		tt2.keys, tt2.stan = tt.keys, 500
		auth.tt = tt2

		res, err := term.Recover(ctx, emu.Connect(c, "emu:test"))
		require.NoError(t, err)
		require.Equal(t, terminal.OutcomeDone, res.Outcome, "GET TRANSACTION PROOF found the record")
		r, err = e.led.Report(ctx)
		require.NoError(t, err)
		require.Empty(t, r.InProgress)
		require.Equal(t, int64(2000), purseBalance(t, e.led, cardHex(card1)))

		// CREDIT LOAD never reaches the card: recovery reverses.
		tr = &dropAfter{conn: emu.Connect(c, "emu:test"), ins: wire.INSCreditLoad, before: true}
		_, err = term.Load(ctx, tr, 700)
		require.ErrorIs(t, err, terminal.ErrInterrupted)
		res, err = term.Recover(ctx, emu.Connect(c, "emu:test"))
		require.NoError(t, err)
		require.Equal(t, terminal.OutcomeNotDone, res.Outcome)
		require.Equal(t, int64(2000), purseBalance(t, e.led, cardHex(card1)))
		r, err = e.led.Report(ctx)
		require.NoError(t, err)
		require.Empty(t, r.InProgress)
	})
}

// dropAfter loses the answer to the command ins (or, with before, the
// command itself), as a card pulled from the field does.
type dropAfter struct {
	conn   *emu.Conn
	ins    byte
	before bool
}

func (d *dropAfter) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) > 1 && cmd[1] == d.ins {
		if d.before {
			return nil, fmt.Errorf("card removed")
		}
		_, _ = d.conn.Transceive(ctx, cmd)
		return nil, fmt.Errorf("card removed")
	}
	return d.conn.Transceive(ctx, cmd)
}
