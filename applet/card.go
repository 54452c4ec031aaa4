// Package applet is the emulated chip. This file holds the contract every
// emulated card honours, whichever transport carries its APDUs: the five
// operations of a contact or contactless card as seen from a reader
// (ISO/IEC 7816-3 §6 activation and reset; ISO/IEC 7816-4 for the APDUs).
package applet

// Card is an emulated smart card. A reader backend (in-process, vpcd, or a
// test) drives it with the same calls a physical reader makes.
//
// Implementations must be safe for one caller at a time; transports
// serialise access. Transmit must answer every input, even garbage, with at
// least a status word and must never panic: a card cannot refuse to answer.
type Card interface {
	// ATR returns the answer-to-reset. It is valid even while powered off,
	// because vpcd asks for it on every presence poll.
	ATR() []byte
	// PowerOn applies power (cold reset): volatile state starts afresh.
	PowerOn()
	// PowerOff removes power: volatile state is lost.
	PowerOff()
	// Reset performs a warm (warm=true) or cold reset. Either way the
	// selection, PIN state and secure channels are lost.
	Reset(warm bool)
	// Transmit processes one command APDU and returns the response APDU
	// (data followed by SW1 SW2).
	Transmit(cmd []byte) []byte
}
