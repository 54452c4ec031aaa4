package keystore_test

import (
	"testing"

	"github.com/valuechip/valuechip/host/keystore"
)

// Sealing and opening a 16-byte key: the cost per sign-on (a working key
// and a seed) and per terminal lookup that unseals a TMK.
func BenchmarkSeal(b *testing.B) {
	s, _ := keystore.NewSealer(keystore.GenerateKEK())
	key := make([]byte, 16)
	for b.Loop() {
		if _, err := s.Seal("wk/VCTERM01", key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	s, _ := keystore.NewSealer(keystore.GenerateKEK())
	blob, _ := s.Seal("wk/VCTERM01", make([]byte, 16))
	for b.Loop() {
		if _, err := s.Open("wk/VCTERM01", blob); err != nil {
			b.Fatal(err)
		}
	}
}
