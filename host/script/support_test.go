package script_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/testcard"
	"github.com/valuechip/valuechip/host/script"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

// repoRoot is where testdata/scripts and docs live, seen from this
// package.
const repoRoot = "../.."

// rootReadFile reads paths relative to the repository root, so that
// positions in outputs name files as a user at the root sees them.
func rootReadFile(p string) ([]byte, error) { return os.ReadFile(filepath.Join(repoRoot, p)) }

// testKey is the GlobalPlatform test key 40..4F, as test cards ship.
var testKey = scp03.Key{0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F}

// scpCard is the test card behind a minimal Security Domain built from
// apdu/scp03's card side: INITIALIZE UPDATE and EXTERNAL AUTHENTICATE open
// a session, later commands are unwrapped for the test card and its
// answers wrapped. It is what the scp03 examples run against until the
// emulated card manager exists.
type scpCard struct {
	inner applet.Card
	sd    *scp03.Card
}

func newSCPCard(t testing.TB, inner applet.Card) *scpCard {
	t.Helper()
	keys := scp03.StaticKeys{ENC: append(scp03.Key{}, testKey...), MAC: append(scp03.Key{}, testKey...), DEK: append(scp03.Key{}, testKey...)}
	sd, err := scp03.NewCard(scp03.CardConfig{
		KeySets: []*scp03.KeySet{{Version: 0x30, Keys: keys}},
		I:       scp03.IRMAC | scp03.IRENC,
		AID:     []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00},
	})
	require.NoError(t, err)
	return &scpCard{inner: inner, sd: sd}
}

func (c *scpCard) ATR() []byte      { return c.inner.ATR() }
func (c *scpCard) PowerOn()         { c.sd.Terminate(); c.inner.PowerOn() }
func (c *scpCard) PowerOff()        { c.sd.Terminate(); c.inner.PowerOff() }
func (c *scpCard) Reset(warm bool)  { c.sd.Terminate(); c.inner.Reset(warm) }
func status(err error) []byte       { return apdu.Status(scp03.StatusFor(err)) }
func (c *scpCard) gp(cla byte) bool { return cla&0xFC == 0x80 || cla&0xFC == 0x84 }

func (c *scpCard) Transmit(raw []byte) []byte {
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return c.inner.Transmit(raw)
	}
	switch {
	case c.gp(cmd.CLA) && cmd.INS == scp03.INSInitializeUpdate:
		data, err := c.sd.InitializeUpdate(cmd)
		if err != nil {
			return status(err)
		}
		return append(data, 0x90, 0x00)
	case c.gp(cmd.CLA) && cmd.INS == scp03.INSExternalAuthenticate:
		return status(c.sd.ExternalAuthenticate(cmd))
	case cmd.CLA&0x80 == 0 && cmd.INS == 0xA4:
		c.sd.Terminate()
		return c.inner.Transmit(raw)
	case !c.sd.Open():
		return c.inner.Transmit(raw)
	}
	plain, err := c.sd.Unwrap(raw)
	if err != nil {
		return status(err)
	}
	b, err := plain.Bytes()
	if err != nil {
		return status(err)
	}
	resp, err := c.sd.Wrap(c.inner.Transmit(b))
	if err != nil {
		return status(err)
	}
	return resp
}

// emuCard connects the host stack to an in-process card.
func emuCard(card applet.Card) (reader.Conn, script.Card) {
	conn := emu.Connect(card, "emu:test")
	return conn, script.StackCard{Conn: conn, Stack: connect.Stack(conn, connect.StackOptions{})}
}

// runSource parses and runs src on a fresh test card and returns the
// result and the human trace.
func runSource(t testing.TB, src string, cfg script.Config) (*script.Result, string) {
	t.Helper()
	s, err := script.Parse("t.vcs", []byte(src))
	require.NoError(t, err)
	if cfg.Card == nil {
		_, cfg.Card = emuCard(testcard.New())
	}
	var buf bytes.Buffer
	if cfg.Observer == nil {
		cfg.Observer = script.NewHuman(&buf)
	}
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) (string, bool) { return "", false }
	}
	in := script.New(cfg)
	defer in.Close()
	r := in.Run(context.Background(), s)
	return r, buf.String()
}

// options reads the "# options: continue raw" line golden scripts may
// start with.
func options(src []byte) (cont, raw bool) {
	first, _, _ := strings.Cut(string(src), "\n")
	if o, ok := strings.CutPrefix(first, "# options:"); ok {
		for _, w := range strings.Fields(o) {
			switch w {
			case "continue":
				cont = true
			case "raw":
				raw = true
			}
		}
	}
	return cont, raw
}
