//go:build !cgo

package pcsc

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/valuechip/valuechip/reader"
)

func TestStubSaysNoPCSC(t *testing.T) {
	ctx := context.Background()
	_, err := Open()
	assert.ErrorIs(t, err, reader.ErrNoPCSC)
	var c *Context
	_, err = c.Readers(ctx)
	assert.ErrorIs(t, err, reader.ErrNoPCSC)
	_, err = c.Connect(ctx, "Virtual PCD 00 01", ConnectOptions{})
	assert.ErrorIs(t, err, reader.ErrNoPCSC)
	_, err = c.WaitForCard(ctx, "")
	assert.ErrorIs(t, err, reader.ErrNoPCSC)
	_, err = c.Watch(ctx)
	assert.ErrorIs(t, err, reader.ErrNoPCSC)
	assert.NoError(t, c.Close())
}
