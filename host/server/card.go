package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	moov "github.com/moov-io/iso8583"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/ledger"
)

// network answers 0800: sign-on hands out the working key and seed
// (docs/iso8583.md §2.1, §4); echo and sign-off just answer 00.
func (s *Server) network(ctx context.Context, r *request) (setter, error) {
	var nm iso8583.NetworkManagement
	if err := iso8583.Unmarshal(r.msg, &nm); err != nil {
		return nil, err
	}
	switch nm.NetworkCode {
	case iso8583.NMIEcho:
		return nil, nil
	case iso8583.NMISignOff:
		if err := s.cfg.Registry.SignOff(ctx, r.term.ID); err != nil {
			return nil, fmt.Errorf("sign-off: %w", err)
		}
		r.log.Info("signed off")
		return nil, nil
	case iso8583.NMISignOn:
	default:
		return nil, refuse(iso8583.RCInvalidTransaction, "network code %q", nm.NetworkCode)
	}
	keys, err := s.cfg.Registry.SignOn(ctx, r.term.ID)
	if err != nil {
		return nil, fmt.Errorf("sign-on: %w", err)
	}
	block, err := keys.Encode(r.term.TMK)
	if err != nil {
		return nil, fmt.Errorf("sign-on key block: %w", err)
	}
	// Key objects print as KCVs only.
	r.log.Info("signed on", "working_key", keys.WorkingKey.String(), "seed", keys.Seed.ID,
		"seed_key", keys.Seed.Key.String(), "not_after", keys.Seed.NotAfter)
	return func(m *moov.Message) error { return m.BinaryField(iso8583.DEKeyData, block) }, nil
}

// cardTxn is the common part of the card messages: DE fields and DE 55.
type cardTxn struct {
	t      iso8583.Transaction
	icc    iso8583.ICCData
	cardID wire.CardID
	card   string // hex, the ledger reference
}

// parseCard unmarshals a card message, decodes DE 55 and checks that it
// holds exactly the tags of docs/iso8583.md §5.2 (want), and that DE 2 is
// the CardID of DF60 (14 otherwise, §3.2).
func parseCard(r *request, want ...wireTag) (*cardTxn, error) {
	c := &cardTxn{}
	if err := iso8583.Unmarshal(r.msg, &c.t); err != nil {
		return nil, err
	}
	icc, err := iso8583.DecodeICC(c.t.ICC)
	if err != nil {
		return nil, err
	}
	c.icc = icc
	if got := presentTags(icc); got != tagSet(want) {
		return nil, refuse(iso8583.RCFormatError, "DE 55 holds tags %x, want %x", got, tagSet(want))
	}
	id, err := iso8583.CardIDOf(c.t.PAN)
	if err != nil || id != *icc.CardID {
		return nil, refuse(iso8583.RCInvalidCard, "DE 2 is not the CardID of DF60")
	}
	c.cardID = id
	c.card = cardHex(id)
	r.card = c.card
	r.log = r.log.With("card", c.card)
	return c, nil
}

func cardHex(id wire.CardID) string { return strings.ToUpper(fmt.Sprintf("%x", id[:])) }

// currencyOf renders a purse currency (BCD) as DE 49 (n 3).
func currencyOf(c wire.Currency) (string, error) {
	code, err := c.Code()
	if err != nil {
		return "", refuse(iso8583.RCFormatError, "currency %X is not BCD", c[:])
	}
	return fmt.Sprintf("%03d", code), nil
}

// lookupCard fetches the card from the registry: unknown → 14.
func (s *Server) lookupCard(ctx context.Context, id string) (Card, error) {
	c, err := s.cfg.Registry.Card(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Card{}, refuse(iso8583.RCInvalidCard, "card not issued")
	}
	if err != nil {
		return Card{}, fmt.Errorf("registry: card: %w", err)
	}
	return c, nil
}

// masters returns the issuer master keys; a key source that fails is 91.
// The caller wipes them (wipeMasters) when done.
func (s *Server) masters(ctx context.Context) (wire.Keys, error) {
	k, err := s.cfg.Keys.Masters(ctx)
	if err != nil {
		return wire.Keys{}, fmt.Errorf("%w: key source: %w", ErrUnavailable, err)
	}
	return k, nil
}

func wipeMasters(k wire.Keys) {
	k.Load.Key.Wipe()
	k.Debit.Key.Wipe()
	k.TC.Key.Wipe()
}

// account ensures a ledger account once per process and returns its ID.
func (s *Server) account(ctx context.Context, kind ledger.AccountKind, ref, cur string) (string, error) {
	id := ledger.AccountID(kind, ref, cur)
	if _, ok := s.accounts.Load(id); ok {
		return id, nil
	}
	if _, err := s.cfg.Ledger.EnsureAccount(ctx, kind, ref, cur); err != nil {
		return "", fmt.Errorf("ledger: account %s: %w", id, err)
	}
	s.accounts.Store(id, struct{}{})
	return id, nil
}

// de54 is DE 54: available balance, one occurrence (docs/iso8583.md §3.3).
func de54(cur string, amount int64) string {
	sign := 'C'
	if amount < 0 {
		sign, amount = 'D', -amount
	}
	return fmt.Sprintf("0002%s%c%012d", cur, sign, amount)
}

// balance answers 0100 with the shadow balance (docs/iso8583.md §2.2).
func (s *Server) balance(ctx context.Context, r *request) (setter, error) {
	c, err := parseCard(r, wireCardID)
	if err != nil {
		return nil, err
	}
	if err := s.checkCard(ctx, r, c.card, refuseHot); err != nil {
		return nil, err
	}
	card, err := s.lookupCard(ctx, c.card)
	if err != nil {
		return nil, err
	}
	if card.Status == CardHotlisted {
		return nil, refuse(iso8583.RCRestrictedCard, "card hot-listed")
	}
	cur := card.Currency
	if c.t.Currency != "" && c.t.Currency != cur {
		return nil, refuse(iso8583.RCInvalidTransaction, "DE 49 %s is not the card's currency %s", c.t.Currency, cur)
	}
	bal, err := s.cfg.Ledger.Balance(ctx, ledger.AccountID(ledger.KindPurse, c.card, cur))
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("ledger: balance: %w", err)
	}
	if err := s.lateVerdict(r); err != nil {
		return nil, err
	}
	// The purse shadow is a liability: a negative ledger balance is value
	// on the card (docs/ledger.md §2).
	return func(m *moov.Message) error {
		return m.Field(iso8583.DEAdditionalAmts, de54(cur, -bal))
	}, nil
}

// loadKey is the ledger transaction key of a load: terminal and DE 62,
// which identifies the transaction and its repeats (docs/iso8583.md §7).
func loadKey(tid, tn string) string { return "load/" + tid + "/" + tn }

// load answers 0200 (docs/iso8583.md §2.3): check the card and the
// request, verify S1, record the authorisation, fund it in the ledger
// (in_progress) and return S2.
func (s *Server) load(ctx context.Context, r *request) (setter, error) {
	c, err := parseCard(r, wireCardID, wireATC, wireAmount, wireCurrency, wireBalanceBefore, wireKeyVersion,
		wireCardNonce, wireHostNonce, wireS1)
	if err != nil {
		return nil, err
	}
	if err := s.checkCard(ctx, r, c.card, refuseHot); err != nil {
		return nil, err
	}
	ic := c.icc
	if c.t.Amount != int64(*ic.Amount) {
		return nil, refuse(iso8583.RCInvalidAmount, "DE 4 %d ≠ DF62 %d", c.t.Amount, *ic.Amount)
	}
	if *ic.Amount == 0 {
		return nil, refuse(iso8583.RCInvalidAmount, "amount 0")
	}
	cur, err := currencyOf(*ic.Currency)
	if err != nil {
		return nil, err
	}
	if cur != c.t.Currency {
		return nil, refuse(iso8583.RCFormatError, "DE 49 %s ≠ DF63 %s", c.t.Currency, cur)
	}
	key := loadKey(r.term.ID, r.tn)
	r.txn = key
	if prev, err := s.cfg.Loads.LoadByKey(ctx, key); err == nil {
		// A repeated 0200: the same transaction number proves the same
		// data, so answer what was answered (after making sure the
		// posting exists, in case the first attempt stopped between the
		// two writes).
		r.log.Info("repeated load request", "auth_ref", prev.AuthRef)
		return s.fund(ctx, r, prev)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("loads: %w", err)
	}
	card, err := s.lookupCard(ctx, c.card)
	if err != nil {
		return nil, err
	}
	switch {
	case card.Status == CardHotlisted:
		return nil, refuse(iso8583.RCRestrictedCard, "card hot-listed")
	case card.Status != CardActive:
		return nil, refuse(iso8583.RCNotPermittedCard, "card %s", card.Status)
	case !card.Expires.IsZero() && r.now.After(card.Expires):
		return nil, refuse(iso8583.RCExpiredCard, "card expired %s", card.Expires)
	case card.Currency != cur:
		return nil, refuse(iso8583.RCInvalidTransaction, "card currency %s, request %s", card.Currency, cur)
	}
	m, err := s.masters(ctx)
	if err != nil {
		return nil, err
	}
	defer wipeMasters(m)
	if *ic.KeyVersion != m.Load.Version {
		return nil, refuse(iso8583.RCInvalidTransaction, "K_LOAD version %02X, server has %02X", *ic.KeyVersion, m.Load.Version)
	}
	tid := wire.TerminalID([]byte(r.term.ID))
	d := wire.LoadData{CardID: c.cardID, ATC: *ic.ATC, Amount: *ic.Amount, Currency: *ic.Currency,
		Balance: *ic.BalanceBefore, TerminalID: tid}
	sk, err := loadSession(m.Load.Key, c.cardID, *ic.ATC, *ic.CardNonce, *ic.HostNonce)
	if err != nil {
		return nil, err
	}
	defer sk.Wipe()
	s1, err := wire.ComputeS1(sk, d)
	if err != nil {
		return nil, err
	}
	if !s1.Equal(*ic.S1) {
		return nil, refuse(iso8583.RCInvalidTransaction, "S1 does not verify")
	}
	after, ok := d.BalanceAfter()
	switch {
	case !ok:
		return nil, refuse(iso8583.RCInvalidAmount, "balance overflow")
	case card.MaxLoad > 0 && int64(d.Amount) > card.MaxLoad:
		return nil, refuse(iso8583.RCExceedsLimit, "amount %d above the per-load limit %d", d.Amount, card.MaxLoad)
	case card.MaxBalance > 0 && int64(after) > card.MaxBalance:
		return nil, refuse(iso8583.RCInvalidAmount, "balance after %d above the maximum %d", after, card.MaxBalance)
	}
	if d.DateTime, err = wire.DateTimeOf(r.now.UTC()); err != nil {
		return nil, err
	}
	if d.AuthRef, err = s.authRef(); err != nil {
		return nil, err
	}
	s2, err := wire.ComputeS2(sk, d, s1)
	if err != nil {
		return nil, err
	}
	stan, _ := r.msg.GetString(iso8583.DESTAN)
	de7, _ := r.msg.GetString(iso8583.DETransmission)
	la := LoadAuth{Key: key, TerminalID: r.term.ID, MerchantID: r.term.MerchantID, STAN: stan, Transmission: de7,
		CardID: c.card, ATC: d.ATC, Amount: int64(d.Amount), Currency: cur, BalanceBefore: d.Balance,
		KeyVersion: *ic.KeyVersion, S1: s1, S2: s2, DateTime: d.DateTime, AuthRef: d.AuthRef, CreatedAt: r.now}
	// ModeTerminals: if the card check running beside this request has
	// found the card hotlisted by now, refuse before anything is written.
	if err := s.lateVerdict(r); err != nil {
		return nil, err
	}
	// The authorisation is stored before the posting: if the server stops
	// between the two, the repeat (or the reversal) completes the picture
	// (docs/server.md §3).
	stored, err := s.cfg.Loads.PutLoad(ctx, la)
	if errors.Is(err, ErrReversedBefore) {
		return nil, refuse(iso8583.RCInvalidTransaction, "the terminal reversed this load before it arrived")
	}
	if err != nil {
		return nil, fmt.Errorf("loads: %w", err)
	}
	return s.fund(ctx, r, stored)
}

// authRef draws an authorisation reference, 1..999999 (DE 38 has 6
// digits). It need not be unique: a load is found by its S2.
func (s *Server) authRef() (uint32, error) {
	var b [4]byte
	if _, err := s.cfg.Rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("authorisation reference: %w", err)
	}
	return binary.BigEndian.Uint32(b[:])%999999 + 1, nil
}

func loadSession(master wire.Key, id wire.CardID, atc uint32, cn, hn wire.Nonce) (wire.Key, error) {
	k, err := wire.DeriveCardKey(master, wire.KeyLoad, id)
	if err != nil {
		return nil, err
	}
	defer k.Wipe()
	return wire.LoadSessionKey(k, id, atc, cn, hn)
}

// beginRequest is the ledger transaction of a load, a pure function of the
// stored authorisation so that every retry is an identical (idempotent)
// request.
func (s *Server) beginRequest(la LoadAuth, funding, purse string) ledger.BeginRequest {
	return ledger.BeginRequest{Key: la.Key, Kind: "load", CardID: la.CardID, TerminalID: la.TerminalID,
		Amount: la.Amount, Currency: la.Currency,
		Memo: fmt.Sprintf("load ATC %d auth %06d", la.ATC, la.AuthRef),
		Legs: []ledger.Leg{{Account: funding, Amount: la.Amount, Currency: la.Currency},
			{Account: purse, Amount: -la.Amount, Currency: la.Currency}}}
}

// fund posts the load (funding → purse, in_progress) and builds the 0210.
func (s *Server) fund(ctx context.Context, r *request, la LoadAuth) (setter, error) {
	funding, err := s.account(ctx, ledger.KindFunding, s.cfg.Funding, la.Currency)
	if err != nil {
		return nil, err
	}
	purse, err := s.account(ctx, ledger.KindPurse, la.CardID, la.Currency)
	if err != nil {
		return nil, err
	}
	txn, err := s.cfg.Ledger.Begin(ctx, s.beginRequest(la, funding, purse))
	switch {
	case errors.Is(err, ledger.ErrConflict):
		// Begun differently: a reversal recorded it as never funded.
		txn, err = s.cfg.Ledger.Txn(ctx, la.Key)
		if err != nil {
			return nil, fmt.Errorf("ledger: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("ledger: begin load: %w", err)
	}
	if txn.State == ledger.StateReversed {
		// Never hand out S2 for a reversed load: the card could still
		// credit it (docs/server.md §3).
		return nil, refuse(iso8583.RCInvalidTransaction, "load already reversed")
	}
	r.log.Info("load authorised", "amount", la.Amount, "atc", la.ATC, "auth_ref", la.AuthRef, "replayed", txn.Replayed)
	after := la.BalanceBefore + uint32(la.Amount)
	icc, err := iso8583.ICCData{ATC: &la.ATC, BalanceAfter: &after, S2: &la.S2, DateTime: &la.DateTime,
		AuthRef: &la.AuthRef}.Encode()
	if err != nil {
		return nil, err
	}
	return func(m *moov.Message) error {
		if err := m.Field(iso8583.DEAuthID, fmt.Sprintf("%06d", la.AuthRef)); err != nil {
			return err
		}
		if err := m.Field(iso8583.DEAdditionalAmts, de54(la.Currency, int64(after))); err != nil {
			return err
		}
		return m.BinaryField(iso8583.DEICC, icc)
	}, nil
}

// verifyTC checks a record's TC under the card's K_TC (docs/purse.md §5.4).
func (s *Server) verifyTC(ctx context.Context, id wire.CardID, rec wire.LogRecord) error {
	m, err := s.masters(ctx)
	if err != nil {
		return err
	}
	defer wipeMasters(m)
	k, err := wire.DeriveCardKey(m.TC.Key, wire.KeyTC, id)
	if err != nil {
		return err
	}
	defer k.Wipe()
	if !wire.VerifyTC(k, id, rec) {
		return refuse(iso8583.RCInvalidTransaction, "TC does not verify (ATC %d)", rec.ATC)
	}
	return nil
}

// parseRecord parses an advice (docs/iso8583.md §2.3 step 6, §2.4): DE 55
// {DF60, DF6E}, record type, DE 4 and DE 49 against the record, and the TC.
func (s *Server) parseRecord(ctx context.Context, r *request, typ byte) (*cardTxn, wire.LogRecord, error) {
	c, err := parseCard(r, wireCardID, wireLogRecord)
	if err != nil {
		return nil, wire.LogRecord{}, err
	}
	if err := s.checkCard(ctx, r, c.card, flagHot); err != nil {
		return nil, wire.LogRecord{}, err
	}
	rec := *c.icc.LogRecord
	if rec.Type != typ {
		return nil, rec, refuse(iso8583.RCInvalidTransaction, "record type %02X", rec.Type)
	}
	if c.t.Amount != int64(rec.Amount) {
		return nil, rec, refuse(iso8583.RCInvalidAmount, "DE 4 %d ≠ record amount %d", c.t.Amount, rec.Amount)
	}
	cur, err := currencyOf(rec.Currency)
	if err != nil {
		return nil, rec, err
	}
	if cur != c.t.Currency {
		return nil, rec, refuse(iso8583.RCFormatError, "DE 49 %s ≠ record currency %s", c.t.Currency, cur)
	}
	if _, ok := rec.BalanceBefore(); !ok {
		return nil, rec, refuse(iso8583.RCInvalidTransaction, "record balance inconsistent")
	}
	if _, err := s.lookupCard(ctx, c.card); err != nil {
		return nil, rec, err
	}
	if err := s.verifyTC(ctx, c.cardID, rec); err != nil {
		return nil, rec, err
	}
	r.log = r.log.With("atc", rec.ATC, "amount", rec.Amount)
	return c, rec, nil
}

// completion answers a load completion advice 0220/0221 (docs/iso8583.md
// §2.3): the TC verifies, the record is the authorised load (S1, S2,
// amount, balance, date-time, reference, terminal), the ATC is recorded and
// the ledger transaction completed. Already completed → 94.
func (s *Server) completion(ctx context.Context, r *request) (setter, error) {
	c, rec, err := s.parseRecord(ctx, r, wire.TypeLoad)
	if err != nil {
		return nil, err
	}
	loads, err := s.cfg.Loads.LoadsByCardATC(ctx, c.card, rec.ATC)
	if err != nil {
		return nil, fmt.Errorf("loads: %w", err)
	}
	var la *LoadAuth
	for i := range loads {
		if loads[i].S2.Equal(rec.HostMAC) {
			la = &loads[i]
			break
		}
	}
	if la == nil {
		return nil, refuse(iso8583.RCInvalidTransaction, "no authorised load with this S2")
	}
	r.txn = la.Key
	cur, _ := currencyOf(rec.Currency)
	if int64(rec.Amount) != la.Amount || uint64(rec.BalanceAfter) != uint64(la.BalanceBefore)+uint64(la.Amount) ||
		cur != la.Currency || rec.DateTime != la.DateTime || rec.Reference != la.AuthRef ||
		!rec.CardMAC.Equal(la.S1) || string(rec.TerminalID[:]) != la.TerminalID {
		return nil, refuse(iso8583.RCInvalidTransaction, "record does not match the authorised load auth %06d", la.AuthRef)
	}
	atc, err := s.cfg.Ledger.RecordATC(ctx, ledger.ATCAdvice{CardID: c.card, ATC: rec.ATC,
		Digest: fmt.Sprintf("%X", rec.TC[:]), TerminalID: r.term.ID})
	if err != nil {
		return nil, fmt.Errorf("ledger: record ATC: %w", err)
	}
	s.noteATC(r, atc)
	// The completion carries the card record (ATC, TC) so that the ledger
	// lists it among the card's reports (ledger.CardAdvices): the second
	// channel cross-checks the card's log against them, and a load missing
	// there is an unreported_load (docs/crosscheck.md §3). The ATC was
	// recorded just above, outside this transaction, so that a refused
	// completion still leaves it (docs/server.md §3 row 12).
	txn, err := s.cfg.Ledger.Complete(ctx, ledger.CompleteRequest{Key: la.Key, Memo: fmt.Sprintf("completion ATC %d", rec.ATC),
		ATC: rec.ATC, Digest: fmt.Sprintf("%X", rec.TC[:])})
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return nil, refuse(iso8583.RCInvalidTransaction, "load auth %06d was never funded", la.AuthRef)
	case errors.Is(err, ledger.ErrIllegalTransition):
		// The card holds value the server reversed: the terminal
		// reversed a load the card had credited. Needs an operator
		// (docs/server.md §3).
		r.log.Error("completion advice for a reversed load: the card holds unfunded value", "auth_ref", la.AuthRef, "amount", la.Amount)
		return nil, refuse(iso8583.RCInvalidTransaction, "load auth %06d is reversed", la.AuthRef)
	case err != nil:
		return nil, fmt.Errorf("ledger: complete: %w", err)
	case txn.Replayed:
		return nil, refuse(iso8583.RCDuplicate, "load already completed")
	}
	r.log.Info("load completed", "auth_ref", la.AuthRef)
	return nil, nil
}

func (s *Server) noteATC(r *request, a ledger.ATCResult) {
	if a.Status == ledger.ATCDuplicate {
		s.m.atcEvents.WithLabelValues("duplicate").Inc()
		r.log.Warn("ATC duplicate: clone or rolled-back card (docs/purse.md §9.5)", "last_atc", a.LastATC)
	}
	if len(a.Gaps) > 0 {
		s.m.atcEvents.WithLabelValues("gap").Inc()
		r.log.Info("ATC gaps", "gaps", fmt.Sprint(a.Gaps))
	}
}

// reversalReason is constant so that 0400, 0420 and their repeats are the
// same ledger request (a repeat is a replay, answered 94).
const reversalReason = "load not credited (0400/0420)"

// reversal answers 0400/0420/0421 (docs/iso8583.md §2.5): the load named
// by DE 90 is reversed if it is in progress; completed → 12; already
// reversed → 94; unknown → 12 (0400) or 00 (0420).
func (s *Server) reversal(ctx context.Context, r *request) (setter, error) {
	var rv iso8583.Reversal
	if err := iso8583.Unmarshal(r.msg, &rv); err != nil {
		return nil, err
	}
	icc, err := iso8583.DecodeICC(rv.ICC)
	if err != nil {
		return nil, err
	}
	if got := presentTags(icc); got != tagSet([]wireTag{wireCardID, wireATC}) {
		return nil, refuse(iso8583.RCFormatError, "DE 55 holds tags %x", got)
	}
	id, err := iso8583.CardIDOf(rv.PAN)
	if err != nil || id != *icc.CardID {
		return nil, refuse(iso8583.RCInvalidCard, "DE 2 is not the CardID of DF60")
	}
	card := cardHex(id)
	r.card = card
	r.log = r.log.With("card", card, "atc", *icc.ATC)
	if err := s.checkCard(ctx, r, card, flagHot); err != nil {
		return nil, err
	}
	if len(rv.OriginalData) != 42 {
		return nil, refuse(iso8583.RCFormatError, "DE 90 missing")
	}
	origMTI, origSTAN, origDE7 := rv.OriginalData[:4], rv.OriginalData[4:10], rv.OriginalData[10:20]
	advice := r.mti != iso8583.MTIReversalRequest
	unknown := func(why string) (setter, error) {
		if advice {
			r.log.Info("reversal advice of an unknown load accepted", "why", why)
			return nil, nil
		}
		return nil, refuse(iso8583.RCInvalidTransaction, "reversal of an unknown load: %s", why)
	}
	if origMTI != iso8583.MTIFinancialRequest {
		return unknown("original MTI " + origMTI)
	}
	la, err := s.cfg.Loads.LoadByOriginal(ctx, r.term.ID, origSTAN, origDE7)
	if errors.Is(err, ErrNotFound) {
		// Remember it, so that the 0200 if it is only delayed (still in
		// flight, or being handled concurrently) is refused, not funded
		// (docs/server.md §3 row 18).
		la, err = s.cfg.Loads.UnknownReversal(ctx, r.term.ID, origSTAN, origDE7, r.now)
		if errors.Is(err, ErrNotFound) {
			return unknown("no load with this STAN and DE 7")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loads: %w", err)
	}
	r.txn = la.Key
	if la.CardID != card || la.ATC != *icc.ATC || la.Amount != rv.Amount {
		return nil, refuse(iso8583.RCInvalidTransaction, "reversal does not match load auth %06d", la.AuthRef)
	}
	txn, err := s.cfg.Ledger.Txn(ctx, la.Key)
	if errors.Is(err, ledger.ErrNotFound) {
		// Authorised but never posted (the server stopped between the two
		// writes, or the funding was refused): record it as reversed
		// without legs, so that a late repeat of the 0200 is refused.
		if _, err := s.cfg.Ledger.Begin(ctx, ledger.BeginRequest{Key: la.Key, Kind: "load", CardID: la.CardID,
			TerminalID: la.TerminalID, Amount: la.Amount, Currency: la.Currency, Memo: "never funded"}); err != nil &&
			!errors.Is(err, ledger.ErrConflict) {
			return nil, fmt.Errorf("ledger: begin unfunded load: %w", err)
		}
		txn, err = s.cfg.Ledger.Txn(ctx, la.Key)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	switch txn.State {
	case ledger.StateCompleted:
		return nil, refuse(iso8583.RCInvalidTransaction, "load auth %06d is completed", la.AuthRef)
	case ledger.StateReversed:
		return nil, refuse(iso8583.RCDuplicate, "load auth %06d already reversed", la.AuthRef)
	}
	txn, err = s.cfg.Ledger.Reverse(ctx, ledger.ReverseRequest{Key: la.Key, Reason: reversalReason})
	switch {
	case errors.Is(err, ledger.ErrIllegalTransition):
		return nil, refuse(iso8583.RCInvalidTransaction, "load auth %06d completed meanwhile", la.AuthRef)
	case err != nil:
		return nil, fmt.Errorf("ledger: reverse: %w", err)
	case txn.Replayed:
		return nil, refuse(iso8583.RCDuplicate, "load auth %06d already reversed", la.AuthRef)
	}
	r.log.Info("load reversed", "auth_ref", la.AuthRef, "amount", la.Amount)
	return nil, nil
}
