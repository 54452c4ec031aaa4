package e2e

import (
	"context"
	"testing"

	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/profile"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

var fullLevel = scp03.LevelCMAC | scp03.LevelCDEC | scp03.LevelRMAC | scp03.LevelRENC

// scpPath returns a host stack to a sample chip, in-process or attached to
// vpcd slot 0 and reached through pcscd.
func scpPath(b *testing.B, viaVPCD bool) reader.Transceiver {
	c, err := profile.Build(profile.Sample())
	if err != nil {
		b.Fatal(err)
	}
	if !viaVPCD {
		conn := emu.Connect(c, "emu:bench")
		return connect.Stack(conn, connect.StackOptions{})
	}
	conn := attachVPCD(b, c)
	return connect.Stack(conn, connect.StackOptions{})
}

func openFull(b *testing.B, ctx context.Context, t reader.Transceiver) *hostgp.Session {
	s, err := hostgp.Open(ctx, t, hostgp.Config{Keys: hostgp.SingleKey(scp03.Key(gp.TestKey())), Level: fullLevel})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// The SCP03 handshake: SELECT ISD, INITIALIZE UPDATE, EXTERNAL
// AUTHENTICATE, with key derivation and cryptograms on both sides.
func benchHandshake(b *testing.B, viaVPCD bool) {
	ctx := context.Background()
	t := scpPath(b, viaVPCD)
	for b.Loop() {
		openFull(b, ctx, t)
	}
}

// One protected APDU at C-MAC + C-DEC + R-MAC + R-ENC: GET DATA card data
// (a command with Le and a 51-byte response), wrapped and unwrapped.
func benchFullLevel(b *testing.B, viaVPCD bool) {
	ctx := context.Background()
	t := openFull(b, ctx, scpPath(b, viaVPCD)).Transceiver()
	cmd, _ := gp.GetData(0x66).Bytes()
	for b.Loop() {
		rsp, err := t.Transceive(ctx, cmd)
		if err != nil || len(rsp) < 2 || rsp[len(rsp)-2] != 0x90 {
			b.Fatalf("%X %v", rsp, err)
		}
	}
}

func BenchmarkSCP03HandshakeInProcess(b *testing.B) { benchHandshake(b, false) }
func BenchmarkSCP03FullLevelInProcess(b *testing.B) { benchFullLevel(b, false) }
func BenchmarkSCP03HandshakeVPCD(b *testing.B)      { benchHandshake(b, true) }
func BenchmarkSCP03FullLevelVPCD(b *testing.B)      { benchFullLevel(b, true) }
