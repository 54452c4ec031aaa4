// Package loadgen drives a running money server with offline debit advices
// over TCP, as a fleet of terminals would (docs/iso8583.md §2.4): each
// simulated terminal is registered with its own terminal master key, signs
// on (0800) for its working key and transaction-number seed, and sends
// genuine 0220 advices — DE 64 MAC under its working key, DE 62 transaction
// number under its seed, the card record's TC under the card's K_TC derived
// from the key ring's master — for cards registered in the registry, with
// consecutive ATCs per card. It counts what the server acknowledged (00)
// and what it answered otherwise, and can verify afterwards that every
// acknowledged advice is in the ledger exactly once (docs/ledger.md §11).
//
// The advices of a run are built and signed before its timed window (a
// terminal builds its messages on its own CPU, not the server's); a terminal
// that runs out builds more on the fly, counted in Result.BuiltLive.
package loadgen

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	moov "github.com/moov-io/iso8583"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/registry"
)

// Errors of this package.
var (
	// ErrSignOn: a terminal could not sign on.
	ErrSignOn = errors.New("loadgen: sign-on refused")
	// ErrVerify: the ledger does not hold the acknowledged advices exactly
	// once.
	ErrVerify = errors.New("loadgen: ledger does not match the acknowledged advices")
)

// Currency is the currency of the generated advices (ISO 4217 978, EUR).
const Currency = "978"

var wireEUR = wire.Currency{0x09, 0x78}

// startBalance is the balance a generated card claims before its first
// debit (the record must be consistent: balance before = after + amount).
const startBalance = 1 << 31

// Terminal is a registered terminal and the cards it takes payments from.
type Terminal struct {
	ID, MerchantID string
	TMK            iso8583.Key
	Cards          []wire.CardID
}

// Provision registers n terminals, each with its own TMK and cardsPer cards
// of its own, in reg. IDs start with prefix (one letter or digit; a random
// part keeps several fleets on one database apart). keyVersion is the
// version of the key ring's K_TC master (registry.Card.KeyVersion).
func Provision(ctx context.Context, reg *registry.Store, n, cardsPer int, keyVersion byte) ([]Terminal, error) {
	if n <= 0 || cardsPer <= 0 || n > 999999 || cardsPer > 9999 {
		return nil, fmt.Errorf("loadgen: %d terminals × %d cards: out of range", n, cardsPer)
	}
	var tag [2]byte
	if _, err := rand.Read(tag[:]); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	fleet := uint16(tag[0])<<8 | uint16(tag[1])
	out := make([]Terminal, n)
	for i := range out {
		id := fmt.Sprintf("L%01X%06d", fleet%16, i) // 8 characters (DE 41)
		mid := fmt.Sprintf("LG%04X%09d", fleet, i)  // 15 characters (DE 42)
		_, tmk, err := reg.RegisterTerminal(ctx, id, mid)
		if err != nil {
			return nil, fmt.Errorf("loadgen: register terminal %s: %w", id, err)
		}
		t := Terminal{ID: id, MerchantID: mid, TMK: tmk}
		for j := range cardsPer {
			// 16 BCD digits: 77, fleet, terminal, card (a PAN, DE 2).
			c := bcdCard(fmt.Sprintf("77%04d%06d%04d", fleet%10000, i, j))
			if _, err := reg.RegisterCard(ctx, registry.Card{CardID: cardHex(c), Currency: Currency,
				MaxBalance: 1<<32 - 1, KeyVersion: keyVersion}); err != nil {
				return nil, fmt.Errorf("loadgen: register card %s: %w", cardHex(c), err)
			}
			t.Cards = append(t.Cards, c)
		}
		out[i] = t
	}
	return out, nil
}

func bcdCard(digits string) wire.CardID {
	var c wire.CardID
	for j := range c {
		c[j] = (digits[2*j]-'0')<<4 | (digits[2*j+1] - '0')
	}
	return c
}

func cardHex(c wire.CardID) string { return strings.ToUpper(fmt.Sprintf("%x", c[:])) }

// Config configures a Generator.
type Config struct {
	Addr      string // the server's ISO 8583 address
	Terminals []Terminal
	// TCMaster is the key ring's K_TC master: the generator plays the
	// cards, which hold keys derived from it (docs/purse.md §5).
	TCMaster wire.Key
	Amount   uint32 // per advice, minor units; 1 when 0
	// Prebuild is how many advices each terminal builds before a timed
	// window; 0: enough for 20,000 advices/s over the run's duration.
	Prebuild int
	Timeout  time.Duration    // per answer; 30 s when 0
	Now      func() time.Time // time.Now when nil
}

// Result is one run.
type Result struct {
	Sent      int64            `json:"sent"`
	Acked     int64            `json:"acked"` // answered 00
	Codes     map[string]int64 `json:"codes"` // DE 39 → count; "error" for transport errors
	Elapsed   time.Duration    `json:"elapsed_ns"`
	PerSecond float64          `json:"acked_per_s"`
	// BuiltLive counts the advices built inside the timed window (the
	// prebuilt ones ran out).
	BuiltLive int64 `json:"built_live"`
	// BuildMicros is the wall time per advice of signing on and building
	// the advices before the window (all terminals in parallel).
	BuildMicros float64 `json:"build_us_per_advice"`
	// CPU is this process's CPU time (user + system) inside the window:
	// the server's work when it runs in this process, and the
	// generator's sending and checking of answers.
	CPU time.Duration `json:"cpu_ns"`
}

// sent is an advice whose outcome is known (acked) or not (lost).
type sent struct {
	card   string
	atc    uint32
	digest string
	amount int64
}

// Generator sends advices for a fleet; the cards' ATCs continue from run to
// run, so several runs can drive one server.
type Generator struct {
	cfg   Config
	terms []*term

	mu      sync.Mutex
	acked   []sent
	unknown []sent // sent, no answer: posted or not
}

type cardState struct {
	id      wire.CardID
	hex     string
	tcKey   wire.Key
	atc     uint32
	balance uint32
}

type term struct {
	t     Terminal
	cards []*cardState
	next  int // round robin over cards
	stan  int
	seq   uint32
}

// New prepares a generator: the cards' TC keys are derived once.
func New(cfg Config) (*Generator, error) {
	if cfg.Amount == 0 {
		cfg.Amount = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Terminals) == 0 {
		return nil, errors.New("loadgen: no terminals")
	}
	g := &Generator{cfg: cfg}
	for _, t := range cfg.Terminals {
		tt := &term{t: t}
		for _, c := range t.Cards {
			k, err := wire.DeriveCardKey(cfg.TCMaster, wire.KeyTC, c)
			if err != nil {
				return nil, fmt.Errorf("loadgen: card key: %w", err)
			}
			tt.cards = append(tt.cards, &cardState{id: c, hex: cardHex(c), tcKey: k, balance: startBalance})
		}
		if len(tt.cards) == 0 {
			return nil, fmt.Errorf("loadgen: terminal %s has no cards", t.ID)
		}
		g.terms = append(g.terms, tt)
	}
	return g, nil
}

// session is a signed-on connection of one terminal.
type session struct {
	conn net.Conn
	keys iso8583.SignOnKeys
}

// prepared is a packed advice and what it advises.
type prepared struct {
	raw  []byte
	stan string
	rec  sent
	card *cardState
	atc  uint32
	bal  uint32
}

func (tt *term) nextSTAN() string {
	tt.stan = tt.stan%999999 + 1
	return fmt.Sprintf("%06d", tt.stan)
}

func (g *Generator) de7() string { return g.cfg.Now().UTC().Format("0102150405") }

// signOn dials the server and signs the terminal on.
func (g *Generator) signOn(ctx context.Context, tt *term) (*session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", g.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial: %w", err)
	}
	s := &session{conn: conn}
	msg, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: "0800", Transmission: g.de7(), STAN: tt.nextSTAN(),
		TerminalID: tt.t.ID, NetworkCode: iso8583.NMISignOn})
	if err != nil {
		conn.Close()
		return nil, err
	}
	resp, err := g.roundTrip(s, msg, tt.t.TMK)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if rc, _ := resp.GetString(iso8583.DEResponseCode); rc != iso8583.RCApproved {
		conn.Close()
		return nil, fmt.Errorf("%w: terminal %s: response code %s", ErrSignOn, tt.t.ID, rc)
	}
	kb, err := resp.GetBytes(iso8583.DEKeyData)
	if err == nil {
		s.keys, err = iso8583.DecodeSignOnKeys(kb, tt.t.TMK)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: terminal %s: key data: %w", ErrSignOn, tt.t.ID, err)
	}
	return s, nil
}

// roundTrip packs msg under key, sends it and reads its answer, whose MAC
// is verified under the same key.
func (g *Generator) roundTrip(s *session, m *moov.Message, key iso8583.Key) (*moov.Message, error) {
	raw, err := iso8583.Pack(m, key)
	if err != nil {
		return nil, err
	}
	stan, _ := m.GetString(iso8583.DESTAN)
	return g.exchange(s, raw, stan, key)
}

// exchange writes one framed message and reads the answer with the same
// STAN (a terminal has one request in flight), verifying its MAC.
func (g *Generator) exchange(s *session, raw []byte, stan string, key iso8583.Key) (*moov.Message, error) {
	_ = s.conn.SetDeadline(time.Now().Add(g.cfg.Timeout))
	if err := iso8583.WriteMessage(s.conn, raw); err != nil {
		return nil, fmt.Errorf("loadgen: write: %w", err)
	}
	for {
		in, err := iso8583.ReadMessage(s.conn, 0)
		if err != nil {
			return nil, fmt.Errorf("loadgen: read: %w", err)
		}
		resp, err := iso8583.Unpack(in)
		if err != nil {
			return nil, fmt.Errorf("loadgen: answer: %w", err)
		}
		if got, _ := resp.GetString(iso8583.DESTAN); got != stan {
			continue // an answer to an earlier, timed-out request
		}
		if err := iso8583.VerifyMAC(resp, in, key); err != nil {
			return nil, fmt.Errorf("loadgen: answer MAC: %w", err)
		}
		return resp, nil
	}
}

// build makes the terminal's next advice (next card, its next ATC) under
// the session's working key and seed. The card's state moves only when the
// advice is sent (commit).
func (g *Generator) build(tt *term, s *session, card *cardState, atc uint32, bal uint32) (prepared, error) {
	amount := g.cfg.Amount
	dt, err := wire.DateTimeOf(g.cfg.Now().UTC())
	if err != nil {
		return prepared{}, err
	}
	tt.seq++
	rec := wire.LogRecord{ATC: atc, Type: wire.TypeDebit, Amount: amount, BalanceAfter: bal - amount,
		Currency: wireEUR, DateTime: dt, TerminalID: wire.TerminalID([]byte(tt.t.ID)), Reference: tt.seq}
	// M1/M2 are the terminal's and card's debit proofs, opaque to the
	// server (docs/iso8583.md §2.4); the TC covers them.
	if _, err := rand.Read(rec.HostMAC[:]); err != nil {
		return prepared{}, err
	}
	if _, err := rand.Read(rec.CardMAC[:]); err != nil {
		return prepared{}, err
	}
	if rec.TC, err = wire.ComputeTC(card.tcKey, card.id, rec); err != nil {
		return prepared{}, err
	}
	icc, err := iso8583.ICCData{CardID: &card.id, LogRecord: &rec}.Encode()
	if err != nil {
		return prepared{}, err
	}
	pan, err := iso8583.PANOf(card.id)
	if err != nil {
		return prepared{}, err
	}
	stan := tt.nextSTAN()
	msg, err := iso8583.Marshal(&iso8583.Advice{MTI: "0220", PAN: pan, ProcessingCode: iso8583.PCPurchase,
		Amount: int64(amount), Transmission: g.de7(), STAN: stan, POSEntryMode: "072",
		TerminalID: tt.t.ID, MerchantID: tt.t.MerchantID, Currency: Currency, ICC: icc})
	if err != nil {
		return prepared{}, err
	}
	if err := s.keys.Seed.SetTxnNumber(msg); err != nil {
		return prepared{}, err
	}
	raw, err := iso8583.Pack(msg, s.keys.WorkingKey)
	if err != nil {
		return prepared{}, err
	}
	return prepared{raw: raw, stan: stan, card: card, atc: atc, bal: rec.BalanceAfter,
		rec: sent{card: card.hex, atc: atc, digest: fmt.Sprintf("%X", rec.TC[:]), amount: int64(amount)}}, nil
}

// cursor walks a terminal's cards round robin with their ATCs and balances
// as the prebuilt advices will leave them.
type cursor struct {
	next int
	atc  map[*cardState]uint32
	bal  map[*cardState]uint32
}

func (tt *term) cursor() *cursor {
	c := &cursor{next: tt.next, atc: map[*cardState]uint32{}, bal: map[*cardState]uint32{}}
	for _, cs := range tt.cards {
		c.atc[cs], c.bal[cs] = cs.atc, cs.balance
	}
	return c
}

func (g *Generator) buildNext(tt *term, s *session, cur *cursor) (prepared, error) {
	card := tt.cards[cur.next%len(tt.cards)]
	cur.next++
	atc := cur.atc[card] + 1
	if cur.bal[card] < g.cfg.Amount || atc == 0 {
		return prepared{}, fmt.Errorf("loadgen: card %s is exhausted", card.hex)
	}
	p, err := g.build(tt, s, card, atc, cur.bal[card])
	if err != nil {
		return prepared{}, err
	}
	cur.atc[card], cur.bal[card] = atc, p.bal
	return p, nil
}

// Run signs every terminal on, prebuilds their advices, then sends for d:
// each terminal sends its advices one after the other (store-and-forward),
// waiting for each answer. It returns what the server answered.
func (g *Generator) Run(ctx context.Context, d time.Duration) (Result, error) {
	per := g.cfg.Prebuild
	if per <= 0 {
		per = int(d.Seconds()*20000)/len(g.terms) + 1
	}
	type tstate struct {
		s     *session
		cur   *cursor
		queue []prepared
	}
	states := make([]*tstate, len(g.terms))
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	fail := func(err error) {
		errMu.Lock()
		if first == nil {
			first = err
		}
		errMu.Unlock()
	}
	buildStart := time.Now()
	for i, tt := range g.terms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := g.signOn(ctx, tt)
			if err != nil {
				fail(err)
				return
			}
			st := &tstate{s: s, cur: tt.cursor()}
			for range per {
				p, err := g.buildNext(tt, s, st.cur)
				if err != nil {
					fail(err)
					break
				}
				st.queue = append(st.queue, p)
			}
			states[i] = st
		}()
	}
	wg.Wait()
	buildTime := time.Since(buildStart)
	defer func() {
		for _, st := range states {
			if st != nil {
				st.s.conn.Close()
			}
		}
	}()
	if first != nil {
		return Result{}, first
	}

	res := Result{Codes: map[string]int64{}, BuildMicros: float64(buildTime.Microseconds()) / float64(per*len(g.terms))}
	var mu sync.Mutex
	cpu0 := processCPU()
	deadline := time.Now().Add(d)
	start := time.Now()
	for i, tt := range g.terms {
		st := states[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes := map[string]int64{}
			var (
				nSent, live int64
				acked       []sent
				unknown     []sent
			)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				var p prepared
				if len(st.queue) > 0 {
					p, st.queue = st.queue[0], st.queue[1:]
				} else {
					var err error
					if p, err = g.buildNext(tt, st.s, st.cur); err != nil {
						fail(err)
						break
					}
					live++
				}
				// The card used this ATC whatever the answer.
				tt.next++
				p.card.atc, p.card.balance = p.atc, p.bal
				nSent++
				resp, err := g.exchange(st.s, p.raw, p.stan, st.s.keys.WorkingKey)
				if err != nil {
					codes["error"]++
					unknown = append(unknown, p.rec)
					fail(err)
					break
				}
				rc, _ := resp.GetString(iso8583.DEResponseCode)
				codes[rc]++
				if rc == iso8583.RCApproved {
					acked = append(acked, p.rec)
				}
			}
			mu.Lock()
			res.Sent += nSent
			res.BuiltLive += live
			for k, v := range codes {
				res.Codes[k] += v
			}
			res.Acked += codes[iso8583.RCApproved]
			mu.Unlock()
			g.mu.Lock()
			g.acked = append(g.acked, acked...)
			g.unknown = append(g.unknown, unknown...)
			g.mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.CPU = processCPU() - cpu0
	res.PerSecond = float64(res.Acked) / res.Elapsed.Seconds()
	return res, first
}

// Acked is the number of advices acknowledged over all runs so far.
func (g *Generator) Acked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.acked)
}

// Verify checks the ledger against every run so far: every acknowledged
// advice is recorded exactly once as a debit of its card; nothing else was
// posted for the fleet's cards except advices whose answer was lost; and
// each purse shadow moved by exactly the amounts posted for it.
func (g *Generator) Verify(ctx context.Context, st ledger.Store) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	type rid struct {
		atc    uint32
		digest string
	}
	byCard := map[string]map[rid]int64{} // acked: amount
	maybe := map[string]map[rid]bool{}
	for _, a := range g.acked {
		if byCard[a.card] == nil {
			byCard[a.card] = map[rid]int64{}
		}
		byCard[a.card][rid{a.atc, a.digest}] = a.amount
	}
	for _, a := range g.unknown {
		if maybe[a.card] == nil {
			maybe[a.card] = map[rid]bool{}
		}
		maybe[a.card][rid{a.atc, a.digest}] = true
	}
	for _, tt := range g.terms {
		for _, c := range tt.cards {
			recs, err := st.CardAdvices(ctx, c.hex)
			if err != nil {
				return fmt.Errorf("loadgen: verify card %s: %w", c.hex, err)
			}
			seen := map[rid]int{}
			var posted int64
			for _, r := range recs {
				if r.Kind != ledger.AdviceDebit {
					continue
				}
				k := rid{r.ATC, r.Digest}
				seen[k]++
				if _, ok := byCard[c.hex][k]; !ok && !maybe[c.hex][k] {
					return fmt.Errorf("%w: card %s ATC %d was posted but not acknowledged", ErrVerify, c.hex, r.ATC)
				}
				posted += r.Amount
			}
			for k := range byCard[c.hex] {
				if seen[k] != 1 {
					return fmt.Errorf("%w: card %s ATC %d acknowledged, recorded %d times", ErrVerify, c.hex, k.atc, seen[k])
				}
			}
			for k, n := range seen {
				if n != 1 {
					return fmt.Errorf("%w: card %s ATC %d recorded %d times", ErrVerify, c.hex, k.atc, n)
				}
			}
			if len(recs) == 0 {
				continue
			}
			bal, err := st.Balance(ctx, ledger.AccountID(ledger.KindPurse, c.hex, Currency))
			if err != nil {
				return fmt.Errorf("loadgen: verify card %s: %w", c.hex, err)
			}
			if bal != posted {
				return fmt.Errorf("%w: purse %s balance %d, advices posted %d", ErrVerify, c.hex, bal, posted)
			}
		}
	}
	return nil
}
