package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/applet/profile"
)

func newModules() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "modules",
		Short: "List the applet implementations built into the emulated chip, with the digests load files must name",
		Long: `List the executable modules the emulated chip implements. A load file names
modules by AID and implementation digest (docs/loadfile.md); the chip refuses
a load file naming a module it does not have or a digest that does not match.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			type row struct {
				AID     string `json:"aid"`
				Name    string `json:"name"`
				Version string `json:"version"`
				Digest  string `json:"digest"`
			}
			var rows []row
			for _, m := range profile.Modules() {
				d := m.Digest()
				rows = append(rows, row{fmt.Sprintf("%X", m.AID), m.Name, m.Version, fmt.Sprintf("%X", d[:])})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MODULE AID\tNAME\tVERSION\tDIGEST (SHA-256)")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.AID, r.Name, r.Version, r.Digest)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
