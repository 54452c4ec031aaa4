package tlv_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu/tlv"
)

// h decodes test hex, ignoring spaces.
func h(s string) []byte {
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		panic(err)
	}
	return b
}

func rep(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }

// Vectors built for these tests after the layouts in GPCS v2.3.1.
var (
	// SELECT response of an issuer security domain (GPCS Table 11-82):
	// 6F { 84 AID, A5 { 9F6E lifecycle data, 9F65 max command length } }.
	isdFCI = h(`6F 19
		84 08 A0 00 00 01 51 00 00 00
		A5 0D
			9F 6E 06 00 11 22 33 44 55
			9F 65 01 FF`)
	// GET STATUS response in the TLV format (GPCS §11.4.3.2), two entries:
	// E3 { 4F AID, 9F70 life cycle, C5 privileges }.
	getStatus = h(`E3 13
			4F 08 A0 00 00 01 51 00 00 00
			9F 70 01 0F
			C5 03 9E FE 80
		E3 16
			4F 0B F0 00 00 00 01 50 55 52 53 45 01
			9F 70 01 07
			C5 03 00 00 00`)
)

func leaf(tag tlv.Tag, v string) tlv.TLV { return tlv.TLV{Tag: tag, Value: h(v)} }

func TestTag(t *testing.T) {
	tests := []struct {
		tag         tlv.Tag
		str         string
		n           int
		constructed bool
		class       int
		valid       bool
	}{
		{0x84, "84", 1, false, 2, true},
		{0x6F, "6F", 1, true, 1, true},
		{0xA5, "A5", 1, true, 2, true},
		{0xE3, "E3", 1, true, 3, true},
		{0x04, "04", 1, false, 0, true},
		{0x5F20, "5F20", 2, false, 1, true},
		{0x9F7F, "9F7F", 2, false, 2, true},
		{0xBF0C, "BF0C", 2, true, 2, true},
		{0x7F21, "7F21", 2, true, 1, true},
		{0xDF8101, "DF8101", 3, false, 3, true},
		{0x1F818201, "1F818201", 4, false, 0, true},
		{0x00, "00", 1, false, 0, false},         // padding, not a tag
		{0x1F, "1F", 1, false, 0, false},         // announces a second byte
		{0xFF, "FF", 1, true, 3, false},          // announces a second byte
		{0x9F81, "9F81", 2, false, 2, false},     // last byte has b8 set
		{0x8401, "8401", 2, false, 2, false},     // first byte announces no more
		{0x9F0101, "9F0101", 3, false, 2, false}, // middle byte has b8 clear
	}
	for _, tc := range tests {
		t.Run(tc.str, func(t *testing.T) {
			require.Equal(t, tc.str, tc.tag.String())
			require.Equal(t, tc.n, tc.tag.Len())
			require.Equal(t, h(tc.str), tc.tag.Bytes())
			require.Equal(t, tc.constructed, tc.tag.Constructed())
			require.Equal(t, tc.class, tc.tag.Class())
			if tc.valid {
				require.NoError(t, tc.tag.Valid())
			} else {
				require.ErrorIs(t, tc.tag.Valid(), tlv.ErrBadTag)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []tlv.TLV
	}{
		{"empty", nil, nil},
		{"only padding", h("00 FF 00"), nil},
		{"primitive", h("84 07 A0 00 00 01 51 00 00"), []tlv.TLV{leaf(0x84, "A0000001510000")}},
		{"empty value", h("84 00"), []tlv.TLV{leaf(0x84, "")}},
		{"two-byte tag 5F20", h("5F 20 05 41 4C 49 43 45"), []tlv.TLV{leaf(0x5F20, "414C494345")}},
		{"two-byte tag 9F7F", h("9F 7F 02 12 34"), []tlv.TLV{leaf(0x9F7F, "1234")}},
		{"three-byte tag", h("DF 81 01 01 AA"), []tlv.TLV{leaf(0xDF8101, "AA")}},
		{"four-byte tag", h("1F 81 82 01 00"), []tlv.TLV{leaf(0x1F818201, "")}},
		{"81 length", append(h("C4 81 80"), rep(0xAB, 128)...), []tlv.TLV{{Tag: 0xC4, Value: rep(0xAB, 128)}}},
		{"82 length", append(h("C4 82 01 00"), rep(0xCD, 256)...), []tlv.TLV{{Tag: 0xC4, Value: rep(0xCD, 256)}}},
		{"83 length", append(h("C4 83 00 01 01"), rep(0xEF, 257)...), []tlv.TLV{{Tag: 0xC4, Value: rep(0xEF, 257)}}},
		{"84 length", h("C4 84 00 00 00 02 01 02"), []tlv.TLV{leaf(0xC4, "0102")}},
		{"non-minimal 81 length", h("C4 81 02 01 02"), []tlv.TLV{leaf(0xC4, "0102")}},
		{"padding between and around", h("00 00 84 01 AA FF FF 85 00 00"), []tlv.TLV{leaf(0x84, "AA"), leaf(0x85, "")}},
		{"constructed BF0C", h("BF 0C 05 9F 4D 02 0B 0A"), []tlv.TLV{{
			Tag: 0xBF0C, Value: h("9F4D020B0A"), Children: []tlv.TLV{leaf(0x9F4D, "0B0A")},
		}}},
		{"empty constructed", h("A5 00"), []tlv.TLV{leaf(0xA5, "")}},
		{"constructed value that is not TLV stays raw", h("A5 02 9F 7F"), []tlv.TLV{leaf(0xA5, "9F7F")}},
		{"constructed with inner padding", h("E3 05 00 4F 01 AA FF"), []tlv.TLV{{
			Tag: 0xE3, Value: h("004F01AAFF"), Children: []tlv.TLV{leaf(0x4F, "AA")},
		}}},
		{"ISD FCI", isdFCI, []tlv.TLV{{
			Tag: 0x6F, Value: isdFCI[2:], Children: []tlv.TLV{
				leaf(0x84, "A000000151000000"),
				{Tag: 0xA5, Value: h("9F6E06001122334455 9F6501FF"), Children: []tlv.TLV{
					leaf(0x9F6E, "001122334455"),
					leaf(0x9F65, "FF"),
				}},
			},
		}}},
		{"GET STATUS entries", getStatus, []tlv.TLV{
			{Tag: 0xE3, Value: getStatus[2:21], Children: []tlv.TLV{
				leaf(0x4F, "A000000151000000"), leaf(0x9F70, "0F"), leaf(0xC5, "9EFE80"),
			}},
			{Tag: 0xE3, Value: getStatus[23:], Children: []tlv.TLV{
				leaf(0x4F, "F0000000015055525345 01"), leaf(0x9F70, "07"), leaf(0xC5, "000000"),
			}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tlv.Parse(tc.in)
			require.NoError(t, err)
			require.Equal(t, normalise(tc.want), normalise(got))
		})
	}
}

// normalise makes empty values comparable whatever slice they alias.
func normalise(list []tlv.TLV) []tlv.TLV {
	if list == nil {
		return nil
	}
	out := make([]tlv.TLV, len(list))
	for i, t := range list {
		out[i] = tlv.TLV{Tag: t.Tag, Value: append([]byte{}, t.Value...), Children: normalise(t.Children)}
	}
	return out
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"tag without length", h("84"), tlv.ErrTruncated},
		{"value shorter than length", h("84 05 AA"), tlv.ErrTruncated},
		{"multi-byte tag cut", h("9F"), tlv.ErrTruncated},
		{"multi-byte tag cut after continuation", h("DF 81"), tlv.ErrTruncated},
		{"five-byte tag", h("9F 81 82 83 04 01 00"), tlv.ErrBadTag},
		{"indefinite length", h("A5 80 84 01 AA 00 00"), tlv.ErrBadLength},
		{"five length bytes", h("84 85 00 00 00 00 01"), tlv.ErrBadLength},
		{"82 length cut", h("84 82 01"), tlv.ErrTruncated},
		{"84 length beyond input", h("84 84 FF FF FF FF 00"), tlv.ErrTruncated},
		{"second object truncated", h("84 01 AA 85 02 BB"), tlv.ErrTruncated},
		{"outer length beyond input", h("6F 10 84 01 AA"), tlv.ErrTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tlv.Parse(tc.in)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, got)
		})
	}
}

func TestParseOne(t *testing.T) {
	first, rest, err := tlv.ParseOne(getStatus)
	require.NoError(t, err)
	require.Equal(t, tlv.Tag(0xE3), first.Tag)
	require.Len(t, first.Children, 3)
	require.Equal(t, getStatus[21:], rest)

	second, rest, err := tlv.ParseOne(append(append([]byte{0xFF, 0x00}, rest...), 0x00))
	require.NoError(t, err)
	require.Equal(t, h("F000000001505552534501"), second.Children[0].Value)
	require.Equal(t, []byte{0x00}, rest)

	_, rest, err = tlv.ParseOne(rest)
	require.ErrorIs(t, err, tlv.ErrTruncated)
	require.Equal(t, []byte{0x00}, rest, "input returned untouched on error")

	_, _, err = tlv.ParseOne(h("9F 7F 81"))
	require.ErrorIs(t, err, tlv.ErrTruncated)
}

func TestEncode(t *testing.T) {
	tests := []struct {
		name   string
		tag    tlv.Tag
		n      int
		header string
	}{
		{"empty", 0x84, 0, "84 00"},
		{"127", 0x84, 127, "84 7F"},
		{"128", 0x84, 128, "84 81 80"},
		{"255", 0xC4, 255, "C4 81 FF"},
		{"256", 0xC4, 256, "C4 82 01 00"},
		{"65535", 0xC4, 65535, "C4 82 FF FF"},
		{"65536", 0xC4, 65536, "C4 83 01 00 00"},
		{"two-byte tag", 0x9F7F, 1, "9F 7F 01"},
		{"three-byte tag", 0xDF8101, 2, "DF 81 01 02"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := rep(0x5A, tc.n)
			got, err := tlv.Encode(tc.tag, v)
			require.NoError(t, err)
			hdr := h(tc.header)
			require.Equal(t, hdr, got[:len(hdr)])
			require.Len(t, got, len(hdr)+tc.n)
			back, err := tlv.Parse(got)
			require.NoError(t, err)
			require.Len(t, back, 1)
			require.Equal(t, tc.tag, back[0].Tag)
			require.Len(t, back[0].Value, tc.n)
		})
	}

	for _, bad := range []tlv.Tag{0x00, 0x1F, 0xFF, 0x9F81, 0x8401, 0x9F0101} {
		_, err := tlv.Encode(bad, nil)
		require.ErrorIs(t, err, tlv.ErrBadTag, "%s", bad)
	}
}

func TestEncodeLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 32 MiB")
	}
	v := make([]byte, tlv.MaxLength+1)
	got, err := tlv.Encode(0xC4, v[:tlv.MaxLength])
	require.NoError(t, err)
	require.Equal(t, h("C4 83 FF FF FF"), got[:5])

	got, err = tlv.Encode(0xC4, v)
	require.ErrorIs(t, err, tlv.ErrTooLong)
	require.Nil(t, got)

	// A child that is too long fails the whole tree instead of being cut.
	_, err = tlv.TLV{Tag: 0x6F, Children: []tlv.TLV{{Tag: 0xC4, Value: v}}}.Bytes()
	require.ErrorIs(t, err, tlv.ErrTooLong)
}

func TestBytes(t *testing.T) {
	for _, in := range [][]byte{isdFCI, getStatus, h("BF 0C 05 9F 4D 02 0B 0A")} {
		list, err := tlv.Parse(in)
		require.NoError(t, err)
		out, err := tlv.EncodeList(list)
		require.NoError(t, err)
		require.Equal(t, in, out)
	}

	// Children win over Value, so an edited tree re-encodes with the new
	// lengths all the way up.
	list, err := tlv.Parse(isdFCI)
	require.NoError(t, err)
	list[0].Children[1].Children[1].Value = h("0400")
	out, err := list[0].Bytes()
	require.NoError(t, err)
	require.Equal(t, h("6F 1A 84 08 A0 00 00 01 51 00 00 00 A5 0E 9F 6E 06 00 11 22 33 44 55 9F 65 02 04 00"), out)

	// Padding inside a constructed value is dropped on re-encoding.
	list, err = tlv.Parse(h("E3 05 00 4F 01 AA FF"))
	require.NoError(t, err)
	out, err = list[0].Bytes()
	require.NoError(t, err)
	require.Equal(t, h("E3 03 4F 01 AA"), out)

	// Building from scratch.
	fci := tlv.TLV{Tag: 0x6F, Children: []tlv.TLV{
		leaf(0x84, "F0000000015055525345 01"),
		{Tag: 0xA5, Children: []tlv.TLV{leaf(0x50, "5055525345")}},
	}}
	out, err = fci.Append([]byte{0xEE})
	require.NoError(t, err)
	require.Equal(t, h("EE 6F 16 84 0B F0 00 00 00 01 50 55 52 53 45 01 A5 07 50 05 50 55 52 53 45"), out)

	_, err = tlv.EncodeList([]tlv.TLV{leaf(0x84, "01"), leaf(0x1F, "")})
	require.ErrorIs(t, err, tlv.ErrBadTag)
}

func TestFind(t *testing.T) {
	fci, err := tlv.Parse(isdFCI)
	require.NoError(t, err)

	got, ok := tlv.Find(fci, 0x6F, 0xA5, 0x9F65)
	require.True(t, ok)
	require.Equal(t, h("FF"), got.Value)

	got, ok = tlv.Find(fci, 0x6F, 0x84)
	require.True(t, ok)
	require.Equal(t, h("A000000151000000"), got.Value)

	_, ok = tlv.Find(fci, 0xA5)
	require.False(t, ok, "A5 is not at the top level")
	_, ok = tlv.Find(fci, 0x6F, 0xA5, 0x9F65, 0x01)
	require.False(t, ok, "a primitive object has no children")
	_, ok = tlv.Find(fci)
	require.False(t, ok, "empty path")

	// The first A5 lacks 50; Find backtracks to the second.
	two, err := tlv.Parse(h("A5 03 87 01 01 A5 04 50 02 41 42"))
	require.NoError(t, err)
	got, ok = tlv.Find(two, 0xA5, 0x50)
	require.True(t, ok)
	require.Equal(t, []byte("AB"), got.Value)

	entries, err := tlv.Parse(getStatus)
	require.NoError(t, err)
	aids := tlv.FindAll(entries, 0x4F)
	require.Len(t, aids, 2)
	require.Equal(t, h("A000000151000000"), aids[0].Value)
	require.Equal(t, h("F000000001505552534501"), aids[1].Value)
	require.Len(t, tlv.FindAll(entries, 0xE3), 2)
	require.Empty(t, tlv.FindAll(entries, 0x84))

	// Pre-order: an outer match comes before the matches nested in it.
	nested, err := tlv.Parse(h("E3 04 E3 02 4F 00 E3 00"))
	require.NoError(t, err)
	all := tlv.FindAll(nested, 0xE3)
	require.Len(t, all, 3)
	require.Len(t, all[0].Value, 4)
	require.Len(t, all[1].Value, 2)
	require.Empty(t, all[2].Value)
}

func TestDump(t *testing.T) {
	list, err := tlv.Parse(append(isdFCI, h("5F 20 05 41 4C 49 43 45 A5 00")...))
	require.NoError(t, err)
	want := `6F [25]
  84 [8] A000000151000000
  A5 [13]
    9F6E [6] 001122334455
    9F65 [1] FF
5F20 [5] 414C494345 "ALICE"
A5 [0]
`
	require.Equal(t, want, tlv.Format(list))
	var sb strings.Builder
	require.NoError(t, tlv.Dump(&sb, list))
	require.Equal(t, want, sb.String())

	require.Error(t, tlv.Dump(failWriter{}, list))
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestDeepNesting(t *testing.T) {
	// 200 nested constructed objects: parsing stays bounded, the tree
	// stops growing at some depth and still re-encodes exactly.
	in := []byte{0x84, 0x00}
	for range 200 {
		v, err := tlv.Encode(0xE3, in)
		require.NoError(t, err)
		in = v
	}
	list, err := tlv.Parse(in)
	require.NoError(t, err)
	depth := 0
	for l := list; len(l) > 0; l = l[0].Children {
		depth++
	}
	require.Less(t, depth, 200)
	require.Greater(t, depth, 8)
	out, err := tlv.EncodeList(list)
	require.NoError(t, err)
	require.Equal(t, in, out)
}

// sameTree compares what a re-encoding must preserve: tags, and values of
// the objects that have no parsed children (a parent's raw value may lose
// padding or shorten its length fields).
func sameTree(a, b []tlv.TLV) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Tag != b[i].Tag || len(a[i].Children) != len(b[i].Children) {
			return false
		}
		if len(a[i].Children) == 0 && !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
		if !sameTree(a[i].Children, b[i].Children) {
			return false
		}
	}
	return true
}

// FuzzParse checks that parsing never panics, errors are classified, and
// that re-encoding a parsed tree parses back to the same tree. Re-encoding
// only ever drops padding and shortens length fields, so it can only get
// shorter, and when it is not shorter the input was canonical and must come
// back byte for byte.
func FuzzParse(f *testing.F) {
	for _, s := range [][]byte{isdFCI, getStatus, h("00 84 01 AA FF"), h("A5 02 9F 7F"), h("C4 81 02 01 02")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		list, err := tlv.Parse(in)
		if err != nil {
			if !errors.Is(err, tlv.ErrTruncated) && !errors.Is(err, tlv.ErrBadLength) && !errors.Is(err, tlv.ErrBadTag) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		out, err := tlv.EncodeList(list)
		if err != nil {
			t.Fatalf("parsed %X but cannot re-encode: %v", in, err)
		}
		if len(out) > len(in) {
			t.Fatalf("re-encoding grew: %X -> %X", in, out)
		}
		if len(out) == len(in) && !bytes.Equal(in, out) {
			t.Fatalf("canonical input changed: %X -> %X", in, out)
		}
		again, err := tlv.Parse(out)
		if err != nil {
			t.Fatalf("re-encoding %X does not parse: %v", out, err)
		}
		if !sameTree(list, again) {
			t.Fatalf("tree changed:\n%s---\n%s", tlv.Format(list), tlv.Format(again))
		}
		// The one-by-one walk sees the same top-level objects.
		var n int
		for rest := in; ; n++ {
			one, r, err := tlv.ParseOne(rest)
			if err != nil {
				break
			}
			if one.Tag != list[n].Tag {
				t.Fatalf("ParseOne object %d is %s, Parse says %s", n, one.Tag, list[n].Tag)
			}
			rest = r
		}
		if n != len(list) {
			t.Fatalf("ParseOne found %d objects, Parse %d", n, len(list))
		}
		_ = tlv.Format(list)
	})
}

func BenchmarkTLVParse(b *testing.B) {
	in := append(append([]byte{}, getStatus...), isdFCI...)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := tlv.Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

// Read the maximum command length a security domain announces in its FCI.
func ExampleFind() {
	fci, err := tlv.Parse([]byte{
		0x6F, 0x10,
		0x84, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00,
		0xA5, 0x04, 0x9F, 0x65, 0x01, 0xFF,
	})
	if err != nil {
		panic(err)
	}
	if max, ok := tlv.Find(fci, 0x6F, 0xA5, 0x9F65); ok {
		fmt.Println("max command data:", max.Value[0])
	}
	// Output: max command data: 255
}

// Build a GET STATUS entry and show it as a tree.
func ExampleTLV_Bytes() {
	entry := tlv.TLV{Tag: 0xE3, Children: []tlv.TLV{
		{Tag: 0x4F, Value: []byte{0xA0, 0x00, 0x00, 0x01, 0x51}},
		{Tag: 0x9F70, Value: []byte{0x07}},
	}}
	b, err := entry.Bytes()
	if err != nil {
		panic(err)
	}
	fmt.Printf("% X\n", b)
	list, _ := tlv.Parse(b)
	_ = tlv.Dump(os.Stdout, list)
	// Output:
	// E3 0B 4F 05 A0 00 00 01 51 9F 70 01 07
	// E3 [11]
	//   4F [5] A000000151
	//   9F70 [1] 07
}
