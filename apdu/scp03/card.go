package scp03

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
)

// KeySet is one SCP03 key set of a Security Domain.
type KeySet struct {
	// Version is the key version number (KVN), '01' to '7F'.
	Version byte
	Keys    StaticKeys
	// Sequence is the key set's sequence counter for pseudo-random card
	// challenges (Amd D §6.2.2.1): zero when the key set is created or
	// replaced; the Card increments it on every INITIALIZE UPDATE that
	// uses the key set. The owner persists it.
	Sequence uint32
}

// CardConfig configures the card end of a secure channel.
type CardConfig struct {
	// KeySets are the Security Domain's SCP03 key sets; INITIALIZE
	// UPDATE with P1 '00' uses the first. The Card updates their
	// Sequence counters in place.
	KeySets []*KeySet
	// KDD is the 10-byte key diversification data (Amd D Table 7-2).
	KDD [KDDLen]byte
	// I is the SCP03 "i" parameter (Amd D Table 5-1), e.g. '70':
	// pseudo-random challenges, R-MAC and R-ENCRYPTION.
	I IParam
	// AID is the AID of the Security Domain, needed for pseudo-random
	// challenges (Amd D §6.2.2.1).
	AID []byte
	// Rand supplies random card challenges; nil means crypto/rand.
	Rand io.Reader
}

// String describes the key set by KVN, KCVs and sequence counter.
func (k KeySet) String() string {
	return fmt.Sprintf("{KVN %02X %s sequence %06X}", k.Version, k.Keys, k.Sequence)
}

// Format masks the keys for every fmt verb.
func (k KeySet) Format(f fmt.State, _ rune) { writeMasked(f, k.String()) }

// LogValue masks the keys in log/slog output.
func (k KeySet) LogValue() slog.Value { return slog.StringValue(k.String()) }

// String describes the configuration with masked keys.
func (c CardConfig) String() string {
	s := "{KeySets: ["
	for i, ks := range c.KeySets {
		if i > 0 {
			s += " "
		}
		if ks == nil {
			s += "nil"
		} else {
			s += ks.String()
		}
	}
	return s + fmt.Sprintf("] KDD: %X I: %02X AID: %X}", c.KDD, byte(c.I), c.AID)
}

// Format masks the keys for every fmt verb.
func (c CardConfig) Format(f fmt.State, _ rune) { writeMasked(f, c.String()) }

// LogValue masks the keys in log/slog output.
func (c CardConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

type cardState int

const (
	cardIdle        cardState = iota
	cardInitialized           // INITIALIZE UPDATE answered, EXTERNAL AUTHENTICATE awaited
	cardOpen                  // secure channel open (possibly aborted)
)

// Card is the Security Domain end of a secure channel. The applet's
// dispatcher routes INITIALIZE UPDATE (INS '50') and EXTERNAL
// AUTHENTICATE (INS '82') to the methods of those names and every other
// command through Unwrap, then the response through Wrap; StatusFor turns
// an error into the status word to answer. Terminate ends the session when
// the application is deselected, the channel closed or the card reset
// (Amd D §5.6). A Card is not safe for concurrent use.
type Card struct {
	cfg     CardConfig
	state   cardState
	keySet  *KeySet
	hc, cc  [ChallengeLen]byte
	keys    SessionKeys
	session *Session
}

// NewCard checks cfg and returns a Card with no session.
func NewCard(cfg CardConfig) (*Card, error) {
	if len(cfg.KeySets) == 0 {
		return nil, fmt.Errorf("%w: no key set", ErrKeyNotFound)
	}
	for _, ks := range cfg.KeySets {
		if ks == nil {
			return nil, fmt.Errorf("%w: nil key set", ErrKeyNotFound)
		}
		if err := ks.Keys.Check(); err != nil {
			return nil, fmt.Errorf("key set %02X: %w", ks.Version, err)
		}
		if ks.Version == 0 || ks.Version > 0x7F {
			return nil, fmt.Errorf("%w: key version %02X outside 01..7F", ErrBadKey, ks.Version)
		}
		if ks.Sequence > MaxSequence {
			return nil, fmt.Errorf("%w: sequence counter %#x exceeds 3 bytes", ErrBadKey, ks.Sequence)
		}
	}
	if !cfg.I.Valid() {
		return nil, fmt.Errorf("%w: i parameter %02X", ErrUnsupported, byte(cfg.I))
	}
	if cfg.I.PseudoRandom() && (len(cfg.AID) < 5 || len(cfg.AID) > 16) {
		return nil, fmt.Errorf("%w: pseudo-random challenges need the 5..16-byte AID, got %d bytes", ErrMalformed, len(cfg.AID))
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	cfg.AID = clone(cfg.AID)
	cfg.KeySets = append([]*KeySet(nil), cfg.KeySets...)
	return &Card{cfg: cfg}, nil
}

// Terminate ends the secure channel session, open or aborted, and wipes
// its keys (Amd D §5.6: new application selection, logical channel
// closed, card reset). Security checks stop until the next handshake.
func (c *Card) Terminate() {
	c.keys.Wipe()
	c.keys = SessionKeys{}
	c.session = nil
	c.keySet = nil
	c.state = cardIdle
}

func (c *Card) findKeySet(kvn byte) *KeySet {
	if kvn == 0 {
		return c.cfg.KeySets[0]
	}
	for _, ks := range c.cfg.KeySets {
		if ks.Version == kvn {
			return ks
		}
	}
	return nil
}

// InitializeUpdate processes INITIALIZE UPDATE and returns the response
// data field (Amd D §7.1.1.1), to be answered with '9000'. It terminates
// any current session (Amd D §5.6), selects the key set (ErrKeyNotFound:
// '6A88'), generates the card challenge — pseudo-random from the
// incremented sequence counter (Amd D §6.2.2.1; ErrSequenceExhausted:
// '6985') or random — derives the session keys (§6.2.1) and computes the
// card cryptogram (§6.2.2.2).
func (c *Card) InitializeUpdate(cmd apdu.Command) ([]byte, error) {
	c.Terminate()
	kvn, hc, err := ParseInitializeUpdate(cmd)
	if err != nil {
		return nil, err
	}
	ks := c.findKeySet(kvn)
	if ks == nil {
		return nil, fmt.Errorf("%w: key version %02X", ErrKeyNotFound, kvn)
	}
	resp := InitializeUpdateResponse{
		KDD:     c.cfg.KDD,
		KeyInfo: KeyInfo{Version: ks.Version, Protocol: ProtocolID, I: c.cfg.I},
	}
	if c.cfg.I.PseudoRandom() {
		if ks.Sequence >= MaxSequence {
			return nil, fmt.Errorf("%w: key set %02X", ErrSequenceExhausted, ks.Version)
		}
		ks.Sequence++
		resp.Sequence = ks.Sequence
		if resp.CardChallenge, err = PseudoRandomChallenge(ks.Keys.ENC, ks.Sequence, c.cfg.AID); err != nil {
			return nil, err
		}
	} else if _, err := io.ReadFull(c.cfg.Rand, resp.CardChallenge[:]); err != nil {
		return nil, fmt.Errorf("scp03: card challenge: %w", err)
	}
	keys, err := DeriveSessionKeys(ks.Keys, hc[:], resp.CardChallenge[:])
	if err != nil {
		return nil, err
	}
	if resp.CardCryptogram, err = CardCryptogram(keys.MAC, hc[:], resp.CardChallenge[:]); err != nil {
		keys.Wipe()
		return nil, err
	}
	c.keySet, c.hc, c.cc, c.keys, c.state = ks, hc, resp.CardChallenge, keys, cardInitialized
	return resp.Bytes(), nil
}

// ExternalAuthenticate processes EXTERNAL AUTHENTICATE (Amd D §7.1.2),
// answered with a bare '9000' on success (no R-MAC, Amd D §6.2.5). It
// checks the host cryptogram (§6.2.2.3) and the C-MAC over a zero MAC
// chaining value (§6.2.3), both in constant time, then the security level
// against Table 7-3 and the "i" parameter, and opens the session at that
// level. A failure wraps ErrAuthenticationFailed ('6300') or another error
// and, as Amd D §5.2 requires, forgets the handshake.
func (c *Card) ExternalAuthenticate(cmd apdu.Command) error {
	if c.state != cardInitialized {
		return fmt.Errorf("%w: EXTERNAL AUTHENTICATE without INITIALIZE UPDATE", ErrState)
	}
	defer func() {
		if c.state != cardOpen {
			c.Terminate()
		}
	}()
	level, hostCg, tag, err := ParseExternalAuthenticate(cmd)
	if err != nil {
		return err
	}
	want, err := HostCryptogram(c.keys.MAC, c.hc[:], c.cc[:])
	if err != nil {
		return err
	}
	m, err := newMAC(c.keys.MAC)
	if err != nil {
		return err
	}
	var zero [cmac.Size]byte
	chain := commandMAC(m, &zero, cmd.CLA, cmd.INS, cmd.P1, cmd.P2, len(cmd.Data), false, hostCg[:])
	cgOK := equal8(want[:], hostCg[:])
	macOK := equal8(chain[:MACLen], tag[:])
	switch {
	case !cgOK:
		return fmt.Errorf("%w: %w: host cryptogram", ErrAuthenticationFailed, ErrBadCryptogram)
	case !macOK:
		return fmt.Errorf("%w: %w: EXTERNAL AUTHENTICATE C-MAC", ErrAuthenticationFailed, ErrBadMAC)
	}
	if !level.Valid() || !c.cfg.I.Supports(level) {
		return fmt.Errorf("%w: P1 %02X with i=%02X", ErrBadLevel, byte(level), byte(c.cfg.I))
	}
	s, err := NewSession(c.keys, level, chain)
	if err != nil {
		return err
	}
	c.keys.Wipe()
	c.keys = SessionKeys{}
	c.session, c.state = s, cardOpen
	return nil
}

// Unwrap verifies and decrypts a command received as raw bytes (see
// Session.UnwrapCommand). With no session the command is only parsed (Amd
// D §5.6); a handshake waiting for EXTERNAL AUTHENTICATE is abandoned
// first. In an aborted session every command fails with
// ErrSessionAborted until Terminate or a new INITIALIZE UPDATE.
func (c *Card) Unwrap(raw []byte) (apdu.Command, error) {
	if c.state == cardOpen {
		return c.session.UnwrapCommand(raw)
	}
	if c.state == cardInitialized {
		c.Terminate() // Amd D §5.2: EXTERNAL AUTHENTICATE must follow
	}
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return apdu.Command{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	cmd.Data = clone(cmd.Data)
	return cmd, nil
}

// Wrap protects the response (data || SW1 SW2) to the command last
// returned by Unwrap (see Session.WrapResponse). With no session it is
// returned unchanged.
func (c *Card) Wrap(resp []byte) ([]byte, error) {
	if c.state == cardOpen {
		return c.session.WrapResponse(resp)
	}
	if len(resp) < 2 {
		return nil, fmt.Errorf("%w: response of %d bytes", ErrMalformed, len(resp))
	}
	return clone(resp), nil
}

// Open reports whether a secure channel session is open and not aborted.
func (c *Card) Open() bool { return c.state == cardOpen && !c.session.Aborted() }

// Level returns the security level of the open session, or LevelNone.
func (c *Card) Level() SecurityLevel {
	if !c.Open() {
		return LevelNone
	}
	return c.session.Level()
}

// Session returns the secure messaging state, or nil with no session.
func (c *Card) Session() *Session {
	if c.state != cardOpen {
		return nil
	}
	return c.session
}

// String describes the card end without keys.
func (c Card) String() string {
	switch c.state {
	case cardOpen:
		return fmt.Sprintf("scp03.Card(%s)", c.session)
	case cardInitialized:
		return "scp03.Card(authenticating)"
	}
	return "scp03.Card(idle)"
}

// GoString masks the card for %#v.
func (c Card) GoString() string { return c.String() }

// Format masks the card for every fmt verb.
func (c Card) Format(f fmt.State, _ rune) { writeMasked(f, c.String()) }

// LogValue masks the card in log/slog output.
func (c Card) LogValue() slog.Value { return slog.StringValue(c.String()) }
