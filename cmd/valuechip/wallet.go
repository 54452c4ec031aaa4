package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/wallet"
)

type walletOptions struct {
	db, currency, levels string
	asJSON               bool
}

func newWalletCmd() *cobra.Command {
	o := &walletOptions{}
	cmd := &cobra.Command{
		Use:   "wallet",
		Short: "Network wallets with a credit level: open, top up, pay online (docs/wallet.md)",
		Long: `Manage the money server's network wallets (docs/wallet.md): one per holder,
kept in the ledger, topped up from a funding source and spent by online
purchases, which may overdraw it down to the credit limit of the holder's
level. A refused purchase prints its ISO 8583 response code (51: the
balance would go below the limit) and exits with status 1.

Amounts are integers in minor units (cents for EUR). Purchases and top-ups
are idempotent by --key: the same key and content again is answered with
the original result; without --key a random one is chosen and printed.

--levels sets the credit table LEVEL=LIMIT,... (default 0=0,1=5000,2=20000,3=100000).
--db is "postgres://…" or a SQLite file ("sqlite:PATH", "file:PATH" or PATH).`,
		Example: `  valuechip wallet open alice --level 2
  valuechip wallet topup alice 1000 --source bank --key top-1
  valuechip wallet purchase alice 2500 --merchant SHOP01 --key order-77
  valuechip wallet show alice --json
  valuechip wallet show`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.db, "db", defaultDB, "database: postgres://… or a SQLite file")
	pf.StringVar(&o.currency, "currency", "978", "wallet currency, ISO 4217 numeric")
	pf.StringVar(&o.levels, "levels", "", "credit table LEVEL=LIMIT,... in minor units (default: docs/wallet.md §2)")
	pf.BoolVar(&o.asJSON, "json", false, "print JSON")
	cmd.AddCommand(newWalletOpen(o), newWalletMove(o, "topup"), newWalletMove(o, "purchase"), newWalletShow(o))
	return cmd
}

func walletArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// parseLevels reads "0=0,1=5000,...".
func parseLevels(s string) (wallet.Levels, error) {
	if s == "" {
		return nil, nil
	}
	out := wallet.Levels{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		lv, err1 := strconv.Atoi(k)
		lim, err2 := strconv.ParseInt(v, 10, 64)
		if !ok || err1 != nil || err2 != nil || lv < 0 || lim < 0 {
			return nil, usagef("--levels %q: want LEVEL=LIMIT,... with whole numbers, e.g. 0=0,1=5000", s)
		}
		out[lv] = lim
	}
	return out, nil
}

// open opens the database, the ledger and the wallet service.
func (o *walletOptions) open(ctx context.Context) (*wallet.Service, func(), error) {
	levels, err := parseLevels(o.levels)
	if err != nil {
		return nil, nil, err
	}
	db, err := sqldb.Open(ctx, o.db)
	if err != nil {
		return nil, nil, err
	}
	led, err := ledger.New(ctx, db)
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	s, err := wallet.New(ctx, db, led, wallet.Options{Levels: levels, Currency: o.currency})
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return s, func() { _ = db.Close() }, nil
}

func newWalletOpen(o *walletOptions) *cobra.Command {
	var level int
	cmd := &cobra.Command{
		Use:   "open HOLDER",
		Short: "Open the holder's wallet at a credit level",
		Args:  walletArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, done, err := o.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			w, err := s.Open(cmd.Context(), args[0], level)
			if err != nil {
				return err
			}
			return o.printWallet(cmd, w)
		},
	}
	cmd.Flags().IntVar(&level, "level", 0, "credit level (see --levels)")
	return cmd
}

func newWalletMove(o *walletOptions, verb string) *cobra.Command {
	var party, key string
	cmd := &cobra.Command{
		Use:   verb + " HOLDER AMOUNT",
		Short: "Top up the wallet from a funding source",
		Args:  walletArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			amount, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil || amount <= 0 {
				return usagef("amount %q: want a whole number of minor units above 0 (e.g. 350 for 3.50)", args[1])
			}
			if verb == "purchase" && party == "" {
				return usagef("give --merchant ID")
			}
			if key == "" {
				var b [8]byte
				_, _ = rand.Read(b[:])
				key = hex.EncodeToString(b[:])
				fmt.Fprintf(cmd.ErrOrStderr(), "idempotency key %s (give --key %s to retry)\n", key, key)
			}
			s, done, err := o.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var out wallet.Outcome
			if verb == "purchase" {
				out, err = s.Purchase(cmd.Context(), args[0], party, amount, key)
			} else {
				out, err = s.TopUp(cmd.Context(), args[0], amount, party, key)
			}
			if o.asJSON {
				if werr := writeJSON(cmd.OutOrStdout(), out); werr != nil {
					return werr
				}
			}
			if err != nil {
				return fmt.Errorf("%s refused, response code %s: %w", verb, out.Code, err)
			}
			if !o.asJSON {
				again := ""
				if out.Replayed {
					again = " (already done with this key: nothing new posted)"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s of %d approved (code %s)%s: balance %d, available %d\n",
					verb, out.Amount, out.Code, again, out.Balance, out.Available)
			}
			return nil
		},
	}
	if verb == "purchase" {
		cmd.Short = "Pay a merchant online from the wallet (may overdraw down to the credit limit)"
		cmd.Flags().StringVar(&party, "merchant", "", "merchant ID (required)")
	} else {
		cmd.Flags().StringVar(&party, "source", "bank", "funding source the money comes from")
	}
	cmd.Flags().StringVar(&key, "key", "", "idempotency key (default: a random one, printed)")
	return cmd
}

func newWalletShow(o *walletOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show [HOLDER]",
		Short: "Show a wallet's balance and credit, or list the wallets and the credit table",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("show takes at most one HOLDER")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, done, err := o.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if len(args) == 1 {
				w, err := s.Show(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return o.printWallet(cmd, w)
			}
			ws, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			for i := range ws {
				if ws[i], err = s.Show(cmd.Context(), ws[i].Holder); err != nil {
					return err
				}
			}
			if o.asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"levels": s.Levels(), "wallets": ws})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			lv := s.Levels()
			fmt.Fprintln(tw, "LEVEL\tCREDIT LIMIT")
			for _, l := range slices.Sorted(maps.Keys(lv)) {
				fmt.Fprintf(tw, "%d\t%d\n", l, lv[l])
			}
			fmt.Fprintln(tw, "\nHOLDER\tLEVEL\tLIMIT\tBALANCE\tAVAILABLE\tCURRENCY")
			for _, w := range ws {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", w.Holder, w.Level, w.Limit, w.Balance, w.Available, w.Currency)
			}
			return tw.Flush()
		},
	}
}

func (o *walletOptions) printWallet(cmd *cobra.Command, w wallet.Wallet) error {
	if o.asJSON {
		return writeJSON(cmd.OutOrStdout(), w)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wallet %s: level %d, credit limit %d, balance %d, available %d (currency %s)\n",
		w.Holder, w.Level, w.Limit, w.Balance, w.Available, w.Currency)
	return nil
}
