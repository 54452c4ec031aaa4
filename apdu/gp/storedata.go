package gp

import (
	"crypto/aes"
	"crypto/cipher"

	"github.com/valuechip/valuechip/apdu"
)

// STORE DATA P1 bits (GPCS §11.11.2.1, Table 11-75).
const (
	StoreLastBlock byte = 0x80 // b8: last block

	StoreEncMask         byte = 0x60 // b7b6: encryption information
	StoreEncNone         byte = 0x00 // no encryption information
	StoreEncAppDependent byte = 0x20 // application dependent encryption
	StoreEncAll          byte = 0x60 // all DGIs encrypted under the data encryption key

	StoreFormatMask   byte = 0x18 // b5b4: data structure
	StoreFormatNone   byte = 0x00 // no general data structure
	StoreFormatDGI    byte = 0x08 // DGI format (EMV CPS)
	StoreFormatBERTLV byte = 0x10 // BER-TLV format

	StoreResponseExpected byte = 0x01 // b1: case 4, response data expected (GP 2.3)
)

// StoreDataCommands numbers blocks as consecutive STORE DATA commands
// (GPCS §11.11): CLA '80', INS 'E2', P1 = p1 with b8 set on the last block
// only, P2 the block number from '00'; Le '00' when p1 has
// StoreResponseExpected, none otherwise. More than 256 blocks wrap
// ErrTooManyBlocks, a block longer than 255 bytes ErrTooLong. Data aliases
// the blocks.
func StoreDataCommands(p1 byte, blocks ...[]byte) ([]apdu.Command, error) {
	if len(blocks) == 0 {
		return nil, errorf(ErrMalformed, "STORE DATA without blocks")
	}
	if len(blocks) > MaxBlocks {
		return nil, errorf(ErrTooManyBlocks, "%d STORE DATA blocks", len(blocks))
	}
	cmds := make([]apdu.Command, len(blocks))
	for i, b := range blocks {
		if len(b) > apdu.MaxShortNc {
			return nil, errorf(ErrTooLong, "STORE DATA block %d of %d bytes", i, len(b))
		}
		c := apdu.Command{CLA: CLA, INS: INSStoreData, P1: p1 &^ StoreLastBlock, P2: byte(i), Data: b}
		if i == len(blocks)-1 {
			c.P1 |= StoreLastBlock
		}
		if p1&StoreResponseExpected != 0 {
			c.Ne = apdu.MaxShortNe
		}
		cmds[i] = c
	}
	return cmds, nil
}

// DGI is one Data Grouping Identifier object (EMV CPS v1.1 §4.3.2, used
// by GPCS §11.11.2.3 with P1 StoreFormatDGI): a two-byte tag, a length
// of one byte ('00'-'FE') or 'FF' followed by two bytes, and the data.
type DGI struct {
	Tag  uint16
	Data []byte
}

// MaxDGILen is the longest DGI value the three-byte length can express.
const MaxDGILen = 0xFFFF

// EncodeDGIs encodes the DGIs back to back.
func EncodeDGIs(dgis ...DGI) ([]byte, error) {
	var out []byte
	for _, d := range dgis {
		n := len(d.Data)
		out = append(out, byte(d.Tag>>8), byte(d.Tag))
		switch {
		case n < 0xFF:
			out = append(out, byte(n))
		case n <= MaxDGILen:
			out = append(out, 0xFF, byte(n>>8), byte(n))
		default:
			return nil, errorf(ErrTooLong, "DGI %04X of %d bytes", d.Tag, n)
		}
		out = append(out, d.Data...)
	}
	return out, nil
}

// ParseDGIs decodes a sequence of DGIs. Data aliases b.
func ParseDGIs(b []byte) ([]DGI, error) {
	var out []DGI
	for off := 0; off < len(b); {
		if len(b)-off < 3 {
			return nil, errorf(ErrMalformed, "DGI header truncated at offset %d", off)
		}
		d := DGI{Tag: uint16(b[off])<<8 | uint16(b[off+1])}
		n, hdr := int(b[off+2]), 3
		if b[off+2] == 0xFF {
			if len(b)-off < 5 {
				return nil, errorf(ErrMalformed, "DGI %04X length truncated", d.Tag)
			}
			n, hdr = int(b[off+3])<<8|int(b[off+4]), 5
		}
		start := off + hdr
		if len(b)-start < n {
			return nil, errorf(ErrMalformed, "DGI %04X needs %d bytes, %d left", d.Tag, n, len(b)-start)
		}
		d.Data = b[start : start+n : start+n]
		out = append(out, d)
		off = start + n
	}
	return out, nil
}

// SealDGI encrypts a DGI's data for STORE DATA with P1 StoreEncAll, as this
// chip defines it (docs/gp.md): the data is padded with '80' and '00' bytes
// to a multiple of 16 (ISO/IEC 9797-1 method 2; the padding is always
// added) and encrypted with AES-CBC under the static Key-DEK with a zero
// ICV (the sensitive data encryption of Amd D §6.2.8).
func SealDGI(dek []byte, d DGI) (DGI, error) {
	block, err := aes.NewCipher(dek)
	if err != nil {
		return DGI{}, errorf(ErrBadKey, "DEK of %d bytes", len(dek))
	}
	n := (len(d.Data)/aes.BlockSize + 1) * aes.BlockSize
	buf := make([]byte, n)
	copy(buf, d.Data)
	buf[len(d.Data)] = 0x80
	cipher.NewCBCEncrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(buf, buf)
	return DGI{Tag: d.Tag, Data: buf}, nil
}

// OpenDGI reverses SealDGI on the card side. A ciphertext that is not whole
// blocks or whose padding is wrong wraps ErrMalformed. The returned data is
// a fresh slice.
func OpenDGI(dek []byte, d DGI) (DGI, error) {
	block, err := aes.NewCipher(dek)
	if err != nil {
		return DGI{}, errorf(ErrBadKey, "DEK of %d bytes", len(dek))
	}
	if len(d.Data) == 0 || len(d.Data)%aes.BlockSize != 0 {
		return DGI{}, errorf(ErrMalformed, "encrypted DGI %04X of %d bytes", d.Tag, len(d.Data))
	}
	buf := make([]byte, len(d.Data))
	cipher.NewCBCDecrypter(block, make([]byte, aes.BlockSize)).CryptBlocks(buf, d.Data)
	// The command carrying the DGI is MACed by the secure channel, so a
	// padding check that leaks timing gives an attacker nothing to adapt.
	end := len(buf) - 1
	for end >= len(buf)-aes.BlockSize && buf[end] == 0x00 {
		end--
	}
	if end < len(buf)-aes.BlockSize || buf[end] != 0x80 {
		clear(buf)
		return DGI{}, errorf(ErrMalformed, "encrypted DGI %04X has bad padding", d.Tag)
	}
	clear(buf[end:])
	return DGI{Tag: d.Tag, Data: buf[:end:end]}, nil
}
