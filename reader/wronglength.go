package reader

import (
	"context"

	"github.com/valuechip/valuechip/apdu"
)

// WrongLength is the 6Cxx middleware (ISO/IEC 7816-3 §12.2.2 case 2S,
// ISO/IEC 7816-4 §5.6 and Annex A): when the card answers SW1 = 6C, "wrong
// Le, xx is the exact length", the same command is sent again once with Ne =
// xx (short Le = xx, 00 meaning 256) and that second answer is returned,
// whatever it is. A command that does not parse, or whose re-encoding fails,
// gets the card's 6Cxx back unchanged.
//
// Under WithRaw the command and the response pass through untouched.
func WrongLength() Middleware {
	return func(next Transceiver) Transceiver {
		return TransceiverFunc(func(ctx context.Context, cmd []byte) ([]byte, error) {
			resp, err := next.Transceive(ctx, cmd)
			if err != nil || IsRaw(ctx) || len(resp) < 2 || resp[len(resp)-2] != 0x6C {
				return resp, err
			}
			c, perr := apdu.ParseCommand(cmd)
			if perr != nil {
				return resp, nil
			}
			c.Ne, _ = apdu.NewSW(resp[len(resp)-2], resp[len(resp)-1]).CorrectLength()
			var again []byte
			if len(c.Data) <= apdu.MaxShortNc {
				again, perr = c.BytesShort()
			} else {
				again, perr = c.BytesExtended() // Nc forces the extended form; Le follows it
			}
			if perr != nil {
				return resp, nil
			}
			return next.Transceive(ctx, again)
		})
	}
}
