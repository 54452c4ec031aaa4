package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/host/server"
)

// withNotify gives a registry-changing command group --notify URL: after a
// successful change, the running money server at URL (its --http side) is
// asked to refresh its validity lists at once instead of at its next
// periodic refresh (docs/validity.md, seed 002 "refreshed periodically and on
// change"), with the operator token of $VALUECHIP_HTTP_TOKEN when the server
// demands one. A failed notification is a warning: the change is in the
// database and the server picks it up within --validity-refresh anyway.
func withNotify(cmd *cobra.Command) {
	var url string
	cmd.PersistentFlags().StringVar(&url, "notify", "", "money server HTTP URL (http://HOST:PORT) to refresh its validity lists after the change")
	cmd.PersistentPostRunE = func(cmd *cobra.Command, _ []string) error {
		if url == "" {
			return nil
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
		defer cancel()
		tok, err := server.LoadHTTPToken("")
		if err != nil {
			return err
		}
		if err := server.NotifyRefresh(ctx, url, tok); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %v; the server applies the change at its next periodic refresh\n", err)
		}
		return nil
	}
}
