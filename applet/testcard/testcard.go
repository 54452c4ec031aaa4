// Package testcard is a minimal emulated card that exercises every layer of
// valuechip end to end before the real card manager and purse exist: SELECT
// of its AID with an FCI, echo in short and extended form, responses longer
// than Ne (61xx + GET RESPONSE), an exact-length command (6Cxx), GET
// CHALLENGE, a PIN with a try counter (63Cx, 6983) and a persistent counter
// whose value survives restarts through a state file.
//
// Its commands (CLA 80 unless noted; all need the applet selected):
//
//	00 A4 04 00 Lc AID [Le]  SELECT by AID (full or partial match)  → FCI 6F
//	80 10 00 00 Lc data [Le] ECHO: returns data                    → data
//	80 12 HH LL Le           GENERATE: returns HHLL pattern bytes   → data / 61xx
//	80 14 00 00 Le           FIXED: exactly 16 bytes, else 6C10     → 16 bytes
//	80 20 00 00 [Le]         INCREMENT the persistent counter       → 4 bytes
//	80 22 00 00 Le           READ the persistent counter            → 4 bytes
//	00 20 00 80 Lc PIN       VERIFY (PIN "1234", 3 tries)           → 9000/63Cx/6983
//	00 20 00 80              VERIFY status                          → 9000/63Cx/6983
//	00 84 00 00 Le           GET CHALLENGE (1..256 bytes)           → random
//	00 C0 00 00 Le           GET RESPONSE                           → pending data
package testcard

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/valuechip/valuechip/apdu"
)

// AID is the test applet's application identifier (F0 = proprietary,
// unregistered RID, ISO/IEC 7816-5 §5.3).
var AID = []byte{0xF0, 0x56, 0x43, 0x54, 0x45, 0x53, 0x54, 0x01} // F0 "VCTEST" 01

// DefaultATR is a T=1 ATR in the PC/SC Part 3 contactless form whose
// historical bytes advertise extended Lc/Le (compact-TLV 73, third software
// function table byte b7; ISO/IEC 7816-4 §12.1.1.9).
var DefaultATR = []byte{0x3B, 0x85, 0x80, 0x01, 0x80, 0x73, 0x80, 0x01, 0x40, 0x36}

// Instructions of the test applet.
const (
	InsEcho      = 0x10
	InsGenerate  = 0x12
	InsFixed     = 0x14
	InsIncrement = 0x20
	InsRead      = 0x22
	FixedLength  = 16
	defaultPIN   = "1234"
	maxPINTries  = 3
	stateVersion = 1
)

// state is what the card keeps in persistent memory.
type state struct {
	Version  int    `json:"version"`
	Serial   string `json:"serial"`
	Counter  uint32 `json:"counter"`
	PINTries int    `json:"pin_tries_left"`
}

// Card is the test card. It is safe for concurrent use.
type Card struct {
	mu   sync.Mutex
	path string // "" = persistent memory only in RAM
	st   state

	// Transient (RAM) state, lost on reset and power-off.
	powered     bool
	selected    bool
	pinVerified bool
	pending     []byte // response data waiting for GET RESPONSE
	// T0 makes the card answer like a T=0 card: responses longer than Ne,
	// and every case-4 response, go through 61xx + GET RESPONSE.
	t0 bool
	// saveErr remembers a failed write of the state file so that the next
	// value-changing command reports a memory failure.
	saveErr error
}

// Option configures a Card.
type Option func(*Card)

// WithT0 makes the card behave like a T=0 card (61xx for the response data
// of every command but case 2), to exercise GET RESPONSE handling on hosts.
func WithT0() Option { return func(c *Card) { c.t0 = true } }

// New returns a card whose persistent memory lives only in RAM.
func New(opts ...Option) *Card {
	c := &Card{st: fresh()}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Open returns a card whose persistent memory lives in the file at path,
// created on first use.
func Open(path string, opts ...Option) (*Card, error) {
	c := New(opts...)
	c.path = path
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return c, c.save()
	case err != nil:
		return nil, fmt.Errorf("testcard: read state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("testcard: %s is not a test-card state file: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("testcard: %s has state version %d, want %d", path, st.Version, stateVersion)
	}
	if st.PINTries < 0 || st.PINTries > maxPINTries {
		return nil, fmt.Errorf("testcard: %s has an impossible PIN try counter %d", path, st.PINTries)
	}
	c.st = st
	return c, nil
}

func fresh() state {
	var serial [8]byte
	_, _ = rand.Read(serial[:])
	return state{Version: stateVersion, Serial: fmt.Sprintf("%X", serial), PINTries: maxPINTries}
}

// save writes the state atomically: a power cut leaves the old or the new
// file, never a torn one (write to a temporary file, fsync, rename).
func (c *Card) save() error {
	if c.path == "" {
		return nil
	}
	b, err := json.MarshalIndent(c.st, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(c.path, b)
}

// WriteFileAtomic replaces path with data so that a crash leaves either the
// old or the new content: temporary file in the same directory, fsync,
// rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Serial returns the card's serial number in hex.
func (c *Card) Serial() string { c.mu.Lock(); defer c.mu.Unlock(); return c.st.Serial }

// ATR implements applet.Card.
func (c *Card) ATR() []byte { return DefaultATR }

// PowerOn implements applet.Card.
func (c *Card) PowerOn() { c.mu.Lock(); c.resetTransient(); c.powered = true; c.mu.Unlock() }

// PowerOff implements applet.Card.
func (c *Card) PowerOff() { c.mu.Lock(); c.resetTransient(); c.powered = false; c.mu.Unlock() }

// Reset implements applet.Card. Both warm and cold resets lose the
// selection, the PIN state and pending response data.
func (c *Card) Reset(warm bool) { c.mu.Lock(); c.resetTransient(); c.powered = true; c.mu.Unlock() }

func (c *Card) resetTransient() {
	c.selected, c.pinVerified, c.pending = false, false, nil
}

// Transmit implements applet.Card.
func (c *Card) Transmit(raw []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return apdu.Status(apdu.ErrWrongLength)
	}
	if cmd.INS == 0xC0 && cmd.CLA&0x80 == 0 {
		return c.getResponse(cmd)
	}
	c.pending = nil // any other command discards unfetched data
	data, sw := c.dispatch(cmd)
	return c.respond(cmd, data, sw)
}

// respond applies the transport policy of protocols.md §1.4: all data goes
// back at once when it fits Ne; otherwise (or always for case 4 in T=0 mode)
// the card answers 61xx and keeps the rest for GET RESPONSE.
func (c *Card) respond(cmd apdu.Command, data []byte, sw apdu.SW) []byte {
	if sw != apdu.SWNoError || len(data) == 0 {
		return apdu.Response{Data: data, SW: sw}.Bytes()
	}
	ne := cmd.Ne
	if ne == 0 {
		ne = apdu.MaxShortNe // a case-3 command still gets its data via 61xx
	}
	// A T=0 card can send data only in answer to a case-2 TPDU, so every
	// other command's data waits for GET RESPONSE (ISO/IEC 7816-3 §12.2.2).
	if len(data) <= ne && !(c.t0 && cmd.Case() != apdu.Case2) {
		return apdu.Response{Data: data, SW: sw}.Bytes()
	}
	return c.chunk(data)
}

func (c *Card) chunk(data []byte) []byte {
	c.pending = data
	n := len(data)
	if n > 256 {
		n = 256
	}
	return apdu.Status(apdu.NewSW(0x61, byte(n))) // 256 → 6100
}

func (c *Card) getResponse(cmd apdu.Command) []byte {
	if len(c.pending) == 0 {
		return apdu.Status(apdu.ErrConditionsNotMet)
	}
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return apdu.Status(apdu.ErrIncorrectP1P2)
	}
	avail := len(c.pending)
	if avail > 256 {
		avail = 256
	}
	if cmd.Ne == 0 || cmd.Ne > 256 {
		return apdu.Status(apdu.NewSW(0x6C, byte(avail)))
	}
	n := min(cmd.Ne, len(c.pending))
	out := c.pending[:n]
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil
		return apdu.Response{Data: out, SW: apdu.SWNoError}.Bytes()
	}
	rest := min(len(c.pending), 256)
	return apdu.Response{Data: out, SW: apdu.NewSW(0x61, byte(rest))}.Bytes()
}

func (c *Card) dispatch(cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.Channel() != 0 {
		return nil, apdu.ErrChannelNotSupported
	}
	if cmd.Chained() {
		return nil, apdu.ErrChainingUnsupported
	}
	switch {
	case cmd.CLA&0x80 == 0 && cmd.INS == 0xA4:
		return c.selectAID(cmd)
	case cmd.CLA&0x80 == 0 && cmd.INS == 0x84:
		return c.challenge(cmd)
	}
	if !c.selected {
		return nil, apdu.ErrConditionsNotMet
	}
	if cmd.CLA&0x80 == 0 {
		if cmd.INS == 0x20 {
			return c.verify(cmd)
		}
		return nil, apdu.ErrINSNotSupported
	}
	if cmd.CLA&^0x03 != 0x80 {
		return nil, apdu.ErrCLANotSupported
	}
	switch cmd.INS {
	case InsEcho:
		return append([]byte(nil), cmd.Data...), apdu.SWNoError
	case InsGenerate:
		n := int(cmd.P1)<<8 | int(cmd.P2)
		out := make([]byte, n)
		for i := range out {
			out[i] = byte(i)
		}
		return out, apdu.SWNoError
	case InsFixed:
		if cmd.Ne != FixedLength {
			return nil, apdu.NewSW(0x6C, FixedLength)
		}
		return bytes.Repeat([]byte{0xA5}, FixedLength), apdu.SWNoError
	case InsIncrement:
		if c.saveErr != nil {
			return nil, apdu.ErrMemoryFailure
		}
		if c.st.Counter == ^uint32(0) {
			return nil, apdu.ErrConditionsNotMet
		}
		c.st.Counter++
		if err := c.save(); err != nil {
			c.st.Counter--
			c.saveErr = err
			return nil, apdu.ErrMemoryFailure
		}
		return binary.BigEndian.AppendUint32(nil, c.st.Counter), apdu.SWNoError
	case InsRead:
		return binary.BigEndian.AppendUint32(nil, c.st.Counter), apdu.SWNoError
	}
	return nil, apdu.ErrINSNotSupported
}

// selectAID implements SELECT by DF name (ISO/IEC 7816-4 §11.2.2): P1 04,
// P2 00 first occurrence (or 02 next: this card holds one application, so
// "next" after a match finds nothing) with FCI, 0C without response data.
func (c *Card) selectAID(cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P1 != 0x04 {
		return nil, apdu.ErrIncorrectP1P2
	}
	occurrence, answer := cmd.P2&0x03, cmd.P2&0x0C
	if occurrence == 0x01 || occurrence == 0x03 || (answer != 0x00 && answer != 0x0C) {
		return nil, apdu.ErrIncorrectP1P2
	}
	if len(cmd.Data) < 5 && len(cmd.Data) != 0 || len(cmd.Data) > 16 {
		return nil, apdu.ErrWrongLength
	}
	if occurrence == 0x02 && c.selected || !bytes.HasPrefix(AID, cmd.Data) {
		c.selected = false
		return nil, apdu.ErrFileNotFound
	}
	c.selected, c.pinVerified = true, false
	if answer == 0x0C {
		return nil, apdu.SWNoError
	}
	// FCI template 6F { 84 AID, A5 { 9F65 max command data } }.
	fci := []byte{0x6F, byte(2 + len(AID) + 6), 0x84, byte(len(AID))}
	fci = append(fci, AID...)
	fci = append(fci, 0xA5, 0x04, 0x9F, 0x65, 0x01, 0xFF)
	return fci, apdu.SWNoError
}

func (c *Card) challenge(cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P1 != 0 || cmd.P2 != 0 || len(cmd.Data) != 0 {
		return nil, apdu.ErrIncorrectP1P2
	}
	if cmd.Ne == 0 || cmd.Ne > 256 {
		return nil, apdu.ErrWrongLength
	}
	out := make([]byte, cmd.Ne)
	_, _ = rand.Read(out)
	return out, apdu.SWNoError
}

// verify implements VERIFY (ISO/IEC 7816-4 §11.5.6) for the application PIN
// (P2 80). The try counter is decremented in persistent memory before the
// comparison, so cutting power after a wrong PIN cannot save a try.
func (c *Card) verify(cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P1 != 0 || cmd.P2 != 0x80 {
		return nil, apdu.ErrIncorrectP1P2
	}
	if len(cmd.Data) == 0 {
		switch {
		case c.pinVerified:
			return nil, apdu.SWNoError
		case c.st.PINTries == 0:
			return nil, apdu.ErrAuthBlocked
		}
		return nil, apdu.NewSW(0x63, 0xC0|byte(c.st.PINTries))
	}
	if c.st.PINTries == 0 {
		return nil, apdu.ErrAuthBlocked
	}
	if c.saveErr != nil {
		return nil, apdu.ErrMemoryFailure
	}
	c.st.PINTries--
	if err := c.save(); err != nil {
		c.saveErr = err
		return nil, apdu.ErrMemoryFailure
	}
	if subtle.ConstantTimeCompare(cmd.Data, []byte(defaultPIN)) == 1 {
		c.st.PINTries = maxPINTries
		c.pinVerified = true
		if err := c.save(); err != nil {
			c.saveErr = err
			return nil, apdu.ErrMemoryFailure
		}
		return nil, apdu.SWNoError
	}
	c.pinVerified = false
	if c.st.PINTries == 0 {
		return nil, apdu.ErrAuthBlocked
	}
	return nil, apdu.NewSW(0x63, 0xC0|byte(c.st.PINTries))
}

// Echo is the bare echo card used as the floor in benchmarks: it answers
// every command with its data and 9000, doing no other work.
type Echo struct{}

// ATR implements applet.Card.
func (Echo) ATR() []byte { return DefaultATR }

// PowerOn implements applet.Card.
func (Echo) PowerOn() {}

// PowerOff implements applet.Card.
func (Echo) PowerOff() {}

// Reset implements applet.Card.
func (Echo) Reset(bool) {}

// Transmit implements applet.Card.
func (Echo) Transmit(cmd []byte) []byte {
	if len(cmd) <= 5 {
		return []byte{0x90, 0x00}
	}
	c, err := apdu.ParseCommand(cmd)
	if err != nil {
		return apdu.Status(apdu.ErrWrongLength)
	}
	return apdu.Response{Data: c.Data, SW: apdu.SWNoError}.Bytes()
}
