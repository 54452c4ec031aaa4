// Package testcard is a small applet that exercises every layer of
// valuechip end to end: SELECT with an FCI, echo in short and extended
// form, responses longer than Ne (61xx + GET RESPONSE, done by the chip
// runtime), an exact-length command (6Cxx), a PIN with a try counter
// (63Cx, 6983) and a persistent counter. The sample card profile installs
// it next to the issuer security domain. Echo, a bare card answering 9000,
// is the floor for benchmarks.
//
// Its commands (CLA 80 unless noted):
//
//	00 A4 04 00 Lc AID [Le]  SELECT                                → FCI 6F
//	80 10 00 00 Lc data [Le] ECHO: returns data                    → data
//	80 12 HH LL Le           GENERATE: returns HHLL pattern bytes   → data / 61xx
//	80 14 00 00 Le           FIXED: exactly 16 bytes, else 6C10     → 16 bytes
//	80 20 00 00 [Le]         INCREMENT the persistent counter       → 4 bytes
//	80 22 00 00 Le           READ the persistent counter            → 4 bytes
//	00 20 00 80 Lc PIN       VERIFY (PIN "1234", 3 tries)           → 9000/63Cx/6983
//	00 20 00 80              VERIFY status                          → 9000/63Cx/6983
//	00 84 00 00 Le           GET CHALLENGE (1..256 bytes)           → random
package testcard

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/applet"
)

// AID is the test applet's instance AID (F0 = proprietary, unregistered
// RID, ISO/IEC 7816-5 §5.3).
var AID = []byte{0xF0, 0x56, 0x43, 0x54, 0x45, 0x53, 0x54, 0x01} // F0 "VCTEST" 01

// PackageAID and ModuleAID name its load file and module.
var (
	PackageAID = []byte{0xF0, 0x56, 0x43, 0x54, 0x45, 0x53, 0x54}
	ModuleAID  = []byte{0xF0, 0x56, 0x43, 0x54, 0x45, 0x53, 0x54, 0x00}
)

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
)

// Module is the test applet's implementation, for the chip's module list.
var Module = applet.Module{
	AID: ModuleAID, Name: "valuechip test applet", Version: "1.0",
	New: func(env applet.Env, _ []byte) (applet.Applet, error) {
		m := env.Memory()
		if _, ok := m.Get(keyTries); !ok {
			if err := m.Put(keyTries, []byte{maxPINTries}); err != nil {
				return nil, err
			}
			if err := m.Put(keyCounter, make([]byte, 4)); err != nil {
				return nil, err
			}
		}
		return testApplet{}, nil
	},
}

const (
	keyTries   = "pin-tries"
	keyCounter = "counter"
	keyPINOK   = "pin-verified" // transient
)

type testApplet struct{}

// Select answers the FCI 6F { 84 AID, A5 { 9F65 max command data } }.
func (testApplet) Select(env applet.Env, _ apdu.Command) ([]byte, apdu.SW) {
	delete(env.Transient(), keyPINOK)
	aid := env.AID()
	fci := []byte{0x6F, byte(2 + len(aid) + 6), 0x84, byte(len(aid))}
	fci = append(fci, aid...)
	return append(fci, 0xA5, 0x04, 0x9F, 0x65, 0x01, 0xFF), apdu.SWNoError
}

func (testApplet) Deselect(env applet.Env) { delete(env.Transient(), keyPINOK) }

func (a testApplet) Process(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.Chained() {
		return nil, apdu.ErrChainingUnsupported
	}
	if cmd.CLA&0x80 == 0 {
		switch cmd.INS {
		case 0x20:
			return verify(env, cmd)
		case 0x84:
			return challenge(env, cmd)
		}
		return nil, apdu.ErrINSNotSupported
	}
	if cmd.CLA&0xF0 != 0x80 {
		return nil, apdu.ErrCLANotSupported
	}
	m := env.Memory()
	switch cmd.INS {
	case InsEcho:
		return append([]byte(nil), cmd.Data...), apdu.SWNoError
	case InsGenerate:
		out := make([]byte, int(cmd.P1)<<8|int(cmd.P2))
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
		v, _ := m.Get(keyCounter)
		if len(v) != 4 {
			v = make([]byte, 4)
		}
		n := binary.BigEndian.Uint32(v)
		if n == ^uint32(0) {
			return nil, apdu.ErrConditionsNotMet
		}
		out := binary.BigEndian.AppendUint32(nil, n+1)
		if err := m.Put(keyCounter, out); err != nil {
			return nil, applet.StatusOf(err)
		}
		return out, apdu.SWNoError
	case InsRead:
		v, _ := m.Get(keyCounter)
		return v, apdu.SWNoError
	}
	return nil, apdu.ErrINSNotSupported
}

func challenge(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P1 != 0 || cmd.P2 != 0 || len(cmd.Data) != 0 {
		return nil, apdu.ErrIncorrectP1P2
	}
	if cmd.Ne == 0 || cmd.Ne > 256 {
		return nil, apdu.ErrWrongLength
	}
	out := make([]byte, cmd.Ne)
	env.Random(out)
	return out, apdu.SWNoError
}

// verify implements VERIFY (ISO/IEC 7816-4 §11.5.6) for the application PIN
// (P2 80). The try counter is decremented in persistent memory before the
// comparison, so cutting power after a wrong PIN cannot save a try.
func verify(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P1 != 0 || cmd.P2 != 0x80 {
		return nil, apdu.ErrIncorrectP1P2
	}
	m, t := env.Memory(), env.Transient()
	v, _ := m.Get(keyTries)
	tries := 0
	if len(v) == 1 {
		tries = int(v[0])
	}
	if len(cmd.Data) == 0 {
		switch {
		case t[keyPINOK] == true:
			return nil, apdu.SWNoError
		case tries == 0:
			return nil, apdu.ErrAuthBlocked
		}
		return nil, apdu.NewSW(0x63, 0xC0|byte(tries))
	}
	if tries == 0 {
		return nil, apdu.ErrAuthBlocked
	}
	if err := m.Put(keyTries, []byte{byte(tries - 1)}); err != nil {
		return nil, applet.StatusOf(err)
	}
	if subtle.ConstantTimeCompare(cmd.Data, []byte(defaultPIN)) == 1 {
		if err := m.Put(keyTries, []byte{maxPINTries}); err != nil {
			return nil, applet.StatusOf(err)
		}
		t[keyPINOK] = true
		return nil, apdu.SWNoError
	}
	delete(t, keyPINOK)
	if tries-1 == 0 {
		return nil, apdu.ErrAuthBlocked
	}
	return nil, apdu.NewSW(0x63, 0xC0|byte(tries-1))
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
