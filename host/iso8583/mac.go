package iso8583

import (
	"crypto/subtle"
	"fmt"

	"github.com/moov-io/iso8583"
	"github.com/valuechip/valuechip/apdu/cmac"
	"github.com/valuechip/valuechip/apdu/scp03"
)

// Key is an AES key; it prints as its key check value only.
type Key = scp03.Key

// macField returns the MAC field of msg: DE 128 when any field above 64 is
// present (the message has a secondary bitmap), DE 64 otherwise — the last
// bit of the last bitmap, ISO 8583:1987.
func macField(msg *iso8583.Message) int {
	for id := range msg.GetFields() {
		if id > 64 && id != DEMAC2 {
			return DEMAC2
		}
	}
	return DEMAC
}

// ComputeMAC returns the message MAC of docs/iso8583.md §6: the first 8 bytes
// of AES-CMAC(key, input), input being the packed message from the first MTI
// byte up to, excluding, the MAC field (the MAC is always the last field).
func ComputeMAC(key Key, input []byte) ([MACLen]byte, error) {
	var out [MACLen]byte
	if err := key.Check(); err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	sum, err := cmac.Sum(key, input)
	if err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	copy(out[:], sum[:MACLen])
	return out, nil
}

// SetMAC sets the MAC field of msg (DE 64, or DE 128 with a secondary
// bitmap), packs it and returns the packed bytes with the MAC in place.
func SetMAC(msg *iso8583.Message, key Key) ([]byte, error) {
	msg.UnsetField(DEMAC)
	msg.UnsetField(DEMAC2)
	id := macField(msg)
	if err := msg.BinaryField(id, make([]byte, MACLen)); err != nil {
		return nil, fmt.Errorf("iso8583: set DE %d: %w", id, err)
	}
	raw, err := msg.Pack()
	if err != nil {
		return nil, fmt.Errorf("iso8583: pack: %w", err)
	}
	mac, err := ComputeMAC(key, raw[:len(raw)-MACLen])
	if err != nil {
		return nil, err
	}
	copy(raw[len(raw)-MACLen:], mac[:])
	if err := msg.BinaryField(id, mac[:]); err != nil {
		return nil, fmt.Errorf("iso8583: set DE %d: %w", id, err)
	}
	return raw, nil
}

// VerifyMAC checks the MAC of raw, a message that Unpack accepted as msg.
// It returns ErrNoMAC if msg has no MAC field and ErrMAC if the MAC is wrong;
// the comparison is constant time.
func VerifyMAC(msg *iso8583.Message, raw []byte, key Key) error {
	fields := msg.GetFields()
	if _, ok := fields[macField(msg)]; !ok || len(raw) < MACLen {
		return ErrNoMAC
	}
	want, err := ComputeMAC(key, raw[:len(raw)-MACLen])
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(want[:], raw[len(raw)-MACLen:]) != 1 {
		return ErrMAC
	}
	return nil
}
