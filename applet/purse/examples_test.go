package purse_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/purse"
)

// The worked examples of docs/purse.md §10 are produced by running the
// scenario below on the emulated card. TestWorkedExamplesUpToDate fails
// when the document and the code disagree; `go test ./applet/purse/ -run
// TestWorkedExamplesUpToDate -update` rewrites the blocks.
// TestWorkedExamplesReplay replays the document's exchanges byte for
// byte, driven by the document alone.

var update = flag.Bool("update", false, "rewrite the worked examples in docs/purse.md")

const specPath = "../../docs/purse.md"

// exampleWriter renders one example block.
type exampleWriter struct {
	name  string
	lines []string
}

func (w *exampleWriter) comment(format string, a ...any) {
	w.lines = append(w.lines, "# "+fmt.Sprintf(format, a...))
}

// value writes "name = hex", the parts separated by spaces.
func (w *exampleWriter) value(name string, parts ...[]byte) {
	hx := make([]string, len(parts))
	for i, p := range parts {
		hx[i] = fmt.Sprintf("%X", p)
	}
	w.lines = append(w.lines, fmt.Sprintf("%-13s = %s", name, strings.Join(hx, " ")))
}

// split groups b by the field lengths (the rest in one last group).
func split(b []byte, fields ...int) string {
	var out []string
	for _, n := range fields {
		if len(b) < n {
			break
		}
		out = append(out, fmt.Sprintf("%X", b[:n]))
		b = b[n:]
	}
	if len(b) > 0 {
		out = append(out, fmt.Sprintf("%X", b))
	}
	return strings.Join(out, " ")
}

// exchange sends cmd and records it and the response, grouping command
// data and response data by field lengths.
func (w *exampleWriter) exchange(k *card, cmd apdu.Command, cmdFields, rspFields []int) []byte {
	k.t.Helper()
	raw, err := cmd.Bytes()
	require.NoError(k.t, err)
	var rsp []byte
	if cmd.CLA == gp.CLA && cmd.INS == gp.INSStoreData {
		data, sw := k.c.Factory().Personalize(purse.AID, cmd.P1, cmd.P2, cmd.Data)
		rsp = apdu.Response{Data: data, SW: sw}.Bytes()
	} else {
		rsp = k.raw(raw)
	}
	require.NotNil(k.t, rsp)
	line := fmt.Sprintf("> %X", raw[:4])
	if len(cmd.Data) > 0 {
		line += fmt.Sprintf(" %02X %s", len(cmd.Data), split(cmd.Data, cmdFields...))
	}
	if cmd.Ne > 0 {
		line += fmt.Sprintf(" %02X", byte(cmd.Ne))
	}
	w.lines = append(w.lines, line)
	data := rsp[:len(rsp)-2]
	if len(data) > 0 {
		w.lines = append(w.lines, fmt.Sprintf("< %s %X", split(data, rspFields...), rsp[len(rsp)-2:]))
	} else {
		w.lines = append(w.lines, fmt.Sprintf("< %X", rsp))
	}
	return data
}

func (w *exampleWriter) text() string { return strings.Join(w.lines, "\n") }

var (
	exampleRandom = [][]byte{
		{0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8}, // INITIALIZE LOAD
		{0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7, 0xD8}, // INITIALIZE DEBIT
		{0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8}, // INITIALIZE DEBIT with PIN
		{0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8}, // GET CHALLENGE (block)
		{0xB1, 0xB2, 0xB3, 0xB4, 0xB5, 0xB6, 0xB7, 0xB8}, // GET CHALLENGE (unblock)
	}
	lrFields = []int{4, 1, 4, 4, 2, 7, 8, 4, 8, 8, 8} // log record
)

// renderExamples runs the scenario of docs/purse.md §10 and returns the
// example blocks by name.
func renderExamples(t *testing.T) map[string]string {
	out := map[string]string{}
	rnd := bytes.NewReader(bytes.Join(exampleRandom, nil))
	c := newInstalledChip(t, chip.WithRandom(rnd))
	p := personalization(t, cardID, testLimits)
	k := &card{t: t, c: c, id: cardID, keys: p.Keys}

	// 10.1 keys
	w := &exampleWriter{name: "keys"}
	w.comment("issuer master keys, KVN 01")
	w.value("MK_LOAD", masters.Load.Key)
	w.value("MK_DEBIT", masters.Debit.Key)
	w.value("MK_TC", masters.TC.Key)
	w.value("CardID", cardID[:])
	w.comment("K_LOAD = KDF(MK_LOAD, 51, 0080, CardID): one CMAC of this input")
	w.value("KDF_input", make([]byte, 11), []byte{0x51, 0x00, 0x00, 0x80, 0x01}, cardID[:])
	w.value("K_LOAD", p.Keys.Load.Key)
	w.value("K_DEBIT", p.Keys.Debit.Key)
	w.value("K_TC", p.Keys.TC.Key)
	w.comment("key check values: AES(key, 01 x 16), first 3 bytes")
	for _, kk := range []struct {
		name string
		key  wire.Key
	}{{"KCV_LOAD", p.Keys.Load.Key}, {"KCV_DEBIT", p.Keys.Debit.Key}, {"KCV_TC", p.Keys.TC.Key}} {
		kcv, err := scp03.KCV(kk.key)
		require.NoError(t, err)
		w.value(kk.name, kcv[:])
	}
	out[w.name] = w.text()

	// 10.2 personalisation
	w = &exampleWriter{name: "personalisation"}
	w.value("PIN_block", p.PIN)
	w.comment("max balance 100000, max load 50000, max debit 10000, PIN-free 2500, offline 50000")
	w.value("Limits", p.Limits.Bytes()[0:4], p.Limits.Bytes()[4:8], p.Limits.Bytes()[8:12], p.Limits.Bytes()[12:16], p.Limits.Bytes()[16:20])
	w.comment("block 00: DGIs 0101 CardID, 0102 currency, 0103 limits, 0301 PIN try limit + PIN block")
	cmds, err := p.StoreData()
	require.NoError(t, err)
	w.exchange(k, cmds[0], []int{3, 8, 3, 2, 3, 20, 3, 1}, nil)
	w.comment("block 01 (last): DGIs 0201 K_LOAD, 0202 K_DEBIT, 0203 K_TC, each KVN | key | KCV")
	w.exchange(k, cmds[1], []int{3, 1, 16, 3, 3, 1, 16, 3, 3, 1, 16}, nil)
	out[w.name] = w.text()

	// 10.3 select
	w = &exampleWriter{name: "select"}
	w.exchange(k, wire.Select(purse.AID), nil, []int{2, 2, 11, 2, 5, 4, 11, 5, 6, 7, 4})
	w.comment("GET PURSE DATA: balance, max, currency, ATC, life cycle, flags, PIN tries, offline total")
	w.exchange(k, wire.GetPurseData(), nil, []int{4, 4, 2, 4, 1, 1, 1, 4})
	out[w.name] = w.text()

	// 10.4 load 50.00
	w = &exampleWriter{name: "load"}
	w.value("card_random", exampleRandom[0])
	hostNonce := wire.Nonce{1, 2, 3, 4, 5, 6, 7, 8}
	w.value("TerminalID", terminalID[:])
	w.value("HostNonce", hostNonce[:])
	w.comment("INITIALIZE LOAD: kvn, amount 5000, currency, terminal ID, host nonce")
	data := w.exchange(k, wire.InitializeLoad{KeyVersion: 1, Amount: 5000, Currency: eur, TerminalID: terminalID, HostNonce: hostNonce}.Command(),
		[]int{1, 4, 2, 8, 8}, []int{4, 4, 1, 8, 8})
	il, err := wire.ParseInitializeLoadResponse(data)
	require.NoError(t, err)
	ld := wire.LoadData{CardID: cardID, ATC: il.ATC, Amount: 5000, Currency: eur, Balance: il.Balance, TerminalID: terminalID,
		DateTime: testDate, AuthRef: 0x00012345}
	w.comment("the server: SK_L = KDF(K_LOAD, 41, 0080, CardID || ATC' || card nonce || host nonce)")
	ctx := wire.SessionContext(cardID, il.ATC, il.CardNonce, hostNonce)
	w.value("SK_L_context", ctx[:8], ctx[8:12], ctx[12:20], ctx[20:])
	skL, err := wire.LoadSessionKey(p.Keys.Load.Key, cardID, il.ATC, il.CardNonce, hostNonce)
	require.NoError(t, err)
	w.value("SK_L", skL)
	w.value("S1_input", wire.S1Input(ld))
	s1, err := wire.ComputeS1(skL, ld)
	require.NoError(t, err)
	w.value("S1", s1[:])
	w.value("DateTime", testDate[:])
	w.value("AuthRef", []byte{0, 1, 0x23, 0x45})
	w.value("S2_input", wire.S2Input(ld, s1))
	s2, err := wire.ComputeS2(skL, ld, s1)
	require.NoError(t, err)
	w.value("S2", s2[:])
	w.comment("CREDIT LOAD: date-time, authorisation reference, S2 -> balance, ATC, TC")
	w.exchange(k, wire.CreditLoad{DateTime: testDate, AuthRef: ld.AuthRef, S2: s2}.Command(), []int{7, 4, 8}, []int{4, 4, 8})
	loadRec, sw := k.proof(il.ATC)
	require.Equal(t, apdu.SWNoError, sw)
	w.value("TC_input", wire.TCInput(cardID, loadRec))
	w.value("TC", loadRec.TC[:])
	out[w.name] = w.text()

	// 10.5 debit 3.50
	w = &exampleWriter{name: "debit"}
	w.value("card_random", exampleRandom[1])
	w.comment("INITIALIZE DEBIT: kvn, amount 350, currency, terminal ID")
	data = w.exchange(k, wire.InitializeDebit{KeyVersion: 1, Amount: 350, Currency: eur, TerminalID: terminalID}.Command(),
		[]int{1, 4, 2, 8}, []int{4, 4, 1, 8})
	id, err := wire.ParseInitializeDebitResponse(data)
	require.NoError(t, err)
	tsmNonce := wire.Nonce{0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8}
	debitDate := wire.DateTime{0x20, 0x25, 0x06, 0x01, 0x10, 0x35, 0x00}
	dd := wire.DebitData{CardID: cardID, ATC: id.ATC, Amount: 350, Currency: eur, Balance: id.Balance, TerminalID: terminalID,
		TSMSeq: 7, DateTime: debitDate}
	w.value("TSMNonce", tsmNonce[:])
	w.value("TSMSeq", []byte{0, 0, 0, 7})
	w.value("DateTime", debitDate[:])
	w.comment("the TSM: SK_D = KDF(K_DEBIT, 42, 0080, CardID || ATC' || card nonce || TSM nonce)")
	ctx = wire.SessionContext(cardID, id.ATC, id.CardNonce, tsmNonce)
	w.value("SK_D_context", ctx[:8], ctx[8:12], ctx[12:20], ctx[20:])
	skD, err := wire.DebitSessionKey(p.Keys.Debit.Key, cardID, id.ATC, id.CardNonce, tsmNonce)
	require.NoError(t, err)
	w.value("SK_D", skD)
	w.value("M1_input", wire.M1Input(dd))
	m1, err := wire.ComputeM1(skD, dd)
	require.NoError(t, err)
	w.value("M1", m1[:])
	w.comment("DEBIT: TSM nonce, TSM sequence, date-time, M1 -> balance, ATC, M2, TC")
	w.exchange(k, wire.Debit{TSMNonce: tsmNonce, TSMSeq: 7, DateTime: debitDate, M1: m1}.Command(), []int{8, 4, 7, 8}, []int{4, 4, 8, 8})
	w.value("M2_input", wire.M2Input(dd, m1))
	m2, err := wire.ComputeM2(skD, dd, m1)
	require.NoError(t, err)
	w.value("M2", m2[:])
	debitRec, sw := k.proof(id.ATC)
	require.Equal(t, apdu.SWNoError, sw)
	w.value("TC_input", wire.TCInput(cardID, debitRec))
	w.value("TC", debitRec.TC[:])
	out[w.name] = w.text()

	// 10.6 PIN
	w = &exampleWriter{name: "pin"}
	w.comment("30.00 is above the PIN-free limit of 25.00: the PIN is needed")
	debit3000 := wire.InitializeDebit{KeyVersion: 1, Amount: 3000, Currency: eur, TerminalID: terminalID}.Command()
	w.exchange(k, debit3000, []int{1, 4, 2, 8}, nil)
	w.comment("VERIFY with a wrong PIN (1111): 2 tries left")
	w.exchange(k, wire.Verify(mustPIN("1111")), nil, nil)
	w.comment("VERIFY with PIN 1234: the try counter is back to 3")
	w.exchange(k, wire.Verify(mustPIN("1234")), nil, nil)
	w.exchange(k, wire.Verify(nil), nil, nil)
	w.value("card_random", exampleRandom[2])
	w.exchange(k, debit3000, []int{1, 4, 2, 8}, []int{4, 4, 1, 8})
	out[w.name] = w.text()

	// 10.7 proof and log
	w = &exampleWriter{name: "proof"}
	w.comment("SELECT ends the open debit session (and the PIN verification)")
	w.exchange(k, wire.Select(purse.AID), nil, []int{2, 2, 11, 2, 5, 4, 11, 5, 6, 7, 4})
	w.comment("the debit's record: ATC, type, amount, balance after, currency, date-time, terminal, TSM seq, M1, M2, TC")
	w.exchange(k, wire.GetTransactionProof(2), []int{4}, lrFields)
	w.exchange(k, wire.ReadLog(1), nil, lrFields)
	w.comment("the load's record: reference = authorisation reference, host MAC = S2, card MAC = S1")
	w.exchange(k, wire.ReadLog(2), nil, lrFields)
	w.exchange(k, wire.ReadLog(3), nil, nil)
	w.comment("ATC 3 was never used: no such value change happened")
	w.exchange(k, wire.GetTransactionProof(3), []int{4}, nil)
	w.exchange(k, wire.GetPurseData(), nil, []int{4, 4, 2, 4, 1, 1, 1, 4})
	out[w.name] = w.text()

	// 10.8 SET STATUS
	w = &exampleWriter{name: "status"}
	statusStep := func(op byte, what string, rand []byte) {
		w.value("card_random", rand)
		w.exchange(k, wire.GetChallenge(), nil, nil)
		var chal wire.Nonce
		copy(chal[:], rand)
		w.comment("the server: SK_S = KDF(K_LOAD, 44, 0080, CardID || challenge); MAC over 'ST' || CardID || ATC || op || kvn")
		sk, err := wire.StatusSessionKey(p.Keys.Load.Key, cardID, chal)
		require.NoError(t, err)
		w.value("SK_S_"+what, sk)
		w.value("ST_input_"+what, wire.StatusInput(cardID, 2, op, 1))
		mac, err := wire.ComputeStatusMAC(sk, cardID, 2, op, 1)
		require.NoError(t, err)
		w.value("MAC_"+what, mac[:])
		w.exchange(k, wire.SetStatus(op, 1, mac), nil, nil)
	}
	statusStep(wire.OpBlock, "block", exampleRandom[3])
	w.comment("a BLOCKED purse is selected with 6283 and refuses value changes with 6A81")
	w.exchange(k, wire.Select(purse.AID), nil, []int{2, 2, 11, 2, 5, 4, 11, 5, 6, 7, 4})
	w.exchange(k, wire.InitializeDebit{KeyVersion: 1, Amount: 100, Currency: eur, TerminalID: terminalID}.Command(), []int{1, 4, 2, 8}, nil)
	statusStep(wire.OpUnblock, "unblock", exampleRandom[4])
	w.exchange(k, wire.GetPurseData(), nil, []int{4, 4, 2, 4, 1, 1, 1, 4})
	out[w.name] = w.text()
	return out
}

var exampleBlock = regexp.MustCompile("(?s)```example ([a-z-]+)\n(.*?)```")

func TestWorkedExamplesUpToDate(t *testing.T) {
	doc, err := os.ReadFile(specPath)
	require.NoError(t, err)
	want := renderExamples(t)
	seen := map[string]bool{}
	got := exampleBlock.ReplaceAllFunc(doc, func(m []byte) []byte {
		sub := exampleBlock.FindSubmatch(m)
		name := string(sub[1])
		seen[name] = true
		body, ok := want[name]
		if !ok {
			t.Errorf("docs/purse.md has an example %q the scenario does not produce", name)
			return m
		}
		return []byte("```example " + name + "\n" + body + "\n```")
	})
	for name := range want {
		require.True(t, seen[name], "docs/purse.md lacks the example block %q", name)
	}
	if *update {
		require.NoError(t, os.WriteFile(specPath, got, 0o644))
		return
	}
	require.Equal(t, string(got), string(doc), "docs/purse.md's worked examples differ from the card's behaviour; run with -update after checking why")
}

// TestWorkedExamplesReplay replays every exchange of docs/purse.md §10
// on a fresh card whose random source yields the examples' card_random
// values, and compares each response byte for byte.
func TestWorkedExamplesReplay(t *testing.T) {
	doc, err := os.ReadFile(specPath)
	require.NoError(t, err)
	examples, err := wire.ParseExamples(doc)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(examples), 8)
	var random []byte
	steps := 0
	for _, e := range examples {
		for _, v := range e.Values {
			if v.Name == "card_random" {
				random = append(random, v.Value...)
			}
		}
		steps += len(e.Steps)
	}
	require.GreaterOrEqual(t, steps, 25)
	c := newInstalledChip(t, chip.WithRandom(bytes.NewReader(random)))
	for _, e := range examples {
		for i, s := range e.Steps {
			cmd, err := apdu.ParseCommand(s.Command)
			require.NoError(t, err, "%s step %d", e.Name, i)
			var rsp []byte
			if cmd.CLA == gp.CLA && cmd.INS == gp.INSStoreData {
				data, sw := c.Factory().Personalize(purse.AID, cmd.P1, cmd.P2, cmd.Data)
				rsp = apdu.Response{Data: data, SW: sw}.Bytes()
			} else {
				rsp = c.Transmit(s.Command)
			}
			require.Equal(t, fmt.Sprintf("%X", s.Response), fmt.Sprintf("%X", rsp), "example %s step %d: %X", e.Name, i, s.Command)
		}
	}
}
