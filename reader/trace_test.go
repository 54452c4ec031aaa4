package reader

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock returns a clock that moves step forward at every reading, so an
// exchange timed by two readings takes exactly step.
func fakeClock(step time.Duration) func() time.Time {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		now = now.Add(step)
		return now
	}
}

// Secrets used in the session below. None may appear in a trace or a
// recording.
const (
	testPIN       = "3132333435363738"
	testHostCrypt = "A1A2A3A4A5A6A7A8"
	testCMAC      = "B1B2B3B4B5B6B7B8"
	testKey       = "404142434445464748494A4B4C4D4E4F"
	testCardChal  = "C1C2C3C4C5C6C7C8"
	testCardCrypt = "D1D2D3D4D5D6D7D8"
	testSMMAC     = "E1E2E3E4E5E6E7E8"
	testSensitive = "5A5B5C5D"
)

var secrets = []string{testPIN, testHostCrypt, testCMAC, testKey, testCardChal, testCardCrypt, testSMMAC, testSensitive}

// initUpdateResp is an SCP03 INITIALIZE UPDATE answer (AMD-D §7.1.1): key
// diversification data, key information, card challenge, card cryptogram,
// sequence counter.
const initUpdateResp = "00010203040506070809" + "300370" + testCardChal + testCardCrypt + "000001"

// tracedStep is one call in a traced session.
type tracedStep struct {
	sensitive bool
	ex        exchange
	want      []string // the trace lines it produces
}

func traceSession() []tracedStep {
	return []tracedStep{
		{
			ex: exchange{cmd: "00A4040007A000000151000000", resp: "6F10 8408A000000151000000 A5049F6501FF 9000"},
			want: []string{
				">> 00A4040007A000000151000000  SELECT",
				"<< 6F108408A000000151000000A5049F6501FF  9000 (success)  [0.125 ms]",
			},
		},
		{
			ex: exchange{cmd: "0020008108" + testPIN, resp: "63C2"},
			want: []string{
				">> 0020008108****************  VERIFY",
				"<< 63C2 (verification failed, 2 tries left)  [0.125 ms]",
			},
		},
		{
			ex: exchange{cmd: "8050000008 1122334455667788 00", resp: initUpdateResp + "9000"},
			want: []string{
				">> 80500000081122334455667788" + "00  INITIALIZE UPDATE",
				"<< 00010203040506070809300370" + strings.Repeat("**", 19) + "  9000 (success)  [0.125 ms]",
			},
		},
		{
			ex: exchange{cmd: "8482330010" + testHostCrypt + testCMAC, resp: "9000"},
			want: []string{
				">> 8482330010" + strings.Repeat("**", 16) + "  EXTERNAL AUTHENTICATE",
				"<< 9000 (success)  [0.125 ms]",
			},
		},
		{
			ex: exchange{cmd: "84D801811E" + "88" + "10" + testKey + "03" + "112233" + testSMMAC, resp: "01112233 9000"},
			want: []string{
				">> 84D801811E" + strings.Repeat("**", 0x1E) + "  PUT KEY",
				"<< 01112233  9000 (success)  [0.125 ms]",
			},
		},
		{
			ex: exchange{cmd: "84F280000A4F00" + testSMMAC + "00", resp: "E3 9000"},
			want: []string{
				">> 84F280000A4F00" + strings.Repeat("**", 8) + "00  GET STATUS",
				"<< E3  9000 (success)  [0.125 ms]",
			},
		},
		{
			sensitive: true,
			ex:        exchange{cmd: "80CA00CF00", resp: testSensitive + "9000"},
			want: []string{
				">> 80CA00CF00  GET DATA",
				"<< ********  9000 (success)  [0.125 ms]",
			},
		},
		{
			sensitive: true,
			ex:        exchange{cmd: "80E2800003" + "5A5B5C", resp: "9000"},
			want: []string{
				">> 80E2800003******  STORE DATA",
				"<< 9000 (success)  [0.125 ms]",
			},
		},
		{
			ex: exchange{cmd: "00B0000000", err: ErrCardRemoved},
			want: []string{
				">> 00B0000000  READ BINARY",
				"<< error: reader: the card was removed  [0.125 ms]",
			},
		},
		{
			ex: exchange{cmd: "00FE0000", resp: "90"},
			want: []string{
				">> 00FE0000",
				"<< 90  (malformed: 1 bytes, no status word)  [0.125 ms]",
			},
		},
	}
}

func TestTraceGolden(t *testing.T) {
	session := traceSession()
	var script []exchange
	var want []string
	for _, s := range session {
		script = append(script, s.ex)
		want = append(want, s.want...)
	}
	var out bytes.Buffer
	tr := Trace(&out, TraceNames(), TraceClock(fakeClock(125*time.Microsecond)))(scripted(t, script...))
	for _, s := range session {
		ctx := t.Context()
		if s.sensitive {
			ctx = WithSensitive(ctx)
		}
		_, _ = tr.Transceive(ctx, unhex(t, s.ex.cmd))
	}
	require.Equal(t, strings.Join(want, "\n")+"\n", out.String())
	for _, secret := range secrets {
		require.NotContains(t, out.String(), secret)
	}
}

// TestTraceBelowGetResponse traces the T=0 rounds of INITIALIZE UPDATE: the
// cryptogram arrives in the GET RESPONSE answer and must still be masked.
func TestTraceBelowGetResponse(t *testing.T) {
	var out bytes.Buffer
	card := scripted(t,
		exchange{cmd: "80500000081122334455667788", resp: "6110"},
		exchange{cmd: "00C0000010", resp: initUpdateResp[:32] + "6110"},
		exchange{cmd: "00C0000010", resp: initUpdateResp[32:] + "9000"},
		exchange{cmd: "00B0000004", resp: "0102 6102"},
		exchange{cmd: "00C0000002", resp: "0304 9000"},
	)
	tr := Stack(card, GetResponse(), Trace(&out, TraceClock(fakeClock(0))))
	got, err := tr.Transceive(t.Context(), unhex(t, "80500000081122334455667788"))
	require.NoError(t, err)
	require.Equal(t, unhex(t, initUpdateResp+"9000"), got)
	_, err = tr.Transceive(t.Context(), unhex(t, "00B0000004"))
	require.NoError(t, err)
	require.Equal(t, strings.Join([]string{
		">> 80500000081122334455667788",
		"<< 6110 (16 bytes remaining)  [0.000 ms]",
		">> 00C0000010",
		"<< 00010203040506070809300370******  6110 (16 bytes remaining)  [0.000 ms]",
		">> 00C0000010",
		"<< " + strings.Repeat("**", 16) + "  9000 (success)  [0.000 ms]",
		">> 00B0000004",
		"<< 0102  6102 (2 bytes remaining)  [0.000 ms]",
		">> 00C0000002",
		"<< 0304  9000 (success)  [0.000 ms]",
	}, "\n")+"\n", out.String())
	for _, secret := range secrets {
		require.NotContains(t, out.String(), secret)
	}
}

func TestTraceMaskerOption(t *testing.T) {
	var out bytes.Buffer
	tr := Trace(&out, TraceMasker(NoMask), TraceClock(fakeClock(time.Millisecond)))(scripted(t,
		exchange{cmd: "0020008104" + "31323334", resp: "9000"},
	))
	_, err := tr.Transceive(context.Background(), unhex(t, "002000810431323334"))
	require.NoError(t, err)
	require.Equal(t, ">> 002000810431323334\n<< 9000 (success)  [1.000 ms]\n", out.String())
}

func TestDefaultMasker(t *testing.T) {
	tests := []struct {
		name, cmd, resp string
		wantCmd         string
		wantResp        string
	}{
		{"VERIFY", "002000800431323334", "9000", "0020008004********", "9000"},
		{"CHANGE REFERENCE DATA", "00240080083132333435363738", "9000", "0024008008" + strings.Repeat("**", 8), "9000"},
		{"RESET RETRY COUNTER", "002C000002AABB", "9000", "002C000002****", "9000"},
		{"INTERNAL AUTHENTICATE", "00880000040102030400", "A1A2 9000", "0088000004********00", "****9000"},
		{"extended STORE DATA", "80E20000000003AABBCC", "9000", "80E20000000003******", "9000"},
		{"SM first interindustry, short data keeps nothing", "0CB0000004AABBCCDD00", "9000", "0CB0000004********00", "9000"},
		{"SM further interindustry", "60B000000A" + data(0, 10), "9000", "60B000000A0001" + strings.Repeat("**", 8), "9000"},
		{"no SM in further class without b6", "40B0000002AABB", "9000", "40B0000002AABB", "9000"},
		{"malformed VERIFY masks after the header", "0020008008313233", "6700", "00200080********", "6700"},
		{"malformed SELECT shown", "00A4040008A000", "6700", "00A4040008A000", "6700"},
		{"short command", "00", "6700", "00", "6700"},
		{"CLA FF is not SM", "FFCA000000", "9000", "FFCA000000", "9000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, resp := unhex(t, tc.cmd), unhex(t, tc.resp)
			m := newMaskTracker(nil)
			require.Equal(t, tc.wantCmd, MaskHex(cmd, m.command(false, cmd)))
			n := len(resp) - 2
			require.Equal(t, tc.wantResp, MaskHex(resp[:n], m.response(false, cmd, resp))+MaskHex(resp[n:], nil))
		})
	}
}

func TestCommandName(t *testing.T) {
	for _, tc := range []struct {
		cla, ins byte
		want     string
	}{
		{0x00, 0xA4, "SELECT"}, {0x00, 0xC0, "GET RESPONSE"}, {0x00, 0x20, "VERIFY"}, {0x00, 0xCA, "GET DATA"},
		{0x00, 0x70, "MANAGE CHANNEL"}, {0x00, 0x84, "GET CHALLENGE"}, {0x00, 0xB0, "READ BINARY"},
		{0x01, 0xA4, "SELECT"}, {0x00, 0xE2, "APPEND RECORD"},
		{0x80, 0xD8, "PUT KEY"}, {0x80, 0x50, "INITIALIZE UPDATE"}, {0x84, 0x82, "EXTERNAL AUTHENTICATE"},
		{0x84, 0xE6, "INSTALL"}, {0x84, 0xE8, "LOAD"}, {0x84, 0xE4, "DELETE"}, {0x80, 0xF2, "GET STATUS"},
		{0x84, 0xE2, "STORE DATA"}, {0x80, 0xCA, "GET DATA"},
		// A proprietary instruction is not named after an ISO one of the same byte.
		{0x80, 0x20, ""}, {0x80, 0xA4, ""}, {0x00, 0xE6, ""}, {0x00, 0x01, ""},
	} {
		require.Equal(t, tc.want, CommandName(tc.cla, tc.ins), "CLA %02X INS %02X", tc.cla, tc.ins)
	}
}

func TestSensitiveMasksAllData(t *testing.T) {
	for _, tc := range []struct{ cmd, want string }{
		{"00A4040002AABB00", "00A4040002****00"},
		{"00A4040009AABB", "00A40400******"}, // malformed: all after the header
		{"00B0000000", "00B0000000"},
	} {
		cmd := unhex(t, tc.cmd)
		m := newMaskTracker(NoMask)
		require.Equal(t, tc.want, MaskHex(cmd, m.command(true, cmd)), tc.cmd)
		resp := unhex(t, "01029000")
		require.Equal(t, "****", MaskHex(resp[:2], m.response(true, cmd, resp)))
	}
}
