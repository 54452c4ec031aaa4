// Command valuechip emulates a stored-value IC chip at the ISO 7816 APDU
// level and drives it, or a real card, through PC/SC readers.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/valuechip/valuechip/reader"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "valuechip: %v\n", err)
		if h := hint(err); h != "" {
			fmt.Fprintf(os.Stderr, "hint: %s\n", h)
		}
		os.Exit(exitCode(err))
	}
}

// hint says what to try for the failures users meet most.
func hint(err error) string {
	switch {
	case errors.Is(err, reader.ErrServiceUnavailable):
		return "start pcscd (pcscd --foreground &, or systemctl start pcscd.socket), or use the in-process card: --reader emu:card.json"
	case errors.Is(err, reader.ErrNoReader):
		return "plug in a reader, or install the virtual reader (apt-get install vsmartcard-vpcd) and restart pcscd; `valuechip readers` lists what PC/SC sees"
	case errors.Is(err, reader.ErrNoCard):
		return "put a card on the reader, or attach the emulator: valuechip emulate --vpcd 127.0.0.1:35963"
	case errors.Is(err, reader.ErrCardRemoved):
		return "the card left the reader during the exchange: tap it again and retry"
	case errors.Is(err, reader.ErrAmbiguous):
		return "choose one with --reader INDEX or a name fragment, or set VALUECHIP_READER"
	case errors.Is(err, reader.ErrNoPCSC):
		return "rebuild with CGO_ENABLED=1 and libpcsclite-dev installed, or use --reader emu:PATH"
	}
	return ""
}

// exitCode maps failures to distinct exit codes for scripts: 2 usage,
// 3 no reader or card, 1 anything else.
func exitCode(err error) int {
	var u usageError
	switch {
	case errors.As(err, &u):
		return 2
	case errors.Is(err, reader.ErrServiceUnavailable), errors.Is(err, reader.ErrNoReader),
		errors.Is(err, reader.ErrNoCard), errors.Is(err, reader.ErrCardRemoved),
		errors.Is(err, reader.ErrReaderGone):
		return 3
	}
	return 1
}

// usageError marks a mistake in the command line.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }
