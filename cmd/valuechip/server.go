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

	"github.com/valuechip/valuechip/applet/purse"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/validity"
	"github.com/valuechip/valuechip/internal/atomicfile"
)

func newServerCmd() *cobra.Command {
	var (
		listen, httpAddr, metrics, readyFile, logFormat, logLevel, levels string
		tokenFile                                                         string
		o                                                                 server.Options
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the money server: ISO 8583 host, ledger, registry, provisioning, card logs, wallets (docs/server.md)",
		Long: `server runs the money server of docs/server.md as one process on one database
and key ring:

  --listen  ISO 8583 over TCP (docs/iso8583.md): terminals sign on, load cards
            online, send their offline debit advices and reconcile.
  --http    HTTP (docs/server.md §8): /metrics (Prometheus), /healthz,
            provisioning (/v1/register, /v1/session/: docs/provision.md),
            card log uploads (/v1/cards/: docs/crosscheck.md) and the network
            wallet (/v1/wallets/: docs/wallet.md). "" turns HTTP off.
            --metrics is the older name of the same flag.

The database (--db) holds the ledger, the registry of terminals and cards,
the server's load authorisations, the provisioning records, the uploaded
card logs and the wallets: a SQLite file by default, or postgres://… A card
issued by provisioning is in the registry at once, so the ISO 8583 side
accepts its first load.

Once listening, a line "ready: ..." goes to stdout and --ready-file is
written with the ISO 8583 address. SIGINT or SIGTERM stops it gracefully: no
new connections, requests in flight answered, provisioning sessions aborted,
advice batch flushed, database closed.

Examples:
  valuechip keys init --dev-masters --kek-file kek.hex
  valuechip terminal register --id TERM0001 --merchant MERCHANT0000001 --out term.json
  valuechip server --db valuechip.db --kek-file kek.hex --http 127.0.0.1:8080 --ready-file /tmp/ready
  valuechip report --db valuechip.db`,
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
			// --metrics predates --http and names the same listener now.
			if cmd.Flags().Changed("metrics") {
				if cmd.Flags().Changed("http") && metrics != httpAddr {
					return usagef("--metrics %q and --http %q: --metrics is the older name of --http, give one", metrics, httpAddr)
				}
				httpAddr = metrics
			}
			if o.ValidityMode != "off" {
				if _, err := validity.ParseMode(o.ValidityMode); err != nil {
					return usagef("--validity-mode %q: want both, cards, terminals or off (docs/validity.md §4)", o.ValidityMode)
				}
			}
			if o.ValidityRefresh <= 0 {
				return usagef("--validity-refresh %v: want more than 0", o.ValidityRefresh)
			}
			if o.WalletLevels, err = parseLevels(levels); err != nil {
				return usagef("--wallet-levels %q: want LEVEL=LIMIT,... with whole numbers, e.g. 0=0,1=5000", levels)
			}
			if o.HTTPToken, err = server.LoadHTTPToken(tokenFile); err != nil {
				return usageError{err}
			}
			if httpAddr != "" && o.HTTPToken == "" && !loopback(httpAddr) {
				return usagef("--http %q is not a loopback address: give --http-token-file (or $%s), or the wallet and admin routes are open to anyone who reaches it", httpAddr, server.EnvHTTPToken)
			}
			o.PurseDigest = purse.Module.Digest()
			if o.ISDTestKey {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: --isd-test-key: provisioning opens the chips' ISD with the public GlobalPlatform test key 404142…4F; development chips only")
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
			var hl net.Listener
			if httpAddr != "" {
				if hl, err = net.Listen("tcp", httpAddr); err != nil {
					_ = l.Close()
					return fmt.Errorf("http: listen on %s: %w", httpAddr, err)
				}
			}
			h := "off"
			if hl != nil {
				base := "http://" + hl.Addr().String()
				h = "metrics " + base + server.PathMetrics + ", http " + base
			}
			logger.Info("listening", "iso8583", l.Addr().String(), "http", h, "db", redactDSN(o.DB),
				"keyring", o.Keyring, "kek", fmt.Sprintf("KCV %X", svc.Keyring.KEKKCV()))
			// The file first, then the line: whoever saw either may connect.
			if readyFile != "" {
				if err := atomicfile.Write(readyFile, []byte(l.Addr().String()+"\n")); err != nil {
					_ = l.Close()
					if hl != nil {
						_ = hl.Close()
					}
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ready: listening on %s (%s)\n", l.Addr(), h)
			return svc.Serve(ctx, l, hl)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8583", "ISO 8583 address HOST:PORT")
	f.StringVar(&httpAddr, "http", "127.0.0.1:8080", `HTTP address HOST:PORT: /metrics, /healthz, provisioning, card log uploads, wallets ("" for none)`)
	f.StringVar(&metrics, "metrics", "", "older name of --http")
	f.StringVar(&tokenFile, "http-token-file", "", "operator bearer token for /v1/wallets/ and /v1/admin/ (default $"+server.EnvHTTPToken+"; required when --http is not on loopback)")
	f.StringVar(&o.DB, "db", defaultDB, "database: postgres://… or a SQLite file")
	f.StringVar(&o.Keyring, "keyring", "keyring.json", "key ring file (valuechip keys init)")
	f.StringVar(&o.KEKFile, "kek-file", "", "key-encryption key file (default $"+keystore.EnvKEK+")")
	f.DurationVar(&o.SeedTTL, "seed-ttl", server.DefaultSeedTTL, "validity of the transaction-number seed handed out at sign-on (at most 24h)")
	f.StringVar(&o.Funding, "funding", server.DefaultFunding, "funding account loads are paid from")
	f.IntVar(&o.MaxConns, "max-conns", server.DefaultMaxConns, "maximum concurrent terminal connections")
	f.DurationVar(&o.RegistryCache, "registry-cache", 2*time.Second, "how long terminal, key and card lookups are cached (a hot-listing takes effect within it; 0 disables)")
	f.StringVar(&o.ValidityMode, "validity-mode", "both", "validity lists held in memory and checked before any database read (docs/validity.md §4): both, cards, terminals or off")
	f.DurationVar(&o.ValidityRefresh, "validity-refresh", time.Second, "periodic refresh of the validity lists: a hot-listing or a terminal registered by another process takes effect within it (changes made through this server at once)")
	f.BoolVar(&o.ISDTestKey, "isd-test-key", false, "provisioning: open the chips' ISD with the public GP test key (emulated development chips)")
	f.DurationVar(&o.ExchangeTimeout, "exchange-timeout", 30*time.Second, "provisioning: abort a session when the device does not answer a command within this time")
	f.StringVar(&levels, "wallet-levels", "", "wallet credit table LEVEL=LIMIT,... in minor units (default: docs/wallet.md §2)")
	f.StringVar(&o.WalletCurrency, "wallet-currency", "978", "wallet currency, ISO 4217 numeric")
	f.StringVar(&readyFile, "ready-file", "", "write the ISO 8583 listening address to this file once ready")
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
		Short: "Print the settlement report: balances, merchants owed, loads in progress, imbalance, discrepancies, wallets",
		Long: `report reads the ledger (docs/ledger.md §7) and prints balances by account
kind (liabilities — purse shadows, merchant payables — are negative), what
each merchant is owed, the loads still in progress (authorised, neither
completed nor reversed: docs/server.md §3) and the imbalance, which must be
zero; otherwise report exits with status 1.

Then the discrepancies between the card logs holders uploaded and what the
terminals reported (docs/crosscheck.md §3: overcharges, unreported debits,
...), recomputed now, and the network wallets' totals per currency
(docs/wallet.md). Discrepancies do not change the exit status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			sdb, err := sqldb.Open(ctx, db)
			if err != nil {
				return err
			}
			defer sdb.Close()
			r, err := server.BuildReport(ctx, sdb)
			if err != nil {
				return err
			}
			return server.WriteFullReport(cmd.OutOrStdout(), r, asJSON)
		},
	}
	cmd.Flags().StringVar(&db, "db", defaultDB, "database: postgres://… or a SQLite file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// loopback reports whether addr (HOST:PORT) listens on a loopback address
// only: "localhost" or a loopback IP; an empty host (all interfaces) is not.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
