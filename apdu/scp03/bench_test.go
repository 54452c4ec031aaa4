package scp03

import (
	"fmt"
	"testing"

	"github.com/valuechip/valuechip/apdu"
)

// BenchmarkHandshake: INITIALIZE UPDATE and EXTERNAL AUTHENTICATE on both
// ends, through encoded bytes.
func BenchmarkHandshake(b *testing.B) {
	for _, keyLen := range keyLens {
		b.Run(fmt.Sprintf("AES-%d", keyLen*8), func(b *testing.B) {
			h, c := pair(b, keyLen, LevelAll, 0x70, 1)
			b.ReportAllocs()
			for b.Loop() {
				handshake(b, h, c)
			}
		})
	}
}

// BenchmarkWrapUnwrap: one command and its response at level '33'
// (C-MAC, C-DECRYPTION, R-MAC, R-ENCRYPTION): host Wrap, encode, card
// Unwrap, card Wrap, host Unwrap.
func BenchmarkWrapUnwrap(b *testing.B) {
	for _, keyLen := range []int{16, 32} {
		for _, size := range []int{0, 16, 200} {
			b.Run(fmt.Sprintf("AES-%d/%dB", keyLen*8, size), func(b *testing.B) {
				h, c := pair(b, keyLen, LevelAll, 0x70, 1)
				cmd := apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: seq(size), Ne: 256}
				resp := append(seq(size), 0x90, 0x00)
				b.SetBytes(int64(2 * size))
				b.ReportAllocs()
				for b.Loop() {
					w, err := h.Wrap(cmd)
					if err != nil {
						b.Fatal(err)
					}
					wire, _ := w.Bytes()
					if _, err := c.Unwrap(wire); err != nil {
						b.Fatal(err)
					}
					r, err := c.Wrap(resp)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := h.Unwrap(r); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
