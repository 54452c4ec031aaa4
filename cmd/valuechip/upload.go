package main

import (
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/crosscheck"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/reader/connect"
)

func newUploadCmd() *cobra.Command {
	var (
		server, readerName string
		trace, asJSON      bool
		timeout            time.Duration
	)
	cmd := &cobra.Command{
		Use:   "upload",
		Short: "Upload the card's transaction log to the money server for cross-checking (docs/crosscheck.md)",
		Long: `Read the purse's transaction log from the card in the reader (READ RECORD,
docs/purse.md §3.10) and upload it, certificates included, to the money
server's second channel (POST /v1/cards/{cardID}/log). The server verifies
every record's certificate, compares the log with what terminals reported,
and answers with the discrepancies it found, which are printed: a terminal
that charged more than the card debited, a debit no terminal reported, ...

No key is needed on this side: the certificates are checked by the server.
Records the server refused (certificate wrong) are listed; the exit status
is 0 when the upload went through, whatever was found.`,
		Example: `  valuechip upload --server http://127.0.0.1:8480 --reader emu:card.json
  valuechip upload --server https://money.example --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" {
				return usagef("give --server URL")
			}
			ctx := cmd.Context()
			conn, err := connect.Open(ctx, readerName, connect.Options{})
			if err != nil {
				return err
			}
			defer conn.Close()
			opts := connect.StackOptions{}
			if trace {
				opts.Trace = cmd.ErrOrStderr()
			}
			tr := connect.Stack(conn, opts)
			term := terminal.New(terminal.Config{})
			info, err := term.Balance(ctx, tr)
			if err != nil {
				return err
			}
			recs, err := term.Log(ctx, tr)
			if err != nil {
				return err
			}
			id := info.FCI.CardID
			if len(recs) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "card %X: the log is empty, nothing to upload\n", id[:])
				return nil
			}
			res, err := crosscheck.Client{HTTP: &http.Client{Timeout: timeout}}.Upload(ctx, server, id, recs)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(out, res)
			}
			fmt.Fprintf(out, "card %s: uploaded %d records: %d accepted (%d new), %d refused\n",
				res.CardID, len(recs), res.Accepted, res.Stored, len(res.Refused))
			for _, r := range res.Refused {
				fmt.Fprintf(out, "refused ATC %d: %s\n", r.ATC, r.Reason)
			}
			if len(res.Discrepancies) == 0 {
				fmt.Fprintln(out, "no discrepancy: the terminals reported exactly what the card did")
				return nil
			}
			noun := "discrepancies"
			if len(res.Discrepancies) == 1 {
				noun = "discrepancy"
			}
			fmt.Fprintf(out, "%d %s:\n", len(res.Discrepancies), noun)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ATC\tKIND\tTERMINAL\tCARD\tREPORTED\tDETAIL")
			for _, d := range res.Discrepancies {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", d.ATC, d.Kind, d.TerminalID, d.CardAmount, d.ReportedAmount, d.Detail)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "server", "", "money server base URL, e.g. http://127.0.0.1:8480 (required)")
	f.StringVarP(&readerName, "reader", "r", "", "reader: PC/SC index or name fragment, emu:PATH, tcp:HOST:PORT, replay:FILE (default $VALUECHIP_READER, else the reader holding a card)")
	f.BoolVar(&trace, "trace", false, "trace every exchange with the card on stderr")
	f.BoolVar(&asJSON, "json", false, "print the server's answer as JSON")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "HTTP timeout")
	return cmd
}
