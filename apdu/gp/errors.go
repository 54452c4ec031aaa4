package gp

import "fmt"

// errorf wraps sentinel with a formatted message: "gp: malformed data: ...".
// The format may wrap further errors with %w.
func errorf(sentinel error, format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, a...)...)
}
