package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	require.NoError(t, os.WriteFile(p, []byte("0123456789"), 0o600))
	b, err := Read(p, 0)
	require.NoError(t, err)
	require.Equal(t, "0123456789", string(b))
	b, err = Read(p, 10)
	require.NoError(t, err, "exactly at the limit")
	require.Equal(t, "0123456789", string(b))
	_, err = Read(p, 9)
	require.ErrorIs(t, err, ErrTooLarge)

	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o602} {
		require.NoError(t, os.Chmod(p, mode))
		_, err = Read(p, 0)
		require.ErrorIs(t, err, ErrExposed, "mode %04o", mode)
		var e *ExposedError
		require.True(t, errors.As(err, &e))
		require.Equal(t, mode, e.Mode)
		require.ErrorContains(t, err, "chmod 600 "+p)
	}
	_, err = Read(filepath.Join(dir, "missing"), 0)
	require.ErrorIs(t, err, os.ErrNotExist)
}
