package reader

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
)

// exchange is one step of a scripted card: the command it expects and its
// answer, in hex (spaces allowed), or a transport error.
type exchange struct {
	cmd, resp string
	err       error
}

// scripted returns a fake card that expects exactly the scripted commands in
// order and fails the test otherwise, including when the test ends before
// the script does.
func scripted(t *testing.T, script ...exchange) Transceiver {
	t.Helper()
	i := 0
	t.Cleanup(func() {
		if !t.Failed() {
			require.Equal(t, len(script), i, "the card expected more commands")
		}
	})
	return TransceiverFunc(func(ctx context.Context, cmd []byte) ([]byte, error) {
		require.Less(t, i, len(script), "unexpected command %X after the script", cmd)
		e := script[i]
		i++
		require.Equal(t, hexString(t, e.cmd), fmt.Sprintf("%X", cmd), "command %d", i)
		if e.err != nil {
			return nil, e.err
		}
		return unhex(t, e.resp), nil
	})
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := apdu.DecodeHex(s)
	require.NoError(t, err)
	return b
}

func hexString(t testing.TB, s string) string { return fmt.Sprintf("%X", unhex(t, s)) }

// data returns n bytes counting up from start, as hex.
func data(start, n int) string {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "%02X", byte(start+i))
	}
	return sb.String()
}

func TestGetResponse(t *testing.T) {
	tests := []struct {
		name   string
		opts   []GetResponseOption
		cmd    string
		script []exchange
		want   string
	}{
		{
			name:   "no 61xx passes through",
			cmd:    "00A4040000",
			script: []exchange{{cmd: "00A4040000", resp: "6F00 9000"}},
			want:   "6F009000",
		},
		{
			name: "61xx chain concatenates, 6100 asks for 256",
			cmd:  "00CA9F7F00",
			script: []exchange{
				{cmd: "00CA9F7F00", resp: "AABB 6102"},
				{cmd: "00C0000002", resp: "CCDD 6100"},
				{cmd: "00C0000000", resp: data(0, 256) + "9000"},
			},
			want: "AABBCCDD" + data(0, 256) + "9000",
		},
		{
			name: "last status word ends the result",
			cmd:  "00B0000000",
			script: []exchange{
				{cmd: "00B0000000", resp: "6104"},
				{cmd: "00C0000004", resp: "01020304 6282"},
			},
			want: "01020304 6282",
		},
		{
			name: "6Cxx to GET RESPONSE re-issues it with the exact length",
			cmd:  "80500000080102030405060708",
			script: []exchange{
				{cmd: "80500000080102030405060708", resp: "6110"},
				{cmd: "00C0000010", resp: "6C08"},
				{cmd: "00C0000008", resp: data(1, 8) + "9000"},
			},
			want: data(1, 8) + "9000",
		},
		{
			name: "error answer to GET RESPONSE is the result",
			cmd:  "00B0000000",
			script: []exchange{
				{cmd: "00B0000000", resp: "AA 6101"},
				{cmd: "00C0000001", resp: "6F00"},
			},
			want: "AA6F00",
		},
		{
			name: "logical channel 1 in a GP class",
			cmd:  "81CA006600",
			script: []exchange{
				{cmd: "81CA006600", resp: "6101"},
				{cmd: "01C0000001", resp: "55 9000"},
			},
			want: "559000",
		},
		{
			name: "secure messaging and chaining bits cleared, channel kept",
			cmd:  "1EB0000000",
			script: []exchange{
				{cmd: "1EB0000000", resp: "6101"},
				{cmd: "02C0000001", resp: "55 9000"},
			},
			want: "559000",
		},
		{
			name: "further interindustry class keeps channel 9",
			cmd:  "65B0000000",
			script: []exchange{
				{cmd: "65B0000000", resp: "6101"},
				{cmd: "45C0000001", resp: "55 9000"},
			},
			want: "559000",
		},
		{
			name: "GetResponseCLA overrides the class",
			opts: []GetResponseOption{GetResponseCLA(func(byte) byte { return 0xA0 })},
			cmd:  "A0A40000023F00",
			script: []exchange{
				{cmd: "A0A40000023F00", resp: "6102"},
				{cmd: "A0C0000002", resp: "0102 9000"},
			},
			want: "01029000",
		},
		{
			name: "LimitToNe stops at Ne and keeps the card's 61xx",
			opts: []GetResponseOption{LimitToNe()},
			cmd:  "00B0000006",
			script: []exchange{
				{cmd: "00B0000006", resp: "0102 6110"},
				{cmd: "00C0000004", resp: "03040506 610C"},
			},
			want: "010203040506 610C",
		},
		{
			name: "LimitToNe without Le fetches everything",
			opts: []GetResponseOption{LimitToNe()},
			cmd:  "80500000080102030405060708",
			script: []exchange{
				{cmd: "80500000080102030405060708", resp: "6102"},
				{cmd: "00C0000002", resp: "0102 9000"},
			},
			want: "01029000",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := Stack(scripted(t, tc.script...), GetResponse(tc.opts...))
			got, err := tr.Transceive(t.Context(), unhex(t, tc.cmd))
			require.NoError(t, err)
			require.Equal(t, hexString(t, tc.want), fmt.Sprintf("%X", got))
		})
	}
}

func TestGetResponseRoundCap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []GetResponseOption
		calls int
	}{
		{name: "default cap of 256", calls: 1 + DefaultMaxRounds},
		{name: "MaxRounds(3)", opts: []GetResponseOption{MaxRounds(3)}, calls: 4},
		{name: "6Cxx loop counts too", opts: []GetResponseOption{MaxRounds(2)}, calls: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			card := TransceiverFunc(func(_ context.Context, cmd []byte) ([]byte, error) {
				calls++
				if strings.Contains(tc.name, "6Cxx") && calls > 1 {
					return []byte{0x6C, 0x01}, nil
				}
				return []byte{0x00, 0x61, 0x01}, nil // one byte, one more to come, forever
			})
			got, err := GetResponse(tc.opts...)(card).Transceive(t.Context(), unhex(t, "00B0000000"))
			require.ErrorIs(t, err, ErrTooManyRounds)
			require.Nil(t, got)
			require.Equal(t, tc.calls, calls)
		})
	}
}

func TestGetResponseFailures(t *testing.T) {
	t.Run("transport error in a round", func(t *testing.T) {
		tr := GetResponse()(scripted(t,
			exchange{cmd: "00B0000000", resp: "6101"},
			exchange{cmd: "00C0000001", err: ErrCardRemoved},
		))
		_, err := tr.Transceive(t.Context(), unhex(t, "00B0000000"))
		require.ErrorIs(t, err, ErrCardRemoved)
		require.ErrorContains(t, err, "GET RESPONSE round 1")
	})
	t.Run("response without status word in a round", func(t *testing.T) {
		tr := GetResponse()(scripted(t,
			exchange{cmd: "00B0000000", resp: "6101"},
			exchange{cmd: "00C0000001", resp: "90"},
		))
		_, err := tr.Transceive(t.Context(), unhex(t, "00B0000000"))
		require.ErrorIs(t, err, ErrShortResponse)
	})
	t.Run("first transport error is returned as is", func(t *testing.T) {
		tr := GetResponse()(scripted(t, exchange{cmd: "00B0000000", err: ErrNoCard}))
		_, err := tr.Transceive(t.Context(), unhex(t, "00B0000000"))
		require.ErrorIs(t, err, ErrNoCard)
	})
}

// TestRawModeDisablesMiddleware runs each command-changing middleware on a
// card answer it would act on, under WithRaw: the card must see the
// command untouched, once, and the caller the card's answer.
func TestRawModeDisablesMiddleware(t *testing.T) {
	long := "00DA0000" + "08" + data(0, 8)
	tests := []struct {
		name string
		mw   Middleware
		ex   exchange
	}{
		{name: "GetResponse", mw: GetResponse(), ex: exchange{cmd: "00B0000000", resp: "AA6101"}},
		{name: "WrongLength", mw: WrongLength(), ex: exchange{cmd: "00B0000000", resp: "6C10"}},
		{name: "Chaining", mw: Chaining(4), ex: exchange{cmd: long, resp: "9000"}},
		{name: "Chaining extended on short path", mw: Chaining(255), ex: exchange{cmd: "00B00000000200", resp: "9000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := tc.mw(scripted(t, tc.ex))
			got, err := tr.Transceive(WithRaw(t.Context()), unhex(t, tc.ex.cmd))
			require.NoError(t, err)
			require.Equal(t, unhex(t, tc.ex.resp), got)
		})
	}
}

// BenchmarkStack measures the cost of a full middleware stack over a card
// that answers at once: what the host pays per APDU beyond the transport.
func BenchmarkStack(b *testing.B) {
	ok := []byte{0x90, 0x00}
	card := TransceiverFunc(func(context.Context, []byte) ([]byte, error) { return ok, nil })
	cmd := unhex(b, "00A4040007A000000151000000")
	for _, bc := range []struct {
		name string
		mw   []Middleware
	}{
		{name: "bare"},
		{name: "transport", mw: []Middleware{GetResponse(), WrongLength(), Chaining(255)}},
		{name: "traced", mw: []Middleware{Trace(io.Discard, TraceNames()), GetResponse(), WrongLength(), Chaining(255)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := Stack(card, bc.mw...)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tr.Transceive(ctx, cmd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestStackOrder(t *testing.T) {
	var out bytes.Buffer
	tr := Stack(scripted(t,
		exchange{cmd: "00B0000000", resp: "6102"},
		exchange{cmd: "00C0000002", resp: "0102 9000"},
	), Trace(&out, TraceClock(fakeClock(0))), GetResponse())
	_, err := tr.Transceive(t.Context(), unhex(t, "00B0000000"))
	require.NoError(t, err)
	require.Equal(t, ">> 00B0000000\n<< 0102  9000 (success)  [0.000 ms]\n", out.String())
}
