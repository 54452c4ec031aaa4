package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	moov "github.com/moov-io/iso8583"

	"github.com/valuechip/valuechip/host/iso8583"
)

// Errors of the link.
var (
	// ErrTransport: no usable answer (connection refused or lost,
	// timeout, response MAC wrong — docs/iso8583.md §6 treats it as no
	// response). The request may or may not have reached the server.
	ErrTransport = errors.New("link: no answer from the money server")
	// ErrDeclined: the server answered with a response code other than
	// approval (DeclineError carries it).
	ErrDeclined = errors.New("link: declined by the money server")
	// ErrSignOn: the server refused the sign-on or sent an unusable key
	// block.
	ErrSignOn = errors.New("link: sign-on failed")
	// ErrClosed: the Link was closed.
	ErrClosed = errors.New("link: closed")
	// errNotSent marks a failure before the message reached the server
	// (or after it refused it with 63): the server did not act on it.
	errNotSent = errors.New("link: not sent to the money server")
)

// Options tune a Link.
type Options struct {
	// StateDir holds the durable queue, batch totals and STAN
	// reservation (docs/terminal.md §2). Required; one Link per
	// directory at a time.
	StateDir string
	// Dial opens the connection to addr (default: TCP with a 10 s
	// connect timeout). Tests pass a net.Pipe or loopback dialer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Timeout bounds each request (default 15 s).
	Timeout time.Duration
	// Repeats is how many repeats (0221/0421) follow an unanswered
	// completion or reversal advice before it is left in the queue
	// (default 2).
	Repeats int
	// RenewBefore: sign on again this long before the seed expires
	// (default 10 minutes; docs/iso8583.md §2.1).
	RenewBefore time.Duration
	// FlushWindow is the number of advices in flight at once during
	// Flush (default 16).
	FlushWindow int
	// POSEntryMode is DE 22 (default "072", contactless, no PIN pad).
	POSEntryMode string
	// Currency is DE 49 of a balance inquiry and of the 0500 of an empty
	// batch (default "978").
	Currency string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Progress, if set, is called by Flush after each advice is answered
	// (or failed) with the number done so far and the number it set out
	// to send: what a progress bar of a long batch settlement shows. It is
	// called with Flush's lock held and must be quick.
	Progress func(done, total int)
	// Logger receives connection events (default: discarded). Keys are
	// never logged.
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		o.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if o.Timeout <= 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Repeats < 0 {
		o.Repeats = 0
	} else if o.Repeats == 0 {
		o.Repeats = 2
	}
	if o.RenewBefore <= 0 {
		o.RenewBefore = 10 * time.Minute
	}
	if o.FlushWindow <= 0 {
		o.FlushWindow = 16
	}
	if o.POSEntryMode == "" {
		o.POSEntryMode = "072"
	}
	if o.Currency == "" {
		o.Currency = "978"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// session is one signed-on connection: its working key and seed
// (docs/iso8583.md §2.1, §4). A renewed sign-on opens a new connection;
// the old one is closed once its requests in flight are answered, so no
// answer MACed under the old key is lost.
type session struct {
	cli      *iso8583.Client
	wk       iso8583.Key
	seed     iso8583.Seed
	renewAt  time.Time
	refs     int  // requests in flight; guarded by Link.mu
	retired  bool // replaced; close when refs drops to 0
	timeouts int  // consecutive timeouts; guarded by Link.mu
}

// maxTimeouts consecutive unanswered requests drop a connection: one
// timeout keeps it, so that a repeat goes out under the same seed and
// keeps its transaction number (docs/iso8583.md §7).
const maxTimeouts = 2

// Link is a terminal's connection to the money server over ISO 8583
// (docs/iso8583.md, docs/terminal.md). It implements
// terminal.LoadAuthority, keeps the durable store-and-forward queue and
// the batch totals, and is safe for concurrent use.
type Link struct {
	cfg  Config
	opts Options
	st   *store
	log  *slog.Logger

	connMu sync.Mutex // serialises dialing and sign-on
	mu     sync.Mutex // guards cur, closed and session refs
	cur    *session
	closed bool

	flushMu sync.Mutex // one Flush at a time: an advice is never in flight twice
	reconMu sync.Mutex // one Reconcile at a time: one 0500 per batch

	stanMu   sync.Mutex
	stan     uint32 // last STAN issued
	left     int    // STANs left in the persisted reservation
	inflight map[string]bool
}

// Open returns a Link for cfg without connecting: offline operations
// (queueing debit advices, reading the batch) work at once, and the first
// online request dials and signs on.
func Open(cfg Config, opts Options) (*Link, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.StateDir == "" {
		return nil, errors.New("link: Options.StateDir is required")
	}
	opts.defaults()
	st, err := openStore(opts.StateDir)
	if err != nil {
		return nil, err
	}
	l := &Link{cfg: cfg, opts: opts, st: st, inflight: map[string]bool{},
		log: opts.Logger.With("terminal", cfg.TerminalID)}
	l.stan = st.stanReserve() // continue after the last reservation
	return l, nil
}

// Dial opens a Link and signs on (docs/iso8583.md §2.1).
func Dial(ctx context.Context, cfg Config, opts Options) (*Link, error) {
	l, err := Open(cfg, opts)
	if err != nil {
		return nil, err
	}
	s, err := l.acquire(ctx)
	if err != nil {
		l.Close()
		return nil, err
	}
	l.release(s)
	return l, nil
}

// Config returns the terminal configuration.
func (l *Link) Config() Config { return l.cfg }

// Close closes the connection and the state log. Queued advices stay on
// disk for the next Link.
func (l *Link) Close() error {
	l.mu.Lock()
	l.closed = true
	if l.cur != nil {
		l.retireLocked(l.cur)
		l.cur = nil
	}
	l.mu.Unlock()
	return l.st.close()
}

func (l *Link) retireLocked(s *session) {
	s.retired = true
	if s.refs == 0 {
		go s.cli.Close()
	}
}

func (l *Link) release(s *session) {
	l.mu.Lock()
	s.refs--
	if s.retired && s.refs == 0 {
		go s.cli.Close()
	}
	l.mu.Unlock()
}

// invalidate drops s so that the next request signs on again (on a new
// connection).
func (l *Link) invalidate(s *session) {
	l.mu.Lock()
	if l.cur == s {
		l.cur = nil
		l.retireLocked(s)
	}
	l.mu.Unlock()
}

// usable returns the current session with a reference taken, or nil.
func (l *Link) usable() (*session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	if s := l.cur; s != nil && l.opts.Now().Before(s.renewAt) {
		s.refs++
		return s, nil
	}
	return nil, nil
}

// acquire returns a signed-on session with a reference taken (release
// it): the current one, or a new one when there is none or its seed is
// due for renewal.
func (l *Link) acquire(ctx context.Context) (*session, error) {
	if s, err := l.usable(); s != nil || err != nil {
		return s, err
	}
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if s, err := l.usable(); s != nil || err != nil {
		return s, err
	}
	s, err := l.signOn(ctx)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		go s.cli.Close()
		return nil, ErrClosed
	}
	if old := l.cur; old != nil {
		l.retireLocked(old)
	}
	l.cur = s
	s.refs++
	return s, nil
}

// de7 is the transmission date and time, MMDDhhmmss UTC (§3.1).
func (l *Link) de7() string { return l.opts.Now().UTC().Format("0102150405") }

// signOn dials and sends 0800/001 MACed under the TMK; the 0810 hands
// over the working key and the transaction-number seed (§2.1, §4).
func (l *Link) signOn(ctx context.Context) (*session, error) {
	conn, err := l.opts.Dial(ctx, l.cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrTransport, l.cfg.Server, err)
	}
	cli := iso8583.NewClient(conn, 0)
	cli.Timeout = l.opts.Timeout
	stan, err := l.nextSTAN()
	if err != nil {
		cli.Close()
		return nil, err
	}
	msg, err := iso8583.Marshal(&iso8583.NetworkManagement{MTI: iso8583.MTINetworkRequest, Transmission: l.de7(),
		STAN: stan, TerminalID: l.cfg.TerminalID, NetworkCode: iso8583.NMISignOn})
	if err != nil {
		cli.Close()
		return nil, err
	}
	rsp, err := cli.Send(ctx, msg, l.cfg.TMK)
	if err != nil {
		cli.Close()
		var ref *iso8583.RefusalError
		if errors.As(err, &ref) {
			// An answer came: not a transport failure (58: the server does
			// not know this terminal or has not seen its registration yet).
			return nil, fmt.Errorf("%w: %w", ErrSignOn, err)
		}
		return nil, fmt.Errorf("%w: %w: %w", ErrTransport, ErrSignOn, err)
	}
	var nm iso8583.NetworkManagement
	if err := iso8583.Unmarshal(rsp, &nm); err != nil {
		cli.Close()
		return nil, fmt.Errorf("%w: %w", ErrSignOn, err)
	}
	if nm.ResponseCode != iso8583.RCApproved {
		cli.Close()
		return nil, &DeclineError{Op: "sign-on", MTI: iso8583.MTINetworkResponse, Code: nm.ResponseCode}
	}
	keys, err := iso8583.DecodeSignOnKeys(nm.KeyData, l.cfg.TMK)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("%w: %w", ErrSignOn, err)
	}
	now := l.opts.Now()
	if !keys.Seed.NotAfter.After(now) {
		cli.Close()
		return nil, fmt.Errorf("%w: seed %d expired at %s", ErrSignOn, keys.Seed.ID, keys.Seed.NotAfter)
	}
	renew := keys.Seed.NotAfter.Add(-l.opts.RenewBefore)
	if half := now.Add(keys.Seed.NotAfter.Sub(now) / 2); renew.Before(half) {
		renew = half // a short validity: renew half way
	}
	wkcv, _ := keys.WorkingKey.KCV()
	l.log.Info("signed on", "server", l.cfg.Server, "seed", keys.Seed.ID, "seed_not_after", keys.Seed.NotAfter,
		"working_key_kcv", fmt.Sprintf("%X", wkcv[:]))
	return &session{cli: cli, wk: keys.WorkingKey, seed: keys.Seed, renewAt: renew}, nil
}

// nextSTAN allocates a STAN (DE 11, 000001–999999, cyclic) that no
// request in flight uses. STANs are reserved durably in blocks of 1000, so
// a restarted terminal does not reuse recent ones.
func (l *Link) nextSTAN() (string, error) {
	l.stanMu.Lock()
	defer l.stanMu.Unlock()
	for range 1_000_000 {
		n := l.stan%999999 + 1
		if l.left == 0 {
			end := (n+998)%999999 + 1
			if err := l.st.append(true, event{E: evSTAN, N: end}); err != nil {
				return "", err
			}
			l.left = 1000
		}
		l.left--
		l.stan = n
		s := fmt.Sprintf("%06d", n)
		if !l.inflight[s] {
			return s, nil
		}
	}
	return "", errors.New("link: every STAN is in flight")
}

func (l *Link) setInflight(stan string, on bool) {
	l.stanMu.Lock()
	if on {
		l.inflight[stan] = true
	} else {
		delete(l.inflight, stan)
	}
	l.stanMu.Unlock()
}

// builder builds a request for a session: it sets DE 62 with the
// session's seed (§7), so the number is computed when the message is
// built, also for advices queued earlier.
type builder func(s *session) (*moov.Message, error)

// withTN marshals v and sets its transaction number.
func withTN(s *session, v any) (*moov.Message, error) {
	msg, err := iso8583.Marshal(v)
	if err != nil {
		return nil, err
	}
	if err := s.seed.SetTxnNumber(msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// roundTrip sends the message build makes (STAN stan) MACed under the
// working key and returns the verified response and its DE 39. A 63 (MAC,
// transaction number or seed refused) drops the session; the message is
// then rebuilt on a new sign-on and sent once more (the server did not act
// on it, §6, §7).
func (l *Link) roundTrip(ctx context.Context, stan string, build builder) (*moov.Message, string, error) {
	for attempt := 0; ; attempt++ {
		s, err := l.acquire(ctx)
		if err != nil {
			// Never sent, or refused with 63 before: the server did not act.
			return nil, "", fmt.Errorf("%w: %w", errNotSent, err)
		}
		msg, err := build(s)
		if err != nil {
			l.release(s)
			return nil, "", err
		}
		l.setInflight(stan, true)
		rsp, err := s.cli.Send(ctx, msg, s.wk)
		l.setInflight(stan, false)
		l.release(s)
		if err != nil {
			if ctx.Err() == nil && l.failed(s, err) {
				l.invalidate(s) // a fresh connection and sign-on for the next request
			}
			return nil, "", fmt.Errorf("%w: %w", ErrTransport, err)
		}
		l.mu.Lock()
		s.timeouts = 0
		l.mu.Unlock()
		rc, _ := rsp.GetString(iso8583.DEResponseCode)
		if rc == iso8583.RCSecurityViolation {
			l.invalidate(s)
			if attempt == 0 {
				l.log.Info("security violation answered; signing on again", "stan", stan)
				continue
			}
		}
		return rsp, rc, nil
	}
}

// failed reports whether err leaves s unusable: anything but a timeout,
// or maxTimeouts timeouts in a row.
func (l *Link) failed(s *session, err error) bool {
	if errors.Is(err, iso8583.ErrPendingSTAN) {
		return false // nothing was sent
	}
	if !errors.Is(err, iso8583.ErrTimeout) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s.timeouts++
	return s.timeouts >= maxTimeouts
}

// Echo sends an echo test 0800/301 under the working key (§2.1).
func (l *Link) Echo(ctx context.Context) error {
	stan, err := l.nextSTAN()
	if err != nil {
		return err
	}
	_, rc, err := l.roundTrip(ctx, stan, func(*session) (*moov.Message, error) {
		return iso8583.Marshal(&iso8583.NetworkManagement{MTI: iso8583.MTINetworkRequest, Transmission: l.de7(),
			STAN: stan, TerminalID: l.cfg.TerminalID, NetworkCode: iso8583.NMIEcho})
	})
	if err != nil {
		return err
	}
	if rc != iso8583.RCApproved {
		return &DeclineError{Op: "echo", MTI: iso8583.MTINetworkResponse, Code: rc}
	}
	return nil
}
