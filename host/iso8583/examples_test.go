package iso8583

import (
	"bufio"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valuechip/valuechip/apdu/purse"
)

// Test keys and data of docs/iso8583.md §10, never to be used for real value.
// K_LOAD, K_DEBIT and K_TC are the card keys of docs/purse.md §10.1.
var (
	exTMK    = mustKey("404142434445464748494A4B4C4D4E4F")
	exWK     = mustKey("505152535455565758595A5B5C5D5E5F")
	exSeed   = Seed{ID: 1, Key: mustKey("606162636465666768696A6B6C6D6E6F"), NotAfter: time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC)}
	exKLoad  = mustKey("45794050CEEB81144E2E6F22409A777A")
	exKDebit = mustKey("66A1C0889A6AA1E2F51F2858F117E783")
	exKTC    = mustKey("2780A64D8D8725FFF4C21C634718A104")
	exCardID = purse.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	exTID    = purse.TerminalID([]byte("TERM0001"))
	exEUR    = purse.Currency{0x09, 0x78}
	exNow    = time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
)

func mustKey(s string) Key {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return Key(b)
}

func mustDT(t time.Time) purse.DateTime {
	d, err := purse.DateTimeOf(t)
	if err != nil {
		panic(err)
	}
	return d
}

// exLoad is the load of the examples: €20.00 onto an empty purse, ATC' 1.
func exLoad(t testing.TB) (purse.LoadData, purse.Nonce, purse.Nonce, purse.MAC, purse.MAC) {
	cardNonce := purse.Nonce{0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7}
	hostNonce := purse.Nonce{0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47}
	d := purse.LoadData{CardID: exCardID, ATC: 1, Amount: 2000, Currency: exEUR, Balance: 0,
		TerminalID: exTID, DateTime: mustDT(exNow.Add(5 * time.Minute)), AuthRef: 1}
	skL, err := purse.LoadSessionKey(exKLoad, exCardID, d.ATC, cardNonce, hostNonce)
	require.NoError(t, err)
	s1, err := purse.ComputeS1(skL, d)
	require.NoError(t, err)
	s2, err := purse.ComputeS2(skL, d, s1)
	require.NoError(t, err)
	return d, cardNonce, hostNonce, s1, s2
}

// exDebitRecord is the log record of an offline debit of €3.50 at ATC' 2.
func exDebitRecord(t testing.TB) purse.LogRecord {
	cardNonce := purse.Nonce{0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7}
	tsmNonce := purse.Nonce{0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57}
	d := purse.DebitData{CardID: exCardID, ATC: 2, Amount: 350, Currency: exEUR, Balance: 2000,
		TerminalID: exTID, TSMSeq: 7, DateTime: mustDT(exNow.Add(10 * time.Minute))}
	skD, err := purse.DebitSessionKey(exKDebit, exCardID, d.ATC, cardNonce, tsmNonce)
	require.NoError(t, err)
	m1, err := purse.ComputeM1(skD, d)
	require.NoError(t, err)
	m2, err := purse.ComputeM2(skD, d, m1)
	require.NoError(t, err)
	r := purse.LogRecord{ATC: 2, Type: purse.TypeDebit, Amount: 350, BalanceAfter: 1650, Currency: exEUR,
		DateTime: d.DateTime, TerminalID: exTID, Reference: 7, HostMAC: m1, CardMAC: m2}
	r.TC, err = purse.ComputeTC(exKTC, exCardID, r)
	require.NoError(t, err)
	return r
}

func packExample(t testing.TB, v any, key Key, seed *Seed) []byte {
	msg, err := Marshal(v)
	require.NoError(t, err)
	if seed != nil {
		require.NoError(t, seed.SetTxnNumber(msg))
	}
	raw, err := Pack(msg, key)
	require.NoError(t, err)
	return raw
}

func iccBytes(t testing.TB, d ICCData) []byte {
	b, err := d.Encode()
	require.NoError(t, err)
	return b
}

// exampleMessages builds the worked examples of docs/iso8583.md §10.
func exampleMessages(t testing.TB) map[string][]byte {
	d, cardNonce, hostNonce, s1, s2 := exLoad(t)
	keys, err := SignOnKeys{WorkingKey: exWK, Seed: exSeed}.Encode(exTMK)
	require.NoError(t, err)
	rec := exDebitRecord(t)
	out := map[string][]byte{
		"signon-request": packExample(t, &NetworkManagement{MTI: "0800", Transmission: "1121080000",
			STAN: "000001", TerminalID: "TERM0001", NetworkCode: NMISignOn}, exTMK, nil),
		"signon-response": packExample(t, &NetworkManagement{MTI: "0810", Transmission: "1121080000",
			STAN: "000001", ResponseCode: RCApproved, TerminalID: "TERM0001", KeyData: keys,
			NetworkCode: NMISignOn}, exTMK, nil),
		"load-request": packExample(t, &Load{MTI: "0200", PAN: "1122334455667788", ProcessingCode: PCLoad,
			Amount: 2000, Transmission: "1121080500", STAN: "000002", POSEntryMode: "072",
			TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", Currency: "978",
			ICC: iccBytes(t, ICCData{CardID: &exCardID, ATC: new(uint32(1)), Amount: new(uint32(2000)),
				Currency: &exEUR, BalanceBefore: new(uint32(0)), KeyVersion: new(byte(1)),
				CardNonce: &cardNonce, HostNonce: &hostNonce, S1: &s1})}, exWK, &exSeed),
		"load-response": packExample(t, &Load{MTI: "0210", PAN: "1122334455667788", ProcessingCode: PCLoad,
			Amount: 2000, Transmission: "1121080500", STAN: "000002", AuthID: "000001",
			ResponseCode: RCApproved, TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", Currency: "978",
			AdditionalAmounts: "0002978C000000002000",
			ICC: iccBytes(t, ICCData{ATC: new(uint32(1)), BalanceAfter: new(uint32(2000)),
				S2: &s2, DateTime: &d.DateTime, AuthRef: new(d.AuthRef)})}, exWK, nil),
		"debit-advice": packExample(t, &Advice{MTI: "0220", PAN: "1122334455667788", ProcessingCode: PCPurchase,
			Amount: 350, Transmission: "1121081500", STAN: "000003", POSEntryMode: "072",
			TerminalID: "TERM0001", MerchantID: "MERCHANT0000001", Currency: "978",
			ICC: iccBytes(t, ICCData{CardID: &exCardID, LogRecord: &rec})}, exWK, &exSeed),
	}
	lr, err := Unpack(out["load-request"])
	require.NoError(t, err)
	out["load-request-tn-input"], err = TxnNumberInput(exSeed.ID, lr)
	require.NoError(t, err)
	return out
}

// docExamples reads the ```hex <name> blocks of docs/iso8583.md.
func docExamples(t *testing.T) map[string][]byte {
	f, err := os.Open("../../docs/iso8583.md")
	require.NoError(t, err)
	defer f.Close()
	out := map[string][]byte{}
	var name string
	var buf strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case name == "" && strings.HasPrefix(line, "```hex "):
			name = strings.TrimPrefix(line, "```hex ")
			buf.Reset()
		case name != "" && line == "```":
			b, err := hex.DecodeString(buf.String())
			require.NoError(t, err, name)
			out[name] = b
			name = ""
		case name != "":
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			buf.WriteString(strings.Join(strings.Fields(line), ""))
		}
	}
	require.NoError(t, sc.Err())
	return out
}

func TestDocExamples(t *testing.T) {
	built := exampleMessages(t)
	doc := docExamples(t)
	for name, want := range built {
		t.Run(name, func(t *testing.T) {
			if testing.Verbose() {
				t.Logf("%s\n%X", name, want)
			}
			got, ok := doc[name]
			require.True(t, ok, "docs/iso8583.md has no ```hex %s block", name)
			require.Equal(t, strings.ToUpper(hex.EncodeToString(want)), strings.ToUpper(hex.EncodeToString(got)))
			if strings.HasSuffix(name, "-input") {
				return
			}
			msg, err := Unpack(got)
			require.NoError(t, err)
			key := exWK
			if mti, _ := msg.GetMTI(); mti[:2] == "08" {
				key = exTMK
			}
			require.NoError(t, VerifyMAC(msg, got, key))
			if _, ok := msg.GetFields()[DETxnNumber]; ok {
				require.NoError(t, exSeed.VerifyTxnNumber(msg, exNow))
			}
		})
	}
}
