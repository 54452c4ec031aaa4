package reader

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChaining(t *testing.T) {
	d10 := data(0, 10)
	d300 := data(0, 300)
	tests := []struct {
		name    string
		maxData int
		cmd     string
		script  []exchange
		want    string
	}{
		{
			name:    "fits: passed through",
			maxData: 4,
			cmd:     "00DA000004" + data(0, 4),
			script:  []exchange{{cmd: "00DA000004" + data(0, 4), resp: "9000"}},
			want:    "9000",
		},
		{
			name:    "split 4+4+2, Le only on the last block",
			maxData: 4,
			cmd:     "00DB3FFF0A" + d10 + "00",
			script: []exchange{
				{cmd: "10DB3FFF04" + d10[0:8], resp: "9000"},
				{cmd: "10DB3FFF04" + d10[8:16], resp: "9000"},
				{cmd: "00DB3FFF02" + d10[16:20] + "00", resp: "CAFE 9000"},
			},
			want: "CAFE9000",
		},
		{
			name:    "channel bits kept",
			maxData: 5,
			cmd:     "03DB3FFF0A" + d10,
			script: []exchange{
				{cmd: "13DB3FFF05" + d10[0:10], resp: "9000"},
				{cmd: "03DB3FFF05" + d10[10:20], resp: "9000"},
			},
			want: "9000",
		},
		{
			name:    "intermediate error aborts the chain",
			maxData: 4,
			cmd:     "00DB3FFF0A" + d10,
			script: []exchange{
				{cmd: "10DB3FFF04" + d10[0:8], resp: "9000"},
				{cmd: "10DB3FFF04" + d10[8:16], resp: "6884"},
			},
			want: "6884",
		},
		{
			name:    "default block size 255 for short-only readers",
			maxData: 0,
			cmd:     "00DB3FFF00012C" + d300 + "0000",
			script: []exchange{
				{cmd: "10DB3FFFFF" + d300[:510], resp: "9000"},
				{cmd: "00DB3FFF2D" + d300[510:] + "00", resp: "6110"},
			},
			want: "6110",
		},
		{
			name:    "Ne > 256 on a short path becomes Le 00",
			maxData: 255,
			cmd:     "00B00000000400",
			script:  []exchange{{cmd: "00B0000000", resp: "6100"}},
			want:    "6100",
		},
		{
			name:    "needless extended form re-encoded short",
			maxData: 255,
			cmd:     "00DA0000000002ABCD",
			script:  []exchange{{cmd: "00DA000002ABCD", resp: "9000"}},
			want:    "9000",
		},
		{
			name:    "extended command that fits an extended path passes",
			maxData: 1024,
			cmd:     "00DB3FFF00012C" + d300 + "0000",
			script:  []exchange{{cmd: "00DB3FFF00012C" + d300 + "0000", resp: "9000"}},
			want:    "9000",
		},
		{
			name:    "malformed command passes to the card",
			maxData: 2,
			cmd:     "00DA000005AABB",
			script:  []exchange{{cmd: "00DA000005AABB", resp: "6700"}},
			want:    "6700",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Chaining(tc.maxData)(scripted(t, tc.script...)).Transceive(t.Context(), unhex(t, tc.cmd))
			require.NoError(t, err)
			require.Equal(t, hexString(t, tc.want), fmt.Sprintf("%X", got))
		})
	}
}

func TestChainingTransportError(t *testing.T) {
	tr := Chaining(4)(scripted(t,
		exchange{cmd: "10DA000004" + data(0, 4), resp: "9000"},
		exchange{cmd: "10DA000004" + data(4, 4), err: ErrReaderGone},
	))
	_, err := tr.Transceive(t.Context(), unhex(t, "00DA00000A"+data(0, 10)))
	require.ErrorIs(t, err, ErrReaderGone)
	require.ErrorContains(t, err, "block 2")
}

// TestChainingUnderGetResponse is the intended short-reader stack: a long
// command is chained and its long answer fetched with GET RESPONSE.
func TestChainingUnderGetResponse(t *testing.T) {
	tr := Stack(scripted(t,
		exchange{cmd: "10DA000004" + data(0, 4), resp: "9000"},
		exchange{cmd: "00DA000002" + data(4, 2) + "00", resp: "6104"},
		exchange{cmd: "00C0000004", resp: "01020304 9000"},
	), GetResponse(), Chaining(4))
	got, err := tr.Transceive(t.Context(), unhex(t, "00DA000006"+data(0, 6)+"00"))
	require.NoError(t, err)
	require.Equal(t, "010203049000", fmt.Sprintf("%X", got))
}
