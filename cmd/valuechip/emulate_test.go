package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEmulateCreate: --create makes a card image from a profile and exits;
// the image is then a card for --reader emu:FILE; it is never overwritten.
func TestEmulateCreate(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "chip.card")
	stdout, _, err := cli(t, ctx, nil, "emulate", "--create", "--profile", "empty", "--card-file", file)
	require.NoError(t, err)
	require.Contains(t, stdout, "new chip")
	require.Contains(t, stdout, "1 application(s)", "the empty profile: the ISD alone")
	stdout, _, err = cli(t, ctx, nil, "send", "--reader", "emu:"+file, "00A4040008A000000151000000")
	require.NoError(t, err)
	require.Contains(t, stdout, "9000")
	_, _, err = cli(t, ctx, nil, "emulate", "--create", "--card-file", file)
	require.ErrorContains(t, err, "already exists")
	_, _, err = cli(t, ctx, nil, "emulate", "--create")
	require.ErrorContains(t, err, "--card-file")
}
