package server_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"strings"
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

// exchange sends raw (already packed) on a fresh connection and returns
// DE 39 of the answer, "closed" if the server hung up, and whether the
// answer carried a valid MAC under key.
func exchange(t *testing.T, addr string, raw []byte, key iso8583.Key) (string, bool) {
	t.Helper()
	resp := rawExchange(t, addr, frame(raw))
	if resp == nil {
		return "closed", false
	}
	msg, err := iso8583.Unpack(resp)
	require.NoError(t, err)
	rc, _ := msg.GetString(iso8583.DEResponseCode)
	macOK := key != nil && iso8583.VerifyMAC(msg, resp, key) == nil
	return rc, macOK
}

func pack(t testing.TB, msg *moov.Message, key iso8583.Key) []byte {
	b, err := iso8583.Pack(msg, key)
	require.NoError(t, err)
	return b
}

// TestBadInput: every bad message of issue 5 gets its documented code
// (docs/iso8583.md §9, docs/server.md §4), nothing is posted, and the
// server keeps answering.
func TestBadInput(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) { badInput(t, db) })
}

func badInput(t *testing.T, db *sqldb.DB) {
	e := newEnv(t, db, withSQLLoads(db))
	tt := e.signedOn(tid1)
	t2 := e.signedOn(tid2)
	c := newVCard(t, card1)
	loadRec := e.loadCompleted(tt, c, 2000)
	debit := c.debit(t, 100, tid1, 1, e.clk.Now())
	_, rc := tt.send(tt.adviceMsg(c, debit))
	require.Equal(t, "00", rc)
	wk := tt.keys.WorkingKey

	type tc struct {
		name string
		raw  func() []byte
		code string
		mac  bool // the answer is MACed under the working key
	}
	loadReq := func(mut func(*loadSession, *iso8583.ICCData), msgMut func(*moov.Message)) []byte {
		cc := *c
		s := cc.initLoad(t, 500, tid1)
		d := iso8583.ICCData{CardID: &cc.id, ATC: &s.d.ATC, Amount: &s.d.Amount, Currency: &s.d.Currency,
			BalanceBefore: &s.d.Balance, KeyVersion: &s.kvn, CardNonce: &s.cn, HostNonce: &s.hn, S1: &s.s1}
		if mut != nil {
			mut(s, &d)
		}
		msg, err := iso8583.Marshal(&iso8583.Load{MTI: "0200", PAN: cc.pan(), ProcessingCode: iso8583.PCLoad,
			Amount: int64(s.d.Amount), Transmission: tt.de7(), STAN: tt.nextSTAN(), POSEntryMode: "072",
			TerminalID: tid1, MerchantID: mid1, Currency: "978", ICC: icc(t, d)})
		require.NoError(t, err)
		if msgMut != nil {
			msgMut(msg)
		}
		return pack(t, tt.numbered(msg), wk)
	}
	goodAdvice := func() *moov.Message {
		return tt.adviceMsg(c, c.debit(t, 10, tid1, 99, e.clk.Now()))
	}
	c.balance, c.atc = debit.BalanceAfter, debit.ATC // goodAdvice must not move the card's state
	reset := func() { c.balance, c.atc = debit.BalanceAfter, debit.ATC }
	cases := []tc{
		{"malformed DE 55 length", func() []byte {
			b := pack(t, goodAdvice(), wk)
			reset()
			i := strings.Index(string(b), "072\xDF\x60")
			require.Positive(t, i)
			b[i+1] = 'X'
			return b
		}, "30", true},
		{"trailing bytes", func() []byte {
			b := append(pack(t, goodAdvice(), wk), 0)
			reset()
			return b
		}, "30", true},
		{"oversize field DE 2", func() []byte {
			b := pack(t, tt.balanceMsg(c), wk)
			i := strings.Index(string(b), "16"+c.pan())
			require.Positive(t, i)
			return append(append(append([]byte{}, b[:i]...), []byte("20"+c.pan()+"0000")...), b[i+18:]...)
		}, "30", true},
		{"unrecoverable garbage", func() []byte {
			b := make([]byte, 40)
			_, _ = rand.Read(b)
			b[0] = 0xFF
			return b
		}, "closed", false},
		{"wrong MAC", func() []byte {
			b := pack(t, tt.balanceMsg(c), wk)
			b[len(b)-1] ^= 1
			return b
		}, "63", true},
		{"MAC under another key", func() []byte { return pack(t, tt.balanceMsg(c), randKey()) }, "63", true},
		{"unknown terminal", func() []byte {
			msg := tt.balanceMsg(c)
			_ = msg.Field(iso8583.DETerminalID, "TERM9999")
			return pack(t, tt.numbered(msg), wk)
		}, "58", false},
		{"merchant of another terminal", func() []byte {
			msg := tt.balanceMsg(c)
			_ = msg.Field(iso8583.DEMerchantID, mid2)
			return pack(t, tt.numbered(msg), wk)
		}, "58", true},
		{"field altered after numbering", func() []byte {
			msg := tt.adviceMsg(c, c.debit(t, 10, tid1, 98, e.clk.Now()))
			reset()
			_ = msg.Field(iso8583.DEPOSEntryMode, "071") // not bound: still fine
			_ = msg.Field(iso8583.DESTAN, "999999")      // bound: 63
			return pack(t, msg, wk)
		}, "63", true},
		{"no transaction number", func() []byte {
			msg := tt.balanceMsg(c)
			msg.UnsetField(iso8583.DETxnNumber)
			return pack(t, msg, wk)
		}, "63", true},
		{"seed of another terminal", func() []byte {
			msg := tt.balanceMsg(c)
			require.NoError(t, t2.keys.Seed.SetTxnNumber(msg))
			return pack(t, msg, wk)
		}, "63", true},
		{"unknown card", func() []byte {
			other := newVCard(t, wire.CardID{0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99, 0x99})
			return pack(t, tt.balanceMsg(other), wk)
		}, "14", true},
		{"DE 2 is not DF60", func() []byte {
			msg := tt.balanceMsg(c)
			_ = msg.Field(iso8583.DEPAN, cardHex(card2))
			return pack(t, tt.numbered(msg), wk)
		}, "14", true},
		{"forged S1", func() []byte { return loadReq(func(_ *loadSession, d *iso8583.ICCData) { d.S1[0] ^= 1 }, nil) }, "12", true},
		{"wrong key version", func() []byte {
			return loadReq(func(_ *loadSession, d *iso8583.ICCData) { d.KeyVersion = new(byte(2)) }, nil)
		}, "12", true},
		{"DE 4 is not DF62", func() []byte {
			return loadReq(nil, func(m *moov.Message) { _ = m.Field(iso8583.DEAmount, "501") })
		}, "13", true},
		{"DE 49 is not DF63", func() []byte {
			return loadReq(nil, func(m *moov.Message) { _ = m.Field(iso8583.DECurrency, "840") })
		}, "30", true},
		{"amount 0", func() []byte {
			return loadReq(func(s *loadSession, d *iso8583.ICCData) { d.Amount = new(uint32(0)) },
				func(m *moov.Message) { _ = m.Field(iso8583.DEAmount, "0") })
		}, "13", true},
		{"above the maximum balance", func() []byte {
			return loadReq(func(s *loadSession, d *iso8583.ICCData) {
				s.d.Amount = 99000 // 1900 + 99000 > 100000; S1 recomputed below
				var err error
				s.s1, err = wire.ComputeS1(s.sk, s.d)
				require.NoError(t, err)
				d.Amount, d.S1 = &s.d.Amount, &s.s1
			}, nil)
		}, "13", true},
		{"extra DE 55 tag", func() []byte {
			return loadReq(func(s *loadSession, d *iso8583.ICCData) { d.TC = &s.s1 }, nil)
		}, "30", true},
		{"forged TC", func() []byte {
			rec := c.debit(t, 10, tid1, 97, e.clk.Now())
			reset()
			rec.TC[7] ^= 1
			return pack(t, tt.adviceMsg(c, rec), wk)
		}, "12", true},
		{"record altered, TC of the original", func() []byte {
			rec := c.debit(t, 10, tid1, 96, e.clk.Now())
			reset()
			rec.Amount, rec.BalanceAfter = 1, rec.BalanceAfter+9
			return pack(t, tt.adviceMsg(c, rec), wk)
		}, "12", true},
		{"replayed advice", func() []byte { return pack(t, tt.adviceMsg(c, debit), wk) }, "94", true},
		{"replayed load completion", func() []byte { return pack(t, tt.adviceMsg(c, loadRec), wk) }, "94", true},
		{"debit record of another terminal", func() []byte {
			rec := c.debit(t, 10, tid2, 95, e.clk.Now())
			reset()
			return pack(t, tt.adviceMsg(c, rec), wk)
		}, "12", true},
		{"completion of a load never authorised", func() []byte {
			rec := loadRec
			rec.ATC, rec.BalanceAfter = 7, 9999
			var err error
			rec.TC, err = wire.ComputeTC(c.keys.TC.Key, c.id, rec)
			require.NoError(t, err)
			return pack(t, tt.adviceMsg(c, rec), wk)
		}, "12", true},
		{"0500 with a malformed DE 97", func() []byte {
			msg := tt.reconMsg(0, 0, 0, 0, 0, 0)
			_ = msg.Field(iso8583.DENetSettlement, "X0000000000000000")
			return pack(t, tt.numbered(msg), wk)
		}, "30", true},
		{"0500 without DE 76", func() []byte {
			msg := tt.reconMsg(0, 0, 0, 0, 0, 0)
			msg.UnsetField(iso8583.DEDebitsCount)
			return pack(t, tt.numbered(msg), wk)
		}, "30", true},
		{"0400 without DE 90", func() []byte {
			req, err := iso8583.Unpack(loadReq(nil, nil))
			require.NoError(t, err)
			msg := tt.reversalMsg("0400", c, req)
			msg.UnsetField(iso8583.DEOriginalData)
			return pack(t, tt.numbered(msg), wk)
		}, "30", true},
		{"unsupported processing code", func() []byte {
			msg := tt.balanceMsg(c)
			_ = msg.Field(iso8583.DEProcessingCode, "310000")
			return pack(t, tt.numbered(msg), wk)
		}, "12", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.posted()
			rc, macOK := exchange(t, e.addr, tc.raw(), wk)
			require.Equal(t, tc.code, rc)
			require.Equal(t, tc.mac, macOK, "MAC of the answer")
			require.Equal(t, before, e.posted(), "nothing posted")
			require.Equal(t, "00", tt.network(iso8583.NMIEcho), "the server still answers")
		})
	}

	t.Run("reversal naming another card or amount", func(t *testing.T) {
		s := c.initLoad(t, 10, tid1)
		req := tt.loadMsg(c, s)
		_, rc := tt.send(req)
		require.Equal(t, "00", rc)
		before := e.posted()
		other := newVCard(t, card2)
		_, rc = tt.send(tt.reversalMsg("0400", other, req))
		require.Equal(t, "12", rc)
		bad := tt.reversalMsg("0400", c, req)
		_ = bad.Field(iso8583.DEAmount, "11")
		_, rc = tt.send(tt.numbered(bad))
		require.Equal(t, "12", rc)
		require.Equal(t, before, e.posted())
		_, rc = tt.send(tt.reversalMsg("0400", c, req))
		require.Equal(t, "00", rc, "the genuine reversal still works")
	})

	t.Run("oversize frame", func(t *testing.T) {
		conn := dial(t, e.addr)
		_, err := conn.Write([]byte{0xFF, 0xFF, 1, 2, 3})
		require.NoError(t, err)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = iso8583.ReadMessage(conn, 0)
		require.Error(t, err, "closed")
		require.Equal(t, "00", tt.network(iso8583.NMIEcho))
	})

	t.Run("card states", func(t *testing.T) {
		for _, st := range []struct {
			status server.CardStatus
			code   string
		}{{server.CardHotlisted, "62"}, {server.CardBlocked, "57"}} {
			e.reg.setCardStatus(c.hex(), st.status)
			before := e.posted()
			rc, _ := exchange(t, e.addr, loadReq(nil, nil), wk)
			require.Equal(t, st.code, rc, st.status)
			require.Equal(t, before, e.posted())
		}
		rc, _ := exchange(t, e.addr, pack(t, tt.balanceMsg(c), wk), wk)
		require.Equal(t, "00", rc, "a blocked card's balance is still answered")
		e.reg.setCardStatus(c.hex(), server.CardActive)
	})

	t.Run("key source down", func(t *testing.T) {
		e.keys.mu.Lock()
		e.keys.fail = true
		e.keys.mu.Unlock()
		defer func() { e.keys.mu.Lock(); e.keys.fail = false; e.keys.mu.Unlock() }()
		before := e.posted()
		rc, _ := exchange(t, e.addr, loadReq(nil, nil), wk)
		require.Equal(t, "91", rc)
		require.Equal(t, before, e.posted())
	})

	t.Run("blocked terminal", func(t *testing.T) {
		e.reg.setTerminalActive(tid1, false)
		defer e.reg.setTerminalActive(tid1, true)
		rc, macOK := exchange(t, e.addr, pack(t, tt.balanceMsg(c), wk), wk)
		require.Equal(t, "58", rc)
		require.True(t, macOK)
	})

	t.Run("expired seed", func(t *testing.T) {
		msg := tt.balanceMsg(c)
		e.clk.Add(13 * time.Hour)
		defer e.clk.Add(-13 * time.Hour)
		rc, _ := exchange(t, e.addr, pack(t, msg, wk), wk)
		require.Equal(t, "63", rc)
	})
}

// panicRegistry panics on card lookups.
type panicRegistry struct{ *fakeRegistry }

func (panicRegistry) Card(context.Context, string) (server.Card, error) { panic("boom") }

func TestPanicAnswered96(t *testing.T) {
	e := newEnv(t, sqlite(t), func(c *server.Config, e *env) { c.Registry = panicRegistry{e.reg} })
	tt := e.signedOn(tid1)
	c := newVCard(t, card1)
	_, rc := tt.send(tt.balanceMsg(c))
	require.Equal(t, "96", rc)
	require.Equal(t, "00", tt.network(iso8583.NMIEcho))
}

// FuzzHandle: whatever arrives in a frame, Handle answers or hangs up
// without panicking (no recovered panic either) and posts nothing.
func FuzzHandle(f *testing.F) {
	for _, s := range [][]byte{
		[]byte("0800\x82\x20\x00\x00\x00\x80\x00\x00\x04\x00\x00\x00\x00\x00\x00\x011121080000000001TERM0001001\x00\x00\x00\x00\x00\x00\x00\x00"),
		[]byte("0100\x72\x20\x04\x00\x00\xC0\x80\x05"),
		[]byte("0220"),
		{0xFF, 0x00},
	} {
		f.Add(s)
	}
	db := dbtest.Open(f, "sqlite")
	led, err := ledger.New(context.Background(), db)
	require.NoError(f, err)
	reg := newFakeRegistry(time.Now)
	reg.addTerminal(tid1, mid1)
	_, err = reg.SignOn(context.Background(), tid1)
	require.NoError(f, err)
	reg.addCard(server.Card{ID: cardHex(card1), Currency: "978", Status: server.CardActive, MaxBalance: 100000})
	adv := server.NewLedgerAdvices(led, 0, nil)
	defer adv.Close()
	m := server.NewMetrics()
	srv, err := server.New(server.Config{Registry: reg, Keys: &fakeKeys{}, Ledger: led, Advices: adv,
		Loads: server.NewMemLoads(), Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, _ := srv.Handle(context.Background(), raw)
		if out != nil {
			_, err := iso8583.Unpack(out)
			require.NoError(t, err, "the answer is a valid message")
		}
		mfs, err := m.Registry.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "valuechip_server_panics_total" {
				require.Zero(t, mf.GetMetric()[0].GetCounter().GetValue())
			}
		}
	})
}
