package e2e

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/testcard"
)

// benchVPCD attaches card to vpcd slot 0 from this process and measures
// ECHO round trips through pcscd with ebfe/scard. Compare the two
// benchmarks below, run together: the echo card is the floor of the path.
func benchVPCD(b *testing.B, card applet.Card) {
	ctx := context.Background()
	conn := attachVPCD(b, card)
	sel, _ := hex.DecodeString(selectTest)
	if _, err := conn.Transceive(ctx, sel); err != nil {
		b.Fatal(err)
	}
	cmd, _ := hex.DecodeString("80100000050102030405" + "00")
	for b.Loop() {
		rsp, err := conn.Transceive(ctx, cmd)
		if err != nil || len(rsp) != 7 {
			b.Fatalf("%X %v", rsp, err)
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
