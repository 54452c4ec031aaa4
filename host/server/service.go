package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
)

// Options configure a Service, the money server as `valuechip server` runs
// it.
type Options struct {
	DB       string // DSN: PATH, sqlite:PATH, file:PATH or postgres://…
	Keyring  string // keyring file (host/keystore)
	KEKFile  string // KEK file; "" reads $VALUECHIP_KEK
	SeedTTL  time.Duration
	Funding  string
	MaxConns int
	// RegistryCache is how long terminal, key, seed and card lookups are
	// cached (0: not cached); a hot-listing takes effect within it.
	RegistryCache time.Duration
	MaxBatch      int // advices per group commit, 0 for 256
	Logger        *slog.Logger
}

// Service is the assembled money server: database, ledger, registry, key
// ring, load store, advice batcher and the ISO 8583 server.
type Service struct {
	Server   *Server
	DB       *sqldb.DB
	Ledger   *ledger.SQLStore
	Registry *registry.Store
	Keyring  *keystore.Keyring
	Loads    *SQLLoads
	advices  *LedgerAdvices
	log      *slog.Logger
}

// Open opens the database (migrating the ledger, registry and server
// tables), the key ring, and builds the server.
func Open(ctx context.Context, o Options) (*Service, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	kek, err := keystore.LoadKEK(o.KEKFile)
	if err != nil {
		return nil, err
	}
	kr, err := keystore.OpenKeyring(o.Keyring, kek)
	if err != nil {
		return nil, err
	}
	if kr.Development() {
		log.Warn(keystore.DevWarning)
	}
	db, err := sqldb.Open(ctx, o.DB)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Service, error) {
		_ = db.Close()
		return nil, err
	}
	led, err := ledger.New(ctx, db)
	if err != nil {
		return fail(err)
	}
	reg, err := registry.New(ctx, db, kr)
	if err != nil {
		return fail(err)
	}
	loads, err := NewSQLLoads(ctx, db)
	if err != nil {
		return fail(err)
	}
	m := NewMetrics()
	m.GaugeFunc("valuechip_server_loads_in_progress", "Loads authorised (S2 issued) whose completion or reversal has not arrived.",
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			n, _, err := loads.InProgress(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		})
	adv := NewLedgerAdvices(led, o.MaxBatch, m.ObserveAdviceBatch)
	srv, err := New(Config{
		Registry: NewCachedRegistry(RegistryStore{Store: reg, SeedTTL: o.SeedTTL}, o.RegistryCache),
		Keys:     kr, Ledger: led, Advices: adv, Loads: loads,
		Funding: o.Funding, Logger: log, Metrics: m, MaxConns: o.MaxConns,
	})
	if err != nil {
		adv.Close()
		return fail(err)
	}
	return &Service{Server: srv, DB: db, Ledger: led, Registry: reg, Keyring: kr, Loads: loads, advices: adv, log: log}, nil
}

// Serve serves ISO 8583 on l and, when metrics is not nil, Prometheus
// /metrics on it, until ctx is cancelled; then it stops accepting, lets the
// requests in flight answer, flushes the advice batcher and returns.
// Close the Service afterwards.
func (s *Service) Serve(ctx context.Context, l, metrics net.Listener) error {
	var hs *http.Server
	herr := make(chan error, 1)
	if metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.Server.Metrics().Handler())
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { herr <- hs.Serve(metrics) }()
	}
	err := s.Server.Serve(ctx, l)
	s.advices.Close()
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
		if herr := <-herr; herr != nil && !errors.Is(herr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("metrics: %w", herr))
		}
	}
	s.log.Info("server stopped")
	return err
}

// Close flushes the batcher (if Serve did not) and closes the database.
func (s *Service) Close() error {
	s.advices.Close()
	return s.DB.Close()
}
