package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/valuechip/valuechip/host/crosscheck"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/provision"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/validity"
	"github.com/valuechip/valuechip/host/wallet"
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
	// ValidityMode selects the validity lists of seed 002 checked before
	// any database read (docs/validity.md §4): "both", "cards",
	// "terminals"; "" or "off" for none (the registry lookups decide).
	ValidityMode string
	// ValidityRefresh is the lists' periodic refresh (0:
	// validity.DefaultInterval): a change made by another process
	// (valuechip hotlist, terminal register) takes effect within it.
	ValidityRefresh time.Duration

	// The HTTP side (docs/server.md §8), on the same database and key ring.

	// HTTPToken, when set, is the bearer token the operator routes demand
	// (the network wallet's purchases and reads, /v1/admin/): whoever
	// reaches them could otherwise spend any wallet. Provisioning has its
	// own per-registration tokens, and card log uploads carry records the
	// card's TC authenticates. Empty: no check (loopback only, enforced by
	// the CLI).
	HTTPToken string

	// PurseDigest is the digest of the purse load file the issuer trusts
	// (applet/purse.Module.Digest(); host/ does not import applet/, so the
	// caller passes it). Zero: no provisioning routes.
	PurseDigest [32]byte
	// ISDTestKey opens the chips' ISD with the public GlobalPlatform test
	// key instead of keys diversified from the key ring's card-manager
	// master: emulated development chips only (docs/provision.md §4).
	ISDTestKey bool
	// ExchangeTimeout bounds a provisioning device's answer (0: 30 s).
	ExchangeTimeout time.Duration
	// WalletLevels is the credit table (nil: wallet.DefaultLevels) and
	// WalletCurrency the wallets' currency ("": 978), docs/wallet.md §2.
	WalletLevels   wallet.Levels
	WalletCurrency string
}

// Service is the assembled money server: database, ledger, registry, key
// ring, load store, advice batcher and the ISO 8583 server, and on the same
// database and key ring the HTTP side (docs/server.md §8): provisioning,
// the second channel and the network wallet.
type Service struct {
	Server   *Server
	DB       *sqldb.DB
	Ledger   *ledger.SQLStore
	Registry *registry.Store
	Keyring  *keystore.Keyring
	Loads    *SQLLoads
	Validity *Validity // nil when ValidityMode is off
	// The HTTP side: Provision is nil without Options.PurseDigest.
	Provision  *provision.Server
	Crosscheck *crosscheck.Service
	Wallet     *wallet.Service

	advices      *LedgerAdvices
	httpRequests *prometheus.CounterVec
	httpToken    string
	log          *slog.Logger
}

// Open opens the database (migrating the ledger, registry, server,
// provisioning, cross-check and wallet tables), the key ring, and builds the
// server and its HTTP services.
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
	var val *Validity
	fail := func(err error) (*Service, error) {
		if val != nil {
			_ = val.Close()
		}
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
	if o.ValidityMode != "" && o.ValidityMode != "off" {
		mode, err := validity.ParseMode(o.ValidityMode)
		if err != nil {
			return fail(err)
		}
		if val, err = NewValidityLists(ctx, reg, mode, o.ValidityRefresh, log.With("component", "validity")); err != nil {
			return fail(fmt.Errorf("validity lists: %w", err))
		}
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
		Validity: val, Statuses: reg,
	})
	if err != nil {
		adv.Close()
		return fail(err)
	}
	s := &Service{Server: srv, DB: db, Ledger: led, Registry: reg, Keyring: kr, Loads: loads, Validity: val, advices: adv, log: log}
	if err := s.openHTTP(ctx, o); err != nil {
		adv.Close()
		if s.Provision != nil {
			s.Provision.Close()
		}
		return fail(err)
	}
	return s, nil
}

// Serve serves ISO 8583 on l and, when h is not nil, the HTTP side on h
// (Handler: /metrics, /healthz, provisioning, card log uploads, wallets),
// until ctx is cancelled; then both stop accepting, the requests in flight
// answer, the provisioning sessions still open are aborted, the advice
// batcher is flushed and Serve returns. Close the Service afterwards.
func (s *Service) Serve(ctx context.Context, l, h net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	herr := make(chan error, 1)
	stop := make(chan struct{})
	if h != nil {
		go func() {
			err := s.serveHTTP(h, stop)
			if err != nil {
				cancel() // the HTTP side failed: stop the ISO 8583 side too
			}
			herr <- err
		}()
	} else {
		herr <- nil
	}
	err := s.Server.Serve(ctx, l)
	close(stop)
	err = errors.Join(err, <-herr)
	s.advices.Close()
	s.log.Info("server stopped")
	return err
}

// Close aborts the provisioning sessions and flushes the batcher (if Serve
// did not) and closes the database.
func (s *Service) Close() error {
	if s.Provision != nil {
		s.Provision.Close()
	}
	s.advices.Close()
	if s.Validity != nil {
		_ = s.Validity.Close() // waits for the late card checks still running
	}
	return s.DB.Close()
}
