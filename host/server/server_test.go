package server_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

const (
	tid1 = "TERM0001"
	mid1 = "MERCHANT0000001"
	tid2 = "TERM0002"
	mid2 = "MERCHANT0000002"
)

var (
	card1 = wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	card2 = wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x99}
)

// env is a server on a loopback listener with a real ledger and fakes for
// the registry and the key source (or the real ones, see integration_test.go).
type env struct {
	t      testing.TB
	srv    *server.Server
	reg    *fakeRegistry
	keys   *fakeKeys
	led    *ledger.SQLStore
	adv    *server.LedgerAdvices
	loads  server.Loads
	clk    *clock
	addr   string
	stop   context.CancelFunc
	served chan error
	tmk    map[string]iso8583.Key
	cfg    server.Config
}

type envOpt func(*server.Config, *env)

func newEnv(t testing.TB, db *sqldb.DB, opts ...envOpt) *env {
	t.Helper()
	ctx := context.Background()
	led, err := ledger.New(ctx, db)
	require.NoError(t, err)
	e := &env{t: t, led: led, clk: &clock{t: time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)},
		keys: &fakeKeys{}, tmk: map[string]iso8583.Key{}, loads: server.NewMemLoads()}
	e.reg = newFakeRegistry(e.clk.Now)
	e.tmk[tid1] = e.reg.addTerminal(tid1, mid1)
	e.tmk[tid2] = e.reg.addTerminal(tid2, mid2)
	for _, id := range []wire.CardID{card1, card2} {
		e.reg.addCard(server.Card{ID: cardHex(id), Currency: "978", Status: server.CardActive, MaxBalance: 100000})
	}
	e.cfg = server.Config{Registry: e.reg, Keys: e.keys, Ledger: led, Loads: e.loads,
		Logger: quietLogger(t), Now: e.clk.Now}
	for _, o := range opts {
		o(&e.cfg, e)
	}
	e.start()
	return e
}

func cardHex(id wire.CardID) string { return (&vcard{id: id}).hex() }

// start (re)starts the server on a fresh listener with e.cfg.
func (e *env) start() {
	t := e.t
	m := server.NewMetrics()
	e.adv = server.NewLedgerAdvices(e.led, 0, m.ObserveAdviceBatch)
	cfg := e.cfg
	if cfg.Advices == nil {
		cfg.Advices = e.adv
	}
	cfg.Metrics = m
	srv, err := server.New(cfg)
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	e.srv, e.addr, e.stop, e.served = srv, l.Addr().String(), cancel, make(chan error, 1)
	go func() { e.served <- srv.Serve(ctx, l) }()
	t.Cleanup(e.shutdown)
}

// shutdown stops the server gracefully and flushes the batcher.
func (e *env) shutdown() {
	if e.stop == nil {
		return
	}
	e.stop()
	require.NoError(e.t, <-e.served)
	e.adv.Close()
	e.stop = nil
}

func (e *env) term(id string) *tterm {
	mid := map[string]string{tid1: mid1, tid2: mid2}[id]
	return newTTerm(e.t, e.addr, id, mid, e.tmk[id], e.clk.Now)
}

func (e *env) signedOn(id string) *tterm {
	tt := e.term(id)
	require.Equal(e.t, "00", tt.signOn())
	return tt
}

func (e *env) txn(key string) ledger.Txn {
	x, err := e.led.Txn(context.Background(), key)
	require.NoError(e.t, err)
	return x
}

// posted is a fingerprint of everything the ledger holds: balances by kind.
func (e *env) posted() ledger.Report {
	r, err := e.led.Report(context.Background())
	require.NoError(e.t, err)
	for c, v := range r.Imbalance {
		require.Zero(e.t, v, "imbalance in %s", c)
	}
	r.InProgress = nil
	return r
}

// load runs INITIALIZE LOAD, 0200 and CREDIT LOAD on the software card.
func (e *env) load(tt *tterm, c *vcard, amount uint32) (*moov.Message, wire.LogRecord) {
	s := c.initLoad(e.t, amount, tt.id)
	req := tt.loadMsg(c, s)
	resp, rc := tt.send(req)
	require.Equal(e.t, "00", rc)
	rec := c.credit(e.t, s, iccOf(e.t, resp))
	return req, rec
}

func (e *env) loadCompleted(tt *tterm, c *vcard, amount uint32) wire.LogRecord {
	_, rec := e.load(tt, c, amount)
	_, rc := tt.send(tt.adviceMsg(c, rec))
	require.Equal(e.t, "00", rc)
	return rec
}

func sqlite(t *testing.T) *sqldb.DB { return dbtest.Open(t, "sqlite") }

func TestSignOnEchoSignOff(t *testing.T) {
	e := newEnv(t, sqlite(t))
	tt := e.signedOn(tid1)
	require.Equal(t, "00", tt.network(iso8583.NMIEcho))
	require.Equal(t, "00", tt.network(iso8583.NMISignOff))
	// Signed off: no working key, so the answer carries no MAC.
	msg, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: "0800", Transmission: tt.de7(), STAN: tt.nextSTAN(),
		TerminalID: tid1, NetworkCode: iso8583.NMIEcho})
	require.NoError(t, err)
	_, err = tt.c.Send(context.Background(), msg, tt.keys.WorkingKey)
	require.ErrorIs(t, err, iso8583.ErrNoMAC)
	require.Equal(t, "00", tt.signOn(), "a new sign-on restores the session")
	require.Equal(t, "00", tt.network(iso8583.NMIEcho))
}

func TestLoadCompleteDebitBalance(t *testing.T) {
	e := newEnv(t, sqlite(t))
	tt := e.signedOn(tid1)
	c := newVCard(t, card1)

	resp, rc := tt.send(tt.balanceMsg(c))
	require.Equal(t, "00", rc)
	de54, _ := resp.GetString(iso8583.DEAdditionalAmts)
	require.Equal(t, "0002978C000000000000", de54)

	req, rec := e.load(tt, c, 2000)
	key := "load/" + tid1 + "/" + hexOf(t, req)
	require.Equal(t, ledger.StateInProgress, e.txn(key).State, "funded at S2, in progress until the TC arrives")
	require.Equal(t, int64(2000), purseBalance(t, e.led, c.hex()))

	adv := tt.adviceMsg(c, rec)
	_, rc = tt.send(adv)
	require.Equal(t, "00", rc)
	require.Equal(t, ledger.StateCompleted, e.txn(key).State)
	_, rc = tt.send(repeat(t, adv, "0221"))
	require.Equal(t, "94", rc, "an already completed load answers 94")

	for i, amt := range []uint32{350, 100} {
		d := c.debit(t, amt, tid1, uint32(i+1), e.clk.Now())
		_, rc = tt.send(tt.adviceMsg(c, d))
		require.Equal(t, "00", rc)
	}
	require.Equal(t, int64(1550), purseBalance(t, e.led, c.hex()))
	resp, rc = tt.send(tt.balanceMsg(c))
	require.Equal(t, "00", rc)
	de54, _ = resp.GetString(iso8583.DEAdditionalAmts)
	require.Equal(t, "0002978C000000001550", de54)
	m, err := e.led.Balance(context.Background(), ledger.AccountID(ledger.KindMerchant, mid1, "978"))
	require.NoError(t, err)
	require.Equal(t, int64(-450), m, "the merchant is owed the debits")
	e.posted()
}

func hexOf(t testing.TB, msg *moov.Message) string {
	b, err := msg.GetBytes(iso8583.DETxnNumber)
	require.NoError(t, err)
	const h = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, x := range b {
		out = append(out, h[x>>4], h[x&15])
	}
	return string(out)
}

func TestRepeatedLoadGetsIdenticalAnswer(t *testing.T) {
	e := newEnv(t, sqlite(t))
	tt := e.signedOn(tid1)
	c := newVCard(t, card1)
	s := c.initLoad(t, 500, tid1)
	req := tt.loadMsg(c, s)
	r1, rc := tt.send(req)
	require.Equal(t, "00", rc)
	// The same 0200 again, e.g. after a lost response.
	r2, rc := tt.send(repeat(t, req, "0200"))
	require.Equal(t, "00", rc)
	p1, err := iso8583.Pack(r1, tt.keys.WorkingKey)
	require.NoError(t, err)
	p2, err := iso8583.Pack(r2, tt.keys.WorkingKey)
	require.NoError(t, err)
	require.Equal(t, p1, p2, "identical 0210")
	require.Equal(t, int64(500), purseBalance(t, e.led, c.hex()), "posted once")
}

func TestConcurrentAdvicesOneConnection(t *testing.T) {
	e := newEnv(t, sqlite(t))
	tt := e.signedOn(tid1)
	c := newVCard(t, card1)
	e.loadCompleted(tt, c, 50000)
	const n = 40
	msgs := make([]*moov.Message, n)
	for i := range msgs {
		msgs[i] = tt.adviceMsg(c, c.debit(t, 10, tid1, uint32(i+1), e.clk.Now()))
	}
	var wg sync.WaitGroup
	codes := make([]string, n)
	for i := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, codes[i] = tt.send(msgs[i])
		}()
	}
	wg.Wait()
	for _, rc := range codes {
		require.Equal(t, "00", rc)
	}
	require.Equal(t, int64(50000-10*n), purseBalance(t, e.led, c.hex()))
}

func TestReconciliation(t *testing.T) {
	e := newEnv(t, sqlite(t))
	tt := e.signedOn(tid1)
	c := newVCard(t, card1)
	e.loadCompleted(tt, c, 2000)
	req, _ := e.load(tt, c, 300) // reversed below
	_, rc := tt.send(tt.reversalMsg("0400", c, req))
	require.Equal(t, "00", rc)
	c.balance, c.atc = 2000, 1 // the card never credited it
	for i := range 3 {
		_, rc := tt.send(tt.adviceMsg(c, c.debit(t, 100, tid1, uint32(i+1), e.clk.Now())))
		require.Equal(t, "00", rc)
	}
	recon := tt.reconMsg(1, 2000, 1, 300, 3, 300)
	resp, rc := tt.send(recon)
	require.Equal(t, "00", rc)
	sc, _ := resp.GetString(iso8583.DESettlementCode)
	require.Equal(t, iso8583.SettlementInBalance, sc)
	resp, rc = tt.send(repeat(t, recon, "0500"))
	require.Equal(t, "00", rc)
	sc, _ = resp.GetString(iso8583.DESettlementCode)
	require.Equal(t, iso8583.SettlementInBalance, sc, "a repeated 0500 closes nothing new")

	// The next batch: the terminal claims a debit the server never saw.
	resp, rc = tt.send(tt.reconMsg(0, 0, 0, 0, 1, 100))
	require.Equal(t, "00", rc)
	sc, _ = resp.GetString(iso8583.DESettlementCode)
	require.Equal(t, iso8583.SettlementOutOfBalance, sc)
}

func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t, sqlite(t))
	tt := e.signedOn(tid1)
	c := newVCard(t, card1)
	e.loadCompleted(tt, c, 5000)
	const n = 20
	var wg sync.WaitGroup
	codes := make([]string, n)
	errs := make([]error, n)
	msgs := make([]*moov.Message, n)
	for i := range msgs {
		msgs[i] = tt.adviceMsg(c, c.debit(t, 5, tid1, uint32(i+1), e.clk.Now()))
	}
	for i := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := tt.c.Send(context.Background(), msgs[i], tt.keys.WorkingKey)
			errs[i] = err
			if err == nil {
				codes[i], _ = resp.GetString(iso8583.DEResponseCode)
			}
		}()
	}
	e.shutdown()
	wg.Wait()
	// Every advice the server answered is posted; the others were never
	// read (the terminal resends them).
	var acked int64
	for i := range msgs {
		if errs[i] == nil {
			require.Equal(t, "00", codes[i])
			acked++
		}
	}
	require.Equal(t, 5000-5*acked, purseBalance(t, e.led, c.hex()))
	_, err := net.DialTimeout("tcp", e.addr, time.Second)
	require.Error(t, err, "no longer listening")
}

func TestConnectionLimit(t *testing.T) {
	e := newEnv(t, sqlite(t), func(c *server.Config, _ *env) { c.MaxConns = 1 })
	tt := e.signedOn(tid1)
	// A second connection is closed at once.
	c2 := dial(t, e.addr)
	_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := iso8583.ReadMessage(c2, 0)
	require.True(t, errors.Is(err, net.ErrClosed) || err != nil)
	require.Equal(t, "00", tt.network(iso8583.NMIEcho), "the first still works")
}

func TestMetricsExposed(t *testing.T) {
	e := newEnv(t, sqlite(t))
	tt := e.signedOn(tid1)
	require.Equal(t, "00", tt.network(iso8583.NMIEcho))
	mfs, err := e.srv.Metrics().Registry.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, n := range []string{"valuechip_server_requests_total", "valuechip_server_request_duration_seconds",
		"valuechip_server_open_connections"} {
		require.True(t, names[n], n)
	}
}
