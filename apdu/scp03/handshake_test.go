package scp03

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/valuechip/valuechip/apdu"
)

var testAID = []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00}

func testKeys(keyLen int, seed byte) StaticKeys {
	k := func(off byte) Key {
		b := make([]byte, keyLen)
		for i := range b {
			b[i] = seed + off + byte(i)
		}
		return b
	}
	return StaticKeys{ENC: k(0x00), MAC: k(0x40), DEK: k(0x80)}
}

func detRand(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

// pair runs the whole handshake through encoded bytes, as a reader
// would carry it, and returns the two ends.
func pair(t testing.TB, keyLen int, level SecurityLevel, i IParam, seed uint64) (*Host, *Card) {
	t.Helper()
	keys := testKeys(keyLen, byte(seed))
	h, err := NewHost(HostConfig{Keys: keys, KeyVersion: 0x30, Level: level, AID: testAID, Rand: detRand(seed)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCard(CardConfig{
		KeySets: []*KeySet{{Version: 0x30, Keys: keys, Sequence: 41}},
		KDD:     [10]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		I:       i, AID: testAID, Rand: detRand(seed + 1000),
	})
	if err != nil {
		t.Fatal(err)
	}
	handshake(t, h, c)
	return h, c
}

func handshake(t testing.TB, h *Host, c *Card) {
	t.Helper()
	iu, err := h.InitializeUpdate()
	if err != nil {
		t.Fatal(err)
	}
	data, err := c.InitializeUpdate(mustParse(t, mustBytes(t, iu)))
	if err != nil {
		t.Fatal(err)
	}
	ea, err := h.ExternalAuthenticate(append(data, 0x90, 0x00))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ExternalAuthenticate(mustParse(t, mustBytes(t, ea))); err != nil {
		t.Fatal(err)
	}
	if err := h.Complete([]byte{0x90, 0x00}); err != nil {
		t.Fatal(err)
	}
	if !h.Open() || !c.Open() || c.Level() != h.Level() {
		t.Fatalf("after handshake: host %v card %v", h, c)
	}
}

// snapshot copies a card's state; the copy shares only immutable cipher
// objects.
func snapshot(c *Card) *Card {
	cc := *c
	if c.session != nil {
		s := *c.session
		cc.session = &s
	}
	return &cc
}

func snapshotHost(h *Host) *Host {
	hh := *h
	if h.session != nil {
		s := *h.session
		hh.session = &s
	}
	return &hh
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

// exchange sends cmd through host and card and a response back, checking
// both arrive intact, and returns the encoded wrapped command and
// response.
func exchange(t testing.TB, h *Host, c *Card, cmd apdu.Command, resp []byte) (wireCmd, wireResp []byte) {
	t.Helper()
	w, err := h.Wrap(cmd)
	if err != nil {
		t.Fatalf("Wrap(%v): %v", cmd, err)
	}
	wireCmd = mustBytes(t, w)
	got, err := c.Unwrap(wireCmd)
	if err != nil {
		t.Fatalf("Unwrap(%X): %v", wireCmd, err)
	}
	want := cmd
	want.CLA = plainCLA(cmd.CLA)
	if got.CLA != want.CLA || got.INS != want.INS || got.P1 != want.P1 || got.P2 != want.P2 ||
		!bytes.Equal(got.Data, want.Data) || got.Ne != want.Ne {
		t.Fatalf("card got %v, host sent %v", got, want)
	}
	wireResp, err = c.Wrap(resp)
	if err != nil {
		t.Fatalf("card Wrap(%X): %v", resp, err)
	}
	plain, err := h.Unwrap(wireResp)
	if err != nil {
		t.Fatalf("host Unwrap(%X): %v", wireResp, err)
	}
	wantResp := resp
	if sw := apdu.NewSW(resp[len(resp)-2], resp[len(resp)-1]); h.Level().Has(LevelRMAC) && !protectedSW(sw.SW1(), sw.SW2()) {
		wantResp = resp[len(resp)-2:] // Amd D §6.2.5: error status alone
	}
	if !bytes.Equal(plain, wantResp) {
		t.Fatalf("host got %X, card sent %X", plain, wantResp)
	}
	return wireCmd, wireResp
}

var keyLens = []int{16, 24, 32}

func testCommands() []apdu.Command {
	return []apdu.Command{
		{CLA: 0x80, INS: 0xF2, P1: 0x20, P2: 0x02},                                     // case 1
		{CLA: 0x80, INS: 0xCA, P1: 0x00, P2: 0x66, Ne: 256},                            // case 2
		{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: seq(1)},                       // case 3
		{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x01, Data: seq(15)},                      // case 3
		{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x02, Data: seq(16)},                      // full block
		{CLA: 0x80, INS: 0xF2, P1: 0x80, P2: 0x02, Data: seq(17), Ne: 256},             // case 4
		{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: seq(8), Ne: 1},                // interindustry
		{CLA: 0x81, INS: 0xE8, P1: 0x00, P2: 0x00, Data: seq(200)},                     // channel 1
		{CLA: 0xC3, INS: 0xE8, P1: 0x00, P2: 0x01, Data: seq(230)},                     // channel 7
		{CLA: 0x80, INS: 0xE8, P1: 0x80, P2: 0x02, Data: seq(300), Ne: 300},            // extended
		{CLA: 0x90, INS: 0xE6, P1: 0x0C, P2: 0x00, Data: seq(40), Ne: 65536},           // chaining bit, extended Le
		{CLA: 0x80, INS: 0xE8, P1: 0x80, P2: 0x03, Data: seq(apdu.MaxExtendedNc - 24)}, // largest that fits wrapped
	}
}

func testResponses() [][]byte {
	return [][]byte{
		{0x90, 0x00},
		append(seq(1), 0x90, 0x00),
		append(seq(16), 0x62, 0x83),
		append(seq(17), 0x63, 0x10),
		append(seq(255), 0x90, 0x00),
		{0x6A, 0x82},
		append(seq(5), 0x69, 0x85), // error with data: only SW goes back
	}
}

// A full simulated session at every level and key size: the handshake,
// then every kind of command and response, twice over so that chaining
// and counters advance.
func TestSessionRoundTrip(t *testing.T) {
	for _, keyLen := range keyLens {
		for _, level := range Levels {
			for _, i := range []IParam{0x70, 0x60} {
				t.Run(fmt.Sprintf("AES-%d/%s/i=%02X", keyLen*8, level, byte(i)), func(t *testing.T) {
					h, c := pair(t, keyLen, level, i, uint64(keyLen)+uint64(level))
					for round := range 2 {
						for n, cmd := range testCommands() {
							resp := testResponses()[(n+round)%len(testResponses())]
							wire, _ := exchange(t, h, c, cmd, resp)
							if level.Has(LevelCMAC) && !hasSM(wire[0]) {
								t.Fatalf("wrapped CLA %02X lacks the SM indicator", wire[0])
							}
						}
					}
					if want := uint8(2 * len(testCommands())); level.Has(LevelCMAC) && c.session.counter[15] != want {
						t.Fatalf("card counter %X, want %d", c.session.counter, want)
					}
					// A new handshake on the same objects.
					handshake(t, h, c)
					exchange(t, h, c, testCommands()[5], testResponses()[3])
				})
			}
		}
	}
}

// Flipping any bit that Amd D protects makes the card reject the command
// and abort the session; only the logical channel bits of CLA and Le are
// outside the C-MAC (Amd D §6.2.4).
func TestTamperedCommand(t *testing.T) {
	cmds := []apdu.Command{
		{CLA: 0x80, INS: 0xCA, P1: 0x00, P2: 0x66, Ne: 256},
		{CLA: 0x80, INS: 0xE2, P1: 0x90, P2: 0x00, Data: seq(21), Ne: 256},
		{CLA: 0xC1, INS: 0xE2, P1: 0x90, P2: 0x00, Data: seq(16)},
		{CLA: 0x80, INS: 0xE8, P1: 0x00, P2: 0x00, Data: seq(270)},
	}
	for _, keyLen := range keyLens {
		for _, level := range Levels[1:] {
			t.Run(fmt.Sprintf("AES-%d/%s", keyLen*8, level), func(t *testing.T) {
				h, c := pair(t, keyLen, level, 0x70, 7)
				for _, cmd := range cmds {
					w, err := h.Wrap(cmd)
					if err != nil {
						t.Fatal(err)
					}
					wire := mustBytes(t, w)
					leBytes := 0
					if cmd.Ne > 0 {
						leBytes = 1
						if w.NeedsExtended() {
							leBytes = 2
						}
					}
					for i := range len(wire) - leBytes {
						for bit := range 8 {
							mask := byte(1) << bit
							if i == 0 && channelBits(wire[0])&mask != 0 {
								continue
							}
							bad := bytes.Clone(wire)
							bad[i] ^= mask
							cc := snapshot(c)
							if _, err := cc.Unwrap(bad); err == nil {
								t.Fatalf("byte %d bit %d flipped in %X: accepted", i, bit, wire)
							} else if !errors.Is(err, ErrSecurity) || StatusFor(err) != apdu.ErrSecurityStatus {
								t.Fatalf("byte %d bit %d: error %v", i, bit, err)
							}
							if cc.Open() {
								t.Fatal("session not aborted after a security error")
							}
							if _, err := cc.Unwrap(wire); !errors.Is(err, ErrSessionAborted) {
								t.Fatalf("after abort: %v, want ErrSessionAborted", err)
							}
						}
					}
					// The channel number is not protected: it may change.
					if ch := channelBits(wire[0]); ch != 0 {
						moved := bytes.Clone(wire)
						moved[0] ^= ch & (ch ^ (ch - 1)) // flip the lowest channel bit
						if _, err := snapshot(c).Unwrap(moved); err != nil {
							t.Fatalf("channel change rejected: %v", err)
						}
					}
					// Truncated commands (dropping only Le is allowed: Le is
					// not MACed, Amd D §6.2.4).
					for n := 0; n < len(wire)-leBytes; n++ {
						if _, err := snapshot(c).Unwrap(wire[:n]); err == nil {
							t.Fatalf("accepted %d of %d bytes", n, len(wire))
						}
					}
					// The genuine command passes; replaying it fails.
					if _, err := c.Unwrap(wire); err != nil {
						t.Fatal(err)
					}
					r, err := c.Wrap([]byte{0x90, 0x00})
					if err != nil {
						t.Fatal(err)
					}
					if got, err := h.Unwrap(r); err != nil || !bytes.Equal(got, []byte{0x90, 0x00}) {
						t.Fatalf("response %X: %X %v", r, got, err)
					}
					if _, err := snapshot(c).Unwrap(wire); !errors.Is(err, ErrBadMAC) {
						t.Fatalf("replay: %v, want ErrBadMAC", err)
					}
				}
			})
		}
	}
}

func channelBits(cla byte) byte {
	if cla&0x40 != 0 {
		return 0x0F
	}
	return 0x03
}

// Flipping any bit of an R-MAC-protected response makes the host reject
// it and abort.
func TestTamperedResponse(t *testing.T) {
	for _, keyLen := range keyLens {
		for _, level := range []SecurityLevel{0x11, 0x13, 0x33} {
			t.Run(fmt.Sprintf("AES-%d/%s", keyLen*8, level), func(t *testing.T) {
				h, c := pair(t, keyLen, level, 0x70, 9)
				for _, resp := range [][]byte{{0x90, 0x00}, append(seq(3), 0x90, 0x00), append(seq(32), 0x63, 0xC1)} {
					w, err := h.Wrap(apdu.Command{CLA: 0x80, INS: 0xCA, P1: 0x9F, P2: 0x7F, Ne: 256})
					if err != nil {
						t.Fatal(err)
					}
					if _, err := c.Unwrap(mustBytes(t, w)); err != nil {
						t.Fatal(err)
					}
					wire, err := c.Wrap(resp)
					if err != nil {
						t.Fatal(err)
					}
					for i := range wire {
						for bit := range 8 {
							bad := bytes.Clone(wire)
							bad[i] ^= 1 << bit
							hh := snapshotHost(h)
							if got, err := hh.Unwrap(bad); err == nil {
								t.Fatalf("byte %d bit %d flipped in %X: accepted as %X", i, bit, wire, got)
							}
							if hh.Open() {
								t.Fatal("host session not aborted")
							}
						}
					}
					// Truncations fail, except a 2-byte prefix that reads as an
					// error status: Amd D §6.2.5 leaves those unprotected.
					for n := 0; n < len(wire); n++ {
						got, err := snapshotHost(h).Unwrap(wire[:n])
						if err == nil && !(n == 2 && !protectedSW(wire[0], wire[1]) && bytes.Equal(got, wire[:2])) {
							t.Fatalf("accepted %d of %d bytes", n, len(wire))
						}
					}
					got, err := h.Unwrap(wire)
					if err != nil || !bytes.Equal(got, resp) {
						t.Fatalf("genuine response: %X, %v", got, err)
					}
				}
			})
		}
	}
}

// Commands delivered out of order fail: the MAC chaining protects the
// sequence (Amd D §5.3).
func TestReorderedCommands(t *testing.T) {
	h, c := pair(t, 16, LevelAll, 0x70, 3)
	w1, _ := h.Wrap(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x80, Data: seq(4)})
	w2, _ := h.Wrap(apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x80, Data: seq(4)})
	if _, err := c.Unwrap(mustBytes(t, w2)); !errors.Is(err, ErrBadMAC) {
		t.Fatalf("second command first: %v", err)
	}
	if _, err := c.Unwrap(mustBytes(t, w1)); !errors.Is(err, ErrSessionAborted) {
		t.Fatalf("after abort: %v", err)
	}
	if StatusFor(ErrSessionAborted) != apdu.ErrSecurityStatus {
		t.Fatal("aborted session must answer 6982")
	}
	// A new INITIALIZE UPDATE ends the aborted session (Amd D §5.6).
	handshake(t, h, c)
	exchange(t, h, c, apdu.Command{CLA: 0x80, INS: 0xCA, P1: 0x00, P2: 0x66, Ne: 256}, append(seq(20), 0x90, 0x00))
}

// Amd D §5.6: at a level with C-MAC, a command without secure messaging is
// a security error that aborts the session.
func TestCommandBelowLevel(t *testing.T) {
	for _, level := range Levels[1:] {
		_, c := pair(t, 16, level, 0x70, 4)
		_, err := c.Unwrap([]byte{0x80, 0xCA, 0x00, 0x66, 0x00})
		if !errors.Is(err, ErrSecurity) || c.Open() {
			t.Fatalf("%s: plain command: %v, open %v", level, err, c.Open())
		}
		if _, err := c.Wrap([]byte{0x69, 0x82}); !errors.Is(err, ErrSessionAborted) {
			t.Fatalf("%s: Wrap after abort: %v", level, err)
		}
		c.Terminate()
		if got, err := c.Unwrap([]byte{0x80, 0xCA, 0x00, 0x66, 0x00}); err != nil || got.INS != 0xCA {
			t.Fatalf("%s: after Terminate: %v %v", level, got, err)
		}
	}
	// Level 00: commands pass unchecked, responses unprotected.
	h, c := pair(t, 16, LevelNone, 0x00, 5)
	exchange(t, h, c, apdu.Command{CLA: 0x80, INS: 0xCA, P1: 0x00, P2: 0x66, Ne: 256}, append(seq(9), 0x90, 0x00))
}

func TestHandshakeFailures(t *testing.T) {
	keys := testKeys(16, 1)
	newCard := func(i IParam, seqCtr uint32) (*Card, *KeySet) {
		ks := &KeySet{Version: 0x31, Keys: keys, Sequence: seqCtr}
		c, err := NewCard(CardConfig{KeySets: []*KeySet{ks}, I: i, AID: testAID, Rand: detRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		return c, ks
	}
	newHost := func(level SecurityLevel, k StaticKeys) *Host {
		h, err := NewHost(HostConfig{Keys: k, Level: level, AID: testAID, Rand: detRand(2)})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	initUpdate := func(h *Host, c *Card) []byte {
		iu, _ := h.InitializeUpdate()
		data, err := c.InitializeUpdate(iu)
		if err != nil {
			t.Fatal(err)
		}
		return append(data, 0x90, 0x00)
	}

	t.Run("wrong host keys", func(t *testing.T) {
		c, _ := newCard(0x70, 0)
		h := newHost(LevelAll, testKeys(16, 2))
		_, err := h.ExternalAuthenticate(initUpdate(h, c))
		if !errors.Is(err, ErrAuthenticationFailed) {
			t.Fatalf("%v", err)
		}
		// With the pseudo-random check off, the card cryptogram fails.
		h2, _ := NewHost(HostConfig{Keys: testKeys(16, 2), Level: LevelAll, Rand: detRand(2)})
		if _, err := h2.ExternalAuthenticate(initUpdate(h2, c)); !errors.Is(err, ErrBadCryptogram) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("bad host cryptogram or MAC", func(t *testing.T) {
		for _, idx := range []int{5, 12, 13, 20} {
			c, _ := newCard(0x70, 0)
			h := newHost(LevelAll, keys)
			ea, err := h.ExternalAuthenticate(initUpdate(h, c))
			if err != nil {
				t.Fatal(err)
			}
			wire := mustBytes(t, ea)
			wire[idx] ^= 0x40
			err = c.ExternalAuthenticate(mustParse(t, wire))
			if !errors.Is(err, ErrAuthenticationFailed) || StatusFor(err) != apdu.ErrNVMChanged {
				t.Fatalf("byte %d: %v", idx, err)
			}
			// The handshake is forgotten (Amd D §5.2).
			if err := c.ExternalAuthenticate(ea); !errors.Is(err, ErrState) {
				t.Fatalf("retry: %v", err)
			}
		}
	})
	t.Run("level not supported by i", func(t *testing.T) {
		c, _ := newCard(0x10, 0) // pseudo-random, no R-MAC
		h := newHost(0x11, keys)
		if _, err := h.ExternalAuthenticate(initUpdate(h, c)); !errors.Is(err, ErrBadLevel) {
			t.Fatalf("host: %v", err)
		}
		// A host that asks anyway (built by hand) is refused by the card.
		sk, _ := DeriveSessionKeys(keys, h.hc[:], c.cc[:])
		hc, _ := HostCryptogram(sk.MAC, h.hc[:], c.cc[:])
		ea, _, _ := NewExternalAuthenticate(sk.MAC, 0x11, hc)
		if err := c.ExternalAuthenticate(ea); !errors.Is(err, ErrBadLevel) || StatusFor(err) != apdu.ErrIncorrectP1P2 {
			t.Fatalf("card: %v", err)
		}
	})
	t.Run("invalid level with good MAC", func(t *testing.T) {
		c, _ := newCard(0x70, 0)
		h := newHost(LevelAll, keys)
		initUpdate(h, c)
		sk, _ := DeriveSessionKeys(keys, h.hc[:], c.cc[:])
		hc, _ := HostCryptogram(sk.MAC, h.hc[:], c.cc[:])
		_, chain, _ := NewExternalAuthenticate(sk.MAC, 0x01, hc)
		ea := apdu.Command{CLA: 0x84, INS: 0x82, P1: 0x31, Data: append(hc[:], chain[:8]...)}
		// Recompute the C-MAC over P1 = 31.
		m, _ := newMAC(sk.MAC)
		var zero [16]byte
		full := commandMAC(m, &zero, 0x84, 0x82, 0x31, 0x00, 16, false, hc[:])
		copy(ea.Data[8:], full[:8])
		if err := c.ExternalAuthenticate(ea); !errors.Is(err, ErrBadLevel) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("out of order", func(t *testing.T) {
		c, _ := newCard(0x70, 0)
		err := c.ExternalAuthenticate(apdu.Command{CLA: 0x84, INS: 0x82, P1: 0x01, Data: make([]byte, 16)})
		if !errors.Is(err, ErrState) || StatusFor(err) != apdu.ErrConditionsNotMet {
			t.Fatalf("%v", err)
		}
		h := newHost(LevelAll, keys)
		if _, err := h.ExternalAuthenticate([]byte{0x90, 0x00}); !errors.Is(err, ErrState) {
			t.Fatalf("%v", err)
		}
		if _, err := h.Wrap(apdu.Command{CLA: 0x80}); !errors.Is(err, ErrState) {
			t.Fatalf("%v", err)
		}
		if err := h.Complete([]byte{0x90, 0x00}); !errors.Is(err, ErrState) {
			t.Fatalf("%v", err)
		}
		// Another command between the two handshake steps abandons it.
		initUpdate(h, c)
		if _, err := c.Unwrap([]byte{0x80, 0xCA, 0x00, 0x66, 0x00}); err != nil {
			t.Fatal(err)
		}
		if err := c.ExternalAuthenticate(apdu.Command{CLA: 0x84, INS: 0x82, P1: 0x01, Data: make([]byte, 16)}); !errors.Is(err, ErrState) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("EXTERNAL AUTHENTICATE refused", func(t *testing.T) {
		c, _ := newCard(0x70, 0)
		h := newHost(LevelAll, keys)
		if _, err := h.ExternalAuthenticate(initUpdate(h, c)); err != nil {
			t.Fatal(err)
		}
		if err := h.Complete([]byte{0x63, 0x00}); !errors.Is(err, ErrAuthenticationFailed) || !errors.Is(err, apdu.ErrNVMChanged) {
			t.Fatalf("%v", err)
		}
		if h.Open() {
			t.Fatal("open after refusal")
		}
	})
	t.Run("key version", func(t *testing.T) {
		c, _ := newCard(0x70, 0)
		_, err := c.InitializeUpdate(NewInitializeUpdate(0x32, [8]byte{}))
		if !errors.Is(err, ErrKeyNotFound) || StatusFor(err) != apdu.ErrRefDataNotFound {
			t.Fatalf("%v", err)
		}
		data, err := c.InitializeUpdate(NewInitializeUpdate(0x00, [8]byte{}))
		if err != nil || data[10] != 0x31 {
			t.Fatalf("P1 00: %X %v", data, err)
		}
		h, _ := NewHost(HostConfig{Keys: keys, KeyVersion: 0x30, Level: LevelCMAC, Rand: detRand(3)})
		h.InitializeUpdate()
		if _, err := h.ExternalAuthenticate(append(data, 0x90, 0x00)); !errors.Is(err, ErrKeyNotFound) {
			t.Fatalf("host: %v", err)
		}
	})
	t.Run("sequence counter exhausted", func(t *testing.T) {
		c, ks := newCard(0x70, MaxSequence-1)
		if _, err := c.InitializeUpdate(NewInitializeUpdate(0, [8]byte{})); err != nil || ks.Sequence != MaxSequence {
			t.Fatalf("%v, counter %X", err, ks.Sequence)
		}
		_, err := c.InitializeUpdate(NewInitializeUpdate(0, [8]byte{}))
		if !errors.Is(err, ErrSequenceExhausted) || StatusFor(err) != apdu.ErrConditionsNotMet {
			t.Fatalf("%v", err)
		}
	})
	t.Run("malformed INITIALIZE UPDATE", func(t *testing.T) {
		c, _ := newCard(0x70, 0)
		for _, cmd := range []apdu.Command{
			{CLA: 0x80, INS: 0x50, Data: make([]byte, 7), Ne: 256},
			{CLA: 0x80, INS: 0x50, P2: 0x01, Data: make([]byte, 8), Ne: 256},
			{CLA: 0x80, INS: 0x51, Data: make([]byte, 8), Ne: 256},
		} {
			if _, err := c.InitializeUpdate(cmd); err == nil || StatusFor(err) == apdu.SWNoError {
				t.Fatalf("%v accepted", cmd)
			}
		}
	})
	t.Run("host rejects card answers", func(t *testing.T) {
		h := newHost(LevelCMAC, keys)
		for _, resp := range [][]byte{{0x6A, 0x88}, {0x90}, append(make([]byte, 28), 0x90, 0x00)} {
			h.InitializeUpdate()
			if _, err := h.ExternalAuthenticate(resp); err == nil {
				t.Fatalf("%X accepted", resp)
			}
		}
	})
}

func TestParseInitializeUpdateResponse(t *testing.T) {
	good := InitializeUpdateResponse{KeyInfo: KeyInfo{Version: 0x30, Protocol: 3, I: 0x70}, Sequence: 0x010203}
	good.CardChallenge[0], good.CardCryptogram[7] = 0xCC, 0xEE
	b := good.Bytes()
	if len(b) != 32 {
		t.Fatalf("%d bytes", len(b))
	}
	r, err := ParseInitializeUpdateResponse(b)
	if err != nil || r != good {
		t.Fatalf("%+v %v", r, err)
	}
	good.KeyInfo.I = 0x60
	good.Sequence = 0
	if r, err := ParseInitializeUpdateResponse(good.Bytes()); err != nil || r != good || len(good.Bytes()) != 29 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", b[:12], ErrMalformed},
		{"SCP02", append(append(bytes.Clone(b[:11]), 0x02), b[12:]...), ErrUnsupported},
		{"S16 bit", append(append(bytes.Clone(b[:12]), 0x71), b[13:]...), ErrUnsupported},
		{"missing counter", b[:29], ErrMalformed},
		{"extra byte", append(bytes.Clone(b), 0), ErrMalformed},
	} {
		if _, err := ParseInitializeUpdateResponse(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestSecurityLevel(t *testing.T) {
	valid := map[SecurityLevel]string{0x00: "none", 0x01: "C-MAC", 0x03: "C-MAC+C-DEC", 0x11: "C-MAC+R-MAC", 0x13: "C-MAC+C-DEC+R-MAC", 0x33: "C-MAC+C-DEC+R-MAC+R-ENC"}
	for l := range 256 {
		name, ok := valid[SecurityLevel(l)]
		if SecurityLevel(l).Valid() != ok {
			t.Errorf("%02X Valid = %v", l, !ok)
		}
		if ok && SecurityLevel(l).String() != name {
			t.Errorf("%02X String = %q", l, SecurityLevel(l).String())
		}
	}
	if len(Levels) != len(valid) {
		t.Error("Levels incomplete")
	}
	for i := range 256 {
		p := IParam(i)
		wantValid := i&0x8F == 0 && (i&0x40 == 0 || i&0x20 != 0)
		if p.Valid() != wantValid {
			t.Errorf("i=%02X Valid = %v", i, p.Valid())
		}
	}
	if IParam(0x00).Supports(0x11) || !IParam(0x20).Supports(0x13) || IParam(0x20).Supports(0x33) || !IParam(0x60).Supports(0x33) || IParam(0x60).Supports(0x02) {
		t.Error("Supports")
	}
}

func TestClassByte(t *testing.T) {
	for _, tc := range []struct{ plain, wire, mac byte }{
		{0x80, 0x84, 0x84}, {0x83, 0x87, 0x84}, {0x00, 0x04, 0x04}, {0x01, 0x05, 0x04},
		{0x90, 0x94, 0x94}, {0xC0, 0xE0, 0x84}, {0xCF, 0xEF, 0x84}, {0x40, 0x60, 0x04}, {0xD5, 0xF5, 0x94},
	} {
		if got := smCLA(tc.plain); got != tc.wire {
			t.Errorf("smCLA(%02X) = %02X, want %02X", tc.plain, got, tc.wire)
		}
		if !hasSM(tc.wire) || hasSM(tc.plain) {
			t.Errorf("hasSM(%02X/%02X)", tc.plain, tc.wire)
		}
		if got := plainCLA(tc.wire); got != tc.plain {
			t.Errorf("plainCLA(%02X) = %02X", tc.wire, got)
		}
		if got := macCLA(tc.wire); got != tc.mac {
			t.Errorf("macCLA(%02X) = %02X, want %02X", tc.wire, got, tc.mac)
		}
	}
	h, _ := pair(t, 16, LevelCMAC, 0x70, 1)
	if _, err := h.Wrap(apdu.Command{CLA: 0x0C, INS: 0xB0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("ISO SM class: %v", err)
	}
	if _, err := h.Wrap(apdu.Command{CLA: 0x80, INS: 0xE8, Data: seq(apdu.MaxExtendedNc - 7)}); !errors.Is(err, apdu.ErrNotEncodable) {
		t.Errorf("oversized: %v", err)
	}
}

func TestPadding(t *testing.T) {
	for n := range 40 {
		p := make([]byte, paddedLen(n))
		copy(p, seq(n))
		p[n] = 0x80
		if len(p)%16 != 0 || len(p)-n < 1 || len(p)-n > 16 {
			t.Fatalf("n=%d padded to %d", n, len(p))
		}
		got, err := unpad(p)
		if err != nil || !bytes.Equal(got, seq(n)) && n > 0 {
			t.Fatalf("n=%d: %X %v", n, got, err)
		}
	}
	for _, bad := range [][]byte{nil, make([]byte, 16), append(bytes.Repeat([]byte{1}, 15), 0x81), append([]byte{0x80}, make([]byte, 16)...)} {
		if _, err := unpad(bad); !errors.Is(err, ErrBadPadding) {
			t.Errorf("unpad(%X) = %v", bad, err)
		}
	}
}

func TestKDFArguments(t *testing.T) {
	key := make([]byte, 16)
	for _, bits := range []int{0, -8, 7, 255*128 + 8} {
		if _, err := DeriveData(key, 0, nil, bits); err == nil {
			t.Errorf("bits=%d accepted", bits)
		}
	}
	if out, err := DeriveData(key, 0, nil, 255*128); err != nil || len(out) != 255*16 {
		t.Errorf("255 blocks: %d %v", len(out), err)
	}
	if _, err := DeriveData(key[:15], 0, nil, 64); !errors.Is(err, ErrBadKey) {
		t.Errorf("short key: %v", err)
	}
	if _, err := DeriveSessionKeys(StaticKeys{ENC: key, MAC: make([]byte, 32), DEK: key}, make([]byte, 8), make([]byte, 8)); !errors.Is(err, ErrBadKey) {
		t.Errorf("mixed lengths: %v", err)
	}
	if _, err := DeriveSessionKeys(testKeys(16, 0), make([]byte, 16), make([]byte, 16)); !errors.Is(err, ErrMalformed) {
		t.Errorf("16-byte challenges: %v", err)
	}
	if _, err := PseudoRandomChallenge(key, MaxSequence+1, testAID); err == nil {
		t.Error("4-byte counter accepted")
	}
	if _, err := PseudoRandomChallenge(key, 1, testAID[:4]); err == nil {
		t.Error("4-byte AID accepted")
	}
}

func TestStatusFor(t *testing.T) {
	for err, want := range map[error]apdu.SW{
		nil:                            0x9000,
		fmt.Errorf("x: %w", ErrBadMAC): 0x6982,
		ErrSessionAborted:              0x6982,
		fmt.Errorf("%w: %w", ErrSecurity, ErrBadPadding): 0x6982,
		ErrAuthenticationFailed:                          0x6300,
		ErrKeyNotFound:                                   0x6A88,
		ErrSequenceExhausted:                             0x6985,
		ErrState:                                         0x6985,
		ErrWrongLength:                                   0x6700,
		ErrBadParameter:                                  0x6A86,
		ErrBadLevel:                                      0x6A86,
		ErrMalformed:                                     0x6A80,
		errors.New("other"):                              0x6F00,
	} {
		if got := StatusFor(err); got != want {
			t.Errorf("StatusFor(%v) = %v, want %v", err, got, want)
		}
	}
}

// The card's Wrap may be applied to every response by a uniform
// dispatcher: the bare '9000' of EXTERNAL AUTHENTICATE passes unchanged.
func TestWrapExternalAuthenticateResponse(t *testing.T) {
	h, c := pair(t, 16, LevelAll, 0x70, 12)
	handshake(t, h, c)
	if got, err := c.Wrap([]byte{0x90, 0x00}); err != nil || !bytes.Equal(got, []byte{0x90, 0x00}) {
		t.Fatalf("%X %v", got, err)
	}
	if _, err := c.Wrap([]byte{0x01, 0x90, 0x00}); !errors.Is(err, ErrState) {
		t.Fatalf("data without a command: %v", err)
	}
	exchange(t, h, c, testCommands()[5], testResponses()[4])
	if StatusFor(fmt.Errorf("%w: %w", ErrMalformed, apdu.ErrBadLength)) != apdu.ErrWrongLength {
		t.Fatal("length errors must answer 6700")
	}
}
