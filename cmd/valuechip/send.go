package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
)

func newSend() *cobra.Command {
	var (
		readerName string
		raw        bool
		trace      bool
		asJSON     bool
		record     string
		maxData    int
		protocol   string
	)
	cmd := &cobra.Command{
		Use:   "send [flags] APDU...",
		Short: "Send command APDUs to a card and print the responses",
		Long: `Send each argument as one command APDU, written in hex with or without
spaces or colons, and print the response data and decoded status word.

GET RESPONSE rounds (61xx), a re-send with the right Le (6Cxx) and command
chaining for commands longer than the reader takes are handled for you;
--raw turns all of that off. A command shorter than the 4-byte header is
refused before it reaches the reader (vpcd would take it for a control byte
and hang the slot).`,
		Example: `  valuechip send --reader emu:card.json '00 A4 04 00 08 F056435445535401'
  valuechip send --reader "Virtual PCD 00 00" --trace 00A4040000`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmds := make([][]byte, len(args))
			for i, a := range args {
				b, err := apdu.DecodeHex(a)
				if err != nil {
					return usagef("argument %d: %v", i+1, err)
				}
				if len(b) < 4 {
					return usagef("argument %d: %q is %d bytes; a command APDU needs at least CLA INS P1 P2 (4 bytes)", i+1, a, len(b))
				}
				if _, err := apdu.ParseCommand(b); err != nil {
					return usagef("argument %d: %v", i+1, err)
				}
				cmds[i] = b
			}
			ctx := cmd.Context()
			conn, err := connect.Open(ctx, readerName, connect.Options{Protocol: reader.ParseProtocol(protocol)})
			if err != nil {
				return err
			}
			var wire reader.Conn = conn
			if record != "" {
				f, err := os.Create(record)
				if err != nil {
					conn.Close()
					return err
				}
				defer f.Close()
				wire = reader.Record(f, conn) // closing it closes conn
			}
			defer wire.Close()
			opts := connect.StackOptions{MaxData: maxData}
			if trace {
				opts.Trace = cmd.ErrOrStderr()
			}
			t := connect.Stack(wire, opts)
			if raw {
				ctx = reader.WithRaw(ctx)
			}
			out := cmd.OutOrStdout()
			var results []sendResult
			for _, c := range cmds {
				start := time.Now()
				rsp, err := t.Transceive(ctx, c)
				if err != nil {
					return err
				}
				r, err := apdu.ParseResponse(rsp)
				if err != nil {
					return fmt.Errorf("card answered %X: %w", rsp, err)
				}
				if asJSON {
					results = append(results, sendResult{
						Command: hex.EncodeToString(c), Data: hex.EncodeToString(r.Data),
						SW: fmt.Sprintf("%04X", uint16(r.SW)), Meaning: r.SW.Name(),
						Micros: time.Since(start).Microseconds(),
					})
					continue
				}
				fmt.Fprintln(out, r.String())
			}
			if asJSON {
				return writeJSON(out, results)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&readerName, "reader", "r", "", "reader: PC/SC index or name fragment, emu:PATH, tcp:HOST:PORT, replay:FILE (default $VALUECHIP_READER, else the reader holding a card)")
	f.BoolVar(&raw, "raw", false, "send exactly these bytes: no GET RESPONSE, 6Cxx re-send or chaining")
	f.BoolVar(&trace, "trace", false, "trace every exchange on stderr with timing (secrets masked)")
	f.BoolVar(&asJSON, "json", false, "print results as JSON")
	f.StringVar(&record, "record", "", "record the session to a dump FILE (replay it with --reader replay:FILE)")
	f.IntVar(&maxData, "max-apdu", 0, "largest command data the reader takes before chaining (0: from the ATR, 255 or 65535)")
	f.StringVar(&protocol, "protocol", "", "PC/SC protocol: T=0 or T=1 (default: either)")
	return cmd
}

type sendResult struct {
	Command string `json:"command"`
	Data    string `json:"data"`
	SW      string `json:"sw"`
	Meaning string `json:"meaning"`
	Micros  int64  `json:"duration_us"`
}
