package terminal

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/valuechip/valuechip/apdu/cmac"
	wire "github.com/valuechip/valuechip/apdu/purse"
)

// ErrBadProof reports a card cryptogram (M2, S1 or TC) that does not
// verify: the card is not genuine or the data were altered.
var ErrBadProof = errors.New("terminal: card cryptogram does not verify")

// DebitAuth is what a security module issues for one debit (docs/purse.md
// §3.8, §5.4): the DEBIT command fields and the data M1 covers. It holds
// no key, so a terminal may keep it in its journal; the module re-derives
// SK_D from it to verify M2 (§9.4).
type DebitAuth struct {
	Data      wire.DebitData
	CardNonce wire.Nonce
	TSMNonce  wire.Nonce
	M1        wire.MAC
}

// Command is the DEBIT command data.
func (a DebitAuth) Command() wire.Debit {
	return wire.Debit{TSMNonce: a.TSMNonce, TSMSeq: a.Data.TSMSeq, DateTime: a.Data.DateTime, M1: a.M1}
}

// SecurityModule is the terminal's SAM (docs/purse.md §12, TSM): it holds
// the debit master key, derives each card's K_DEBIT from its CardID,
// computes M1 and verifies M2. A SAM card on a second reader can
// implement it.
type SecurityModule interface {
	// DebitKeyVersion is the version of the debit master key (the KVN
	// sent in INITIALIZE DEBIT).
	DebitKeyVersion() byte
	// AuthorizeDebit numbers the debit (TSM sequence), draws the TSM
	// nonce and computes M1 over d, the values the card reported in
	// INITIALIZE DEBIT and the amount the terminal asked for (§3.7).
	AuthorizeDebit(ctx context.Context, d wire.DebitData, cardNonce wire.Nonce) (DebitAuth, error)
	// VerifyDebit checks the card's M2 for a debit it authorised, and
	// that the card's ATC and balance after are those M1 implies
	// (§3.8). It wraps ErrBadProof when they do not verify.
	VerifyDebit(ctx context.Context, a DebitAuth, atc, balanceAfter uint32, m2 wire.MAC) error
}

// SoftwareSAM is a SecurityModule holding the debit master key in memory.
// For development and tests; production keys belong in a secure element.
type SoftwareSAM struct {
	master wire.VersionedKey
	rand   io.Reader

	mu  sync.Mutex
	seq uint32
	// The last card's K_DEBIT (keyed CMAC) and the last session's SK_D:
	// a debit derives the card key once and SK_D once for M1 and M2.
	cardID   wire.CardID
	cardMAC  *cmac.MAC
	cardBits int
	sess     sessionID
	sessMAC  *cmac.MAC
}

type sessionID struct {
	id        wire.CardID
	atc       uint32
	card, tsm wire.Nonce
}

// NewSoftwareSAM returns a software security module for the debit master
// key master of version kvn.
func NewSoftwareSAM(master wire.Key, kvn byte) (*SoftwareSAM, error) {
	k := wire.VersionedKey{Version: kvn, Key: append(wire.Key(nil), master...)}
	if err := k.Key.Check(); err != nil {
		return nil, fmt.Errorf("terminal: debit master key: %w", err)
	}
	if kvn == 0 {
		return nil, fmt.Errorf("terminal: debit master key version 00")
	}
	return &SoftwareSAM{master: k, rand: rand.Reader}, nil
}

// SetSequence sets the TSM sequence number the next debit gets minus one
// (the module numbers its debits without gaps, docs/purse.md §12).
func (s *SoftwareSAM) SetSequence(last uint32) { s.mu.Lock(); s.seq = last; s.mu.Unlock() }

// Sequence is the last TSM sequence number issued.
func (s *SoftwareSAM) Sequence() uint32 { s.mu.Lock(); defer s.mu.Unlock(); return s.seq }

// DebitKeyVersion implements SecurityModule.
func (s *SoftwareSAM) DebitKeyVersion() byte { return s.master.Version }

// sessionMAC returns SK_D keyed for CMAC (docs/purse.md §5.2, §5.3):
// K_DEBIT = KDF(MK_DEBIT, 52, CardID), SK_D = KDF(K_DEBIT, 42, CardID ||
// ATC' || card nonce || TSM nonce). The caller holds s.mu.
func (s *SoftwareSAM) sessionMAC(d wire.DebitData, cardNonce, tsmNonce wire.Nonce) (*cmac.MAC, error) {
	id := sessionID{d.CardID, d.ATC, cardNonce, tsmNonce}
	if s.sessMAC != nil && s.sess == id {
		return s.sessMAC, nil
	}
	if s.cardMAC == nil || s.cardID != d.CardID {
		k, err := wire.DeriveCardKey(s.master.Key, wire.KeyDebit, d.CardID)
		if err != nil {
			return nil, err
		}
		m, err := cmac.NewMAC(k)
		k.Wipe()
		if err != nil {
			return nil, err
		}
		s.cardID, s.cardMAC, s.cardBits = d.CardID, m, 8*len(s.master.Key)
	}
	sk := wire.KDF(s.cardMAC, wire.DeriveDebitSession, wire.SessionContext(d.CardID, d.ATC, cardNonce, tsmNonce), s.cardBits)
	m, err := cmac.NewMAC(sk)
	sk.Wipe()
	if err != nil {
		return nil, err
	}
	s.sess, s.sessMAC = id, m
	return m, nil
}

// AuthorizeDebit implements SecurityModule (docs/purse.md §5.3, §5.4).
func (s *SoftwareSAM) AuthorizeDebit(_ context.Context, d wire.DebitData, cardNonce wire.Nonce) (DebitAuth, error) {
	a := DebitAuth{Data: d, CardNonce: cardNonce}
	if _, ok := d.BalanceAfter(); !ok {
		return DebitAuth{}, fmt.Errorf("terminal: SAM: debit of %d above the balance %d", d.Amount, d.Balance)
	}
	if _, err := io.ReadFull(s.rand, a.TSMNonce[:]); err != nil {
		return DebitAuth{}, fmt.Errorf("terminal: SAM nonce: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	a.Data.TSMSeq = s.seq
	m, err := s.sessionMAC(a.Data, cardNonce, a.TSMNonce)
	if err != nil {
		return DebitAuth{}, fmt.Errorf("terminal: SAM: %w", err)
	}
	a.M1 = wire.Sign(m, wire.M1Input(a.Data))
	return a, nil
}

// VerifyDebit implements SecurityModule.
func (s *SoftwareSAM) VerifyDebit(_ context.Context, a DebitAuth, atc, balanceAfter uint32, m2 wire.MAC) error {
	want, ok := a.Data.BalanceAfter()
	if !ok || atc != a.Data.ATC || balanceAfter != want {
		return fmt.Errorf("%w: card reports ATC %d balance %d, the debit implies ATC %d balance %d",
			ErrBadProof, atc, balanceAfter, a.Data.ATC, want)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.sessionMAC(a.Data, a.CardNonce, a.TSMNonce)
	if err != nil {
		return fmt.Errorf("terminal: SAM: %w", err)
	}
	if !wire.Check(m, wire.M2Input(a.Data, a.M1), m2) {
		return fmt.Errorf("%w: M2 of ATC %d", ErrBadProof, atc)
	}
	return nil
}
