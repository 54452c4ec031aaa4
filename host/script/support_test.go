package script_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
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

// testKey is the GlobalPlatform test key 40..4F, which the sample card's
// issuer security domain holds as key set 01.
const testKey = "404142434445464748494A4B4C4D4E4F"

// isdAID is the issuer security domain's AID on the sample card.
const isdAID = "A000000151000000"

// sampleProfile is the card every example runs against:
// testdata/scripts/sample-card.json, the sample profile (issuer security
// domain with the test keys, test applet installed) with a fixed serial
// number, so that the CPLC and the key diversification data are the same
// on every run. `valuechip emulate --profile testdata/scripts/sample-card.json`
// makes the same card.
func sampleProfile(t testing.TB) *profile.Profile {
	t.Helper()
	p, err := profile.Load(filepath.Join(repoRoot, "testdata/scripts/sample-card.json"))
	require.NoError(t, err)
	return p
}

// sampleCard builds a fresh sample chip, powered off (the emu reader
// powers it on). opts add chip options (chip.WithRandom in replay tests).
func sampleCard(t testing.TB, opts ...chip.Option) *chip.Chip {
	t.Helper()
	c, err := profile.Build(sampleProfile(t), opts...)
	require.NoError(t, err)
	return c
}

// emuCard connects the host stack to an in-process card.
func emuCard(card applet.Card) (reader.Conn, script.Card) {
	conn := emu.Connect(card, "emu:test")
	return conn, script.StackCard{Conn: conn, Stack: connect.Stack(conn, connect.StackOptions{})}
}

// runSource parses and runs src on a fresh sample card and returns the
// result and the human trace.
func runSource(t testing.TB, src string, cfg script.Config) (*script.Result, string) {
	t.Helper()
	s, err := script.Parse("t.vcs", []byte(src))
	require.NoError(t, err)
	if cfg.Card == nil {
		_, cfg.Card = emuCard(sampleCard(t))
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
