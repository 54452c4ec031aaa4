package server_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/terminal"
)

// fakeRegistry is an in-memory Registry.
type fakeRegistry struct {
	mu       sync.Mutex
	terms    map[string]server.Terminal
	wk       map[string]iso8583.Key
	seeds    map[uint32]server.SeedInfo
	cards    map[string]server.Card
	nextSeed uint32
	ttl      time.Duration
	now      func() time.Time
}

func newFakeRegistry(now func() time.Time) *fakeRegistry {
	return &fakeRegistry{terms: map[string]server.Terminal{}, wk: map[string]iso8583.Key{},
		seeds: map[uint32]server.SeedInfo{}, cards: map[string]server.Card{}, ttl: 12 * time.Hour, now: now}
}

func randKey() iso8583.Key {
	k := make(iso8583.Key, 16)
	_, _ = rand.Read(k)
	return k
}

func (f *fakeRegistry) addTerminal(id, merchant string) iso8583.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	tmk := randKey()
	f.terms[id] = server.Terminal{ID: id, MerchantID: merchant, Active: true, TMK: tmk}
	return tmk
}

func (f *fakeRegistry) setTerminalActive(id string, active bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.terms[id]
	t.Active = active
	f.terms[id] = t
}

func (f *fakeRegistry) addCard(c server.Card) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cards[c.ID] = c
}

func (f *fakeRegistry) setCardStatus(id string, st server.CardStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cards[id]
	c.Status = st
	f.cards[id] = c
}

func (f *fakeRegistry) Terminal(_ context.Context, id string) (server.Terminal, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.terms[id]
	if !ok {
		return t, server.ErrNotFound
	}
	return t, nil
}

func (f *fakeRegistry) SignOn(_ context.Context, tid string) (iso8583.SignOnKeys, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextSeed++
	k := iso8583.SignOnKeys{WorkingKey: randKey(), Seed: iso8583.Seed{ID: f.nextSeed, Key: randKey(),
		NotAfter: f.now().Add(f.ttl).Truncate(time.Second)}}
	f.wk[tid] = k.WorkingKey
	f.seeds[k.Seed.ID] = server.SeedInfo{TerminalID: tid, Seed: k.Seed}
	return k, nil
}

func (f *fakeRegistry) SignOff(_ context.Context, tid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.wk, tid)
	return nil
}

// lookup reads m[k] under mu, ErrNotFound when absent, as the registry
// answers.
func lookup[K comparable, V any](mu *sync.Mutex, m map[K]V, k K) (V, error) {
	mu.Lock()
	defer mu.Unlock()
	v, ok := m[k]
	if !ok {
		return v, server.ErrNotFound
	}
	return v, nil
}

func (f *fakeRegistry) WorkingKey(_ context.Context, tid string) (iso8583.Key, error) {
	return lookup(&f.mu, f.wk, tid)
}

func (f *fakeRegistry) Seed(_ context.Context, id uint32) (server.SeedInfo, error) {
	return lookup(&f.mu, f.seeds, id)
}

func (f *fakeRegistry) Card(_ context.Context, id string) (server.Card, error) {
	return lookup(&f.mu, f.cards, id)
}

// fakeKeys is the key source with the public development masters.
type fakeKeys struct {
	mu   sync.Mutex
	fail bool
}

func (k *fakeKeys) Masters(context.Context) (wire.Keys, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail {
		return wire.Keys{}, fmt.Errorf("HSM offline")
	}
	return terminal.DevMasters(), nil
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// vcard is a software purse: it computes genuine S1, checks S2 and
// computes the TC with keys diversified from the development masters
// (docs/purse.md §5), without the applet — the chip itself is used by the
// integration tests.
type vcard struct {
	id      wire.CardID
	keys    wire.Keys
	cur     wire.Currency
	balance uint32
	atc     uint32
}

func newVCard(t testing.TB, id wire.CardID) *vcard {
	k, err := terminal.DevMasters().Diversify(id)
	require.NoError(t, err)
	return &vcard{id: id, keys: k, cur: wire.Currency{0x09, 0x78}}
}

func (c *vcard) hex() string { return strings.ToUpper(fmt.Sprintf("%x", c.id[:])) }
func (c *vcard) pan() string { return c.hex() }

// loadSession is an INITIALIZE LOAD: the request fields and S1.
type loadSession struct {
	d      wire.LoadData
	cn, hn wire.Nonce
	s1     wire.MAC
	sk     wire.Key
	kvn    byte
}

func (c *vcard) initLoad(t testing.TB, amount uint32, tid string) *loadSession {
	s := &loadSession{kvn: c.keys.Load.Version}
	_, _ = rand.Read(s.cn[:])
	_, _ = rand.Read(s.hn[:])
	s.d = wire.LoadData{CardID: c.id, ATC: c.atc + 1, Amount: amount, Currency: c.cur, Balance: c.balance,
		TerminalID: wire.TerminalID([]byte(tid))}
	var err error
	s.sk, err = wire.LoadSessionKey(c.keys.Load.Key, c.id, s.d.ATC, s.cn, s.hn)
	require.NoError(t, err)
	s.s1, err = wire.ComputeS1(s.sk, s.d)
	require.NoError(t, err)
	return s
}

// credit is CREDIT LOAD: verify S2, apply, return the record with its TC.
func (c *vcard) credit(t testing.TB, s *loadSession, icc iso8583.ICCData) wire.LogRecord {
	require.NotNil(t, icc.S2)
	d := s.d
	d.DateTime, d.AuthRef = *icc.DateTime, *icc.AuthRef
	s2, err := wire.ComputeS2(s.sk, d, s.s1)
	require.NoError(t, err)
	require.True(t, s2.Equal(*icc.S2), "S2 verifies on the card")
	after, _ := d.BalanceAfter()
	rec := wire.LogRecord{ATC: d.ATC, Type: wire.TypeLoad, Amount: d.Amount, BalanceAfter: after, Currency: d.Currency,
		DateTime: d.DateTime, TerminalID: d.TerminalID, Reference: d.AuthRef, HostMAC: s2, CardMAC: s.s1}
	rec.TC, err = wire.ComputeTC(c.keys.TC.Key, c.id, rec)
	require.NoError(t, err)
	c.balance, c.atc = after, d.ATC
	return rec
}

// debit is an offline debit: M1/M2 are opaque to the server, the TC is
// genuine.
func (c *vcard) debit(t testing.TB, amount uint32, tid string, seq uint32, at time.Time) wire.LogRecord {
	require.LessOrEqual(t, amount, c.balance)
	dt, err := wire.DateTimeOf(at.UTC())
	require.NoError(t, err)
	rec := wire.LogRecord{ATC: c.atc + 1, Type: wire.TypeDebit, Amount: amount, BalanceAfter: c.balance - amount,
		Currency: c.cur, DateTime: dt, TerminalID: wire.TerminalID([]byte(tid)), Reference: seq}
	_, _ = rand.Read(rec.HostMAC[:])
	_, _ = rand.Read(rec.CardMAC[:])
	rec.TC, err = wire.ComputeTC(c.keys.TC.Key, c.id, rec)
	require.NoError(t, err)
	c.balance, c.atc = rec.BalanceAfter, rec.ATC
	return rec
}

// tterm is a test terminal speaking ISO 8583 to the server over TCP.
type tterm struct {
	t        testing.TB
	addr     string
	c        *iso8583.Client
	id       string
	merchant string
	tmk      iso8583.Key
	keys     iso8583.SignOnKeys
	mu       sync.Mutex
	stan     int
	now      func() time.Time
}

func dial(t testing.TB, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newTTerm(t testing.TB, addr, id, merchant string, tmk iso8583.Key, now func() time.Time) *tterm {
	tt := &tterm{t: t, addr: addr, id: id, merchant: merchant, tmk: tmk, now: now}
	tt.c = iso8583.NewClient(dial(t, addr), 0)
	tt.c.Timeout = 20 * time.Second
	t.Cleanup(func() { _ = tt.c.Close() })
	return tt
}

func (tt *tterm) nextSTAN() string {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	tt.stan++
	return fmt.Sprintf("%06d", tt.stan)
}

func (tt *tterm) de7() string { return tt.now().UTC().Format("0102150405") }

func (tt *tterm) signOn() string {
	msg, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: "0800", Transmission: tt.de7(), STAN: tt.nextSTAN(),
		TerminalID: tt.id, NetworkCode: iso8583.NMISignOn})
	require.NoError(tt.t, err)
	resp, err := tt.c.Send(context.Background(), msg, tt.tmk)
	require.NoError(tt.t, err)
	rc, _ := resp.GetString(iso8583.DEResponseCode)
	if rc != iso8583.RCApproved {
		return rc
	}
	kb, err := resp.GetBytes(iso8583.DEKeyData)
	require.NoError(tt.t, err)
	tt.keys, err = iso8583.DecodeSignOnKeys(kb, tt.tmk)
	require.NoError(tt.t, err)
	return rc
}

func (tt *tterm) network(code string) string {
	msg, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: "0800", Transmission: tt.de7(), STAN: tt.nextSTAN(),
		TerminalID: tt.id, NetworkCode: code})
	require.NoError(tt.t, err)
	resp, err := tt.c.Send(context.Background(), msg, tt.keys.WorkingKey)
	require.NoError(tt.t, err)
	rc, _ := resp.GetString(iso8583.DEResponseCode)
	return rc
}

// numbered sets DE 62 under the current seed.
func (tt *tterm) numbered(msg *moov.Message) *moov.Message {
	require.NoError(tt.t, tt.keys.Seed.SetTxnNumber(msg))
	return msg
}

// send sends a numbered message under the working key and returns the
// response and its DE 39.
func (tt *tterm) send(msg *moov.Message) (*moov.Message, string) {
	tt.t.Helper()
	resp, err := tt.c.Send(context.Background(), msg, tt.keys.WorkingKey)
	require.NoError(tt.t, err)
	rc, _ := resp.GetString(iso8583.DEResponseCode)
	return resp, rc
}

func icc(t testing.TB, d iso8583.ICCData) []byte {
	b, err := d.Encode()
	require.NoError(t, err)
	return b
}

func (tt *tterm) balanceMsg(c *vcard) *moov.Message {
	msg, err := iso8583.Marshal(&iso8583.BalanceInquiry{MTI: "0100", PAN: c.pan(), ProcessingCode: iso8583.PCBalance,
		Transmission: tt.de7(), STAN: tt.nextSTAN(), POSEntryMode: "072", TerminalID: tt.id, MerchantID: tt.merchant,
		Currency: "978", ICC: icc(tt.t, iso8583.ICCData{CardID: &c.id})})
	require.NoError(tt.t, err)
	return tt.numbered(msg)
}

func (tt *tterm) loadMsg(c *vcard, s *loadSession) *moov.Message {
	msg, err := iso8583.Marshal(&iso8583.Load{MTI: "0200", PAN: c.pan(), ProcessingCode: iso8583.PCLoad,
		Amount: int64(s.d.Amount), Transmission: tt.de7(), STAN: tt.nextSTAN(), POSEntryMode: "072",
		TerminalID: tt.id, MerchantID: tt.merchant, Currency: "978",
		ICC: icc(tt.t, iso8583.ICCData{CardID: &c.id, ATC: &s.d.ATC, Amount: &s.d.Amount, Currency: &s.d.Currency,
			BalanceBefore: &s.d.Balance, KeyVersion: &s.kvn, CardNonce: &s.cn, HostNonce: &s.hn, S1: &s.s1})})
	require.NoError(tt.t, err)
	return tt.numbered(msg)
}

func (tt *tterm) adviceMsg(c *vcard, rec wire.LogRecord) *moov.Message {
	pc := iso8583.PCPurchase
	if rec.Type == wire.TypeLoad {
		pc = iso8583.PCLoad
	}
	msg, err := iso8583.Marshal(&iso8583.Advice{MTI: "0220", PAN: c.pan(), ProcessingCode: pc,
		Amount: int64(rec.Amount), Transmission: tt.de7(), STAN: tt.nextSTAN(), POSEntryMode: "072",
		TerminalID: tt.id, MerchantID: tt.merchant, Currency: "978",
		ICC: icc(tt.t, iso8583.ICCData{CardID: &c.id, LogRecord: &rec})})
	require.NoError(tt.t, err)
	return tt.numbered(msg)
}

// reversalMsg reverses the load request orig (0400, or 0420 with advice).
func (tt *tterm) reversalMsg(mti string, c *vcard, orig *moov.Message) *moov.Message {
	stan, _ := orig.GetString(iso8583.DESTAN)
	de7, _ := orig.GetString(iso8583.DETransmission)
	amt, _ := orig.GetString(iso8583.DEAmount)
	var amount int64
	_, _ = fmt.Sscan(amt, &amount)
	ib, _ := orig.GetBytes(iso8583.DEICC)
	d, err := iso8583.DecodeICC(ib)
	require.NoError(tt.t, err)
	msg, err := iso8583.Marshal(&iso8583.Reversal{MTI: mti, PAN: c.pan(), ProcessingCode: iso8583.PCLoad,
		Amount: amount, Transmission: tt.de7(), STAN: tt.nextSTAN(), TerminalID: tt.id, MerchantID: tt.merchant,
		Currency: "978", ICC: icc(tt.t, iso8583.ICCData{CardID: &c.id, ATC: d.ATC}),
		OriginalData: "0200" + stan + de7 + strings.Repeat("0", 22)})
	require.NoError(tt.t, err)
	return tt.numbered(msg)
}

func (tt *tterm) reconMsg(loads, loadAmt, revs, revAmt, debits, debitAmt int64) *moov.Message {
	net := loadAmt - revAmt - debitAmt
	sign := "C"
	if net < 0 {
		sign, net = "D", -net
	}
	msg, err := iso8583.Marshal(&iso8583.Reconciliation{MTI: "0500", Transmission: tt.de7(), STAN: tt.nextSTAN(),
		TerminalID: tt.id, MerchantID: tt.merchant, Currency: "978",
		CreditsCount: fmt.Sprintf("%010d", loads), CreditRevCount: fmt.Sprintf("%010d", revs),
		DebitsCount: fmt.Sprintf("%010d", debits), DebitRevCount: fmt.Sprintf("%010d", 0),
		CreditsAmount: fmt.Sprintf("%016d", loadAmt), CreditRevAmount: fmt.Sprintf("%016d", revAmt),
		DebitsAmount: fmt.Sprintf("%016d", debitAmt), DebitRevAmount: fmt.Sprintf("%016d", 0),
		NetSettlement: fmt.Sprintf("%s%016d", sign, net)})
	require.NoError(tt.t, err)
	return tt.numbered(msg)
}

// repeat turns a sent request into its repeat (0221/0421): same fields,
// same DE 62 (docs/iso8583.md §2).
func repeat(t testing.TB, msg *moov.Message, mti string) *moov.Message {
	c, err := msg.Clone()
	require.NoError(t, err)
	c.MTI(mti)
	return c
}

func iccOf(t testing.TB, resp *moov.Message) iso8583.ICCData {
	b, err := resp.GetBytes(iso8583.DEICC)
	require.NoError(t, err)
	d, err := iso8583.DecodeICC(b)
	require.NoError(t, err)
	return d
}

// rawExchange writes one frame on a fresh connection and returns the
// response frame, or nil if the server closed the connection.
func rawExchange(t testing.TB, addr string, frame []byte) []byte {
	c := dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(frame)
	require.NoError(t, err)
	b, err := iso8583.ReadMessage(c, 0)
	if err != nil {
		require.ErrorIs(t, err, io.EOF)
		return nil
	}
	return b
}

func frame(b []byte) []byte { return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...) }

func quietLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("VALUECHIP_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// purseBalance is the shadow balance of a card (a liability: negated).
func purseBalance(t testing.TB, l server.Ledger, card string) int64 {
	b, err := l.Balance(context.Background(), ledger.AccountID(ledger.KindPurse, card, "978"))
	if err != nil {
		return 0
	}
	return -b
}
