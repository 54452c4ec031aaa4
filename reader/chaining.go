package reader

import (
	"context"
	"fmt"

	"github.com/valuechip/valuechip/apdu"
)

// claChaining is the command-chaining bit, b5 of CLA, in both the first and
// the further interindustry classes (ISO/IEC 7816-4 §5.4.1).
const claChaining = 0x10

// Chaining is the command-chaining middleware (ISO/IEC 7816-4 §5.3.3) for a
// path that carries at most maxData command data bytes per APDU; maxData <
// 1 means apdu.MaxShortNc (255), a reader limited to short APDUs. A path
// with maxData <= 255 is short-only.
//
// A command whose data exceeds maxData is cut into blocks of maxData bytes.
// Every block but the last goes out with the chaining bit (CLA | 0x10) and
// without Le (case 3); the last keeps the original CLA and carries the Ne.
// The card must answer 9000 to every intermediate block; any other answer
// (6883, 6884, 6A80, ...) ends the chain and is returned as the result.
//
// On a short-only path a command whose Ne exceeds 256, or that is encoded in
// the extended form though its data fits, is re-encoded in the short form
// with Le 00 (Ne 256): the card then delivers the rest with 61xx, so put
// GetResponse outside Chaining. Commands that fit are passed through
// unchanged, extended ones included when maxData allows their Nc.
//
// Chaining sets b5 whatever the class; ISO defines it for the interindustry
// classes and GlobalPlatform chains its own commands through P1 instead
// (GPCS v2.3.1 §11.1.5.1), so do not send large proprietary commands through
// it. Under WithRaw the command passes through untouched.
func Chaining(maxData int) Middleware {
	if maxData < 1 {
		maxData = apdu.MaxShortNc
	}
	shortOnly := maxData <= apdu.MaxShortNc
	return func(next Transceiver) Transceiver {
		return TransceiverFunc(func(ctx context.Context, cmd []byte) ([]byte, error) {
			if IsRaw(ctx) {
				return next.Transceive(ctx, cmd)
			}
			c, err := apdu.ParseCommand(cmd)
			if err != nil {
				return next.Transceive(ctx, cmd) // let the card judge it
			}
			if shortOnly && c.Ne > apdu.MaxShortNe {
				c.Ne = apdu.MaxShortNe
			}
			if len(c.Data) <= maxData {
				if shortOnly && isExtended(cmd) {
					b, err := c.BytesShort()
					if err != nil {
						return nil, fmt.Errorf("reader: chaining: %w", err)
					}
					cmd = b
				}
				return next.Transceive(ctx, cmd)
			}
			return chain(ctx, next, c, maxData)
		})
	}
}

// isExtended reports whether a well-formed command uses the extended form:
// after the header, a 00 byte followed by more bytes (ISO/IEC 7816-4 §5.1).
func isExtended(cmd []byte) bool { return len(cmd) > 5 && cmd[4] == 0 }

// chain sends c in blocks of at most maxData bytes.
func chain(ctx context.Context, next Transceiver, c apdu.Command, maxData int) ([]byte, error) {
	data := c.Data
	for block := 1; ; block++ {
		last := len(data) <= maxData
		b := c
		b.Data = data
		if !last {
			b.Data = data[:maxData]
			b.CLA |= claChaining
			b.Ne = 0
		}
		enc, err := b.Bytes()
		if err != nil {
			return nil, fmt.Errorf("reader: chaining block %d: %w", block, err)
		}
		resp, err := next.Transceive(ctx, enc)
		if err != nil {
			return nil, fmt.Errorf("reader: chaining block %d: %w", block, err)
		}
		if last {
			return resp, nil
		}
		if n := len(resp); n < 2 || resp[n-2] != 0x90 || resp[n-1] != 0x00 {
			return resp, nil // the card refused the chain: its answer is the result
		}
		data = data[maxData:]
	}
}
