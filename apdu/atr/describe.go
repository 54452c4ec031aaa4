package atr

import (
	"fmt"
	"strings"

	"github.com/valuechip/valuechip/apdu"
)

// Describe explains the ATR byte by byte, one line per byte and indented
// lines for what the historical bytes contain. It is meant for people
// (traces, the CLI), not for parsing.
func (a *ATR) Describe() string {
	var d describer
	d.line(0, "ATR: %s", a)
	n := len(a.raw)
	if a.raw == nil {
		if b, err := a.Bytes(); err == nil {
			n = len(b)
		}
	}
	if n > MaxLen {
		d.line(0, "warning: %d bytes, longer than the %d ISO/IEC 7816-3 §8.1 allows", n, MaxLen)
	}
	switch a.TS {
	case Direct:
		d.line(0, "TS  = 3B  direct convention")
	case Inverse:
		d.line(0, "TS  = 3F  inverse convention")
	default:
		d.line(0, "TS  = %02X  not a valid initial character", a.TS)
	}
	t0 := a.T0()
	d.line(0, "T0  = %02X  %s; K = %d historical bytes", t0, presence(t0>>4, 1), len(a.Historical))

	for i, g := range a.Groups {
		level := i + 1
		prev := -1 // protocol of TD(i-1), which gives level i its meaning
		if level > 1 {
			prev = int(a.Groups[i-1].TD & 0x0F)
		}
		if g.HasTA {
			d.line(0, "%-3s = %02X  %s", fmt.Sprintf("TA%d", level), g.TA, explainTA(a, level, prev, g.TA))
		}
		if g.HasTB {
			d.line(0, "%-3s = %02X  %s", fmt.Sprintf("TB%d", level), g.TB, explainTB(level, prev, g.TB))
		}
		if g.HasTC {
			d.line(0, "%-3s = %02X  %s", fmt.Sprintf("TC%d", level), g.TC, explainTC(level, prev, g.TC))
		}
		if g.HasTD {
			t := int(g.TD & 0x0F)
			what := fmt.Sprintf("protocol T=%d", t)
			if t == 15 {
				what = "T=15: global interface bytes follow"
			}
			d.line(0, "%-3s = %02X  %s; %s", fmt.Sprintf("TD%d", level), g.TD, presence(g.TD>>4, level+1), what)
		}
	}

	if len(a.Historical) == 0 {
		d.line(0, "no historical bytes")
	} else {
		d.line(0, "historical bytes (%d): % X", len(a.Historical), a.Historical)
		h, err := ParseHistorical(a.Historical)
		d.historical(h)
		if err != nil {
			d.line(1, "error: %v", err)
		}
	}

	switch {
	case a.HasTCK && a.TCKValid():
		d.line(0, "TCK = %02X  correct", a.TCK)
	case a.HasTCK:
		d.line(0, "TCK = %02X  WRONG, should be %02X", a.TCK, a.checksum())
	case a.NeedsTCK():
		d.line(0, "TCK missing although a protocol other than T=0 is offered")
	default:
		d.line(0, "no TCK (only T=0 offered)")
	}
	if len(a.Extra) > 0 {
		d.line(0, "%d unexpected bytes after the ATR: % X", len(a.Extra), a.Extra)
	}

	protos := a.Protocols()
	names := make([]string, len(protos))
	for i, t := range protos {
		names[i] = fmt.Sprintf("T=%d", t)
	}
	d.line(0, "protocols: %s (default T=%d)", strings.Join(names, ", "), protos[0])
	if a.IsContactless() {
		d.line(0, "contactless card as presented by a PC/SC reader (PC/SC Part 3: TD1 = 80, TD2 = 01)")
	}
	return d.String()
}

type describer struct{ strings.Builder }

func (d *describer) line(indent int, format string, args ...any) {
	d.WriteString(strings.Repeat("  ", indent))
	fmt.Fprintf(d, format, args...)
	d.WriteByte('\n')
}

// presence spells out a Y nibble announcing the interface bytes of level.
func presence(y byte, level int) string {
	if y == 0 {
		return fmt.Sprintf("Y%d = 0000: no interface bytes follow", level)
	}
	var names []string
	for bit, n := range [4]string{"TA", "TB", "TC", "TD"} {
		if y&(1<<bit) != 0 {
			names = append(names, fmt.Sprintf("%s%d", n, level))
		}
	}
	verb := "follow"
	if len(names) == 1 {
		verb = "follows"
	}
	return fmt.Sprintf("Y%d = %04b: %s %s", level, y, strings.Join(names, ", "), verb)
}

func explainTA(a *ATR, level, prev int, v byte) string {
	switch {
	case level == 1:
		fi, fmax := a.Fi()
		di := a.Di()
		if fi == 0 || di == 0 {
			return fmt.Sprintf("Fi/Di code with an RFU value (Fi index %d, Di index %d)", v>>4, v&0x0F)
		}
		return fmt.Sprintf("Fi = %d, Di = %d: %g clock cycles per ETU; clock up to %g MHz, i.e. up to %.0f bit/s",
			fi, di, float64(fi)/float64(di), fmax, fmax*1e6*float64(di)/float64(fi))
	case level == 2:
		m, _ := a.SpecificMode()
		change := "the card can change to negotiable mode"
		if !m.CanChange {
			change = "the card cannot change mode"
		}
		params := "Fi/Di of TA1 apply"
		if m.Implicit {
			params = "implicit transmission parameters"
		}
		return fmt.Sprintf("specific mode, protocol T=%d; %s; %s", m.Protocol, change, params)
	case prev == 1:
		if v == 0x00 || v == 0xFF {
			return fmt.Sprintf("T=1 IFSC with RFU value %d", v)
		}
		return fmt.Sprintf("T=1 IFSC = %d bytes", v)
	case prev == 15:
		return "global: " + clockAndClass(v)
	}
	return fmt.Sprintf("specific to T=%d", prev)
}

func clockAndClass(v byte) string {
	stop := [4]string{"clock stop not supported", "clock stop in state L", "clock stop in state H", "clock stop in either state"}[v>>6]
	var classes []string
	for bit, c := range [3]string{"A (5 V)", "B (3 V)", "C (1.8 V)"} {
		if v&(1<<bit) != 0 {
			classes = append(classes, c)
		}
	}
	if len(classes) == 0 {
		return stop + "; no operating class indicated"
	}
	return stop + "; class " + strings.Join(classes, ", ")
}

func explainTB(level, prev int, v byte) string {
	switch {
	case level == 1:
		if v == 0 {
			return "no programming voltage (deprecated VPP byte)"
		}
		return "programming voltage and current (deprecated since ISO/IEC 7816-3:2006, ignored)"
	case level == 2:
		return "programming voltage PI2 (deprecated, ignored)"
	case prev == 1:
		return fmt.Sprintf("T=1 BWI = %d, CWI = %d", v>>4, v&0x0F)
	case prev == 15:
		return fmt.Sprintf("global: standard or proprietary use of contact C6 (SPU %02X)", v)
	}
	return fmt.Sprintf("specific to T=%d", prev)
}

func explainTC(level, prev int, v byte) string {
	switch {
	case level == 1:
		if v == 0xFF {
			return "N = 255: minimum guard time (12 ETU for T=0, 11 ETU for T=1)"
		}
		return fmt.Sprintf("extra guard time N = %d ETU", v)
	case level == 2:
		return fmt.Sprintf("T=0 waiting time integer WI = %d (waiting time 960 x WI x Fi clock cycles)", v)
	case prev == 1:
		if v&1 == 1 {
			return "T=1 error detection code: CRC"
		}
		return "T=1 error detection code: LRC"
	}
	return fmt.Sprintf("specific to T=%d", prev)
}

func (d *describer) historical(h *Historical) {
	if len(h.Raw) == 0 {
		return
	}
	switch h.Category {
	case CategoryStatusLast:
		d.line(1, "category 00: compact-TLV objects, status indicator in the last 3 bytes")
	case CategoryDIR:
		d.line(1, "category 10: DIR data reference % X", h.Data)
		return
	case CategoryCompactTLV:
		d.line(1, "category 80: compact-TLV objects")
	default:
		kind := "proprietary"
		if h.Category > 0x80 && h.Category <= 0x8F {
			kind = "RFU"
		}
		d.line(1, "category %02X: %s format: % X%s", h.Category, kind, h.Raw, quoted(h.Raw))
		return
	}
	if h.Storage != nil {
		d.line(1, "PC/SC storage card: RID A0 00 00 03 06, standard %02X (%s), card name %04X (%s)",
			h.Storage.Standard, storageStandard(h.Storage.Standard), h.Storage.Name, storageName(h.Storage.Name))
	}
	for _, o := range h.Objects {
		d.object(o, h.Storage != nil)
	}
	if h.Category == CategoryStatusLast && h.Status != nil {
		d.line(1, "status indicator: %s", status(h.Status))
	}
}

func (d *describer) object(o CompactTLV, storage bool) {
	head := fmt.Sprintf("%X%X", o.Tag, len(o.Value))
	if len(o.Value) > 0 {
		head += fmt.Sprintf(" % X", o.Value)
	}
	if o.Tag == TagApplicationID && storage {
		d.line(1, "4F %02X % X  application identifier (PC/SC storage card)", len(o.Value), o.Value)
		return
	}
	switch o.Tag {
	case TagCountryCode:
		d.line(1, "%s  country code", head)
	case TagIssuerID:
		d.line(1, "%s  issuer identification number", head)
	case TagServiceData:
		d.line(1, "%s  card service data", head)
		if len(o.Value) > 0 {
			d.serviceData(o.Value[0])
		}
	case TagInitialAccess:
		d.line(1, "%s  initial access data", head)
	case TagIssuerData:
		d.line(1, "%s  card issuer's data%s", head, quoted(o.Value))
	case TagPreIssuing:
		d.line(1, "%s  pre-issuing data%s", head, quoted(o.Value))
	case TagCapabilities:
		d.line(1, "%s  card capabilities", head)
		d.capabilities(Capabilities(o.Value))
	case TagStatus:
		d.line(1, "%s  status indicator: %s", head, status(o.Value))
	case TagApplicationID:
		d.line(1, "%s  application identifier", head)
	default:
		d.line(1, "%s  compact-TLV tag %X (unknown)", head, o.Tag)
	}
}

func (d *describer) serviceData(v byte) {
	var sel []string
	if v&0x80 != 0 {
		sel = append(sel, "by full DF name")
	}
	if v&0x40 != 0 {
		sel = append(sel, "by partial DF name")
	}
	if len(sel) > 0 {
		d.line(2, "application selection %s", strings.Join(sel, " and "))
	}
	if v&0x20 != 0 {
		d.line(2, "BER-TLV data objects available in EF.DIR")
	}
	if v&0x10 != 0 {
		d.line(2, "BER-TLV data objects available in EF.ATR")
	}
	switch (v >> 1) & 0x07 {
	case 0x4:
		d.line(2, "EF.DIR and EF.ATR read with READ BINARY")
	case 0x0:
		d.line(2, "EF.DIR and EF.ATR read with READ RECORD(S)")
	case 0x2:
		d.line(2, "EF.DIR and EF.ATR read with GET DATA")
	default:
		d.line(2, "EF.DIR and EF.ATR access: RFU value")
	}
	if v&0x01 != 0 {
		d.line(2, "card without MF")
	} else {
		d.line(2, "card with MF")
	}
}

func (d *describer) capabilities(c Capabilities) {
	if len(c) >= 1 {
		s := c.Selection()
		var m []string
		for bit, n := range [8]string{"record identifier", "record number", "short EF identifier",
			"implicit DF selection", "DF selection by file identifier", "DF selection by path",
			"DF selection by partial DF name", "DF selection by full DF name"} {
			if s&(1<<bit) != 0 {
				m = append([]string{n}, m...)
			}
		}
		if len(m) == 0 {
			m = []string{"none indicated"}
		}
		d.line(2, "table 1 = %02X: %s", s, strings.Join(m, ", "))
	}
	if len(c) >= 2 {
		v := c.DataCoding()
		write := [4]string{"one-time write", "proprietary write", "write OR", "write AND"}[(v>>5)&3]
		tlv := "EFs of BER-TLV structure not supported"
		if v&0x80 != 0 {
			tlv = "EFs of BER-TLV structure supported"
		}
		ff := "FF invalid as first tag byte (padding)"
		if v&0x10 != 0 {
			ff = "FF valid as first tag byte"
		}
		// Data unit size: 2^n quartets (ISO/IEC 7816-4 data coding byte).
		quartets := 1 << (v & 0x0F)
		unit := fmt.Sprintf("%d quartets", quartets)
		switch {
		case quartets == 2:
			unit = "1 byte"
		case quartets%2 == 0:
			unit = fmt.Sprintf("%d bytes", quartets/2)
		}
		d.line(2, "table 2 = %02X (data coding): %s; %s; %s; data unit %s", v, tlv, write, ff, unit)
	}
	if len(c) >= 3 {
		v := c.table(2)
		var m []string
		if c.CommandChaining() {
			m = append(m, "command chaining")
		} else {
			m = append(m, "no command chaining")
		}
		if c.ExtendedLength() {
			m = append(m, "extended Lc/Le")
		} else {
			m = append(m, "short Lc/Le only")
		}
		if v&0x20 != 0 {
			m = append(m, "extended length information in EF.ATR/INFO")
		}
		switch n := c.LogicalChannels(); {
		case n == 1:
			m = append(m, "basic logical channel only")
		case n == 8:
			m = append(m, "8 or more logical channels")
		default:
			m = append(m, fmt.Sprintf("%d logical channels", n))
		}
		if v&0x10 != 0 {
			m = append(m, "channel numbers assigned by the card")
		}
		if v&0x08 != 0 {
			m = append(m, "channel numbers assigned by the interface device")
		}
		d.line(2, "table 3 = %02X: %s", v, strings.Join(m, ", "))
	}
}

// status explains a status indicator: LCS, SW1 SW2, or both
// (ISO/IEC 7816-4 §8.1.1.3).
func status(v []byte) string {
	switch len(v) {
	case 1:
		return "life cycle: " + lifeCycle(v[0])
	case 2:
		return "status word " + apdu.NewSW(v[0], v[1]).String()
	case 3:
		return "life cycle: " + lifeCycle(v[0]) + "; status word " + apdu.NewSW(v[1], v[2]).String()
	}
	return fmt.Sprintf("% X (malformed, expected 1 to 3 bytes)", v)
}

// lifeCycle names a life cycle status byte (the LCS coding of
// ISO/IEC 7816-4).
func lifeCycle(v byte) string {
	switch {
	case v == 0x00:
		return "no information given"
	case v == 0x01:
		return "creation state"
	case v == 0x03:
		return "initialisation state"
	case v == 0x05 || v == 0x07:
		return "operational state (activated)"
	case v == 0x04 || v == 0x06:
		return "operational state (deactivated)"
	case v >= 0x0C && v <= 0x0F:
		return "termination state"
	case v >= 0x10:
		return fmt.Sprintf("proprietary %02X", v)
	}
	return fmt.Sprintf("RFU %02X", v)
}

// storageStandard names the SS byte of a PC/SC storage card AID (PC/SC
// Part 3 supplement, standard registry).
func storageStandard(ss byte) string {
	switch ss {
	case 0x00:
		return "no information"
	case 0x01, 0x02, 0x03:
		return fmt.Sprintf("ISO 14443 A part %d", ss)
	case 0x05, 0x06, 0x07:
		return fmt.Sprintf("ISO 14443 B part %d", ss-4)
	case 0x09, 0x0A, 0x0B, 0x0C:
		return fmt.Sprintf("ISO 15693 part %d", ss-8)
	case 0x0D:
		return "contact, ISO/IEC 7816-10 I2C"
	case 0x0E:
		return "contact, ISO/IEC 7816-10 extended I2C"
	case 0x0F:
		return "contact, ISO/IEC 7816-10 2-wire protocol"
	case 0x10:
		return "contact, ISO/IEC 7816-10 3-wire protocol"
	case 0x11:
		return "FeliCa"
	case 0x40:
		return "low-frequency contactless"
	}
	return "not in our table"
}

// storageName names the NN NN card name bytes we know of; the PC/SC
// registry holds many more.
func storageName(n uint16) string {
	switch n {
	case 0x0001:
		return "MIFARE Classic 1K"
	case 0x0002:
		return "MIFARE Classic 4K"
	case 0x0003:
		return "MIFARE Ultralight"
	case 0x0026:
		return "MIFARE Mini"
	}
	return "not in our table"
}

// quoted returns ` "text"` when b is printable ASCII, as card names in
// historical bytes often are, and "" otherwise.
func quoted(b []byte) string {
	if len(b) < 2 {
		return ""
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7E {
			return ""
		}
	}
	return fmt.Sprintf(" %q", b)
}
