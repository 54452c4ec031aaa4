//go:build !cgo

package pcsc

import (
	"context"

	"github.com/valuechip/valuechip/reader"
)

// This file stands in for the cgo files when CGO_ENABLED=0: the exported
// API is the same, and everything that needs pcscd fails with
// reader.ErrNoPCSC, so callers build unchanged and tell the user why at
// run time. Select, ConnectOptions and Error work as usual.

// Context is a connection to the PC/SC service; in this build there is none.
type Context struct{}

// Open fails with reader.ErrNoPCSC: this binary was built without cgo.
func Open() (*Context, error) { return nil, reader.ErrNoPCSC }

// Close does nothing.
func (c *Context) Close() error { return nil }

// Readers fails with reader.ErrNoPCSC.
func (c *Context) Readers(ctx context.Context) ([]reader.Info, error) {
	return nil, reader.ErrNoPCSC
}

// Connect fails with reader.ErrNoPCSC.
func (c *Context) Connect(ctx context.Context, name string, o ConnectOptions) (*Card, error) {
	return nil, reader.ErrNoPCSC
}

// WaitForCard fails with reader.ErrNoPCSC.
func (c *Context) WaitForCard(ctx context.Context, name string) (reader.Info, error) {
	return reader.Info{}, reader.ErrNoPCSC
}

// WaitForRemoval fails with reader.ErrNoPCSC.
func (c *Context) WaitForRemoval(ctx context.Context, name string) error { return reader.ErrNoPCSC }

// Watch fails with reader.ErrNoPCSC.
func (c *Context) Watch(ctx context.Context) (<-chan reader.Event, error) {
	return nil, reader.ErrNoPCSC
}

// Card is a connection to a card; in this build none can be made.
type Card struct{}

var _ reader.Conn = (*Card)(nil)

// Transceive fails with reader.ErrNoPCSC.
func (c *Card) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	return nil, reader.ErrNoPCSC
}

// Reader returns "".
func (c *Card) Reader() string { return "" }

// ATR returns nil.
func (c *Card) ATR() []byte { return nil }

// Protocol returns reader.ProtocolUnknown.
func (c *Card) Protocol() reader.Protocol { return reader.ProtocolUnknown }

// Reset fails with reader.ErrNoPCSC.
func (c *Card) Reset(ctx context.Context, cold bool) error { return reader.ErrNoPCSC }

// Close does nothing.
func (c *Card) Close() error { return nil }
