package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/keystore"
)

// keysOptions are the flags every `keys` subcommand shares.
type keysOptions struct {
	keyring string
	kekFile string
}

func newKeysCmd() *cobra.Command {
	o := &keysOptions{}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Create and inspect the money server's keyring (docs/keys.md)",
		Long: `The keyring is the money server's file of secret keys: the issuer master keys
MK_LOAD, MK_DEBIT and MK_TC (docs/purse.md §5.1) and the SCP03 master key set
of the chips' card managers, each sealed (AES-256-GCM) under a key-encryption
key (KEK). Only key check values (KCVs) are ever printed.

The KEK, 32 bytes as 64 hex digits, comes from:
  --kek-file FILE   readable by its owner only (chmod 600)
  $VALUECHIP_KEK    when no --kek-file is given
Make one with:  head -c 32 /dev/urandom | xxd -p -c 64 > kek; chmod 600 kek`,
		Example: `  valuechip keys init --keyring keyring.json --kek-file kek
  valuechip keys show --keyring keyring.json --kek-file kek
  valuechip keys init --keyring dev-keyring.json --kek-file kek --dev-masters
  valuechip keys rekey --keyring keyring.json --kek-file kek --new-kek-file kek2`,
		Args: cobra.NoArgs,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.keyring, "keyring", "keyring.json", "keyring file (JSON, keys sealed under the KEK)")
	f.StringVar(&o.kekFile, "kek-file", "", "key-encryption key file: 64 hex digits or 32 bytes, mode 0600 (default $"+keystore.EnvKEK+")")
	cmd.AddCommand(newKeysInit(o), newKeysShow(o), newKeysRekey(o))
	return cmd
}

// kek checks the common flags and loads the KEK.
func (o *keysOptions) kek() (keystore.KEK, error) {
	if o.keyring == "" {
		return keystore.KEK{}, usagef("give the keyring file with --keyring FILE")
	}
	k, err := keystore.LoadKEK(o.kekFile)
	if errors.Is(err, keystore.ErrNoKEK) {
		return keystore.KEK{}, usageError{err}
	}
	return k, err
}

func newKeysInit(o *keysOptions) *cobra.Command {
	var opt keystore.InitOptions
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a keyring with fresh random master keys (or the public development keys)",
		Long: `Create a keyring with fresh random issuer master keys (AES-128, version 01) and
a fresh card-manager master key set (version 30), from the system's secure
random generator, sealed under the KEK. The file is written with mode 0600.

--dev-masters puts the public development keys in instead: the issuer master
keys of docs/purse.md §10 and the GlobalPlatform test key. Anyone can compute
every card key from them; they are for tests and demonstrations only.

An existing keyring is never replaced without --force: its keys, and every
card and terminal key derived from or sealed under them, would be lost.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kek, err := o.kek()
			if err != nil {
				return err
			}
			if opt.DevMasters {
				fmt.Fprintln(cmd.ErrOrStderr(), keystore.DevWarning)
			}
			r, err := keystore.Init(o.keyring, kek, opt)
			if errors.Is(err, fs.ErrExist) {
				return usagef("%w (--force replaces it)", err)
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "keyring %s created, sealed under the KEK with KCV %X\n", r.Path(), r.KEKKCV())
			return printKeys(out, r)
		},
	}
	cmd.Flags().BoolVar(&opt.DevMasters, "dev-masters", false, "use the PUBLIC development keys of docs/purse.md §10 and the GP test key (never for real value)")
	cmd.Flags().BoolVar(&opt.Force, "force", false, "replace an existing keyring (its keys are lost)")
	return cmd
}

// keyringJSON is the output of keys show --json.
type keyringJSON struct {
	Keyring     string             `json:"keyring"`
	KEKKCV      string             `json:"kek_kcv"`
	Development bool               `json:"development"`
	Created     string             `json:"created,omitempty"`
	Keys        []keyringEntryJSON `json:"keys"`
}

type keyringEntryJSON struct {
	Label   string `json:"label"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Bits    int    `json:"bits"`
	KCV     string `json:"kcv"`
}

func newKeysShow(o *keysOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Open the keyring with the KEK and list its keys: names, versions, KCVs",
		Long: `Open the keyring with the KEK, check every key against its listed version and
key check value, and list them. Keys themselves are never printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kek, err := o.kek()
			if err != nil {
				return err
			}
			r, err := keystore.OpenKeyring(o.keyring, kek)
			if err != nil {
				return err
			}
			if r.Development() {
				fmt.Fprintln(cmd.ErrOrStderr(), keystore.DevWarning)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				j := keyringJSON{Keyring: r.Path(), KEKKCV: fmt.Sprintf("%X", r.KEKKCV()), Development: r.Development(), Keys: []keyringEntryJSON{}}
				if !r.Created().IsZero() {
					j.Created = r.Created().Format(time.RFC3339)
				}
				for _, k := range r.Keys() {
					j.Keys = append(j.Keys, keyringEntryJSON{k.Label, k.Name, fmt.Sprintf("%02X", k.Version), k.Bits, fmt.Sprintf("%X", k.KCV)})
				}
				return writeJSON(out, j)
			}
			fmt.Fprintf(out, "keyring %s, sealed under the KEK with KCV %X", r.Path(), r.KEKKCV())
			if !r.Created().IsZero() {
				fmt.Fprintf(out, ", created %s", r.Created().Format(time.RFC3339))
			}
			if r.Development() {
				fmt.Fprint(out, ", DEVELOPMENT keys")
			}
			fmt.Fprintln(out)
			return printKeys(out, r)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newKeysRekey(o *keysOptions) *cobra.Command {
	var newFile string
	cmd := &cobra.Command{
		Use:   "rekey",
		Short: "Reseal the keyring under a new KEK (KEK rotation, docs/keys.md §4)",
		Long: `Open the keyring with the current KEK (--kek-file or $VALUECHIP_KEK) and
replace it, atomically, with the same keys sealed under the new KEK
(--new-kek-file). Keys sealed in the database stay under the old KEK until
they are resealed: keep the old KEK until then (docs/keys.md §4).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if newFile == "" {
				return usagef("give the new KEK with --new-kek-file FILE")
			}
			oldKEK, err := o.kek()
			if err != nil {
				return err
			}
			newKEK, err := keystore.LoadKEK(newFile)
			if err != nil {
				return err
			}
			if newKEK.Equal(oldKEK) {
				return usagef("--new-kek-file holds the current KEK (KCV %X)", oldKEK.KCV())
			}
			r, err := keystore.Rekey(o.keyring, oldKEK, newKEK)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "keyring %s resealed: KEK KCV %X -> %X\n", r.Path(), oldKEK.KCV(), r.KEKKCV())
			return printKeys(cmd.OutOrStdout(), r)
		},
	}
	cmd.Flags().StringVar(&newFile, "new-kek-file", "", "the new key-encryption key file (mode 0600)")
	return cmd
}

func printKeys(w io.Writer, r *keystore.Keyring) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LABEL\tKEY\tKVN\tAES\tKCV")
	for _, k := range r.Keys() {
		fmt.Fprintf(tw, "%s\t%s\t%02X\t%d\t%X\n", k.Label, k.Name, k.Version, k.Bits, k.KCV)
	}
	return tw.Flush()
}
