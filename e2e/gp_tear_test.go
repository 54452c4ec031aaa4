package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/testcard"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

// snapshot is what content management may change: the registry and the
// ISD's key sets. Anything else a torn command leaves behind (such as the
// SCP03 sequence counter, moved by INITIALIZE UPDATE) is not the command's
// effect.
func snapshot(t *testing.T, c *chip.Chip) string {
	t.Helper()
	b, err := json.Marshal(struct {
		Apps  any
		Files any
		Keys  []string
	}{c.Applications(), c.LoadFiles(), keyInfo(t, c)})
	require.NoError(t, err)
	return string(b)
}

// keyInfo reads the key information template (GET DATA E0), which needs
// no secure channel.
func keyInfo(t *testing.T, c *chip.Chip) []string {
	c.PowerOn()
	rsp := c.Transmit(mustHex(t, "80CA00E000"))
	require.GreaterOrEqual(t, len(rsp), 2)
	return []string{hex.EncodeToString(rsp)}
}

func newTearChip(t *testing.T) *chip.Chip {
	p := profile.Sample()
	p.Serial = []byte{0x56, 0x43, 0, 0, 0, 0, 0, 1}
	c, err := profile.Build(p)
	require.NoError(t, err)
	c.PowerOn()
	return c
}

// session opens SCP03 (C-MAC + C-DEC) with the test keys on an in-process
// connection to c.
func session(t *testing.T, ctx context.Context, c *chip.Chip, key []byte, kvn byte) (*hostgp.Session, reader.Conn) {
	conn := emu.Connect(c, "emu:tear")
	s, err := hostgp.Open(ctx, connect.Stack(conn, connect.StackOptions{}), hostgp.Config{
		Keys: hostgp.SingleKey(scp03.Key(key)), KeyVersion: kvn, Level: scp03.LevelCMAC | scp03.LevelCDEC,
	})
	require.NoError(t, err)
	return s, conn
}

// Cut power at every persistent write of LOAD (+ INSTALL), DELETE and PUT
// KEY: after power-up the card holds the state from before or after the
// command that was torn — never anything in between — its image loads,
// and a secure channel opens with the keys that state implies.
func TestGPTearing(t *testing.T) {
	ctx := context.Background()
	testKey := gp.TestKey()
	newKey := mustHex(t, newKeyHex)
	digest := testcard.Module.Digest()
	lf, err := gp.BuildLoadFile(gp.Manifest{PackageAID: mustHex(t, pkgAID), Version: [2]byte{1, 0},
		Modules: []gp.ModuleRef{{AID: testcard.ModuleAID, Digest: digest}}})
	require.NoError(t, err)

	ops := map[string]func(*hostgp.Session) error{
		"load and install": func(s *hostgp.Session) error {
			return s.LoadAndInstall(ctx, lf, hostgp.LoadOptions{}, hostgp.InstallSpec{
				ModuleAID: testcard.ModuleAID, ApplicationAID: mustHex(t, instAID)})
		},
		"delete": func(s *hostgp.Session) error {
			return s.Delete(ctx, testcard.PackageAID, true)
		},
		"put key": func(s *hostgp.Session) error {
			return s.PutKeys(ctx, 0x02, 0x01, scp03.StaticKeys{ENC: newKey, MAC: newKey, DEK: newKey})
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			// An untorn run: the states after each command, and the
			// number of persistent writes the operation makes.
			probe := newTearChip(t)
			states := []string{snapshot(t, probe)}
			s, _ := session(t, ctx, probe, testKey, 0)
			w0 := probe.Writes()
			require.NoError(t, op(s))
			writes := probe.Writes() - w0
			states = append(states, snapshot(t, probe))
			require.NotEqual(t, states[0], states[1], "the operation changes the card")
			require.Greater(t, writes, uint64(0))
			t.Logf("%s: %d persistent writes, each torn in turn", name, writes)

			for n := uint64(1); n <= writes; n++ {
				c := newTearChip(t)
				s, _ := session(t, ctx, c, testKey, 0)
				c.TearAfter(n)
				err := op(s)
				require.Error(t, err, "tear after write %d of %d", n, writes)
				require.ErrorIs(t, err, reader.ErrCardRemoved)
				require.False(t, c.Powered())

				img, err := c.MarshalImage()
				require.NoError(t, err)
				reloaded, err := chip.UnmarshalImage(img, chip.WithModules(profile.Modules()...))
				require.NoError(t, err, "the torn image loads")
				reloaded.PowerOn()
				got := snapshot(t, reloaded)
				if got != states[0] && got != states[1] {
					// A multi-command operation may stop between
					// commands: that state must be one the untorn run
					// passed through, which for LOAD+INSTALL is "load
					// file present, no instance".
					require.Equal(t, "load and install", name, "tear after write %d of %d left an intermediate state:\n%s", n, writes, got)
					require.Contains(t, got, pkgAIDJSON(t), "only the load file may exist without its instance")
					require.NotContains(t, got, instAIDJSON(t))
				}
				// The card still works, with the keys its state implies.
				key, kvn := testKey, byte(1)
				if name == "put key" && got == states[1] {
					key, kvn = newKey, 2
				}
				s2, _ := session(t, ctx, reloaded, key, kvn)
				_, err = s2.List(ctx)
				require.NoError(t, err, fmt.Sprintf("after tear at write %d", n))
			}
		})
	}
}

func pkgAIDJSON(t *testing.T) string  { return b64(t, pkgAID) }
func instAIDJSON(t *testing.T) string { return b64(t, instAID) }

// b64 is how encoding/json writes a []byte AID in the snapshot.
func b64(t *testing.T, h string) string {
	b, err := json.Marshal(mustHex(t, h))
	require.NoError(t, err)
	return string(b)
}
