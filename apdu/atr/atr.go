// Package atr decodes, explains and builds answers-to-reset (ISO/IEC 7816-3
// §8), including the historical bytes of ISO/IEC 7816-4 §8.1.1 and the ATR a
// PC/SC reader synthesises for a contactless card (PC/SC Part 3 §3.1.3.2.3).
//
// The bytes handled here are the ATR as a PC/SC stack reports it: already
// decoded from the line, so an inverse-convention card shows TS = 3F and the
// other bytes with their logical values.
package atr

import (
	"errors"
	"fmt"
)

// Errors. Parse wraps them with the position and values involved.
var (
	// ErrBadTS reports a first byte that is neither 3B nor 3F.
	ErrBadTS = errors.New("atr: TS is neither 3B (direct) nor 3F (inverse convention)")
	// ErrTruncated reports an ATR (or historical bytes) shorter than its
	// own format bytes announce.
	ErrTruncated = errors.New("atr: truncated")
	// ErrChecksum reports a TCK that does not make the XOR of T0..TCK zero.
	ErrChecksum = errors.New("atr: TCK check byte mismatch")
	// ErrTrailing reports bytes after the end of the ATR.
	ErrTrailing = errors.New("atr: bytes after the end of the ATR")
	// ErrInvalid reports an ATR that cannot be encoded.
	ErrInvalid = errors.New("atr: cannot encode")
)

// Initial characters (ISO/IEC 7816-3 §8.2.1).
const (
	Direct  byte = 0x3B // direct convention: high level is 1, LSB first
	Inverse byte = 0x3F // inverse convention: low level is 1, MSB first
)

// MaxLen is the longest ATR ISO/IEC 7816-3 §8.1 allows: TS and at most 32
// further characters.
const MaxLen = 33

// Group holds the interface bytes of one level i: TAi, TBi, TCi and TDi
// (ISO/IEC 7816-3 §8.2.3). A byte is present iff its Has flag is set. The
// high nibble of TD (presence of the next level) is recomputed from the next
// Group when encoding; its low nibble is the protocol type T.
type Group struct {
	TA, TB, TC, TD             byte
	HasTA, HasTB, HasTC, HasTD bool
}

// y returns the presence nibble that announces this group: b1 TA, b2 TB,
// b3 TC, b4 TD (the high nibble of T0 or of the previous TD).
func (g Group) y() byte {
	var y byte
	if g.HasTA {
		y |= 1
	}
	if g.HasTB {
		y |= 2
	}
	if g.HasTC {
		y |= 4
	}
	if g.HasTD {
		y |= 8
	}
	return y
}

// Protocol returns the protocol type T announced by TD, if present.
func (g Group) Protocol() (int, bool) {
	if !g.HasTD {
		return 0, false
	}
	return int(g.TD & 0x0F), true
}

// ATR is a decoded answer-to-reset.
type ATR struct {
	TS         byte
	Groups     []Group // Groups[0] holds TA1..TD1, Groups[1] TA2..TD2, ...
	Historical []byte  // T1..TK
	TCK        byte    // check byte as received; meaningful when HasTCK
	HasTCK     bool
	Extra      []byte // bytes after the ATR; only set with ErrTrailing

	raw []byte // the input of Parse, for String and Describe
}

// Parse decodes an ATR. Structural errors (bad TS, missing bytes) return a
// nil ATR. A wrong TCK (ErrChecksum) or bytes after the end (ErrTrailing)
// return the decoded ATR together with the error, so that tools can still
// show what the card said; TCKValid reports the checksum state.
// The returned slices alias b.
func Parse(b []byte) (*ATR, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes, TS and T0 are mandatory", ErrTruncated, len(b))
	}
	a := &ATR{TS: b[0], raw: b}
	if a.TS != Direct && a.TS != Inverse {
		return nil, fmt.Errorf("%w: %02X", ErrBadTS, a.TS)
	}
	// T0 (§8.2.2): Y1 in the high nibble, K in the low nibble.
	y, k := b[1]>>4, int(b[1]&0x0F)
	i := 2
	// Each TDi announces level i+1 (§8.2.3); every level has at least one
	// byte, so the loop is bounded by the input length.
	for level := 1; y != 0; level++ {
		var g Group
		for bit, name := range [4]string{"TA", "TB", "TC", "TD"} {
			if y&(1<<bit) == 0 {
				continue
			}
			if i >= len(b) {
				return nil, fmt.Errorf("%w: %s%d announced but the ATR ends after %d bytes", ErrTruncated, name, level, len(b))
			}
			c := b[i]
			i++
			switch bit {
			case 0:
				g.TA, g.HasTA = c, true
			case 1:
				g.TB, g.HasTB = c, true
			case 2:
				g.TC, g.HasTC = c, true
			case 3:
				g.TD, g.HasTD = c, true
			}
		}
		a.Groups = append(a.Groups, g)
		y = 0
		if g.HasTD {
			y = g.TD >> 4
		}
	}
	if len(b)-i < k {
		return nil, fmt.Errorf("%w: T0 announces %d historical bytes, %d present", ErrTruncated, k, len(b)-i)
	}
	a.Historical = b[i : i+k : i+k]
	i += k
	if a.NeedsTCK() {
		if i >= len(b) {
			return nil, fmt.Errorf("%w: TCK missing (required because a protocol other than T=0 is offered)", ErrTruncated)
		}
		a.TCK, a.HasTCK = b[i], true
		i++
	}
	var errs []error
	if a.HasTCK && !a.TCKValid() {
		errs = append(errs, fmt.Errorf("%w: TCK is %02X, the XOR of T0..TK is %02X", ErrChecksum, a.TCK, a.checksum()))
	}
	if i < len(b) {
		a.Extra = b[i:]
		errs = append(errs, fmt.Errorf("%w: % X", ErrTrailing, a.Extra))
	}
	a.raw = b[:i]
	return a, errors.Join(errs...)
}

// T0 returns the format byte: Y1 (presence of TA1..TD1) and K (the number of
// historical bytes), ISO/IEC 7816-3 §8.2.2.
func (a *ATR) T0() byte {
	var y byte
	if len(a.Groups) > 0 {
		y = a.Groups[0].y()
	}
	return y<<4 | byte(len(a.Historical)&0x0F)
}

// NeedsTCK reports whether the ATR must end with TCK: iff some TDi announces
// a protocol other than T=0 (ISO/IEC 7816-3 §8.2.5; T=15 counts).
func (a *ATR) NeedsTCK() bool {
	for _, g := range a.Groups {
		if t, ok := g.Protocol(); ok && t != 0 {
			return true
		}
	}
	return false
}

// TCKValid reports whether the check byte is as ISO/IEC 7816-3 §8.2.5
// requires: present and making the XOR of T0..TCK zero when NeedsTCK, absent
// otherwise.
func (a *ATR) TCKValid() bool {
	if !a.NeedsTCK() {
		return !a.HasTCK
	}
	return a.HasTCK && a.TCK == a.checksum()
}

// checksum is the TCK the ATR should carry: the XOR of T0 through the last
// historical byte.
func (a *ATR) checksum() byte {
	body, err := a.body()
	if err != nil {
		return 0
	}
	var x byte
	for _, c := range body[1:] {
		x ^= c
	}
	return x
}

// body encodes TS..TK, recomputing T0 and the high nibble of every TD from
// the groups present, so the bytes cannot contradict each other.
func (a *ATR) body() ([]byte, error) {
	if a.TS != Direct && a.TS != Inverse {
		return nil, fmt.Errorf("%w: %w: %02X", ErrInvalid, ErrBadTS, a.TS)
	}
	if len(a.Historical) > 15 {
		return nil, fmt.Errorf("%w: %d historical bytes, T0 can announce at most 15", ErrInvalid, len(a.Historical))
	}
	out := make([]byte, 0, 2+4*len(a.Groups)+len(a.Historical)+1)
	out = append(out, a.TS, a.T0())
	for i, g := range a.Groups {
		level := i + 1
		if g.y() == 0 {
			return nil, fmt.Errorf("%w: level %d has no interface bytes", ErrInvalid, level)
		}
		last := i == len(a.Groups)-1
		if !last && !g.HasTD {
			return nil, fmt.Errorf("%w: level %d is followed by level %d but has no TD%d", ErrInvalid, level, level+1, level)
		}
		if g.HasTA {
			out = append(out, g.TA)
		}
		if g.HasTB {
			out = append(out, g.TB)
		}
		if g.HasTC {
			out = append(out, g.TC)
		}
		if g.HasTD {
			td := g.TD & 0x0F
			if !last {
				td |= a.Groups[i+1].y() << 4
			}
			out = append(out, td)
		}
	}
	return append(out, a.Historical...), nil
}

// Bytes encodes the ATR. T0, the presence nibbles of the TD bytes and TCK
// are computed from the fields (the TCK field is ignored), so a Parse
// followed by Bytes reproduces any well-formed ATR exactly.
func (a *ATR) Bytes() ([]byte, error) {
	out, err := a.body()
	if err != nil {
		return nil, err
	}
	if a.NeedsTCK() {
		out = append(out, a.checksum())
	}
	return out, nil
}

// String returns the ATR in spaced hex: the bytes Parse received (without
// Extra), or for an ATR built in code its encoding.
func (a *ATR) String() string {
	b := a.raw
	if b == nil {
		var err error
		if b, err = a.Bytes(); err != nil {
			return "invalid ATR: " + err.Error()
		}
	}
	return fmt.Sprintf("% X", b)
}

// Protocols returns the protocol types offered, in the order the TD bytes
// announce them, without repeats and without T=15 (which only marks global
// interface bytes). The first one is the default protocol. Without TD1 the
// card offers T=0 only (ISO/IEC 7816-3 §8.2.3).
func (a *ATR) Protocols() []int {
	var out []int
	var seen [16]bool
	for _, g := range a.Groups {
		if t, ok := g.Protocol(); ok && t != 15 && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return []int{0}
	}
	return out
}

// Clock rate conversion integers Fi with the maximum clock frequency in MHz
// (ISO/IEC 7816-3 §8.3, Table 7), indexed by the high nibble of TA1; a zero
// Fi marks an RFU code.
var fiTable = [16]struct {
	fi   int
	fmax float64
}{
	{372, 4}, {372, 5}, {558, 6}, {744, 8}, {1116, 12}, {1488, 16}, {1860, 20}, {}, {},
	{512, 5}, {768, 7.5}, {1024, 10}, {1536, 15}, {2048, 20}, {}, {},
}

// Baud rate adjustment integers Di (ISO/IEC 7816-3 §8.3, Table 8), indexed
// by the low nibble of TA1; zero marks an RFU code.
var diTable = [16]int{0, 1, 2, 4, 8, 16, 32, 64, 12, 20, 0, 0, 0, 0, 0, 0}

// group returns level i (1-based) or an empty group.
func (a *ATR) group(i int) Group {
	if i < 1 || i > len(a.Groups) {
		return Group{}
	}
	return a.Groups[i-1]
}

// Fi returns the clock rate conversion integer and the maximum clock
// frequency in MHz coded in TA1, or the defaults 372 and 5 MHz when TA1 is
// absent (ISO/IEC 7816-3 §8.3). An RFU code gives 0, 0.
func (a *ATR) Fi() (fi int, fmaxMHz float64) {
	g := a.group(1)
	if !g.HasTA {
		return 372, 5
	}
	e := fiTable[g.TA>>4]
	return e.fi, e.fmax
}

// Di returns the baud rate adjustment integer coded in TA1, 1 when TA1 is
// absent, or 0 for an RFU code (ISO/IEC 7816-3 §8.3).
func (a *ATR) Di() int {
	g := a.group(1)
	if !g.HasTA {
		return 1
	}
	return diTable[g.TA&0x0F]
}

// ExtraGuardTime returns N from TC1 (ISO/IEC 7816-3 §8.3): extra ETUs added
// between characters sent to the card. 255 means the minimum guard time
// (12 ETU for T=0, 11 ETU for T=1). Absent TC1 means 0.
func (a *ATR) ExtraGuardTime() int { return int(a.group(1).TC) }

// SpecificMode is the content of TA2 (ISO/IEC 7816-3 §8.3): its presence
// means the card is in specific mode and uses Protocol right after the ATR,
// without PPS.
type SpecificMode struct {
	Protocol int
	// CanChange is b8 = 0: the card can switch to negotiable mode after a
	// warm reset.
	CanChange bool
	// Implicit is b5 = 1: transmission parameters are implicitly known
	// rather than those of TA1.
	Implicit bool
}

// SpecificMode decodes TA2 when present.
func (a *ATR) SpecificMode() (SpecificMode, bool) {
	g := a.group(2)
	if !g.HasTA {
		return SpecificMode{}, false
	}
	return SpecificMode{
		Protocol:  int(g.TA & 0x0F),
		CanChange: g.TA&0x80 == 0,
		Implicit:  g.TA&0x10 != 0,
	}, true
}

// WI returns the waiting time integer for T=0 from TC2, 10 when absent
// (ISO/IEC 7816-3 §10.2). A coded 0 is RFU and returned as is.
func (a *ATR) WI() int {
	g := a.group(2)
	if !g.HasTC {
		return 10
	}
	return int(g.TC)
}

// T1Params are the T=1 parameters of ISO/IEC 7816-3 §11.4, each taken from
// the first TAi/TBi/TCi (i > 2) following a TD(i-1) that announces T=1.
type T1Params struct {
	IFSC int  // maximum information field size of the card, default 32
	BWI  int  // block waiting time integer, default 4
	CWI  int  // character waiting time integer, default 13
	CRC  bool // error detection code: CRC when true, LRC (default) otherwise
}

// T1 returns the T=1 parameters, with the defaults for those not coded.
func (a *ATR) T1() T1Params {
	p := T1Params{IFSC: 32, BWI: 4, CWI: 13}
	var ta, tb, tc bool
	for i := 3; i <= len(a.Groups); i++ {
		if t, _ := a.group(i - 1).Protocol(); t != 1 {
			continue
		}
		g := a.group(i)
		if g.HasTA && !ta {
			ta, p.IFSC = true, int(g.TA)
		}
		if g.HasTB && !tb {
			tb, p.BWI, p.CWI = true, int(g.TB>>4), int(g.TB&0x0F)
		}
		if g.HasTC && !tc {
			tc, p.CRC = true, g.TC&1 == 1
		}
	}
	return p
}

// IsContactless reports the shape a PC/SC reader gives the ATR of an ISO
// 14443 card (PC/SC Part 3 §3.1.3.2.3): TD1 = 80, TD2 = 01 and no other
// interface bytes.
func (a *ATR) IsContactless() bool {
	if a.TS != Direct || len(a.Groups) != 2 {
		return false
	}
	g1, g2 := a.Groups[0], a.Groups[1]
	return g1.y() == 8 && g1.TD == 0x80 && g2.y() == 8 && g2.TD&0x0F == 0x01
}

// Params describes an ATR by what it means; Build turns it into bytes.
type Params struct {
	// Inverse selects TS = 3F instead of 3B.
	Inverse bool
	// TA1 codes Fi/Di (e.g. 0x13: Fi 372, Di 4); 0 leaves TA1 out, which
	// means the default 0x11.
	TA1 byte
	// TC1 is the extra guard time N; 0 leaves TC1 out.
	TC1 byte
	// Protocols are the protocol types of TD1, TD2, ... in order. Nil, or
	// just {0}, leaves the TD bytes out: T=0 only.
	Protocols []int
	// Historical holds at most 15 historical bytes.
	Historical []byte
}

// Build returns the ATR described by p, with TCK when required.
func Build(p Params) ([]byte, error) {
	a := &ATR{TS: Direct, Historical: p.Historical}
	if p.Inverse {
		a.TS = Inverse
	}
	var g1 Group
	if p.TA1 != 0 {
		g1.TA, g1.HasTA = p.TA1, true
	}
	if p.TC1 != 0 {
		g1.TC, g1.HasTC = p.TC1, true
	}
	protos := p.Protocols
	if len(protos) == 1 && protos[0] == 0 {
		protos = nil
	}
	groups := []Group{g1}
	for i, t := range protos {
		if t < 0 || t > 15 {
			return nil, fmt.Errorf("%w: protocol T=%d", ErrInvalid, t)
		}
		if i == len(groups) {
			groups = append(groups, Group{})
		}
		groups[i].TD, groups[i].HasTD = byte(t), true
	}
	if groups[0].y() != 0 {
		a.Groups = groups
	}
	return a.Bytes()
}

// Contactless returns the ATR a PC/SC reader presents for an ISO 14443-4
// card with the given historical bytes (the ATS historical bytes for type A,
// or the ATQB-derived bytes for type B): 3B 8n 80 01 T1..Tn TCK, PC/SC Part 3
// §3.1.3.2.3. At most 15 historical bytes fit.
func Contactless(historical []byte) ([]byte, error) {
	return Build(Params{Protocols: []int{0, 1}, Historical: historical})
}
