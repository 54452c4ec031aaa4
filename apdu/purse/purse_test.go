package purse

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
)

func key(b byte, n int) Key {
	k := make(Key, n)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func TestAIDs(t *testing.T) {
	require.Equal(t, "F0000000015055525345", fmt.Sprintf("%X", PackageAID()))
	require.Equal(t, "F000000001505552534501", fmt.Sprintf("%X", ModuleAID()))
	require.Equal(t, "F000000001505552534501", fmt.Sprintf("%X", AID()))
	a := AID()
	a[0] = 0
	require.Equal(t, byte(0xF0), AID()[0], "AID returns a fresh slice")
}

// KDF on a prepared CMAC is scp03.DeriveData for every key size.
func TestKDFMatchesSCP03(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		k := key(byte(n), n)
		m, err := cmac.NewMAC(k)
		require.NoError(t, err)
		for _, ctx := range [][]byte{nil, {1}, bytes.Repeat([]byte{7}, 28)} {
			want, err := scp03.DeriveData(k, 0x42, ctx, n*8)
			require.NoError(t, err)
			require.Equal(t, want, []byte(KDF(m, 0x42, ctx, n*8)))
		}
	}
}

func TestDeriveCardKeyErrors(t *testing.T) {
	_, err := DeriveCardKey(Key{1, 2, 3}, KeyLoad, CardID{})
	require.ErrorIs(t, err, ErrBadKey)
	_, err = LoadSessionKey(nil, CardID{}, 1, Nonce{}, Nonce{})
	require.ErrorIs(t, err, ErrBadKey)
	_, err = ComputeS1(Key{1}, LoadData{})
	require.ErrorIs(t, err, ErrBadKey)
	_, err = ComputeM2(key(0, 16), DebitData{Amount: 2, Balance: 1}, MAC{})
	require.ErrorIs(t, err, ErrMalformed)
	require.False(t, VerifyTC(nil, CardID{}, LogRecord{}))
	bad := Keys{Load: VersionedKey{1, key(0, 16)}, Debit: VersionedKey{0, key(0, 16)}, TC: VersionedKey{1, key(0, 16)}}
	_, err = bad.Diversify(CardID{})
	require.ErrorIs(t, err, ErrBadKey)
	bad.Debit = VersionedKey{1, Key{1}}
	require.ErrorIs(t, bad.Check(), ErrBadKey)
	require.Equal(t, "K_TC", KeyTC.String())
	require.Equal(t, "KeyKind(99)", KeyKind(0x99).String())
}

// Keys and personalisation data never print key bytes or the PIN.
func TestMasking(t *testing.T) {
	k := Keys{Load: VersionedKey{1, key(0xA0, 16)}, Debit: VersionedKey{2, key(0xB0, 16)}, TC: VersionedKey{3, key(0xC0, 32)}}
	p := Personalization{Keys: k, PIN: []byte{0x24, 0x98, 0x76, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}}
	for _, v := range []any{k, k.Load, p, &p} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			s := fmt.Sprintf(verb, v)
			for _, secret := range [][]byte{k.Load.Key, k.Debit.Key, k.TC.Key, p.PIN} {
				require.NotContains(t, strings.ToUpper(s), fmt.Sprintf("%X", secret), verb)
				require.NotContains(t, s, string(secret), verb)
			}
			require.NotContains(t, s, "9876", verb)
		}
	}
	require.Contains(t, k.String(), "KVN 01 AES-128 key KCV")
	require.Contains(t, k.LogValue().String(), "KVN 03 AES-256")
	require.Contains(t, p.LogValue().String(), "PIN: ****")
}

func TestCurrencyAndDateTime(t *testing.T) {
	c, err := CurrencyOf(978)
	require.NoError(t, err)
	require.Equal(t, Currency{0x09, 0x78}, c)
	require.Equal(t, "978", c.String())
	c, err = CurrencyOf(36)
	require.NoError(t, err)
	require.Equal(t, Currency{0x00, 0x36}, c)
	for _, bad := range []int{0, 1000, -5} {
		_, err := CurrencyOf(bad)
		require.ErrorIs(t, err, ErrMalformed)
	}
	for _, bad := range []Currency{{0, 0}, {0x0A, 0x00}, {0x10, 0x00}, {0x09, 0x7A}} {
		require.False(t, bad.Valid(), "%X", bad[:])
		require.Contains(t, bad.String(), "invalid")
	}

	tm := time.Date(2025, 6, 1, 10, 30, 0, 0, time.UTC)
	d, err := DateTimeOf(tm)
	require.NoError(t, err)
	require.Equal(t, DateTime{0x20, 0x25, 0x06, 0x01, 0x10, 0x30, 0x00}, d)
	back, err := d.Time(nil)
	require.NoError(t, err)
	require.Equal(t, tm, back)
	require.Equal(t, "2025-06-01 10:30:00", d.String())
	for _, bad := range []DateTime{
		{}, {0x20, 0x25, 0x13, 0x01, 0, 0, 0}, {0x20, 0x25, 0x02, 0x30, 0, 0, 0}, {0x20, 0x25, 0x06, 0x01, 0x24, 0, 0},
		{0x20, 0x25, 0x06, 0x01, 0x10, 0x60, 0}, {0x20, 0x25, 0x06, 0x01, 0x10, 0, 0x60}, {0x20, 0x2A, 0x06, 0x01, 0, 0, 0},
		{0x20, 0x23, 0x02, 0x29, 0, 0, 0},
	} {
		require.False(t, bad.Valid(), "%X", bad[:])
		require.Contains(t, bad.String(), "invalid")
	}
	require.True(t, DateTime{0x20, 0x24, 0x02, 0x29, 0x23, 0x59, 0x59}.Valid(), "leap day")
	_, err = DateTimeOf(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
	require.ErrorIs(t, err, ErrMalformed)
}

func TestPINBlock(t *testing.T) {
	for _, tc := range []struct {
		pin  string
		want string
	}{
		{"1234", "241234FFFFFFFFFF"},
		{"12345", "2512345FFFFFFFFF"},
		{"000000000000", "2C000000000000FF"},
	} {
		b, err := EncodePIN(tc.pin)
		require.NoError(t, err)
		require.Equal(t, tc.want, fmt.Sprintf("%X", b))
		n, err := CheckPINBlock(b)
		require.NoError(t, err)
		require.Equal(t, len(tc.pin), n)
	}
	for _, bad := range []string{"123", "1234567890123", "12a4", ""} {
		_, err := EncodePIN(bad)
		require.ErrorIs(t, err, ErrBadPIN, bad)
	}
	for _, bad := range []string{"141234FFFFFFFFFF", "231234FFFFFFFFFF", "2D1234FFFFFFFFFF", "24123AFFFFFFFFFF", "241234FFFFFFFF0F", "241234FFFFFFFF", "241234FFFFFFFFFFFF"} {
		b, _ := apdu.DecodeHex(bad)
		_, err := CheckPINBlock(b)
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

// Every builder's output parses back to the same value.
func TestCommandRoundTrips(t *testing.T) {
	tid := TerminalID{'T', 'E', 'R', 'M', '0', '0', '0', '1'}
	eur := Currency{0x09, 0x78}
	dt := DateTime{0x20, 0x25, 0x06, 0x01, 0x10, 0x30, 0x00}

	il := InitializeLoad{KeyVersion: 1, Amount: 5000, Currency: eur, TerminalID: tid, HostNonce: Nonce{1, 2, 3, 4, 5, 6, 7, 8}}
	cmd := il.Command()
	require.Equal(t, "8040000017010000138809785445524D30303031010203040506070800", fmt.Sprintf("%X", mustBytes(t, cmd)))
	require.Equal(t, apdu.Command{CLA: 0x80, INS: 0x40, Data: il.Bytes(), Ne: 256}, cmd)
	got, err := ParseInitializeLoad(cmd.Data)
	require.NoError(t, err)
	require.Equal(t, il, got)

	ilr := InitializeLoadResponse{Balance: 1, ATC: 2, KeyVersion: 3, CardNonce: Nonce{4}, S1: MAC{5}}
	ilr2, err := ParseInitializeLoadResponse(ilr.Bytes())
	require.NoError(t, err)
	require.Equal(t, ilr, ilr2)

	cl := CreditLoad{DateTime: dt, AuthRef: 0x12345, S2: MAC{9, 8, 7}}
	cl2, err := ParseCreditLoad(cl.Command().Data)
	require.NoError(t, err)
	require.Equal(t, cl, cl2)
	clr := CreditLoadResponse{BalanceAfter: 10, ATC: 11, TC: MAC{12}}
	clr2, err := ParseCreditLoadResponse(clr.Bytes())
	require.NoError(t, err)
	require.Equal(t, clr, clr2)

	id := InitializeDebit{KeyVersion: 1, Amount: 350, Currency: eur, TerminalID: tid}
	id2, err := ParseInitializeDebit(id.Command().Data)
	require.NoError(t, err)
	require.Equal(t, id, id2)
	idr := InitializeDebitResponse{Balance: 5000, ATC: 2, KeyVersion: 1, CardNonce: Nonce{0xD1}}
	idr2, err := ParseInitializeDebitResponse(idr.Bytes())
	require.NoError(t, err)
	require.Equal(t, idr, idr2)

	d := Debit{TSMNonce: Nonce{0xA1}, TSMSeq: 7, DateTime: dt, M1: MAC{1, 1}}
	d2, err := ParseDebit(d.Command().Data)
	require.NoError(t, err)
	require.Equal(t, d, d2)
	dr := DebitResponse{BalanceAfter: 4650, ATC: 2, M2: MAC{2}, TC: MAC{3}}
	dr2, err := ParseDebitResponse(dr.Bytes())
	require.NoError(t, err)
	require.Equal(t, dr, dr2)

	pd := PurseData{Balance: 1, MaxBalance: 2, Currency: eur, ATC: 3, LifeCycle: StateActive, Flags: FlagRecovered, PINTries: 3, OfflineTotal: 4}
	pd2, err := ParsePurseData(pd.Bytes())
	require.NoError(t, err)
	require.Equal(t, pd, pd2)

	rec := LogRecord{ATC: 1, Type: TypeLoad, Amount: 5, BalanceAfter: 5, Currency: eur, DateTime: dt, TerminalID: tid, Reference: 9, HostMAC: MAC{1}, CardMAC: MAC{2}, TC: MAC{3}}
	rec2, err := ParseLogRecord(rec.Bytes())
	require.NoError(t, err)
	require.Equal(t, rec, rec2)
	require.Contains(t, rec.String(), "ATC 1 load 5 (978)")
	before, ok := rec.BalanceBefore()
	require.True(t, ok)
	require.Zero(t, before)

	atc, err := ParseATC(GetTransactionProof(0x01020304).Data)
	require.NoError(t, err)
	require.Equal(t, uint32(0x01020304), atc)

	for _, tc := range []struct {
		cmd  apdu.Command
		want string
	}{
		{Select(AID()), "00A404000BF00000000150555253450100"},
		{GetPurseData(), "805C000000"},
		{ReadLog(1), "00B201C400"},
		{Verify(nil), "00200080"},
		{Verify([]byte{0x24, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}), "0020008008241234FFFFFFFFFF"},
		{GetChallenge(), "0084000008"},
		{SetStatus(OpBlock, 1, MAC{1, 2, 3, 4, 5, 6, 7, 8}), "80480101080102030405060708"},
		{GetTransactionProof(2), "805A0000040000000200"},
	} {
		require.Equal(t, tc.want, fmt.Sprintf("%X", mustBytes(t, tc.cmd)))
	}
}

func mustBytes(t *testing.T, c apdu.Command) []byte {
	t.Helper()
	b, err := c.Bytes()
	require.NoError(t, err)
	return b
}

func TestParsersRejectWrongLengths(t *testing.T) {
	for name, parse := range map[string]func([]byte) error{
		"InitializeLoad":          func(b []byte) error { _, err := ParseInitializeLoad(b); return err },
		"InitializeLoadResponse":  func(b []byte) error { _, err := ParseInitializeLoadResponse(b); return err },
		"CreditLoad":              func(b []byte) error { _, err := ParseCreditLoad(b); return err },
		"CreditLoadResponse":      func(b []byte) error { _, err := ParseCreditLoadResponse(b); return err },
		"InitializeDebit":         func(b []byte) error { _, err := ParseInitializeDebit(b); return err },
		"InitializeDebitResponse": func(b []byte) error { _, err := ParseInitializeDebitResponse(b); return err },
		"Debit":                   func(b []byte) error { _, err := ParseDebit(b); return err },
		"DebitResponse":           func(b []byte) error { _, err := ParseDebitResponse(b); return err },
		"PurseData":               func(b []byte) error { _, err := ParsePurseData(b); return err },
		"LogRecord":               func(b []byte) error { _, err := ParseLogRecord(b); return err },
		"ATC":                     func(b []byte) error { _, err := ParseATC(b); return err },
		"Limits":                  func(b []byte) error { _, err := ParseLimits(b); return err },
	} {
		for _, n := range []int{0, 1, 3, 15, 16, 17, 57, 59, 100} {
			err := parse(make([]byte, n))
			if err == nil {
				continue // the one right length for this parser
			}
			require.ErrorIs(t, err, ErrMalformed, "%s of %d bytes", name, n)
		}
	}
	_, err := ParseLogRecord(make([]byte, LogRecordLen))
	require.ErrorIs(t, err, ErrMalformed, "ATC 0")
	r := LogRecord{ATC: 1, Type: 0x07}
	_, err = ParseLogRecord(r.Bytes())
	require.ErrorIs(t, err, ErrMalformed, "type 07")
}

func TestFCI(t *testing.T) {
	f := FCI{AID: AID(), Version: AppVersion, LifeCycle: StateBlocked, CardID: CardID{1}, Currency: Currency{0x09, 0x78}, KeyVersions: [3]byte{1, 2, 3}, PINFreeLimit: 2500, LogCapacity: 16}
	b, err := f.Bytes()
	require.NoError(t, err)
	back, err := ParseFCI(b)
	require.NoError(t, err)
	require.Equal(t, f, back)

	// Personalising: version and life cycle only.
	p := FCI{AID: AID(), Version: AppVersion}
	b, err = p.Bytes()
	require.NoError(t, err)
	require.Equal(t, "6F18840BF000000001505552534501A509DF01020100DF020100", fmt.Sprintf("%X", b))
	back, err = ParseFCI(b)
	require.NoError(t, err)
	require.Equal(t, p, back)
	require.False(t, back.Personalised())

	// Order does not matter, unknown objects are ignored.
	odd, _ := apdu.DecodeHex("6F1B A50C DF020100 DF0102 0100 C00100 840BF000000001505552534501")
	back, err = ParseFCI(odd)
	require.NoError(t, err)
	require.Equal(t, p, back)

	for _, bad := range []string{
		"", "6F00", "6F02 8400", "6F0D840BF000000001505552534501", "6F17840BF000000001505552534501A508DF010101DF020100",
		"6F18840BF000000001505552534501A509DF01020100DF020103",
		"6F18840BF000000001505552534501A509DF01020100DF020101", // active without the personalised objects
		"6F0E840BF000000001505552534501A500",
		"6F0B8409F0000000015055525345A500",
		"9F00",
	} {
		b, _ := apdu.DecodeHex(bad)
		_, err := ParseFCI(b)
		require.Error(t, err, bad)
		require.True(t, errors.Is(err, ErrMalformed) || errors.Is(err, ErrMissing), bad)
	}
	_, err = FCI{AID: []byte{1}}.Bytes()
	require.ErrorIs(t, err, ErrMalformed)
}

func testPersonalization(t *testing.T) Personalization {
	keys, err := Keys{Load: VersionedKey{1, key(0x10, 16)}, Debit: VersionedKey{2, key(0x20, 24)}, TC: VersionedKey{3, key(0x30, 32)}}.Diversify(CardID{1, 2, 3, 4, 5, 6, 7, 8})
	require.NoError(t, err)
	pin, err := EncodePIN("4321")
	require.NoError(t, err)
	return Personalization{CardID: CardID{1, 2, 3, 4, 5, 6, 7, 8}, Currency: Currency{0x08, 0x40}, Keys: keys, PIN: pin, PINTries: 5,
		Limits: Limits{MaxBalance: 10, MaxLoad: 5, MaxDebit: 5, PINFreeLimit: 0, OfflineLimit: NoLimit}}
}

func TestPersonalization(t *testing.T) {
	p := testPersonalization(t)
	require.Len(t, p.Keys.Debit.Key, 24, "card keys keep the master's length")
	cmds, err := p.StoreData()
	require.NoError(t, err)
	require.Len(t, cmds, 2)
	require.Equal(t, byte(0x08), cmds[0].P1)
	require.Equal(t, byte(0x88), cmds[1].P1)
	var dgis []gp.DGI
	for _, c := range cmds {
		d, err := gp.ParseDGIs(c.Data)
		require.NoError(t, err)
		for _, x := range d {
			require.NoError(t, CheckDGI(x))
		}
		dgis = append(dgis, d...)
	}
	back, err := ParsePersonalization(dgis)
	require.NoError(t, err)
	require.Equal(t, p.CardID, back.CardID)
	require.Equal(t, p.Limits, back.Limits)
	require.True(t, p.Keys.TC.Key.Equal(back.Keys.TC.Key))
	require.Equal(t, p.Keys.Debit.Version, back.Keys.Debit.Version)
	require.Equal(t, p.PIN, back.PIN)

	_, err = ParsePersonalization(dgis[:6])
	require.ErrorIs(t, err, ErrMissing)
	require.ErrorIs(t, CheckDGI(gp.DGI{Tag: 0x9999}), ErrUnknownDGI)

	kd, err := EncodeKeyDGI(p.Keys.Load)
	require.NoError(t, err)
	for name, tc := range map[string]struct {
		d    gp.DGI
		want error
	}{
		"card ID length":  {gp.DGI{Tag: DGICardID, Data: make([]byte, 7)}, ErrMalformed},
		"currency BCD":    {gp.DGI{Tag: DGICurrency, Data: []byte{0x0A, 0x00}}, ErrMalformed},
		"currency 000":    {gp.DGI{Tag: DGICurrency, Data: []byte{0, 0}}, ErrMalformed},
		"limits length":   {gp.DGI{Tag: DGILimits, Data: make([]byte, 19)}, ErrMalformed},
		"limits zero":     {gp.DGI{Tag: DGILimits, Data: make([]byte, 20)}, ErrMalformed},
		"key length":      {gp.DGI{Tag: DGILoadKey, Data: kd[:len(kd)-1]}, ErrMalformed},
		"key KCV":         {gp.DGI{Tag: DGIDebitKey, Data: append(append([]byte{}, kd[:len(kd)-1]...), kd[len(kd)-1]^1)}, ErrBadKey},
		"key version 00":  {gp.DGI{Tag: DGITCKey, Data: append([]byte{0}, kd[1:]...)}, ErrMalformed},
		"PIN tries 0":     {gp.DGI{Tag: DGIPIN, Data: append([]byte{0}, p.PIN...)}, ErrMalformed},
		"PIN tries 16":    {gp.DGI{Tag: DGIPIN, Data: append([]byte{16}, p.PIN...)}, ErrMalformed},
		"PIN block":       {gp.DGI{Tag: DGIPIN, Data: append([]byte{3}, make([]byte, 8)...)}, ErrMalformed},
		"PIN DGI length":  {gp.DGI{Tag: DGIPIN, Data: []byte{3}}, ErrMalformed},
		"unknown DGI tag": {gp.DGI{Tag: 0x0104, Data: []byte{1}}, ErrUnknownDGI},
	} {
		require.ErrorIs(t, CheckDGI(tc.d), tc.want, name)
	}

	bad := p
	bad.PINTries = 0
	_, err = bad.StoreData()
	require.ErrorIs(t, err, ErrMalformed)
	bad = p
	bad.Currency = Currency{}
	require.ErrorIs(t, bad.Validate(), ErrMalformed)
	bad = p
	bad.PIN = []byte{1}
	require.ErrorIs(t, bad.Validate(), ErrMalformed)
	bad = p
	bad.Limits.MaxLoad = 0
	require.ErrorIs(t, bad.Validate(), ErrMalformed)
	bad = p
	bad.Keys.TC.Key = nil
	require.ErrorIs(t, bad.Validate(), ErrBadKey)
}

// The MAC inputs have the sizes and labels of docs/purse.md §5.4.
func TestMACInputs(t *testing.T) {
	require.Len(t, S1Input(LoadData{}), 32)
	require.Len(t, S2Input(LoadData{}, MAC{}), 29)
	require.Len(t, M1Input(DebitData{}), 43)
	require.Len(t, M2Input(DebitData{}, MAC{}), 22)
	require.Len(t, TCInput(CardID{}, LogRecord{}), 60)
	require.Len(t, StatusInput(CardID{}, 0, 0, 0), 16)
	labels := map[string]bool{}
	for _, in := range [][]byte{S1Input(LoadData{}), S2Input(LoadData{}, MAC{}), M1Input(DebitData{}), M2Input(DebitData{}, MAC{}), TCInput(CardID{}, LogRecord{}), StatusInput(CardID{}, 0, 0, 0)} {
		labels[string(in[:2])] = true
	}
	require.Len(t, labels, 6, "labels are distinct")

	m, err := cmac.NewMAC(key(0, 16))
	require.NoError(t, err)
	in := []byte("x")
	mac := Sign(m, in)
	require.True(t, Check(m, in, mac))
	mac[7] ^= 1
	require.False(t, Check(m, in, mac))
	require.True(t, MAC{1}.Equal(MAC{1}))
	require.False(t, MAC{1}.Equal(MAC{2}))

	after, ok := LoadData{Balance: 0xFFFFFFFF, Amount: 1}.BalanceAfter()
	require.False(t, ok)
	require.Zero(t, after)
}

func TestStatuses(t *testing.T) {
	for _, ins := range []byte{INSSelect, INSGetPurseData, INSInitializeLoad, INSCreditLoad, INSInitializeDebit, INSDebit,
		INSGetTransactionProof, INSReadRecord, INSVerify, INSGetChallenge, INSSetStatus} {
		s := Statuses(ins)
		require.Greater(t, len(s), len(generalStatuses), "%02X", ins)
		seen := map[apdu.SW]bool{}
		for _, x := range commandStatuses[ins] {
			require.False(t, seen[x.SW], "INS %02X lists %04X twice", ins, uint16(x.SW))
			seen[x.SW] = true
			require.NotEmpty(t, x.Meaning)
		}
	}
	require.Contains(t, Describe(INSDebit, apdu.ErrSecurityStatus), "M1 incorrect")
	require.Contains(t, Describe(INSInitializeDebit, apdu.ErrSecurityStatus), "PIN")
	require.Contains(t, Describe(INSVerify, 0x63C1), "63C1: ")
	require.Contains(t, Describe(INSDebit, SWInsufficientFunds), "9401")
	require.Contains(t, Describe(INSInitializeDebit, SWInsufficientFunds), "above the balance")
	require.Contains(t, Describe(INSDebit, apdu.ErrINSNotSupported), "INS not supported")
}

func TestParseExamplesErrors(t *testing.T) {
	for _, bad := range []string{
		"```example a\n< 9000\n```",
		"```example a\nx\n```",
		"```example a\nx = zz\n```",
		"```example a\n> zz\n```",
		"```example a\n> 00\n< zz\n```",
		"```example a\n",
		"```example a\n```\n```example a\n```",
	} {
		_, err := ParseExamples([]byte(bad))
		require.Error(t, err, bad)
	}
	ex, err := ParseExamples([]byte("text\n```example a\n# c\n\nv = 01 02\n> 00A4\n< 9000\n```\n"))
	require.NoError(t, err)
	require.Len(t, ex, 1)
	v, err := ex[0].Value("v")
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2}, v)
	_, err = ex[0].Value("w")
	require.ErrorIs(t, err, ErrNotFound)
}
