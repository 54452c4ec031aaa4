package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/internal/livepcsc"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/pcsc"
	"github.com/valuechip/valuechip/reader/vpcd"
)

// attachVPCD attaches card to vpcd slot 0 from this process, waits (by
// probing pcscd) until clients can see it, and returns a PC/SC connection
// to it. Cleanup closes the connection, takes the card out and waits until
// pcscd has seen it go, so the next test's card is not mistaken for it.
func attachVPCD(tb testing.TB, card applet.Card) reader.Conn {
	tb.Helper()
	livepcsc.Require(tb)
	ctx, cancel := context.WithCancel(context.Background())
	att := vpcd.New(card, vpcd.WithSlot(0))
	done := make(chan error, 1)
	go func() { done <- att.Run(ctx) }()
	pc, err := pcsc.Open()
	if err != nil {
		cancel()
		<-done
		tb.Fatal(err)
	}
	var conn *pcsc.Card
	tb.Cleanup(func() {
		if conn != nil {
			conn.Close()
		}
		cancel()
		<-done
		wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer wcancel()
		if err := pc.WaitForRemoval(wctx, slot0); err != nil {
			tb.Errorf("the card never left %s: %v", slot0, err)
		}
		pc.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if _, err := pc.WaitForCard(wctx, slot0); err != nil {
		tb.Fatal(err)
	}
	if conn, err = pc.Connect(ctx, slot0, pcsc.ConnectOptions{}); err != nil {
		tb.Fatal(err)
	}
	return conn
}
