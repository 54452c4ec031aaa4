package vpcd

import (
	"context"
	"net"
	"testing"
)

// echoCard answers every command with itself.
type echoCard struct{}

func (echoCard) ATR() []byte                { return testATR }
func (echoCard) PowerOn()                   {}
func (echoCard) PowerOff()                  {}
func (echoCard) Reset(bool)                 {}
func (echoCard) Transmit(cmd []byte) []byte { return cmd }

// BenchmarkLoopbackRoundTrip is the raw TCP floor: one 5-byte APDU and its
// reply through Client and Serve over real 127.0.0.1 TCP in one process,
// with TCP_QUICKACK armed before each read as against vpcd. vsmartcard.md
// §4 measured ≈6.5 µs in-process (≈10 µs between processes) against
// ≈96 µs through pcscd.
func BenchmarkLoopbackRoundTrip(b *testing.B) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, echoCard{}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	c, err := Dial(ctx, l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	cmd := []byte{0x00, 0xB0, 0x00, 0x00, 0x10}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Transmit(cmd); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "apdu/s")
}
