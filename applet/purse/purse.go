// Package purse is the valuechip electronic purse: a stored-value applet
// that holds a balance in minor units of one currency, is loaded online
// by the money server (INITIALIZE LOAD / CREDIT LOAD, S1/S2), debited
// offline under the authority of a terminal's security module
// (INITIALIZE DEBIT / DEBIT, M1/M2), and leaves on every value change a
// transaction certificate (TC) only the money server can check. It is
// installed through the card manager (INSTALL, then STORE DATA routed by
// the security domain) like any other module.
//
// docs/purse.md is the normative specification; apdu/purse holds the wire
// definitions and cryptography shared with terminals and the server.
// Section references below (§n) are to docs/purse.md.
package purse

import (
	"bytes"
	"crypto/subtle"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet"
)

// AIDs (§2): the load file, the executable module and the default
// instance. Terminals select AID.
var (
	PackageAID = wire.PackageAID()
	ModuleAID  = wire.ModuleAID()
	AID        = wire.AID()
)

// Module is the purse's implementation, for the chip's module list
// (applet/profile) and for load files naming it.
var Module = applet.Module{
	AID:     ModuleAID,
	Name:    "valuechip purse",
	Version: "1.0",
	New:     newPurse,
}

// newPurse creates an instance: at INSTALL (memory empty: the purse is
// PERSONALISING) or when the chip re-creates it after power-up, when an
// interrupted value change is recovered (§9.3). The purse takes no
// install parameters.
func newPurse(env applet.Env, params []byte) (applet.Applet, error) {
	if len(params) != 0 {
		return nil, apdu.ErrWrongData
	}
	p := &purse{}
	_ = p.recover(env) // a failure leaves the journal for the next attempt
	return p, nil
}

// Transient keys (per logical channel, lost on reset and deselection).
const (
	tSession   = "session"   // *session between INITIALIZE and its completion
	tPIN       = "pin"       // true once VERIFY succeeded
	tChallenge = "challenge" // GET CHALLENGE's value, for the next command only
)

// purse is one instance. It caches the immutable configuration (with the
// keys' CMAC schedules) once personalised; everything mutable is read
// from persistent memory by every command.
type purse struct {
	cfg *config
	fci [3][]byte // SELECT responses by life cycle, built once
}

// session is what INITIALIZE LOAD / DEBIT leaves for its completion, in
// transient memory only (§3.5, §3.7): a reset, a deselection, another
// INITIALIZE or any completion attempt ends it.
type session struct {
	kind      byte // wire.TypeLoad or wire.TypeDebit
	atc       uint32
	balance   uint32
	offline   uint32
	amount    uint32
	terminal  wire.TerminalID
	cardNonce wire.Nonce
	sk        *cmac.MAC // SK_L (load); the debit key needs the TSM nonce of DEBIT
	s1        wire.MAC
	pinUsed   bool
}

func (p *purse) config(env applet.Env) (*config, error) {
	if p.cfg == nil {
		c, err := loadConfig(env.Memory())
		if err != nil {
			return nil, err
		}
		p.cfg = c
	}
	return p.cfg, nil
}

// Select answers the FCI (§3.3) after recovering an interrupted value
// change; a BLOCKED purse is selected with 6283.
func (p *purse) Select(env applet.Env, _ apdu.Command) ([]byte, apdu.SW) {
	clear(env.Transient())
	_ = p.recover(env)
	st, ok := loadState(env.Memory())
	if !ok {
		return nil, apdu.ErrUnknown
	}
	fci, err := p.buildFCI(env, st.life)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	if st.life == wire.StateBlocked {
		return fci, wire.SWBlockedSelected
	}
	return fci, apdu.SWNoError
}

func (p *purse) buildFCI(env applet.Env, life byte) ([]byte, error) {
	if c := p.fci[life]; c != nil && life != wire.StatePersonalising {
		return bytes.Clone(c), nil
	}
	f := wire.FCI{AID: env.AID(), Version: wire.AppVersion, LifeCycle: life}
	if life != wire.StatePersonalising {
		cfg, err := p.config(env)
		if err != nil {
			return nil, err
		}
		f.CardID, f.Currency, f.PINFreeLimit = cfg.cardID, cfg.currency, cfg.limits.PINFreeLimit
		f.KeyVersions = [3]byte{cfg.kvLoad, cfg.kvDebit, cfg.kvTC}
		f.LogCapacity = wire.LogCapacity
	}
	b, err := f.Bytes()
	if err != nil {
		return nil, err
	}
	p.fci[life] = b
	return bytes.Clone(b), nil
}

// Deselect drops the channel's session, PIN state and challenge.
func (p *purse) Deselect(env applet.Env) { clear(env.Transient()) }

// Process dispatches a command (§3). A GET CHALLENGE value is valid for
// the next command only, whatever it is.
func (p *purse) Process(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	t := env.Transient()
	chal, _ := t[tChallenge].([]byte)
	delete(t, tChallenge)
	if cmd.Chained() {
		return nil, apdu.ErrChainingUnsupported
	}
	if cmd.CLA&0x80 == 0 {
		if sw := checkClass(cmd.CLA); sw != apdu.SWNoError {
			return nil, sw
		}
		switch cmd.INS {
		case wire.INSVerify:
			return p.verify(env, cmd)
		case wire.INSGetChallenge:
			return p.getChallenge(env, cmd)
		case wire.INSReadRecord:
			return p.readRecord(env, cmd)
		case wire.INSSelect:
			return nil, apdu.ErrIncorrectP1P2 // only SELECT by AID, which the runtime handles
		}
		return nil, apdu.ErrINSNotSupported
	}
	if sw := checkClass(cmd.CLA); sw != apdu.SWNoError {
		return nil, sw
	}
	switch cmd.INS {
	case wire.INSGetPurseData:
		return p.getPurseData(env, cmd)
	case wire.INSInitializeLoad:
		return p.initializeLoad(env, cmd)
	case wire.INSCreditLoad:
		return p.creditLoad(env, cmd)
	case wire.INSInitializeDebit:
		return p.initializeDebit(env, cmd)
	case wire.INSDebit:
		return p.debit(env, cmd)
	case wire.INSGetTransactionProof:
		return p.transactionProof(env, cmd)
	case wire.INSSetStatus:
		return p.setStatus(env, cmd, chal)
	}
	return nil, apdu.ErrINSNotSupported
}

// checkClass accepts the classes of §3.1: the first-interindustry
// layout (00–1F, and its proprietary mirror 80–9F, b4b3 secure messaging)
// and the further layout of logical channels 4–19 (40–7F, C0–FF, b6
// secure messaging; ISO/IEC 7816-4 §5.4.1, GPCS §11.1.4). Chaining was
// refused before. The purse has no secure channel of its own, so every
// secure-messaging indication answers 6882.
func checkClass(cla byte) apdu.SW {
	switch {
	case cla&0x60 == 0x00: // 00–1F, 80–9F
		if cla&0x0C != 0 {
			return apdu.ErrSMNotSupported
		}
	case cla&0x40 != 0: // 40–7F, C0–FF
		if cla&0x20 != 0 {
			return apdu.ErrSMNotSupported
		}
	default: // 20–3F, A0–BF: RFU
		return apdu.ErrCLANotSupported
	}
	return apdu.SWNoError
}

// personalised returns the configuration and state of a personalised
// purse, after recovering a pending journal; 6985 before personalisation.
func (p *purse) personalised(env applet.Env) (*config, state, apdu.SW) {
	if err := p.recover(env); err != nil {
		return nil, state{}, applet.StatusOf(err)
	}
	st, ok := loadState(env.Memory())
	if !ok {
		return nil, state{}, apdu.ErrUnknown
	}
	if st.life == wire.StatePersonalising {
		return nil, st, apdu.ErrConditionsNotMet
	}
	cfg, err := p.config(env)
	if err != nil {
		return nil, st, apdu.ErrUnknown
	}
	return cfg, st, apdu.SWNoError
}

func p1p2Zero(cmd apdu.Command) bool { return cmd.P1 == 0 && cmd.P2 == 0 }

// getPurseData answers GET PURSE DATA (§3.4).
func (p *purse) getPurseData(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if !p1p2Zero(cmd) {
		return nil, apdu.ErrIncorrectP1P2
	}
	if len(cmd.Data) != 0 {
		return nil, apdu.ErrWrongLength
	}
	cfg, st, sw := p.personalised(env)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	m, t := env.Memory(), env.Transient()
	flags := st.flags & wire.FlagRecovered
	if _, ok := m.Get(recJournal); ok {
		flags |= wire.FlagJournalPending
	}
	if t[tPIN] == true {
		flags |= wire.FlagPINVerified
	}
	if _, ok := t[tSession].(*session); ok {
		flags |= wire.FlagSessionOpen
	}
	return wire.PurseData{
		Balance: st.balance, MaxBalance: cfg.limits.MaxBalance, Currency: cfg.currency, ATC: st.atc,
		LifeCycle: st.life, Flags: flags, PINTries: pinTries(m), OfflineTotal: st.offline,
	}.Bytes(), apdu.SWNoError
}

func pinTries(m applet.Memory) byte {
	v, ok := m.Get(recTries)
	if !ok || len(v) != 1 {
		return 0
	}
	return v[0]
}

// getChallenge answers GET CHALLENGE (ISO/IEC 7816-4) with 8
// random bytes, kept for the next command (SET STATUS, §3.11).
func (p *purse) getChallenge(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if !p1p2Zero(cmd) {
		return nil, apdu.ErrIncorrectP1P2
	}
	if len(cmd.Data) != 0 || cmd.Ne != wire.ChallengeLen {
		return nil, apdu.ErrWrongLength
	}
	if _, _, sw := p.personalised(env); sw != apdu.SWNoError {
		return nil, sw
	}
	c := make([]byte, wire.ChallengeLen)
	env.Random(c)
	env.Transient()[tChallenge] = c
	return bytes.Clone(c), apdu.SWNoError
}

// setStatus implements SET STATUS (§3.11): block, unblock, or reset the
// PIN try counter, authorised by the money server with a MAC under a
// session key derived from K_LOAD and the challenge of the GET CHALLENGE
// just before.
func (p *purse) setStatus(env applet.Env, cmd apdu.Command, chal []byte) ([]byte, apdu.SW) {
	op := cmd.P1
	if op != wire.OpBlock && op != wire.OpUnblock && op != wire.OpResetPIN {
		return nil, apdu.ErrIncorrectP1P2
	}
	if len(cmd.Data) != wire.SetStatusLen {
		return nil, apdu.ErrWrongLength
	}
	cfg, st, sw := p.personalised(env)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	if cmd.P2 != cfg.kvLoad {
		return nil, apdu.ErrReferenceUnusable
	}
	if len(chal) != wire.ChallengeLen ||
		op == wire.OpBlock && st.life != wire.StateActive ||
		op == wire.OpUnblock && st.life != wire.StateBlocked {
		return nil, apdu.ErrConditionsNotMet
	}
	var challenge wire.Nonce
	copy(challenge[:], chal)
	key := wire.KDF(cfg.load, wire.DeriveStatusSession, append(cfg.cardID[:], challenge[:]...), cfg.loadBits)
	sk, err := cmac.NewMAC(key)
	clear(key)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	var got wire.MAC
	copy(got[:], cmd.Data)
	if !wire.Check(sk, wire.StatusInput(cfg.cardID, st.atc, op, cmd.P2), got) {
		return nil, apdu.ErrSecurityStatus
	}
	m := env.Memory()
	switch op {
	case wire.OpResetPIN:
		err = m.Put(recTries, []byte{cfg.pinTries})
	default:
		st.life = wire.StateActive
		if op == wire.OpBlock {
			st.life = wire.StateBlocked
		}
		err = m.Put(recState, st.bytes())
	}
	if err != nil {
		return nil, applet.StatusOf(err)
	}
	delete(env.Transient(), tSession) // §3.11: a successful SET STATUS ends the channel's session
	return nil, apdu.SWNoError
}

// verify implements VERIFY of the application PIN (§3.12; ISO/IEC 7816-4
// §11.5.6). The try counter is decremented in persistent memory before
// the comparison, so cutting power after a wrong PIN saves no try.
func (p *purse) verify(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P1 != 0 || cmd.P2 != wire.PINReference {
		return nil, apdu.ErrIncorrectP1P2
	}
	if len(cmd.Data) != 0 && len(cmd.Data) != wire.PINBlockLen {
		return nil, apdu.ErrWrongLength
	}
	cfg, _, sw := p.personalised(env)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	m, t := env.Memory(), env.Transient()
	tries := pinTries(m)
	if len(cmd.Data) == 0 {
		switch {
		case t[tPIN] == true:
			return nil, apdu.SWNoError
		case tries == 0:
			return nil, apdu.ErrAuthBlocked
		}
		return nil, apdu.NewSW(0x63, 0xC0|tries)
	}
	if _, err := wire.CheckPINBlock(cmd.Data); err != nil {
		return nil, apdu.ErrWrongData
	}
	if tries == 0 {
		return nil, apdu.ErrAuthBlocked
	}
	if err := m.Put(recTries, []byte{tries - 1}); err != nil {
		return nil, applet.StatusOf(err)
	}
	pin, _ := m.Get(recPIN)
	if subtle.ConstantTimeCompare(pin, cmd.Data) == 1 {
		if err := m.Put(recTries, []byte{cfg.pinTries}); err != nil {
			return nil, applet.StatusOf(err)
		}
		t[tPIN] = true
		return nil, apdu.SWNoError
	}
	delete(t, tPIN)
	return nil, apdu.NewSW(0x63, 0xC0|(tries-1))
}

// readRecord implements READ RECORD of the log (§3.10): record 1 is the
// newest.
func (p *purse) readRecord(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P2 != wire.LogReadP2 || cmd.P1 == 0 {
		return nil, apdu.ErrIncorrectP1P2
	}
	if len(cmd.Data) != 0 {
		return nil, apdu.ErrWrongLength
	}
	_, st, sw := p.personalised(env)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	n := uint32(cmd.P1)
	if n > wire.LogCapacity || n > st.atc {
		return nil, apdu.ErrRecordNotFound
	}
	return p.logRecord(env, st.atc-n+1, apdu.ErrRecordNotFound)
}

// transactionProof implements GET TRANSACTION PROOF (§3.9).
func (p *purse) transactionProof(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if !p1p2Zero(cmd) {
		return nil, apdu.ErrIncorrectP1P2
	}
	atc, err := wire.ParseATC(cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongLength
	}
	_, st, sw := p.personalised(env)
	if sw != apdu.SWNoError {
		return nil, sw
	}
	if atc == 0 || atc > st.atc || st.atc-atc >= wire.LogCapacity {
		return nil, apdu.ErrRefDataNotFound
	}
	return p.logRecord(env, atc, apdu.ErrRefDataNotFound)
}

func (p *purse) logRecord(env applet.Env, atc uint32, notFound apdu.SW) ([]byte, apdu.SW) {
	v, ok := env.Memory().Get(logKey(atc))
	if !ok || len(v) != wire.LogRecordLen {
		return nil, notFound
	}
	if r, err := wire.ParseLogRecord(v); err != nil || r.ATC != atc {
		return nil, notFound
	}
	return v, apdu.SWNoError
}
