package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/atr"
)

func newATR() *cobra.Command {
	cmd := &cobra.Command{Use: "atr", Short: "Work with answers-to-reset"}
	cmd.AddCommand(&cobra.Command{
		Use:     "decode HEX",
		Short:   "Explain an ATR byte by byte (ISO/IEC 7816-3 §8, PC/SC part 3)",
		Example: "  valuechip atr decode 3B858001807380014036\n  valuechip atr decode '3B 95 13 81 01 80 73 FF 01 00 0B'",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := apdu.DecodeHex(strings.Join(args, ""))
			if err != nil {
				return usagef("%v", err)
			}
			a, err := atr.Parse(b)
			if a == nil {
				return fmt.Errorf("not a valid ATR: %w", err)
			}
			fmt.Fprint(cmd.OutOrStdout(), a.Describe())
			if err != nil {
				return fmt.Errorf("the ATR is malformed: %w", err)
			}
			return nil
		},
	})
	return cmd
}
