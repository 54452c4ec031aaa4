package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/applet/purse"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/provision"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/atomicfile"
	"github.com/valuechip/valuechip/reader/connect"
)

func newProvisionCmd() *cobra.Command {
	var (
		server, readerName, holder, pin, traceFile string
		asJSON                                     bool
	)
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Have the money server install the purse on this card, relaying over HTTP (docs/provision.md)",
		Long: `Register the card in the reader with the money server's provisioning service
and relay the remote installation: the server opens an SCP03 secure channel
to the card's issuer security domain through this device, installs the purse,
personalises it with its CardID and per-card keys under C-DECRYPTION, and
records it as issued. This device only forwards APDUs: it never sees a key.

The assigned CardID (and the PIN, when the server chose it) is printed at
the end. A failed installation leaves the card installable: run the command
again.

'provision serve' runs the server side (for development and tests; the money
server embeds the same service).`,
		Example: `  valuechip provision --server http://127.0.0.1:8480 --holder alice --pin 1234
  valuechip provision --server http://127.0.0.1:8480 --holder alice --reader "Virtual PCD 00 00" --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || holder == "" {
				return usagef("give --server URL and --holder ACCOUNT")
			}
			if pin == "" {
				pin = os.Getenv("VALUECHIP_PIN")
			}
			d := &provision.Device{Server: server, Holder: holder, PIN: pin}
			if traceFile != "" {
				f, err := os.OpenFile(traceFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				d.Trace = f
			}
			ctx := cmd.Context()
			conn, err := connect.Open(ctx, readerName, connect.Options{})
			if err != nil {
				return err
			}
			defer conn.Close()
			res, err := d.Provision(ctx, connect.Stack(conn, connect.StackOptions{}))
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, map[string]any{"card_id": hexs(res.CardID[:]), "terminal_id": res.TerminalID,
					"registration": res.Registration, "exchanges": res.Exchanges, "pin": res.PIN})
			}
			fmt.Fprintf(out, "card issued: CardID %X, terminal ID %s (%d exchanges)\n", res.CardID[:], res.TerminalID, res.Exchanges)
			if res.PIN != "" {
				fmt.Fprintf(out, "PIN chosen by the issuer: %s (note it now; it is not shown again)\n", res.PIN)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", os.Getenv("VALUECHIP_PROVISION_SERVER"), "provisioning server URL, http(s)://HOST:PORT (default $VALUECHIP_PROVISION_SERVER)")
	f.StringVarP(&readerName, "reader", "r", "", "reader: PC/SC index or name fragment, emu:PATH, tcp:HOST:PORT (default $VALUECHIP_READER, else the reader holding a card)")
	f.StringVar(&holder, "holder", "", "the holder's account to register the card for (required)")
	f.StringVar(&pin, "pin", "", "cardholder PIN to personalise, 4-12 digits (default $VALUECHIP_PIN; none: the server chooses one)")
	f.StringVar(&traceFile, "trace-file", "", "write every APDU the device relays to this file (the relay's view: no keys in it)")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(newProvisionServe())
	return cmd
}

func newProvisionServe() *cobra.Command {
	var (
		listen, db, keyringPath, kekFile, readyFile string
		isdTestKey                                  bool
		exchangeTimeout                             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the provisioning server (registration and remote installation over HTTP)",
		Long: `Serve POST /v1/register and POST /v1/session/{registration} (docs/provision.md).
The purse keys come from the keyring (valuechip keys init); each chip's ISD
keys are diversified from the keyring's card-manager master by the chip's KDD.
Issued cards are recorded in the registry of the same database (valuechip
hotlist and the money server see them).
--isd-test-key uses the public GlobalPlatform test key instead, for emulated
chips made with 'valuechip emulate --profile empty' (never for real value).`,
		Example: `  valuechip provision serve --listen 127.0.0.1:8480 --db valuechip.db --keyring keyring.json --kek-file kek.hex`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kek, err := keystore.LoadKEK(kekFile)
			if errors.Is(err, keystore.ErrNoKEK) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			ring, err := keystore.OpenKeyring(keyringPath, kek)
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			if ring.Development() {
				fmt.Fprintln(stderr, keystore.DevWarning)
			}
			ctx := cmd.Context()
			sdb, err := sqldb.Open(ctx, db)
			if err != nil {
				return err
			}
			defer sdb.Close()
			reg, err := registry.New(ctx, sdb, ring)
			if err != nil {
				return err
			}
			cfg := provision.Config{DB: sdb, Keys: ring, Digest: purse.Module.Digest(), ExchangeTimeout: exchangeTimeout,
				Registry: provision.CardRegistry{Store: reg}, Logger: slog.New(slog.NewTextHandler(stderr, nil))}
			if isdTestKey {
				fmt.Fprintln(stderr, "warning: --isd-test-key: the server opens the chips' ISD with the public GlobalPlatform test key 404142…4F; development chips only")
				cfg.ISDKeys = hostgp.TestKeys()
			}
			srv, err := provision.New(ctx, cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			return serveHTTP(ctx, cmd.OutOrStdout(), l, srv.Handler(), readyFile)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8480", "address to listen on")
	f.StringVar(&db, "db", defaultDB, "database: postgres://… or a SQLite file")
	f.StringVar(&keyringPath, "keyring", "keyring.json", "keyring file (valuechip keys init)")
	f.StringVar(&kekFile, "kek-file", "", "key-encryption key file (default $"+keystore.EnvKEK+")")
	f.StringVar(&readyFile, "ready-file", "", "write the listening address to this file once serving")
	f.BoolVar(&isdTestKey, "isd-test-key", false, "open the chips' ISD with the public GP test key (emulated development chips)")
	f.DurationVar(&exchangeTimeout, "exchange-timeout", 30*time.Second, "abort a session when the device does not answer a command within this time")
	return cmd
}

// serveHTTP serves h on l until ctx ends, then shuts down gracefully.
func serveHTTP(ctx context.Context, out io.Writer, l net.Listener, h http.Handler, readyFile string) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	fmt.Fprintf(out, "ready: provisioning on http://%s\n", l.Addr())
	if readyFile != "" {
		if err := atomicfile.Write(readyFile, []byte("http://"+l.Addr().String()+"\n")); err != nil {
			return err
		}
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
