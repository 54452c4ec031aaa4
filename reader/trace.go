package reader

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/valuechip/valuechip/apdu"
)

// Instruction names a trace decodes. Interindustry classes (CLA b8 = 0)
// use ISO/IEC 7816-4 §11 Table 4; proprietary classes use the
// GlobalPlatform table (GPCS v2.3.1 §11 Table 11-10, Amendment D §7), since
// an 80-class INS means whatever the application defines and GP's is the
// only proprietary set common to every card. A name is a hint, not a
// decoding.
var (
	interindustryNames = map[byte]string{
		0x0E: "ERASE BINARY",
		0x20: "VERIFY",
		0x24: "CHANGE REFERENCE DATA",
		0x2A: "PERFORM SECURITY OPERATION",
		0x2C: "RESET RETRY COUNTER",
		0x44: "ACTIVATE FILE",
		0x70: "MANAGE CHANNEL",
		0x82: "EXTERNAL AUTHENTICATE",
		0x84: "GET CHALLENGE",
		0x88: "INTERNAL AUTHENTICATE",
		0xA4: "SELECT",
		0xB0: "READ BINARY",
		0xB2: "READ RECORD",
		0xC0: "GET RESPONSE",
		0xC2: "ENVELOPE",
		0xCA: "GET DATA",
		0xCB: "GET DATA",
		0xD6: "UPDATE BINARY",
		0xDA: "PUT DATA",
		0xDC: "UPDATE RECORD",
		0xE2: "APPEND RECORD",
	}
	globalPlatformNames = map[byte]string{
		0x50: "INITIALIZE UPDATE",
		0x78: "END R-MAC SESSION",
		0x7A: "BEGIN R-MAC SESSION",
		0x82: "EXTERNAL AUTHENTICATE",
		0xCA: "GET DATA",
		0xCB: "GET DATA",
		0xD8: "PUT KEY",
		0xE2: "STORE DATA",
		0xE4: "DELETE",
		0xE6: "INSTALL",
		0xE8: "LOAD",
		0xF0: "SET STATUS",
		0xF2: "GET STATUS",
	}
)

// CommandName returns the name of an instruction in its class ("SELECT"
// for 00 A4, "INSTALL" for 80 E6) or "" when the trace table does not know
// it.
func CommandName(cla, ins byte) string {
	if cla&0x80 == 0 {
		return interindustryNames[ins]
	}
	return globalPlatformNames[ins]
}

// TraceOption tunes Trace.
type TraceOption func(*traceConfig)

type traceConfig struct {
	names bool
	mask  Masker
	now   func() time.Time
}

// TraceNames appends the command name ("SELECT", "VERIFY") to command lines.
func TraceNames() TraceOption { return func(c *traceConfig) { c.names = true } }

// TraceMasker replaces DefaultMasker. WithSensitive still masks all data.
func TraceMasker(m Masker) TraceOption {
	return func(c *traceConfig) {
		if m != nil {
			c.mask = m
		}
	}
}

// TraceClock sets the clock that times exchanges (time.Now by default);
// tests inject a fake one.
func TraceClock(now func() time.Time) TraceOption {
	return func(c *traceConfig) {
		if now != nil {
			c.now = now
		}
	}
}

// Trace is the logging middleware. It writes one line per command before
// sending it and one per answer, in the dump's direction markers:
//
//	>> 00A4040007A000000151000000  SELECT
//	<< 6F108408A000000151000000A5049F6501FF  9000 (success)  [0.123 ms]
//	>> 0020008008****************  VERIFY
//	<< 63C2 (verification failed, 2 tries left)  [1.250 ms]
//	>> 00B0000000  READ BINARY
//	<< error: reader: the card was removed  [0.020 ms]
//
// Secret bytes, as the masker (DefaultMasker unless TraceMasker says
// otherwise) or WithSensitive decide, are written "**" per byte so the
// length stays visible. The response data is followed by the decoded status
// word (apdu.SW.String) and the time the layers below took. A write error
// never fails the exchange. Trace does not change commands, so it behaves
// the same under WithRaw. Put it first in a Stack to see what the caller
// sees, last to see every TPDU-level round.
func Trace(w io.Writer, opts ...TraceOption) Middleware {
	cfg := traceConfig{mask: DefaultMasker, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	var mu sync.Mutex // serialises lines and the mask state
	masks := newMaskTracker(cfg.mask)
	return func(next Transceiver) Transceiver {
		return TransceiverFunc(func(ctx context.Context, cmd []byte) ([]byte, error) {
			sensitive := IsSensitive(ctx)
			mu.Lock()
			line := cfg.commandLine(cmd, masks.command(sensitive, cmd))
			_, _ = io.WriteString(w, line)
			mu.Unlock()

			start := cfg.now()
			resp, err := next.Transceive(ctx, cmd)
			elapsed := cfg.now().Sub(start)

			mu.Lock()
			if err != nil {
				masks.response(sensitive, cmd, nil)
				line = errorLine(err, elapsed)
			} else {
				line = responseLine(resp, masks.response(sensitive, cmd, resp), elapsed)
			}
			_, _ = io.WriteString(w, line)
			mu.Unlock()
			return resp, err
		})
	}
}

func (cfg *traceConfig) commandLine(cmd []byte, secret []Span) string {
	var sb strings.Builder
	sb.WriteString(">> ")
	writeMaskedHex(&sb, cmd, secret)
	if cfg.names && len(cmd) >= 2 {
		if n := CommandName(cmd[0], cmd[1]); n != "" {
			sb.WriteString("  ")
			sb.WriteString(n)
		}
	}
	sb.WriteByte('\n')
	return sb.String()
}

func responseLine(resp []byte, secret []Span, elapsed time.Duration) string {
	var sb strings.Builder
	sb.WriteString("<< ")
	if len(resp) < 2 {
		writeMaskedHex(&sb, resp, secret)
		fmt.Fprintf(&sb, "  (malformed: %d bytes, no status word)", len(resp))
	} else {
		n := len(resp) - 2
		if n > 0 {
			writeMaskedHex(&sb, resp[:n], secret)
			sb.WriteString("  ")
		}
		sb.WriteString(apdu.NewSW(resp[n], resp[n+1]).String())
	}
	writeElapsed(&sb, elapsed)
	return sb.String()
}

func errorLine(err error, elapsed time.Duration) string {
	var sb strings.Builder
	sb.WriteString("<< error: ")
	sb.WriteString(oneLine(err.Error()))
	writeElapsed(&sb, elapsed)
	return sb.String()
}

func writeElapsed(sb *strings.Builder, d time.Duration) {
	fmt.Fprintf(sb, "  [%.3f ms]\n", float64(d)/float64(time.Millisecond))
}

// oneLine keeps free text on one line of a trace or dump.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
