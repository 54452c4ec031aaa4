package purse

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
)

// Personalisation data groups (docs/purse.md §8), sent by STORE DATA in
// DGI format (GPCS §11.11.2.3, P1 b5b4 = 01) through the purse's security
// domain after INSTALL [for personalization].
const (
	DGICardID   uint16 = 0x0101 // CardID (8)
	DGICurrency uint16 = 0x0102 // currency (2, BCD)
	DGILimits   uint16 = 0x0103 // limits (20)
	DGILoadKey  uint16 = 0x0201 // K_LOAD: KVN 1 | key 16/24/32 | KCV 3
	DGIDebitKey uint16 = 0x0202 // K_DEBIT: same layout
	DGITCKey    uint16 = 0x0203 // K_TC: same layout
	DGIPIN      uint16 = 0x0301 // PIN try limit 1 | PIN block 8
)

// LimitsLen is the size of DGI 0103.
const LimitsLen = 20

// ErrUnknownDGI reports a DGI this version does not define (6A88).
var ErrUnknownDGI = errors.New("purse: unknown DGI")

// Limits are the purse's amounts limits (DGI 0103, docs/purse.md §4.3),
// all in minor units of the purse currency. NoLimit (FFFFFFFF) disables
// a limit.
type Limits struct {
	MaxBalance   uint32 // the balance never exceeds it (≥ 1)
	MaxLoad      uint32 // largest single load (≥ 1)
	MaxDebit     uint32 // largest single debit (≥ 1)
	PINFreeLimit uint32 // debits above it need the PIN; 0: always, NoLimit: never
	OfflineLimit uint32 // total of debits between two loads
}

// Bytes encodes DGI 0103's value.
func (l Limits) Bytes() []byte {
	b := make([]byte, 0, LimitsLen)
	for _, v := range []uint32{l.MaxBalance, l.MaxLoad, l.MaxDebit, l.PINFreeLimit, l.OfflineLimit} {
		b = be32(b, v)
	}
	return b
}

// ParseLimits decodes and checks DGI 0103's value.
func ParseLimits(b []byte) (Limits, error) {
	var l Limits
	if err := fixed("limits", b, LimitsLen); err != nil {
		return l, err
	}
	r := reader{b}
	l.MaxBalance, l.MaxLoad, l.MaxDebit, l.PINFreeLimit, l.OfflineLimit = r.u32(), r.u32(), r.u32(), r.u32(), r.u32()
	if l.MaxBalance == 0 || l.MaxLoad == 0 || l.MaxDebit == 0 || l.OfflineLimit == 0 {
		return l, fmt.Errorf("%w: limits must be at least 1 (max balance %d, load %d, debit %d, offline %d)",
			ErrMalformed, l.MaxBalance, l.MaxLoad, l.MaxDebit, l.OfflineLimit)
	}
	return l, nil
}

// Personalization is everything STORE DATA gives the purse. Keys are the
// card's own keys (already diversified, Keys.Diversify). PIN is the PIN
// block (EncodePIN). Printing masks keys and PIN.
type Personalization struct {
	CardID   CardID
	Currency Currency
	Limits   Limits
	Keys     Keys
	PIN      []byte
	PINTries byte
}

// String masks the keys and the PIN.
func (p Personalization) String() string {
	return fmt.Sprintf("{CardID: %X, Currency: %s, Limits: %+v, Keys: %s, PIN: ****, PINTries: %d}",
		p.CardID[:], p.Currency, p.Limits, p.Keys, p.PINTries)
}

// Format masks keys and PIN for every fmt verb.
func (p Personalization) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(p.String())) }

// LogValue masks keys and PIN in log/slog output.
func (p Personalization) LogValue() slog.Value { return slog.StringValue(p.String()) }

// EncodeKeyDGI builds a key DGI's value: KVN || key || KCV.
func EncodeKeyDGI(k VersionedKey) ([]byte, error) {
	kcv, err := scp03.KCV(k.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	out := append([]byte{k.Version}, k.Key...)
	return append(out, kcv[:]...), nil
}

// ParseKeyDGI decodes a key DGI's value and checks its KCV (in constant
// time) and version.
func ParseKeyDGI(b []byte) (VersionedKey, error) {
	n := len(b) - 4
	if n != 16 && n != 24 && n != 32 {
		return VersionedKey{}, fmt.Errorf("%w: key DGI of %d bytes, want 20, 28 or 36", ErrMalformed, len(b))
	}
	k := VersionedKey{Version: b[0], Key: append(Key(nil), b[1:1+n]...)}
	if k.Version == 0 {
		return VersionedKey{}, fmt.Errorf("%w: key version 00", ErrMalformed)
	}
	kcv, err := scp03.KCV(k.Key)
	if err != nil || subtle.ConstantTimeCompare(kcv[:], b[1+n:]) != 1 {
		k.Key.Wipe()
		return VersionedKey{}, fmt.Errorf("%w: key check value does not match", ErrBadKey)
	}
	return k, nil
}

// DGIs returns the personalisation as DGIs, in the order of
// docs/purse.md §8.
func (p Personalization) DGIs() ([]gp.DGI, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	out := []gp.DGI{
		{Tag: DGICardID, Data: append([]byte(nil), p.CardID[:]...)},
		{Tag: DGICurrency, Data: append([]byte(nil), p.Currency[:]...)},
		{Tag: DGILimits, Data: p.Limits.Bytes()},
	}
	for _, k := range []struct {
		tag uint16
		key VersionedKey
	}{{DGILoadKey, p.Keys.Load}, {DGIDebitKey, p.Keys.Debit}, {DGITCKey, p.Keys.TC}} {
		v, err := EncodeKeyDGI(k.key)
		if err != nil {
			return nil, err
		}
		out = append(out, gp.DGI{Tag: k.tag, Data: v})
	}
	return append(out, gp.DGI{Tag: DGIPIN, Data: append([]byte{p.PINTries}, p.PIN...)}), nil
}

// StoreData returns the STORE DATA commands that personalise the purse,
// to be sent (wrapped by the secure channel, security level 03 or 33)
// after INSTALL [for personalization]: block 0 carries the identity,
// limits and PIN DGIs, block 1 (the last, P1 88) the keys. P1 b7b6 = 00:
// the purse takes DGI values in clear and relies on the secure channel's
// C-DECRYPTION for their confidentiality (docs/purse.md §8.2).
func (p Personalization) StoreData() ([]apdu.Command, error) {
	dgis, err := p.DGIs()
	if err != nil {
		return nil, err
	}
	first := []gp.DGI{dgis[0], dgis[1], dgis[2], dgis[6]}
	b0, err := gp.EncodeDGIs(first...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	b1, err := gp.EncodeDGIs(dgis[3:6]...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return gp.StoreDataCommands(gp.StoreFormatDGI, b0, b1)
}

// Validate checks every field as the card does.
func (p Personalization) Validate() error {
	if !p.Currency.Valid() {
		return fmt.Errorf("%w: currency %X", ErrMalformed, p.Currency[:])
	}
	if _, err := ParseLimits(p.Limits.Bytes()); err != nil {
		return err
	}
	if err := p.Keys.Check(); err != nil {
		return err
	}
	if p.PINTries < 1 || p.PINTries > MaxPINTries {
		return fmt.Errorf("%w: PIN try limit %d outside 1..%d", ErrMalformed, p.PINTries, MaxPINTries)
	}
	if _, err := CheckPINBlock(p.PIN); err != nil {
		return err
	}
	return nil
}

// CheckDGI validates one DGI as the card does when STORE DATA brings it:
// an unknown tag wraps ErrUnknownDGI, a bad value ErrMalformed or
// ErrBadKey.
func CheckDGI(d gp.DGI) error {
	var p Personalization
	return p.set(d)
}

func (p *Personalization) set(d gp.DGI) error {
	var err error
	switch d.Tag {
	case DGICardID:
		if err = fixed("CardID", d.Data, CardIDLen); err == nil {
			copy(p.CardID[:], d.Data)
		}
	case DGICurrency:
		if err = fixed("currency", d.Data, 2); err == nil {
			copy(p.Currency[:], d.Data)
			_, err = p.Currency.Code()
		}
	case DGILimits:
		p.Limits, err = ParseLimits(d.Data)
	case DGILoadKey:
		p.Keys.Load, err = ParseKeyDGI(d.Data)
	case DGIDebitKey:
		p.Keys.Debit, err = ParseKeyDGI(d.Data)
	case DGITCKey:
		p.Keys.TC, err = ParseKeyDGI(d.Data)
	case DGIPIN:
		if err = fixed("PIN DGI", d.Data, 1+PINBlockLen); err != nil {
			break
		}
		if d.Data[0] < 1 || d.Data[0] > MaxPINTries {
			err = fmt.Errorf("%w: PIN try limit %d outside 1..%d", ErrMalformed, d.Data[0], MaxPINTries)
			break
		}
		if _, err = CheckPINBlock(d.Data[1:]); err == nil {
			p.PINTries, p.PIN = d.Data[0], append([]byte(nil), d.Data[1:]...)
		}
	default:
		return fmt.Errorf("%w: %04X", ErrUnknownDGI, d.Tag)
	}
	if err != nil {
		return fmt.Errorf("DGI %04X: %w", d.Tag, err)
	}
	return nil
}

// ParsePersonalization assembles a complete personalisation from DGIs (a
// later DGI of the same tag replaces an earlier one). A missing DGI wraps
// ErrMissing.
func ParsePersonalization(dgis []gp.DGI) (Personalization, error) {
	var p Personalization
	seen := map[uint16]bool{}
	for _, d := range dgis {
		if err := p.set(d); err != nil {
			return Personalization{}, err
		}
		seen[d.Tag] = true
	}
	for _, tag := range []uint16{DGICardID, DGICurrency, DGILimits, DGILoadKey, DGIDebitKey, DGITCKey, DGIPIN} {
		if !seen[tag] {
			return Personalization{}, fmt.Errorf("%w: DGI %04X", ErrMissing, tag)
		}
	}
	return p, nil
}
