package purse

import (
	"bytes"
	"crypto/aes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/cmac"
	"github.com/valuechip/valuechip/apdu/gp"
)

// TestSpecExamples recomputes every value of the worked examples of
// docs/purse.md §10 from the formulas of §5, written out here byte by byte
// (SP 800-108 input blocks, MAC inputs) with crypto/aes and apdu/cmac
// only — not with this package's builders — and checks the package's
// functions and parsers agree. applet/purse replays the exchanges on the
// card.

func loadSpecExamples(t *testing.T) map[string]Example {
	t.Helper()
	doc, err := os.ReadFile("../../docs/purse.md")
	require.NoError(t, err)
	list, err := ParseExamples(doc)
	require.NoError(t, err)
	out := map[string]Example{}
	for _, e := range list {
		out[e.Name] = e
	}
	for _, name := range []string{"keys", "personalisation", "select", "load", "debit", "pin", "proof", "status"} {
		require.Contains(t, out, name)
	}
	return out
}

func val(t *testing.T, e Example, name string) []byte {
	t.Helper()
	v, err := e.Value(name)
	require.NoError(t, err)
	return v
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func u32b(v uint32) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

// rawCMAC is AES-CMAC of msg (RFC 4493) through apdu/cmac's one-shot API.
func rawCMAC(t *testing.T, key, msg []byte) []byte {
	t.Helper()
	s, err := cmac.Sum(key, msg)
	require.NoError(t, err)
	return s[:]
}

// rawKDF128 is one SP 800-108 block: CMAC(K, 00×11 || c || 00 || 0080 ||
// 01 || ctx), i.e. a 128-bit derived key (docs/purse.md §5.2).
func rawKDF128(t *testing.T, key []byte, c byte, ctx []byte) []byte {
	t.Helper()
	return rawCMAC(t, key, cat(make([]byte, 11), []byte{c, 0x00, 0x00, 0x80, 0x01}, ctx))
}

// exchange returns the i-th step's command and response.
func exchange(t *testing.T, e Example, i int) (apdu.Command, apdu.Response) {
	t.Helper()
	require.Greater(t, len(e.Steps), i, "example %s", e.Name)
	cmd, err := apdu.ParseCommand(e.Steps[i].Command)
	require.NoError(t, err)
	rsp, err := apdu.ParseResponse(e.Steps[i].Response)
	require.NoError(t, err)
	return cmd, rsp
}

func TestSpecExamples(t *testing.T) {
	ex := loadSpecExamples(t)

	// §10.1: card keys and KCVs.
	keys := ex["keys"]
	id := val(t, keys, "CardID")
	var cardID CardID
	copy(cardID[:], id)
	require.Equal(t, cat(make([]byte, 11), []byte{0x51, 0, 0, 0x80, 1}, id), val(t, keys, "KDF_input"))
	kLoad := rawKDF128(t, val(t, keys, "MK_LOAD"), 0x51, id)
	kDebit := rawKDF128(t, val(t, keys, "MK_DEBIT"), 0x52, id)
	kTC := rawKDF128(t, val(t, keys, "MK_TC"), 0x53, id)
	require.Equal(t, kLoad, val(t, keys, "K_LOAD"))
	require.Equal(t, kDebit, val(t, keys, "K_DEBIT"))
	require.Equal(t, kTC, val(t, keys, "K_TC"))
	masters := Keys{Load: VersionedKey{1, val(t, keys, "MK_LOAD")}, Debit: VersionedKey{1, val(t, keys, "MK_DEBIT")}, TC: VersionedKey{1, val(t, keys, "MK_TC")}}
	card, err := masters.Diversify(cardID)
	require.NoError(t, err)
	require.Equal(t, kLoad, []byte(card.Load.Key))
	require.Equal(t, kDebit, []byte(card.Debit.Key))
	require.Equal(t, kTC, []byte(card.TC.Key))
	kcv := func(k []byte) []byte {
		b, err := aes.NewCipher(k)
		require.NoError(t, err)
		out := make([]byte, 16)
		b.Encrypt(out, bytes.Repeat([]byte{1}, 16))
		return out[:3]
	}
	require.Equal(t, kcv(kLoad), val(t, keys, "KCV_LOAD"))
	require.Equal(t, kcv(kDebit), val(t, keys, "KCV_DEBIT"))
	require.Equal(t, kcv(kTC), val(t, keys, "KCV_TC"))

	// §10.2: the STORE DATA blocks, byte by byte.
	perso := ex["personalisation"]
	pin := val(t, perso, "PIN_block")
	require.Equal(t, []byte{0x24, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, pin)
	limits := val(t, perso, "Limits")
	eur := []byte{0x09, 0x78}
	block0 := cat([]byte{0x01, 0x01, 8}, id, []byte{0x01, 0x02, 2}, eur, []byte{0x01, 0x03, 20}, limits, []byte{0x03, 0x01, 9, 3}, pin)
	keyDGI := func(tag byte, k []byte) []byte { return cat([]byte{0x02, tag, 20, 1}, k, kcv(k)) }
	block1 := cat(keyDGI(1, kLoad), keyDGI(2, kDebit), keyDGI(3, kTC))
	c0, _ := exchange(t, perso, 0)
	c1, _ := exchange(t, perso, 1)
	require.Equal(t, apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x08, P2: 0x00, Data: block0}, c0)
	require.Equal(t, apdu.Command{CLA: 0x80, INS: 0xE2, P1: 0x88, P2: 0x01, Data: block1}, c1)
	lim, err := ParseLimits(limits)
	require.NoError(t, err)
	p := Personalization{CardID: cardID, Currency: Currency{0x09, 0x78}, Limits: lim, Keys: card, PIN: pin, PINTries: 3}
	cmds, err := p.StoreData()
	require.NoError(t, err)
	require.Equal(t, []apdu.Command{c0, c1}, cmds)
	dgis0, err := gp.ParseDGIs(block0)
	require.NoError(t, err)
	dgis1, err := gp.ParseDGIs(block1)
	require.NoError(t, err)
	back, err := ParsePersonalization(append(dgis0, dgis1...))
	require.NoError(t, err)
	require.Equal(t, p.String(), back.String())

	// §10.3: FCI and purse data parse.
	sel := ex["select"]
	_, rsp := exchange(t, sel, 0)
	fci, err := ParseFCI(rsp.Data)
	require.NoError(t, err)
	require.Equal(t, FCI{AID: AID(), Version: 0x0100, LifeCycle: StateActive, CardID: cardID, Currency: Currency{0x09, 0x78},
		KeyVersions: [3]byte{1, 1, 1}, PINFreeLimit: 2500, LogCapacity: 16}, fci)
	b, err := fci.Bytes()
	require.NoError(t, err)
	require.Equal(t, rsp.Data, b)

	// §10.4: load.
	load := ex["load"]
	cmd, rsp := exchange(t, load, 0)
	require.Equal(t, apdu.SWNoError, rsp.SW)
	il, err := ParseInitializeLoad(cmd.Data)
	require.NoError(t, err)
	ilr, err := ParseInitializeLoadResponse(rsp.Data)
	require.NoError(t, err)
	require.Equal(t, val(t, load, "card_random"), ilr.CardNonce[:])
	require.Equal(t, val(t, load, "HostNonce"), il.HostNonce[:])
	ctx := cat(id, u32b(ilr.ATC), ilr.CardNonce[:], il.HostNonce[:])
	require.Equal(t, ctx, val(t, load, "SK_L_context"))
	skL := rawKDF128(t, kLoad, 0x41, ctx)
	require.Equal(t, skL, val(t, load, "SK_L"))
	s1in := cat([]byte("L1"), id, u32b(ilr.ATC), u32b(il.Amount), eur, u32b(ilr.Balance), il.TerminalID[:])
	require.Equal(t, s1in, val(t, load, "S1_input"))
	s1 := rawCMAC(t, skL, s1in)[:8]
	require.Equal(t, s1, val(t, load, "S1"))
	require.Equal(t, s1, ilr.S1[:], "the card's S1")
	cmd, rsp = exchange(t, load, 1)
	cl, err := ParseCreditLoad(cmd.Data)
	require.NoError(t, err)
	require.Equal(t, val(t, load, "DateTime"), cl.DateTime[:])
	require.Equal(t, val(t, load, "AuthRef"), u32b(cl.AuthRef))
	s2in := cat([]byte("L2"), s1, u32b(ilr.ATC), u32b(il.Amount), cl.DateTime[:], u32b(cl.AuthRef))
	require.Equal(t, s2in, val(t, load, "S2_input"))
	s2 := rawCMAC(t, skL, s2in)[:8]
	require.Equal(t, s2, val(t, load, "S2"))
	require.Equal(t, s2, cl.S2[:])
	clr, err := ParseCreditLoadResponse(rsp.Data)
	require.NoError(t, err)
	after := ilr.Balance + il.Amount
	require.Equal(t, CreditLoadResponse{BalanceAfter: after, ATC: ilr.ATC, TC: clr.TC}, clr)
	loadRecord := cat(u32b(ilr.ATC), []byte{0x02}, u32b(il.Amount), u32b(after), eur, cl.DateTime[:], il.TerminalID[:], u32b(cl.AuthRef), s2, s1)
	tcin := cat([]byte("TC"), id, loadRecord)
	require.Equal(t, tcin, val(t, load, "TC_input"))
	tc := rawCMAC(t, kTC, tcin)[:8]
	require.Equal(t, tc, val(t, load, "TC"))
	require.Equal(t, tc, clr.TC[:])
	// The package's functions give the same.
	ld := LoadData{CardID: cardID, ATC: ilr.ATC, Amount: il.Amount, Currency: il.Currency, Balance: ilr.Balance, TerminalID: il.TerminalID, DateTime: cl.DateTime, AuthRef: cl.AuthRef}
	sk, err := LoadSessionKey(kLoad, cardID, ilr.ATC, ilr.CardNonce, il.HostNonce)
	require.NoError(t, err)
	require.Equal(t, skL, []byte(sk))
	gotS1, err := ComputeS1(sk, ld)
	require.NoError(t, err)
	require.Equal(t, s1, gotS1[:])
	gotS2, err := ComputeS2(sk, ld, gotS1)
	require.NoError(t, err)
	require.Equal(t, s2, gotS2[:])
	lr, err := ParseLogRecord(append(loadRecord, tc...))
	require.NoError(t, err)
	require.True(t, VerifyTC(kTC, cardID, lr))

	// §10.5: debit.
	debit := ex["debit"]
	cmd, rsp = exchange(t, debit, 0)
	idb, err := ParseInitializeDebit(cmd.Data)
	require.NoError(t, err)
	idr, err := ParseInitializeDebitResponse(rsp.Data)
	require.NoError(t, err)
	require.Equal(t, val(t, debit, "card_random"), idr.CardNonce[:])
	cmd, rsp = exchange(t, debit, 1)
	dc, err := ParseDebit(cmd.Data)
	require.NoError(t, err)
	require.Equal(t, val(t, debit, "TSMNonce"), dc.TSMNonce[:])
	require.Equal(t, val(t, debit, "TSMSeq"), u32b(dc.TSMSeq))
	require.Equal(t, val(t, debit, "DateTime"), dc.DateTime[:])
	ctx = cat(id, u32b(idr.ATC), idr.CardNonce[:], dc.TSMNonce[:])
	require.Equal(t, ctx, val(t, debit, "SK_D_context"))
	skD := rawKDF128(t, kDebit, 0x42, ctx)
	require.Equal(t, skD, val(t, debit, "SK_D"))
	m1in := cat([]byte("D1"), id, u32b(idr.ATC), u32b(idb.Amount), eur, u32b(idr.Balance), idb.TerminalID[:], u32b(dc.TSMSeq), dc.DateTime[:])
	require.Equal(t, m1in, val(t, debit, "M1_input"))
	m1 := rawCMAC(t, skD, m1in)[:8]
	require.Equal(t, m1, val(t, debit, "M1"))
	require.Equal(t, m1, dc.M1[:])
	dr, err := ParseDebitResponse(rsp.Data)
	require.NoError(t, err)
	dafter := idr.Balance - idb.Amount
	m2in := cat([]byte("D2"), m1, u32b(idr.ATC), u32b(idb.Amount), u32b(dafter))
	require.Equal(t, m2in, val(t, debit, "M2_input"))
	m2 := rawCMAC(t, skD, m2in)[:8]
	require.Equal(t, m2, val(t, debit, "M2"))
	require.Equal(t, m2, dr.M2[:])
	debitRecord := cat(u32b(idr.ATC), []byte{0x06}, u32b(idb.Amount), u32b(dafter), eur, dc.DateTime[:], idb.TerminalID[:], u32b(dc.TSMSeq), m1, m2)
	tcin = cat([]byte("TC"), id, debitRecord)
	require.Equal(t, tcin, val(t, debit, "TC_input"))
	tc = rawCMAC(t, kTC, tcin)[:8]
	require.Equal(t, tc, val(t, debit, "TC"))
	require.Equal(t, DebitResponse{BalanceAfter: dafter, ATC: idr.ATC, M2: dr.M2, TC: dr.TC}, dr)
	require.Equal(t, tc, dr.TC[:])
	dd := DebitData{CardID: cardID, ATC: idr.ATC, Amount: idb.Amount, Currency: idb.Currency, Balance: idr.Balance, TerminalID: idb.TerminalID, TSMSeq: dc.TSMSeq, DateTime: dc.DateTime}
	skd, err := DebitSessionKey(kDebit, cardID, idr.ATC, idr.CardNonce, dc.TSMNonce)
	require.NoError(t, err)
	gotM1, err := ComputeM1(skd, dd)
	require.NoError(t, err)
	require.Equal(t, m1, gotM1[:])
	gotM2, err := ComputeM2(skd, dd, gotM1)
	require.NoError(t, err)
	require.Equal(t, m2, gotM2[:])

	// §10.7: the proof and the log records are the records above.
	proof := ex["proof"]
	_, rsp = exchange(t, proof, 1)
	require.Equal(t, cat(debitRecord, tc), rsp.Data)
	_, rsp = exchange(t, proof, 3)
	require.Equal(t, loadRecord, rsp.Data[:50])
	for _, i := range []int{1, 2, 3} {
		_, rsp = exchange(t, proof, i)
		r, err := ParseLogRecord(rsp.Data)
		require.NoError(t, err)
		require.True(t, VerifyTC(kTC, cardID, r), "record of step %d", i)
		require.Equal(t, rsp.Data, r.Bytes())
	}

	// §10.6: the PIN blocks.
	pinEx := ex["pin"]
	c, _ := exchange(t, pinEx, 1)
	require.Equal(t, []byte{0x24, 0x11, 0x11, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, c.Data)

	// §10.8: SET STATUS MACs.
	st := ex["status"]
	rands := [][]byte{}
	for _, v := range st.Values {
		if v.Name == "card_random" {
			rands = append(rands, v.Value)
		}
	}
	require.Len(t, rands, 2)
	for i, what := range []string{"block", "unblock"} {
		op := byte(i + 1)
		skS := rawKDF128(t, kLoad, 0x44, cat(id, rands[i]))
		require.Equal(t, skS, val(t, st, "SK_S_"+what))
		in := cat([]byte("ST"), id, u32b(2), []byte{op, 0x01})
		require.Equal(t, in, val(t, st, "ST_input_"+what))
		require.Equal(t, rawCMAC(t, skS, in)[:8], val(t, st, "MAC_"+what))
	}
}
