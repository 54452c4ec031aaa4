package gp

import (
	"github.com/valuechip/valuechip/apdu"
)

// LOAD P1 values (GPCS §11.6.2.1, Table 11-58).
const (
	LoadMoreBlocks byte = 0x00
	LoadLastBlock  byte = 0x80
)

// MaxBlocks is the number of blocks P2 can number: '00' to 'FF' (GPCS
// §11.6.2.2, §11.11.2.2).
const MaxBlocks = 256

// DefaultLoadBlockSize leaves room in a short APDU (255 data bytes) for
// the secure channel's worst case: C-DECRYPTION pads 224 bytes to 240 and
// the C-MAC adds 8 (Amd D §6.2.4, §6.2.6).
const DefaultLoadBlockSize = 224

// LoadBlocks cuts a Load File into LOAD commands of at most blockSize
// bytes (GPCS §11.6): CLA '80', INS 'E8', P1 '00' for every block but the
// last, which has '80', P2 the block number from '00', Le '00' (the
// response is a single '00' byte, or a receipt under Delegated
// Management). blockSize < 1 means DefaultLoadBlockSize; it must not
// exceed 255, since LOAD is not sent in extended length here. A file that
// needs more than 256 blocks is an error wrapping ErrTooManyBlocks: use a
// larger block size. Each command's Data aliases loadFile.
func LoadBlocks(loadFile []byte, blockSize int) ([]apdu.Command, error) {
	if blockSize < 1 {
		blockSize = DefaultLoadBlockSize
	}
	if blockSize > apdu.MaxShortNc {
		return nil, errorf(ErrTooLong, "LOAD block size %d exceeds a short APDU's %d", blockSize, apdu.MaxShortNc)
	}
	if len(loadFile) == 0 {
		return nil, errorf(ErrMalformed, "empty load file")
	}
	n := (len(loadFile) + blockSize - 1) / blockSize
	if n > MaxBlocks {
		return nil, errorf(ErrTooManyBlocks, "load file of %d bytes needs %d blocks of %d", len(loadFile), n, blockSize)
	}
	cmds := make([]apdu.Command, n)
	for i := range cmds {
		end := min((i+1)*blockSize, len(loadFile))
		p1 := LoadMoreBlocks
		if i == n-1 {
			p1 = LoadLastBlock
		}
		cmds[i] = apdu.Command{CLA: CLA, INS: INSLoad, P1: p1, P2: byte(i), Data: loadFile[i*blockSize : end : end], Ne: apdu.MaxShortNe}
	}
	return cmds, nil
}

// BlockAssembler collects numbered blocks on the card side of LOAD or
// STORE DATA (GPCS §11.6.2.2, §11.11.2.2): the first block is '00', each
// next one increments P2 by one, and P1 b8 marks the last. A zero value
// accepts blocks up to a total of MaxSize bytes (0: no limit).
type BlockAssembler struct {
	// MaxSize bounds the assembled size; 0 means no limit.
	MaxSize int

	buf  []byte
	next int
	done bool
}

// Add appends one block with its P1 and P2 and reports whether it was the
// last (P1 b8). A block out of sequence wraps ErrSequence and resets the
// assembler, as GPCS requires the whole sequence to be restarted; a block
// beyond MaxSize wraps ErrTooLong.
func (a *BlockAssembler) Add(p1, p2 byte, block []byte) (last bool, err error) {
	if a.done {
		a.Reset()
	}
	if int(p2) != a.next {
		want := a.next
		a.Reset()
		return false, errorf(ErrSequence, "block %02X, expected %02X", p2, want)
	}
	if a.MaxSize > 0 && len(a.buf)+len(block) > a.MaxSize {
		a.Reset()
		return false, errorf(ErrTooLong, "blocks exceed %d bytes", a.MaxSize)
	}
	a.buf = append(a.buf, block...)
	a.next++
	if p1&0x80 != 0 {
		a.done = true
		return true, nil
	}
	if a.next >= MaxBlocks {
		a.Reset()
		return false, errorf(ErrTooManyBlocks, "block FF is not marked last")
	}
	return false, nil
}

// Bytes returns the assembled data once the last block arrived, else nil.
func (a *BlockAssembler) Bytes() []byte {
	if !a.done {
		return nil
	}
	return a.buf
}

// InProgress reports whether blocks were received and the last is still
// awaited.
func (a *BlockAssembler) InProgress() bool { return a.next > 0 && !a.done }

// Reset forgets every block.
func (a *BlockAssembler) Reset() { a.buf, a.next, a.done = nil, 0, false }
