package cardmanager

import (
	"bytes"
	"errors"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
)

// transientKey names the ISD's state in Env.Transient.
const transientKey = "cardmanager"

// chanState is the ISD's volatile state on one logical channel (Amd D
// §5.6: a secure channel session belongs to one application session).
type chanState struct {
	scp     *scp03.Card // nil until INITIALIZE UPDATE
	kvn     byte        // key set of the session
	dek     scp03.Key   // its static Key-DEK, for PUT KEY and encrypted STORE DATA
	load    *loadState  // INSTALL [for load] accepted, LOAD blocks awaited
	perso   []byte      // application being personalised (INSTALL [for personalization])
	persoP2 int         // next STORE DATA block number
	chained *chainBuf   // GP command chain being reassembled (GPCS §11.1.5.1)
	status  *statusNext // GET STATUS continuation after '6310'
	// ownStore is the next STORE DATA block number for data addressed to
	// the ISD itself.
	ownStore int
}

func channelState(env applet.Env) *chanState {
	t := env.Transient()
	st, _ := t[transientKey].(*chanState)
	if st == nil {
		st = &chanState{}
		t[transientKey] = st
	}
	return st
}

// resetChannel ends the session and forgets everything in progress, on
// selection, deselection and reset (Amd D §5.6). It does not call into
// the runtime, as Deselect may run while the runtime is switching
// applications; an interrupted personalisation is simply dropped.
func resetChannel(env applet.Env) {
	t := env.Transient()
	if st, _ := t[transientKey].(*chanState); st != nil {
		st.endSession()
	}
	delete(t, transientKey)
}

// endSession terminates the secure channel session and wipes its keys.
func (st *chanState) endSession() {
	if st.scp != nil {
		st.scp.Terminate()
	}
	st.dek.Wipe()
	st.scp, st.dek, st.kvn = nil, nil, 0
}

// clearPending forgets the operations in progress: a load, a command
// chain, a GET STATUS continuation, and ends a personalisation session
// (GPCS §11.11.1: it ends when the secure channel session is reset).
func (st *chanState) clearPending(env applet.Env) {
	st.load, st.chained, st.status, st.ownStore = nil, nil, nil, 0
	st.endPerso(env)
}

// endPerso ends the personalisation session, telling the application
// (CardAdmin.Personalize with nil data).
func (st *chanState) endPerso(env applet.Env) {
	if st.perso != nil {
		if c := env.Card(); c != nil {
			_, _ = c.Personalize(st.perso, 0, 0, nil)
		}
	}
	st.perso, st.persoP2 = nil, 0
}

// securityError handles a secure messaging failure: scp03 has already
// aborted the session (every command is refused until the next INITIALIZE
// UPDATE, Amd D §5.6); everything in progress is abandoned.
func (st *chanState) securityError(env applet.Env) { st.clearPending(env) }

// authenticated reports an open, not aborted session, with C-MAC when
// cmac is set.
func (st *chanState) authenticated(cmac bool) bool {
	if st.scp == nil || !st.scp.Open() {
		return false
	}
	return !cmac || st.scp.Level().Has(scp03.LevelCMAC)
}

// currentLevel is the Current Security Level (GET DATA 'D3', GPCS §10.6
// Table 10-1): AUTHENTICATED ('80') with the session's level bits, or
// NO_SECURITY_LEVEL ('00').
func (st *chanState) currentLevel() byte {
	if !st.authenticated(false) {
		return 0x00
	}
	return 0x80 | byte(st.scp.Level())
}

// initializeUpdate starts a secure channel session (Amd D §7.1.1, GPCS
// §D.4.1): it ends the current one, selects the key set, and for
// pseudo-random challenges persists the incremented sequence counter
// before answering, so that a challenge is never reused even if power is
// lost right after the response (Amd D §6.2.2.1).
func initializeUpdate(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	st.endSession()
	st.clearPending(env)
	if cmd.CLA&0x80 == 0 || hasGPSM(cmd.CLA) {
		return nil, apdu.ErrCLANotSupported // GPCS Table D-4: CLA '80'-'83'
	}
	if cardState(env) == applet.CardTerminated {
		return nil, apdu.ErrConditionsNotMet
	}
	mem := env.Memory()
	cfg, err := config(mem)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	sets, err := keySets(mem)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	if len(sets) == 0 {
		return nil, apdu.ErrRefDataNotFound
	}
	var challenge [scp03.ChallengeLen]byte
	env.Random(challenge[:])
	var kdd [scp03.KDDLen]byte
	copy(kdd[:], cfg.KDD)
	card, err := scp03.NewCard(scp03.CardConfig{
		KeySets: sets, KDD: kdd, I: cfg.I, AID: env.AID(), Rand: bytes.NewReader(challenge[:]),
	})
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	resp, err := card.InitializeUpdate(cmd)
	if err != nil {
		return nil, scp03.StatusFor(err)
	}
	kvn := resp[scp03.KDDLen] // key information: KVN || '03' || i
	if cfg.I.PseudoRandom() {
		for _, ks := range sets {
			if ks.Version == kvn {
				if err := putKeySet(mem, ks); err != nil {
					card.Terminate()
					return nil, statusOf(err)
				}
			}
		}
	}
	st.scp, st.kvn, st.dek = card, kvn, sessionDEK(sets, kvn)
	return resp, apdu.SWNoError
}

// externalAuthenticate completes the handshake (Amd D §7.1.2): '9000'
// opens the session at the requested level; a wrong host cryptogram or
// C-MAC answers '6300' and forgets the handshake.
func externalAuthenticate(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	if cardState(env) == applet.CardTerminated {
		return nil, apdu.ErrConditionsNotMet
	}
	if st.scp == nil {
		return nil, apdu.ErrConditionsNotMet // Amd D §5.2: INITIALIZE UPDATE first
	}
	if err := st.scp.ExternalAuthenticate(cmd); err != nil {
		if !errors.Is(err, scp03.ErrState) {
			st.endSession() // Amd D §5.2: the handshake is forgotten
		}
		return nil, scp03.StatusFor(err)
	}
	return nil, apdu.SWNoError
}

// GP command chaining (GPCS §11.1.5.1): DELETE, INSTALL and PUT KEY may be
// split over several commands with P1 b8 = 1 on all but the last; every
// segment has the same CLA, INS, P2 and P1 b7-b1. Under a secure channel
// the C-MAC covers the reassembled command and comes with the last
// segment only, so segments are collected before unwrapping.
type chainBuf struct {
	cla, ins, p1, p2 byte
	data             []byte
}

// maxChain bounds a reassembled command.
const maxChain = 8192

func chainable(ins byte) bool { return ins == 0xE6 || ins == 0xE4 || ins == 0xD8 }

// chain feeds cmd to the reassembly. It returns done = false with the
// status to answer at once ('9000' for an intermediate segment, without
// R-MAC), or done = true with the (reassembled) command to process; sw is
// then '9000', or '6985' when cmd broke a pending chain — the command is
// still unwrapped, to keep the MAC chaining value in step with the host,
// and then refused.
func (st *chanState) chain(cmd apdu.Command) (full apdu.Command, done bool, sw apdu.SW) {
	more := chainable(cmd.INS) && cmd.P1&0x80 != 0
	c := st.chained
	if c != nil && (cmd.CLA != c.cla || cmd.INS != c.ins || cmd.P2 != c.p2 || cmd.P1&0x7F != c.p1&0x7F) {
		st.chained = nil
		return cmd, !more, apdu.ErrConditionsNotMet
	}
	if c == nil {
		if !more {
			return cmd, true, apdu.SWNoError
		}
		c = &chainBuf{cla: cmd.CLA, ins: cmd.INS, p1: cmd.P1, p2: cmd.P2}
		st.chained = c
	}
	if len(c.data)+len(cmd.Data) > maxChain {
		st.chained = nil
		return cmd, false, apdu.ErrNotEnoughMemory
	}
	c.data = append(c.data, cmd.Data...)
	if more {
		return cmd, false, apdu.SWNoError
	}
	st.chained = nil
	return apdu.Command{CLA: cmd.CLA, INS: cmd.INS, P1: cmd.P1, P2: cmd.P2, Data: c.data, Ne: cmd.Ne}, true, apdu.SWNoError
}
