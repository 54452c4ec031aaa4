package purse_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/purse"
)

// FuzzCommands sends arbitrary APDU sequences to a personalised, loaded
// purse. The purse must answer every one without an internal error
// (6F00, which the runtime answers when an applet panics), and since no
// input can carry a valid S2, M1 or SET STATUS MAC, the balance, ATC and
// life cycle must not move; the card image must still load. The input
// is a sequence of length-prefixed APDUs. Seeds:
// testdata/fuzz/FuzzCommands/.
//
//	go test -run '^$' -fuzz '^FuzzCommands$' -fuzztime 30s ./applet/purse/
func FuzzCommands(f *testing.F) {
	f.Fuzz(func(t *testing.T, in []byte) {
		k := newCard(t, chip.WithRandom(fixedRandom(0x42)))
		_, sw := k.load(5000)
		require.Equal(t, apdu.SWNoError, sw)
		before := k.purseData()
		for len(in) > 0 {
			n := int(in[0])
			in = in[1:]
			if n > len(in) {
				n = len(in)
			}
			cmd := in[:n]
			in = in[n:]
			out := k.c.Transmit(cmd)
			require.NotNil(t, out)
			require.GreaterOrEqual(t, len(out), 2)
			require.NotEqual(t, []byte{0x6F, 0x00}, out[len(out)-2:], "%X", cmd)
		}
		k.c.Reset(true)
		k.mustSelect()
		after := k.purseData()
		require.Equal(t, before.Balance, after.Balance)
		require.Equal(t, before.ATC, after.ATC)
		require.Equal(t, before.LifeCycle, after.LifeCycle)
		k.reload(k.image())
		k.mustSelect()
		require.Equal(t, after.Balance, k.purseData().Balance)
	})
}

// FuzzStoreData personalises a fresh purse with arbitrary STORE DATA
// blocks: never an internal error, and the purse is either still
// PERSONALISING or ACTIVE with a consistent configuration.
func FuzzStoreData(f *testing.F) {
	f.Fuzz(func(t *testing.T, p1 byte, block0, block1 []byte) {
		c := newInstalledChip(t)
		for i, b := range [][]byte{block0, block1} {
			p := p1 &^ gp.StoreLastBlock
			if i == 1 {
				p |= gp.StoreLastBlock
			}
			_, sw := c.Factory().Personalize(purse.AID, p, byte(i), b)
			require.NotEqual(t, apdu.ErrUnknown, sw)
		}
		k := &card{t: t, c: c}
		fci := k.mustSelect()
		if fci.LifeCycle == wire.StatePersonalising {
			_, sw := k.send(wire.GetPurseData())
			require.Equal(t, apdu.ErrConditionsNotMet, sw)
			return
		}
		require.Equal(t, wire.StateActive, fci.LifeCycle)
		pd := k.purseData()
		require.Zero(t, pd.Balance)
		require.Zero(t, pd.ATC)
		require.True(t, pd.Currency.Valid())
		require.NotZero(t, pd.PINTries)
	})
}
