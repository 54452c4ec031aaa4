// Package tlv decodes and encodes BER-TLV data objects as ISO/IEC 7816-4
// §5.2.2 and GlobalPlatform Card Specification v2.3.1 §11.1.5 profile
// ISO/IEC 8825-1 (X.690 BER): definite lengths only, tags of up to four
// bytes, and 00/FF padding tolerated between objects.
//
// Parsed values alias the input; copy them if the input buffer is reused.
package tlv

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Errors. Every error returned by this package wraps one of them with the
// offset or value that caused it, so callers match with errors.Is.
var (
	// ErrTruncated reports a tag, length or value running past the input.
	ErrTruncated = errors.New("tlv: truncated")
	// ErrBadLength reports a length field that is malformed (the indefinite
	// form 80, or more length bytes than this package supports).
	ErrBadLength = errors.New("tlv: bad length field")
	// ErrBadTag reports a tag that does not follow the BER rules or does not
	// fit a Tag.
	ErrBadTag = errors.New("tlv: bad tag")
	// ErrTooLong reports a value too long to encode with at most three
	// length bytes (83 xx xx xx, i.e. 16 MiB - 1).
	ErrTooLong = errors.New("tlv: value too long to encode")
)

// MaxLength is the longest value Encode accepts: the 83 xx xx xx form is the
// longest GlobalPlatform and 7816-4 implementations are expected to handle
// (GPCS §11.1.5 uses at most 82; ISO/IEC 7816-4 §5.2.2 allows 83).
const MaxLength = 0xFFFFFF

// maxDepth bounds how deeply Parse descends into constructed values. Real
// card data nests a handful of levels; the bound keeps hostile input from
// producing absurdly deep trees. Deeper constructed values keep their raw
// Value and get no Children.
const maxDepth = 32

// Tag is a BER-TLV tag, its bytes read as a big-endian number: 0x6F,
// 0x9F7F, 0xBF0C, 0x5F20, 0xDF8101. The first tag byte is the most
// significant non-zero byte, so a Tag is unambiguous: a one-byte tag is
// never 00 (that is padding) and a multi-byte tag starts with xxx11111.
type Tag uint32

// Len returns the number of bytes of the tag field.
func (t Tag) Len() int {
	switch {
	case t > 0xFFFFFF:
		return 4
	case t > 0xFFFF:
		return 3
	case t > 0xFF:
		return 2
	}
	return 1
}

// Bytes returns the tag field as it appears on the wire. GET DATA uses it for
// P1-P2 (ISO/IEC 7816-4 GET DATA).
func (t Tag) Bytes() []byte {
	n := t.Len()
	b := make([]byte, n)
	for i := range n {
		b[i] = byte(t >> (8 * (n - 1 - i)))
	}
	return b
}

// first returns the first tag byte, which carries the class and the
// constructed bit.
func (t Tag) first() byte { return byte(t >> (8 * (t.Len() - 1))) }

// Constructed reports bit b6 (0x20) of the first tag byte: the value is
// itself a sequence of BER-TLV objects (ISO/IEC 8825-1 §8.1.2.5).
func (t Tag) Constructed() bool { return t.first()&0x20 != 0 }

// Class returns bits b8b7 of the first tag byte: 0 universal, 1 application,
// 2 context-specific, 3 private (ISO/IEC 8825-1 §8.1.2.2).
func (t Tag) Class() int { return int(t.first() >> 6) }

// String returns the tag in hex as it is written in specifications: "9F7F".
func (t Tag) String() string { return fmt.Sprintf("%0*X", 2*t.Len(), uint32(t)) }

// Valid reports whether the tag can be encoded: the continuation bits must
// agree with the number of bytes (ISO/IEC 8825-1 §8.1.2.4).
func (t Tag) Valid() error {
	b := t.Bytes()
	if len(b) == 1 {
		if b[0] == 0x00 || b[0]&0x1F == 0x1F {
			return fmt.Errorf("%w: %s", ErrBadTag, t)
		}
		return nil
	}
	if b[0]&0x1F != 0x1F {
		return fmt.Errorf("%w: %s has %d bytes but its first byte announces none", ErrBadTag, t, len(b))
	}
	for i, c := range b[1:] {
		last := i == len(b)-2
		if (c&0x80 == 0) != last {
			return fmt.Errorf("%w: %s has a wrong continuation bit in byte %d", ErrBadTag, t, i+2)
		}
	}
	return nil
}

// TLV is one data object. For a constructed tag whose value parses as a
// sequence of objects, Children holds them; Value always holds the raw
// value bytes as received.
type TLV struct {
	Tag      Tag
	Value    []byte
	Children []TLV
}

// Parse decodes a sequence of BER-TLV objects. Bytes 00 and FF between
// objects are skipped as padding (ISO/IEC 7816-4 §5.2.2: they are not
// valid first tag bytes in interindustry data).
func Parse(b []byte) ([]TLV, error) {
	return parseList(b, 0, 0)
}

func parseList(b []byte, base, depth int) ([]TLV, error) {
	var list []TLV
	off := 0
	for off < len(b) {
		if isPadding(b[off]) {
			off++
			continue
		}
		t, n, err := parseOne(b[off:], base+off, depth)
		if err != nil {
			return nil, err
		}
		list = append(list, t)
		off += n
	}
	return list, nil
}

func isPadding(c byte) bool { return c == 0x00 || c == 0xFF }

// ParseOne decodes the first object in b, skipping leading 00/FF padding
// as Parse does, and returns the bytes after it. It lets a caller walk a
// stream object by object, or stop at the first one (GET DATA answers).
func ParseOne(b []byte) (TLV, []byte, error) {
	off := 0
	for off < len(b) && isPadding(b[off]) {
		off++
	}
	if off == len(b) {
		return TLV{}, b, fmt.Errorf("%w: no object in %d bytes", ErrTruncated, len(b))
	}
	t, n, err := parseOne(b[off:], off, 0)
	if err != nil {
		return TLV{}, b, err
	}
	return t, b[off+n:], nil
}

// parseOne decodes one object and returns its total encoded size. base is the
// offset of b in the outermost input, for error messages.
func parseOne(b []byte, base, depth int) (TLV, int, error) {
	tag, tn, err := parseTag(b, base)
	if err != nil {
		return TLV{}, 0, err
	}
	vlen, ln, err := parseLength(b[tn:], base+tn)
	if err != nil {
		return TLV{}, 0, fmt.Errorf("tag %s: %w", tag, err)
	}
	start := tn + ln
	if uint64(len(b)-start) < vlen {
		return TLV{}, 0, fmt.Errorf("%w: tag %s at offset %d needs %d value bytes, %d left", ErrTruncated, tag, base, vlen, len(b)-start)
	}
	end := start + int(vlen)
	t := TLV{Tag: tag, Value: b[start:end:end]}
	if tag.Constructed() && depth < maxDepth {
		// A constructed value that does not parse is kept raw: cards do
		// put proprietary data under constructed-looking tags.
		if kids, err := parseList(t.Value, base+start, depth+1); err == nil {
			t.Children = kids
		}
	}
	return t, end, nil
}

// parseTag reads a tag field (ISO/IEC 8825-1 §8.1.2): one byte, or when its
// low five bits are all ones, further bytes up to one with b8 clear.
func parseTag(b []byte, base int) (Tag, int, error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("%w: tag expected at offset %d", ErrTruncated, base)
	}
	t := Tag(b[0])
	if b[0]&0x1F != 0x1F {
		return t, 1, nil
	}
	for i := 1; ; i++ {
		if i >= len(b) {
			return 0, 0, fmt.Errorf("%w: multi-byte tag %X at offset %d", ErrTruncated, b, base)
		}
		if i >= 4 {
			return 0, 0, fmt.Errorf("%w: tag at offset %d is longer than 4 bytes", ErrBadTag, base)
		}
		t = t<<8 | Tag(b[i])
		if b[i]&0x80 == 0 {
			return t, i + 1, nil
		}
	}
}

// parseLength reads a definite length field (ISO/IEC 8825-1 §8.1.3): short
// form 00..7F, or 8n followed by n big-endian bytes. n is limited to 4; the
// indefinite form 80 is not allowed by ISO/IEC 7816-4 §5.2.2.
func parseLength(b []byte, base int) (uint64, int, error) {
	if len(b) == 0 {
		return 0, 0, fmt.Errorf("%w: length expected at offset %d", ErrTruncated, base)
	}
	first := b[0]
	if first < 0x80 {
		return uint64(first), 1, nil
	}
	n := int(first & 0x7F)
	switch {
	case n == 0:
		return 0, 0, fmt.Errorf("%w: indefinite length 80 at offset %d", ErrBadLength, base)
	case n > 4:
		return 0, 0, fmt.Errorf("%w: %02X at offset %d announces %d length bytes", ErrBadLength, first, base, n)
	case len(b) < 1+n:
		return 0, 0, fmt.Errorf("%w: length %02X at offset %d needs %d more bytes", ErrTruncated, first, base, n)
	}
	var l uint64
	for _, c := range b[1 : 1+n] {
		l = l<<8 | uint64(c)
	}
	return l, 1 + n, nil
}

// appendLength appends the shortest definite length field for n.
func appendLength(dst []byte, n int) ([]byte, error) {
	switch {
	case n < 0:
		return nil, fmt.Errorf("%w: negative length %d", ErrBadLength, n)
	case n < 0x80:
		return append(dst, byte(n)), nil
	case n <= 0xFF:
		return append(dst, 0x81, byte(n)), nil
	case n <= 0xFFFF:
		return append(dst, 0x82, byte(n>>8), byte(n)), nil
	case n <= MaxLength:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n)), nil
	}
	return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLong, n, MaxLength)
}

// Encode returns tag || length || value with the shortest length field.
func Encode(tag Tag, value []byte) ([]byte, error) {
	return appendTLV(make([]byte, 0, tag.Len()+4+len(value)), tag, value)
}

func appendTLV(dst []byte, tag Tag, value []byte) ([]byte, error) {
	if err := tag.Valid(); err != nil {
		return nil, err
	}
	dst = append(dst, tag.Bytes()...)
	dst, err := appendLength(dst, len(value))
	if err != nil {
		return nil, fmt.Errorf("tag %s: %w", tag, err)
	}
	return append(dst, value...), nil
}

// Bytes encodes the object. When Children is non-empty the value is
// re-encoded from them (so edits to children are reflected and padding
// inside the original value is dropped); otherwise Value is used as is.
func (t TLV) Bytes() ([]byte, error) { return t.Append(nil) }

// Append appends the encoded object to dst.
func (t TLV) Append(dst []byte) ([]byte, error) {
	if len(t.Children) == 0 {
		return appendTLV(dst, t.Tag, t.Value)
	}
	value, err := EncodeList(t.Children)
	if err != nil {
		return nil, fmt.Errorf("in %s: %w", t.Tag, err)
	}
	return appendTLV(dst, t.Tag, value)
}

// EncodeList encodes a sequence of objects back to back.
func EncodeList(list []TLV) ([]byte, error) {
	var out []byte
	for _, t := range list {
		var err error
		if out, err = t.Append(out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Find follows a path of tags from the top level down: Find(fci, 0x6F,
// 0xA5, 0x9F65) returns the 9F65 inside the A5 inside the 6F. When several
// objects share a tag at one level they are tried in order, so the first
// complete match wins.
func Find(list []TLV, path ...Tag) (TLV, bool) {
	if len(path) == 0 {
		return TLV{}, false
	}
	for _, t := range list {
		if t.Tag != path[0] {
			continue
		}
		if len(path) == 1 {
			return t, true
		}
		if found, ok := Find(t.Children, path[1:]...); ok {
			return found, true
		}
	}
	return TLV{}, false
}

// FindAll returns every object with the given tag at any depth, in
// depth-first pre-order (the order they appear in the encoding).
func FindAll(list []TLV, tag Tag) []TLV {
	var out []TLV
	var walk func([]TLV)
	walk = func(l []TLV) {
		for _, t := range l {
			if t.Tag == tag {
				out = append(out, t)
			}
			walk(t.Children)
		}
	}
	walk(list)
	return out
}

// Dump writes an indented tree, one object per line: the tag, the value
// length in brackets, and for primitive objects the value in hex (followed
// by its text when it is all printable ASCII, as names and labels are).
//
//	6F [15]
//	  84 [7] A0000001510000
//	  A5 [4]
//	    9F65 [1] FF
func Dump(w io.Writer, list []TLV) error {
	var sb strings.Builder
	dump(&sb, list, 0)
	_, err := io.WriteString(w, sb.String())
	return err
}

// Format returns what Dump writes.
func Format(list []TLV) string {
	var sb strings.Builder
	dump(&sb, list, 0)
	return sb.String()
}

func dump(sb *strings.Builder, list []TLV, depth int) {
	for _, t := range list {
		sb.WriteString(strings.Repeat("  ", depth))
		fmt.Fprintf(sb, "%s [%d]", t.Tag, len(t.Value))
		if len(t.Children) > 0 {
			sb.WriteByte('\n')
			dump(sb, t.Children, depth+1)
			continue
		}
		if len(t.Value) > 0 {
			fmt.Fprintf(sb, " %X", t.Value)
			if printable(t.Value) {
				fmt.Fprintf(sb, " %q", t.Value)
			}
		}
		sb.WriteByte('\n')
	}
}

// printable reports text worth showing next to the hex: at least two bytes,
// all printable ASCII.
func printable(b []byte) bool {
	if len(b) < 2 {
		return false
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return true
}
