package iso8583

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzUnpack: Unpack never panics; whatever it accepts is canonical and its
// DE 55 decodes or fails with ErrMalformed. Seeds: testdata/fuzz/FuzzUnpack.
func FuzzUnpack(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, err := Unpack(raw)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		again, err := msg.Pack()
		if err != nil {
			t.Fatalf("accepted message does not pack: %v", err)
		}
		if !bytes.Equal(again, raw) {
			t.Fatalf("accepted message is not canonical")
		}
		_ = VerifyMAC(msg, raw, exWK)
		var v Transaction
		_ = Unmarshal(msg, &v)
		if icc, err := msg.GetBytes(DEICC); err == nil && len(icc) > 0 {
			if _, err := DecodeICC(icc); err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("DE 55 error does not wrap ErrMalformed: %v", err)
			}
		}
	})
}

// FuzzReadMessage: ReadMessage never returns more than maxLen bytes, returns
// exactly the framed bytes, and fails only with the documented errors.
// Seeds: testdata/fuzz/FuzzReadMessage.
func FuzzReadMessage(f *testing.F) {
	const maxLen = 512
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := ReadMessage(bytes.NewReader(data), maxLen)
		if err != nil {
			if !errors.Is(err, ErrOversize) && !errors.Is(err, ErrMalformed) &&
				!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error: %v", err)
			}
			return
		}
		n := int(data[0])<<8 | int(data[1])
		if len(msg) != n || n > maxLen || n == 0 || !bytes.Equal(msg, data[2:2+n]) {
			t.Fatalf("frame of %d bytes returned %d", n, len(msg))
		}
	})
}
