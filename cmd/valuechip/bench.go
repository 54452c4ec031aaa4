package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

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
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rs)
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
	return cmd
}
