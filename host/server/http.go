package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/valuechip/valuechip/host/crosscheck"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/provision"
	"github.com/valuechip/valuechip/host/wallet"
	"github.com/valuechip/valuechip/internal/secretfile"
)

// HTTP routes of the money server (docs/server.md §8). The provisioning,
// upload and wallet paths belong to their packages; the server only mounts
// them on one mux next to its own.
const (
	PathMetrics = "/metrics"
	PathHealth  = "/healthz"
	// PathRefresh makes the server re-read its validity lists now: what an
	// operator tool that changed the registry in the database calls
	// ("refreshed periodically and on change", seed 002).
	PathRefresh = "/v1/admin/refresh"
)

// httpServices builds the HTTP side of the service on the same database
// and key ring as the ISO 8583 side: provisioning (when o.PurseDigest is
// set), the second channel and the wallet.
func (s *Service) openHTTP(ctx context.Context, o Options) error {
	var err error
	if o.PurseDigest != ([32]byte{}) {
		cfg := provision.Config{DB: s.DB, Keys: s.Keyring, Digest: o.PurseDigest,
			// The ISO 8583 side reads cards through CachedRegistry, which
			// caches no miss: a card issued here is accepted by the next
			// 0100/0200 (docs/server.md §8).
			Registry:        provision.CardRegistry{Store: s.Registry},
			ExchangeTimeout: o.ExchangeTimeout, Logger: s.log.With("component", "provision")}
		if o.ISDTestKey {
			s.log.Warn("provisioning opens the chips' ISD with the public GlobalPlatform test key: development chips only")
			cfg.ISDKeys = hostgp.TestKeys()
		}
		if s.Provision, err = provision.New(ctx, cfg); err != nil {
			return fmt.Errorf("provisioning: %w", err)
		}
	}
	if s.Crosscheck, err = crosscheck.New(ctx, s.DB, s.Keyring, crosscheck.LedgerReports{Ledger: s.Ledger}); err != nil {
		return fmt.Errorf("second channel: %w", err)
	}
	if s.Wallet, err = wallet.New(ctx, s.DB, s.Ledger, wallet.Options{Levels: o.WalletLevels, Currency: o.WalletCurrency}); err != nil {
		return fmt.Errorf("wallet: %w", err)
	}
	s.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "valuechip_server_http_requests_total",
		Help: "HTTP requests answered, by route (provision, cards, wallets, healthz, metrics, other) and status code.",
	}, []string{"route", "code"})
	s.Server.Metrics().Registry.MustRegister(s.httpRequests)
	s.httpToken = o.HTTPToken
	return nil
}

// operator guards the operator routes with the bearer token of
// Options.HTTPToken (RFC 6750 §2.1), compared in constant time; without a
// token configured it lets everything through.
func (s *Service) operator(h http.Handler) http.Handler {
	if s.httpToken == "" {
		return h
	}
	want := []byte("Bearer " + s.httpToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="valuechip"`)
			http.Error(w, "unauthorized: this route needs the operator token (Authorization: Bearer …)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Handler is the money server's HTTP side on one mux: /metrics, /healthz,
// provisioning (/v1/register, /v1/session/), the second channel
// (/v1/cards/) and the wallet (/v1/wallets/).
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathMetrics, s.Server.Metrics().Handler())
	mux.HandleFunc(PathHealth, s.health)
	mux.Handle(PathRefresh, s.operator(http.HandlerFunc(s.refresh)))
	if s.Provision != nil {
		h := s.Provision.Handler()
		mux.Handle(provision.PathRegister, h)
		mux.Handle(provision.PathSession, h)
	}
	mux.Handle("/v1/cards/", crosscheck.Handler(s.Crosscheck, s.log.With("component", "crosscheck")))
	mux.Handle("/v1/wallets/", s.operator(wallet.Handler(s.Wallet, s.log.With("component", "wallet"))))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(sw, r)
		if s.httpRequests != nil {
			s.httpRequests.WithLabelValues(route(r.URL.Path), strconv.Itoa(sw.code)).Inc()
		}
	})
}

// route is the metric label of a path: a fixed set, so a client cannot
// grow the label space.
func route(p string) string {
	switch {
	case p == provision.PathRegister || strings.HasPrefix(p, provision.PathSession):
		return "provision"
	case strings.HasPrefix(p, "/v1/cards/"):
		return "cards"
	case strings.HasPrefix(p, "/v1/wallets/"):
		return "wallets"
	case p == PathHealth:
		return "healthz"
	case p == PathMetrics:
		return "metrics"
	case p == PathRefresh:
		return "refresh"
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// health answers 200 "ok" when the database answers a ping within 2 s,
// 503 otherwise: what a load balancer or an orchestrator probes.
func (s *Service) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.DB.SQL().PingContext(ctx); err != nil {
		s.log.Warn("health check: database unreachable", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "database unreachable")
		return
	}
	fmt.Fprintln(w, "ok")
}

// refresh applies the registry's changes to the validity lists before it
// answers 204, so a tool that registered a terminal or hot-listed a card
// knows the server acts on it from now on. Lookups are never blocked
// meanwhile. Like the wallet routes it is unauthenticated: keep --http on
// loopback or behind an authenticating proxy (docs/server.md §8).
func (s *Service) refresh(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if s.Validity != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		if err := s.Validity.Lists().Refresh(ctx); err != nil {
			s.log.Warn("validity lists: refresh on request failed", "err", err)
			http.Error(w, "refresh failed", http.StatusServiceUnavailable)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// NotifyRefresh asks the server whose HTTP side is at baseURL
// ("http://HOST:PORT") to refresh its validity lists now (PathRefresh),
// with the operator token when the server demands one.
func NotifyRefresh(ctx context.Context, baseURL, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(baseURL, "/")+PathRefresh, nil)
	if err != nil {
		return fmt.Errorf("server: notify %s: %w", baseURL, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rsp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("server: notify %s: %w", baseURL, err)
	}
	defer rsp.Body.Close()
	if rsp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("server: notify %s: HTTP %s", baseURL, rsp.Status)
	}
	return nil
}

// serveHTTP runs the HTTP side on l until stop is closed, then shuts it
// down: requests in flight finish (at most 10 s), then every provisioning
// session still waiting for its device is aborted.
func (s *Service) serveHTTP(l net.Listener, stop <-chan struct{}) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	var err error
	select {
	case err = <-errc:
	case <-stop:
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = hs.Shutdown(sctx)
		cancel()
		if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}
	if s.Provision != nil {
		s.Provision.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: %w", err)
	}
	return nil
}

// EnvHTTPToken names the environment variable holding the operator token
// when no token file is given; the registry commands' --notify reads it too.
const EnvHTTPToken = "VALUECHIP_HTTP_TOKEN"

// LoadHTTPToken reads the operator token from file (trimmed; like a KEK file
// it must not be readable by group or others) or, without a file, from
// $VALUECHIP_HTTP_TOKEN; "" when neither is set.
func LoadHTTPToken(file string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv(EnvHTTPToken)), nil
	}
	b, err := secretfile.Read(file, 0)
	if err != nil {
		return "", fmt.Errorf("server: HTTP token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("server: HTTP token in %s is %d characters: want at least 16 (e.g. head -c 24 /dev/urandom | base64)", file, len(tok))
	}
	return tok, nil
}
