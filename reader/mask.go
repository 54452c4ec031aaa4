package reader

import (
	"strings"

	"github.com/valuechip/valuechip/apdu"
)

// Span is a half-open byte range [Start, End) of an encoded command or
// response APDU.
type Span struct{ Start, End int }

// Masker decides which bytes of one exchange are secret, so that Trace and
// Record can hide them. cmd is the whole encoded command APDU and resp the
// whole response (data followed by SW1 SW2). cmdSecret must depend on cmd
// alone: Trace prints the command before the card answers and calls the
// masker with resp == nil to mask it. Spans reaching outside the bytes are
// clipped, and spans over the status word are ignored: a status word is
// never secret and always shown.
//
// Callers mark one exchange as secret whatever its command with
// WithSensitive; a masker does not need to look at the context.
type Masker func(cmd, resp []byte) (cmdSecret, respSecret []Span)

// NoMask is a Masker that hides nothing. Use it only on test cards.
func NoMask(cmd, resp []byte) (cmdSecret, respSecret []Span) { return nil, nil }

// Instructions the default masker knows (ISO/IEC 7816-4 §11; GPCS v2.3.1
// §11 and Appendix D; GP Amendment D §7).
const (
	insVerify         = 0x20
	insChangeRefData  = 0x24
	insResetRetry     = 0x2C
	insInitUpdate     = 0x50
	insExternalAuth   = 0x82
	insInternalAuth   = 0x88
	insGetResponse    = 0xC0
	insPutKey         = 0xD8
	insStoreData      = 0xE2
	macLen            = 8  // C-MAC length in SCP02/SCP03 (AMD-D §6.2.4)
	initUpdateVisible = 13 // key diversification data (10) || key information (3)
)

// DefaultMasker hides what a trace or a recording must never show:
//
//   - the data of VERIFY (20), CHANGE REFERENCE DATA (24) and RESET RETRY
//     COUNTER (2C): PINs and PUKs (ISO/IEC 7816-4 §11.5.6-§11.5.10);
//   - the data of PUT KEY (D8, GPCS §11.8) and STORE DATA (E2, GPCS §11.11):
//     key values and personalisation secrets;
//   - the data of EXTERNAL AUTHENTICATE (82): host cryptogram and C-MAC
//     (GPCS §D.4.2, AMD-D §7.1.2);
//   - the data and the response data of INTERNAL AUTHENTICATE (88);
//   - the response data of INITIALIZE UPDATE (50) from byte 13 on: card
//     challenge, card cryptogram and sequence counter (AMD-D §7.1.1; in SCP03
//     the cryptogram is bytes 21..28, masking from 13 also covers SCP02's
//     layout and denies an offline key search its challenge/cryptogram pair);
//   - the trailing 8-byte C-MAC of secure-messaging commands: CLA b3 (04) set
//     in first interindustry and GP proprietary classes, b6 (20) set in
//     further classes (ISO/IEC 7816-4 §5.4.1, GPCS §11.1.4).
//
// A command that does not parse but names one of these instructions has
// everything after its header masked.
func DefaultMasker(cmd, resp []byte) (cmdSecret, respSecret []Span) {
	if len(cmd) < 4 {
		return nil, nil
	}
	ins := cmd[1]
	data, ok := dataSpan(cmd)
	if !ok {
		if secretINS(ins) || secureMessaging(cmd[0]) {
			cmdSecret = []Span{{4, len(cmd)}}
		}
		if respSecretINS(ins) {
			respSecret = []Span{{0, len(resp)}}
		}
		return cmdSecret, respSecret
	}
	switch {
	case secretINS(ins):
		cmdSecret = []Span{data}
	case secureMessaging(cmd[0]) && data.End > data.Start:
		start := max(data.Start, data.End-macLen)
		cmdSecret = []Span{{start, data.End}}
	}
	switch ins {
	case insInitUpdate:
		respSecret = []Span{{initUpdateVisible, len(resp)}}
	case insInternalAuth:
		respSecret = []Span{{0, len(resp)}}
	}
	return cmdSecret, respSecret
}

// secretINS reports instructions whose whole command data is secret.
func secretINS(ins byte) bool {
	switch ins {
	case insVerify, insChangeRefData, insResetRetry, insPutKey, insExternalAuth, insInternalAuth, insStoreData:
		return true
	}
	return false
}

// respSecretINS reports instructions whose response data is (partly) secret.
func respSecretINS(ins byte) bool { return ins == insInitUpdate || ins == insInternalAuth }

// secureMessaging reports whether a class byte announces secure messaging
// (ISO/IEC 7816-4 §5.4.1; GPCS §11.1.4 Tables 11-11/11-12 reuse the layout in
// proprietary classes: 84..87 and E0..EF carry a C-MAC).
func secureMessaging(cla byte) bool {
	if cla == 0xFF {
		return false // invalid CLA, reserved for PPS (ISO/IEC 7816-3 §9)
	}
	if cla&0x40 != 0 { // further classes: b6
		return cla&0x20 != 0
	}
	return cla&0x0C != 0 // first classes: b4b3
}

// dataSpan returns where the command data sits in an encoded command
// (ISO/IEC 7816-4 §5.1: after a 1-byte short Lc or a 3-byte extended Lc).
func dataSpan(cmd []byte) (Span, bool) {
	c, err := apdu.ParseCommand(cmd)
	if err != nil {
		return Span{}, false
	}
	if len(c.Data) == 0 {
		return Span{}, true
	}
	start := 5
	if cmd[4] == 0 {
		start = 7
	}
	return Span{start, start + len(c.Data)}, true
}

// sensitiveSpans masks all data in both directions, for WithSensitive.
func sensitiveSpans(cmd, resp []byte) (cmdSecret, respSecret []Span) {
	if d, ok := dataSpan(cmd); ok {
		cmdSecret = []Span{d}
	} else if len(cmd) > 4 {
		cmdSecret = []Span{{4, len(cmd)}}
	}
	return cmdSecret, []Span{{0, len(resp)}}
}

// MaskHex renders b in upper-case hex with every byte inside a secret span
// written as "**", so the length stays visible.
func MaskHex(b []byte, secret []Span) string {
	var sb strings.Builder
	writeMaskedHex(&sb, b, secret)
	return sb.String()
}

func writeMaskedHex(sb *strings.Builder, b []byte, secret []Span) {
	const digits = "0123456789ABCDEF"
	sb.Grow(2 * len(b))
	for i, x := range b {
		if inSpans(i, secret) {
			sb.WriteString("**")
			continue
		}
		sb.WriteByte(digits[x>>4])
		sb.WriteByte(digits[x&0x0F])
	}
}

func inSpans(i int, spans []Span) bool {
	for _, s := range spans {
		if i >= s.Start && i < s.End {
			return true
		}
	}
	return false
}

// clipSpans limits spans to [0, n).
func clipSpans(spans []Span, n int) []Span {
	out := spans[:0:0]
	for _, s := range spans {
		s.Start, s.End = max(s.Start, 0), min(s.End, n)
		if s.Start < s.End {
			out = append(out, s)
		}
	}
	return out
}

// maskTracker applies a Masker to a sequence of exchanges on one card. It
// follows T=0 GET RESPONSE rounds (ISO/IEC 7816-4 §5.3.4): when a command
// was answered 61xx, the data of the GET RESPONSE answers that follow is the
// rest of that command's response, so it is masked with the first command's
// rules at the right offsets. Without this, a tracer below GetResponse would
// print INITIALIZE UPDATE's cryptogram in the clear. Callers serialise use.
type maskTracker struct {
	mask   Masker
	origin []byte // last command that was not a GET RESPONSE continuation
	offset int    // response data of origin seen so far
	more   bool   // origin's last answer was 61xx
	secret bool   // origin was marked WithSensitive
}

func newMaskTracker(m Masker) *maskTracker {
	if m == nil {
		m = DefaultMasker
	}
	return &maskTracker{mask: m}
}

// command returns the secret spans of cmd.
func (t *maskTracker) command(sensitive bool, cmd []byte) []Span {
	var spans []Span
	if sensitive {
		spans, _ = sensitiveSpans(cmd, nil)
	} else {
		spans, _ = t.mask(cmd, nil)
	}
	return clipSpans(spans, len(cmd))
}

// response returns the secret spans of resp, the answer to cmd (nil resp
// for a transport error), and advances the GET RESPONSE state.
func (t *maskTracker) response(sensitive bool, cmd, resp []byte) []Span {
	n := len(resp) - 2 // data length; the status word is never masked
	if n < 0 {
		n = len(resp) // malformed: no status word, treat it all as data
	}
	var spans []Span
	continuation := t.more && len(cmd) >= 4 && cmd[1] == insGetResponse
	switch {
	case sensitive, continuation && t.secret:
		spans = []Span{{0, n}}
	case continuation:
		// Mask as if the whole response so far were one answer to origin.
		full := make([]byte, t.offset+len(resp))
		copy(full[t.offset:], resp)
		_, s := t.mask(t.origin, full)
		for _, sp := range s {
			spans = append(spans, Span{sp.Start - t.offset, sp.End - t.offset})
		}
	default:
		_, spans = t.mask(cmd, resp)
	}
	if !continuation {
		t.origin = append(t.origin[:0], cmd...)
		t.offset = 0
		t.secret = sensitive
	}
	if len(resp) >= 2 && resp[len(resp)-2] == 0x61 {
		t.offset += n
		t.more = true
	} else {
		t.more = false
	}
	return clipSpans(spans, n)
}
