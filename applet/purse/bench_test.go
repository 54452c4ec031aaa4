package purse_test

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/purse"
)

// BenchmarkDebitTransaction measures complete offline debits in process,
// on one chip: SELECT, INITIALIZE DEBIT, DEBIT, with every MAC —
//
//   - full: the card's work (session key, M1 check, M2, TC, five
//     persistent writes, the runtime) plus the terminal's security module
//     (K_DEBIT diversified from the master, SK_D, M1, M2 check) and APDU
//     encoding/parsing on both sides;
//   - card: the same transactions with the host side precomputed outside
//     the timer — possible because the card's random source is fixed, so
//     the card nonces (and every MAC) are known in advance;
//
// each with the chip's default random source (crypto/rand) or a fast
// deterministic one. BenchmarkDebitHost measures the TSM alone. Run on
// one core:
//
//	go test -run '^$' -bench Debit -cpu 1 ./applet/purse/
func BenchmarkDebitTransaction(b *testing.B) {
	b.Run("full/crypto-rand", func(b *testing.B) { benchFull(b, nil) })
	b.Run("full/chacha8", func(b *testing.B) { benchFull(b, rand.NewChaCha8([32]byte{7})) })
	b.Run("card/fixed-nonce", benchCardOnly)
}

var benchLimits = wire.Limits{MaxBalance: wire.NoLimit, MaxLoad: wire.NoLimit, MaxDebit: 10000, PINFreeLimit: wire.NoLimit, OfflineLimit: wire.NoLimit}

func benchCard(b *testing.B, r io.Reader) *card {
	var opts []chip.Option
	if r != nil {
		opts = append(opts, chip.WithRandom(r))
	}
	k := newCardWith(b, cardConfig{id: cardID, limits: benchLimits, opts: opts})
	_, sw := k.load(0xF0000000)
	require.Equal(b, apdu.SWNoError, sw)
	return k
}

func benchFull(b *testing.B, r io.Reader) {
	k := benchCard(b, r)
	sel := mustBytes(b, wire.Select(purse.AID))
	initDebit := mustBytes(b, wire.InitializeDebit{KeyVersion: 1, Amount: 1, Currency: eur, TerminalID: terminalID}.Command())
	var seq uint32
	b.ReportAllocs()
	for b.Loop() {
		// Terminal: SELECT, INITIALIZE DEBIT.
		if out := k.c.Transmit(sel); out[len(out)-2] != 0x90 {
			b.Fatalf("SELECT: %X", out)
		}
		out := k.c.Transmit(initDebit)
		r, err := wire.ParseInitializeDebitResponse(out[:len(out)-2])
		if err != nil {
			b.Fatal(err)
		}
		// TSM: diversify K_DEBIT, derive SK_D, compute M1.
		seq++
		var tn wire.Nonce
		binary.BigEndian.PutUint32(tn[4:], seq)
		kDebit, err := wire.DeriveCardKey(masters.Debit.Key, wire.KeyDebit, cardID)
		if err != nil {
			b.Fatal(err)
		}
		sk, err := wire.DebitSessionKey(kDebit, cardID, r.ATC, r.CardNonce, tn)
		if err != nil {
			b.Fatal(err)
		}
		d := wire.DebitData{CardID: cardID, ATC: r.ATC, Amount: 1, Currency: eur, Balance: r.Balance, TerminalID: terminalID, TSMSeq: seq, DateTime: testDate}
		m1, err := wire.ComputeM1(sk, d)
		if err != nil {
			b.Fatal(err)
		}
		cmd, err := wire.Debit{TSMNonce: tn, TSMSeq: seq, DateTime: testDate, M1: m1}.Command().Bytes()
		if err != nil {
			b.Fatal(err)
		}
		out = k.c.Transmit(cmd)
		dr, err := wire.ParseDebitResponse(out[:len(out)-2])
		if err != nil {
			b.Fatalf("DEBIT: %X %v", out, err)
		}
		// TSM: check M2.
		m2, err := wire.ComputeM2(sk, d, m1)
		if err != nil || !m2.Equal(dr.M2) {
			b.Fatal("M2")
		}
	}
}

// benchCardOnly precomputes the terminal's commands for a fixed card
// nonce, then times only the card.
func benchCardOnly(b *testing.B) {
	k := benchCard(b, fixedRandom(0x5A))
	sel := mustBytes(b, wire.Select(purse.AID))
	initDebit := mustBytes(b, wire.InitializeDebit{KeyVersion: 1, Amount: 1, Currency: eur, TerminalID: terminalID}.Command())
	pd := k.purseData()
	const batch = 4096
	var cardNonce wire.Nonce
	for i := range cardNonce {
		cardNonce[i] = 0x5A
	}
	// The precomputed debits follow one another: ATC and balance known.
	atc, balance := pd.ATC, pd.Balance
	var seq uint32
	next := func() []byte {
		atc++
		seq++
		var tn wire.Nonce
		binary.BigEndian.PutUint32(tn[4:], seq)
		sk, err := wire.DebitSessionKey(k.keys.Debit.Key, cardID, atc, cardNonce, tn)
		require.NoError(b, err)
		d := wire.DebitData{CardID: cardID, ATC: atc, Amount: 1, Currency: eur, Balance: balance, TerminalID: terminalID, TSMSeq: seq, DateTime: testDate}
		balance--
		m1, err := wire.ComputeM1(sk, d)
		require.NoError(b, err)
		return mustBytes(b, wire.Debit{TSMNonce: tn, TSMSeq: seq, DateTime: testDate, M1: m1}.Command())
	}
	cmds := make([][]byte, 0, batch)
	b.ReportAllocs()
	for b.Loop() {
		if len(cmds) == 0 {
			b.StopTimer()
			for range batch {
				cmds = append(cmds, next())
			}
			b.StartTimer()
		}
		k.c.Transmit(sel)
		k.c.Transmit(initDebit)
		out := k.c.Transmit(cmds[0])
		cmds = cmds[1:]
		if out[len(out)-2] != 0x90 {
			b.Fatalf("DEBIT: %X", out)
		}
	}
}

// BenchmarkDebitHost is the terminal's security module alone: diversify
// K_DEBIT, derive SK_D, compute M1, check M2.
func BenchmarkDebitHost(b *testing.B) {
	r := wire.InitializeDebitResponse{Balance: 100000, ATC: 7, KeyVersion: 1, CardNonce: wire.Nonce{1}}
	m2 := wire.MAC{}
	b.ReportAllocs()
	for b.Loop() {
		kDebit, _ := wire.DeriveCardKey(masters.Debit.Key, wire.KeyDebit, cardID)
		sk, _ := wire.DebitSessionKey(kDebit, cardID, r.ATC, r.CardNonce, wire.Nonce{2})
		d := wire.DebitData{CardID: cardID, ATC: r.ATC, Amount: 1, Currency: eur, Balance: r.Balance, TerminalID: terminalID, TSMSeq: 1, DateTime: testDate}
		m1, _ := wire.ComputeM1(sk, d)
		got, _ := wire.ComputeM2(sk, d, m1)
		_ = got.Equal(m2)
	}
}
