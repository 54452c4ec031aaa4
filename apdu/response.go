package apdu

import (
	"errors"
	"fmt"
)

// ErrResponseTooShort reports a response without its two status bytes.
var ErrResponseTooShort = errors.New("apdu: response shorter than the 2 status bytes")

// Response is a response APDU: data followed by SW1 SW2.
type Response struct {
	Data []byte
	SW   SW
}

// ParseResponse splits a response into data and status word. Data aliases b.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("%w: %d bytes", ErrResponseTooShort, len(b))
	}
	n := len(b) - 2
	return Response{Data: b[:n], SW: NewSW(b[n], b[n+1])}, nil
}

// Bytes encodes the response.
func (r Response) Bytes() []byte {
	b := make([]byte, len(r.Data)+2)
	copy(b, r.Data)
	b[len(r.Data)], b[len(r.Data)+1] = r.SW.SW1(), r.SW.SW2()
	return b
}

// Err returns nil when the status word is 9000 and the status word otherwise.
func (r Response) Err() error { return r.SW.Err() }

// String renders the data in hex and the decoded status word.
func (r Response) String() string {
	if len(r.Data) == 0 {
		return r.SW.String()
	}
	// r.SW.String() explicitly: SW is also an error, and fmt's %s would
	// pick Error() ("card returned ...") over String().
	return fmt.Sprintf("%X %s", r.Data, r.SW.String())
}

// Status returns a bare response carrying only a status word, as a card
// answers an error.
func Status(sw SW) []byte { return []byte{sw.SW1(), sw.SW2()} }
