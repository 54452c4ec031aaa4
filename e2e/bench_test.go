package e2e

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/testcard"
	"github.com/valuechip/valuechip/internal/livepcsc"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/pcsc"
	"github.com/valuechip/valuechip/reader/vpcd"
)

// benchVPCD attaches card to vpcd slot 0 from this process and measures
// ECHO round trips through pcscd with ebfe/scard. Compare the two
// benchmarks below, run together: the echo card is the floor of the path.
func benchVPCD(b *testing.B, card applet.Card) {
	livepcsc.Require(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	att := vpcd.New(card, vpcd.WithSlot(0))
	done := make(chan error, 1)
	actx, stop := context.WithCancel(ctx)
	go func() { done <- att.Run(actx) }()
	pc, err := pcsc.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	stopped := false
	detach := func() {
		if !stopped {
			stopped = true
			stop()
			<-done
			waitPresenceB(b, ctx, pc)
		}
	}
	defer detach()
	if _, err := pc.WaitForCard(ctx, slot0); err != nil {
		b.Fatal(err)
	}
	conn, err := pc.Connect(ctx, slot0, pcsc.ConnectOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	sel, _ := hex.DecodeString(selectTest)
	if _, err := conn.Transceive(ctx, sel); err != nil {
		b.Fatal(err)
	}
	cmd, _ := hex.DecodeString("80100000050102030405" + "00")
	b.ResetTimer()
	for b.Loop() {
		rsp, err := conn.Transceive(ctx, cmd)
		if err != nil || len(rsp) != 7 {
			b.Fatalf("%X %v", rsp, err)
		}
	}
	b.StopTimer()
	conn.Close()
	detach()
}

func waitPresenceB(b *testing.B, ctx context.Context, pc *pcsc.Context) {
	infos, err := pc.Readers(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, i := range infos {
		if i.Name == slot0 && !i.Present {
			return
		}
	}
	events, err := pc.Watch(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for e := range events {
		if e.Reader == slot0 && e.Kind == reader.CardRemoved {
			return
		}
	}
}

func BenchmarkVPCDTestCard(b *testing.B) {
	c, err := profile.Build(profile.Sample())
	if err != nil {
		b.Fatal(err)
	}
	benchVPCD(b, c)
}
func BenchmarkVPCDEcho(b *testing.B) { benchVPCD(b, testcard.Echo{}) }
