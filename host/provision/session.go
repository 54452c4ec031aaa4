package provision

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/terminal"
)

// session is one remote installation: a goroutine runs the GlobalPlatform
// host (host/gp, terminal.Issue) against a relay Transceiver whose
// Transceive hands each command to the pending HTTP request and waits for
// the device's next POST (docs/provision.md §3).
type session struct {
	srv       *Server
	id        string
	rec       record
	pin       string
	serverPIN bool

	ctx     context.Context
	cancel  context.CancelCauseFunc
	release context.CancelFunc // of the session timeout

	toDevice   chan []byte   // runner → handler: the next command
	fromDevice chan []byte   // handler → runner: its response
	done       chan struct{} // closed when the runner has ended
	outcome    error         // set before done is closed

	// mu serialises the device's requests; a second request while one is
	// in progress is itself a protocol violation.
	mu    sync.Mutex
	seq   uint64
	nonce []byte

	countMu sync.Mutex
	count   int
}

func newSession(s *Server, id string, rec record, pin string, serverPIN bool) *session {
	base, cancel := context.WithCancelCause(s.base)
	ctx, release := context.WithTimeoutCause(base, s.cfg.SessionTimeout, fmt.Errorf("%w: session over %v", ErrAborted, s.cfg.SessionTimeout))
	return &session{srv: s, id: id, rec: rec, pin: pin, serverPIN: serverPIN, ctx: ctx, cancel: cancel, release: release,
		toDevice: make(chan []byte), fromDevice: make(chan []byte), done: make(chan struct{})}
}

func (x *session) exchanges() int {
	x.countMu.Lock()
	defer x.countMu.Unlock()
	return x.count
}

// abort ends the session with cause; the runner's next Transceive fails.
func (x *session) abort(cause error) { x.cancel(cause) }

// exchange handles a device request of a running session: it checks the
// sequence number and nonce of the server's last answer, passes the
// response to the runner and answers the next command or the outcome.
func (x *session) exchange(ctx context.Context, req exchange) (SessionResponse, error) {
	if !x.mu.TryLock() {
		err := fmt.Errorf("%w: concurrent requests in session %s", ErrReplay, x.id)
		x.abort(err)
		return SessionResponse{}, err
	}
	defer x.mu.Unlock()
	// Checked first, even when the session is over: a copy of any request,
	// the last one included, is refused.
	if req.seq != x.seq || subtle.ConstantTimeCompare(req.nonce, x.nonce) != 1 {
		err := fmt.Errorf("%w: got sequence %d, expected %d", ErrReplay, req.seq, x.seq)
		x.abort(err)
		return SessionResponse{}, err
	}
	// The nonce is spent: a copy of this request is a replay even if the
	// runner has not answered yet.
	x.nonce = nil
	select {
	case <-x.done:
		// Ended meanwhile (a timeout): the outcome.
		return x.final(), nil
	default:
	}
	if req.devErr != "" {
		x.abort(fmt.Errorf("%w: the device reports: %s", ErrAborted, req.devErr))
		<-x.done
		return x.final(), nil
	}
	if len(req.responses) != 1 {
		err := fmt.Errorf("%w: %d responses to one command", ErrMalformed, len(req.responses))
		x.abort(err)
		return SessionResponse{}, err
	}
	select {
	case x.fromDevice <- req.responses[0]:
	case <-x.done:
		return x.final(), nil
	case <-ctx.Done():
		return SessionResponse{}, ctx.Err()
	}
	return x.next(ctx)
}

// next waits for the runner's next command, or its end.
func (x *session) next(ctx context.Context) (SessionResponse, error) {
	select {
	case cmd := <-x.toDevice:
		nonce := make([]byte, nonceLen)
		if _, err := io.ReadFull(x.srv.cfg.Rand, nonce); err != nil {
			x.abort(err)
			return SessionResponse{}, err
		}
		x.seq++
		x.nonce = nonce
		x.countMu.Lock()
		x.count++
		x.countMu.Unlock()
		return SessionResponse{Session: x.id, Seq: x.seq, Nonce: hex.EncodeToString(nonce), Status: StatusRunning,
			Commands: []string{strings.ToUpper(hex.EncodeToString(cmd))}}, nil
	case <-x.done:
		return x.final(), nil
	case <-ctx.Done():
		// The device hung up; the runner's exchange timeout ends the
		// session if it does not come back.
		return SessionResponse{}, ctx.Err()
	}
}

// final is the answer once the runner has ended.
func (x *session) final() SessionResponse {
	if x.outcome != nil {
		return SessionResponse{Session: x.id, Seq: x.seq, Status: StatusFailed, Error: x.outcome.Error()}
	}
	r := SessionResponse{Session: x.id, Seq: x.seq, Status: StatusIssued, CardID: hexUpper(x.rec.cardID[:]), TerminalID: x.rec.terminalID}
	if x.serverPIN {
		r.PIN = x.pin
	}
	return r
}

// Transceive is the relay: it hands cmd to the device's pending request and
// waits for the response in its next one, at most ExchangeTimeout.
func (x *session) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	t := time.NewTimer(x.srv.cfg.ExchangeTimeout)
	defer t.Stop()
	timeout := func() error {
		err := fmt.Errorf("%w: no answer from the device within %v", ErrAborted, x.srv.cfg.ExchangeTimeout)
		x.abort(err)
		return err
	}
	select {
	case x.toDevice <- bytes.Clone(cmd):
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-t.C:
		return nil, timeout()
	}
	select {
	case r := <-x.fromDevice:
		return r, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-t.C:
		return nil, timeout()
	}
}

// run is the session's goroutine.
func (x *session) run() {
	err := x.install(x.ctx)
	if err != nil {
		if cause := context.Cause(x.ctx); cause != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%w)", cause, err)
		}
		if !errors.Is(err, ErrAborted) && !errors.Is(err, ErrReplay) && !errors.Is(err, ErrMalformed) {
			err = fmt.Errorf("%w: %w", ErrAborted, err)
		}
	}
	x.outcome = err
	x.cancel(errors.New("provision: session ended"))
	x.release()
	close(x.done)
	x.srv.ended(x, err)
}

// install opens SCP03 with the ISD through the relay, removes what an
// earlier failed attempt may have left, installs and personalises the purse
// (terminal.Issue) and records the card as issued.
func (x *session) install(ctx context.Context) error {
	cfg := &x.srv.cfg
	kvn := cfg.KeyVersion
	if kvn == 0 && cfg.ISDKeys == nil {
		m, v, err := cfg.Keys.CardManagerMaster(ctx)
		if err != nil {
			return fmt.Errorf("card manager master: %w", err)
		}
		wipe(m)
		kvn = v
	}
	gs, err := hostgp.Open(ctx, x, hostgp.Config{Keys: cardKeys{srv: x.srv, kdd: x.rec.kdd}, Level: cfg.Level, KeyVersion: kvn, Rand: cfg.Rand})
	if err != nil {
		return fmt.Errorf("secure channel: %w", err)
	}
	defer gs.Close()
	// A failed attempt may have left the load file, or an instance not
	// (fully) personalised: DELETE [related] of the package removes both
	// (GPCS §11.2). The card is not issued (the registration says so), so
	// it holds no value yet.
	if err := gs.Delete(ctx, wire.PackageAID(), true); err != nil && !errors.Is(err, hostgp.ErrNotFound) {
		return fmt.Errorf("removing an earlier attempt: %w", err)
	}
	masters, err := cfg.Keys.Masters(ctx)
	if err != nil {
		return fmt.Errorf("issuer master keys: %w", err)
	}
	p := terminal.IssueParams{Digest: cfg.Digest, CardID: x.rec.cardID, Currency: cfg.Currency, Limits: cfg.Limits,
		PIN: x.pin, PINTries: cfg.PINTries, Masters: masters}
	if err := terminal.Issue(ctx, gs, p); err != nil {
		return err
	}
	now := cfg.Now()
	card := Card{CardID: x.rec.cardID, Holder: x.rec.holder, TerminalID: x.rec.terminalID, Currency: cfg.Currency, Limits: cfg.Limits,
		KeyVersions: [3]byte{masters.Load.Version, masters.Debit.Version, masters.TC.Version}, KDD: x.rec.kdd, ICSerial: x.rec.serial, IssuedAt: now}
	if cfg.Registry != nil {
		if err := cfg.Registry.Issued(ctx, card); err != nil {
			return fmt.Errorf("registry: %w", err)
		}
	}
	return x.srv.store.markIssued(ctx, x.rec.id, now)
}

// cardKeys gives the ISD keys of the registered chip only: the KDD the card
// answers in INITIALIZE UPDATE must be the one registered, so a relay cannot
// switch cards between registration and installation.
type cardKeys struct {
	srv *Server
	kdd [scp03.KDDLen]byte
}

func (k cardKeys) StaticKeys(ctx context.Context, card hostgp.CardIdentity) (scp03.StaticKeys, error) {
	if card.KDD != k.kdd {
		return scp03.StaticKeys{}, fmt.Errorf("%w: the card answers KDD %X, registered %X", ErrWrongCard, card.KDD[:], k.kdd[:])
	}
	if k.srv.cfg.ISDKeys != nil {
		return k.srv.cfg.ISDKeys.StaticKeys(ctx, card)
	}
	m, _, err := k.srv.cfg.Keys.CardManagerMaster(ctx)
	if err != nil {
		return scp03.StaticKeys{}, err
	}
	defer wipe(m)
	return hostgp.Diversify(m, card.KDD[:])
}

// wipe clears a copy of master keys once used; Keys implementations hand
// out copies (host/keystore and StaticKeys do).
func wipe(k scp03.StaticKeys) {
	k.ENC.Wipe()
	k.MAC.Wipe()
	k.DEK.Wipe()
}
