package vpcd

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// FuzzServe feeds arbitrary byte streams, as if from a reader, to the card
// side of one connection, over net.Pipe (each write reaches the card as it
// comes, so frames are cut anywhere). The card echoes commands but panics
// on those starting with FF and answers nothing to those starting with FE,
// and on FD answers more than a frame can carry. ServeConn must never
// panic and must return once the stream ends.
func FuzzServe(f *testing.F) {
	seeds := [][]byte{
		{},
		frame(CtrlGetATR),
		bytes.Join([][]byte{frame(CtrlGetATR), frame(CtrlPowerOn), frame(CtrlGetATR),
			appendFrame(nil, []byte{0x00, 0xA4, 0x00, 0x0C, 0x02, 0x3F, 0x00}),
			frame(CtrlReset), frame(CtrlGetATR), frame(CtrlPowerOff)}, nil),
		{0x00, 0x00},             // zero-length frame
		{0x00, 0x05, 0x00, 0xA4}, // truncated body
		{0xFF, 0xFF, 0x01},       // 65535 announced, 1 sent
		{0x00},                   // truncated header
		frame(0x03),              // unknown control byte
		appendFrame(nil, []byte{0xFF, 0x00, 0x00, 0x00}), // card panics
		appendFrame(nil, []byte{0xFE, 0x00, 0x00, 0x00}), // empty response
		appendFrame(nil, []byte{0xFD, 0x00, 0x00, 0x00}), // oversized response
		appendFrame(nil, []byte{0x00, 0xB0}),             // 2-byte APDU
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		card := newFakeCard()
		card.transmit = func(cmd []byte) []byte {
			switch cmd[0] {
			case 0xFF:
				panic("fuzz card")
			case 0xFE:
				return nil
			case 0xFD:
				return make([]byte, MaxPayload+1)
			}
			return cmd
		}
		readerEnd, cardEnd := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- ServeConn(context.Background(), cardEnd, card) }()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, readerEnd)
		}()
		_, _ = readerEnd.Write(stream) // fails once the card side hangs up
		readerEnd.Close()
		select {
		case err := <-done:
			_ = err // any error is fine; returning is what matters
		case <-time.After(waitLimit):
			t.Fatal("ServeConn did not return after the stream ended")
		}
		<-drained
	})
}
