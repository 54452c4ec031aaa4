package provision

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/sqldb"
)

// Keys is where the server gets the issuer's master keys; an HSM-backed
// source implements the same methods (host/keystore.Source does).
type Keys interface {
	// Masters returns the purse issuer master keys MK_LOAD, MK_DEBIT and
	// MK_TC (docs/purse.md §5.1); each card's keys are diversified from
	// them by its CardID.
	Masters(ctx context.Context) (wire.Keys, error)
	// CardManagerMaster returns the issuer's SCP03 master keys and the
	// ISD key version they are on the chips with; each chip's ISD keys
	// are diversified from them by its KDD (host/gp Diversify,
	// docs/gp.md).
	CardManagerMaster(ctx context.Context) (master scp03.StaticKeys, keyVersion byte, err error)
}

// StaticKeys is a Keys held in memory, for tests and development.
type StaticKeys struct {
	Purse      wire.Keys
	ISD        scp03.StaticKeys
	ISDVersion byte
}

// Masters implements Keys.
func (k StaticKeys) Masters(context.Context) (wire.Keys, error) { return k.Purse, k.Purse.Check() }

// CardManagerMaster implements Keys.
// The keys are copies: the server wipes them after use.
func (k StaticKeys) CardManagerMaster(context.Context) (scp03.StaticKeys, byte, error) {
	c := scp03.StaticKeys{ENC: bytes.Clone(k.ISD.ENC), MAC: bytes.Clone(k.ISD.MAC), DEK: bytes.Clone(k.ISD.DEK)}
	return c, k.ISDVersion, c.Check()
}

// Card is what the server records when a card has been issued.
type Card struct {
	CardID      wire.CardID
	Holder      string
	TerminalID  string
	Currency    wire.Currency
	Limits      wire.Limits
	KeyVersions [3]byte // K_LOAD, K_DEBIT, K_TC
	KDD         [scp03.KDDLen]byte
	ICSerial    string // CPLC IC serial number, hex
	IssuedAt    time.Time
}

// Registry learns of every issued card (host/registry's RegisterCard
// through an adapter). Issued must be idempotent: after a failure between
// it and the provisioning record, the card is installed again and Issued
// called again with the same card.
type Registry interface {
	Issued(ctx context.Context, card Card) error
}

// SessionEnd reports the end of a session to Config.OnSessionEnd.
type SessionEnd struct {
	Registration string
	Session      string
	CardID       wire.CardID
	Exchanges    int
	// Err is nil when the card was issued.
	Err error
}

// Config configures a Server.
type Config struct {
	// DB holds the prov_ tables. Required.
	DB *sqldb.DB
	// Keys supplies the master keys. Required.
	Keys Keys
	// ISDKeys, when set, replaces the diversification of the ISD keys
	// from Keys.CardManagerMaster: gp.TestKeys() for development chips
	// made with `valuechip emulate --profile empty`.
	ISDKeys hostgp.KeySource
	// Registry, when set, is told of every issued card.
	Registry Registry
	// Digest is the purse module's code digest for the load file
	// (applet/purse.Module.Digest() of the build the issuer trusts).
	// Required.
	Digest [32]byte
	// Currency of the purses; zero means EUR (978).
	Currency wire.Currency
	// Limits of the purses; zero means 1000.00 balance, 500.00 load,
	// 100.00 debit, 25.00 PIN-free, 500.00 offline.
	Limits wire.Limits
	// PINTries is the PIN try limit; 0 means 3.
	PINTries byte
	// CardIDPrefix is the decimal prefix of assigned CardIDs; "" means
	// "990000".
	CardIDPrefix string
	// TerminalPrefix prefixes the assigned device terminal IDs; "" means
	// "VD".
	TerminalPrefix string
	// Level is the SCP03 security level; 0 means '33' (C-MAC,
	// C-DECRYPTION, R-MAC, R-ENCRYPTION). It must have C-DECRYPTION and
	// R-MAC ('13' or '33').
	Level scp03.SecurityLevel
	// KeyVersion is the ISD key version to ask for in INITIALIZE UPDATE;
	// 0 means the version Keys.CardManagerMaster gives, or the card's
	// default with ISDKeys.
	KeyVersion byte
	// ExchangeTimeout bounds the wait for the device's answer to a
	// command; 0 means 30 s.
	ExchangeTimeout time.Duration
	// SessionTimeout bounds a whole session; 0 means 5 minutes.
	SessionTimeout time.Duration
	// MaxSessions bounds concurrent sessions; 0 means 64.
	MaxSessions int
	// Logger receives one line per registration and session (never keys);
	// nil discards.
	Logger *slog.Logger
	// OnSessionEnd, when set, is called after each session has ended and
	// been recorded.
	OnSessionEnd func(SessionEnd)
	// Now and Rand default to time.Now and crypto/rand.
	Now  func() time.Time
	Rand io.Reader
}

// Server is the money server's provisioning service: registration and the
// remote installation sessions (docs/provision.md).
type Server struct {
	cfg   Config
	store store
	log   *slog.Logger
	base  context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex
	active map[string]*session // by registration ID
	closed bool
}

// New checks cfg, migrates the prov_ tables and returns a server.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DB == nil || cfg.Keys == nil {
		return nil, errors.New("provision: Config needs DB and Keys")
	}
	if cfg.Digest == ([32]byte{}) {
		return nil, errors.New("provision: Config needs the purse module digest")
	}
	if cfg.Currency == (wire.Currency{}) {
		cfg.Currency = wire.Currency{0x09, 0x78}
	}
	if !cfg.Currency.Valid() {
		return nil, fmt.Errorf("provision: currency %X is not a BCD code", cfg.Currency[:])
	}
	if cfg.Limits == (wire.Limits{}) {
		cfg.Limits = wire.Limits{MaxBalance: 100000, MaxLoad: 50000, MaxDebit: 10000, PINFreeLimit: 2500, OfflineLimit: 50000}
	}
	if _, err := wire.ParseLimits(cfg.Limits.Bytes()); err != nil {
		return nil, fmt.Errorf("provision: limits: %w", err)
	}
	if cfg.PINTries == 0 {
		cfg.PINTries = 3
	}
	if cfg.CardIDPrefix == "" {
		cfg.CardIDPrefix = "990000"
	}
	if _, err := NewCardID(cfg.CardIDPrefix, 1); err != nil {
		return nil, err
	}
	if cfg.TerminalPrefix == "" {
		cfg.TerminalPrefix = "VD"
	}
	if _, err := terminalID(cfg.TerminalPrefix, 1); err != nil {
		return nil, err
	}
	if cfg.Level == 0 {
		cfg.Level = scp03.LevelAll
	}
	// C-DECRYPTION keeps the key DGIs secret from the relay (docs/purse.md
	// §8.2); R-MAC lets the server notice an altered response.
	if !cfg.Level.Valid() || !cfg.Level.Has(scp03.LevelCMAC|scp03.LevelCDEC|scp03.LevelRMAC) {
		return nil, fmt.Errorf("provision: security level %02X: remote installation needs C-MAC, C-DECRYPTION and R-MAC (13 or 33)", byte(cfg.Level))
	}
	if cfg.ExchangeTimeout <= 0 {
		cfg.ExchangeTimeout = 30 * time.Second
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 5 * time.Minute
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if err := Migrate(ctx, cfg.DB); err != nil {
		return nil, fmt.Errorf("provision: migrate: %w", err)
	}
	base, stop := context.WithCancel(context.Background())
	return &Server{cfg: cfg, store: store{db: cfg.DB}, log: cfg.Logger, base: base, stop: stop, active: map[string]*session{}}, nil
}

// Close aborts every session and waits for them to end.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
}

// Handler serves POST /v1/register and POST /v1/session/{registration}.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathRegister, s.handleRegister)
	mux.HandleFunc("POST "+PathSession+"{id}", s.handleSession)
	return mux
}

// Sessions lists the recorded sessions of a registration.
func (s *Server) Sessions(ctx context.Context, registration string) ([]SessionRecord, error) {
	return s.store.sessions(ctx, registration)
}

func (s *Server) randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.cfg.Rand, b); err != nil {
		return "", fmt.Errorf("provision: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	if !jsonBody(w, r) {
		return
	}
	reg, err := parseRegister(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	id, err := s.randomHex(idLen / 2)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	token, err := s.randomHex(32)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rec, err := s.store.register(r.Context(), reg, id, token, &s.cfg, s.cfg.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("provision: registered", "registration", rec.id, "card_id", hexUpper(rec.cardID[:]), "terminal_id", rec.terminalID, "ic_serial", rec.serial, "holder", rec.holder)
	writeJSON(w, http.StatusOK, RegisterResponse{Registration: rec.id, Token: token, CardID: hexUpper(rec.cardID[:]), TerminalID: rec.terminalID})
}

// jsonBody refuses a body declared as something other than JSON.
func jsonBody(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct != "" && !strings.HasPrefix(ct, ContentType) {
		writeJSON(w, http.StatusUnsupportedMediaType, ErrorBody{Code: "malformed", Error: "the body must be " + ContentType})
		return false
	}
	return true
}

// bearer returns the token of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

func (s *Server) handleSession(w http.ResponseWriter, r *http.Request) {
	regID := r.PathValue("id")
	if !validID(regID) {
		s.fail(w, r, ErrUnknown)
		return
	}
	if !jsonBody(w, r) {
		return
	}
	x, err := parseSession(r.Body)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	th := tokenHash(bearer(r))
	if x.session == "" {
		s.start(w, r, regID, th, x)
		return
	}
	s.mu.Lock()
	sess := s.active[regID]
	s.mu.Unlock()
	if sess == nil || sess.id != x.session {
		s.fail(w, r, fmt.Errorf("%w: no active session %s", ErrUnknown, x.session))
		return
	}
	if subtle.ConstantTimeCompare(th[:], sess.rec.tokenHash[:]) != 1 {
		s.fail(w, r, ErrUnauthorized)
		return
	}
	resp, err := sess.exchange(r.Context(), x)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// start opens a session for a registration and answers its first command.
func (s *Server) start(w http.ResponseWriter, r *http.Request, regID string, th [32]byte, x exchange) {
	ctx := r.Context()
	rec, err := s.store.lookup(ctx, regID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if subtle.ConstantTimeCompare(th[:], rec.tokenHash[:]) != 1 {
		s.fail(w, r, ErrUnauthorized)
		return
	}
	if rec.status == regIssued {
		s.fail(w, r, fmt.Errorf("%w: card %X", ErrAlreadyIssued, rec.cardID[:]))
		return
	}
	pin := x.pin
	serverPIN := pin == ""
	if serverPIN {
		if pin, err = s.randomPIN(); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	id, err := s.randomHex(idLen / 2)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sess := newSession(s, id, rec, pin, serverPIN)
	s.mu.Lock()
	switch {
	case s.closed:
		err = fmt.Errorf("%w: shutting down", ErrBusy)
	case s.active[regID] != nil:
		err = fmt.Errorf("%w: card %X has an installation session running (an interrupted one ends after %v without an answer); retry then", ErrBusy, rec.cardID[:], s.cfg.ExchangeTimeout)
	case len(s.active) >= s.cfg.MaxSessions:
		err = fmt.Errorf("%w: %d sessions running", ErrBusy, len(s.active))
	default:
		s.active[regID] = sess
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.store.sessionStarted(ctx, id, regID, s.cfg.Now()); err != nil {
		s.mu.Lock()
		delete(s.active, regID)
		s.mu.Unlock()
		s.wg.Done()
		s.fail(w, r, err)
		return
	}
	s.log.Info("provision: session started", "registration", regID, "session", id, "card_id", hexUpper(rec.cardID[:]))
	go sess.run()
	sess.mu.Lock()
	resp, err := sess.next(ctx)
	sess.mu.Unlock()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// randomPIN draws a 4-digit PIN without modulo bias.
func (s *Server) randomPIN() (string, error) {
	var b [2]byte
	for {
		if _, err := io.ReadFull(s.cfg.Rand, b[:]); err != nil {
			return "", fmt.Errorf("provision: random: %w", err)
		}
		if v := binary.BigEndian.Uint16(b[:]); v < 60000 {
			return fmt.Sprintf("%04d", v%10000), nil
		}
	}
}

// ended removes a finished session and records it.
func (s *Server) ended(sess *session, err error) {
	s.mu.Lock()
	if s.active[sess.rec.id] == sess {
		delete(s.active, sess.rec.id)
	}
	s.mu.Unlock()
	outcome, text := StatusIssued, ""
	if err != nil {
		outcome, text = StatusFailed, err.Error()
	}
	// The session's context may be gone (timeout, shutdown): record with
	// a fresh, bounded one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if rerr := s.store.sessionEnded(ctx, sess.id, outcome, text, sess.exchanges(), s.cfg.Now()); rerr != nil {
		s.log.Error("provision: recording the session end", "session", sess.id, "err", rerr)
	}
	if err != nil {
		s.log.Warn("provision: session failed", "registration", sess.rec.id, "session", sess.id, "card_id", hexUpper(sess.rec.cardID[:]), "err", err)
	} else {
		s.log.Info("provision: card issued", "registration", sess.rec.id, "session", sess.id, "card_id", hexUpper(sess.rec.cardID[:]))
	}
	if s.cfg.OnSessionEnd != nil {
		s.cfg.OnSessionEnd(SessionEnd{Registration: sess.rec.id, Session: sess.id, CardID: sess.rec.cardID, Exchanges: sess.exchanges(), Err: err})
	}
	s.wg.Done()
}

// fail answers an error with its HTTP status and code.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrMalformed):
		status = http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrUnknown):
		status = http.StatusNotFound
	case errors.Is(err, ErrReplay), errors.Is(err, ErrAlreadyIssued):
		status = http.StatusConflict
	case errors.Is(err, ErrBusy):
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	}
	msg := err.Error()
	if status == http.StatusInternalServerError {
		s.log.Error("provision: request failed", "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	writeJSON(w, status, ErrorBody{Code: codeOf(err), Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
