package connect

import (
	"io"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/atr"
	"github.com/valuechip/valuechip/reader"
)

// StackOptions tune the host stack built by Stack.
type StackOptions struct {
	// Trace, when set, receives a line per exchange on the wire (below GET
	// RESPONSE and chaining, so every real round is shown), secrets masked.
	Trace io.Writer
	// MaxData is the largest command data the reader takes in one APDU;
	// longer commands are chained. 0 derives it from the ATR (MaxDataFor).
	MaxData int
}

// Stack builds the host's usual middleware on conn, outermost first: GET
// RESPONSE (61xx), re-send with the right Le (6Cxx), chaining, and tracing
// at the wire. GET RESPONSE sits outside chaining because only the last
// block of a chain carries Le and may be answered 61xx (ISO/IEC 7816-4
// §5.3.3, §5.3.4).
func Stack(conn reader.Conn, o StackOptions) reader.Transceiver {
	max := o.MaxData
	if max <= 0 {
		max = MaxDataFor(conn.ATR())
	}
	var wire reader.Transceiver = conn
	if o.Trace != nil {
		wire = reader.Trace(o.Trace, reader.TraceNames())(conn)
	}
	return reader.Stack(wire, reader.GetResponse(), reader.WrongLength(), reader.Chaining(max))
}

// MaxDataFor returns the command data size a card takes in one APDU: 65535
// when its ATR's card capabilities announce extended Lc/Le (ISO/IEC 7816-4
// §12.1.1.9, third software function table, b7), 255 otherwise.
func MaxDataFor(atrBytes []byte) int {
	a, err := atr.Parse(atrBytes)
	if err != nil {
		return apdu.MaxShortNc
	}
	h, err := atr.ParseHistorical(a.Historical)
	if err != nil {
		return apdu.MaxShortNc
	}
	if c, ok := h.Capabilities(); ok && c.ExtendedLength() {
		return apdu.MaxExtendedNc
	}
	return apdu.MaxShortNc
}
