package terminal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/valuechip/valuechip/apdu"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/reader"
)

// Errors of the terminal flows.
var (
	// ErrPending: the journal holds a transaction whose outcome is not
	// known yet; call Recover (on the same card) first.
	ErrPending = errors.New("terminal: a transaction is pending recovery")
	// ErrInterrupted: the answer to the completion command was lost; the
	// transaction stays in the journal until Recover resolves it.
	ErrInterrupted = errors.New("terminal: transaction interrupted, outcome unknown until recovery")
	// ErrUndecidable: recovery cannot tell whether the pending
	// transaction happened (docs/purse.md §9.4); the journal is kept.
	ErrUndecidable = errors.New("terminal: outcome of the pending transaction cannot be decided")
	// ErrOtherCard: the card presented is not the one of the pending
	// transaction.
	ErrOtherCard = errors.New("terminal: not the card of the pending transaction")
	// ErrNotPersonalised: the purse is installed but not personalised.
	ErrNotPersonalised = errors.New("terminal: purse not personalised")
	// ErrCardJournal: the purse reports a journaled value change it
	// could not recover (flag 01, docs/purse.md §3.4).
	ErrCardJournal = errors.New("terminal: the card reports an unrecovered journal; reset the card")
)

// CardError is a purse command the card refused, with its status word.
type CardError struct {
	Op string
	SW apdu.SW
}

func (e *CardError) Error() string {
	return fmt.Sprintf("%s: card returned %s", e.Op, wire.Describe(insOf(e.Op), e.SW))
}

// Unwrap lets errors.Is match the status word (apdu.SW.Is).
func (e *CardError) Unwrap() error { return e.SW.Err() }

// Config configures a Terminal.
type Config struct {
	// SAM computes M1 and verifies M2; required for Pay.
	SAM SecurityModule
	// Authority funds loads and receives TCs; required for Load, and
	// advised of every debit when set.
	Authority LoadAuthority
	// Journal keeps the transaction in progress; nil means a
	// MemoryJournal.
	Journal Journal
	// TerminalID identifies the terminal in the card's records.
	TerminalID wire.TerminalID
	// AID is the purse instance; nil means wire.AID().
	AID []byte
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Rand supplies host nonces (crypto/rand by default).
	Rand io.Reader
}

// Terminal runs purse transactions on cards reached through a
// reader.Transceiver. A Terminal handles one card at a time.
type Terminal struct{ cfg Config }

// New returns a Terminal.
func New(cfg Config) *Terminal {
	if cfg.Journal == nil {
		cfg.Journal = &MemoryJournal{}
	}
	if cfg.AID == nil {
		cfg.AID = wire.AID()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Terminal{cfg: cfg}
}

// Journal returns the terminal's journal.
func (t *Terminal) Journal() Journal { return t.cfg.Journal }

// Info is what SELECT and GET PURSE DATA tell (docs/purse.md §3.3, §3.4).
type Info struct {
	FCI  wire.FCI
	Data *wire.PurseData // nil while personalising
}

func insOf(op string) byte {
	switch op {
	case "SELECT":
		return wire.INSSelect
	case "GET PURSE DATA":
		return wire.INSGetPurseData
	case "INITIALIZE LOAD":
		return wire.INSInitializeLoad
	case "CREDIT LOAD":
		return wire.INSCreditLoad
	case "INITIALIZE DEBIT":
		return wire.INSInitializeDebit
	case "DEBIT":
		return wire.INSDebit
	case "GET TRANSACTION PROOF":
		return wire.INSGetTransactionProof
	case "READ RECORD":
		return wire.INSReadRecord
	case "VERIFY":
		return wire.INSVerify
	}
	return 0
}

// send transmits one command and returns the response; a transport
// failure is returned as is (wrapped), a status word other than 9000 (and
// the warning ok) as *CardError.
func send(ctx context.Context, tr reader.Transceiver, op string, cmd apdu.Command, ok ...apdu.SW) (apdu.Response, error) {
	raw, err := cmd.Bytes()
	if err != nil {
		return apdu.Response{}, fmt.Errorf("%s: %w", op, err)
	}
	out, err := tr.Transceive(ctx, raw)
	if err != nil {
		return apdu.Response{}, fmt.Errorf("%s: %w", op, err)
	}
	rsp, err := apdu.ParseResponse(out)
	if err != nil {
		return apdu.Response{}, fmt.Errorf("%s: %w", op, err)
	}
	if rsp.SW == apdu.SWNoError {
		return rsp, nil
	}
	for _, s := range ok {
		if rsp.SW == s {
			return rsp, nil
		}
	}
	return rsp, &CardError{Op: op, SW: rsp.SW}
}

// Info selects the purse (which also lets the card recover its own
// journal, docs/purse.md §9.3) and reads its data.
func (t *Terminal) Info(ctx context.Context, tr reader.Transceiver) (*Info, error) {
	rsp, err := send(ctx, tr, "SELECT", wire.Select(t.cfg.AID), wire.SWBlockedSelected)
	if err != nil {
		return nil, err
	}
	fci, err := wire.ParseFCI(rsp.Data)
	if err != nil {
		return nil, fmt.Errorf("SELECT: %w", err)
	}
	info := &Info{FCI: fci}
	if !fci.Personalised() {
		return info, nil
	}
	rsp, err = send(ctx, tr, "GET PURSE DATA", wire.GetPurseData())
	if err != nil {
		return nil, err
	}
	pd, err := wire.ParsePurseData(rsp.Data)
	if err != nil {
		return nil, fmt.Errorf("GET PURSE DATA: %w", err)
	}
	info.Data = &pd
	return info, nil
}

func (t *Terminal) ready(ctx context.Context, tr reader.Transceiver) (*Info, error) {
	if p, err := t.cfg.Journal.Load(); err != nil {
		return nil, err
	} else if p != nil {
		return nil, fmt.Errorf("%w: %s of %d on card %X (ATC %d)", ErrPending, p.Kind, p.Amount, p.CardID[:], p.ATC)
	}
	info, err := t.Info(ctx, tr)
	if err != nil {
		return nil, err
	}
	if info.Data == nil {
		return nil, ErrNotPersonalised
	}
	if info.Data.Flags&wire.FlagJournalPending != 0 {
		return nil, ErrCardJournal
	}
	return info, nil
}

// Balance returns the purse data.
func (t *Terminal) Balance(ctx context.Context, tr reader.Transceiver) (*Info, error) {
	info, err := t.Info(ctx, tr)
	if err != nil {
		return nil, err
	}
	if info.Data == nil {
		return nil, ErrNotPersonalised
	}
	return info, nil
}

// Log reads the transaction log, newest first (READ RECORD,
// docs/purse.md §3.10, §6), after selecting the purse.
func (t *Terminal) Log(ctx context.Context, tr reader.Transceiver) ([]wire.LogRecord, error) {
	if _, err := t.Balance(ctx, tr); err != nil {
		return nil, err
	}
	var out []wire.LogRecord
	for n := 1; n <= wire.LogCapacity; n++ {
		rsp, err := send(ctx, tr, "READ RECORD", wire.ReadLog(byte(n)), apdu.ErrRecordNotFound)
		if err != nil {
			return nil, err
		}
		if rsp.SW == apdu.ErrRecordNotFound {
			break
		}
		r, err := wire.ParseLogRecord(rsp.Data)
		if err != nil {
			return nil, fmt.Errorf("READ RECORD %d: %w", n, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// VerifyPIN presents the cardholder PIN (docs/purse.md §3.12). A wrong
// PIN is a *CardError whose SW is 63Cx (x tries left; SW.Retries), a
// blocked PIN 6983. It selects the purse first; the verification holds on
// this channel until the next debit above the PIN-free limit, SELECT or
// reset, so to pay above the PIN-free limit pass the PIN to Pay.
func (t *Terminal) VerifyPIN(ctx context.Context, tr reader.Transceiver, pin string) error {
	if _, err := t.Balance(ctx, tr); err != nil {
		return err
	}
	return t.verifyPIN(ctx, tr, pin)
}

func (t *Terminal) verifyPIN(ctx context.Context, tr reader.Transceiver, pin string) error {
	block, err := wire.EncodePIN(pin)
	if err != nil {
		return err
	}
	_, err = send(reader.WithSensitive(ctx), tr, "VERIFY", wire.Verify(block))
	return err
}

// Receipt is the outcome of a value change: the card's log record with
// its TC (docs/purse.md §6), as the terminal reconstructed and checked it.
type Receipt struct {
	CardID    wire.CardID
	Record    wire.LogRecord
	Recovered bool // the outcome was learnt by recovery (§9.4)
}

// PayOptions tune Pay.
type PayOptions struct {
	// PIN, when set, is verified after SELECT and before INITIALIZE
	// DEBIT (needed above the PIN-free limit, docs/purse.md §3.7).
	PIN string
}

// Pay debits amount (minor units) from the purse: SELECT, INITIALIZE
// DEBIT, M1 from the security module, DEBIT, M2 checked by the module
// (docs/purse.md §1, §3.7, §3.8). The transaction is journaled before
// DEBIT is sent; if the answer is lost the error wraps ErrInterrupted and
// Recover resolves it on the next tap.
func (t *Terminal) Pay(ctx context.Context, tr reader.Transceiver, amount uint32, opts PayOptions) (*Receipt, error) {
	if t.cfg.SAM == nil {
		return nil, errors.New("terminal: no security module configured")
	}
	if amount == 0 {
		return nil, fmt.Errorf("terminal: amount must be at least 1")
	}
	info, err := t.ready(ctx, tr)
	if err != nil {
		return nil, err
	}
	kvn := t.cfg.SAM.DebitKeyVersion()
	if info.FCI.KeyVersions[1] != kvn {
		return nil, fmt.Errorf("terminal: the purse's K_DEBIT has version %02X, the security module %02X", info.FCI.KeyVersions[1], kvn)
	}
	if opts.PIN != "" {
		if err := t.verifyPIN(ctx, tr, opts.PIN); err != nil {
			return nil, err
		}
	}
	rsp, err := send(ctx, tr, "INITIALIZE DEBIT", wire.InitializeDebit{KeyVersion: kvn, Amount: amount, Currency: info.FCI.Currency, TerminalID: t.cfg.TerminalID}.Command())
	if err != nil {
		return nil, err
	}
	init, err := wire.ParseInitializeDebitResponse(rsp.Data)
	if err != nil {
		return nil, fmt.Errorf("INITIALIZE DEBIT: %w", err)
	}
	if init.ATC != info.Data.ATC+1 || init.KeyVersion != kvn {
		return nil, fmt.Errorf("INITIALIZE DEBIT: card answered ATC' %d key version %02X, expected %d and %02X", init.ATC, init.KeyVersion, info.Data.ATC+1, kvn)
	}
	dt, err := wire.DateTimeOf(t.cfg.Now().UTC())
	if err != nil {
		return nil, err
	}
	d := wire.DebitData{CardID: info.FCI.CardID, ATC: init.ATC, Amount: amount, Currency: info.FCI.Currency,
		Balance: init.Balance, TerminalID: t.cfg.TerminalID, DateTime: dt}
	auth, err := t.cfg.SAM.AuthorizeDebit(ctx, d, init.CardNonce)
	if err != nil {
		return nil, err
	}
	p := &Pending{Kind: "debit", CardID: d.CardID, ATC: d.ATC, Amount: amount, Sent: true, Debit: &auth}
	if err := t.cfg.Journal.Save(p); err != nil {
		return nil, err // DEBIT not sent: nothing happened
	}
	rsp, err = send(ctx, tr, "DEBIT", auth.Command().Command())
	var ce *CardError
	switch {
	case errors.As(err, &ce):
		// An error status always means nothing changed (docs/purse.md §9.2).
		if cerr := t.cfg.Journal.Clear(); cerr != nil {
			return nil, errors.Join(err, cerr)
		}
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	dr, err := wire.ParseDebitResponse(rsp.Data)
	if err != nil {
		// The card answered 9000 with garbage: it may have debited.
		return nil, fmt.Errorf("%w: DEBIT: %w", ErrInterrupted, err)
	}
	rec := debitRecord(auth, dr.BalanceAfter, dr.M2, dr.TC)
	return t.finishDebit(ctx, p, rec, dr.ATC, false)
}

func debitRecord(a DebitAuth, after uint32, m2, tc wire.MAC) wire.LogRecord {
	return wire.LogRecord{ATC: a.Data.ATC, Type: wire.TypeDebit, Amount: a.Data.Amount, BalanceAfter: after,
		Currency: a.Data.Currency, DateTime: a.Data.DateTime, TerminalID: a.Data.TerminalID,
		Reference: a.Data.TSMSeq, HostMAC: a.M1, CardMAC: m2, TC: tc}
}

// finishDebit verifies M2 with the security module and advises the
// authority; the sale counts only if M2 verifies (docs/purse.md §12).
func (t *Terminal) finishDebit(ctx context.Context, p *Pending, rec wire.LogRecord, atc uint32, recovered bool) (*Receipt, error) {
	if err := t.cfg.SAM.VerifyDebit(ctx, *p.Debit, atc, rec.BalanceAfter, rec.CardMAC); err != nil {
		// Not a genuine proof: keep the journal; the sale is not counted
		// and the case needs investigation, never a silent guess.
		return nil, fmt.Errorf("%w: %w", ErrUndecidable, err)
	}
	if t.cfg.Authority != nil {
		if err := t.cfg.Authority.Advise(ctx, p.CardID, rec); err != nil {
			return nil, fmt.Errorf("debit advice: %w", err)
		}
	}
	if err := t.cfg.Journal.Clear(); err != nil {
		return nil, err
	}
	return &Receipt{CardID: p.CardID, Record: rec, Recovered: recovered}, nil
}

// Load credits amount (minor units) online: SELECT, INITIALIZE LOAD, S1
// to the authority, S2 back, CREDIT LOAD, TC to the authority
// (docs/purse.md §1, §3.5, §3.6). The transaction is journaled before the
// authority is asked; if the answer to CREDIT LOAD is lost the error wraps
// ErrInterrupted and Recover resolves it.
func (t *Terminal) Load(ctx context.Context, tr reader.Transceiver, amount uint32) (*Receipt, error) {
	if t.cfg.Authority == nil {
		return nil, errors.New("terminal: no load authority configured")
	}
	if amount == 0 {
		return nil, fmt.Errorf("terminal: amount must be at least 1")
	}
	info, err := t.ready(ctx, tr)
	if err != nil {
		return nil, err
	}
	var hn wire.Nonce
	if _, err := io.ReadFull(t.cfg.Rand, hn[:]); err != nil {
		return nil, fmt.Errorf("terminal: host nonce: %w", err)
	}
	kvn := info.FCI.KeyVersions[0]
	rsp, err := send(ctx, tr, "INITIALIZE LOAD", wire.InitializeLoad{KeyVersion: kvn, Amount: amount, Currency: info.FCI.Currency, TerminalID: t.cfg.TerminalID, HostNonce: hn}.Command())
	if err != nil {
		return nil, err
	}
	init, err := wire.ParseInitializeLoadResponse(rsp.Data)
	if err != nil {
		return nil, fmt.Errorf("INITIALIZE LOAD: %w", err)
	}
	if init.ATC != info.Data.ATC+1 {
		return nil, fmt.Errorf("INITIALIZE LOAD: card answered ATC' %d, expected %d", init.ATC, info.Data.ATC+1)
	}
	req := LoadRequest{CardID: info.FCI.CardID, KeyVersion: init.KeyVersion, ATC: init.ATC, Amount: amount, Currency: info.FCI.Currency,
		Balance: init.Balance, TerminalID: t.cfg.TerminalID, CardNonce: init.CardNonce, HostNonce: hn, S1: init.S1}
	// Journal before asking for funds, so an authorisation is never
	// orphaned: until Sent, recovery just reverses it.
	p := &Pending{Kind: "load", CardID: req.CardID, ATC: req.ATC, Amount: amount, Load: &LoadPending{Request: req}}
	if err := t.cfg.Journal.Save(p); err != nil {
		return nil, err
	}
	auth, err := t.cfg.Authority.AuthorizeLoad(ctx, req)
	if err != nil {
		if rerr := t.abandonLoad(ctx, p); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		return nil, err
	}
	p.Load.Auth, p.Sent = &auth, true
	if err := t.cfg.Journal.Save(p); err != nil {
		return nil, errors.Join(err, t.abandonLoad(ctx, p))
	}
	rsp, err = send(ctx, tr, "CREDIT LOAD", auth.Command().Command())
	var ce *CardError
	switch {
	case errors.As(err, &ce):
		return nil, errors.Join(err, t.abandonLoad(ctx, p))
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	cr, err := wire.ParseCreditLoadResponse(rsp.Data)
	if err != nil {
		return nil, fmt.Errorf("%w: CREDIT LOAD: %w", ErrInterrupted, err)
	}
	if cr.ATC != req.ATC || cr.BalanceAfter != req.Balance+amount {
		return nil, fmt.Errorf("%w: CREDIT LOAD: card answered ATC %d balance %d, expected %d and %d", ErrUndecidable, cr.ATC, cr.BalanceAfter, req.ATC, req.Balance+amount)
	}
	return t.finishLoad(ctx, p, loadRecord(p.Load, cr.BalanceAfter, cr.TC), false)
}

func loadRecord(l *LoadPending, after uint32, tc wire.MAC) wire.LogRecord {
	r := l.Request
	return wire.LogRecord{ATC: r.ATC, Type: wire.TypeLoad, Amount: r.Amount, BalanceAfter: after, Currency: r.Currency,
		DateTime: l.Auth.DateTime, TerminalID: r.TerminalID, Reference: l.Auth.AuthRef, HostMAC: l.Auth.S2, CardMAC: r.S1, TC: tc}
}

// abandonLoad reverses a load the card did not apply and clears the
// journal.
func (t *Terminal) abandonLoad(ctx context.Context, p *Pending) error {
	if err := t.cfg.Authority.ReverseLoad(ctx, p.Load.Request); err != nil {
		return fmt.Errorf("load reversal: %w", err)
	}
	return t.cfg.Journal.Clear()
}

// finishLoad sends the completion advice (the TC) and clears the journal.
func (t *Terminal) finishLoad(ctx context.Context, p *Pending, rec wire.LogRecord, recovered bool) (*Receipt, error) {
	if err := t.cfg.Authority.Advise(ctx, p.CardID, rec); err != nil {
		// The card holds the value; keep the journal so the advice is
		// retried by the next recovery.
		return nil, fmt.Errorf("load completion advice: %w", err)
	}
	if err := t.cfg.Journal.Clear(); err != nil {
		return nil, err
	}
	return &Receipt{CardID: p.CardID, Record: rec, Recovered: recovered}, nil
}

// Outcome of a recovered transaction.
type Outcome string

// Outcomes.
const (
	OutcomeNone    Outcome = "none"     // nothing was pending
	OutcomeDone    Outcome = "done"     // the value change happened; Receipt holds the card's record
	OutcomeNotDone Outcome = "not-done" // it did not happen (a load was reversed)
)

// Resolution is what Recover found.
type Resolution struct {
	Outcome Outcome
	Pending *Pending // the transaction that was pending
	Receipt *Receipt // for OutcomeDone
}

// Recover resolves the journaled transaction, if any, on the card behind
// tr (a fresh connection: the next tap), following docs/purse.md §9.4:
// SELECT (the card recovers its own journal), check the CardID, GET PURSE
// DATA, GET TRANSACTION PROOF(ATC'). A record whose MACs are the
// terminal's → done (for a debit M2 verified by the security module; the
// record's TC goes to the authority); no record and the purse's ATC below
// ATC' → not done (a load is reversed). Anything else wraps ErrUndecidable
// and keeps the journal.
func (t *Terminal) Recover(ctx context.Context, tr reader.Transceiver) (*Resolution, error) {
	p, err := t.cfg.Journal.Load()
	if err != nil {
		return nil, err
	}
	if p == nil {
		return &Resolution{Outcome: OutcomeNone}, nil
	}
	if p.Kind == "load" && t.cfg.Authority == nil || p.Kind == "debit" && t.cfg.SAM == nil {
		return nil, fmt.Errorf("terminal: a pending %s needs the %s to be resolved", p.Kind, map[string]string{"load": "load authority", "debit": "security module"}[p.Kind])
	}
	if p.Kind == "load" && !p.Sent {
		// CREDIT LOAD was never sent: the card cannot have changed.
		if err := t.abandonLoad(ctx, p); err != nil {
			return nil, err
		}
		return &Resolution{Outcome: OutcomeNotDone, Pending: p}, nil
	}
	info, err := t.Info(ctx, tr)
	if err != nil {
		return nil, err
	}
	if info.FCI.CardID != p.CardID {
		return nil, fmt.Errorf("%w: card %X presented, %X expected", ErrOtherCard, info.FCI.CardID[:], p.CardID[:])
	}
	if info.Data == nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecidable, ErrNotPersonalised)
	}
	if info.Data.Flags&wire.FlagJournalPending != 0 {
		return nil, fmt.Errorf("%w: %w", ErrUndecidable, ErrCardJournal)
	}
	rsp, err := send(ctx, tr, "GET TRANSACTION PROOF", wire.GetTransactionProof(p.ATC), apdu.ErrRefDataNotFound)
	if err != nil {
		return nil, err
	}
	if rsp.SW == apdu.ErrRefDataNotFound {
		if info.Data.ATC >= p.ATC {
			return nil, fmt.Errorf("%w: the card no longer holds the record of ATC %d (its ATC is %d)", ErrUndecidable, p.ATC, info.Data.ATC)
		}
		return t.notDone(ctx, p)
	}
	rec, err := wire.ParseLogRecord(rsp.Data)
	if err != nil {
		return nil, fmt.Errorf("GET TRANSACTION PROOF: %w", err)
	}
	if rec.ATC != p.ATC {
		return nil, fmt.Errorf("%w: asked for the record of ATC %d, got ATC %d", ErrUndecidable, p.ATC, rec.ATC)
	}
	switch p.Kind {
	case "debit":
		want := debitRecord(*p.Debit, rec.BalanceAfter, rec.CardMAC, rec.TC)
		if rec != want {
			// Another transaction took ATC': ours cannot have completed
			// (the card checks the purse is unchanged, §3.8). The
			// record's host MAC differs from our M1.
			if rec.HostMAC.Equal(p.Debit.M1) {
				return nil, fmt.Errorf("%w: record of ATC %d carries our M1 but other data: %v", ErrUndecidable, p.ATC, rec)
			}
			return t.notDone(ctx, p)
		}
		r, err := t.finishDebit(ctx, p, rec, rec.ATC, true)
		if err != nil {
			return nil, err
		}
		return &Resolution{Outcome: OutcomeDone, Pending: p, Receipt: r}, nil
	default:
		want := loadRecord(p.Load, p.Load.Request.Balance+p.Amount, rec.TC)
		if rec != want {
			if rec.HostMAC.Equal(p.Load.Auth.S2) {
				return nil, fmt.Errorf("%w: record of ATC %d carries our S2 but other data: %v", ErrUndecidable, p.ATC, rec)
			}
			return t.notDone(ctx, p)
		}
		r, err := t.finishLoad(ctx, p, rec, true)
		if err != nil {
			return nil, err
		}
		return &Resolution{Outcome: OutcomeDone, Pending: p, Receipt: r}, nil
	}
}

func (t *Terminal) notDone(ctx context.Context, p *Pending) (*Resolution, error) {
	if p.Kind == "load" {
		if err := t.abandonLoad(ctx, p); err != nil {
			return nil, err
		}
	} else if err := t.cfg.Journal.Clear(); err != nil {
		return nil, err
	}
	return &Resolution{Outcome: OutcomeNotDone, Pending: p}, nil
}
