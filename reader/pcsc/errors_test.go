package pcsc

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/reader"
)

// fakeScardErr stands in for scard.Error, whose text comes from
// pcsc_stringify_error.
type fakeScardErr struct{ text string }

func (e fakeScardErr) Error() string { return "scard: " + e.text }

func TestErrorMapping(t *testing.T) {
	sentinels := []error{reader.ErrServiceUnavailable, reader.ErrNoReader, reader.ErrNoCard,
		reader.ErrCardRemoved, reader.ErrReaderGone, reader.ErrAmbiguous, reader.ErrNoPCSC}
	tests := []struct {
		code   uint32
		text   string
		kind   error
		hintIn string
	}{
		{codeNoService, "Service not available.", reader.ErrServiceUnavailable, "pcscd --foreground"},
		{codeServiceStopped, "Service was stopped.", reader.ErrServiceUnavailable, "systemctl start pcscd.socket"},
		{codeCommError, "RPC transport error.", reader.ErrServiceUnavailable, "lost the connection to pcscd"},
		{codeNoReadersAvailable, "Cannot find a smart card reader.", reader.ErrNoReader, "vsmartcard-vpcd"},
		{codeUnknownReader, "Unknown reader specified.", reader.ErrNoReader, "by index or name"},
		{codeReaderUnavailable, "Reader is unavailable.", reader.ErrReaderGone, "unplugged"},
		{codeNoSmartcard, "No smart card inserted.", reader.ErrNoCard, "35964"},
		{codeRemovedCard, "Card was removed.", reader.ErrCardRemoved, "insert it"},
		{codeResetCard, "Card was reset.", reader.ErrCardRemoved, "session state is lost"},
		{codeSharingViolation, "Sharing violation.", nil, "exclusively"},
		{codeProtoMismatch, "Card protocol mismatch.", nil, "requested protocol"},
		{codeUnresponsiveCard, "Card is unresponsive.", nil, "mute"},
		{codeTimeout, "Command timeout.", nil, ""},
		{codeCancelled, "Command cancelled.", nil, ""},
		{0x80100001, "Internal error.", nil, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%08X", tt.code), func(t *testing.T) {
			raw := fakeScardErr{tt.text}
			err := error(newError(`connect to "Virtual PCD 00 01"`, tt.code, raw))

			// The sentinel that fits, and no other.
			for _, s := range sentinels {
				assert.Equal(t, s == tt.kind, errors.Is(err, s), "errors.Is(err, %v)", s)
			}
			// The scard error stays reachable.
			assert.ErrorIs(t, err, raw)
			var pe *Error
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tt.code, pe.Code)

			msg := err.Error()
			assert.Contains(t, msg, `pcsc: connect to "Virtual PCD 00 01": `)
			assert.Contains(t, msg, tt.text[:len(tt.text)-1])
			assert.NotContains(t, msg, "scard: ", "scard's prefix is noise mid-message")
			assert.Contains(t, msg, fmt.Sprintf("(0x%08X)", tt.code))
			if tt.hintIn != "" {
				assert.Contains(t, msg, tt.hintIn)
			}
		})
	}
}

func TestErrorMessageShape(t *testing.T) {
	err := newError("connect to the PC/SC service", codeNoService, fakeScardErr{"Service not available."})
	assert.Equal(t, "pcsc: connect to the PC/SC service: Service not available (0x8010001D): "+
		"is pcscd running? try: pcscd --foreground, or systemctl start pcscd.socket", err.Error())

	// Wrapped further, it still matches.
	outer := fmt.Errorf("list readers: %w", err)
	assert.ErrorIs(t, outer, reader.ErrServiceUnavailable)

	// Without an underlying error the sentinel supplies the text.
	bare := &Error{Op: "wait", Code: codeNoSmartcard, Kind: reader.ErrNoCard}
	assert.Equal(t, "pcsc: wait: reader: no card in the reader (0x8010000C)", bare.Error())
}
