package scp03

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
)

// HostConfig configures the off-card end of a secure channel.
type HostConfig struct {
	// Keys is the card's static key set (already diversified, if the
	// issuer diversifies keys with the KDD).
	Keys StaticKeys
	// KeyVersion is P1 of INITIALIZE UPDATE: '00' lets the card choose
	// the first available key set; otherwise the card must answer with
	// this key version.
	KeyVersion byte
	// Level is the security level requested in EXTERNAL AUTHENTICATE
	// (Amd D Table 7-3).
	Level SecurityLevel
	// AID, if set, is the AID of the Security Domain; when the card
	// announces pseudo-random challenges the host then checks the card
	// challenge against the sequence counter (Amd D §6.2.2.1).
	AID []byte
	// Rand supplies the host challenge; nil means crypto/rand.
	Rand io.Reader
}

// String describes the configuration with masked keys.
func (c HostConfig) String() string {
	return fmt.Sprintf("{Keys: %s KeyVersion: %02X Level: %s AID: %X}", c.Keys, c.KeyVersion, c.Level, c.AID)
}

// Format masks the keys for every fmt verb.
func (c HostConfig) Format(f fmt.State, _ rune) { writeMasked(f, c.String()) }

// LogValue masks the keys in log/slog output.
func (c HostConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

type hostState int

const (
	hostIdle     hostState = iota
	hostInitSent           // INITIALIZE UPDATE built, response awaited
	hostAuthSent           // EXTERNAL AUTHENTICATE built, response awaited
	hostOpen               // secure channel open
)

// Host is the off-card entity of a secure channel: it runs the mutual
// authentication of Amd D §5.2 (INITIALIZE UPDATE, EXTERNAL AUTHENTICATE)
// and then wraps commands and unwraps responses. A Host is not safe for
// concurrent use; it can be reused for a new session by calling
// InitializeUpdate again.
type Host struct {
	cfg     HostConfig
	state   hostState
	hc      [ChallengeLen]byte
	info    InitializeUpdateResponse
	keys    SessionKeys
	chain   [cmac.Size]byte
	session *Session
}

// NewHost checks cfg and returns an idle Host.
func NewHost(cfg HostConfig) (*Host, error) {
	if err := cfg.Keys.Check(); err != nil {
		return nil, err
	}
	if !cfg.Level.Valid() {
		return nil, fmt.Errorf("%w: %02X", ErrBadLevel, byte(cfg.Level))
	}
	if cfg.AID != nil && (len(cfg.AID) < 5 || len(cfg.AID) > 16) {
		return nil, fmt.Errorf("%w: AID of %d bytes, want 5 to 16", ErrMalformed, len(cfg.AID))
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	cfg.AID = clone(cfg.AID)
	return &Host{cfg: cfg}, nil
}

// reset forgets any session or handshake in progress.
func (h *Host) reset() {
	h.keys.Wipe()
	h.keys = SessionKeys{}
	clear(h.chain[:])
	h.session = nil
	h.state = hostIdle
}

// Close ends the session and wipes the session keys.
func (h *Host) Close() { h.reset() }

// InitializeUpdate starts a new session (ending any previous one) with a
// fresh host challenge and returns the INITIALIZE UPDATE command.
func (h *Host) InitializeUpdate() (apdu.Command, error) {
	h.reset()
	if _, err := io.ReadFull(h.cfg.Rand, h.hc[:]); err != nil {
		return apdu.Command{}, fmt.Errorf("scp03: host challenge: %w", err)
	}
	h.state = hostInitSent
	return NewInitializeUpdate(h.cfg.KeyVersion, h.hc), nil
}

// ExternalAuthenticate processes the INITIALIZE UPDATE response (data ||
// SW1 SW2): it checks the key information, the pseudo-random challenge
// (if HostConfig.AID is set) and the card cryptogram (Amd D §6.2.2),
// derives the session keys (Amd D §6.2.1) and returns the EXTERNAL
// AUTHENTICATE command carrying the host cryptogram and its C-MAC.
// Authentication failures wrap ErrAuthenticationFailed.
func (h *Host) ExternalAuthenticate(resp []byte) (apdu.Command, error) {
	if h.state != hostInitSent {
		return apdu.Command{}, fmt.Errorf("%w: EXTERNAL AUTHENTICATE before INITIALIZE UPDATE", ErrState)
	}
	h.state = hostIdle // any failure restarts the handshake (Amd D §5.2)
	r, err := apdu.ParseResponse(resp)
	if err != nil {
		return apdu.Command{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if r.SW != apdu.SWNoError {
		return apdu.Command{}, fmt.Errorf("scp03: INITIALIZE UPDATE: %w", r.SW)
	}
	info, err := ParseInitializeUpdateResponse(r.Data)
	if err != nil {
		return apdu.Command{}, err
	}
	if h.cfg.KeyVersion != 0 && info.KeyInfo.Version != h.cfg.KeyVersion {
		return apdu.Command{}, fmt.Errorf("%w: card used key version %02X, not %02X", ErrKeyNotFound, info.KeyInfo.Version, h.cfg.KeyVersion)
	}
	if !info.KeyInfo.I.Supports(h.cfg.Level) {
		return apdu.Command{}, fmt.Errorf("%w: level %s not supported by i=%02X", ErrBadLevel, h.cfg.Level, byte(info.KeyInfo.I))
	}
	if info.KeyInfo.I.PseudoRandom() && h.cfg.AID != nil {
		want, err := PseudoRandomChallenge(h.cfg.Keys.ENC, info.Sequence, h.cfg.AID)
		if err != nil {
			return apdu.Command{}, err
		}
		if !equal8(want[:], info.CardChallenge[:]) {
			return apdu.Command{}, fmt.Errorf("%w: %w for sequence counter %06X", ErrAuthenticationFailed, ErrBadChallenge, info.Sequence)
		}
	}
	keys, err := DeriveSessionKeys(h.cfg.Keys, h.hc[:], info.CardChallenge[:])
	if err != nil {
		return apdu.Command{}, err
	}
	cardCg, err := CardCryptogram(keys.MAC, h.hc[:], info.CardChallenge[:])
	if err != nil {
		keys.Wipe()
		return apdu.Command{}, err
	}
	if !equal8(cardCg[:], info.CardCryptogram[:]) {
		keys.Wipe()
		return apdu.Command{}, fmt.Errorf("%w: %w: card cryptogram", ErrAuthenticationFailed, ErrBadCryptogram)
	}
	hostCg, err := HostCryptogram(keys.MAC, h.hc[:], info.CardChallenge[:])
	if err != nil {
		keys.Wipe()
		return apdu.Command{}, err
	}
	cmd, chain, err := NewExternalAuthenticate(keys.MAC, h.cfg.Level, hostCg)
	if err != nil {
		keys.Wipe()
		return apdu.Command{}, err
	}
	h.info, h.keys, h.chain, h.state = info, keys, chain, hostAuthSent
	return cmd, nil
}

// Complete processes the EXTERNAL AUTHENTICATE response, which must be a
// bare '9000' (GPCS D.4.2; it carries no R-MAC, Amd D §6.2.5), and opens
// the secure channel. Any other status wraps ErrAuthenticationFailed and
// the status word.
func (h *Host) Complete(resp []byte) error {
	if h.state != hostAuthSent {
		return fmt.Errorf("%w: no EXTERNAL AUTHENTICATE awaits its response", ErrState)
	}
	defer func() {
		if h.state != hostOpen {
			h.reset()
		}
	}()
	r, err := apdu.ParseResponse(resp)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if r.SW != apdu.SWNoError {
		return fmt.Errorf("%w: EXTERNAL AUTHENTICATE: %w", ErrAuthenticationFailed, r.SW)
	}
	if len(r.Data) != 0 {
		return fmt.Errorf("%w: EXTERNAL AUTHENTICATE response with %d data bytes", ErrMalformed, len(r.Data))
	}
	s, err := NewSession(h.keys, h.cfg.Level, h.chain)
	if err != nil {
		return err
	}
	h.keys.Wipe()
	h.keys = SessionKeys{}
	h.session, h.state = s, hostOpen
	return nil
}

// Wrap protects a command for the open session (see Session.WrapCommand).
func (h *Host) Wrap(cmd apdu.Command) (apdu.Command, error) {
	if h.state != hostOpen {
		return apdu.Command{}, fmt.Errorf("%w: no open secure channel", ErrState)
	}
	return h.session.WrapCommand(cmd)
}

// Unwrap verifies and decrypts the response to the last wrapped command
// and returns data || SW1 SW2 (see Session.UnwrapResponse).
func (h *Host) Unwrap(resp []byte) ([]byte, error) {
	if h.state != hostOpen {
		return nil, fmt.Errorf("%w: no open secure channel", ErrState)
	}
	return h.session.UnwrapResponse(resp)
}

// Open reports whether the secure channel is open and not aborted.
func (h *Host) Open() bool { return h.state == hostOpen && !h.session.Aborted() }

// Level returns the requested security level.
func (h *Host) Level() SecurityLevel { return h.cfg.Level }

// CardInfo returns the card's INITIALIZE UPDATE response of the current
// session: KDD, key information and sequence counter.
func (h *Host) CardInfo() InitializeUpdateResponse { return h.info }

// Session returns the secure messaging state, or nil before Complete.
func (h *Host) Session() *Session {
	if h.state != hostOpen {
		return nil
	}
	return h.session
}

// String describes the host without keys.
func (h Host) String() string {
	switch {
	case h.state == hostOpen:
		return fmt.Sprintf("scp03.Host(%s)", h.session)
	case h.state == hostIdle:
		return "scp03.Host(idle)"
	}
	return "scp03.Host(authenticating)"
}

// GoString masks the host for %#v.
func (h Host) GoString() string { return h.String() }

// Format masks the host for every fmt verb.
func (h Host) Format(f fmt.State, _ rune) { writeMasked(f, h.String()) }

// LogValue masks the host in log/slog output.
func (h Host) LogValue() slog.Value { return slog.StringValue(h.String()) }
