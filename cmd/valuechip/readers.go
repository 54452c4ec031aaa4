package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/pcsc"
)

func newReaders() *cobra.Command {
	var watch, asJSON bool
	cmd := &cobra.Command{
		Use:   "readers",
		Short: "List PC/SC readers and the cards in them; --watch prints insertions and removals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pc, err := pcsc.Open()
			if err != nil {
				return err
			}
			defer pc.Close()
			out := cmd.OutOrStdout()
			if !watch {
				infos, err := pc.Readers(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(out, jsonInfos(infos))
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "#\tREADER\tCARD\tATR")
				for _, i := range infos {
					card := "-"
					if i.Present {
						card = "yes"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%X\n", i.Index, i.Name, card, i.ATR)
				}
				return tw.Flush()
			}
			events, err := pc.Watch(ctx)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(out)
			for e := range events {
				if asJSON {
					if err := enc.Encode(jsonEvent{Time: time.Now().UTC(), Kind: strings.ReplaceAll(e.Kind.String(), " ", "_"), Reader: e.Reader, ATR: fmt.Sprintf("%X", e.ATR)}); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(out, "%s  %-14s %s %X\n", time.Now().Format("15:04:05.000"), e.Kind, e.Reader, e.ATR)
			}
			return ctx.Err()
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "print card and reader events until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one object per event with --watch)")
	return cmd
}

type jsonInfo struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Present bool   `json:"card_present"`
	ATR     string `json:"atr,omitempty"`
}

func jsonInfos(infos []reader.Info) []jsonInfo {
	out := make([]jsonInfo, 0, len(infos))
	for _, i := range infos {
		out = append(out, jsonInfo{Index: i.Index, Name: i.Name, Present: i.Present, ATR: fmt.Sprintf("%X", i.ATR)})
	}
	return out
}

type jsonEvent struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"event"`
	Reader string    `json:"reader"`
	ATR    string    `json:"atr,omitempty"`
}
