package atr_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu/atr"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// Reference ATRs (see /work/shared/research/protocols.md §2). The TCKs were
// recomputed for these tests as the XOR of T0..TK.
const (
	// vsmartcard vicc default: TA1 13, T=1 announced twice, capabilities
	// FF 01 00.
	viccATR = "3B 95 13 81 01 80 73 FF 01 00 0B"
	// Same with extended length enabled (third software function table 40).
	viccExtATR = "3B 95 13 81 01 80 73 FF 01 40 4B"
	// T=0 only, no interface bytes, no TCK.
	plainT0ATR = "3B 02 14 50"
	// NXP JCOP 31 as jCardSim presents it.
	jcopATR = "3B FA 18 00 00 81 31 FE 45 4A 43 4F 50 33 31 56 32 33 32 98"
	// Our purse: PC/SC Part 3 contactless form, capabilities 80 01 40.
	purseATR = "3B 85 80 01 80 73 80 01 40 36"
	// MIFARE Classic 1K behind a PC/SC contactless reader.
	mifareATR = "3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A"
	// pcsc-relay's minimal contactless ATR.
	minimalCLATR = "3B 80 80 01 01"
)

func mustParse(t *testing.T, s string) *atr.ATR {
	t.Helper()
	a, err := atr.Parse(h(s))
	require.NoError(t, err)
	require.NotNil(t, a)
	return a
}

func TestParseVectors(t *testing.T) {
	type fidi struct {
		fi   int
		fmax float64
		di   int
	}
	tests := []struct {
		name       string
		in         string
		groups     []atr.Group
		historical string
		tck        int // -1: absent
		protocols  []int
		fidi       fidi
		cl         bool
	}{
		{"vicc", viccATR,
			[]atr.Group{{TA: 0x13, HasTA: true, TD: 0x81, HasTD: true}, {TD: 0x01, HasTD: true}},
			"80 73 FF 01 00", 0x0B, []int{1}, fidi{372, 5, 4}, false},
		{"vicc extended", viccExtATR,
			[]atr.Group{{TA: 0x13, HasTA: true, TD: 0x81, HasTD: true}, {TD: 0x01, HasTD: true}},
			"80 73 FF 01 40", 0x4B, []int{1}, fidi{372, 5, 4}, false},
		{"T=0 only", plainT0ATR, nil, "14 50", -1, []int{0}, fidi{372, 5, 1}, false},
		{"JCOP", jcopATR,
			[]atr.Group{
				{TA: 0x18, HasTA: true, TB: 0x00, HasTB: true, TC: 0x00, HasTC: true, TD: 0x81, HasTD: true},
				{TD: 0x31, HasTD: true},
				{TA: 0xFE, HasTA: true, TB: 0x45, HasTB: true},
			},
			"4A 43 4F 50 33 31 56 32 33 32", 0x98, []int{1}, fidi{372, 5, 12}, false},
		{"purse", purseATR,
			[]atr.Group{{TD: 0x80, HasTD: true}, {TD: 0x01, HasTD: true}},
			"80 73 80 01 40", 0x36, []int{0, 1}, fidi{372, 5, 1}, true},
		{"MIFARE 1K", mifareATR,
			[]atr.Group{{TD: 0x80, HasTD: true}, {TD: 0x01, HasTD: true}},
			"80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00", 0x6A, []int{0, 1}, fidi{372, 5, 1}, true},
		{"minimal contactless", minimalCLATR,
			[]atr.Group{{TD: 0x80, HasTD: true}, {TD: 0x01, HasTD: true}},
			"", 0x01, []int{0, 1}, fidi{372, 5, 1}, true},
		{"inverse convention", "3F 00", nil, "", -1, []int{0}, fidi{372, 5, 1}, false},
		{"five levels", "3B 80 81 81 81 81 01 81",
			[]atr.Group{{TD: 0x81, HasTD: true}, {TD: 0x81, HasTD: true}, {TD: 0x81, HasTD: true}, {TD: 0x81, HasTD: true}, {TD: 0x01, HasTD: true}},
			"", 0x81, []int{1}, fidi{372, 5, 1}, false},
		{"T=15 global bytes", "3B 80 80 1F C3 DC",
			[]atr.Group{{TD: 0x80, HasTD: true}, {TD: 0x1F, HasTD: true}, {TA: 0xC3, HasTA: true}},
			"", 0xDC, []int{0}, fidi{372, 5, 1}, false},
		{"TA1 96 and TC1", "3B D6 96 00 81 31 FE 5D 0A 0B 0C 0D 0E 0F 52",
			[]atr.Group{{TA: 0x96, HasTA: true, TC: 0x00, HasTC: true, TD: 0x81, HasTD: true}, {TD: 0x31, HasTD: true}, {TA: 0xFE, HasTA: true, TB: 0x5D, HasTB: true}},
			"0A 0B 0C 0D 0E 0F", 0x52, []int{1}, fidi{512, 5, 32}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := h(tc.in)
			a, err := atr.Parse(in)
			require.NoError(t, err)
			require.Equal(t, in[0], a.TS)
			require.Equal(t, in[1], a.T0())
			require.Equal(t, tc.groups, a.Groups)
			require.Equal(t, h(tc.historical), append([]byte{}, a.Historical...))
			if tc.tck < 0 {
				require.False(t, a.HasTCK)
				require.False(t, a.NeedsTCK())
			} else {
				require.True(t, a.HasTCK)
				require.True(t, a.NeedsTCK())
				require.Equal(t, byte(tc.tck), a.TCK)
			}
			require.True(t, a.TCKValid())
			require.Equal(t, tc.protocols, a.Protocols())
			fi, fmax := a.Fi()
			require.Equal(t, tc.fidi, fidi{fi, fmax, a.Di()})
			require.Equal(t, tc.cl, a.IsContactless())
			require.Empty(t, a.Extra)
			require.Equal(t, strings.ToUpper(tc.in), a.String())

			out, err := a.Bytes()
			require.NoError(t, err)
			require.Equal(t, in, out)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", atr.ErrTruncated},
		{"TS only", "3B", atr.ErrTruncated},
		{"bad TS", "3C 00", atr.ErrBadTS},
		{"raw inverse TS", "03 00", atr.ErrBadTS},
		{"TA1 missing", "3B 10", atr.ErrTruncated},
		{"TD1 missing", "3B 95 13", atr.ErrTruncated},
		{"TD2 missing", "3B 95 13 81", atr.ErrTruncated},
		{"level 3 missing", "3B 80 81 31 FE", atr.ErrTruncated},
		{"historical bytes missing", "3B 95 13 81 01 80 73", atr.ErrTruncated},
		{"historical bytes missing, T=0", "3B 02 14", atr.ErrTruncated},
		{"TCK missing", "3B 95 13 81 01 80 73 FF 01 00", atr.ErrTruncated},
		{"TCK missing, T=15 only", "3B 80 80 1F C3", atr.ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := atr.Parse(h(tc.in))
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, a)
		})
	}
}

// A wrong check byte or trailing bytes still return the decoded ATR.
func TestParseRecoverable(t *testing.T) {
	a, err := atr.Parse(h("3B 95 13 81 01 80 73 FF 01 00 0C"))
	require.ErrorIs(t, err, atr.ErrChecksum)
	require.Contains(t, err.Error(), "TCK is 0C, the XOR of T0..TK is 0B")
	require.NotNil(t, a)
	require.False(t, a.TCKValid())
	require.Equal(t, byte(0x0C), a.TCK)
	require.Contains(t, a.Describe(), "TCK = 0C  WRONG, should be 0B")
	fixed, err := a.Bytes()
	require.NoError(t, err)
	require.Equal(t, h(viccATR), fixed)

	a, err = atr.Parse(h("3B 02 14 50 00"))
	require.ErrorIs(t, err, atr.ErrTrailing)
	require.NotErrorIs(t, err, atr.ErrChecksum)
	require.True(t, a.TCKValid())
	require.Equal(t, []byte{0x00}, a.Extra)
	require.Equal(t, "3B 02 14 50", a.String())
	require.Contains(t, a.Describe(), "1 unexpected bytes after the ATR: 00")

	a, err = atr.Parse(h("3B 80 80 01 00 77"))
	require.ErrorIs(t, err, atr.ErrChecksum)
	require.ErrorIs(t, err, atr.ErrTrailing)
	require.NotNil(t, a)
}

func TestInterfaceBytes(t *testing.T) {
	// TA2 = 81: specific mode T=1, cannot change.
	a := mustParse(t, "3B 90 11 11 81 11")
	m, ok := a.SpecificMode()
	require.True(t, ok)
	require.Equal(t, atr.SpecificMode{Protocol: 1, CanChange: false, Implicit: false}, m)
	require.Contains(t, a.Describe(), "TA2 = 81  specific mode, protocol T=1; the card cannot change mode")

	// TA2 = 10: specific mode T=0, may change, implicit parameters.
	a = mustParse(t, "3B 90 11 10 10")
	m, ok = a.SpecificMode()
	require.True(t, ok)
	require.Equal(t, atr.SpecificMode{Protocol: 0, CanChange: true, Implicit: true}, m)

	_, ok = mustParse(t, purseATR).SpecificMode()
	require.False(t, ok)

	// TC1 = FF (minimum guard time), TC2 = 20 (WI 32).
	a = mustParse(t, "3B C0 FF 40 20")
	require.Equal(t, 255, a.ExtraGuardTime())
	require.Equal(t, 32, a.WI())
	require.Contains(t, a.Describe(), "N = 255: minimum guard time")
	require.Equal(t, 10, mustParse(t, plainT0ATR).WI())
	require.Equal(t, 0, mustParse(t, plainT0ATR).ExtraGuardTime())

	// T=1 parameters come from levels 3 and beyond only.
	require.Equal(t, atr.T1Params{IFSC: 254, BWI: 4, CWI: 5}, mustParse(t, jcopATR).T1())
	require.Equal(t, atr.T1Params{IFSC: 32, BWI: 4, CWI: 13}, mustParse(t, viccATR).T1())
	// IFSC in level 3, BWI/CWI and CRC in level 4.
	a = mustParse(t, "3B 80 81 91 20 61 45 01 95")
	require.Equal(t, atr.T1Params{IFSC: 32, BWI: 4, CWI: 5, CRC: true}, a.T1())
	// A TA after a T=15 TD is not an IFSC.
	require.Equal(t, 32, mustParse(t, "3B 80 80 1F C3 DC").T1().IFSC)
}

func TestFiDi(t *testing.T) {
	tests := []struct {
		ta1  string // "" for absent
		fi   int
		fmax float64
		di   int
	}{
		{"", 372, 5, 1},
		{"01", 372, 4, 1},
		{"11", 372, 5, 1},
		{"13", 372, 5, 4},
		{"18", 372, 5, 12},
		{"19", 372, 5, 20},
		{"26", 558, 6, 32},
		{"37", 744, 8, 64},
		{"45", 1116, 12, 16},
		{"54", 1488, 16, 8},
		{"62", 1860, 20, 2},
		{"96", 512, 5, 32},
		{"A4", 768, 7.5, 8},
		{"B3", 1024, 10, 4},
		{"C2", 1536, 15, 2},
		{"D1", 2048, 20, 1},
		{"71", 0, 0, 1},   // Fi RFU
		{"81", 0, 0, 1},   // Fi RFU
		{"E1", 0, 0, 1},   // Fi RFU
		{"10", 372, 5, 0}, // Di RFU
		{"1A", 372, 5, 0}, // Di RFU
	}
	for _, tc := range tests {
		in := "3B 00"
		if tc.ta1 != "" {
			in = "3B 10 " + tc.ta1
		}
		a := mustParse(t, in)
		fi, fmax := a.Fi()
		require.Equal(t, tc.fi, fi, tc.ta1)
		require.Equal(t, tc.fmax, fmax, tc.ta1)
		require.Equal(t, tc.di, a.Di(), tc.ta1)
		if tc.fi == 0 || tc.di == 0 {
			require.Contains(t, a.Describe(), "RFU value")
		}
	}
}

func TestHistorical(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		category byte
		objects  []atr.CompactTLV
		status   string
		data     string
		storage  *atr.StorageCard
	}{
		{"empty", "", 0, nil, "", "", nil},
		{"capabilities", "80 73 80 01 40", 0x80, []atr.CompactTLV{{Tag: 7, Value: h("800140")}}, "", "", nil},
		{"status object", "80 31 C0 82 90 00", 0x80,
			[]atr.CompactTLV{{Tag: 3, Value: h("C0")}, {Tag: 8, Value: h("9000")}}, "90 00", "", nil},
		{"category 00", "00 31 C0 73 80 00 00 05 90 00", 0x00,
			[]atr.CompactTLV{{Tag: 3, Value: h("C0")}, {Tag: 7, Value: h("800000")}}, "05 90 00", "", nil},
		{"category 00 status only", "00 07 62 83", 0x00, nil, "07 62 83", "", nil},
		{"category 10", "10 02", 0x10, nil, "", "02", nil},
		{"proprietary", "4A 43 4F 50", 0x4A, nil, "", "43 4F 50", nil},
		{"PC/SC storage", "80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00", 0x80,
			[]atr.CompactTLV{{Tag: 0xF, Value: h("A00000030603000100000000")}}, "", "",
			&atr.StorageCard{Standard: 3, Name: 1}},
		{"BER-style AID of another RID", "80 4F 05 A0 00 00 00 03", 0x80,
			[]atr.CompactTLV{{Tag: 0xF, Value: h("A000000003")}}, "", "", nil},
		{"empty compact objects", "80 70 80", 0x80, []atr.CompactTLV{{Tag: 7, Value: []byte{}}, {Tag: 8, Value: []byte{}}}, "", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hist, err := atr.ParseHistorical(h(tc.in))
			require.NoError(t, err)
			require.Equal(t, tc.category, hist.Category)
			require.Equal(t, len(tc.objects), len(hist.Objects))
			for i := range tc.objects {
				require.Equal(t, tc.objects[i].Tag, hist.Objects[i].Tag)
				require.Equal(t, tc.objects[i].Value, append([]byte{}, hist.Objects[i].Value...))
			}
			require.Equal(t, h(tc.status), append([]byte{}, hist.Status...))
			require.Equal(t, h(tc.data), append([]byte{}, hist.Data...))
			require.Equal(t, tc.storage, hist.Storage)
		})
	}

	for _, bad := range []string{"00 90 00", "80 73 FF", "80 31", "00 73 80 05 90 00", "80 4F 0D A0 00 00 03 06 03 00 01 00 00 00 00"} {
		_, err := atr.ParseHistorical(h(bad))
		require.ErrorIs(t, err, atr.ErrTruncated, bad)
	}
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		v         string
		chaining  bool
		extended  bool
		channels  int
		selection byte
		coding    byte
	}{
		{"", false, false, 1, 0, 0},
		{"80", false, false, 1, 0x80, 0},
		{"80 01 40", false, true, 1, 0x80, 0x01},
		{"FF 01 00", false, false, 1, 0xFF, 0x01},
		{"F8 21 C0", true, true, 1, 0xF8, 0x21},
		{"00 00 1F", false, false, 8, 0, 0},
		{"00 00 0B", false, false, 4, 0, 0},
		{"00 00 07", false, false, 1, 0, 0}, // count without assignment: basic only
	}
	for _, tc := range tests {
		c := atr.Capabilities(h(tc.v))
		require.Equal(t, tc.chaining, c.CommandChaining(), tc.v)
		require.Equal(t, tc.extended, c.ExtendedLength(), tc.v)
		require.Equal(t, tc.channels, c.LogicalChannels(), tc.v)
		require.Equal(t, tc.selection, c.Selection(), tc.v)
		require.Equal(t, tc.coding, c.DataCoding(), tc.v)
	}

	hist, err := mustParse(t, purseATR).DecodeHistorical()
	require.NoError(t, err)
	c, ok := hist.Capabilities()
	require.True(t, ok)
	require.True(t, c.ExtendedLength())
	require.False(t, c.CommandChaining())

	hist, err = mustParse(t, jcopATR).DecodeHistorical()
	require.NoError(t, err)
	_, ok = hist.Capabilities()
	require.False(t, ok)
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name string
		p    atr.Params
		want string
	}{
		{"nothing", atr.Params{}, "3B 00"},
		{"inverse", atr.Params{Inverse: true}, "3F 00"},
		{"T=0 explicit is implicit", atr.Params{Protocols: []int{0}, Historical: h("14 50")}, plainT0ATR},
		{"vicc", atr.Params{TA1: 0x13, Protocols: []int{1, 1}, Historical: h("80 73 FF 01 00")}, viccATR},
		{"vicc extended", atr.Params{TA1: 0x13, Protocols: []int{1, 1}, Historical: h("80 73 FF 01 40")}, viccExtATR},
		{"purse", atr.Params{Protocols: []int{0, 1}, Historical: h("80 73 80 01 40")}, purseATR},
		{"TC1", atr.Params{TC1: 0xFF}, "3B 40 FF"},
		{"TA1 and TC1 with T=1", atr.Params{TA1: 0x96, TC1: 0x02, Protocols: []int{1}}, "3B D0 96 02 01 45"},
		{"15 historical bytes", atr.Params{Protocols: []int{1}, Historical: bytes.Repeat([]byte{0x41}, 15)},
			"3B 8F 01 41 41 41 41 41 41 41 41 41 41 41 41 41 41 41 CF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := atr.Build(tc.p)
			require.NoError(t, err)
			require.Equal(t, tc.want, fmt.Sprintf("% X", got))
			_, err = atr.Parse(got)
			require.NoError(t, err)
		})
	}

	for _, p := range []atr.Params{
		{Historical: make([]byte, 16)},
		{Protocols: []int{16}},
		{Protocols: []int{1, -1}},
	} {
		_, err := atr.Build(p)
		require.ErrorIs(t, err, atr.ErrInvalid)
	}
}

func TestContactless(t *testing.T) {
	tests := []struct{ hist, want string }{
		{"", minimalCLATR},
		{"80 73 80 01 40", purseATR},
		{"80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00", mifareATR},
	}
	for _, tc := range tests {
		got, err := atr.Contactless(h(tc.hist))
		require.NoError(t, err)
		require.Equal(t, tc.want, fmt.Sprintf("% X", got))
		require.True(t, mustParse(t, tc.want).IsContactless())
	}
	_, err := atr.Contactless(make([]byte, 16))
	require.ErrorIs(t, err, atr.ErrInvalid)

	require.False(t, mustParse(t, "3B 80 90 01 01 10").IsContactless(), "extra TA2")
	require.False(t, mustParse(t, viccATR).IsContactless())
}

func TestBytesFromGroups(t *testing.T) {
	// JCOP rebuilt from its groups: presence nibbles and TCK are computed,
	// whatever the TD high nibbles and TCK fields say.
	a := &atr.ATR{
		TS: atr.Direct,
		Groups: []atr.Group{
			{TA: 0x18, HasTA: true, HasTB: true, HasTC: true, TD: 0x01, HasTD: true},
			{TD: 0xF1, HasTD: true},
			{TA: 0xFE, HasTA: true, TB: 0x45, HasTB: true, TD: 0xF0},
		},
		Historical: []byte("JCOP31V232"),
		TCK:        0x55,
	}
	got, err := a.Bytes()
	require.NoError(t, err)
	require.Equal(t, h(jcopATR), got)
	require.Equal(t, jcopATR, a.String())

	bad := []*atr.ATR{
		{TS: 0x3C},
		{TS: atr.Direct, Groups: []atr.Group{{}}},
		{TS: atr.Direct, Groups: []atr.Group{{TD: 0x01, HasTD: true}, {}, {TA: 1, HasTA: true}}},
		{TS: atr.Direct, Groups: []atr.Group{{TA: 0x11, HasTA: true}, {TA: 0x81, HasTA: true}}},
		{TS: atr.Direct, Historical: make([]byte, 16)},
	}
	for i, a := range bad {
		_, err := a.Bytes()
		require.ErrorIs(t, err, atr.ErrInvalid, "case %d", i)
		require.Contains(t, a.String(), "invalid ATR", "case %d", i)
	}
}

func TestDescribe(t *testing.T) {
	want := `ATR: 3B 85 80 01 80 73 80 01 40 36
TS  = 3B  direct convention
T0  = 85  Y1 = 1000: TD1 follows; K = 5 historical bytes
TD1 = 80  Y2 = 1000: TD2 follows; protocol T=0
TD2 = 01  Y3 = 0000: no interface bytes follow; protocol T=1
historical bytes (5): 80 73 80 01 40
  category 80: compact-TLV objects
  73 80 01 40  card capabilities
    table 1 = 80: DF selection by full DF name
    table 2 = 01 (data coding): EFs of BER-TLV structure not supported; one-time write; FF invalid as first tag byte (padding); data unit 1 byte
    table 3 = 40: no command chaining, extended Lc/Le, basic logical channel only
TCK = 36  correct
protocols: T=0, T=1 (default T=0)
contactless card as presented by a PC/SC reader (PC/SC Part 3: TD1 = 80, TD2 = 01)
`
	require.Equal(t, want, mustParse(t, purseATR).Describe())

	tests := []struct {
		in    string
		lines []string
	}{
		{viccATR, []string{
			"TA1 = 13  Fi = 372, Di = 4: 93 clock cycles per ETU; clock up to 5 MHz, i.e. up to 53763 bit/s",
			"TD1 = 81  Y2 = 1000: TD2 follows; protocol T=1",
			"table 1 = FF: DF selection by full DF name, DF selection by partial DF name",
			"protocols: T=1 (default T=1)",
		}},
		{plainT0ATR, []string{
			"T0  = 02  Y1 = 0000: no interface bytes follow; K = 2 historical bytes",
			"category 14: proprietary format: 14 50",
			"no TCK (only T=0 offered)",
		}},
		{jcopATR, []string{
			"T0  = FA  Y1 = 1111: TA1, TB1, TC1, TD1 follow; K = 10 historical bytes",
			"TB1 = 00  no programming voltage",
			"TC1 = 00  extra guard time N = 0 ETU",
			"TD2 = 31  Y3 = 0011: TA3, TB3 follow; protocol T=1",
			"TA3 = FE  T=1 IFSC = 254 bytes",
			"TB3 = 45  T=1 BWI = 4, CWI = 5",
			`"JCOP31V232"`,
			"TCK = 98  correct",
		}},
		{mifareATR, []string{
			"PC/SC storage card: RID A0 00 00 03 06, standard 03 (ISO 14443 A part 3), card name 0001 (MIFARE Classic 1K)",
			"contactless card as presented by a PC/SC reader",
		}},
		{"3B 80 80 1F C3 DC", []string{
			"TD2 = 1F  Y3 = 0001: TA3 follows; T=15: global interface bytes follow",
			"TA3 = C3  global: clock stop in either state; class A (5 V), B (3 V)",
		}},
		{"3B 80 81 91 20 61 45 01 95", []string{
			"TA3 = 20  T=1 IFSC = 32 bytes",
			"TC4 = 01  T=1 error detection code: CRC",
		}},
		{"3F 06 00 31 C0 05 90 00", []string{
			"TS  = 3F  inverse convention",
			"category 00: compact-TLV objects, status indicator in the last 3 bytes",
			"application selection by full DF name and by partial DF name",
			"status indicator: life cycle: operational state (activated); status word 9000 (success)",
		}},
		{"3B 04 80 82 69 85", []string{
			"82 69 85  status indicator: status word 6985 (conditions of use not satisfied)",
		}},
		{"3B 02 80 7F", []string{
			"error: atr: truncated: compact-TLV 7F needs 15 bytes, 0 left",
		}},
	}
	for _, tc := range tests {
		d := mustParse(t, tc.in).Describe()
		for _, l := range tc.lines {
			require.Contains(t, d, l, "%s:\n%s", tc.in, d)
		}
	}
}

// FuzzParse checks that no input panics Parse, Describe or the historical
// decoder; that every decoded ATR re-encodes to bytes that parse cleanly to
// the same fields; that a clean parse reproduces the input exactly; and
// that Build agrees with Bytes whenever Params can describe the ATR.
func FuzzParse(f *testing.F) {
	for _, s := range []string{viccATR, plainT0ATR, jcopATR, purseATR, mifareATR, minimalCLATR, "3B 80 80 1F C3 DC"} {
		f.Add(h(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := atr.Parse(in)
		if a == nil {
			if !errors.Is(err, atr.ErrTruncated) && !errors.Is(err, atr.ErrBadTS) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if err != nil && !errors.Is(err, atr.ErrChecksum) && !errors.Is(err, atr.ErrTrailing) {
			t.Fatalf("non-fatal error of the wrong class: %v", err)
		}
		_ = a.Describe()
		_, _ = a.DecodeHistorical()
		_ = a.T1()
		_, _ = a.SpecificMode()
		if len(a.Protocols()) == 0 {
			t.Fatal("no protocol")
		}

		out, berr := a.Bytes()
		if berr != nil {
			t.Fatalf("decoded %X but cannot encode: %v", in, berr)
		}
		if err == nil && !bytes.Equal(in, out) {
			t.Fatalf("clean ATR %X re-encodes as %X", in, out)
		}
		if errors.Is(err, atr.ErrChecksum) && (a.TCKValid() || a.TCK == out[len(out)-1]) {
			t.Fatalf("checksum error but TCK %02X looks valid (%X)", a.TCK, out)
		}
		b, err := atr.Parse(out)
		if err != nil {
			t.Fatalf("re-encoding %X does not parse: %v", out, err)
		}
		if !equalATR(a, b) {
			t.Fatalf("fields changed: %X -> %X", in, out)
		}

		if p, ok := params(a); ok {
			built, err := atr.Build(p)
			if err != nil {
				t.Fatalf("Build(%+v): %v", p, err)
			}
			if !bytes.Equal(built, out) {
				t.Fatalf("Build gives %X, Bytes %X", built, out)
			}
		}
	})
}

func equalATR(a, b *atr.ATR) bool {
	if a.TS != b.TS || len(a.Groups) != len(b.Groups) || !bytes.Equal(a.Historical, b.Historical) {
		return false
	}
	for i := range a.Groups {
		if a.Groups[i] != b.Groups[i] {
			return false
		}
	}
	return true
}

// params expresses an ATR as Build parameters when it only uses what they
// cover: TA1 and TC1 (non-zero) and TD bytes with nothing else after them.
func params(a *atr.ATR) (atr.Params, bool) {
	p := atr.Params{Inverse: a.TS == atr.Inverse, Historical: a.Historical}
	for i, g := range a.Groups {
		if g.HasTB || (i > 0 && (g.HasTA || g.HasTC)) {
			return p, false
		}
		if g.HasTA {
			if g.TA == 0 {
				return p, false
			}
			p.TA1 = g.TA
		}
		if g.HasTC {
			if g.TC == 0 {
				return p, false
			}
			p.TC1 = g.TC
		}
		if t, ok := g.Protocol(); ok {
			p.Protocols = append(p.Protocols, t)
		}
	}
	if len(p.Protocols) == 1 && p.Protocols[0] == 0 {
		return p, false // Build leaves a lone TD1 = 00 out
	}
	return p, true
}

// FuzzParseHistorical checks that the compact-TLV objects and status
// indicator found account for every byte after the category indicator.
func FuzzParseHistorical(f *testing.F) {
	for _, s := range []string{"80 73 80 01 40", "80 73 FF 01 00", "00 31 C0 73 80 00 00 05 90 00", "10 02",
		"80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00", "80 31 C0 82 90 00", "4A 43 4F 50"} {
		f.Add(h(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		hist, err := atr.ParseHistorical(in)
		if hist == nil {
			t.Fatal("nil Historical")
		}
		if err != nil {
			if !errors.Is(err, atr.ErrTruncated) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if len(in) == 0 {
			return
		}
		var re []byte
		switch hist.Category {
		case atr.CategoryStatusLast, atr.CategoryCompactTLV:
			objs := hist.Objects
			if len(objs) > 0 && objs[0].Tag == atr.TagApplicationID && len(in) > 1 && in[1] == 0x4F {
				re = append(re, 0x4F, byte(len(objs[0].Value)))
				re = append(re, objs[0].Value...)
				objs = objs[1:]
			}
			for _, o := range objs {
				re = append(re, o.Tag<<4|byte(len(o.Value)))
				re = append(re, o.Value...)
			}
			if hist.Category == atr.CategoryStatusLast {
				re = append(re, hist.Status...)
			}
		default:
			re = hist.Data
		}
		if !bytes.Equal(in[1:], re) {
			t.Fatalf("%X: objects account for %X", in, re)
		}
	})
}

// Explain the ATR our purse presents and check its protocols.
func ExampleATR_Describe() {
	a, err := atr.Parse([]byte{0x3B, 0x85, 0x80, 0x01, 0x80, 0x73, 0x80, 0x01, 0x40, 0x36})
	if err != nil {
		panic(err)
	}
	fmt.Println(a.Protocols(), a.IsContactless(), a.TCKValid())
	hist, _ := a.DecodeHistorical()
	c, _ := hist.Capabilities()
	fmt.Println("extended length:", c.ExtendedLength())
	// Output:
	// [0 1] true true
	// extended length: true
}

// Build the ATR a PC/SC reader would show for a contactless card.
func ExampleContactless() {
	b, err := atr.Contactless([]byte{0x80, 0x73, 0x80, 0x01, 0x40})
	if err != nil {
		panic(err)
	}
	fmt.Printf("% X\n", b)
	// Output: 3B 85 80 01 80 73 80 01 40 36
}
