// Package emu is the in-process reader backend: it connects the host stack
// straight to an emulated card (applet.Card) with no pcscd, no socket and
// no copy beyond what the card contract needs. It is what the reader name
// "emu:PATH" opens, so every command works without system services.
package emu

import (
	"context"
	"fmt"
	"sync"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/reader"
)

// Conn is a connection to an in-process card. It implements reader.Conn.
type Conn struct {
	mu     sync.Mutex
	card   applet.Card
	name   string
	proto  reader.Protocol
	closed bool
}

// Connect powers the card on and returns a connection to it. name is what
// Reader() reports.
func Connect(card applet.Card, name string) *Conn {
	card.PowerOn()
	return &Conn{card: card, name: name, proto: reader.ProtocolT1}
}

// Transceive implements reader.Transceiver. The command is copied so that a
// card keeping a reference cannot see the caller reuse its buffer.
func (c *Conn) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("emu %s: %w", c.name, reader.ErrCardRemoved)
	}
	rsp := c.card.Transmit(append([]byte(nil), cmd...))
	if len(rsp) == 0 {
		// No answer at all: the card lost power (a tear). To the host
		// that is a card gone from the field; it must connect again,
		// which powers the card up and lets it recover.
		c.closed = true
		return nil, fmt.Errorf("emu %s: card gave no answer: %w", c.name, reader.ErrCardRemoved)
	}
	return rsp, nil
}

// Reader implements reader.Conn.
func (c *Conn) Reader() string { return c.name }

// ATR implements reader.Conn.
func (c *Conn) ATR() []byte { return c.card.ATR() }

// Protocol implements reader.Conn.
func (c *Conn) Protocol() reader.Protocol { return c.proto }

// Reset implements reader.Conn.
func (c *Conn) Reset(ctx context.Context, cold bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("emu %s: %w", c.name, reader.ErrCardRemoved)
	}
	if cold {
		c.card.PowerOff()
		c.card.PowerOn()
		return nil
	}
	c.card.Reset(true)
	return nil
}

// Close implements reader.Conn: the card is powered off, as a reader does
// when the last handle closes.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.card.PowerOff()
	}
	return nil
}
