// Package secretfile reads files that hold keys or tokens (a KEK, a
// terminal's TMK, the HTTP operator token) the way ssh reads a private key:
// a file that group or others may access is refused, because its secret
// must be assumed known.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
)

// ErrExposed: the file is accessible to group or others (an *ExposedError
// matches it).
var ErrExposed = errors.New("secret file accessible to group or others")

// ExposedError names the file and its mode, and how to mend it.
type ExposedError struct {
	Path string
	Mode os.FileMode
}

func (e *ExposedError) Error() string {
	return fmt.Sprintf("%s has mode %04o, accessible to group or others; run: chmod 600 %s", e.Path, e.Mode, e.Path)
}

// Is makes errors.Is(err, ErrExposed) true.
func (e *ExposedError) Is(target error) bool { return target == ErrExposed }

// ErrTooLarge: the file is longer than the caller's limit.
var ErrTooLarge = errors.New("secret file too large")

// Read returns the contents of path after checking, on the open file, that
// only its owner may access it (Windows has no Unix permission bits to
// check). limit > 0 bounds what is read, so a wrong path (a device, a huge
// file) is harmless; a longer file wraps ErrTooLarge.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, &ExposedError{Path: path, Mode: perm}
	}
	if limit <= 0 {
		return io.ReadAll(f)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return b, err
	}
	if int64(len(b)) > limit {
		clear(b)
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrTooLarge, path, limit)
	}
	return b, nil
}
