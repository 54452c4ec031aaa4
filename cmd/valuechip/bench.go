package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/loadgen"
	"github.com/valuechip/valuechip/reader/bench"
)

func newBench() *cobra.Command {
	var (
		cfg    bench.Config
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure APDU round trips per second against baselines taken in the same run",
		Long: `Measure APDU round trips per second in-process and, with --vpcd, through
pcscd + vpcd (the card attached to a vpcd slot by this process, the host on
ebfe/scard). Every path is compared with a bare echo card on the same path,
measured in the same run with the runs interleaved; --vicc adds vsmartcard's
Python card as a second baseline. Figures are medians of --runs runs.

The vpcd slot must be free: stop any 'valuechip emulate' on it first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			rs, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, rs)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "path\tAPDU/s (median)\tµs/APDU\tvs baseline\t")
			for _, r := range rs {
				if r.Note != "" {
					fmt.Fprintf(tw, "%s\t%s\t\t\t\n", r.Name, r.Note)
					continue
				}
				ratio := ""
				if r.Ratio > 0 {
					ratio = fmt.Sprintf("%.2f× %s", r.Ratio, r.Baseline)
				}
				fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%s\t\n", r.Name, r.Median, r.MicrosPerAPDU(), ratio)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Runs, "runs", 5, "runs per path; the median is reported")
	f.DurationVar(&cfg.InProcessFor, "in-process-time", 300*time.Millisecond, "length of one in-process run")
	f.IntVar(&cfg.VPCDAPDUs, "vpcd-apdus", 2000, "APDUs per run through pcscd")
	f.BoolVar(&cfg.VPCD, "vpcd", false, "also measure through pcscd + vpcd (needs pcscd with the vpcd driver)")
	f.BoolVar(&cfg.VICC, "vicc", false, "with --vpcd, add vsmartcard's vicc as a baseline (slow: ~21 APDU/s on Debian 12)")
	f.IntVar(&cfg.VICCAPDUs, "vicc-apdus", 40, "APDUs per vicc run")
	f.IntVar(&cfg.Slot, "slot", 0, "vpcd slot to use")
	f.BoolVar(&asJSON, "json", false, "print results as JSON")
	cmd.AddCommand(newBenchServer())
	return cmd
}

func newBenchServer() *cobra.Command {
	var (
		cfg    loadgen.BenchConfig
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Measure debit advices per second end to end over TCP, against pgbench on the same PostgreSQL",
		Long: `Start an in-process money server on a fresh SQLite file and, with --pg (or
$VALUECHIP_PG_DSN), on a fresh PostgreSQL database, and drive each over
loopback TCP with simulated terminals (host/loadgen): each registered with its
own TMK and signed on, sending genuine 0220 offline debit advices (MAC,
transaction number, TC under the key ring's K_TC, consecutive ATCs per card)
one after the other. In the same run, pgbench's simple-update (-N) runs on a
scratch database of the same PostgreSQL as the baseline. Runs are
interleaved; figures are medians. Afterwards every acknowledged advice is
checked to be in its ledger exactly once.

The --pg role must be allowed to CREATE DATABASE; the databases are dropped
at the end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("pg") {
				cfg.PG = os.Getenv("VALUECHIP_PG_DSN")
			}
			cfg.Progress = cmd.ErrOrStderr()
			rep, err := loadgen.Bench(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, rep)
			}
			fmt.Fprintf(out, "%d runs of %s, %d terminals, medians; every acknowledged advice verified in the ledger: %v\n",
				rep.Runs, rep.Duration, rep.Terminals, rep.Verified)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "path\tper s (median)\tprocess CPU µs/advice\tPostgreSQL CPU µs/advice\tmean batch\t")
			row := func(name string, s *loadgen.Series) {
				if s.Note != "" {
					fmt.Fprintf(tw, "%s\t%s\t\t\t\t\n", name, s.Note)
					return
				}
				fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t\n", name, s.Median, optional(s.CPUMicros), optional(s.DBCPUMicros), optional(s.Batch))
			}
			row("advices, SQLite", &rep.SQLite)
			if rep.Postgres != nil {
				row("advices, PostgreSQL", rep.Postgres)
			}
			if rep.PGBench != nil {
				row("pgbench -N TPS", rep.PGBench)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if rep.Ratio > 0 {
				fmt.Fprintf(out, "PostgreSQL advices/s ÷ pgbench TPS: %.2f (goal ≥ 0.5)\n", rep.Ratio)
			}
			if rep.Note != "" {
				fmt.Fprintln(out, rep.Note)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Runs, "runs", 5, "runs per path; the median is reported")
	f.DurationVar(&cfg.Duration, "duration", 5*time.Second, "length of one run")
	f.IntVar(&cfg.Terminals, "terminals", 200, "simulated terminals, one connection each (200: the load scenario of issue 5)")
	f.IntVar(&cfg.Cards, "cards", 4, "cards per terminal")
	f.StringVar(&cfg.PG, "pg", "", "PostgreSQL DSN of a role that may CREATE DATABASE (default $VALUECHIP_PG_DSN; --pg '' for SQLite only)")
	f.IntVar(&cfg.PGBenchClients, "pgbench-clients", 8, "pgbench -c")
	f.IntVar(&cfg.MaxBatch, "max-batch", 0, "advices per group commit (0: the server's default)")
	f.BoolVar(&asJSON, "json", false, "print results as JSON")
	return cmd
}

func optional(v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f", v)
}
