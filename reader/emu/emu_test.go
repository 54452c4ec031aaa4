package emu

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/testcard"
	"github.com/valuechip/valuechip/reader"
)

func h(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

const sel = "00A4040008F056435445535401"

// sample makes a chip from the sample profile: the ISD and the test applet.
func sample(t testing.TB) *chip.Chip {
	c, err := profile.Build(profile.Sample())
	require.NoError(t, err)
	return c
}

func TestConn(t *testing.T) {
	ctx := context.Background()
	c := Connect(sample(t), "emu:test")
	require.Equal(t, "emu:test", c.Reader())
	require.Equal(t, testcard.DefaultATR, c.ATR())
	require.Equal(t, reader.ProtocolT1, c.Protocol())

	rsp, err := c.Transceive(ctx, h(sel))
	require.NoError(t, err)
	require.Equal(t, "9000", hex.EncodeToString(rsp[len(rsp)-2:]))

	// Warm and cold resets both lose the selection.
	for _, cold := range []bool{false, true} {
		_, err = c.Transceive(ctx, h(sel))
		require.NoError(t, err)
		require.NoError(t, c.Reset(ctx, cold))
		rsp, err = c.Transceive(ctx, h("8022000004"))
		require.NoError(t, err)
		require.NotEqual(t, "9000", hex.EncodeToString(rsp[len(rsp)-2:]), "the test applet is no longer selected")
	}

	// The caller may reuse its buffer: the card got a copy.
	buf := h("8010000002AABB00")
	_, err = c.Transceive(ctx, h(sel))
	require.NoError(t, err)
	rsp, err = c.Transceive(ctx, buf)
	require.NoError(t, err)
	buf[5] = 0
	require.Equal(t, "aabb9000", hex.EncodeToString(rsp))

	// A cancelled context sends nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Transceive(cctx, h(sel))
	require.ErrorIs(t, err, context.Canceled)

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
	_, err = c.Transceive(ctx, h(sel))
	require.ErrorIs(t, err, reader.ErrCardRemoved)
	require.ErrorIs(t, c.Reset(ctx, true), reader.ErrCardRemoved)
}

// The in-process path, the goal of which is at least 1,000,000 simple
// APDUs per second on one core: ECHO of 5 bytes to the selected test card.
func BenchmarkInProcess(b *testing.B) {
	ctx := context.Background()
	c := Connect(sample(b), "emu:bench")
	if _, err := c.Transceive(ctx, h(sel)); err != nil {
		b.Fatal(err)
	}
	cmd := h("80100000050102030405" + "00")
	for b.Loop() {
		if _, err := c.Transceive(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// The floor on the same path: a card that does no work.
func BenchmarkInProcessEcho(b *testing.B) {
	ctx := context.Background()
	c := Connect(testcard.Echo{}, "emu:echo")
	cmd := h("80100000050102030405" + "00")
	for b.Loop() {
		if _, err := c.Transceive(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// The host's full middleware stack over the in-process card.
func BenchmarkInProcessStack(b *testing.B) {
	ctx := context.Background()
	c := Connect(sample(b), "emu:bench")
	t := reader.Stack(c, reader.GetResponse(), reader.WrongLength(), reader.Chaining(65535))
	if _, err := t.Transceive(ctx, h(sel)); err != nil {
		b.Fatal(err)
	}
	cmd := h("80100000050102030405" + "00")
	for b.Loop() {
		if _, err := t.Transceive(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
}
