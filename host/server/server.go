package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/valuechip/valuechip/host/iso8583"
)

// Defaults of Config.
const (
	DefaultMaxFrame       = 8192 // docs/iso8583.md §8: the server SHOULD use 8192
	DefaultMaxConns       = 1024
	DefaultMaxInFlight    = 64
	DefaultIdleTimeout    = 5 * time.Minute
	DefaultWriteTimeout   = 10 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultFunding        = "default"
	DefaultIssuer         = "issuer"
)

// Config configures a Server. Registry, Keys, Ledger, Advices and Loads are
// required.
type Config struct {
	Registry Registry
	Keys     Keys
	Ledger   Ledger
	Advices  Advices
	Loads    Loads

	// Funding names the funding account loads are paid from
	// (ledger kind funding); DefaultFunding when empty.
	Funding string
	// Logger receives the operational log; slog.Default() when nil. Keys
	// and MACs are never logged (KCVs and card IDs are).
	Logger *slog.Logger
	// Metrics is where the server's metrics are registered; a fresh
	// registry when nil (Server.Metrics returns it).
	Metrics *Metrics

	MaxFrame       int           // largest accepted frame, DefaultMaxFrame when 0
	MaxConns       int           // concurrent connections, DefaultMaxConns when 0
	MaxInFlight    int           // concurrent requests per connection, DefaultMaxInFlight when 0
	IdleTimeout    time.Duration // a connection with no frame for this long is closed
	WriteTimeout   time.Duration // per response write
	RequestTimeout time.Duration // per request handling

	// Validity, when set, checks every request against the in-memory card
	// hotlist and terminal whitelist before any database read (seed 002,
	// docs/validity.md; NewValidityLists). Nil: the registry lookups alone
	// decide (through CachedRegistry), as before the lists.
	Validity *Validity
	// Statuses, when set, lets SetCardStatus and SetTerminalStatus change a
	// status from this process with immediate effect (registry.Store).
	Statuses StatusStore

	// Now is the clock (time.Now when nil); Rand draws authorisation
	// references (crypto/rand when nil).
	Now  func() time.Time
	Rand io.Reader
}

// Server is the money server: an ISO 8583 TCP service (docs/iso8583.md,
// docs/server.md).
type Server struct {
	cfg Config
	log *slog.Logger
	m   *Metrics

	accounts sync.Map // ensured ledger account IDs
	vm       *validityMetrics
	flags    flagRing

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup // connections, their requests and the late card checks they follow
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil || cfg.Keys == nil || cfg.Ledger == nil || cfg.Advices == nil || cfg.Loads == nil {
		return nil, errors.New("server: Registry, Keys, Ledger, Advices and Loads are required")
	}
	if cfg.Funding == "" {
		cfg.Funding = DefaultFunding
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.MaxFrame <= 0 || cfg.MaxFrame > iso8583.MaxFrame {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Validity != nil {
		registerListGauges(cfg.Metrics, cfg.Validity)
	}
	return &Server{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, vm: newValidityMetrics(cfg.Metrics), conns: map[*conn]struct{}{}}, nil
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.m }

// Serve accepts connections on l until ctx is cancelled, then stops
// accepting, lets the requests in flight finish and their responses go out,
// closes every connection and returns nil. It returns earlier only if
// Accept fails for another reason. Serve closes l.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { _ = l.Close() })
	defer stop()
	sem := make(chan struct{}, s.cfg.MaxConns)
	var err error
	for {
		var c net.Conn
		c, err = l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err = nil
				break
			}
			if errors.Is(err, net.ErrClosed) {
				break
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does, rather than stop serving.
			s.log.Error("accept", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			// Bounded: refuse rather than queue, so a flood cannot
			// exhaust file descriptors or memory.
			s.m.refused.Inc()
			s.log.Warn("connection refused: limit reached", "remote", c.RemoteAddr().String(), "limit", s.cfg.MaxConns)
			_ = c.Close()
			continue
		}
		cn := s.newConn(c)
		s.wg.Add(1)
		go func() {
			defer func() { <-sem }()
			defer s.wg.Done()
			cn.serve(ctx)
		}()
	}
	_ = l.Close()
	// Stop the readers: no new requests; in-flight ones finish and answer.
	s.mu.Lock()
	for c := range s.conns {
		c.stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if err != nil {
		return fmt.Errorf("server: accept: %w", err)
	}
	return nil
}

type conn struct {
	s      *Server
	nc     net.Conn
	log    *slog.Logger
	wmu    sync.Mutex
	broken bool // a write failed: drop further responses

	dmu      sync.Mutex // orders the read deadlines of serve and stop
	stopping bool
}

// stop makes the reader return now; requests already read still answer.
func (c *conn) stop() {
	c.dmu.Lock()
	c.stopping = true
	_ = c.nc.SetReadDeadline(time.Now())
	c.dmu.Unlock()
}

// armRead sets the idle deadline for the next frame, false once stopping.
func (c *conn) armRead() bool {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	if c.stopping {
		return false
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.IdleTimeout))
	return true
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, log: s.log.With("remote", nc.RemoteAddr().String())}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.m.conns.Inc()
	return c
}

// serve reads frames and hands each to its own goroutine (at most
// MaxInFlight at once): a terminal may have several requests pending,
// matched by STAN (docs/iso8583.md §2). Responses are written whole under a
// mutex so frames never interleave.
func (c *conn) serve(ctx context.Context) {
	defer func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.s.m.conns.Dec()
		_ = c.nc.Close()
	}()
	c.log.Debug("connection opened")
	var reqs sync.WaitGroup
	defer reqs.Wait()
	inflight := make(chan struct{}, c.s.cfg.MaxInFlight)
	for {
		if ctx.Err() != nil || !c.armRead() {
			return
		}
		raw, err := iso8583.ReadMessage(c.nc, c.s.cfg.MaxFrame)
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				c.log.Debug("connection closed by peer")
			case errors.Is(err, iso8583.ErrOversize), errors.Is(err, iso8583.ErrMalformed):
				// The stream is out of step: close (docs/iso8583.md §8).
				c.s.m.frameErrors.Inc()
				c.log.Warn("bad frame, closing the connection", "err", err)
			case ctx.Err() != nil:
			default:
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.log.Debug("idle connection closed")
				} else {
					c.log.Debug("read failed", "err", err)
				}
			}
			return
		}
		inflight <- struct{}{}
		reqs.Add(1)
		go func() {
			defer func() { <-inflight; reqs.Done() }()
			// Requests are not cancelled by shutdown: they finish and
			// answer (graceful stop); RequestTimeout bounds them.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.cfg.RequestTimeout)
			defer cancel()
			out, hangUp := c.s.Handle(rctx, raw)
			if hangUp {
				c.log.Info("unreadable message, closing the connection")
				_ = c.nc.Close()
				return
			}
			if out != nil {
				c.write(out)
			}
		}()
	}
}

func (c *conn) write(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.broken {
		return
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	if err := iso8583.WriteMessage(c.nc, b); err != nil {
		c.broken = true
		c.log.Debug("write failed", "err", err)
		_ = c.nc.Close()
	}
}
