package server

import (
	"context"
	"fmt"
	"strconv"

	moov "github.com/moov-io/iso8583"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
)

// wireTag is a bit per DE 55 tag DF60..DF6F (docs/iso8583.md §5.1), to
// check that a message holds exactly the tags of §5.2.
type wireTag uint16

const (
	wireCardID wireTag = 1 << iota
	wireATC
	wireAmount
	wireCurrency
	wireBalanceBefore
	wireBalanceAfter
	wireKeyVersion
	wireCardNonce
	wireHostNonce
	wireS1
	wireS2
	wireDateTime
	wireAuthRef
	wireTC
	wireLogRecord
	wireM1
)

func tagSet(ts []wireTag) wireTag {
	var s wireTag
	for _, t := range ts {
		s |= t
	}
	return s
}

func presentTags(d iso8583.ICCData) wireTag {
	var s wireTag
	for i, present := range []bool{d.CardID != nil, d.ATC != nil, d.Amount != nil, d.Currency != nil,
		d.BalanceBefore != nil, d.BalanceAfter != nil, d.KeyVersion != nil, d.CardNonce != nil, d.HostNonce != nil,
		d.S1 != nil, d.S2 != nil, d.DateTime != nil, d.AuthRef != nil, d.TC != nil, d.LogRecord != nil, d.M1 != nil} {
		if present {
			s |= 1 << i
		}
	}
	return s
}

// debitAdvice answers an offline debit advice 0220/0221 (docs/iso8583.md
// §2.4): record of type 06 at this terminal, DE 4/49 = the record, TC
// verified; then posted through the group-committing advice batcher (purse
// shadow → merchant payable, ATC recorded). An identical repeat is 94; an
// ATC duplicate (another record for a used ATC) or a gap is posted and
// flagged.
func (s *Server) debitAdvice(ctx context.Context, r *request) (setter, error) {
	c, rec, err := s.parseRecord(ctx, r, wire.TypeDebit)
	if err != nil {
		return nil, err
	}
	if string(rec.TerminalID[:]) != r.term.ID {
		return nil, refuse(iso8583.RCInvalidTransaction, "record of terminal %q advised by another", rec.TerminalID[:])
	}
	cur, _ := currencyOf(rec.Currency)
	tc := fmt.Sprintf("%X", rec.TC[:])
	r.txn = "adv/" + c.card + "/" + strconv.FormatUint(uint64(rec.ATC), 10) + "/" + tc
	res := s.cfg.Advices.SubmitAdvice(ctx, DebitAdvice{
		Key:    r.txn,
		CardID: c.card, TerminalID: r.term.ID, MerchantID: r.term.MerchantID,
		ATC: rec.ATC, Digest: tc, Amount: int64(rec.Amount), Currency: cur,
		Memo: fmt.Sprintf("debit ATC %d TSM seq %d", rec.ATC, rec.Reference),
	})
	if res.Err != nil {
		return nil, fmt.Errorf("advice: %w", res.Err)
	}
	if res.Replayed {
		return nil, refuse(iso8583.RCDuplicate, "advice already posted")
	}
	if res.Duplicate {
		s.m.atcEvents.WithLabelValues("duplicate").Inc()
		r.log.Warn("ATC duplicate: clone or rolled-back card (docs/purse.md §9.5)")
	}
	if len(res.Gaps) > 0 {
		s.m.atcEvents.WithLabelValues("gap").Inc()
		r.log.Info("ATC gaps", "gaps", fmt.Sprint(res.Gaps))
	}
	r.log.Info("debit advice posted")
	return nil, nil
}

// reconKey is the idempotency key of a batch close: terminal and the
// 0500's transaction number, so a repeated 0500 closes nothing new.
func reconKey(tid, tn string) string { return "recon/" + tid + "/" + tn }

// reconcile answers 0500 (docs/iso8583.md §2.6): the terminal's totals are
// compared with the server's for its open batch, which is closed; DE 66
// says 1 in balance, 2 out of balance.
func (s *Server) reconcile(ctx context.Context, r *request) (setter, error) {
	var rc iso8583.Reconciliation
	if err := iso8583.Unmarshal(r.msg, &rc); err != nil {
		return nil, err
	}
	var n [8]int64
	for i, f := range []struct {
		v string
		l int
	}{{rc.CreditsCount, 10}, {rc.CreditRevCount, 10}, {rc.DebitsCount, 10}, {rc.DebitRevCount, 10},
		{rc.CreditsAmount, 16}, {rc.CreditRevAmount, 16}, {rc.DebitsAmount, 16}, {rc.DebitRevAmount, 16}} {
		if len(f.v) != f.l || !isDigits(f.v) {
			return nil, refuse(iso8583.RCFormatError, "DE 74–77/86–89 missing or not numeric")
		}
		v, err := strconv.ParseInt(f.v, 10, 64)
		if err != nil {
			return nil, refuse(iso8583.RCFormatError, "DE 74–77/86–89 out of range")
		}
		n[i] = v
	}
	if len(rc.NetSettlement) != 17 || (rc.NetSettlement[0] != 'C' && rc.NetSettlement[0] != 'D') || !isDigits(rc.NetSettlement[1:]) {
		return nil, refuse(iso8583.RCFormatError, "DE 97 is not C/D + n 16")
	}
	if rc.Currency == "" {
		return nil, refuse(iso8583.RCFormatError, "DE 49 missing")
	}
	t, err := s.cfg.Advices.CloseBatch(ctx, r.term.ID, reconKey(r.term.ID, r.tn))
	if err != nil {
		return nil, fmt.Errorf("close batch: %w", err)
	}
	in := t.Loads == n[0] && t.LoadReversals == n[1] && t.Debits == n[2] && n[3] == 0 &&
		t.LoadAmount == n[4] && t.LoadReversalAmount == n[5] && t.DebitAmount == n[6] && n[7] == 0 &&
		(t.Currency == "" || t.Currency == rc.Currency)
	code := iso8583.SettlementInBalance
	if !in {
		code = iso8583.SettlementOutOfBalance
		r.log.Warn("batch out of balance", "server", fmt.Sprintf("%+v", t),
			"terminal", fmt.Sprintf("loads %d/%d rev %d/%d debits %d/%d", n[0], n[4], n[1], n[5], n[2], n[6]))
	} else {
		r.log.Info("batch in balance", "loads", t.Loads, "debits", t.Debits)
	}
	return func(m *moov.Message) error { return m.Field(iso8583.DESettlementCode, code) }, nil
}
