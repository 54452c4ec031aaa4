package cmac

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

type vectorFile struct {
	Subkeys []struct {
		Name, Source, Key, K1, K2 string
	}
	Vectors []struct {
		Name, Source, Key, Msg, MAC string
	}
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func loadVectors(t testing.TB) vectorFile {
	t.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		t.Fatal(err)
	}
	if len(vf.Vectors) != 12 || len(vf.Subkeys) != 3 {
		t.Fatalf("testdata/vectors.json: %d vectors, %d subkey sets; want 12 and 3", len(vf.Vectors), len(vf.Subkeys))
	}
	return vf
}

func TestSubkeys(t *testing.T) {
	for _, v := range loadVectors(t).Subkeys {
		t.Run(v.Name, func(t *testing.T) {
			m, err := NewMAC(unhex(t, v.Key))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(m.k1[:]); got != v.K1 {
				t.Errorf("K1 = %s, want %s (%s)", got, v.K1, v.Source)
			}
			if got := hex.EncodeToString(m.k2[:]); got != v.K2 {
				t.Errorf("K2 = %s, want %s (%s)", got, v.K2, v.Source)
			}
		})
	}
}

func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t).Vectors {
		t.Run(v.Name, func(t *testing.T) {
			key, msg, want := unhex(t, v.Key), unhex(t, v.Msg), unhex(t, v.MAC)

			got, err := Sum(key, msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:], want) {
				t.Fatalf("Sum = %x, want %x (%s)", got, want, v.Source)
			}

			// Streaming, in every split of the message into two writes,
			// and byte by byte.
			h, err := New(key)
			if err != nil {
				t.Fatal(err)
			}
			for cut := 0; cut <= len(msg); cut++ {
				h.Reset()
				h.Write(msg[:cut])
				h.Write(msg[cut:])
				if s := h.Sum(nil); !bytes.Equal(s, want) {
					t.Fatalf("split at %d: %x, want %x", cut, s, want)
				}
			}
			h.Reset()
			for i := range msg {
				h.Write(msg[i : i+1])
			}
			if s := h.Sum([]byte{0xAA}); !bytes.Equal(s, append([]byte{0xAA}, want...)) {
				t.Fatalf("bytewise Sum(prefix) = %x", s)
			}
			// Sum must not disturb the state.
			if s := h.Sum(nil); !bytes.Equal(s, want) {
				t.Fatalf("second Sum = %x", s)
			}

			// Parts API.
			m, _ := NewMAC(key)
			if len(msg) >= 20 {
				if p := m.Sum(msg[:3], nil, msg[3:20], msg[20:]); !bytes.Equal(p[:], want) {
					t.Fatalf("parts Sum = %x", p)
				}
			}

			// Verification, full and truncated.
			for n := MinTagSize; n <= Size; n++ {
				if !Verify(key, msg, want[:n]) || !m.Verify(want[:n], msg) {
					t.Fatalf("Verify rejects the first %d bytes of a good tag", n)
				}
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 16)
	msg := []byte("the quick brown fox")
	good, _ := Sum(key, msg)
	for i := range good {
		bad := good
		bad[i] ^= 0x01
		if Verify(key, msg, bad[:]) {
			t.Errorf("accepted tag with byte %d flipped", i)
		}
	}
	if Verify(key, msg, good[:MinTagSize-1]) {
		t.Error("accepted a tag shorter than MinTagSize")
	}
	if Verify(key, msg, nil) {
		t.Error("accepted an empty tag")
	}
	if Verify(key, msg, append(good[:], 0)) {
		t.Error("accepted a 17-byte tag")
	}
	if Verify(key, append(msg, 0), good[:]) {
		t.Error("accepted the tag of another message")
	}
	if Verify(key[:15], msg, good[:]) {
		t.Error("accepted with a bad key")
	}
}

func TestKeySizes(t *testing.T) {
	for n := 0; n <= 40; n++ {
		_, err := NewMAC(make([]byte, n))
		ok := n == 16 || n == 24 || n == 32
		if (err == nil) != ok {
			t.Errorf("NewMAC(%d-byte key) error = %v", n, err)
		}
		if _, err := New(make([]byte, n)); (err == nil) != ok {
			t.Errorf("New(%d-byte key) error = %v", n, err)
		}
		if _, err := Sum(make([]byte, n), nil); (err == nil) != ok {
			t.Errorf("Sum(%d-byte key) error = %v", n, err)
		}
	}
}

func TestHashInterface(t *testing.T) {
	h, _ := New(make([]byte, 32))
	if h.Size() != 16 || h.BlockSize() != 16 {
		t.Fatalf("Size %d BlockSize %d", h.Size(), h.BlockSize())
	}
	// Random lengths and write patterns agree with the one-shot API.
	m, _ := NewMAC(make([]byte, 32))
	buf := make([]byte, 300)
	rand.Read(buf)
	for n := 0; n < len(buf); n += 7 {
		h.Reset()
		for off := 0; off < n; {
			step := 1 + (off*13)%37
			step = min(step, n-off)
			h.Write(buf[off : off+step])
			off += step
		}
		want := m.Sum(buf[:n])
		if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Fatalf("n=%d: stream %x, one-shot %x", n, got, want)
		}
	}
}

// The key, the subkeys and the state never appear in fmt output.
func TestNoKeyInFmt(t *testing.T) {
	key := unhex(t, "2b7e151628aed2a6abf7158809cf4f3c")
	m, _ := NewMAC(key)
	h, _ := New(key)
	h.Write([]byte("0123456789abcdef0123"))
	for _, v := range []any{m, *m, h} {
		s := fmt.Sprintf("%v %+v %#v %s %x %X %q", v, v, v, v, v, v, v)
		for _, secret := range []string{"2b7e1516", "fbeed618", "f7ddac30", "7df76b0c"} {
			if strings.Contains(strings.ToLower(s), secret) {
				t.Errorf("fmt output %q leaks %s", s, secret)
			}
		}
	}
}

func BenchmarkSum(b *testing.B) {
	for _, size := range []int{16, 64, 1024, 8192} {
		for _, keyLen := range []int{16, 32} {
			b.Run(fmt.Sprintf("AES-%d/%dB", keyLen*8, size), func(b *testing.B) {
				m, _ := NewMAC(make([]byte, keyLen))
				msg := make([]byte, size)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					m.Sum(msg)
				}
			})
		}
	}
}

func BenchmarkNewMAC(b *testing.B) {
	key := make([]byte, 16)
	b.ReportAllocs()
	for b.Loop() {
		NewMAC(key)
	}
}
