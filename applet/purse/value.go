package purse

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet"
)

// takeSession removes and returns the channel's session: every INITIALIZE
// replaces it and every completion attempt consumes it (§3.5–§3.8).
func takeSession(env applet.Env) *session {
	t := env.Transient()
	s, _ := t[tSession].(*session)
	delete(t, tSession)
	return s
}

// active returns config and state of a personalised, ACTIVE purse.
func (p *purse) active(env applet.Env) (*config, state, apdu.SW) {
	cfg, st, sw := p.personalised(env)
	if sw != apdu.SWNoError {
		return nil, st, sw
	}
	if st.life != wire.StateActive {
		return nil, st, wire.SWPurseBlocked
	}
	return cfg, st, apdu.SWNoError
}

// initializeLoad implements INITIALIZE LOAD (§3.5). Nothing is written to
// persistent memory: the session lives in transient memory until CREDIT
// LOAD.
func (p *purse) initializeLoad(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	takeSession(env)
	if !p1p2Zero(cmd) {
		return nil, apdu.ErrIncorrectP1P2
	}
	in, err := wire.ParseInitializeLoad(cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongLength
	}
	cfg, st, sw := p.active(env)
	switch {
	case sw != apdu.SWNoError:
		return nil, sw
	case in.KeyVersion != cfg.kvLoad:
		return nil, apdu.ErrReferenceUnusable
	case in.Amount == 0 || in.Currency != cfg.currency:
		return nil, apdu.ErrWrongData
	case st.atc == wire.MaxATC:
		return nil, wire.SWATCExhausted
	case in.Amount > cfg.limits.MaxLoad:
		return nil, wire.SWAmountLimit
	case uint64(st.balance)+uint64(in.Amount) > uint64(cfg.limits.MaxBalance):
		return nil, wire.SWMaxBalance
	}
	s := &session{kind: wire.TypeLoad, atc: st.atc + 1, balance: st.balance, offline: st.offline,
		amount: in.Amount, terminal: in.TerminalID}
	env.Random(s.cardNonce[:])
	sk := wire.KDF(cfg.load, wire.DeriveLoadSession, wire.SessionContext(cfg.cardID, s.atc, s.cardNonce, in.HostNonce), cfg.loadBits)
	if s.sk, err = cmac.NewMAC(sk); err != nil {
		return nil, apdu.ErrUnknown
	}
	clear(sk)
	s.s1 = wire.Sign(s.sk, wire.S1Input(s.loadData(cfg, wire.DateTime{}, 0)))
	env.Transient()[tSession] = s
	return wire.InitializeLoadResponse{Balance: st.balance, ATC: s.atc, KeyVersion: cfg.kvLoad, CardNonce: s.cardNonce, S1: s.s1}.Bytes(), apdu.SWNoError
}

func (s *session) loadData(cfg *config, dt wire.DateTime, ref uint32) wire.LoadData {
	return wire.LoadData{CardID: cfg.cardID, ATC: s.atc, Amount: s.amount, Currency: cfg.currency,
		Balance: s.balance, TerminalID: s.terminal, DateTime: dt, AuthRef: ref}
}

// unchanged reports whether the purse is still as its session saw it: no
// value change on another channel, no block since (§3.6, §3.8).
func (s *session) unchanged(st state) bool {
	return st.life == wire.StateActive && st.atc == s.atc-1 && st.balance == s.balance && st.offline == s.offline
}

// completing makes the checks CREDIT LOAD and DEBIT share, in the order
// that decides their status words (§3.6, §3.8, §7.2): P1-P2, the data's
// length (parseErr), a session opened by the matching INITIALIZE (s, taken
// already: any completion attempt ends it), a personalised active purse
// unchanged since, and a valid date.
func (p *purse) completing(env applet.Env, cmd apdu.Command, s *session, kind byte, parseErr error, dt wire.DateTime) (*config, apdu.SW) {
	switch {
	case !p1p2Zero(cmd):
		return nil, apdu.ErrIncorrectP1P2
	case parseErr != nil:
		return nil, apdu.ErrWrongLength
	case s == nil || s.kind != kind:
		return nil, apdu.ErrConditionsNotMet
	}
	cfg, st, sw := p.personalised(env)
	switch {
	case sw != apdu.SWNoError:
		return nil, sw
	case !s.unchanged(st):
		return nil, apdu.ErrConditionsNotMet
	case !dt.Valid():
		return nil, apdu.ErrWrongData
	}
	return cfg, apdu.SWNoError
}

// creditLoad implements CREDIT LOAD (§3.6): check S2, then apply the load
// with the anti-tearing protocol of §9.2.
func (p *purse) creditLoad(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	s := takeSession(env)
	in, err := wire.ParseCreditLoad(cmd.Data)
	cfg, sw := p.completing(env, cmd, s, wire.TypeLoad, err, in.DateTime)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	d := s.loadData(cfg, in.DateTime, in.AuthRef)
	if !wire.Check(s.sk, wire.S2Input(d, s.s1), in.S2) {
		return nil, apdu.ErrSecurityStatus
	}
	after, _ := d.BalanceAfter() // ≤ MaxBalance, checked by INITIALIZE LOAD
	rec := wire.LogRecord{ATC: s.atc, Type: wire.TypeLoad, Amount: s.amount, BalanceAfter: after,
		Currency: cfg.currency, DateTime: in.DateTime, TerminalID: s.terminal, Reference: in.AuthRef,
		HostMAC: in.S2, CardMAC: s.s1}
	// A load ends the offline period: the offline total restarts (§4.3).
	tc, sw := commitValue(env, cfg, state{life: wire.StateActive, balance: after, atc: s.atc}, rec)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	return wire.CreditLoadResponse{BalanceAfter: after, ATC: s.atc, TC: tc}.Bytes(), apdu.SWNoError
}

// initializeDebit implements INITIALIZE DEBIT (§3.7). Nothing is written
// to persistent memory.
func (p *purse) initializeDebit(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	takeSession(env)
	if !p1p2Zero(cmd) {
		return nil, apdu.ErrIncorrectP1P2
	}
	in, err := wire.ParseInitializeDebit(cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongLength
	}
	cfg, st, sw := p.active(env)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	lim := cfg.limits
	needPIN := in.Amount > lim.PINFreeLimit
	switch {
	case in.KeyVersion != cfg.kvDebit:
		return nil, apdu.ErrReferenceUnusable
	case in.Amount == 0 || in.Currency != cfg.currency:
		return nil, apdu.ErrWrongData
	case st.atc == wire.MaxATC:
		return nil, wire.SWATCExhausted
	case in.Amount > lim.MaxDebit:
		return nil, wire.SWAmountLimit
	case in.Amount > st.balance:
		return nil, wire.SWInsufficientFunds
	case lim.OfflineLimit != wire.NoLimit && uint64(st.offline)+uint64(in.Amount) > uint64(lim.OfflineLimit):
		return nil, wire.SWOfflineLimit
	case needPIN && pinTries(env.Memory()) == 0:
		return nil, apdu.ErrAuthBlocked
	case needPIN && env.Transient()[tPIN] != true:
		return nil, apdu.ErrSecurityStatus
	}
	s := &session{kind: wire.TypeDebit, atc: st.atc + 1, balance: st.balance, offline: st.offline,
		amount: in.Amount, terminal: in.TerminalID, pinUsed: needPIN}
	env.Random(s.cardNonce[:])
	env.Transient()[tSession] = s
	return wire.InitializeDebitResponse{Balance: st.balance, ATC: s.atc, KeyVersion: cfg.kvDebit, CardNonce: s.cardNonce}.Bytes(), apdu.SWNoError
}

// debit implements DEBIT (§3.8): derive SK_D with the TSM nonce, check
// M1, apply the debit (§9.2), answer M2 and TC.
func (p *purse) debit(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	s := takeSession(env)
	in, err := wire.ParseDebit(cmd.Data)
	cfg, sw := p.completing(env, cmd, s, wire.TypeDebit, err, in.DateTime)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	sk := wire.KDF(cfg.debit, wire.DeriveDebitSession, wire.SessionContext(cfg.cardID, s.atc, s.cardNonce, in.TSMNonce), cfg.debitBits)
	skm, err := cmac.NewMAC(sk)
	clear(sk)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	d := wire.DebitData{CardID: cfg.cardID, ATC: s.atc, Amount: s.amount, Currency: cfg.currency,
		Balance: s.balance, TerminalID: s.terminal, TSMSeq: in.TSMSeq, DateTime: in.DateTime}
	if !wire.Check(skm, wire.M1Input(d), in.M1) {
		return nil, apdu.ErrSecurityStatus
	}
	after := s.balance - s.amount // amount ≤ balance, checked by INITIALIZE DEBIT
	m2 := wire.Sign(skm, wire.M2Input(d, in.M1))
	rec := wire.LogRecord{ATC: s.atc, Type: wire.TypeDebit, Amount: s.amount, BalanceAfter: after,
		Currency: cfg.currency, DateTime: in.DateTime, TerminalID: s.terminal, Reference: in.TSMSeq,
		HostMAC: in.M1, CardMAC: m2}
	offline := s.offline + s.amount
	if offline < s.offline {
		offline = wire.NoLimit // saturate
	}
	tc, sw := commitValue(env, cfg, state{life: wire.StateActive, balance: after, atc: s.atc, offline: offline}, rec)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	if s.pinUsed {
		delete(env.Transient(), tPIN) // one PIN entry authorises one debit above the PIN-free limit
	}
	return wire.DebitResponse{BalanceAfter: after, ATC: s.atc, M2: m2, TC: tc}.Bytes(), apdu.SWNoError
}

// commitValue computes the record's TC under K_TC (§5.4) and applies the
// value change with the anti-tearing protocol of §9.2, in three steps:
//
//  1. journal: one write of the new state and log record (with CRC);
//  2. commit: state and log slot in one runtime transaction (two journal
//     writes and the commit mark);
//  3. clear: delete the journal.
//
// Power lost after step 1 completes the change at the next power-up or
// selection (recover); power lost before it leaves the purse unchanged.
// An error (not a tear) after step 1 discards the journal, so that an
// error status always means "nothing changed". The state and record are
// encoded once into the journal buffer, whose parts the commit reuses.
func commitValue(env applet.Env, cfg *config, st state, rec wire.LogRecord) (wire.MAC, apdu.SW) {
	j := make([]byte, 0, journalLen)
	j = st.append(j)
	j = rec.Append(j)
	sb, rb := j[:stateLen], j[stateLen:stateLen+wire.LogRecordLen]
	var in [2 + wire.CardIDLen + wire.LogRecordLen - wire.MACLen]byte
	copy(in[:], "TC")
	copy(in[2:], cfg.cardID[:])
	copy(in[2+wire.CardIDLen:], rb[:wire.LogRecordLen-wire.MACLen])
	tc := wire.Sign(cfg.tc, in[:])
	copy(rb[wire.LogRecordLen-wire.MACLen:], tc[:])
	j = binary.BigEndian.AppendUint32(j, crc32.ChecksumIEEE(j))
	m := env.Memory()
	if err := m.Put(recJournal, j); err != nil {
		return tc, applet.StatusOf(err)
	}
	if err := apply(env, rec.ATC, sb, rb); err != nil {
		_ = m.Delete(recJournal)
		return tc, applet.StatusOf(err)
	}
	if err := m.Delete(recJournal); err != nil {
		return tc, applet.StatusOf(err)
	}
	return tc, apdu.SWNoError
}

// apply writes the encoded state and log record in one runtime
// transaction.
func apply(env applet.Env, atc uint32, state, record []byte) error {
	m := env.Memory()
	if err := env.Begin(); err != nil {
		return err
	}
	if err := m.Put(recState, state); err != nil {
		env.Abort()
		return err
	}
	if err := m.Put(logKey(atc), record); err != nil {
		env.Abort()
		return err
	}
	return env.Commit()
}

// recover completes or discards an interrupted value change (§9.3). A
// journal whose CRC checks and whose ATC is the purse's ATC + 1 (not yet
// applied) or equal to it (applied, not yet cleared) is applied again —
// idempotently — with the "recovered" flag; any other journal is
// discarded. Deterministic: the same memory always recovers the same way.
func (p *purse) recover(env applet.Env) error {
	m := env.Memory()
	j, ok := m.Get(recJournal)
	if !ok {
		return nil
	}
	cur, okCur := loadState(m)
	st, rec, valid := parseJournal(j)
	if !valid || !okCur || cur.life == wire.StatePersonalising || (st.atc != cur.atc+1 && st.atc != cur.atc) {
		return m.Delete(recJournal)
	}
	st.flags |= wire.FlagRecovered
	if err := apply(env, st.atc, st.bytes(), rec.Bytes()); err != nil {
		return err
	}
	return m.Delete(recJournal)
}
