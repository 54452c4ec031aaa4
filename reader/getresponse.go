package reader

import (
	"context"
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/apdu"
)

// ErrTooManyRounds reports a card that keeps answering 61xx (or 6Cxx to GET
// RESPONSE) beyond the round limit. A broken card must not hang the host:
// OpenSC#1731 looped forever on exactly this.
var ErrTooManyRounds = errors.New("reader: too many GET RESPONSE rounds")

// ErrShortResponse reports a response without its two status bytes where a
// middleware needed them.
var ErrShortResponse = errors.New("reader: response shorter than the 2 status bytes")

// DefaultMaxRounds is GetResponse's round limit: 256 rounds of up to 256
// bytes cover the largest extended response (65536 bytes), as apdu4j's
// GetResponseWrapper does.
const DefaultMaxRounds = 256

// GetResponseOption tunes GetResponse.
type GetResponseOption func(*getResponseConfig)

type getResponseConfig struct {
	maxRounds int
	limitToNe bool
	cla       func(byte) byte
}

// MaxRounds sets how many GET RESPONSE commands one command may need before
// GetResponse gives up with ErrTooManyRounds (n < 1 keeps the default).
func MaxRounds(n int) GetResponseOption {
	return func(c *getResponseConfig) {
		if n > 0 {
			c.maxRounds = n
		}
	}
}

// LimitToNe makes GetResponse stop once it holds the Ne bytes the command
// asked for: each GET RESPONSE asks for at most what is still missing, and
// when the card still has more, the result ends with the card's last 61xx so
// that the caller can see (and fetch) the rest. A command without Le (Ne =
// 0, e.g. a case 4 command sent as case 3 over T=0) is not limited.
//
// The default fetches everything the card offers, as pySim and apdu4j do:
// a card only answers 61xx for data it means to deliver, and under T=0 the
// Le of a case 4 command never reaches the card (ISO/IEC 7816-3 §12.2.5).
func LimitToNe() GetResponseOption { return func(c *getResponseConfig) { c.limitToNe = true } }

// GetResponseCLA replaces the rule that derives the GET RESPONSE class byte
// from the command's class byte (see GetResponseClass). GSM 11.11 SIMs, for
// one, want CLA A0: GetResponseCLA(func(byte) byte { return 0xA0 }).
func GetResponseCLA(f func(cla byte) byte) GetResponseOption {
	return func(c *getResponseConfig) {
		if f != nil {
			c.cla = f
		}
	}
}

// GetResponseClass is the default class byte of the GET RESPONSE commands
// sent for a command of class cla. GET RESPONSE is an interindustry command
// (ISO/IEC 7816-4 §5.3.4 and Annex A; §11.7.1 in the 2013 edition), so it
// goes out in an interindustry class, without secure messaging (the
// response of a secured command is already complete on the card) and
// without chaining, on the logical channel of the command it continues
// (ISO/IEC 7816-4 §5.4.1):
//
//	first interindustry 0x00-0x3F  → 0x00 | channel (b2b1)
//	further interindustry 0x40-0x7F → 0x40 | channel-4 (b4..b1)
//
// Proprietary classes (b8 = 1) are treated the same way, because
// GlobalPlatform reuses the interindustry channel bits there (GPCS v2.3.1
// §11.1.4): 80/84 → 00, 81 → 01, C5/E5 → 45.
func GetResponseClass(cla byte) byte {
	if cla&0x40 != 0 {
		return 0x40 | cla&0x0F
	}
	return cla & 0x03
}

// GetResponse is the T=0 response-retrieval middleware (ISO/IEC 7816-4
// §5.3.4 and Annex A; ISO/IEC 7816-3 §12.2.5). When the card answers SW1 =
// 61, it sends GET RESPONSE `CLA C0 00 00 Le` with Le = SW2 (00 asks for
// 256 bytes), concatenating the data, until the card answers anything else;
// that last status word ends the result. When the card answers 6Cxx to a
// GET RESPONSE, the GET RESPONSE is re-issued with Le = xx. Every GET
// RESPONSE, re-issued or not, counts as a round; past MaxRounds (default
// 256) the call fails with ErrTooManyRounds instead of looping.
//
// Under WithRaw the command and the response pass through untouched.
func GetResponse(opts ...GetResponseOption) Middleware {
	cfg := getResponseConfig{maxRounds: DefaultMaxRounds, cla: GetResponseClass}
	for _, o := range opts {
		o(&cfg)
	}
	return func(next Transceiver) Transceiver {
		return TransceiverFunc(func(ctx context.Context, cmd []byte) ([]byte, error) {
			resp, err := next.Transceive(ctx, cmd)
			if err != nil || IsRaw(ctx) || len(resp) < 2 || resp[len(resp)-2] != 0x61 || len(cmd) < 4 {
				return resp, err
			}
			return cfg.collect(ctx, next, cmd, resp)
		})
	}
}

// collect runs the GET RESPONSE rounds after the first answer resp (61xx).
func (cfg *getResponseConfig) collect(ctx context.Context, next Transceiver, cmd, resp []byte) ([]byte, error) {
	ne := 0
	if cfg.limitToNe {
		ne = requestedNe(cmd)
	}
	out := append([]byte(nil), resp[:len(resp)-2]...)
	sw1, sw2 := resp[len(resp)-2], resp[len(resp)-1]
	gr := []byte{cfg.cla(cmd[0]), insGetResponse, 0x00, 0x00, 0x00}
	for rounds := 0; ; {
		var le int
		switch sw1 {
		case 0x61: // SW2 more bytes available
			le = int(sw2)
			if le == 0 {
				le = 256
			}
			if ne > 0 {
				if len(out) >= ne {
					return append(out, sw1, sw2), nil
				}
				le = min(le, ne-len(out))
			}
		case 0x6C: // wrong Le for the last GET RESPONSE: SW2 is the exact length
			le = int(sw2)
		default:
			return append(out, sw1, sw2), nil
		}
		if rounds >= cfg.maxRounds {
			return nil, fmt.Errorf("%w: card still answers %02X%02X after %d rounds", ErrTooManyRounds, sw1, sw2, rounds)
		}
		rounds++
		gr[4] = byte(le) // 256 encodes as 00
		r, err := next.Transceive(ctx, gr)
		if err != nil {
			return nil, fmt.Errorf("reader: GET RESPONSE round %d: %w", rounds, err)
		}
		if len(r) < 2 {
			return nil, fmt.Errorf("reader: GET RESPONSE round %d: %w: % X", rounds, ErrShortResponse, r)
		}
		sw1, sw2 = r[len(r)-2], r[len(r)-1]
		if sw1 != 0x6C { // a 6Cxx answer carries no data (ISO/IEC 7816-4 §5.6)
			out = append(out, r[:len(r)-2]...)
		}
	}
}

// requestedNe returns the command's Ne, or 0 when it has no Le or does not
// parse.
func requestedNe(cmd []byte) int {
	c, err := apdu.ParseCommand(cmd)
	if err != nil {
		return 0
	}
	return c.Ne
}
