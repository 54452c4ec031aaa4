package vpcd

import "github.com/valuechip/valuechip/reader"

// protocolOf returns the protocol a card with this ATR is driven with: T=1
// if the ATR offers it, T=0 if T=0 is the only transmission protocol (ISO/IEC
// 7816-3 §8.2.3: without TD1 only T=0 is offered), and T=1 for anything it
// cannot parse, which is what vpcd reports for every exchange anyway
// (RecvPci->Protocol=1, vsmartcard.md §5). Only the interface-byte chain is
// walked; historical bytes and TCK are not checked.
func protocolOf(atr []byte) reader.Protocol {
	if len(atr) < 2 {
		return reader.ProtocolT1
	}
	var offered uint16 // bit T set when some TDi announces protocol T
	y := atr[1] >> 4   // Y1: which of TA1 TB1 TC1 TD1 follow T0
	i := 2
	for {
		for _, bit := range [...]byte{1, 2, 4} { // TAi, TBi, TCi
			if y&bit != 0 {
				i++
			}
		}
		if y&8 == 0 {
			break
		}
		if i >= len(atr) {
			return reader.ProtocolT1 // truncated
		}
		td := atr[i]
		i++
		offered |= 1 << (td & 0x0F)
		y = td >> 4
	}
	const t0, t1 = 1 << 0, 1 << 1
	switch {
	case offered&t1 != 0:
		return reader.ProtocolT1
	case offered&^(1<<15) == 0, offered&t0 != 0:
		// No TDi, or T=0 alongside only global bytes (T=15).
		return reader.ProtocolT0
	}
	return reader.ProtocolT1
}
