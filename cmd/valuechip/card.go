package main

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/registry"
)

// newCardCmd manages the purses the money server knows (docs/registry.md):
// a load for a card the registry does not hold is refused with 14, so a card
// personalised outside the remote installation (valuechip purse issue) is
// registered here before its first load.
func newCardCmd() *cobra.Command {
	o := &terminalOptions{}
	cmd := &cobra.Command{
		Use:   "card",
		Short: "Register issued purses with the money server and show them (docs/registry.md)",
		Long: `Register issued purses in the money server's registry and show them.

A purse personalised with 'valuechip purse issue' is unknown to the server
until it is registered here (a load for it is refused with response code 14);
'valuechip provision' registers the cards it installs by itself. Hot-listing is
'valuechip hotlist'.`,
		Example: `  valuechip card register 1122334455667788 --currency 978 --max-balance 100000
  valuechip card list --json`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&o.db, "db", defaultDB, `database: postgres://… or a SQLite file`)
	withNotify(cmd)
	cmd.AddCommand(newCardRegister(o), newCardList(o))
	return cmd
}

func newCardRegister(o *terminalOptions) *cobra.Command {
	var (
		c        registry.Card
		currency int
		kvn      int
	)
	cmd := &cobra.Command{
		Use:   "register CARD-ID",
		Short: "Record an issued purse (idempotent for identical data)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := registry.NormCardID(args[0])
			if err != nil {
				return usageError{err}
			}
			if currency < 1 || currency > 999 {
				return usageError{fmt.Errorf("--currency %d: want an ISO 4217 numeric code 1..999", currency)}
			}
			if kvn < 1 || kvn > 255 {
				return usageError{fmt.Errorf("--key-version %d: want 1..255", kvn)}
			}
			c.CardID, c.Currency, c.KeyVersion = id, fmt.Sprintf("%03d", currency), byte(kvn)
			ctx := cmd.Context()
			reg, closeDB, err := o.open(ctx, nil)
			if err != nil {
				return err
			}
			defer closeDB()
			got, err := reg.RegisterCard(ctx, c)
			if err != nil {
				if errors.Is(err, registry.ErrExists) {
					return fmt.Errorf("card %s is already registered with other data: %w", id, err)
				}
				if errors.Is(err, registry.ErrInvalid) {
					return usageError{err}
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "card %s registered: currency %s, max balance %d, key version %02X, status %s\n",
				got.CardID, got.Currency, got.MaxBalance, got.KeyVersion, got.Status)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&currency, "currency", 978, "ISO 4217 numeric currency of the purse")
	f.Int64Var(&c.MaxBalance, "max-balance", 100000, "the purse's maximum balance in minor units (docs/purse.md §4.3)")
	f.IntVar(&kvn, "key-version", 1, "version of the issuer masters the purse's keys derive from")
	f.StringVar(&c.HolderRef, "holder", "", "opaque reference to the holder")
	return cmd
}

func newCardList(o *terminalOptions) *cobra.Command {
	return newRegistryList(o, "List the registered purses", (*registry.Store).ListCards, printCards)
}

type cardJSON struct {
	CardID     string    `json:"card_id"`
	Currency   string    `json:"currency"`
	Status     string    `json:"status"`
	MaxBalance int64     `json:"max_balance"`
	KeyVersion int       `json:"key_version"`
	Holder     string    `json:"holder,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	IssuedAt   time.Time `json:"issued_at"`
}

func printCards(w io.Writer, cards []registry.Card, asJSON bool) error {
	if asJSON {
		out := make([]cardJSON, 0, len(cards))
		for _, c := range cards {
			out = append(out, cardJSON{c.CardID, c.Currency, string(c.Status), c.MaxBalance, int(c.KeyVersion), c.HolderRef, c.Reason, c.IssuedAt})
		}
		return writeJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CARD\tCURRENCY\tSTATUS\tMAX BALANCE\tKVN\tHOLDER\tISSUED")
	for _, c := range cards {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%02X\t%s\t%s\n", c.CardID, c.Currency, c.Status, c.MaxBalance, c.KeyVersion, c.HolderRef, c.IssuedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}
