package gp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/valuechip/valuechip/apdu"
	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/reader"
)

// Errors of Open. Each wraps the underlying scp03 error or status word too,
// so errors.Is works with either.
var (
	// ErrSDNotFound: SELECT of the security domain failed.
	ErrSDNotFound = errors.New("gp: security domain not found")
	// ErrWrongKeys: the card cryptogram (or the pseudo-random card
	// challenge) does not match the keys: wrong keys, wrong key version,
	// or keys that need diversification.
	ErrWrongKeys = errors.New("gp: card cryptogram mismatch: wrong keys or key version")
	// ErrKeyVersion: the card has no key set with the requested version,
	// or answered with another one.
	ErrKeyVersion = errors.New("gp: key version not on the card")
	// ErrUnsupportedCard: the card speaks another secure channel protocol
	// or an SCP03 option (S16 mode, RFU "i" bits) this host does not.
	ErrUnsupportedCard = errors.New("gp: unsupported secure channel")
	// ErrLevel: the card's "i" parameter does not support the security
	// level asked for (R-MAC, R-ENCRYPTION).
	ErrLevel = errors.New("gp: security level not supported by the card")
	// ErrAuthRejected: the card refused EXTERNAL AUTHENTICATE although its
	// own cryptogram verified.
	ErrAuthRejected = errors.New("gp: card rejected the host cryptogram")
	// ErrCardLocked: INITIALIZE UPDATE refused with '6982'/'6983': the
	// security domain or its keys are locked or blocked.
	ErrCardLocked = errors.New("gp: security domain locked or key set blocked")
	// ErrSessionClosed: the session was closed or aborted by a security
	// error (Amd D §5.6); open a new one.
	ErrSessionClosed = errors.New("gp: secure channel closed")
)

// Config configures Open.
type Config struct {
	// Keys supplies the card's static keys. Required.
	Keys KeySource
	// KeyVersion is P1 of INITIALIZE UPDATE: '00' lets the card choose
	// its default key set.
	KeyVersion byte
	// Level is the security level of the session (Amd D Table 7-3): one
	// of scp03.Levels. The zero value is no secure messaging.
	Level scp03.SecurityLevel
	// SD is the security domain to open the channel with; nil means the
	// ISD, A000000151000000.
	SD []byte
	// NoSelect skips SELECT, for a security domain that is already
	// selected (e.g. default-selected) under another AID.
	NoSelect bool
	// NoChallengeCheck skips checking a pseudo-random card challenge
	// against the sequence counter and SD (Amd D §6.2.2.1), for cards
	// that compute it over another AID.
	NoChallengeCheck bool
	// Rand supplies the host challenge; nil means crypto/rand.
	Rand io.Reader
}

// Session is an open secure channel to a security domain. Its methods may
// be called from several goroutines; commands are serialised.
type Session struct {
	mu     sync.Mutex
	host   *scp03.Host
	next   reader.Transceiver
	sd     []byte
	dek    scp03.Key
	info   scp03.InitializeUpdateResponse
	level  scp03.SecurityLevel
	closed bool
}

// Open selects the security domain and authenticates with SCP03 at
// cfg.Level over t, which should be the card's full transport stack
// (connect.Stack: GET RESPONSE, 6Cxx, chaining). Errors say why: ErrWrongKeys,
// ErrKeyVersion, ErrUnsupportedCard, ErrLevel, ErrSDNotFound,
// ErrAuthRejected, ErrCardLocked, or a transport error.
func Open(ctx context.Context, t reader.Transceiver, cfg Config) (*Session, error) {
	if cfg.Keys == nil {
		return nil, fmt.Errorf("%w: no key source", ErrKeys)
	}
	if !cfg.Level.Valid() {
		return nil, fmt.Errorf("%w: %02X is not a level of Amd D Table 7-3 (00, 01, 03, 11, 13, 33)", scp03.ErrBadLevel, byte(cfg.Level))
	}
	sd := cfg.SD
	if len(sd) == 0 {
		sd = gpwire.DefaultISDAID()
	}
	if len(sd) < gpwire.MinAIDLen || len(sd) > gpwire.MaxAIDLen {
		return nil, fmt.Errorf("%w: security domain AID of %d bytes", gpwire.ErrBadAID, len(sd))
	}
	sd = bytes.Clone(sd)
	if !cfg.NoSelect {
		r, err := transmit(ctx, t, gpwire.Select(sd))
		if err != nil {
			return nil, fmt.Errorf("SELECT %X: %w", sd, err)
		}
		if r.SW != apdu.SWNoError && !r.SW.IsWarning() {
			return nil, fmt.Errorf("%w: SELECT %X answered %s; check the AID with --sd (the ISD is A000000151000000 on GP 2.2+, A0000001510000 or A000000003000000 on older cards): %w",
				ErrSDNotFound, sd, r.SW.String(), r.SW)
		}
	}
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	var hc [scp03.ChallengeLen]byte
	if _, err := io.ReadFull(rnd, hc[:]); err != nil {
		return nil, fmt.Errorf("gp: host challenge: %w", err)
	}
	r, raw, err := transmitRaw(ctx, t, scp03.NewInitializeUpdate(cfg.KeyVersion, hc))
	if err != nil {
		return nil, fmt.Errorf("INITIALIZE UPDATE: %w", err)
	}
	if err := initUpdateStatus(r.SW, cfg.KeyVersion); err != nil {
		return nil, err
	}
	info, err := checkInitUpdate(r.Data, cfg)
	if err != nil {
		return nil, err
	}
	keys, err := cfg.Keys.StaticKeys(ctx, CardIdentity{SD: bytes.Clone(sd), KDD: info.KDD, KeyVersion: info.KeyInfo.Version})
	if err != nil {
		return nil, fmt.Errorf("keys for the card (KDD %X, key version %02X): %w", info.KDD, info.KeyInfo.Version, err)
	}
	hcfg := scp03.HostConfig{Keys: keys, KeyVersion: cfg.KeyVersion, Level: cfg.Level, Rand: bytes.NewReader(hc[:])}
	if !cfg.NoChallengeCheck {
		hcfg.AID = sd
	}
	h, err := scp03.NewHost(hcfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	// The host replays the challenge already sent; its INITIALIZE UPDATE
	// is the one on the wire.
	if _, err := h.InitializeUpdate(); err != nil {
		return nil, err
	}
	ea, err := h.ExternalAuthenticate(raw)
	if err != nil {
		h.Close()
		if errors.Is(err, scp03.ErrBadChallenge) {
			// Wrong keys fail the challenge check first; tell wrong keys
			// from a challenge over another AID by the cryptogram.
			hcfg.AID, hcfg.Rand = nil, bytes.NewReader(hc[:])
			if probe, perr := scp03.NewHost(hcfg); perr == nil {
				if _, perr = probe.InitializeUpdate(); perr == nil {
					if _, perr = probe.ExternalAuthenticate(raw); perr != nil {
						err = perr
					}
				}
				probe.Close()
			}
		}
		return nil, authError(err, info)
	}
	r, raw, err = transmitRaw(ctx, t, ea)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("EXTERNAL AUTHENTICATE: %w", err)
	}
	if err := h.Complete(raw); err != nil {
		h.Close()
		if r.SW == apdu.ErrNVMChanged {
			return nil, fmt.Errorf("%w (6300): its cryptogram matched our keys, so the card and host disagree on the session (a card bug or a replayed session): %w", ErrAuthRejected, err)
		}
		return nil, fmt.Errorf("EXTERNAL AUTHENTICATE: %w", err)
	}
	return &Session{host: h, next: t, sd: sd, dek: append(scp03.Key{}, keys.DEK...), info: info, level: cfg.Level}, nil
}

// initUpdateStatus explains a non-9000 answer to INITIALIZE UPDATE.
func initUpdateStatus(sw apdu.SW, kvn byte) error {
	switch sw {
	case apdu.SWNoError:
		return nil
	case apdu.ErrRefDataNotFound:
		return fmt.Errorf("%w: the card has no key set with version %02X (6A88); try --kvn 00 for the card's default, or the version `valuechip gp info` lists: %w", ErrKeyVersion, kvn, sw)
	case apdu.ErrSecurityStatus, apdu.ErrAuthBlocked:
		return fmt.Errorf("%w: INITIALIZE UPDATE answered %s: %w", ErrCardLocked, sw.String(), sw)
	case apdu.ErrConditionsNotMet:
		return fmt.Errorf("%w: INITIALIZE UPDATE answered %s: the sequence counter may be exhausted: %w", ErrCardLocked, sw.String(), sw)
	case apdu.ErrINSNotSupported, apdu.ErrCLANotSupported:
		return fmt.Errorf("%w: INITIALIZE UPDATE answered %s: the selected application is not a security domain: %w", ErrUnsupportedCard, sw.String(), sw)
	}
	return fmt.Errorf("INITIALIZE UPDATE answered %s: %w", sw.String(), sw)
}

// checkInitUpdate parses the INITIALIZE UPDATE response and checks what
// does not need keys: protocol, "i", key version, level.
func checkInitUpdate(data []byte, cfg Config) (scp03.InitializeUpdateResponse, error) {
	if len(data) >= 13 && data[11] != scp03.ProtocolID {
		return scp03.InitializeUpdateResponse{}, fmt.Errorf("%w: the card answers for SCP%02X, valuechip speaks SCP03 only", ErrUnsupportedCard, data[11])
	}
	info, err := scp03.ParseInitializeUpdateResponse(data)
	if err != nil {
		if len(data) >= 13 && !scp03.IParam(data[12]).Valid() {
			return info, fmt.Errorf("%w: SCP03 option i=%02X (S16 mode or RFU bits) is not implemented: %w", ErrUnsupportedCard, data[12], err)
		}
		return info, fmt.Errorf("INITIALIZE UPDATE response: %w", err)
	}
	if cfg.KeyVersion != 0 && info.KeyInfo.Version != cfg.KeyVersion {
		return info, fmt.Errorf("%w: asked for key version %02X, the card answered with %02X: %w", ErrKeyVersion, cfg.KeyVersion, info.KeyInfo.Version, scp03.ErrKeyNotFound)
	}
	if !info.KeyInfo.I.Supports(cfg.Level) {
		hint := "try --level cdec"
		if info.KeyInfo.I&scp03.IRMAC != 0 {
			hint = "try --level rmac or cdec+rmac"
		}
		return info, fmt.Errorf("%w: level %s needs R-MAC/R-ENC, the card's i=%02X does not offer it; %s: %w", ErrLevel, cfg.Level, byte(info.KeyInfo.I), hint, scp03.ErrBadLevel)
	}
	return info, nil
}

// authError explains a failed check of the card's INITIALIZE UPDATE answer.
func authError(err error, info scp03.InitializeUpdateResponse) error {
	switch {
	case errors.Is(err, scp03.ErrBadCryptogram):
		return fmt.Errorf("%w? the card (key version %02X, KDD %X) computed another cryptogram; try --kvn, --key-file, or --master-key if its keys are diversified: %w",
			ErrWrongKeys, info.KeyInfo.Version, info.KDD, err)
	case errors.Is(err, scp03.ErrBadChallenge):
		return fmt.Errorf("%w: the card cryptogram matches the keys but the pseudo-random card challenge (sequence counter %06X) was not derived over this SD's AID; if the card is known to do that, try --no-challenge-check: %w",
			scp03.ErrAuthenticationFailed, info.Sequence, err)
	}
	return err
}

// transmit sends a command through t and parses the response.
func transmit(ctx context.Context, t reader.Transceiver, cmd apdu.Command) (apdu.Response, error) {
	r, _, err := transmitRaw(ctx, t, cmd)
	return r, err
}

func transmitRaw(ctx context.Context, t reader.Transceiver, cmd apdu.Command) (apdu.Response, []byte, error) {
	b, err := cmd.Bytes()
	if err != nil {
		return apdu.Response{}, nil, err
	}
	raw, err := t.Transceive(ctx, b)
	if err != nil {
		return apdu.Response{}, nil, err
	}
	r, err := apdu.ParseResponse(raw)
	if err != nil {
		return apdu.Response{}, nil, err
	}
	return r, raw, nil
}

// Transceiver returns the secure channel over the transport Open used:
// every command is wrapped and every response unwrapped at the session's
// level. Commands must be plain (CLA without the secure messaging bit).
func (s *Session) Transceiver() reader.Transceiver { return s.Wrap(s.next) }

// Middleware returns the secure channel as reader middleware, to stack
// above another transport to the same card.
func (s *Session) Middleware() reader.Middleware { return s.Wrap }

// Wrap returns the secure channel over next.
func (s *Session) Wrap(next reader.Transceiver) reader.Transceiver {
	return reader.TransceiverFunc(func(ctx context.Context, cmd []byte) ([]byte, error) {
		return s.transceive(ctx, next, cmd)
	})
}

func (s *Session) transceive(ctx context.Context, next reader.Transceiver, raw []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.host.Open() {
		return nil, fmt.Errorf("%w: open a new session", ErrSessionClosed)
	}
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return nil, err
	}
	wrapped, err := s.host.Wrap(cmd)
	if err != nil {
		return nil, fmt.Errorf("secure channel: %w", err)
	}
	b, err := wrapped.Bytes()
	if err != nil {
		return nil, fmt.Errorf("secure channel: %w", err)
	}
	resp, err := next.Transceive(ctx, b)
	if err != nil {
		return nil, err
	}
	out, err := s.host.Unwrap(resp)
	if err != nil {
		return nil, fmt.Errorf("secure channel: response to %s: %w (the session is aborted)", reader.CommandName(cmd.CLA, cmd.INS), err)
	}
	return out, nil
}

// Close ends the session and wipes its keys. The card ends its side on the
// next SELECT, INITIALIZE UPDATE or reset.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.host.Close()
	s.dek.Wipe()
}

// SD returns the AID of the security domain.
func (s *Session) SD() []byte { return bytes.Clone(s.sd) }

// Level returns the session's security level.
func (s *Session) Level() scp03.SecurityLevel { return s.level }

// CardInfo returns the card's INITIALIZE UPDATE answer: KDD, key version,
// "i" and sequence counter.
func (s *Session) CardInfo() scp03.InitializeUpdateResponse { return s.info }

// String describes the session without keys.
func (s *Session) String() string {
	return fmt.Sprintf("SCP03 session with %X, key version %02X, level %s", s.sd, s.info.KeyInfo.Version, s.level)
}

// Format prints the description for every verb, so that no formatting
// reaches the keys.
func (s *Session) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }
