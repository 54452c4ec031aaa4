package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/validity"
)

// progressMin is the size from which a long job shows a progress bar (a
// variable for tests).
var progressMin int64 = 1000

type hotlistOptions struct {
	db    string
	quiet bool
}

func newHotlistCmd() *cobra.Command {
	o := &hotlistOptions{}
	cmd := &cobra.Command{
		Use:   "hotlist",
		Short: "Put cards on the hotlist and take them off (docs/validity.md)",
		Long: `Manage the card hotlist in the money server's registry.

A hotlisted card is refused with response code 62 by the money server, which
holds the hotlist in memory (docs/validity.md). A change made here bumps the
registry's card version; running servers pick it up at their next refresh.

add, remove and load change registered cards only. remove makes the card
active again. load reads one CardID (16 hex digits) per line; blank lines and
lines starting with # are skipped; it changes the cards in bulk and skips
(and counts) cards that are not registered; load --remove makes them active. check loads the lists as the server does
and validates one card at one terminal.

--db is "postgres://…" or a SQLite file ("sqlite:PATH", "file:PATH" or PATH).`,
		Example: `  valuechip hotlist add 1122334455667788 --reason "reported lost"
  valuechip hotlist remove 1122334455667788 --reason found
  valuechip hotlist list --json
  valuechip hotlist load --file stolen.txt --reason "batch 2026-11"
  valuechip hotlist load --remove --file recovered.txt --reason "found"
  valuechip hotlist check --mode both 1122334455667788 TERM0001`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.db, "db", defaultDB, "database: postgres://… or a SQLite file")
	pf.BoolVarP(&o.quiet, "quiet", "q", false, "no progress bar")
	withNotify(cmd)
	cmd.AddCommand(newHotlistSet(o, "add", registry.Hotlisted), newHotlistSet(o, "remove", registry.Active),
		newHotlistList(o), newHotlistLoad(o), newHotlistCheck(o))
	return cmd
}

// open opens the database and the registry over it (no key is touched).
func (o *hotlistOptions) open(ctx context.Context) (*registry.Store, func(), error) {
	db, err := sqldb.Open(ctx, o.db)
	if err != nil {
		return nil, nil, err
	}
	reg, err := registry.New(ctx, db, nil)
	if err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	return reg, func() { _ = db.Close() }, nil
}

// bar returns a progress bar on stderr for a job of n items (n < 0: not
// known), or nil for a small one or under --quiet.
func (o *hotlistOptions) bar(cmd *cobra.Command, n int64, what string) *progressbar.ProgressBar {
	if o.quiet || (n >= 0 && n < progressMin) { // n < 0: total unknown, a spinner
		return nil
	}
	return newBar(cmd, n, what)
}

// newBar is the progress bar of a long job on stderr: counts, rate, at most
// ten redraws a second, a newline when done.
func newBar(cmd *cobra.Command, n int64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(n,
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }),
	)
}

func newHotlistSet(o *hotlistOptions, verb string, st registry.Status) *cobra.Command {
	var reason string
	short := "Put cards on the hotlist"
	if st == registry.Active {
		short = "Take cards off the hotlist (they become active)"
	}
	cmd := &cobra.Command{
		Use:   verb + " CARDID...",
		Short: short,
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, id := range args {
				if _, err := validity.ParseCardKey(id); err != nil {
					return usageError{err}
				}
			}
			reg, done, err := o.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var errs []error
			for _, id := range args {
				if err := reg.SetCardStatus(cmd.Context(), id, st, reason); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", strings.ToUpper(id), st)
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with the change)")
	return cmd
}

func newHotlistList(o *hotlistOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Print the hotlisted CardIDs and the list's version",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, done, err := o.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			ids, v, err := reg.Hotlist(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if ids == nil {
					ids = []string{}
				}
				return writeJSON(w, struct {
					Version int64    `json:"version"`
					Cards   []string `json:"cards"`
				}{v, ids})
			}
			bw := bufio.NewWriter(w)
			fmt.Fprintf(bw, "# hotlist version %d, %d cards\n", v, len(ids))
			for _, id := range ids {
				fmt.Fprintln(bw, id)
			}
			return bw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newHotlistLoad(o *hotlistOptions) *cobra.Command {
	var (
		file, reason string
		remove       bool
	)
	cmd := &cobra.Command{
		Use:   "load --file F [--remove]",
		Short: "Hotlist (or with --remove make active) every CardID of a file, one per line",
		Long: `Hotlist every CardID of a file (one per line; - reads stdin) in bulk:
the registry changes 2000 cards per transaction (docs/validity.md §6), so a
list of millions of cards loads in seconds to minutes.

Every line is checked before anything is written. Cards that already have
the status are left alone (no new version). Cards not registered here are
skipped and counted as unknown, not an error: a list received from a scheme
holds other issuers' cards, which the server refuses anyway (14). The first
of them are listed on stderr.

--remove makes the cards active instead, as remove does (a blocked card
listed becomes active too). An interrupted load can simply be run again.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("--file is required")
			}
			t0 := time.Now()
			ids, err := readCardIDs(cmd.InOrStdin(), file)
			if err != nil {
				return err
			}
			reg, done, err := o.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			st, what := registry.Hotlisted, "hotlisting"
			if remove {
				st, what = registry.Active, "making active"
			}
			bar := o.bar(cmd, int64(len(ids)), what)
			res, err := reg.SetCardStatuses(cmd.Context(), ids, st, reason, func(n int) {
				if bar != nil {
					_ = bar.Set(n)
				}
			})
			switch {
			case bar != nil && err == nil:
				_ = bar.Finish()
			case bar != nil:
				fmt.Fprintln(cmd.ErrOrStderr()) // end the bar's line
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d cards: %d %s, %d already %s, %d unknown (not registered) in %s\n",
				len(ids), res.Changed, st, res.Unchanged, st, len(res.Unknown), time.Since(t0).Round(time.Millisecond))
			if len(res.Unknown) > 0 {
				w := cmd.ErrOrStderr()
				for _, id := range res.Unknown[:min(len(res.Unknown), 10)] {
					fmt.Fprintf(w, "unknown card %s: not registered, skipped\n", id)
				}
				if more := len(res.Unknown) - 10; more > 0 {
					fmt.Fprintf(w, "… and %d more unknown cards\n", more)
				}
			}
			if err != nil {
				return fmt.Errorf("load stopped after %d of %d cards (run it again to finish): %w",
					res.Changed+res.Unchanged+len(res.Unknown), len(ids), err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "file", "", "file of CardIDs, one per line (- for stdin)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded with each change)")
	cmd.Flags().BoolVar(&remove, "remove", false, "make the cards active (take them off the hotlist) instead")
	return cmd
}

// readCardIDs reads one CardID per line, skipping blank lines and # comments;
// a malformed line is a usage error naming its line number.
func readCardIDs(r io.Reader, file string) ([]string, error) {
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var ids []string
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := validity.ParseCardKey(line); err != nil {
			return nil, usagef("%s:%d: %w", file, n, err)
		}
		ids = append(ids, strings.ToUpper(line))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return ids, nil
}

func newHotlistCheck(o *hotlistOptions) *cobra.Command {
	var mode string
	cmd := &cobra.Command{
		Use:   "check CARDID TERMINALID",
		Short: "Load the validity lists as the server does and check one card at one terminal",
		Args:  usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := validity.ParseMode(mode)
			if err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			reg, done, err := o.open(ctx)
			if err != nil {
				return err
			}
			defer done()
			// Big loads show two bars: reading the hotlist (total unknown
			// until the last page) and indexing it.
			var reading, indexing *progressbar.ProgressBar
			src := validity.Registry{Store: reg, OnPage: func(n int) {
				if reading == nil && !o.quiet && int64(n) >= progressMin {
					reading = o.bar(cmd, -1, "reading hotlist")
				}
				if reading != nil {
					_ = reading.Set(n)
				}
			}}
			l, err := validity.New(validity.Config{
				Mode: m, Source: src, DB: src, Interval: -1,
				Progress: func(p validity.Progress) {
					if reading != nil {
						_ = reading.Finish()
						reading = nil
					}
					if indexing == nil {
						if indexing = o.bar(cmd, int64(p.Total), "indexing "+p.Kind.String()); indexing == nil {
							return
						}
					}
					_ = indexing.Set(p.Done)
					if p.Done == p.Total {
						indexing = nil
					}
				},
			})
			if err != nil {
				return err
			}
			t0 := time.Now()
			if err := l.Start(ctx); err != nil {
				return err
			}
			defer l.Close()
			load := time.Since(t0)
			t1 := time.Now()
			d, err := l.CheckIDs(ctx, args[0], args[1])
			if err != nil {
				return err
			}
			took := time.Since(t1)
			var late string
			if d.Late != nil {
				r, err := d.Late.Wait(ctx)
				if err != nil {
					return err
				}
				switch {
				case r.Err != nil:
					late = fmt.Sprintf(" (late card check failed: %v)", r.Err)
				case r.Hotlisted:
					late = " (late card check: hotlisted, would be flagged)"
				default:
					late = " (late card check: not hotlisted)"
				}
			}
			st := l.Stats()
			w := cmd.OutOrStdout()
			reason := "approved"
			if d.Err != nil {
				reason = d.Err.Error()
			}
			fmt.Fprintf(w, "response code %s: %s%s\n", d.Code, reason, late)
			fmt.Fprintf(w, "mode %s: %s; lists loaded in %s (cards %s, terminals %s, %.1f MB); check took %s, %d database reads\n",
				m, modeText(m), load.Round(time.Millisecond), listText(st.Cards, st.CardVersion),
				listText(st.Terminals, st.TerminalVersion), float64(st.Bytes)/1e6, took.Round(time.Microsecond),
				st.CardDBReads+st.TerminalDBReads)
			return nil
		},
	}
	cmd.Flags().StringVar(&mode, "mode", "both", "lists held in memory: both, cards, terminals")
	return cmd
}

func modeText(m validity.Mode) string {
	switch m {
	case validity.ModeCards:
		return "cards from memory, terminal from the database"
	case validity.ModeTerminals:
		return "terminal from memory, card from the database beside the response"
	}
	return "card and terminal from memory"
}

func listText(n int, v int64) string {
	if n < 0 {
		return "not cached"
	}
	return fmt.Sprintf("%d at version %d", n, v)
}

// usageArgs makes an argument-count mistake a usage error (exit status 2).
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
