package scp03

import (
	"bytes"
	"testing"

	"github.com/valuechip/valuechip/apdu"
)

// FuzzUnwrap feeds arbitrary bytes to the card side. Unwrap must never
// panic, whatever the level or state, and must reject everything but a
// correctly MACed command; the card must still be able to answer.
// The same bytes are also used as a plain command and as a response for
// host→card and card→host round trips, which must reproduce them, and as
// handshake messages.
//
// The seed corpus in testdata/fuzz/FuzzUnwrap holds the wrapped commands
// of the pySim AES-128 level 33 session (valid for the first card below)
// and a few edge cases.
func FuzzUnwrap(f *testing.F) {
	vf := loadVectors(f)
	// Cards in the state right after EXTERNAL AUTHENTICATE of the pySim
	// sessions: the first wrapped command of each is valid for them.
	var cards []*Card
	for _, v := range vf.Sessions {
		r := v.InitializeUpdateResponse
		seq := uint32(r[29])<<16 | uint32(r[30])<<8 | uint32(r[31])
		c, err := NewCard(CardConfig{KeySets: []*KeySet{{Version: r[10], Keys: v.static(), Sequence: seq - 1}}, I: IParam(r[12]), AID: v.AID})
		if err != nil {
			f.Fatal(err)
		}
		if _, err := c.InitializeUpdate(mustParse(f, v.InitializeUpdate)); err != nil {
			f.Fatal(err)
		}
		if err := c.ExternalAuthenticate(mustParse(f, v.ExternalAuthenticate)); err != nil {
			f.Fatal(err)
		}
		cards = append(cards, c)
		f.Add([]byte(v.Steps[0].Wrapped))
	}
	// Host/card pairs at every level and key size for round trips.
	type pairT struct {
		h *Host
		c *Card
	}
	var pairs []pairT
	for _, keyLen := range keyLens {
		for _, level := range Levels {
			h, c := pair(f, keyLen, level, 0x70, uint64(keyLen))
			pairs = append(pairs, pairT{h, c})
		}
	}
	idle, err := NewCard(CardConfig{KeySets: []*KeySet{{Version: 1, Keys: testKeys(16, 0)}}, I: 0x70, AID: testAID})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, raw []byte) {
		// Card side on arbitrary input.
		for i, tmpl := range cards {
			c := snapshot(tmpl)
			cmd, err := c.Unwrap(raw)
			if err == nil {
				// Only the session's genuine first command can pass, up
				// to what the C-MAC does not cover (Amd D §6.2.4): the
				// logical channel bits of CLA and Le.
				genuine := mustParse(t, vf.Sessions[i].Steps[0].Wrapped)
				got, _ := apdu.ParseCommand(raw)
				if macCLA(got.CLA) != macCLA(genuine.CLA) || got.INS != genuine.INS || got.P1 != genuine.P1 ||
					got.P2 != genuine.P2 || !bytes.Equal(got.Data, genuine.Data) {
					t.Fatalf("card %d accepted %X as %v", i, raw, cmd)
				}
			} else if c.Open() {
				t.Fatalf("card %d: %v without abort", i, err)
			}
			if _, err := c.Wrap([]byte{0x90, 0x00}); err == nil && !c.Open() {
				t.Fatal("aborted card wrapped a response")
			}
			_ = StatusFor(err)
		}
		ic := snapshot(idle)
		ic.Unwrap(raw)
		ic.Wrap(raw)
		if cmd, err := apdu.ParseCommand(raw); err == nil {
			ic.InitializeUpdate(cmd)
			ic.ExternalAuthenticate(cmd)
			snapshot(cards[0]).ExternalAuthenticate(cmd)
		}
		ParseInitializeUpdateResponse(raw)

		// Round trips.
		cmd, cmdErr := apdu.ParseCommand(raw)
		for _, p := range pairs {
			h, c := snapshotHost(p.h), snapshot(p.c)
			if cmdErr == nil {
				w, err := h.Wrap(cmd)
				if err != nil {
					continue // CLA that cannot carry GP SM
				}
				wire, err := w.Bytes()
				if err != nil {
					t.Fatalf("wrapped %v not encodable: %v", w, err)
				}
				got, err := c.Unwrap(wire)
				if err != nil {
					t.Fatalf("level %s: card rejects host's %X: %v", h.Level(), wire, err)
				}
				want := cmd
				if h.Level().Has(LevelCMAC) {
					want.CLA = plainCLA(cmd.CLA)
				}
				if got.CLA != want.CLA || got.INS != want.INS || got.P1 != want.P1 || got.P2 != want.P2 || got.Ne != want.Ne || !bytes.Equal(got.Data, want.Data) {
					t.Fatalf("level %s: sent %v, card got %v", h.Level(), want, got)
				}
				if len(raw) >= 2 {
					r, err := c.Wrap(raw)
					if err != nil {
						continue // too long once wrapped
					}
					plain, err := h.Unwrap(r)
					if err != nil {
						t.Fatalf("level %s: host rejects card's %X: %v", h.Level(), r, err)
					}
					wantResp := raw
					if h.Level().Has(LevelRMAC) && !protectedSW(raw[len(raw)-2], raw[len(raw)-1]) {
						wantResp = raw[len(raw)-2:]
					}
					if !bytes.Equal(plain, wantResp) {
						t.Fatalf("level %s: card sent %X, host got %X", h.Level(), wantResp, plain)
					}
				}
			}
			// The host side on arbitrary responses.
			hh := snapshotHost(p.h)
			if _, err := hh.Wrap(apdu.Command{CLA: 0x80, INS: 0xCA, P1: 0x00, P2: 0x66, Ne: 256}); err == nil {
				hh.Unwrap(raw)
			}
		}
	})
}
