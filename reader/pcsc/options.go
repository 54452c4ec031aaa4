package pcsc

import "github.com/valuechip/valuechip/reader"

// ConnectOptions tune Context.Connect. The zero value is what most callers
// want: shared access, whichever protocol the card offers, and the card left
// as it is on Close.
type ConnectOptions struct {
	// Protocol asks for T=0 or T=1. ProtocolUnknown (the zero value) lets
	// PC/SC pick from what the ATR offers.
	Protocol reader.Protocol
	// Exclusive opens the card in SCARD_SHARE_EXCLUSIVE mode, so no other
	// application can talk to it until Close. The default is shared.
	Exclusive bool
	// ResetOnClose resets the card on Close (SCARD_RESET_CARD) so the next
	// user finds no session state behind. The default leaves the card
	// powered and untouched (SCARD_LEAVE_CARD), which is cheaper and what
	// pcscd does with idle cards anyway (it powers them down soon after the
	// last handle closes).
	ResetOnClose bool
}
