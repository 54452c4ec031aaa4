package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/link"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
)

// defaultDB is the embedded default database: SQLite in this file of the
// current directory (docs/registry.md §6).
const defaultDB = "valuechip.db"

type terminalOptions struct {
	db string
}

func newTerminalCmd() *cobra.Command {
	o := &terminalOptions{}
	cmd := &cobra.Command{
		Use:   "terminal",
		Short: "Enrol payment terminals with the money server and manage them (docs/registry.md)",
		Long: `Enrol payment terminals in the money server's registry and manage them.

register gives the terminal a fresh terminal master key (TMK), stored in the
database sealed under the KEK, and writes the terminal's configuration file:
its IDs, the server address, the TMK and the K_DEBIT master of its software
SAM. That file holds keys: keep it secret and move it to the terminal only.

--db is "postgres://…" or a SQLite file ("sqlite:PATH", "file:PATH" or PATH);
the default is the embedded default database valuechip.db in the current
directory.`,
		Example: `  valuechip terminal register --id T0000001 --merchant M00000000000001 --server 127.0.0.1:8583 --out term.json --kek-file kek.hex
  valuechip terminal list --json
  valuechip terminal block T0000001 --reason "reported stolen"`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&o.db, "db", defaultDB, `database: postgres://… or a SQLite file`)
	withNotify(cmd)
	cmd.AddCommand(newTerminalRegister(o), newTerminalList(o),
		newTerminalStatus(o, "block", registry.Blocked), newTerminalStatus(o, "unblock", registry.Active))
	return cmd
}

// open opens the database and the registry over it; sealer may be nil for
// the commands that touch no key.
func (o *terminalOptions) open(ctx context.Context, sealer registry.Sealer) (*registry.Store, func(), error) {
	db, err := sqldb.Open(ctx, o.db)
	if err != nil {
		return nil, nil, err
	}
	reg, err := registry.New(ctx, db, sealer)
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return reg, func() { _ = db.Close() }, nil
}

func newTerminalRegister(o *terminalOptions) *cobra.Command {
	var id, merchant, server, out, keyringPath, kekFile string
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Enrol a terminal and write its configuration file (holds keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := registry.ValidTerminalID(id); err != nil {
				return usageError{err}
			}
			if err := registry.ValidMerchantID(merchant); err != nil {
				return usageError{err}
			}
			if _, _, err := net.SplitHostPort(server); err != nil || server == "" {
				return usagef("--server %q: want HOST:PORT", server)
			}
			if out == "" {
				return usagef("--out FILE is required: the terminal's configuration file")
			}
			if st, err := os.Stat(filepath.Dir(out)); err != nil || !st.IsDir() {
				return fmt.Errorf("--out %s: no such directory", out)
			}
			ctx := cmd.Context()
			kek, err := keystore.LoadKEK(kekFile)
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
			masters, err := ring.Masters(ctx)
			if err != nil {
				return err
			}
			reg, closeDB, err := o.open(ctx, ring)
			if err != nil {
				return err
			}
			defer closeDB()
			term, tmk, err := reg.RegisterTerminal(ctx, id, merchant)
			if err != nil {
				return err
			}
			// The terminal's file is host/link's Config: one format for the
			// writer and the reader. SaveConfig writes through a 0600
			// temporary file: the keys are never readable by others, not
			// even half-written.
			cfg := link.Config{TerminalID: term.ID, MerchantID: term.MerchantID, Server: server, TMK: tmk, SAM: masters.Debit}
			if err := link.SaveConfig(out, cfg); err != nil {
				return fmt.Errorf("terminal %s is registered but its file was not written: %w (block it and register another ID)", term.ID, err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "registered terminal %q merchant %q, TMK KCV %s\n", term.ID, term.MerchantID, term.TMKKCV)
			fmt.Fprintf(w, "wrote %s\n", out)
			fmt.Fprintf(stderr, "warning: %s holds the terminal master key and the K_DEBIT master key (SAM, %s): keep it secret and move it to the terminal only\n",
				out, masters.Debit)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "terminal ID: exactly 8 printable ASCII characters (DE 41)")
	f.StringVar(&merchant, "merchant", "", "merchant ID: exactly 15 printable ASCII characters (DE 42)")
	f.StringVar(&server, "server", "", "money server address HOST:PORT written into the terminal file")
	f.StringVar(&out, "out", "", "terminal configuration file to write (mode 0600)")
	f.StringVar(&keyringPath, "keyring", "keyring.json", "key ring file (valuechip keys init)")
	f.StringVar(&kekFile, "kek-file", "", "key-encryption key file (default $"+keystore.EnvKEK+")")
	return cmd
}

// terminalJSON is a terminal as `terminal list --json` prints it: no key,
// only the TMK's check value.
type terminalJSON struct {
	ID         string    `json:"terminal_id"`
	MerchantID string    `json:"merchant_id"`
	Status     string    `json:"status"`
	Reason     string    `json:"reason,omitempty"`
	TMKKCV     string    `json:"tmk_kcv"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

func newTerminalList(o *terminalOptions) *cobra.Command {
	return newRegistryList(o, "List the enrolled terminals (no keys, TMK check values only)", (*registry.Store).ListTerminals, printTerminals)
}

// newRegistryList is the list command of a registry table (terminals,
// cards): read every row, print a table or, with --json, JSON. It touches no
// key.
func newRegistryList[T any](o *terminalOptions, short string, list func(*registry.Store, context.Context) ([]T, error),
	print func(io.Writer, []T, bool) error) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			reg, closeDB, err := o.open(ctx, nil)
			if err != nil {
				return err
			}
			defer closeDB()
			rows, err := list(reg, ctx)
			if err != nil {
				return err
			}
			return print(cmd.OutOrStdout(), rows, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printTerminals(w io.Writer, terms []registry.Terminal, asJSON bool) error {
	if asJSON {
		out := make([]terminalJSON, 0, len(terms))
		for _, t := range terms {
			out = append(out, terminalJSON{t.ID, t.MerchantID, string(t.Status), t.Reason, t.TMKKCV, t.CreatedAt, t.UpdatedAt})
		}
		return writeJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TERMINAL\tMERCHANT\tSTATUS\tTMK KCV\tCREATED\tREASON")
	for _, t := range terms {
		// IDs are quoted: DE 41/42 may hold spaces.
		fmt.Fprintf(tw, "%q\t%q\t%s\t%s\t%s\t%s\n", t.ID, t.MerchantID, t.Status, t.TMKKCV, t.CreatedAt.Format(time.RFC3339), t.Reason)
	}
	return tw.Flush()
}

func newTerminalStatus(o *terminalOptions, use string, st registry.Status) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   use + " TERMINAL-ID",
		Short: map[registry.Status]string{registry.Blocked: "Block a terminal: it may no longer sign on or transact", registry.Active: "Unblock a terminal"}[st],
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := registry.ValidTerminalID(args[0]); err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			reg, closeDB, err := o.open(ctx, nil)
			if err != nil {
				return err
			}
			defer closeDB()
			if err := reg.SetTerminalStatus(ctx, args[0], st, reason); err != nil {
				if errors.Is(err, registry.ErrNotFound) {
					return fmt.Errorf("terminal %q is not registered: %w", args[0], err)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "terminal %q %s\n", args[0], st)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", use+"ed by operator", "reason recorded with the change")
	return cmd
}
