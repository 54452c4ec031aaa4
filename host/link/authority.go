package link

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	moov "github.com/moov-io/iso8583"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/terminal"
)

var _ terminal.LoadAuthority = (*Link)(nil)

func cardHex(id wire.CardID) string { return strings.ToUpper(hex.EncodeToString(id[:])) }

func currencyCode(c wire.Currency) (string, error) {
	n, err := c.Code()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%03d", n), nil
}

func (l *Link) checkTerminal(id wire.TerminalID) error {
	if string(id[:]) != l.cfg.TerminalID {
		return fmt.Errorf("link: the card transaction names terminal %q, this link is terminal %q (DE 41 must equal the purse's terminal ID, docs/iso8583.md §3.1)", id[:], l.cfg.TerminalID)
	}
	return nil
}

// AuthorizeLoad implements terminal.LoadAuthority with an online load
// 0200/0210 (docs/iso8583.md §2.3). A decline wraps
// terminal.ErrLoadRefused and is a *DeclineError carrying the code; no
// answer wraps ErrTransport (the terminal then reverses the load).
func (l *Link) AuthorizeLoad(ctx context.Context, r terminal.LoadRequest) (terminal.LoadAuth, error) {
	if err := l.checkTerminal(r.TerminalID); err != nil {
		return terminal.LoadAuth{}, err
	}
	pan, err := iso8583.PANOf(r.CardID)
	if err != nil {
		return terminal.LoadAuth{}, fmt.Errorf("%w: %w", terminal.ErrLoadRefused, err)
	}
	cur, err := currencyCode(r.Currency)
	if err != nil {
		return terminal.LoadAuth{}, fmt.Errorf("%w: %w", terminal.ErrLoadRefused, err)
	}
	icc, err := iso8583.ICCData{CardID: &r.CardID, ATC: &r.ATC, Amount: &r.Amount, Currency: &r.Currency,
		BalanceBefore: &r.Balance, KeyVersion: &r.KeyVersion, CardNonce: &r.CardNonce, HostNonce: &r.HostNonce, S1: &r.S1}.Encode()
	if err != nil {
		return terminal.LoadAuth{}, err
	}
	stan, err := l.nextSTAN()
	if err != nil {
		return terminal.LoadAuth{}, err
	}
	de7 := l.de7()
	key := loadKey(cardHex(r.CardID), r.ATC, r.HostNonce[:])
	// Durable before the 0200 leaves: a reversal after a crash still
	// names the original (DE 90) and the batch counts what the server
	// may have booked.
	if err := l.st.append(true, event{E: evLoadSent, Key: key,
		Load: &loadState{STAN: stan, DE7: de7, Amount: r.Amount, Currency: cur}}); err != nil {
		return terminal.LoadAuth{}, err
	}
	req := &iso8583.Load{MTI: iso8583.MTIFinancialRequest, PAN: pan, ProcessingCode: iso8583.PCLoad, Amount: int64(r.Amount),
		Transmission: de7, STAN: stan, POSEntryMode: l.opts.POSEntryMode, TerminalID: l.cfg.TerminalID,
		MerchantID: l.cfg.MerchantID, Currency: cur, ICC: icc}
	rsp, rc, err := l.roundTrip(ctx, stan, func(s *session) (*moov.Message, error) { return withTN(s, req) })
	if errors.Is(err, errNotSent) {
		// The server never acted on it: nothing to reverse.
		return terminal.LoadAuth{}, errors.Join(err, l.st.append(true, event{E: evLoadDrop, Key: key}))
	}
	if err != nil {
		return terminal.LoadAuth{}, err
	}
	if rc != iso8583.RCApproved {
		if err := l.st.append(true, event{E: evLoadDrop, Key: key}); err != nil {
			return terminal.LoadAuth{}, err
		}
		return terminal.LoadAuth{}, &DeclineError{Op: "load", MTI: iso8583.MTIFinancialResponse, Code: rc}
	}
	// Approved: the server funded it; it counts once completed or
	// reversed.
	if err := l.st.append(true, event{E: evLoadOK, Key: key}); err != nil {
		return terminal.LoadAuth{}, err
	}
	var got iso8583.Load
	if err := iso8583.Unmarshal(rsp, &got); err != nil {
		return terminal.LoadAuth{}, err
	}
	d, err := iso8583.DecodeICC(got.ICC)
	if err != nil {
		return terminal.LoadAuth{}, err
	}
	if got.PAN != pan || got.Amount != int64(r.Amount) || d.ATC == nil || *d.ATC != r.ATC || d.S2 == nil ||
		d.DateTime == nil || d.AuthRef == nil {
		return terminal.LoadAuth{}, fmt.Errorf("%w: 0210 does not match the 0200 or lacks DF61/DF6A/DF6B/DF6C", iso8583.ErrMalformed)
	}
	return terminal.LoadAuth{DateTime: *d.DateTime, AuthRef: *d.AuthRef, S2: *d.S2}, nil
}

// ReverseLoad implements terminal.LoadAuthority (docs/iso8583.md §2.5):
// a reversal request 0400; if it gets no answer (or a transient code), a
// reversal advice 0420 — queued durably first, then sent with repeats
// 0421 — which the server must accept. A queued advice counts as done:
// Flush delivers it. A load this terminal never sent, or already settled
// (declined, completed, reversed), needs nothing: the state log records
// every 0200 before it leaves (docs/terminal.md §2.1).
func (l *Link) ReverseLoad(ctx context.Context, r terminal.LoadRequest) error {
	pan, err := iso8583.PANOf(r.CardID)
	if err != nil {
		return err
	}
	cur, err := currencyCode(r.Currency)
	if err != nil {
		return err
	}
	card := cardHex(r.CardID)
	key := loadKey(card, r.ATC, r.HostNonce[:])
	orig, known := l.st.load(key)
	if !known {
		return nil
	}
	stan, err := l.nextSTAN()
	if err != nil {
		return err
	}
	e := &Entry{Kind: KindReversal, CardID: card, ATC: r.ATC, Amount: r.Amount, Currency: cur, STAN: stan, DE7: l.de7(),
		OrigMTI: iso8583.MTIFinancialRequest, OrigSTAN: orig.STAN, OrigDE7: orig.DE7, Load: key}
	msg, err := l.reversalMessage(e, iso8583.MTIReversalRequest, pan)
	if err != nil {
		return err
	}
	_, rc, err := l.roundTrip(ctx, stan, func(s *session) (*moov.Message, error) { return withTN(s, msg) })
	switch {
	case err == nil && (rc == iso8583.RCApproved || rc == iso8583.RCDuplicate):
		return l.st.append(true, event{E: evLoadRev, Key: key, Load: &loadState{Amount: r.Amount, Currency: cur}})
	case err == nil && rc == iso8583.RCInvalidTransaction:
		// Unknown (the 0200 never arrived) or already completed: nothing
		// was reversed (§2.5).
		l.log.Warn("reversal answered 12: unknown or completed load", "card", card, "atc", r.ATC)
		return l.st.append(true, event{E: evLoadDrop, Key: key})
	case err == nil && !transient(rc):
		return &DeclineError{Op: "reversal", MTI: iso8583.MTIReversalResponse, Code: rc}
	case err != nil && (!errors.Is(err, ErrTransport) || ctx.Err() != nil):
		return err
	}
	// No answer: the advice path. New STAN and DE 7; its repeats keep them.
	if e.STAN, err = l.nextSTAN(); err != nil {
		return err
	}
	e.DE7 = l.de7()
	if err := l.st.enqueue(e); err != nil {
		return err
	}
	if _, err := l.deliver(ctx, e, 1+l.opts.Repeats); err != nil && !errors.Is(err, ErrTransport) && !transient(codeOf(err)) {
		return err
	}
	return nil
}

func codeOf(err error) string { c, _ := ResponseCode(err); return c }

func (l *Link) reversalMessage(e *Entry, mti, pan string) (*iso8583.Reversal, error) {
	id, err := parseCard(e.CardID)
	if err != nil {
		return nil, err
	}
	icc, err := iso8583.ICCData{CardID: &id, ATC: &e.ATC}.Encode()
	if err != nil {
		return nil, err
	}
	// DE 90: original MTI n4 | STAN n6 | DE 7 n10 | acquirer n11 | forwarder n11.
	de90 := e.OrigMTI + e.OrigSTAN + e.OrigDE7 + strings.Repeat("0", 22)
	return &iso8583.Reversal{MTI: mti, PAN: pan, ProcessingCode: iso8583.PCLoad, Amount: int64(e.Amount),
		Transmission: e.DE7, STAN: e.STAN, TerminalID: l.cfg.TerminalID, MerchantID: l.cfg.MerchantID,
		Currency: e.Currency, ICC: icc, OriginalData: de90}, nil
}

func parseCard(s string) (wire.CardID, error) {
	var id wire.CardID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: card %q", ErrCorrupt, s)
	}
	copy(id[:], b)
	return id, nil
}

// Advise implements terminal.LoadAuthority. A debit record is appended to
// the durable store-and-forward queue (fsynced before Advise returns, so
// nothing is lost if the terminal dies right after the card answered) and
// sent by Flush (docs/iso8583.md §2.4). A load record is queued too and
// sent at once as the completion advice 0220, repeated as 0221 while
// unanswered (§2.3); if it stays unanswered it remains queued for Flush
// and Advise succeeds. 00 and 94 are success; 12 wraps
// terminal.ErrBadProof.
func (l *Link) Advise(ctx context.Context, id wire.CardID, rec wire.LogRecord) error {
	if err := l.checkTerminal(rec.TerminalID); err != nil {
		return err
	}
	if _, err := iso8583.PANOf(id); err != nil {
		return err
	}
	cur, err := currencyCode(rec.Currency)
	if err != nil {
		return err
	}
	kind := KindDebit
	switch rec.Type {
	case wire.TypeDebit:
	case wire.TypeLoad:
		kind = KindCompletion
	default:
		return fmt.Errorf("link: log record of type %02X is neither a load nor a debit", rec.Type)
	}
	stan, err := l.nextSTAN()
	if err != nil {
		return err
	}
	e := &Entry{Kind: kind, CardID: cardHex(id), Record: strings.ToUpper(hex.EncodeToString(rec.Bytes())), ATC: rec.ATC,
		Amount: rec.Amount, Currency: cur, STAN: stan, DE7: l.de7()}
	if err := l.st.enqueue(e); err != nil {
		return err
	}
	if kind == KindDebit {
		return nil
	}
	if _, err := l.deliver(ctx, e, 1+l.opts.Repeats); err != nil && !errors.Is(err, ErrTransport) && !transient(codeOf(err)) {
		return err
	}
	return nil
}

// adviceMessage builds the advice of a queued entry: 0220/0420 on the
// first attempt, the repeat 0221/0421 after (§2).
func (l *Link) adviceMessage(e *Entry) (any, error) {
	pan, err := iso8583.PANOf(mustCard(e.CardID))
	if err != nil {
		return nil, err
	}
	if e.Kind == KindReversal {
		mti := iso8583.MTIReversalAdvice
		if e.Tries > 0 {
			mti = iso8583.MTIReversalAdviceRe
		}
		return l.reversalMessage(e, mti, pan)
	}
	raw, err := hex.DecodeString(e.Record)
	if err != nil {
		return nil, fmt.Errorf("%w: record of advice %d", ErrCorrupt, e.ID)
	}
	rec, err := wire.ParseLogRecord(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: record of advice %d: %v", ErrCorrupt, e.ID, err)
	}
	id := mustCard(e.CardID)
	icc, err := iso8583.ICCData{CardID: &id, LogRecord: &rec}.Encode()
	if err != nil {
		return nil, err
	}
	mti, pc := iso8583.MTIFinancialAdvice, iso8583.PCPurchase
	if e.Tries > 0 {
		mti = iso8583.MTIFinancialAdviceRe
	}
	if e.Kind == KindCompletion {
		pc = iso8583.PCLoad
	}
	return &iso8583.Advice{MTI: mti, PAN: pan, ProcessingCode: pc, Amount: int64(e.Amount), Transmission: e.DE7,
		STAN: e.STAN, POSEntryMode: l.opts.POSEntryMode, TerminalID: l.cfg.TerminalID, MerchantID: l.cfg.MerchantID,
		Currency: e.Currency, ICC: icc}, nil
}

func mustCard(s string) wire.CardID { id, _ := parseCard(s); return id }

// deliver sends a queued advice up to attempts times while unanswered:
// acknowledged (00, 94) → removed from the queue and counted; declined for
// good → moved to the rejected list (*DeclineError); a transient code or
// no answer → left queued (the error says which).
func (l *Link) deliver(ctx context.Context, e *Entry, attempts int) (string, error) {
	var err error
	for range attempts {
		var rc string
		rc, err = l.attempt(ctx, e)
		if err == nil || !errors.Is(err, ErrTransport) || ctx.Err() != nil {
			return rc, err
		}
	}
	return "", err
}

func (l *Link) attempt(ctx context.Context, e *Entry) (string, error) {
	v, err := l.adviceMessage(e)
	if err != nil {
		return "", err
	}
	// Count the attempt before sending, so the next one is a repeat even
	// after a crash (the ack of a later attempt makes it durable).
	if err := l.st.append(false, event{E: evTry, ID: e.ID}); err != nil {
		return "", err
	}
	e.Tries++
	_, rc, err := l.roundTrip(ctx, e.STAN, func(s *session) (*moov.Message, error) { return withTN(s, v) })
	if err != nil {
		return "", err
	}
	respMTI := iso8583.MTIFinancialAdvResp
	if e.Kind == KindReversal {
		respMTI = iso8583.MTIReversalAdvResp
	}
	switch {
	case rc == iso8583.RCApproved || rc == iso8583.RCDuplicate:
		return rc, l.st.append(false, event{E: evAck, ID: e.ID, Code: rc})
	case transient(rc):
		return rc, &DeclineError{Op: e.Kind + " advice", MTI: respMTI, Code: rc}
	}
	if err := l.st.append(true, event{E: evReject, ID: e.ID, Code: rc}); err != nil {
		return rc, err
	}
	return rc, &DeclineError{Op: e.Kind + " advice", MTI: respMTI, Code: rc}
}

// BalanceInfo is the server's shadow balance of a card (0110 DE 54,
// docs/iso8583.md §2.2, §3.3); it lags offline debits not yet advised.
type BalanceInfo struct {
	Available int64  // minor units; negative for a debit balance
	Currency  string // ISO 4217 numeric
}

// Balance asks the server for a card's shadow balance (0100/0110).
func (l *Link) Balance(ctx context.Context, id wire.CardID) (BalanceInfo, error) {
	pan, err := iso8583.PANOf(id)
	if err != nil {
		return BalanceInfo{}, err
	}
	icc, err := iso8583.ICCData{CardID: &id}.Encode()
	if err != nil {
		return BalanceInfo{}, err
	}
	stan, err := l.nextSTAN()
	if err != nil {
		return BalanceInfo{}, err
	}
	req := &iso8583.BalanceInquiry{MTI: iso8583.MTIAuthRequest, PAN: pan, ProcessingCode: iso8583.PCBalance,
		Transmission: l.de7(), STAN: stan, POSEntryMode: l.opts.POSEntryMode, TerminalID: l.cfg.TerminalID,
		MerchantID: l.cfg.MerchantID, Currency: l.opts.Currency, ICC: icc}
	rsp, rc, err := l.roundTrip(ctx, stan, func(s *session) (*moov.Message, error) { return withTN(s, req) })
	if err != nil {
		return BalanceInfo{}, err
	}
	if rc != iso8583.RCApproved {
		return BalanceInfo{}, &DeclineError{Op: "balance inquiry", MTI: iso8583.MTIAuthResponse, Code: rc}
	}
	var got iso8583.BalanceInquiry
	if err := iso8583.Unmarshal(rsp, &got); err != nil {
		return BalanceInfo{}, err
	}
	return ParseDE54(got.AdditionalAmounts)
}

// ParseDE54 reads the first 20-character occurrence of DE 54 (§3.3):
// account type n2 | amount type n2 | currency n3 | C/D | amount n12.
func ParseDE54(s string) (BalanceInfo, error) {
	if len(s) < 20 || len(s)%20 != 0 {
		return BalanceInfo{}, fmt.Errorf("%w: DE 54 %q", iso8583.ErrMalformed, s)
	}
	amt, err := strconv.ParseInt(s[8:20], 10, 64)
	if err != nil || amt < 0 || strings.ContainsAny(s[8:20], "+-") {
		return BalanceInfo{}, fmt.Errorf("%w: DE 54 amount %q", iso8583.ErrMalformed, s[8:20])
	}
	if _, err := strconv.ParseUint(s[4:7], 10, 16); err != nil || strings.ContainsAny(s[4:7], "+-") {
		return BalanceInfo{}, fmt.Errorf("%w: DE 54 currency %q", iso8583.ErrMalformed, s[4:7])
	}
	switch s[7] {
	case 'C':
	case 'D':
		amt = -amt
	default:
		return BalanceInfo{}, fmt.Errorf("%w: DE 54 sign %q", iso8583.ErrMalformed, s[7])
	}
	return BalanceInfo{Available: amt, Currency: s[4:7]}, nil
}
