package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/internal/atomicfile"
)

func newServerCmd() *cobra.Command {
	var (
		listen, metrics, readyFile, logFormat, logLevel string
		o                                               server.Options
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the money server: ISO 8583 host, ledger, registry (docs/server.md)",
		Long: `server runs the money server of docs/server.md: terminals sign on, load cards
online, send their offline debit advices and reconcile over ISO 8583
(docs/iso8583.md) on --listen; Prometheus metrics are served on --metrics at
/metrics. The database (--db) holds the ledger, the registry of terminals and
cards and the server's load authorisations: a SQLite file by default, or
postgres://…

Once listening, a line "ready: ..." goes to stdout and --ready-file is
written. SIGINT or SIGTERM stops it gracefully: no new connections, requests
in flight answered, advice batch flushed, database closed.

Examples:
  valuechip keys init --dev-masters --kek-file kek.hex
  valuechip terminal register --id TERM0001 --merchant MERCHANT0000001 --out term.json
  valuechip server --db valuechip.db --kek-file kek.hex --ready-file /tmp/ready
  valuechip server report --db valuechip.db`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd, logFormat, logLevel)
			if err != nil {
				return err
			}
			o.Logger = logger
			if o.SeedTTL <= 0 || o.SeedTTL > 24*time.Hour {
				return usagef("--seed-ttl %v: want more than 0 and at most 24h (docs/iso8583.md §4)", o.SeedTTL)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			svc, err := server.Open(ctx, o)
			if err != nil {
				return err
			}
			defer svc.Close()
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			var ml net.Listener
			if metrics != "" {
				if ml, err = net.Listen("tcp", metrics); err != nil {
					_ = l.Close()
					return fmt.Errorf("metrics: listen on %s: %w", metrics, err)
				}
			}
			m := "off"
			if ml != nil {
				m = "http://" + ml.Addr().String() + "/metrics"
			}
			logger.Info("listening", "iso8583", l.Addr().String(), "metrics", m, "db", redactDSN(o.DB),
				"keyring", o.Keyring, "kek", fmt.Sprintf("KCV %X", svc.Keyring.KEKKCV()))
			fmt.Fprintf(cmd.OutOrStdout(), "ready: listening on %s (metrics %s)\n", l.Addr(), m)
			if readyFile != "" {
				if err := atomicfile.Write(readyFile, []byte(l.Addr().String()+"\n")); err != nil {
					_ = l.Close()
					return err
				}
			}
			return svc.Serve(ctx, l, ml)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8583", "ISO 8583 address HOST:PORT")
	f.StringVar(&metrics, "metrics", "127.0.0.1:9583", `Prometheus address HOST:PORT for /metrics ("" for none)`)
	f.StringVar(&o.DB, "db", defaultDB, "database: postgres://… or a SQLite file")
	f.StringVar(&o.Keyring, "keyring", "keyring.json", "key ring file (valuechip keys init)")
	f.StringVar(&o.KEKFile, "kek-file", "", "key-encryption key file (default $"+keystore.EnvKEK+")")
	f.DurationVar(&o.SeedTTL, "seed-ttl", server.DefaultSeedTTL, "validity of the transaction-number seed handed out at sign-on (at most 24h)")
	f.StringVar(&o.Funding, "funding", server.DefaultFunding, "funding account loads are paid from")
	f.IntVar(&o.MaxConns, "max-conns", server.DefaultMaxConns, "maximum concurrent terminal connections")
	f.DurationVar(&o.RegistryCache, "registry-cache", 2*time.Second, "how long terminal, key and card lookups are cached (a hot-listing takes effect within it; 0 disables)")
	f.StringVar(&readyFile, "ready-file", "", "write the listening address to this file once ready")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.AddCommand(newReportCmd())
	return cmd
}

func newLogger(cmd *cobra.Command, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

// redactDSN drops a password from a postgres:// DSN for the log.
func redactDSN(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > i {
			cred := dsn[i+3 : at]
			if c := strings.Index(cred, ":"); c >= 0 {
				return dsn[:i+3] + cred[:c] + ":***" + dsn[at:]
			}
		}
	}
	return dsn
}

// newReportCmd is `valuechip server report` (and, when the root registers
// it, `valuechip report`).
func newReportCmd() *cobra.Command {
	var (
		db     string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Print the settlement report: balances by kind, merchants owed, loads in progress, imbalance",
		Long: `report reads the ledger (docs/ledger.md §7) and prints balances by account
kind (liabilities — purse shadows, merchant payables — are negative), what
each merchant is owed, the loads still in progress (authorised, neither
completed nor reversed: docs/server.md §3) and the imbalance, which must be
zero; otherwise report exits with status 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			st, err := ledger.Open(ctx, db)
			if err != nil {
				return err
			}
			defer st.Close()
			r, err := st.Report(ctx)
			if err != nil {
				return err
			}
			return server.WriteReport(cmd.OutOrStdout(), r, asJSON)
		},
	}
	cmd.Flags().StringVar(&db, "db", defaultDB, "database: postgres://… or a SQLite file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
