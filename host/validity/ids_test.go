package validity

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu/purse"
)

func TestParseCardKey(t *testing.T) {
	tests := []struct {
		in   string
		want CardKey
		ok   bool
	}{
		{"1122334455667788", 0x1122334455667788, true},
		{"abcdefABCDEF0099", 0xABCDEFABCDEF0099, true},
		{"0000000000000000", 0, true},
		{"FFFFFFFFFFFFFFFF", 0xFFFFFFFFFFFFFFFF, true},
		{"", 0, false},
		{"112233445566778", 0, false},
		{"11223344556677889", 0, false},
		{"11223344556677G8", 0, false},
		{"1122 34455667788", 0, false},
		{"+122334455667788", 0, false},
		{"１122334455667788", 0, false}, // non-ASCII digit
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCardKey(tt.in)
			if !tt.ok {
				require.ErrorIs(t, err, ErrBadCardID)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			back, err := ParseCardKey(got.String())
			require.NoError(t, err)
			require.Equal(t, got, back)
			require.Equal(t, got, CardKeyOf(got.CardID()))
		})
	}
	require.Equal(t, CardKey(0x1122334455667788), CardKeyOf(purse.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}))
}

func TestParseTerminalKey(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"TERM0001", true},
		{"T 1-/.#*", true},
		{"~~~~~~~~", true},
		{"", false},
		{"TERM001", false},
		{"TERM00001", false},
		{"TERM\x00001", false},
		{"TERM\x7f001", false},
		{"TÉRM001", false}, // 8 bytes, one not ASCII
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTerminalKey(tt.in)
			if !tt.ok {
				require.ErrorIs(t, err, ErrBadTerminalID)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.in, got.String())
			require.Equal(t, got, TerminalKeyOf(got.TerminalID()))
		})
	}
}

func FuzzParseCardKey(f *testing.F) {
	for _, s := range []string{"1122334455667788", "abcdefABCDEF0099", "", "11223344556677G8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseCardKey(s)
		if err != nil {
			require.ErrorIs(t, err, ErrBadCardID)
			return
		}
		back, err := ParseCardKey(k.String())
		require.NoError(t, err)
		require.Equal(t, k, back)
	})
}

func FuzzParseTerminalKey(f *testing.F) {
	for _, s := range []string{"TERM0001", "", "TERM\x00001", "TÉRM001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseTerminalKey(s)
		if err != nil {
			require.ErrorIs(t, err, ErrBadTerminalID)
			return
		}
		require.Equal(t, s, k.String())
	})
}
