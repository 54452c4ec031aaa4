package apdu_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
)

// h decodes test hex; a typo in a literal is a bug in the test itself.
func h(s string) []byte {
	b, err := apdu.DecodeHex(s)
	if err != nil {
		panic(err)
	}
	return b
}

// seq returns n bytes 00 01 02 ... so that data of a given length is easy
// to tell apart in failures.
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Valid encodings in every case and form, with the command each must parse
// to. extended marks inputs in the extended form, which BytesExtended must
// reproduce; the others are reproduced by BytesShort (ISO/IEC 7816-4 §5.1).
var parseCases = []struct {
	name     string
	in       []byte
	want     apdu.Command
	cas      apdu.Case
	extended bool
}{
	{"case 1", h("00 A4 04 00"), apdu.Command{INS: 0xA4, P1: 0x04}, apdu.Case1, false},
	{"case 2S Le 10", h("00 B0 00 00 10"), apdu.Command{INS: 0xB0, Ne: 16}, apdu.Case2, false},
	{"case 2S Le 01", h("00 84 00 00 01"), apdu.Command{INS: 0x84, Ne: 1}, apdu.Case2, false},
	{"case 2S Le 00 is 256", h("00 B0 00 00 00"), apdu.Command{INS: 0xB0, Ne: 256}, apdu.Case2, false},
	{"case 2S Le FF", h("00 B0 00 00 FF"), apdu.Command{INS: 0xB0, Ne: 255}, apdu.Case2, false},
	{"case 3S SELECT", h("00 A4 04 00 07 A0000001510000"),
		apdu.Command{INS: 0xA4, P1: 0x04, Data: h("A0000001510000")}, apdu.Case3, false},
	{"case 3S Nc 1", h("80 20 00 80 01 AA"), apdu.Command{CLA: 0x80, INS: 0x20, P2: 0x80, Data: h("AA")}, apdu.Case3, false},
	{"case 3S Nc 255", cat(h("00 D6 00 00 FF"), seq(255)), apdu.Command{INS: 0xD6, Data: seq(255)}, apdu.Case3, false},
	{"case 4S SELECT Le 00", h("00 A4 04 00 07 A0000001510000 00"),
		apdu.Command{INS: 0xA4, P1: 0x04, Data: h("A0000001510000"), Ne: 256}, apdu.Case4, false},
	{"case 4S Nc 255 Le FF", cat(h("80 CA 00 00 FF"), seq(255), h("FF")),
		apdu.Command{CLA: 0x80, INS: 0xCA, Data: seq(255), Ne: 255}, apdu.Case4, false},
	{"case 2E Le 0100", h("00 B0 00 00 00 01 00"), apdu.Command{INS: 0xB0, Ne: 256}, apdu.Case2, true},
	{"case 2E Le 0101", h("00 B0 00 00 00 01 01"), apdu.Command{INS: 0xB0, Ne: 257}, apdu.Case2, true},
	{"case 2E Le FFFF", h("00 B0 00 00 00 FF FF"), apdu.Command{INS: 0xB0, Ne: 65535}, apdu.Case2, true},
	{"case 2E 000000 is 65536", h("00 B0 00 00 00 00 00"), apdu.Command{INS: 0xB0, Ne: 65536}, apdu.Case2, true},
	{"case 3E Nc 1", h("00 D6 00 00 00 00 01 AA"), apdu.Command{INS: 0xD6, Data: h("AA")}, apdu.Case3, true},
	{"case 3E Nc 256", cat(h("00 D6 00 00 00 01 00"), seq(256)), apdu.Command{INS: 0xD6, Data: seq(256)}, apdu.Case3, true},
	{"case 3E Nc 65535", cat(h("00 D6 00 00 00 FF FF"), seq(65535)), apdu.Command{INS: 0xD6, Data: seq(65535)}, apdu.Case3, true},
	{"case 4E Nc 2 Le 0000", h("00 2A 80 86 00 00 02 BEEF 00 00"),
		apdu.Command{INS: 0x2A, P1: 0x80, P2: 0x86, Data: h("BEEF"), Ne: 65536}, apdu.Case4, true},
	{"case 4E Nc 256 Le 0001", cat(h("00 2A 9E 9A 00 01 00"), seq(256), h("00 01")),
		apdu.Command{INS: 0x2A, P1: 0x9E, P2: 0x9A, Data: seq(256), Ne: 1}, apdu.Case4, true},
	{"case 4E Nc 65535 Le FFFF", cat(h("00 2A 80 86 00 FF FF"), seq(65535), h("FF FF")),
		apdu.Command{INS: 0x2A, P1: 0x80, P2: 0x86, Data: seq(65535), Ne: 65535}, apdu.Case4, true},
}

func TestParseCommand(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := apdu.ParseCommand(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want.CLA, got.CLA)
			require.Equal(t, tc.want.INS, got.INS)
			require.Equal(t, tc.want.P1, got.P1)
			require.Equal(t, tc.want.P2, got.P2)
			require.Equal(t, tc.want.Ne, got.Ne)
			require.Equal(t, len(tc.want.Data), len(got.Data))
			require.True(t, bytes.Equal(tc.want.Data, got.Data), "data")
			require.Equal(t, tc.cas, got.Case())
			require.Equal(t, len(got.Data) > apdu.MaxShortNc || got.Ne > apdu.MaxShortNe, got.NeedsExtended())
		})
	}
}

// TestCommandRoundTrip checks that every valid encoding re-encodes to itself
// in its own form, and that Bytes (shortest form) re-parses to the same
// command.
func TestCommandRoundTrip(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := apdu.ParseCommand(tc.in)
			require.NoError(t, err)

			var same []byte
			if tc.extended {
				same, err = c.BytesExtended()
			} else {
				same, err = c.BytesShort()
			}
			require.NoError(t, err)
			require.True(t, bytes.Equal(tc.in, same), "re-encoding in the same form: got % X", head(same))

			auto, err := c.Bytes()
			require.NoError(t, err)
			again, err := apdu.ParseCommand(auto)
			require.NoError(t, err)
			requireSameCommand(t, c, again)
			if !c.NeedsExtended() {
				require.LessOrEqual(t, len(auto), 5+len(c.Data)+1, "Bytes must prefer the short form")
			}
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

func requireSameCommand(t *testing.T, want, got apdu.Command) {
	t.Helper()
	require.Equal(t, [4]byte{want.CLA, want.INS, want.P1, want.P2}, [4]byte{got.CLA, got.INS, got.P1, got.P2})
	require.Equal(t, want.Ne, got.Ne)
	require.True(t, bytes.Equal(want.Data, got.Data), "data differs")
}

func TestParseCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, apdu.ErrCommandTooShort},
		{"3 bytes", h("00 A4 04"), apdu.ErrCommandTooShort},
		{"short Lc beyond data", h("00 A4 04 00 05 AA"), apdu.ErrBadLength},
		{"short Lc 1 with 3 body bytes", h("00 A4 04 00 01 AA BB CC"), apdu.ErrBadLength},
		{"short Lc with two Le bytes", h("00 A4 04 00 01 AA 00 00"), apdu.ErrBadLength},
		{"extended marker alone plus one", h("00 B0 00 00 00 01"), apdu.ErrBadLength},
		{"extended Lc 0000 with data", h("00 D6 00 00 00 00 00 AA"), apdu.ErrBadLength},
		{"extended Lc 0000 with Le", h("00 D6 00 00 00 00 00 00 00"), apdu.ErrBadLength},
		{"extended Lc beyond data", h("00 D6 00 00 00 00 05 AA BB"), apdu.ErrBadLength},
		{"extended Lc with 1-byte Le", h("00 D6 00 00 00 00 01 AA 00"), apdu.ErrBadLength},
		{"extended Lc with 3-byte Le", h("00 D6 00 00 00 00 01 AA 00 00 00"), apdu.ErrBadLength},
		{"256 data bytes with short Lc 00", cat(h("00 D6 00 00 00"), seq(256)), apdu.ErrBadLength},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := apdu.ParseCommand(tc.in)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

// TestCommandEncode covers each encoder on the boundaries of both forms.
// An empty want means the encoder must refuse with ErrNotEncodable.
func TestCommandEncode(t *testing.T) {
	const refuse = ""
	hdr := "00 B0 00 00"
	tests := []struct {
		name                  string
		cmd                   apdu.Command
		short, extended, auto string
	}{
		{"case 1", apdu.Command{INS: 0xB0}, hdr, hdr, hdr},
		{"case 2 Ne 1", apdu.Command{INS: 0xB0, Ne: 1}, hdr + "01", hdr + "000001", hdr + "01"},
		{"case 2 Ne 255", apdu.Command{INS: 0xB0, Ne: 255}, hdr + "FF", hdr + "0000FF", hdr + "FF"},
		{"case 2 Ne 256", apdu.Command{INS: 0xB0, Ne: 256}, hdr + "00", hdr + "000100", hdr + "00"},
		{"case 2 Ne 257", apdu.Command{INS: 0xB0, Ne: 257}, refuse, hdr + "000101", hdr + "000101"},
		{"case 2 Ne 65535", apdu.Command{INS: 0xB0, Ne: 65535}, refuse, hdr + "00FFFF", hdr + "00FFFF"},
		{"case 2 Ne 65536", apdu.Command{INS: 0xB0, Ne: 65536}, refuse, hdr + "000000", hdr + "000000"},
		{"case 2 Ne 65537", apdu.Command{INS: 0xB0, Ne: 65537}, refuse, refuse, refuse},
		{"negative Ne", apdu.Command{INS: 0xB0, Ne: -1}, refuse, refuse, refuse},
		{"case 3 Nc 1", apdu.Command{INS: 0xB0, Data: h("AA")}, hdr + "01AA", hdr + "000001AA", hdr + "01AA"},
		{"case 4 Nc 1 Ne 256", apdu.Command{INS: 0xB0, Data: h("AA"), Ne: 256}, hdr + "01AA00", hdr + "000001AA0100", hdr + "01AA00"},
		{"case 4 Nc 1 Ne 65536", apdu.Command{INS: 0xB0, Data: h("AA"), Ne: 65536}, refuse, hdr + "000001AA0000", hdr + "000001AA0000"},
		{"case 4 Nc 2 Ne 300", apdu.Command{INS: 0xB0, Data: h("AABB"), Ne: 300}, refuse, hdr + "000002AABB012C", hdr + "000002AABB012C"},
		{"case 4 negative Ne", apdu.Command{INS: 0xB0, Data: h("AA"), Ne: -256}, refuse, refuse, refuse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, enc := range []struct {
				form string
				fn   func() ([]byte, error)
				want string
			}{
				{"short", tc.cmd.BytesShort, tc.short},
				{"extended", tc.cmd.BytesExtended, tc.extended},
				{"auto", tc.cmd.Bytes, tc.auto},
			} {
				got, err := enc.fn()
				if enc.want == refuse {
					require.ErrorIs(t, err, apdu.ErrNotEncodable, enc.form)
					require.Nil(t, got, enc.form)
					continue
				}
				require.NoError(t, err, enc.form)
				require.Equal(t, strings.ReplaceAll(enc.want, " ", ""), fmt.Sprintf("%X", got), enc.form)
			}
		})
	}
}

// TestCommandEncodeLong covers the data limits, which are too long for
// hex literals.
func TestCommandEncodeLong(t *testing.T) {
	tests := []struct {
		name       string
		nc, ne     int
		shortOK    bool
		extendedOK bool
		extLen     int
	}{
		{"Nc 255", 255, 0, true, true, 4 + 3 + 255},
		{"Nc 255 Ne 256", 255, 256, true, true, 4 + 3 + 255 + 2},
		{"Nc 256", 256, 0, false, true, 4 + 3 + 256},
		{"Nc 256 Ne 1", 256, 1, false, true, 4 + 3 + 256 + 2},
		{"Nc 65535", 65535, 0, false, true, 4 + 3 + 65535},
		{"Nc 65535 Ne 65536", 65535, 65536, false, true, 4 + 3 + 65535 + 2},
		{"Nc 65536", 65536, 0, false, false, 0},
		{"Nc 65536 Ne 1", 65536, 1, false, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := apdu.Command{CLA: 0x80, INS: 0xE8, Data: seq(tc.nc), Ne: tc.ne}
			s, err := c.BytesShort()
			if tc.shortOK {
				require.NoError(t, err)
				require.Equal(t, byte(tc.nc), s[4], "short Lc")
			} else {
				require.ErrorIs(t, err, apdu.ErrNotEncodable)
			}
			e, err := c.BytesExtended()
			if !tc.extendedOK {
				require.ErrorIs(t, err, apdu.ErrNotEncodable)
				_, err = c.Bytes()
				require.ErrorIs(t, err, apdu.ErrNotEncodable)
				return
			}
			require.NoError(t, err)
			require.Len(t, e, tc.extLen)
			require.Equal(t, []byte{0, byte(tc.nc >> 8), byte(tc.nc)}, e[4:7], "extended Lc")
			back, err := apdu.ParseCommand(e)
			require.NoError(t, err)
			requireSameCommand(t, c, back)
		})
	}
}

func TestCommandHelpers(t *testing.T) {
	tests := []struct {
		cla     byte
		channel int
		chained bool
	}{
		{0x00, 0, false},
		{0x03, 3, false},
		{0x10, 0, true},
		{0x13, 3, true},
		{0x40, 4, false},
		{0x4F, 19, false},
		{0x70, 4, true},
		{0x80, 0, false},
		{0x84, 0, false},
		{0x81, 1, false},
		{0xC1, 5, false},
		{0xE0, 4, false},
	}
	for _, tc := range tests {
		c := apdu.Command{CLA: tc.cla}
		require.Equal(t, tc.channel, c.Channel(), "CLA %02X", tc.cla)
		require.Equal(t, tc.chained, c.Chained(), "CLA %02X", tc.cla)
	}

	c, err := apdu.ParseHex("00 A4 04 00 07 A0:00:00:01:51:00:00\n00")
	require.NoError(t, err)
	require.Equal(t, "00 A4 04 00 Nc=7 A0000001510000 Ne=256", c.String())
	require.Equal(t, "80 50 00 00", apdu.Command{CLA: 0x80, INS: 0x50}.String())

	_, err = apdu.ParseHex("00 A4 04 0")
	require.Error(t, err)
	_, err = apdu.ParseHex("00 A4")
	require.ErrorIs(t, err, apdu.ErrCommandTooShort)
}

func TestDecodeHex(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
		err  error // the encoding/hex error DecodeHex must wrap
	}{
		{"", []byte{}, nil},
		{"9000", h("9000"), nil},
		{"90 00", h("9000"), nil},
		{"a0:00\t00\r\n03", h("A0000003"), nil},
		{"9", nil, hex.ErrLength},
		{"9g", nil, hex.InvalidByteError('g')},
		{"90-00", nil, hex.InvalidByteError('-')},
	}
	for _, tc := range tests {
		got, err := apdu.DecodeHex(tc.in)
		if tc.err != nil {
			require.ErrorIs(t, err, tc.err, "%q", tc.in)
			require.Contains(t, err.Error(), fmt.Sprintf("%q", tc.in))
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func TestSWNames(t *testing.T) {
	tests := []struct {
		sw   apdu.SW
		name string
		str  string
	}{
		{0x9000, "success", "9000 (success)"},
		{0x6A82, "file or application not found", "6A82 (file or application not found)"},
		{0x6982, "security status not satisfied", "6982 (security status not satisfied)"},
		{0x6110, "16 bytes remaining", "6110 (16 bytes remaining)"},
		{0x6100, "256 bytes remaining", "6100 (256 bytes remaining)"},
		{0x6C08, "wrong Le, exact length 8", "6C08 (wrong Le, exact length 8)"},
		{0x63C2, "verification failed, 2 tries left", "63C2 (verification failed, 2 tries left)"},
		{0x63C0, "verification failed, 0 tries left", "63C0 (verification failed, 0 tries left)"},
		{0x6310, "more data available", "6310 (more data available)"},
		{0x6A99, "wrong parameters P1-P2", "6A99 (wrong parameters P1-P2)"},
		{0x6281, "part of returned data may be corrupted", "6281 (part of returned data may be corrupted)"},
		{0x6299, "warning, memory unchanged", "6299 (warning, memory unchanged)"},
		{0x9123, "", "9123"},
	}
	for _, tc := range tests {
		require.Equal(t, tc.name, tc.sw.Name(), "%04X", uint16(tc.sw))
		require.Equal(t, tc.str, tc.sw.String())
		require.Equal(t, "card returned "+tc.str, tc.sw.Error())
	}
}

func TestSWMatching(t *testing.T) {
	tests := []struct {
		sw     apdu.SW
		target apdu.SW
		is     bool
	}{
		{0x6A82, apdu.ErrFileNotFound, true},
		{0x63C2, apdu.ErrVerifyFailed, true},
		{0x63C0, apdu.ErrVerifyFailed, true},
		{0x63CF, apdu.ErrVerifyFailed, true},
		{0x6310, apdu.ErrVerifyFailed, false},
		{0x6300, apdu.ErrVerifyFailed, false},
		{0x6110, apdu.ErrBytesRemaining, true},
		{0x6C20, apdu.ErrWrongLe, true},
		{0x6A82, apdu.ErrRecordNotFound, false},
		{0x6A83, apdu.ErrFileNotFound, false},
		{0x6C20, apdu.ErrBytesRemaining, false},
		// The sentinel does not match a specific member of its family.
		{apdu.ErrVerifyFailed, 0x63C2, false},
	}
	for _, tc := range tests {
		var err error = tc.sw
		require.Equal(t, tc.is, errors.Is(err, tc.target), "%v is %v", tc.sw, tc.target)
		wrapped := fmt.Errorf("select purse: %w", err)
		require.Equal(t, tc.is, errors.Is(wrapped, tc.target), "wrapped %v is %v", tc.sw, tc.target)
		twice := fmt.Errorf("personalise: %w", wrapped)
		require.Equal(t, tc.is, errors.Is(twice, tc.target), "twice wrapped %v is %v", tc.sw, tc.target)
	}

	err := fmt.Errorf("verify: %w", apdu.SW(0x63C1))
	var sw apdu.SW
	require.ErrorAs(t, err, &sw)
	n, ok := sw.Retries()
	require.True(t, ok)
	require.Equal(t, 1, n)
	require.False(t, errors.Is(err, errors.New("card returned 63C1 (verification failed, 1 tries left)")))
}

func TestSWParameters(t *testing.T) {
	tests := []struct {
		sw                       apdu.SW
		remaining, correct, left int // -1: not applicable
		family                   apdu.SW
		warning                  bool
	}{
		{0x9000, -1, -1, -1, 0x9000, false},
		{0x6100, 256, -1, -1, apdu.ErrBytesRemaining, false},
		{0x6101, 1, -1, -1, apdu.ErrBytesRemaining, false},
		{0x61FF, 255, -1, -1, apdu.ErrBytesRemaining, false},
		{0x6C00, -1, 256, -1, apdu.ErrWrongLe, false},
		{0x6C10, -1, 16, -1, apdu.ErrWrongLe, false},
		{0x63C0, -1, -1, 0, apdu.ErrVerifyFailed, true},
		{0x63C3, -1, -1, 3, apdu.ErrVerifyFailed, true},
		{0x63CF, -1, -1, 15, apdu.ErrVerifyFailed, true},
		{0x6310, -1, -1, -1, 0x6310, true},
		{0x6283, -1, -1, -1, 0x6283, true},
		{0x6A82, -1, -1, -1, 0x6A82, false},
	}
	opt := func(n int, ok bool) int {
		if !ok {
			return -1
		}
		return n
	}
	for _, tc := range tests {
		require.Equal(t, tc.remaining, opt(tc.sw.BytesRemaining()), "%v", tc.sw)
		require.Equal(t, tc.correct, opt(tc.sw.CorrectLength()), "%v", tc.sw)
		require.Equal(t, tc.left, opt(tc.sw.Retries()), "%v", tc.sw)
		require.Equal(t, tc.family, tc.sw.Family(), "%v", tc.sw)
		require.Equal(t, tc.warning, tc.sw.IsWarning(), "%v", tc.sw)
		require.Equal(t, tc.sw == 0x9000, tc.sw.OK())
		require.Equal(t, tc.sw.SW1(), byte(tc.sw>>8))
		require.Equal(t, tc.sw.SW2(), byte(tc.sw))
		require.Equal(t, tc.sw, apdu.NewSW(tc.sw.SW1(), tc.sw.SW2()))
	}
	require.NoError(t, apdu.SWNoError.Err())
	require.ErrorIs(t, apdu.SW(0x6985).Err(), apdu.ErrConditionsNotMet)
}

func TestResponse(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		data []byte
		sw   apdu.SW
		str  string
	}{
		{"status only", h("90 00"), []byte{}, 0x9000, "9000 (success)"},
		{"data", h("01 02 03 90 00"), h("010203"), 0x9000, "010203 9000 (success)"},
		{"error", h("6A 82"), []byte{}, 0x6A82, "6A82 (file or application not found)"},
		{"warning with data", h("AA 62 82"), h("AA"), 0x6282, "AA 6282 (end of file or record reached before Ne bytes)"},
		{"bytes remaining", h("61 10"), []byte{}, 0x6110, "6110 (16 bytes remaining)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := apdu.ParseResponse(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.data, r.Data)
			require.Equal(t, tc.sw, r.SW)
			require.Equal(t, tc.str, r.String())
			require.Equal(t, tc.in, r.Bytes())
			if tc.sw == 0x9000 {
				require.NoError(t, r.Err())
			} else {
				require.ErrorIs(t, r.Err(), tc.sw)
			}
		})
	}
	for _, in := range [][]byte{nil, {0x90}} {
		_, err := apdu.ParseResponse(in)
		require.ErrorIs(t, err, apdu.ErrResponseTooShort)
	}
	require.Equal(t, h("6A82"), apdu.Status(apdu.ErrFileNotFound))
	require.Equal(t, h("CAFE 9000"), apdu.Response{Data: h("CAFE"), SW: apdu.SWNoError}.Bytes())
}

// FuzzParseCommand checks the parser against the encoders: whatever parses
// must re-encode, the re-encoding must parse back to the same command, and
// an input in the canonical form of its own length class must come back
// byte for byte.
func FuzzParseCommand(f *testing.F) {
	for _, tc := range parseCases {
		if len(tc.in) < 300 {
			f.Add(tc.in)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := apdu.ParseCommand(in)
		if err != nil {
			if !errors.Is(err, apdu.ErrCommandTooShort) && !errors.Is(err, apdu.ErrBadLength) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if len(c.Data) > apdu.MaxExtendedNc || c.Ne < 0 || c.Ne > apdu.MaxExtendedNe {
			t.Fatalf("parsed out-of-range command %v", c)
		}
		out, err := c.Bytes()
		if err != nil {
			t.Fatalf("parsed %X but cannot encode %v: %v", in, c, err)
		}
		back, err := apdu.ParseCommand(out)
		if err != nil {
			t.Fatalf("re-encoding %X does not parse: %v", out, err)
		}
		requireSameCommand(t, c, back)

		// An input is in the extended form iff it is longer than 5 bytes
		// and byte 4 is 00 (ISO/IEC 7816-4 §5.1).
		extended := len(in) > 5 && in[4] == 0
		var same []byte
		if extended {
			same, err = c.BytesExtended()
		} else {
			same, err = c.BytesShort()
		}
		if err != nil {
			t.Fatalf("%X parsed as %v but does not encode in its own form: %v", in, c, err)
		}
		if !bytes.Equal(in, same) {
			t.Fatalf("%X re-encodes as %X", in, same)
		}
	})
}

// FuzzParseResponse checks that data and status word split losslessly.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{"9000", "6A82", "6110", "01029000", "6F0784 05A000000003 9000", "63C2", "00"} {
		f.Add(h(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := apdu.ParseResponse(in)
		if len(in) < 2 {
			require.ErrorIs(t, err, apdu.ErrResponseTooShort)
			return
		}
		require.NoError(t, err)
		require.Len(t, r.Data, len(in)-2)
		require.Equal(t, in, r.Bytes())
		require.Equal(t, r.SW == apdu.SWNoError, r.Err() == nil)
		if r.Err() != nil {
			require.ErrorIs(t, r.Err(), r.SW.Family())
		}
		_ = r.String()
	})
}

// FuzzDecodeHex checks that DecodeHex accepts exactly the hex digits with
// optional separators, and that it inverts hex encoding in any layout.
func FuzzDecodeHex(f *testing.F) {
	for _, s := range []string{"", "9000", "00 A4 04 00", "a0:00:00:01:51", "0\n0", "zz", "123", "00 a4\t04\r\n00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := apdu.DecodeHex(s)
		clean := strings.NewReplacer(" ", "", "\t", "", ":", "", "\n", "", "\r", "").Replace(s)
		want, werr := hex.DecodeString(clean)
		if werr != nil {
			require.ErrorIs(t, err, werr, "must wrap the encoding/hex error")
			return
		}
		require.NoError(t, err)
		require.Equal(t, want, b)
		// Spaced upper-case output (as String methods print) decodes back.
		again, err := apdu.DecodeHex(fmt.Sprintf("% X", b))
		require.NoError(t, err)
		require.True(t, bytes.Equal(b, again))
	})
}

func BenchmarkParseCommand(b *testing.B) {
	in := h("00 A4 04 00 07 A0000001510000 00")
	for b.Loop() {
		if _, err := apdu.ParseCommand(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCommandBytes(b *testing.B) {
	c := apdu.Command{CLA: 0x80, INS: 0x50, P1: 0x00, P2: 0x00, Data: seq(8), Ne: 256}
	for b.Loop() {
		if _, err := c.Bytes(); err != nil {
			b.Fatal(err)
		}
	}
}
