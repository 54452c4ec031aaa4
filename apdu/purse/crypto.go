package purse

import (
	"crypto/subtle"
	"fmt"
	"log/slog"

	"github.com/valuechip/valuechip/apdu/cmac"
	"github.com/valuechip/valuechip/apdu/scp03"
)

// The purse's cryptography (docs/purse.md §5): AES keys, the SCP03 data
// derivation function (NIST SP 800-108 counter mode with AES-CMAC,
// GPC Amendment D §4.1.5, protocols.md §3.4) for key diversification and
// session keys, and 8-byte AES-CMAC cryptograms over exactly specified
// inputs. Nothing here uses DES.

// Key is an AES key that never prints its bytes (scp03.Key).
type Key = scp03.Key

// KeyKind names a card key; its value is the KDF derivation constant that
// diversifies it from the issuer master key (docs/purse.md §5.2).
type KeyKind byte

// Card keys.
const (
	KeyLoad  KeyKind = 0x51 // K_LOAD, shared with the money server
	KeyDebit KeyKind = 0x52 // K_DEBIT, shared with terminals' security modules
	KeyTC    KeyKind = 0x53 // K_TC, known only to the money server
)

// Session derivation constants (docs/purse.md §5.3). 0x43 is unused: the
// transaction certificate is computed with K_TC itself.
const (
	DeriveLoadSession   byte = 0x41
	DeriveDebitSession  byte = 0x42
	DeriveStatusSession byte = 0x44
)

// MAC labels: the first two bytes of every MAC input, so that no input of
// one cryptogram can be taken for another's (docs/purse.md §5.4).
var (
	labelS1     = [2]byte{'L', '1'}
	labelS2     = [2]byte{'L', '2'}
	labelM1     = [2]byte{'D', '1'}
	labelM2     = [2]byte{'D', '2'}
	labelTC     = [2]byte{'T', 'C'}
	labelStatus = [2]byte{'S', 'T'}
)

func (k KeyKind) String() string {
	switch k {
	case KeyLoad:
		return "K_LOAD"
	case KeyDebit:
		return "K_DEBIT"
	case KeyTC:
		return "K_TC"
	}
	return fmt.Sprintf("KeyKind(%02X)", byte(k))
}

// KDF is the SCP03 data derivation (the same function as
// scp03.DeriveData) on an already keyed CMAC: the first bits/8 bytes of
// CMAC(11×00 || constant || 00 || L || i || context) for i = 1, 2, ...
// The card and security modules use it to avoid re-expanding long-lived
// keys. bits must be 128, 192 or 256.
func KDF(m *cmac.MAC, constant byte, context []byte, bits int) Key {
	var fixed [16]byte
	fixed[11] = constant
	fixed[13], fixed[14] = byte(bits>>8), byte(bits)
	out := make(Key, 0, 2*cmac.Size)
	for i := 1; len(out) < bits/8; i++ {
		fixed[15] = byte(i)
		blk := m.Sum(fixed[:], context)
		out = append(out, blk[:]...)
	}
	return out[:bits/8]
}

// DeriveCardKey diversifies an issuer master key for one card
// (docs/purse.md §5.2): KDF(master, kind, L = key length, context =
// CardID). The card key has the master's length.
func DeriveCardKey(master Key, kind KeyKind, id CardID) (Key, error) {
	k, err := scp03.DeriveData(master, byte(kind), id[:], len(master)*8)
	if err != nil {
		return nil, fmt.Errorf("%w: %s master: %w", ErrBadKey, kind, err)
	}
	return k, nil
}

// VersionedKey is a key with its key version number (KVN, 01..FF).
type VersionedKey struct {
	Version byte
	Key     Key
}

// String masks the key: "KVN 01 AES-128 key KCV 504A77".
func (k VersionedKey) String() string { return fmt.Sprintf("KVN %02X %s", k.Version, k.Key) }

// Format masks the key for every fmt verb.
func (k VersionedKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue masks the key in log/slog output.
func (k VersionedKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Keys are the three keys of one purse, or the issuer's three master keys
// (docs/purse.md §5.1). Printing shows only versions and KCVs.
type Keys struct {
	Load, Debit, TC VersionedKey
}

// String masks the keys.
func (k Keys) String() string {
	return fmt.Sprintf("{K_LOAD: %s, K_DEBIT: %s, K_TC: %s}", k.Load, k.Debit, k.TC)
}

// Format masks the keys for every fmt verb.
func (k Keys) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(k.String())) }

// LogValue masks the keys in log/slog output.
func (k Keys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Check verifies that the three are AES keys with versions 01..FF.
func (k Keys) Check() error {
	for _, v := range []struct {
		kind KeyKind
		key  VersionedKey
	}{{KeyLoad, k.Load}, {KeyDebit, k.Debit}, {KeyTC, k.TC}} {
		if err := v.key.Key.Check(); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrBadKey, v.kind, err)
		}
		if v.key.Version == 0 {
			return fmt.Errorf("%w: %s: key version 00", ErrBadKey, v.kind)
		}
	}
	return nil
}

// Diversify derives a card's keys from the issuer master keys (k), keeping
// the master key versions.
func (k Keys) Diversify(id CardID) (Keys, error) {
	if err := k.Check(); err != nil {
		return Keys{}, err
	}
	var out Keys
	var err error
	for _, v := range []struct {
		kind     KeyKind
		src, dst *VersionedKey
	}{{KeyLoad, &k.Load, &out.Load}, {KeyDebit, &k.Debit, &out.Debit}, {KeyTC, &k.TC, &out.TC}} {
		v.dst.Version = v.src.Version
		if v.dst.Key, err = DeriveCardKey(v.src.Key, v.kind, id); err != nil {
			return Keys{}, err
		}
	}
	return out, nil
}

// SessionContext is the KDF context of the load and debit session keys
// (docs/purse.md §5.3): CardID || ATC_next || card nonce || host nonce
// (the host nonce is the terminal's for a load, the TSM's for a debit).
func SessionContext(id CardID, atc uint32, cardNonce, hostNonce Nonce) []byte {
	ctx := make([]byte, 0, CardIDLen+4+2*NonceLen)
	ctx = append(ctx, id[:]...)
	ctx = be32(ctx, atc)
	ctx = append(ctx, cardNonce[:]...)
	return append(ctx, hostNonce[:]...)
}

func sessionKey(cardKey Key, constant byte, ctx []byte) (Key, error) {
	k, err := scp03.DeriveData(cardKey, constant, ctx, len(cardKey)*8)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return k, nil
}

// LoadSessionKey derives SK_L = KDF(K_LOAD, 41, L, SessionContext(...)).
func LoadSessionKey(kLoad Key, id CardID, atc uint32, cardNonce, hostNonce Nonce) (Key, error) {
	return sessionKey(kLoad, DeriveLoadSession, SessionContext(id, atc, cardNonce, hostNonce))
}

// DebitSessionKey derives SK_D = KDF(K_DEBIT, 42, L, SessionContext(...)).
func DebitSessionKey(kDebit Key, id CardID, atc uint32, cardNonce, tsmNonce Nonce) (Key, error) {
	return sessionKey(kDebit, DeriveDebitSession, SessionContext(id, atc, cardNonce, tsmNonce))
}

// StatusSessionKey derives SK_S = KDF(K_LOAD, 44, L, CardID || challenge)
// for SET STATUS (docs/purse.md §3.11).
func StatusSessionKey(kLoad Key, id CardID, challenge Nonce) (Key, error) {
	return sessionKey(kLoad, DeriveStatusSession, append(id[:], challenge[:]...))
}

// LoadData are the fields of a load bound by S1, S2 and TC
// (docs/purse.md §5.4). ATC is ATC_next, the counter value of the load.
type LoadData struct {
	CardID     CardID
	ATC        uint32
	Amount     uint32
	Currency   Currency
	Balance    uint32 // before the load
	TerminalID TerminalID
	DateTime   DateTime // from CREDIT LOAD
	AuthRef    uint32   // from CREDIT LOAD
}

// BalanceAfter is Balance + Amount, or false if that overflows 32 bits.
func (d LoadData) BalanceAfter() (uint32, bool) {
	s := uint64(d.Balance) + uint64(d.Amount)
	return uint32(s), s <= 0xFFFFFFFF
}

// DebitData are the fields of a debit bound by M1, M2 and TC.
type DebitData struct {
	CardID     CardID
	ATC        uint32
	Amount     uint32
	Currency   Currency
	Balance    uint32 // before the debit
	TerminalID TerminalID
	TSMSeq     uint32
	DateTime   DateTime
}

// BalanceAfter is Balance − Amount, or false if the amount exceeds it.
func (d DebitData) BalanceAfter() (uint32, bool) {
	return d.Balance - d.Amount, d.Amount <= d.Balance
}

type builder []byte

func (b builder) label(l [2]byte) builder   { return append(b, l[:]...) }
func (b builder) bytes(v []byte) builder    { return append(b, v...) }
func (b builder) u32(v uint32) builder      { return be32(b, v) }
func (b builder) u8(v byte) builder         { return append(b, v) }
func newInput(l [2]byte, n int) builder     { return builder(make([]byte, 0, n)).label(l) }
func mac8(m *cmac.MAC, in []byte) (out MAC) { s := m.Sum(in); copy(out[:], s[:]); return out }

// S1Input is "L1" || CardID || ATC_next || amount || currency || balance
// || terminal ID (32 bytes).
func S1Input(d LoadData) []byte {
	return newInput(labelS1, 32).bytes(d.CardID[:]).u32(d.ATC).u32(d.Amount).bytes(d.Currency[:]).
		u32(d.Balance).bytes(d.TerminalID[:])
}

// S2Input is "L2" || S1 || ATC_next || amount || date-time || auth ref
// (29 bytes).
func S2Input(d LoadData, s1 MAC) []byte {
	return newInput(labelS2, 29).bytes(s1[:]).u32(d.ATC).u32(d.Amount).bytes(d.DateTime[:]).u32(d.AuthRef)
}

// M1Input is "D1" || CardID || ATC_next || amount || currency || balance
// || terminal ID || TSM sequence || date-time (43 bytes).
func M1Input(d DebitData) []byte {
	return newInput(labelM1, 43).bytes(d.CardID[:]).u32(d.ATC).u32(d.Amount).bytes(d.Currency[:]).
		u32(d.Balance).bytes(d.TerminalID[:]).u32(d.TSMSeq).bytes(d.DateTime[:])
}

// M2Input is "D2" || M1 || ATC_next || amount || balance after (22
// bytes).
func M2Input(d DebitData, m1 MAC) []byte {
	after, _ := d.BalanceAfter()
	return newInput(labelM2, 22).bytes(m1[:]).u32(d.ATC).u32(d.Amount).u32(after)
}

// TCInput is "TC" || CardID || the log record without its TC (60 bytes).
func TCInput(id CardID, r LogRecord) []byte {
	b := r.Bytes()
	return newInput(labelTC, 60).bytes(id[:]).bytes(b[:LogRecordLen-MACLen])
}

// StatusInput is "ST" || CardID || ATC || operation || key version (16
// bytes); ATC is the purse's current counter (not incremented by SET
// STATUS).
func StatusInput(id CardID, atc uint32, op, kvn byte) []byte {
	return newInput(labelStatus, 16).bytes(id[:]).u32(atc).u8(op).u8(kvn)
}

// Sign returns the first 8 bytes of the AES-CMAC of input under an
// already keyed CMAC.
func Sign(m *cmac.MAC, input []byte) MAC { return mac8(m, input) }

// Check compares a received MAC with the one expected for input, in
// constant time.
func Check(m *cmac.MAC, input []byte, got MAC) bool {
	want := mac8(m, input)
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

func sign(key Key, input []byte) (MAC, error) {
	m, err := cmac.NewMAC(key)
	if err != nil {
		return MAC{}, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return mac8(m, input), nil
}

// ComputeS1 is the card's load cryptogram under SK_L.
func ComputeS1(skL Key, d LoadData) (MAC, error) { return sign(skL, S1Input(d)) }

// ComputeS2 is the money server's load authorisation under SK_L.
func ComputeS2(skL Key, d LoadData, s1 MAC) (MAC, error) { return sign(skL, S2Input(d, s1)) }

// ComputeM1 is the security module's debit authorisation under SK_D.
func ComputeM1(skD Key, d DebitData) (MAC, error) { return sign(skD, M1Input(d)) }

// ComputeM2 is the card's debit proof under SK_D.
func ComputeM2(skD Key, d DebitData, m1 MAC) (MAC, error) {
	if _, ok := d.BalanceAfter(); !ok {
		return MAC{}, fmt.Errorf("%w: debit of %d above balance %d", ErrMalformed, d.Amount, d.Balance)
	}
	return sign(skD, M2Input(d, m1))
}

// ComputeTC is the transaction certificate of a log record under K_TC.
func ComputeTC(kTC Key, id CardID, r LogRecord) (MAC, error) { return sign(kTC, TCInput(id, r)) }

// VerifyTC checks a log record's TC under K_TC in constant time (the money
// server's check, docs/purse.md §5.4).
func VerifyTC(kTC Key, id CardID, r LogRecord) bool {
	m, err := cmac.NewMAC(kTC)
	if err != nil {
		return false
	}
	return Check(m, TCInput(id, r), r.TC)
}

// ComputeStatusMAC is the money server's SET STATUS cryptogram under SK_S.
func ComputeStatusMAC(skS Key, id CardID, atc uint32, op, kvn byte) (MAC, error) {
	return sign(skS, StatusInput(id, atc, op, kvn))
}
