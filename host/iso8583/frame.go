package iso8583

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/moov-io/iso8583/network"
)

// MaxFrame is the largest message a 2-byte length header can announce.
const MaxFrame = math.MaxUint16

// WriteMessage writes one packed message preceded by its 2-byte big-endian
// length (moov network.Binary2Bytes, docs/iso8583.md §8). Header and message
// go out in one Write so that concurrent writers serialised by the caller
// never interleave partial frames.
func WriteMessage(w io.Writer, msg []byte) error {
	if len(msg) == 0 {
		return fmt.Errorf("%w: empty message", ErrMalformed)
	}
	h := network.NewBinary2BytesHeader()
	if err := h.SetLength(len(msg)); err != nil {
		return fmt.Errorf("%w: %d bytes: %v", ErrOversize, len(msg), err)
	}
	var buf bytes.Buffer
	buf.Grow(2 + len(msg))
	if _, err := h.WriteTo(&buf); err != nil {
		return fmt.Errorf("iso8583: frame header: %w", err)
	}
	buf.Write(msg)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("iso8583: write frame: %w", err)
	}
	return nil
}

// ReadMessage reads one frame and returns the message bytes. A header
// announcing more than maxLen bytes (or more than MaxFrame) is refused with
// ErrOversize before anything is allocated, a zero length with ErrMalformed;
// the connection should then be closed, as the stream is out of step. A clean
// end of stream before the header returns io.EOF; a frame cut short wraps
// io.ErrUnexpectedEOF.
func ReadMessage(r io.Reader, maxLen int) ([]byte, error) {
	if maxLen <= 0 || maxLen > MaxFrame {
		maxLen = MaxFrame
	}
	h := network.NewBinary2BytesHeader()
	if _, err := h.ReadFrom(r); err != nil {
		if errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("iso8583: read frame header: %w", err)
	}
	n := h.Length()
	switch {
	case n == 0:
		return nil, fmt.Errorf("%w: zero-length frame", ErrMalformed)
	case n > maxLen:
		return nil, fmt.Errorf("%w: %d bytes announced, limit %d", ErrOversize, n, maxLen)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("iso8583: read frame body (%d bytes): %w", n, err)
	}
	return buf, nil
}
