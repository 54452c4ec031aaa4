// Package linktest is an in-process money server for tests of terminals
// and of host/link: it speaks the ISO 8583 profile of docs/iso8583.md
// (sign-on, MAC and transaction number checked on every message, balance,
// load, advices, reversals, reconciliation) over loopback TCP, with the
// purse cryptography of terminal.LocalAuthority, and lets a test lose
// answers, force response codes and cut connections. It is a test double,
// not the money server (host/server).
package linktest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/link"
	"github.com/valuechip/valuechip/host/terminal"
)

// Received is one request the server got.
type Received struct {
	MTI, STAN, DE7 string
	TN             []byte
	MACOK, TNOK    bool
	SeedID         uint32
}

type load struct {
	amount                        int64
	cur                           string
	approved, completed, reversed bool
}

// Server answers per docs/iso8583.md with the in-process
// LocalAuthority doing the purse cryptography (S1, S2, TC).
type Server struct {
	tmk  iso8583.Key
	auth *terminal.LocalAuthority
	ln   net.Listener

	mu       sync.Mutex
	now      func() time.Time
	validity time.Duration
	seeds    map[uint32]iso8583.Seed
	nextSeed uint32
	signOns  int
	conns    []net.Conn
	got      []Received
	drop     map[string]int    // MTI → answers to withhold
	code     map[string]string // MTI → forced response code (once per entry in codeN)
	codeN    map[string]int
	closeOn  map[string]int     // MTI → close the connection on the nth such message (1-based countdown)
	loads    map[string]*load   // by the 0200's STAN and DE 7, as DE 90 names them
	byCard   map[string][]*load // by card/ATC, for completion advices
	debits   map[string]bool
	totals   map[string]*link.Totals
	skew     int64 // added to the server's debit amount total (out of balance)
	closed   []link.Totals
	balance  map[wire.CardID]int64
}

// TMK is the test terminal master key of docs/iso8583.md §10.
var TMK = iso8583.Key{0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F}

// New starts a server on a loopback port, stopped when the test ends. Its
// terminals share the TMK (TMK) and its cards the development issuer
// masters (terminal.DevMasters).
func New(t testing.TB) *Server {
	t.Helper()
	m := terminal.DevMasters()
	auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &Server{tmk: TMK, auth: auth, ln: ln, now: time.Now, validity: 12 * time.Hour,
		seeds: map[uint32]iso8583.Seed{}, nextSeed: 1, drop: map[string]int{}, code: map[string]string{},
		codeN: map[string]int{}, closeOn: map[string]int{}, loads: map[string]*load{}, byCard: map[string][]*load{}, debits: map[string]bool{},
		totals: map[string]*link.Totals{}, balance: map[wire.CardID]int64{}}
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

func (s *Server) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		go s.handle(c)
	}
}

// Received returns the requests received so far.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.got...)
}

// SetDrop processes the next n requests of mti but withholds the answers.
func (s *Server) SetDrop(mti string, n int) { s.mu.Lock(); s.drop[mti] = n; s.mu.Unlock() }

// SetCode answers the next n requests of mti with code, unprocessed.
func (s *Server) SetCode(mti, code string, n int) {
	s.mu.Lock()
	s.code[mti], s.codeN[mti] = code, n
	s.mu.Unlock()
}

// SetCloseOn closes the connection, unanswered and unprocessed, on the nth next request of mti.
func (s *Server) SetCloseOn(mti string, n int) { s.mu.Lock(); s.closeOn[mti] = n; s.mu.Unlock() }

// ExpireSeeds makes every seed handed out so far unknown, as after the
// grace period (docs/iso8583.md §7).
func (s *Server) ExpireSeeds() { s.mu.Lock(); s.seeds = map[uint32]iso8583.Seed{}; s.mu.Unlock() }

// Totals are the server's open batch totals of a currency.
func (s *Server) Totals(cur string) link.Totals {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.totals[cur]; t != nil {
		return *t
	}
	return link.Totals{Currency: cur}
}

func (s *Server) tot(cur string) *link.Totals {
	t := s.totals[cur]
	if t == nil {
		t = &link.Totals{Currency: cur}
		s.totals[cur] = t
	}
	return t
}

func randKey() iso8583.Key {
	k := make(iso8583.Key, 16)
	_, _ = rand.Read(k)
	return k
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	var wk iso8583.Key
	for {
		raw, err := iso8583.ReadMessage(c, 8192)
		if err != nil {
			return
		}
		msg, err := iso8583.Unpack(raw)
		if err != nil {
			continue
		}
		mti, _ := msg.GetMTI()
		if mti == iso8583.MTINetworkRequest {
			nmi, _ := msg.GetString(iso8583.DENetworkCode)
			if nmi == iso8583.NMISignOn {
				stan, _ := msg.GetString(iso8583.DESTAN)
				ok := iso8583.VerifyMAC(msg, raw, s.tmk) == nil
				s.mu.Lock()
				s.got = append(s.got, Received{MTI: mti, STAN: stan, MACOK: ok})
				s.mu.Unlock()
				if !ok {
					continue
				}
				var keys iso8583.SignOnKeys
				rsp := s.signOn(msg, &keys)
				out, err := iso8583.Pack(rsp, s.tmk)
				if err != nil {
					panic(err)
				}
				if iso8583.WriteMessage(c, out) != nil {
					return
				}
				wk = keys.WorkingKey
				continue
			}
		}
		if wk == nil {
			continue // nothing before sign-on
		}
		rsp, close, answer := s.process(msg, raw, wk)
		if close {
			return
		}
		if !answer {
			continue
		}
		out, err := iso8583.Pack(rsp, wk)
		if err != nil {
			panic(err)
		}
		if iso8583.WriteMessage(c, out) != nil {
			return
		}
	}
}

func (s *Server) signOn(req *moov.Message, keys *iso8583.SignOnKeys) *moov.Message {
	var nm iso8583.NetworkManagement
	if err := iso8583.Unmarshal(req, &nm); err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.signOns++
	id := s.nextSeed
	s.nextSeed++
	*keys = iso8583.SignOnKeys{WorkingKey: randKey(), Seed: iso8583.Seed{ID: id, Key: randKey(), NotAfter: s.now().Add(s.validity).Truncate(time.Second)}}
	s.seeds[id] = keys.Seed
	s.mu.Unlock()
	block, err := keys.Encode(s.tmk)
	if err != nil {
		panic(err)
	}
	nm.MTI, nm.ResponseCode, nm.KeyData = iso8583.MTINetworkResponse, iso8583.RCApproved, block
	out, err := iso8583.Marshal(&nm)
	if err != nil {
		panic(err)
	}
	return out
}

// process checks MAC and transaction number, then answers.
func (s *Server) process(msg *moov.Message, raw []byte, wk iso8583.Key) (*moov.Message, bool, bool) {
	mti, _ := msg.GetMTI()
	stan, _ := msg.GetString(iso8583.DESTAN)
	de7, _ := msg.GetString(iso8583.DETransmission)
	r := Received{MTI: mti, STAN: stan, DE7: de7, MACOK: iso8583.VerifyMAC(msg, raw, wk) == nil}
	s.mu.Lock()
	defer s.mu.Unlock()
	code := iso8583.RCApproved
	if mti != iso8583.MTINetworkRequest {
		r.TN, _ = msg.GetBytes(iso8583.DETxnNumber)
		id, err := iso8583.TxnSeedID(msg)
		seed, ok := s.seeds[id]
		r.SeedID = id
		r.TNOK = err == nil && ok && seed.VerifyTxnNumber(msg, s.now()) == nil
		if !r.TNOK {
			code = iso8583.RCSecurityViolation
		}
	}
	if !r.MACOK {
		code = iso8583.RCSecurityViolation
	}
	s.got = append(s.got, r)
	if n := s.closeOn[mti]; n > 0 {
		s.closeOn[mti] = n - 1
		if n == 1 {
			return nil, true, false
		}
	}
	if code == iso8583.RCApproved {
		if n := s.codeN[mti]; n > 0 {
			s.codeN[mti] = n - 1
			code = s.code[mti]
		}
	}
	rsp, err := s.answer(mti, msg, code)
	if err != nil {
		panic(err)
	}
	// drop: processed, but the answer is lost.
	if n := s.drop[mti]; n > 0 {
		s.drop[mti] = n - 1
		return nil, false, false
	}
	return rsp, false, true
}

// Closed returns the totals of the batches closed by 0500s, oldest first
// (with the skew of SetSkew).
func (s *Server) Closed() []link.Totals {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]link.Totals(nil), s.closed...)
}

// SignOns is the number of sign-ons answered.
func (s *Server) SignOns() int { s.mu.Lock(); defer s.mu.Unlock(); return s.signOns }

// Authority is the server's purse authority (its ledger of advised records).
func (s *Server) Authority() *terminal.LocalAuthority { return s.auth }

// SetClock replaces the server's clock and the validity of the seeds it
// hands out.
func (s *Server) SetClock(now func() time.Time, validity time.Duration) {
	s.mu.Lock()
	s.now, s.validity = now, validity
	s.mu.Unlock()
}

// SetSkew adds d to the server's debit amount in reconciliation, to make
// a batch out of balance.
func (s *Server) SetSkew(d int64) { s.mu.Lock(); s.skew = d; s.mu.Unlock() }

func respMTI(mti string) string { m, _ := iso8583.ResponseMTI(mti); return m }

func (s *Server) answer(mti string, msg *moov.Message, code string) (*moov.Message, error) {
	switch mti {
	case iso8583.MTINetworkRequest:
		var v iso8583.NetworkManagement
		if err := iso8583.Unmarshal(msg, &v); err != nil {
			return nil, err
		}
		v.MTI, v.ResponseCode = respMTI(mti), code
		return iso8583.Marshal(&v)
	case iso8583.MTIReconRequest:
		var v iso8583.Reconciliation
		if err := iso8583.Unmarshal(msg, &v); err != nil {
			return nil, err
		}
		// As host/server: compare, close the batch either way, echo the
		// terminal's totals with DE 66.
		mine := *s.tot(v.Currency)
		mine.DebitAmount += s.skew
		in := fmt.Sprintf("%010d%010d%010d%016d%016d%016d", mine.Loads, mine.LoadReversals, mine.Debits, mine.LoadAmount, mine.LoadReversalAmount, mine.DebitAmount) ==
			v.CreditsCount+v.CreditRevCount+v.DebitsCount+v.CreditsAmount+v.CreditRevAmount+v.DebitsAmount
		v.MTI, v.ResponseCode, v.TxnNumber = respMTI(mti), code, nil
		v.SettlementCode = iso8583.SettlementOutOfBalance
		if in {
			v.SettlementCode = iso8583.SettlementInBalance
		}
		if code == iso8583.RCApproved {
			s.closed = append(s.closed, mine)
			delete(s.totals, v.Currency)
		}
		return iso8583.Marshal(&v)
	case iso8583.MTIReversalRequest, iso8583.MTIReversalAdvice, iso8583.MTIReversalAdviceRe:
		var v iso8583.Reversal
		if err := iso8583.Unmarshal(msg, &v); err != nil {
			return nil, err
		}
		if code == iso8583.RCApproved {
			d, err := iso8583.DecodeICC(v.ICC)
			if err != nil || d.CardID == nil || d.ATC == nil {
				code = iso8583.RCFormatError
			} else {
				var l *load
				if len(v.OriginalData) == 42 && v.OriginalData[:4] == iso8583.MTIFinancialRequest {
					l = s.loads[v.OriginalData[4:20]]
				}
				switch {
				case l == nil && mti == iso8583.MTIReversalRequest, l != nil && l.completed:
					code = iso8583.RCInvalidTransaction
				case l == nil:
				case l.reversed:
					code = iso8583.RCDuplicate
				default:
					l.reversed = true
					t := s.tot(l.cur)
					t.LoadReversals++
					t.LoadReversalAmount += l.amount
					s.balance[*d.CardID] -= l.amount
				}
			}
		}
		v.MTI, v.ResponseCode, v.TxnNumber = respMTI(mti), code, nil
		v.ICC, v.OriginalData = nil, ""
		return iso8583.Marshal(&v)
	}
	var v iso8583.Transaction
	if err := iso8583.Unmarshal(msg, &v); err != nil {
		return nil, err
	}
	d, derr := iso8583.DecodeICC(v.ICC)
	v.MTI, v.TxnNumber, v.ICC, v.POSEntryMode = respMTI(mti), nil, nil, ""
	if derr != nil || d.CardID == nil {
		code = iso8583.RCFormatError
	}
	if code == iso8583.RCApproved {
		switch mti {
		case iso8583.MTIAuthRequest:
			v.AdditionalAmounts = fmt.Sprintf("0002%sC%012d", v.Currency, s.balance[*d.CardID])
		case iso8583.MTIFinancialRequest:
			req := terminal.LoadRequest{CardID: *d.CardID, KeyVersion: *d.KeyVersion, ATC: *d.ATC, Amount: *d.Amount,
				Currency: *d.Currency, Balance: *d.BalanceBefore, CardNonce: *d.CardNonce, HostNonce: *d.HostNonce, S1: *d.S1}
			copy(req.TerminalID[:], v.TerminalID)
			a, err := s.auth.AuthorizeLoad(context.Background(), req)
			if err != nil {
				code = iso8583.RCInvalidTransaction
				break
			}
			k := fmt.Sprintf("%X/%d", d.CardID[:], *d.ATC)
			l := &load{amount: v.Amount, cur: v.Currency, approved: true}
			s.loads[v.STAN+v.Transmission] = l
			s.byCard[k] = append(s.byCard[k], l)
			s.balance[*d.CardID] += v.Amount
			after := *d.BalanceBefore + *d.Amount
			v.AuthID = fmt.Sprintf("%06d", a.AuthRef%1000000)
			v.AdditionalAmounts = fmt.Sprintf("0002%sC%012d", v.Currency, after)
			if v.ICC, err = (iso8583.ICCData{ATC: d.ATC, BalanceAfter: &after, S2: &a.S2, DateTime: &a.DateTime, AuthRef: &a.AuthRef}).Encode(); err != nil {
				return nil, err
			}
		case iso8583.MTIFinancialAdvice, iso8583.MTIFinancialAdviceRe:
			if d.LogRecord == nil {
				code = iso8583.RCFormatError
				break
			}
			rec := *d.LogRecord
			if s.auth.Advise(context.Background(), *d.CardID, rec) != nil {
				code = iso8583.RCInvalidTransaction
				break
			}
			k := fmt.Sprintf("%X/%d", d.CardID[:], rec.ATC)
			if rec.Type == wire.TypeLoad {
				var l *load
				for _, c := range s.byCard[k] {
					if !c.reversed {
						l = c
					}
				}
				switch {
				case l == nil || l.reversed:
					code = iso8583.RCInvalidTransaction
				case l.completed:
					code = iso8583.RCDuplicate
				default:
					l.completed = true
					t := s.tot(v.Currency)
					t.Loads++
					t.LoadAmount += v.Amount
				}
				break
			}
			if s.debits[k] {
				code = iso8583.RCDuplicate
				break
			}
			s.debits[k] = true
			t := s.tot(v.Currency)
			t.Debits++
			t.DebitAmount += v.Amount
			s.balance[*d.CardID] -= v.Amount
		}
	}
	v.ResponseCode = code
	switch mti {
	case iso8583.MTIAuthRequest:
		return iso8583.Marshal((*iso8583.BalanceInquiry)(&v))
	case iso8583.MTIFinancialRequest:
		return iso8583.Marshal((*iso8583.Load)(&v))
	}
	v.AdditionalAmounts = ""
	return iso8583.Marshal((*iso8583.Advice)(&v))
}
