//go:build cgo

package pcsc

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/ebfe/scard"

	"github.com/valuechip/valuechip/reader"
)

// Card is a connection to a card through PC/SC. It implements reader.Conn
// and is safe for concurrent use; calls are serialised (the card handles
// one command at a time anyway).
type Card struct {
	mu     sync.Mutex // guards everything below and serialises use of h
	h      *scard.Card
	name   string
	share  scard.ShareMode
	proto  scard.Protocol    // as requested, reused by Reset
	disp   scard.Disposition // for Close
	atr    []byte
	active reader.Protocol
	closed bool
}

var _ reader.Conn = (*Card)(nil)

// refresh reads the ATR and the negotiated protocol after a connect or a
// reset. Callers hold mu, or own the Card exclusively.
func (c *Card) refresh() error {
	st, err := c.h.Status()
	if err != nil {
		return wrap(fmt.Sprintf("read the status of the card in %q", c.name), err)
	}
	c.atr = bytes.Clone(st.Atr)
	c.active = protocolOf(uint32(c.h.ActiveProtocol()))
	return nil
}

// Transceive sends one command APDU and returns the response (data and
// SW1 SW2). Commands shorter than 4 bytes are refused with ErrShortCommand
// before anything reaches the reader.
//
// ctx is checked before sending, not during: SCardTransmit cannot be
// interrupted (SCardCancel only wakes SCardGetStatusChange), so a card that
// never answers blocks the call until the reader driver gives up or the
// card goes away.
func (c *Card) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	if len(cmd) < 4 {
		return nil, fmt.Errorf("%w: got %d byte(s) [% X]; vpcd takes a 1-byte frame for a control byte and stalls the reader for every client",
			ErrShortCommand, len(cmd), cmd)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil { // we may have waited for the lock
		return nil, err
	}
	if c.active == reader.ProtocolUnknown {
		// scard.Card.Transmit panics on any protocol but T=0 and T=1.
		return nil, fmt.Errorf("pcsc: transmit to %q: no protocol negotiated with the card", c.name)
	}
	rsp, err := c.h.Transmit(cmd)
	if err != nil {
		return nil, wrap(fmt.Sprintf("transmit to %q", c.name), err)
	}
	// scard slices the response out of a fresh 64 KiB buffer; copying lets
	// callers keep responses (traces, transcripts) without pinning 64 KiB
	// each.
	return bytes.Clone(rsp), nil
}

// Reader returns the name of the reader the card is in.
func (c *Card) Reader() string { return c.name }

// ATR returns a copy of the card's answer-to-reset, as read at connect time
// or after the last Reset.
func (c *Card) ATR() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.atr)
}

// Protocol returns the protocol PC/SC negotiated with the card.
func (c *Card) Protocol() reader.Protocol {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active
}

// Reset resets the card and keeps the connection (SCardReconnect with the
// share mode and protocol of Connect): a warm reset (SCARD_RESET_CARD) or,
// with cold, a power cycle (SCARD_UNPOWER_CARD). Either way the card loses
// its session state; the ATR and protocol are read again. Reset is also the
// way to carry on after an error matching reader.ErrCardRemoved that came
// from another application resetting the card.
func (c *Card) Reset(ctx context.Context, cold bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	disp, what := scard.ResetCard, "warm"
	if cold {
		disp, what = scard.UnpowerCard, "cold"
	}
	if err := c.h.Reconnect(c.share, c.proto, disp); err != nil {
		return wrap(fmt.Sprintf("%s reset of the card in %q", what, c.name), err)
	}
	return c.refresh()
}

// Close disconnects from the card, leaving it powered unless ResetOnClose
// was set. It waits for a Transceive in progress to finish (pcsc-lite
// would make it wait anyway). Closing a connection to a card that was
// already removed, or after pcscd stopped, is not an error. Closing twice
// is a no-op.
func (c *Card) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.h.Disconnect(c.disp)
	if err != nil && c.disp != scard.LeaveCard {
		// A card that cannot be reset (it is gone, or mute) must still let
		// go of its handle, or pcscd keeps it until our context ends.
		err = c.h.Disconnect(scard.LeaveCard)
	}
	switch codeOf(err) {
	case 0:
		if err == nil {
			return nil
		}
	case codeRemovedCard, codeResetCard, codeNoSmartcard:
		return nil // nothing left to leave as it was
	case codeNoService, codeServiceStopped, codeCommError:
		return nil // pcscd is gone, and the handle with it
	}
	return wrap(fmt.Sprintf("disconnect from %q", c.name), err)
}
