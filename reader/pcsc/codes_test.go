//go:build cgo

package pcsc

import (
	"testing"

	"github.com/ebfe/scard"
	"github.com/stretchr/testify/assert"

	"github.com/valuechip/valuechip/reader"
)

// The pure-Go copies of PC/SC constants must agree with the C headers that
// scard was generated from.
func TestConstantsMatchScard(t *testing.T) {
	codes := map[uint32]scard.Error{
		codeCancelled:          scard.ErrCancelled,
		codeInvalidHandle:      scard.ErrInvalidHandle,
		codeUnknownReader:      scard.ErrUnknownReader,
		codeTimeout:            scard.ErrTimeout,
		codeSharingViolation:   scard.ErrSharingViolation,
		codeNoSmartcard:        scard.ErrNoSmartcard,
		codeProtoMismatch:      scard.ErrProtoMismatch,
		codeCommError:          scard.ErrCommError,
		codeNotTransacted:      scard.ErrNotTransacted,
		codeReaderUnavailable:  scard.ErrReaderUnavailable,
		codeNoService:          scard.ErrNoService,
		codeServiceStopped:     scard.ErrServiceStopped,
		codeNoReadersAvailable: scard.ErrNoReadersAvailable,
		codeUnresponsiveCard:   scard.ErrUnresponsiveCard,
		codeUnpoweredCard:      scard.ErrUnpoweredCard,
		codeResetCard:          scard.ErrResetCard,
		codeRemovedCard:        scard.ErrRemovedCard,
	}
	for ours, theirs := range codes {
		assert.Equal(t, uint32(theirs), ours, "%v", theirs)
	}
	flags := map[uint32]scard.StateFlag{
		stateUnaware:     scard.StateUnaware,
		stateIgnore:      scard.StateIgnore,
		stateChanged:     scard.StateChanged,
		stateUnknown:     scard.StateUnknown,
		stateUnavailable: scard.StateUnavailable,
		stateEmpty:       scard.StateEmpty,
		statePresent:     scard.StatePresent,
		stateMute:        scard.StateMute,
	}
	for ours, theirs := range flags {
		assert.Equal(t, uint32(theirs), ours)
	}
	assert.Equal(t, uint32(scard.ProtocolT0), pcscProtocol(reader.ProtocolT0))
	assert.Equal(t, uint32(scard.ProtocolT1), pcscProtocol(reader.ProtocolT1))
	assert.Equal(t, uint32(scard.ProtocolAny), pcscProtocol(reader.ProtocolUnknown))
	assert.Equal(t, reader.ProtocolT1, protocolOf(uint32(scard.ProtocolT1)))
}

func TestWrapScardError(t *testing.T) {
	err := wrap("list readers", scard.ErrNoReadersAvailable)
	assert.ErrorIs(t, err, scard.ErrNoReadersAvailable)
	assert.Contains(t, err.Error(), "(0x8010002E)")
	assert.Equal(t, codeNoReadersAvailable, codeOf(err))
}
