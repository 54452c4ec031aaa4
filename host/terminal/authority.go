package terminal

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	wire "github.com/valuechip/valuechip/apdu/purse"
)

// ErrLoadRefused reports a load the authority will not fund: S1 does not
// verify, the key version is unknown, or the request is inconsistent.
var ErrLoadRefused = errors.New("terminal: load refused by the authority")

// LoadRequest is the authorisation request of an online load
// (docs/purse.md §1, §3.5): the card's INITIALIZE LOAD answer and what the
// terminal sent.
type LoadRequest struct {
	CardID     wire.CardID
	KeyVersion byte
	ATC        uint32 // ATC' of the load
	Amount     uint32
	Currency   wire.Currency
	Balance    uint32 // before the load
	TerminalID wire.TerminalID
	CardNonce  wire.Nonce
	HostNonce  wire.Nonce
	S1         wire.MAC
}

// LoadAuth is the authority's answer: the CREDIT LOAD fields (§3.6).
type LoadAuth struct {
	DateTime wire.DateTime
	AuthRef  uint32
	S2       wire.MAC
}

// Command is the CREDIT LOAD command data.
func (a LoadAuth) Command() wire.CreditLoad {
	return wire.CreditLoad{DateTime: a.DateTime, AuthRef: a.AuthRef, S2: a.S2}
}

// LoadAuthority is the money server's half of a load (docs/purse.md §12):
// it verifies S1, funds the load and answers S2; later it receives the
// card's TC (completion advice) or a reversal; and it verifies the TCs of
// debits the terminal collects. The in-process LocalAuthority stands in
// for the money server until it exists.
type LoadAuthority interface {
	// AuthorizeLoad verifies S1 and returns S2 (§5.4). It wraps
	// ErrLoadRefused when it will not fund the load.
	AuthorizeLoad(ctx context.Context, r LoadRequest) (LoadAuth, error)
	// ReverseLoad cancels an authorised load the card did not apply
	// (§9.4: ISO 8583 0400). Reversing an unknown load is not an error.
	ReverseLoad(ctx context.Context, r LoadRequest) error
	// Advise delivers a log record with its TC (load completion or debit
	// batch). It wraps ErrBadProof when the TC does not verify.
	Advise(ctx context.Context, id wire.CardID, rec wire.LogRecord) error
}

// LocalAuthority is an in-process LoadAuthority holding the load and TC
// master keys. It keeps a ledger per card of the records it was advised
// (ATC → record) and the loads it funded, so tests can check that value
// is conserved.
type LocalAuthority struct {
	load, tc wire.VersionedKey
	now      func() time.Time

	mu       sync.Mutex
	ref      uint32
	funded   map[loadKey]LoadAuth
	reversed map[loadKey]bool
	ledger   map[wire.CardID]map[uint32]wire.LogRecord
}

type loadKey struct {
	id  wire.CardID
	atc uint32
	hn  wire.Nonce
}

// NewLocalAuthority returns an authority for the issuer's load and TC
// master keys (the debit master is the security module's).
func NewLocalAuthority(load, tc wire.VersionedKey) (*LocalAuthority, error) {
	for _, k := range []struct {
		name string
		k    wire.VersionedKey
	}{{"load", load}, {"TC", tc}} {
		if err := k.k.Key.Check(); err != nil || k.k.Version == 0 {
			return nil, fmt.Errorf("terminal: %s master key: %w", k.name, errors.Join(err, wire.ErrBadKey))
		}
	}
	var seed [4]byte
	_, _ = rand.Read(seed[:])
	return &LocalAuthority{
		load: load, tc: tc, now: time.Now,
		ref:      binary.BigEndian.Uint32(seed[:]) & 0x00FFFFFF,
		funded:   map[loadKey]LoadAuth{},
		reversed: map[loadKey]bool{},
		ledger:   map[wire.CardID]map[uint32]wire.LogRecord{},
	}, nil
}

func (a *LocalAuthority) loadSession(r LoadRequest) (wire.Key, error) {
	if r.KeyVersion != a.load.Version {
		return nil, fmt.Errorf("%w: key version %02X, the authority has %02X", ErrLoadRefused, r.KeyVersion, a.load.Version)
	}
	k, err := wire.DeriveCardKey(a.load.Key, wire.KeyLoad, r.CardID)
	if err != nil {
		return nil, err
	}
	defer k.Wipe()
	return wire.LoadSessionKey(k, r.CardID, r.ATC, r.CardNonce, r.HostNonce)
}

// AuthorizeLoad implements LoadAuthority (docs/purse.md §5.3, §5.4).
func (a *LocalAuthority) AuthorizeLoad(_ context.Context, r LoadRequest) (LoadAuth, error) {
	if r.Amount == 0 {
		return LoadAuth{}, fmt.Errorf("%w: amount 0", ErrLoadRefused)
	}
	sk, err := a.loadSession(r)
	if err != nil {
		return LoadAuth{}, err
	}
	defer sk.Wipe()
	d := wire.LoadData{CardID: r.CardID, ATC: r.ATC, Amount: r.Amount, Currency: r.Currency, Balance: r.Balance, TerminalID: r.TerminalID}
	s1, err := wire.ComputeS1(sk, d)
	if err != nil {
		return LoadAuth{}, err
	}
	if !s1.Equal(r.S1) {
		return LoadAuth{}, fmt.Errorf("%w: %w: S1 of card %X ATC %d", ErrLoadRefused, ErrBadProof, r.CardID[:], r.ATC)
	}
	if d.DateTime, err = wire.DateTimeOf(a.now().UTC()); err != nil {
		return LoadAuth{}, err
	}
	a.mu.Lock()
	a.ref++
	d.AuthRef = a.ref
	a.mu.Unlock()
	s2, err := wire.ComputeS2(sk, d, s1)
	if err != nil {
		return LoadAuth{}, err
	}
	out := LoadAuth{DateTime: d.DateTime, AuthRef: d.AuthRef, S2: s2}
	a.mu.Lock()
	a.funded[loadKey{r.CardID, r.ATC, r.HostNonce}] = out
	a.mu.Unlock()
	return out, nil
}

// ReverseLoad implements LoadAuthority.
func (a *LocalAuthority) ReverseLoad(_ context.Context, r LoadRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.reversed[loadKey{r.CardID, r.ATC, r.HostNonce}] = true
	return nil
}

// VerifyTC checks a record's transaction certificate under the card's
// K_TC (docs/purse.md §5.4).
func (a *LocalAuthority) VerifyTC(id wire.CardID, rec wire.LogRecord) error {
	k, err := wire.DeriveCardKey(a.tc.Key, wire.KeyTC, id)
	if err != nil {
		return err
	}
	defer k.Wipe()
	if !wire.VerifyTC(k, id, rec) {
		return fmt.Errorf("%w: TC of card %X ATC %d", ErrBadProof, id[:], rec.ATC)
	}
	return nil
}

// Advise implements LoadAuthority: it verifies the TC and enters the
// record in the ledger. A second, different record for the same ATC is
// an error (a clone or image rollback, §9.5); the same record again is
// accepted (advices may be repeated).
func (a *LocalAuthority) Advise(_ context.Context, id wire.CardID, rec wire.LogRecord) error {
	if err := a.VerifyTC(id, rec); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.ledger[id]
	if l == nil {
		l = map[uint32]wire.LogRecord{}
		a.ledger[id] = l
	}
	if old, ok := l[rec.ATC]; ok && old != rec {
		return fmt.Errorf("terminal: card %X: two different records for ATC %d (clone or rolled-back card, docs/purse.md §9.5)", id[:], rec.ATC)
	}
	l[rec.ATC] = rec
	return nil
}

// Ledger returns the records advised for a card, by ATC.
func (a *LocalAuthority) Ledger(id wire.CardID) map[uint32]wire.LogRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[uint32]wire.LogRecord, len(a.ledger[id]))
	for k, v := range a.ledger[id] {
		out[k] = v
	}
	return out
}

// Net is Σ loads − Σ debits of the card's ledger: the balance the card
// must hold if every transaction was advised.
func (a *LocalAuthority) Net(id wire.CardID) int64 {
	var n int64
	for _, r := range a.Ledger(id) {
		switch r.Type {
		case wire.TypeLoad:
			n += int64(r.Amount)
		case wire.TypeDebit:
			n -= int64(r.Amount)
		}
	}
	return n
}
