//go:build cgo

package pcsc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ebfe/scard"

	"github.com/valuechip/valuechip/reader"
)

// Context is a connection to the PC/SC service (pcscd). It is safe for
// concurrent use. Close it when done; that also invalidates its Cards.
type Context struct {
	mu     sync.RWMutex // read-held by calls on sc, write-held by Close
	sc     *scard.Context
	closed bool
}

// Open connects to the PC/SC service with system scope. Without a running
// pcscd the error matches reader.ErrServiceUnavailable.
func Open() (*Context, error) {
	sc, err := scard.EstablishContext()
	if err != nil {
		return nil, wrap("connect to the PC/SC service", err)
	}
	return &Context{sc: sc}, nil
}

// Close releases the PC/SC context. Cards connected through it stop
// working; Watch and WaitForCard calls in progress are not affected (they
// use their own contexts and end with their context.Context). Closing after
// pcscd stopped is not an error; closing twice is a no-op.
func (c *Context) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.sc.Release()
	switch codeOf(err) {
	case 0:
		if err == nil {
			return nil
		}
	case codeNoService, codeServiceStopped, codeCommError:
		return nil // pcscd is gone, and the context with it
	}
	return wrap("release the PC/SC context", err)
}

// use runs f with the PC/SC context held open.
func (c *Context) use(f func(sc *scard.Context) error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	return f(c.sc)
}

// Readers lists the readers in the order pcscd reports them, numbered from
// 0, each with whether it holds a card and the card's ATR. With no reader
// at all the error matches reader.ErrNoReader.
func (c *Context) Readers(ctx context.Context) ([]reader.Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var infos []reader.Info
	err := c.use(func(sc *scard.Context) error {
		names, err := sc.ListReaders()
		if err != nil {
			return wrap("list readers", err)
		}
		// One zero-timeout GetStatusChange with every reader marked
		// unaware returns all states and ATRs at once, without connecting
		// to any card (connecting would power cards up, and fail on
		// readers someone holds exclusively).
		states := make([]scard.ReaderState, len(names))
		for i, n := range names {
			states[i] = scard.ReaderState{Reader: n, CurrentState: scard.StateUnaware}
		}
		if err := snapshot(sc, states); err != nil {
			return wrap("read reader states", err)
		}
		for _, st := range states {
			ev := uint32(st.EventState)
			if gone(ev) {
				continue // unplugged between the two calls
			}
			in := reader.Info{Index: len(infos), Name: st.Reader, Present: present(ev)}
			if in.Present && len(st.Atr) > 0 {
				in.ATR = bytes.Clone(st.Atr)
			}
			infos = append(infos, in)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("pcsc: list readers: %w; %s", reader.ErrNoReader, hintNoReaders)
	}
	return infos, nil
}

// Connect connects to the card in the reader called name (a full name as
// Readers reports it; turn user input into one with Select). The zero
// ConnectOptions give shared access with T=0 or T=1, whichever the card
// offers. A reader without a card fails with an error matching
// reader.ErrNoCard.
func (c *Context) Connect(ctx context.Context, name string, o ConnectOptions) (*Card, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if name == "" {
		return nil, fmt.Errorf("pcsc: connect: %w: empty reader name; pick one with Select", reader.ErrNoReader)
	}
	card := &Card{
		name:  name,
		share: scard.ShareShared,
		proto: scard.Protocol(pcscProtocol(o.Protocol)),
		disp:  scard.LeaveCard,
	}
	if o.Exclusive {
		card.share = scard.ShareExclusive
	}
	if o.ResetOnClose {
		card.disp = scard.ResetCard
	}
	op := fmt.Sprintf("connect to %q", name)
	if o.Protocol != reader.ProtocolUnknown {
		op += " with " + o.Protocol.String()
	}
	err := c.use(func(sc *scard.Context) error {
		h, err := sc.Connect(name, card.share, card.proto)
		if err != nil {
			return wrap(op, err)
		}
		card.h = h
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := card.refresh(); err != nil {
		_ = card.h.Disconnect(scard.LeaveCard)
		return nil, err
	}
	return card, nil
}

// wrap turns an error from scard into an *Error that matches our
// sentinels; other errors are wrapped as they are.
func wrap(op string, err error) error {
	var se scard.Error
	if errors.As(err, &se) {
		return newError(op, uint32(se), se)
	}
	return fmt.Errorf("pcsc: %s: %w", op, err)
}

// codeOf returns the PC/SC return code in err, or 0.
func codeOf(err error) uint32 {
	var se scard.Error
	if errors.As(err, &se) {
		return uint32(se)
	}
	return 0
}
