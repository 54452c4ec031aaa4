package reader

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWrongLength(t *testing.T) {
	ext := "00D60000" + "000100" + data(0, 256) // case 3E, 256 data bytes
	tests := []struct {
		name   string
		cmd    string
		script []exchange
		want   string
	}{
		{
			name:   "9000 passes through",
			cmd:    "00B0000010",
			script: []exchange{{cmd: "00B0000010", resp: data(0, 16) + "9000"}},
			want:   data(0, 16) + "9000",
		},
		{
			name: "6Cxx re-sends with Le = xx",
			cmd:  "00B0000000",
			script: []exchange{
				{cmd: "00B0000000", resp: "6C08"},
				{cmd: "00B0000008", resp: data(0, 8) + "9000"},
			},
			want: data(0, 8) + "9000",
		},
		{
			name: "6C00 means 256",
			cmd:  "00B0000010",
			script: []exchange{
				{cmd: "00B0000010", resp: "6C00"},
				{cmd: "00B0000000", resp: data(0, 256) + "9000"},
			},
			want: data(0, 256) + "9000",
		},
		{
			name: "case 1 gains an Le",
			cmd:  "80CA00FE",
			script: []exchange{
				{cmd: "80CA00FE", resp: "6C02"},
				{cmd: "80CA00FE02", resp: "0102 9000"},
			},
			want: "01029000",
		},
		{
			name: "case 4 keeps its data",
			cmd:  "00CB3FFF045C027F6800",
			script: []exchange{
				{cmd: "00CB3FFF045C027F6800", resp: "6C03"},
				{cmd: "00CB3FFF045C027F6803", resp: "010203 9000"},
			},
			want: "0102039000",
		},
		{
			name: "only once",
			cmd:  "00B0000000",
			script: []exchange{
				{cmd: "00B0000000", resp: "6C08"},
				{cmd: "00B0000008", resp: "6C04"},
			},
			want: "6C04",
		},
		{
			name: "extended data keeps the extended form",
			cmd:  ext,
			script: []exchange{
				{cmd: ext, resp: "6C04"},
				{cmd: ext + "0004", resp: "01020304 9000"},
			},
			want: "01020304 9000",
		},
		{
			name:   "malformed command gets the 6Cxx back",
			cmd:    "00B00000030102",
			script: []exchange{{cmd: "00B00000030102", resp: "6C01"}},
			want:   "6C01",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := WrongLength()(scripted(t, tc.script...)).Transceive(t.Context(), unhex(t, tc.cmd))
			require.NoError(t, err)
			require.Equal(t, hexString(t, tc.want), fmt.Sprintf("%X", got))
		})
	}
}

func TestWrongLengthTransportError(t *testing.T) {
	tr := WrongLength()(scripted(t,
		exchange{cmd: "00B0000000", resp: "6C08"},
		exchange{cmd: "00B0000008", err: ErrCardRemoved},
	))
	_, err := tr.Transceive(t.Context(), unhex(t, "00B0000000"))
	require.ErrorIs(t, err, ErrCardRemoved)
}
