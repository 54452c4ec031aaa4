package iso8583

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valuechip/valuechip/apdu/purse"
)

// allMTIs holds one message of every MTI of docs/iso8583.md §2 and the
// struct it unmarshals into.
func allMTIs(t *testing.T) []struct {
	name string
	in   any
	out  func() any
} {
	icc := iccBytes(t, ICCData{CardID: &exCardID, ATC: new(uint32(5))})
	txn := func(mti, pc string, amount int64, rc string) Transaction {
		return Transaction{MTI: mti, PAN: "1122334455667788", ProcessingCode: pc, Amount: amount,
			Transmission: "1121080000", STAN: "000042", POSEntryMode: "072", ResponseCode: rc,
			TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", Currency: "978", ICC: icc}
	}
	rev := func(mti, rc string) *Reversal {
		return &Reversal{MTI: mti, PAN: "1122334455667788", ProcessingCode: PCLoad, Amount: 2000,
			Transmission: "1121080100", STAN: "000043", ResponseCode: rc, TerminalID: "TERM0001",
			MerchantID: "MERCHANT0000001", Currency: "978", ICC: icc,
			OriginalData: "0200" + "000002" + "1121080500" + strings.Repeat("0", 22)}
	}
	recon := func(mti, rc, sc string) *Reconciliation {
		return &Reconciliation{MTI: mti, Transmission: "1121200000", STAN: "000044", ResponseCode: rc,
			TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", Currency: "978", SettlementCode: sc,
			CreditsCount: "0000000001", CreditRevCount: "0000000000", DebitsCount: "0000000001",
			DebitRevCount: "0000000000", CreditsAmount: "0000000000002000", CreditRevAmount: "0000000000000000",
			DebitsAmount: "0000000000000350", DebitRevAmount: "0000000000000000", NetSettlement: "C0000000000001650"}
	}
	b0100, b0110 := BalanceInquiry(txn("0100", PCBalance, 0, "")), BalanceInquiry(txn("0110", PCBalance, 0, "00"))
	b0110.AdditionalAmounts, b0110.ICC = "0002978C000000002000", nil
	l0200, l0210 := Load(txn("0200", PCLoad, 2000, "")), Load(txn("0210", PCLoad, 2000, "51"))
	a0220, a0221, a0230 := Advice(txn("0220", PCPurchase, 350, "")), Advice(txn("0221", PCPurchase, 350, "")), Advice(txn("0230", PCPurchase, 350, "94"))
	return []struct {
		name string
		in   any
		out  func() any
	}{
		{"0800 sign-on", &NetworkManagement{MTI: "0800", Transmission: "1121080000", STAN: "000001", TerminalID: "TERM0001", NetworkCode: NMISignOn}, func() any { return &NetworkManagement{} }},
		{"0810 sign-on", &NetworkManagement{MTI: "0810", Transmission: "1121080000", STAN: "000001", ResponseCode: "00", TerminalID: "TERM0001", KeyData: []byte{0xDF, 0x01, 0x00}, NetworkCode: NMISignOn}, func() any { return &NetworkManagement{} }},
		{"0800 echo", &NetworkManagement{MTI: "0800", Transmission: "1121080000", STAN: "000009", TerminalID: "TERM0001", NetworkCode: NMIEcho}, func() any { return &NetworkManagement{} }},
		{"0800 sign-off", &NetworkManagement{MTI: "0800", Transmission: "1121080000", STAN: "000010", TerminalID: "TERM0001", NetworkCode: NMISignOff}, func() any { return &NetworkManagement{} }},
		{"0100", &b0100, func() any { return &BalanceInquiry{} }},
		{"0110", &b0110, func() any { return &BalanceInquiry{} }},
		{"0200", &l0200, func() any { return &Load{} }},
		{"0210", &l0210, func() any { return &Load{} }},
		{"0220", &a0220, func() any { return &Advice{} }},
		{"0221", &a0221, func() any { return &Advice{} }},
		{"0230", &a0230, func() any { return &Advice{} }},
		{"0400", rev("0400", ""), func() any { return &Reversal{} }},
		{"0410", rev("0410", "00"), func() any { return &Reversal{} }},
		{"0420", rev("0420", ""), func() any { return &Reversal{} }},
		{"0421", rev("0421", ""), func() any { return &Reversal{} }},
		{"0430", rev("0430", "94"), func() any { return &Reversal{} }},
		{"0500", recon("0500", "", ""), func() any { return &Reconciliation{} }},
		{"0510", recon("0510", "00", SettlementInBalance), func() any { return &Reconciliation{} }},
	}
}

func TestRoundTripEveryMTI(t *testing.T) {
	for _, tc := range allMTIs(t) {
		t.Run(tc.name, func(t *testing.T) {
			for _, key := range []Key{nil, exWK} {
				msg, err := Marshal(tc.in)
				require.NoError(t, err)
				raw, err := Pack(msg, key)
				require.NoError(t, err)
				back, err := Unpack(raw)
				require.NoError(t, err)
				got := tc.out()
				require.NoError(t, Unmarshal(back, got))
				assert.Equal(t, tc.in, got)
				_, hasSecondary := back.GetFields()[DEMAC2]
				if key == nil {
					assert.ErrorIs(t, VerifyMAC(back, raw, exWK), ErrNoMAC)
					continue
				}
				require.NoError(t, VerifyMAC(back, raw, key))
				// MAC in DE 128 exactly when a secondary bitmap is present.
				assert.Equal(t, raw[4]&0x80 != 0, hasSecondary)
			}
		})
	}
}

func TestResponseMTI(t *testing.T) {
	for in, want := range map[string]string{"0800": "0810", "0100": "0110", "0200": "0210", "0220": "0230",
		"0221": "0230", "0400": "0410", "0420": "0430", "0421": "0430", "0500": "0510"} {
		got, err := ResponseMTI(in)
		require.NoError(t, err)
		assert.Equal(t, want, got, in)
		assert.True(t, IsResponse(got))
		assert.False(t, IsResponse(in))
	}
	for _, bad := range []string{"0210", "0230", "02", "02A0", "0240"} {
		_, err := ResponseMTI(bad)
		assert.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestMACTamper(t *testing.T) {
	raw := exampleMessages(t)["load-request"]
	msg, err := Unpack(raw)
	require.NoError(t, err)
	require.NoError(t, VerifyMAC(msg, raw, exWK))
	assert.ErrorIs(t, VerifyMAC(msg, raw, exTMK), ErrMAC, "wrong key")
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x01
		m, err := Unpack(bad)
		if err != nil {
			assert.ErrorIs(t, err, ErrMalformed, "byte %d", i)
			continue
		}
		assert.ErrorIs(t, VerifyMAC(m, bad, exWK), ErrMAC, "byte %d", i)
	}
	_, err = ComputeMAC(Key{1, 2, 3}, raw)
	assert.ErrorIs(t, err, ErrBadKey)
}

func TestTxnNumber(t *testing.T) {
	raw := exampleMessages(t)["load-request"]
	fresh := func() *Load {
		msg, err := Unpack(raw)
		require.NoError(t, err)
		v := &Load{}
		require.NoError(t, Unmarshal(msg, v))
		return v
	}
	check := func(v *Load) error {
		msg, err := Marshal(v)
		require.NoError(t, err)
		return exSeed.VerifyTxnNumber(msg, exNow)
	}
	require.NoError(t, check(fresh()))
	otherICC := iccBytes(t, ICCData{CardID: &exCardID, ATC: new(uint32(9))})
	for name, alter := range map[string]func(*Load){
		"amount":    func(v *Load) { v.Amount++ },
		"PAN":       func(v *Load) { v.PAN = "1122334455667789" },
		"proc code": func(v *Load) { v.ProcessingCode = PCPurchase },
		"DE 7":      func(v *Load) { v.Transmission = "1121080501" },
		"STAN":      func(v *Load) { v.STAN = "000003" },
		"terminal":  func(v *Load) { v.TerminalID = "TERM0002" },
		"merchant":  func(v *Load) { v.MerchantID = "MERCHANT0000002" },
		"currency":  func(v *Load) { v.Currency = "840" },
		"DE 55":     func(v *Load) { v.ICC = otherICC },
		"MTI class": func(v *Load) { v.MTI = "0100" },
		"number":    func(v *Load) { v.TxnNumber[11] ^= 1 },
	} {
		v := fresh()
		alter(v)
		assert.ErrorIs(t, check(v), ErrTxnNumber, name)
	}
	// A repeat (origin digit changed) keeps its number.
	v := fresh()
	v.MTI = "0201"
	assert.NoError(t, check(v))
	// Expired or foreign seed.
	msg, err := Unpack(raw)
	require.NoError(t, err)
	assert.ErrorIs(t, exSeed.VerifyTxnNumber(msg, exSeed.NotAfter.Add(time.Second)), ErrSeedExpired)
	other := exSeed
	other.ID = 2
	assert.ErrorIs(t, other.VerifyTxnNumber(msg, exNow), ErrSeedExpired)
	msg.UnsetField(DETxnNumber)
	assert.ErrorIs(t, exSeed.VerifyTxnNumber(msg, exNow), ErrTxnNumber)
}

func TestSignOnKeys(t *testing.T) {
	block, err := SignOnKeys{WorkingKey: exWK, Seed: exSeed}.Encode(exTMK)
	require.NoError(t, err)
	k, err := DecodeSignOnKeys(block, exTMK)
	require.NoError(t, err)
	assert.True(t, k.WorkingKey.Equal(exWK))
	assert.True(t, k.Seed.Key.Equal(exSeed.Key))
	assert.Equal(t, exSeed.ID, k.Seed.ID)
	assert.True(t, exSeed.NotAfter.Equal(k.Seed.NotAfter))
	_, err = DecodeSignOnKeys(block, exWK)
	assert.ErrorIs(t, err, ErrBadKey, "wrong TMK fails the KCV")
	_, err = DecodeSignOnKeys(block[:len(block)-1], exTMK)
	assert.ErrorIs(t, err, ErrMalformed)
	// Keys never print.
	s := fmt.Sprintf("%v %+v %#v %x", k, k, k, k)
	assert.NotContains(t, strings.ToUpper(s), "505152535455")
	assert.NotContains(t, strings.ToUpper(s), "606162636465")
}

func TestICCData(t *testing.T) {
	rec := exDebitRecord(t)
	mac := purse.MAC{1, 2, 3, 4, 5, 6, 7, 8}
	nonce := purse.Nonce{8, 7, 6, 5, 4, 3, 2, 1}
	dt := mustDT(exNow)
	full := ICCData{CardID: &exCardID, ATC: new(uint32(7)), Amount: new(uint32(100)), Currency: &exEUR,
		BalanceBefore: new(uint32(0)), BalanceAfter: new(uint32(100)), KeyVersion: new(byte(1)),
		CardNonce: &nonce, HostNonce: &nonce, S1: &mac, S2: &mac, DateTime: &dt, AuthRef: new(uint32(3)),
		TC: &mac, LogRecord: &rec, M1: &mac}
	for name, d := range map[string]ICCData{"empty": {}, "full": full, "advice": {CardID: &exCardID, LogRecord: &rec}} {
		b, err := d.Encode()
		require.NoError(t, err)
		got, err := DecodeICC(b)
		require.NoError(t, err, name)
		assert.Equal(t, d, got, name)
	}
	for name, b := range map[string][]byte{
		"unknown tag": {0xDF, 0x7F, 0x01, 0x00},
		"short ATC":   {0xDF, 0x61, 0x03, 0, 0, 1},
		"short card":  {0xDF, 0x60, 0x01, 0x11},
		"repeated":    {0xDF, 0x66, 0x01, 0x01, 0xDF, 0x66, 0x01, 0x01},
		"truncated":   {0xDF, 0x60, 0x08, 0x11},
		"bad record":  append([]byte{0xDF, 0x6E, 0x3A}, make([]byte, 58)...),
	} {
		_, err := DecodeICC(b)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}

func TestPAN(t *testing.T) {
	pan, err := PANOf(exCardID)
	require.NoError(t, err)
	assert.Equal(t, "1122334455667788", pan)
	id, err := CardIDOf(pan)
	require.NoError(t, err)
	assert.Equal(t, exCardID, id)
	_, err = PANOf(purse.CardID{0xAB})
	assert.ErrorIs(t, err, ErrMalformed)
	for _, bad := range []string{"112233445566778", "11223344556677A8", ""} {
		_, err = CardIDOf(bad)
		assert.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestUnpackMalformed(t *testing.T) {
	good := exampleMessages(t)["load-request"]
	signOn := exampleMessages(t)["signon-request"]
	withSecondaryEmpty := bytes.Clone(good)
	withSecondaryEmpty[4] |= 0x80
	numericPAN := bytes.Clone(good)
	numericPAN[14] = 'A' // inside DE 2
	badMTI := bytes.Clone(good)
	badMTI[0] = '1'
	mac64in2nd := bytes.Clone(signOn)
	mac64in2nd[11] |= 0x01 // DE 64 flag alongside a secondary bitmap
	for name, raw := range map[string][]byte{
		"empty":               {},
		"short MTI":           []byte("02"),
		"MTI only":            []byte("0200"),
		"version 1 MTI":       badMTI,
		"trailing byte":       append(bytes.Clone(good), 0),
		"truncated":           good[:len(good)-1],
		"empty secondary":     withSecondaryEmpty,
		"non-numeric PAN":     numericPAN,
		"DE 64 and secondary": mac64in2nd,
		"undefined field":     append([]byte("0200"), 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02),
	} {
		_, err := Unpack(raw)
		assert.ErrorIs(t, err, ErrMalformed, name)
	}
}

func TestFraming(t *testing.T) {
	msg := exampleMessages(t)["signon-request"]
	var buf bytes.Buffer
	require.NoError(t, WriteMessage(&buf, msg))
	assert.Equal(t, []byte{0x00, 0x37}, buf.Bytes()[:2])
	got, err := ReadMessage(&buf, 1024)
	require.NoError(t, err)
	assert.Equal(t, msg, got)
	_, err = ReadMessage(&buf, 1024)
	assert.Equal(t, io.EOF, err)

	assert.ErrorIs(t, WriteMessage(io.Discard, make([]byte, MaxFrame+1)), ErrOversize)
	assert.ErrorIs(t, WriteMessage(io.Discard, nil), ErrMalformed)
	for name, tc := range map[string]struct {
		in   []byte
		max  int
		want error
	}{
		"oversize":         {[]byte{0x04, 0x01}, 1024, ErrOversize},
		"over protocol":    {[]byte{0xFF, 0xFF}, 0, nil},
		"zero length":      {[]byte{0x00, 0x00}, 1024, ErrMalformed},
		"half header":      {[]byte{0x00}, 1024, io.ErrUnexpectedEOF},
		"short body":       {[]byte{0x00, 0x05, 'a'}, 1024, io.ErrUnexpectedEOF},
		"exactly the max":  {append([]byte{0x00, 0x03}, "abc"...), 3, nil},
		"one over the max": {append([]byte{0x00, 0x04}, "abcd"...), 3, ErrOversize},
	} {
		_, err := ReadMessage(bytes.NewReader(tc.in), tc.max)
		if name == "over protocol" {
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, name) // 65535 allowed, body missing
			continue
		}
		if tc.want == nil {
			assert.NoError(t, err, name)
			continue
		}
		assert.ErrorIs(t, err, tc.want, name)
	}
}

// echoServer answers every request on conn with its response MTI, DE 39 00
// and a MAC under key, in reverse order of arrival per pair, to exercise
// STAN matching.
func echoServer(t *testing.T, conn net.Conn, key Key, pairs int) {
	defer conn.Close()
	for range pairs {
		var raws [2][]byte
		for i := range raws {
			raw, err := ReadMessage(conn, 0)
			if err != nil {
				return
			}
			raws[i] = raw
		}
		for i := len(raws) - 1; i >= 0; i-- {
			msg, err := Unpack(raws[i])
			if !assert.NoError(t, err) || !assert.NoError(t, VerifyMAC(msg, raws[i], key)) {
				return
			}
			mti, _ := msg.GetMTI()
			resp, _ := ResponseMTI(mti)
			msg.MTI(resp)
			assert.NoError(t, msg.Field(DEResponseCode, RCApproved))
			out, err := Pack(msg, key)
			assert.NoError(t, err)
			if WriteMessage(conn, out) != nil {
				return
			}
		}
	}
}

func TestClientOverPipe(t *testing.T) {
	cConn, sConn := net.Pipe()
	go echoServer(t, sConn, exWK, 1)
	c := NewClient(cConn, 0)
	defer c.Close()
	c.Timeout = 2 * time.Second

	type result struct {
		stan string
		err  error
	}
	results := make(chan result, 2)
	for _, stan := range []string{"000101", "000102"} {
		go func() {
			msg, err := Marshal(&NetworkManagement{MTI: "0800", Transmission: "1121080000", STAN: stan,
				TerminalID: "TERM0001", NetworkCode: NMIEcho})
			if err != nil {
				results <- result{err: err}
				return
			}
			resp, err := c.Send(context.Background(), msg, exWK)
			if err != nil {
				results <- result{err: err}
				return
			}
			got, _ := resp.GetString(DESTAN)
			rc, _ := resp.GetString(DEResponseCode)
			if got != stan || rc != RCApproved {
				err = fmt.Errorf("STAN %s answered by %s rc %s", stan, got, rc)
			}
			results <- result{stan: got, err: err}
		}()
	}
	for range 2 {
		r := <-results
		require.NoError(t, r.err)
	}
}

func TestClientTimeoutAndClose(t *testing.T) {
	cConn, sConn := net.Pipe()
	go func() { // reads and never answers
		for {
			if _, err := ReadMessage(sConn, 0); err != nil {
				return
			}
		}
	}()
	c := NewClient(cConn, 0)
	c.Timeout = 50 * time.Millisecond
	msg, err := Marshal(&NetworkManagement{MTI: "0800", Transmission: "1121080000", STAN: "000201",
		TerminalID: "TERM0001", NetworkCode: NMIEcho})
	require.NoError(t, err)
	_, err = c.Send(context.Background(), msg, exWK)
	assert.ErrorIs(t, err, ErrTimeout)
	// The STAN is free again after a timeout.
	_, err = c.Send(context.Background(), msg, exWK)
	assert.ErrorIs(t, err, ErrTimeout)

	noSTAN, err := Marshal(&NetworkManagement{MTI: "0800", NetworkCode: NMIEcho})
	require.NoError(t, err)
	_, err = c.Send(context.Background(), noSTAN, nil)
	assert.ErrorIs(t, err, ErrMalformed)

	require.NoError(t, c.Close())
	sConn.Close()
	_, err = c.Send(context.Background(), msg, exWK)
	assert.ErrorIs(t, err, ErrClosed)
}

func TestClientRejectsBadResponseMAC(t *testing.T) {
	cConn, sConn := net.Pipe()
	go func() {
		defer sConn.Close()
		raw, err := ReadMessage(sConn, 0)
		if err != nil {
			return
		}
		msg, _ := Unpack(raw)
		msg.MTI("0810")
		out, _ := Pack(msg, exTMK) // wrong key
		_ = WriteMessage(sConn, out)
	}()
	c := NewClient(cConn, 0)
	defer c.Close()
	msg, err := Marshal(&NetworkManagement{MTI: "0800", Transmission: "1121080000", STAN: "000301",
		TerminalID: "TERM0001", NetworkCode: NMIEcho})
	require.NoError(t, err)
	_, err = c.Send(context.Background(), msg, exWK)
	assert.ErrorIs(t, err, ErrMAC)
}

func TestResponseCode(t *testing.T) {
	_, malformed := Unpack([]byte("0200"))
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, RCApproved},
		{malformed, RCFormatError},
		{fmt.Errorf("x: %w", ErrMAC), RCSecurityViolation},
		{ErrNoMAC, RCSecurityViolation},
		{ErrTxnNumber, RCSecurityViolation},
		{ErrSeedExpired, RCSecurityViolation},
		{ErrBadKey, RCSystemMalfunction},
		{io.ErrUnexpectedEOF, RCSystemMalfunction},
	} {
		assert.Equal(t, tc.want, ResponseCode(tc.err), "%v", tc.err)
	}
}
