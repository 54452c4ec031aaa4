package purse_test

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/purse"
)

// The test issuer (docs/purse.md §10): master keys, one card.
var (
	testATR = []byte{0x3B, 0x85, 0x80, 0x01, 0x80, 0x73, 0x80, 0x01, 0x40, 0x36}
	masters = wire.Keys{
		Load:  wire.VersionedKey{Version: 1, Key: seq(0x10)},
		Debit: wire.VersionedKey{Version: 1, Key: seq(0x20)},
		TC:    wire.VersionedKey{Version: 1, Key: seq(0x30)},
	}
	cardID     = wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	eur        = wire.Currency{0x09, 0x78}
	testLimits = wire.Limits{MaxBalance: 100000, MaxLoad: 50000, MaxDebit: 10000, PINFreeLimit: 2500, OfflineLimit: 50000}
	terminalID = wire.TerminalID{'T', 'E', 'R', 'M', '0', '0', '0', '1'}
	testDate   = wire.DateTime{0x20, 0x25, 0x06, 0x01, 0x10, 0x30, 0x00}
)

// seq returns the 16-byte key b, b+1, ..., b+15.
func seq(b byte) wire.Key {
	k := make(wire.Key, 16)
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func mustPIN(pin string) []byte {
	b, err := wire.EncodePIN(pin)
	if err != nil {
		panic(err)
	}
	return b
}

// personalization is the test card's STORE DATA content with keys
// diversified from the masters.
func personalization(t testing.TB, id wire.CardID, lim wire.Limits) wire.Personalization {
	t.Helper()
	keys, err := masters.Diversify(id)
	require.NoError(t, err)
	return wire.Personalization{CardID: id, Currency: eur, Limits: lim, Keys: keys, PIN: mustPIN("1234"), PINTries: 3}
}

// newInstalledChip builds a chip with the purse module, its load file and
// one instance, as the card manager's INSTALL would leave it.
func newInstalledChip(t testing.TB, opts ...chip.Option) *chip.Chip {
	t.Helper()
	c := chip.New(testATR, append([]chip.Option{chip.WithModules(purse.Module)}, opts...)...)
	f := c.Factory()
	require.NoError(t, f.AddLoadFile(applet.LoadFile{AID: purse.PackageAID, Version: purse.Module.Version, Modules: [][]byte{purse.ModuleAID}}))
	require.NoError(t, f.Install(purse.PackageAID, purse.ModuleAID, purse.AID, applet.Privileges{}, nil, true))
	c.PowerOn()
	return c
}

// personalize sends the STORE DATA blocks the way the ISD routes them.
func personalize(t testing.TB, c *chip.Chip, p wire.Personalization) {
	t.Helper()
	cmds, err := p.StoreData()
	require.NoError(t, err)
	for _, cmd := range cmds {
		_, sw := c.Factory().Personalize(purse.AID, cmd.P1, cmd.P2, cmd.Data)
		require.Equal(t, apdu.SWNoError, sw, "STORE DATA %s", cmd)
	}
}

// card is a personalised purse on a chip with the host-side parties that
// talk to it: the terminal's TSM (K_DEBIT) and the money server (K_LOAD,
// K_TC), both with the card's diversified keys.
type card struct {
	t     testing.TB
	c     *chip.Chip
	id    wire.CardID
	keys  wire.Keys
	opts  []chip.Option
	seq   uint32 // TSM sequence
	nonce byte   // host/TSM nonce counter

	// The nonces of the last INITIALIZE, for tests that forge MACs.
	lastCardNonce, lastHostNonce wire.Nonce
}

type cardConfig struct {
	id     wire.CardID
	limits wire.Limits
	opts   []chip.Option
}

func newCard(t testing.TB, opts ...chip.Option) *card {
	return newCardWith(t, cardConfig{id: cardID, limits: testLimits, opts: opts})
}

func newCardWith(t testing.TB, cfg cardConfig) *card {
	t.Helper()
	c := newInstalledChip(t, cfg.opts...)
	p := personalization(t, cfg.id, cfg.limits)
	personalize(t, c, p)
	k := &card{t: t, c: c, id: cfg.id, keys: p.Keys, opts: cfg.opts}
	k.mustSelect()
	return k
}

func (k *card) raw(b []byte) []byte {
	k.t.Helper()
	return k.c.Transmit(b)
}

// send transmits cmd; a chip without power answers nothing, reported as
// SW 0000 and nil data.
func (k *card) send(cmd apdu.Command) ([]byte, apdu.SW) {
	k.t.Helper()
	b, err := cmd.Bytes()
	require.NoError(k.t, err)
	out := k.raw(b)
	if out == nil {
		return nil, 0
	}
	rsp, err := apdu.ParseResponse(out)
	require.NoError(k.t, err)
	return rsp.Data, rsp.SW
}

// hexTx sends a command written in hex and returns the response in hex.
func (k *card) hexTx(s string) string {
	k.t.Helper()
	b, err := apdu.DecodeHex(s)
	require.NoError(k.t, err)
	return strings.ToUpper(hex.EncodeToString(k.raw(b)))
}

func (k *card) mustSelect() wire.FCI {
	k.t.Helper()
	data, sw := k.send(wire.Select(purse.AID))
	require.Contains(k.t, []apdu.SW{apdu.SWNoError, wire.SWBlockedSelected}, sw)
	fci, err := wire.ParseFCI(data)
	require.NoError(k.t, err)
	return fci
}

func (k *card) purseData() wire.PurseData {
	k.t.Helper()
	data, sw := k.send(wire.GetPurseData())
	require.Equal(k.t, apdu.SWNoError, sw)
	d, err := wire.ParsePurseData(data)
	require.NoError(k.t, err)
	return d
}

func (k *card) nextNonce() wire.Nonce {
	k.nonce++
	return wire.Nonce{0xA0, 0, 0, 0, 0, 0, 0, k.nonce}
}

// loadStart runs INITIALIZE LOAD and the server's S1 check and S2.
func (k *card) loadStart(amount uint32) (wire.CreditLoad, wire.LoadData, apdu.SW) {
	k.t.Helper()
	hn := k.nextNonce()
	data, sw := k.send(wire.InitializeLoad{KeyVersion: 1, Amount: amount, Currency: eur, TerminalID: terminalID, HostNonce: hn}.Command())
	if sw != apdu.SWNoError {
		return wire.CreditLoad{}, wire.LoadData{}, sw
	}
	r, err := wire.ParseInitializeLoadResponse(data)
	require.NoError(k.t, err)
	k.lastCardNonce, k.lastHostNonce = r.CardNonce, hn
	sk, err := wire.LoadSessionKey(k.keys.Load.Key, k.id, r.ATC, r.CardNonce, hn)
	require.NoError(k.t, err)
	d := wire.LoadData{CardID: k.id, ATC: r.ATC, Amount: amount, Currency: eur, Balance: r.Balance, TerminalID: terminalID, DateTime: testDate, AuthRef: r.ATC + 1000}
	s1, err := wire.ComputeS1(sk, d)
	require.NoError(k.t, err)
	require.Equal(k.t, s1, r.S1, "the server checks S1")
	s2, err := wire.ComputeS2(sk, d, s1)
	require.NoError(k.t, err)
	return wire.CreditLoad{DateTime: testDate, AuthRef: d.AuthRef, S2: s2}, d, apdu.SWNoError
}

// load performs a complete load and checks the response's TC.
func (k *card) load(amount uint32) (wire.CreditLoadResponse, apdu.SW) {
	k.t.Helper()
	cl, d, sw := k.loadStart(amount)
	if sw != apdu.SWNoError {
		return wire.CreditLoadResponse{}, sw
	}
	data, sw := k.send(cl.Command())
	if sw != apdu.SWNoError {
		return wire.CreditLoadResponse{}, sw
	}
	r, err := wire.ParseCreditLoadResponse(data)
	require.NoError(k.t, err)
	after, _ := d.BalanceAfter()
	require.Equal(k.t, wire.CreditLoadResponse{BalanceAfter: after, ATC: d.ATC, TC: r.TC}, r)
	return r, sw
}

// debitSession is what the TSM keeps of a debit until its outcome is
// known (docs/purse.md §9.4).
type debitSession struct {
	data wire.DebitData
	sk   wire.Key
	cmd  wire.Debit
}

// debitStart runs INITIALIZE DEBIT and the TSM's M1.
func (k *card) debitStart(amount uint32) (debitSession, apdu.SW) {
	k.t.Helper()
	data, sw := k.send(wire.InitializeDebit{KeyVersion: 1, Amount: amount, Currency: eur, TerminalID: terminalID}.Command())
	if sw != apdu.SWNoError {
		return debitSession{}, sw
	}
	r, err := wire.ParseInitializeDebitResponse(data)
	require.NoError(k.t, err)
	k.seq++
	tn := k.nextNonce()
	k.lastCardNonce, k.lastHostNonce = r.CardNonce, tn
	sk, err := wire.DebitSessionKey(k.keys.Debit.Key, k.id, r.ATC, r.CardNonce, tn)
	require.NoError(k.t, err)
	d := wire.DebitData{CardID: k.id, ATC: r.ATC, Amount: amount, Currency: eur, Balance: r.Balance, TerminalID: terminalID, TSMSeq: k.seq, DateTime: testDate}
	m1, err := wire.ComputeM1(sk, d)
	require.NoError(k.t, err)
	return debitSession{data: d, sk: sk, cmd: wire.Debit{TSMNonce: tn, TSMSeq: k.seq, DateTime: testDate, M1: m1}}, apdu.SWNoError
}

// checkM2 is the TSM's check of the card's proof.
func (s debitSession) checkM2(t testing.TB, m2 wire.MAC) {
	t.Helper()
	want, err := wire.ComputeM2(s.sk, s.data, s.cmd.M1)
	require.NoError(t, err)
	require.True(t, want.Equal(m2), "M2")
}

// debit performs a complete debit, checking M2 and TC.
func (k *card) debit(amount uint32) (wire.DebitResponse, apdu.SW) {
	k.t.Helper()
	s, sw := k.debitStart(amount)
	if sw != apdu.SWNoError {
		return wire.DebitResponse{}, sw
	}
	data, sw := k.send(s.cmd.Command())
	if sw != apdu.SWNoError {
		return wire.DebitResponse{}, sw
	}
	r, err := wire.ParseDebitResponse(data)
	require.NoError(k.t, err)
	s.checkM2(k.t, r.M2)
	require.Equal(k.t, s.data.ATC, r.ATC)
	require.Equal(k.t, s.data.Balance-amount, r.BalanceAfter)
	return r, sw
}

// proof fetches and checks (TC under K_TC) the log record of an ATC.
func (k *card) proof(atc uint32) (wire.LogRecord, apdu.SW) {
	k.t.Helper()
	data, sw := k.send(wire.GetTransactionProof(atc))
	if sw != apdu.SWNoError {
		return wire.LogRecord{}, sw
	}
	r, err := wire.ParseLogRecord(data)
	require.NoError(k.t, err)
	require.True(k.t, wire.VerifyTC(k.keys.TC.Key, k.id, r), "TC of ATC %d", atc)
	return r, sw
}

// verifyPIN sends VERIFY.
func (k *card) verifyPIN(pin string) apdu.SW {
	k.t.Helper()
	_, sw := k.send(wire.Verify(mustPIN(pin)))
	return sw
}

// setStatus runs GET CHALLENGE and SET STATUS as the money server would.
func (k *card) setStatus(op byte) apdu.SW {
	k.t.Helper()
	atc := k.purseData().ATC
	chal, sw := k.send(wire.GetChallenge())
	require.Equal(k.t, apdu.SWNoError, sw)
	var c wire.Nonce
	copy(c[:], chal)
	sk, err := wire.StatusSessionKey(k.keys.Load.Key, k.id, c)
	require.NoError(k.t, err)
	mac, err := wire.ComputeStatusMAC(sk, k.id, atc, op, 1)
	require.NoError(k.t, err)
	_, sw = k.send(wire.SetStatus(op, 1, mac))
	return sw
}

// image saves the chip's persistent memory.
func (k *card) image() []byte {
	k.t.Helper()
	img, err := k.c.MarshalImage()
	require.NoError(k.t, err)
	return img
}

// reload replaces the chip by one loaded from an image, powered on.
func (k *card) reload(img []byte) {
	k.t.Helper()
	c, err := chip.UnmarshalImage(img, append([]chip.Option{chip.WithModules(purse.Module)}, k.opts...)...)
	require.NoError(k.t, err)
	c.PowerOn()
	k.c = c
}

// fixedRandom is a random source that repeats a pattern, for repeatable
// nonces.
func fixedRandom(b ...byte) io.Reader { return &repeat{b: b} }

type repeat struct {
	b []byte
	i int
}

func (r *repeat) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.b[r.i%len(r.b)]
		r.i++
	}
	return len(p), nil
}

// stateKey is the image record of the purse's state (docs/purse.md §9.1).
var stateKey = "a/" + hex.EncodeToString(purse.AID) + "/state"

// editState rewrites the purse's state record inside a card image, the
// way someone editing the emulator's file could.
func editState(t testing.TB, img []byte, edit func(st []byte)) []byte {
	t.Helper()
	var f map[string]any
	require.NoError(t, json.Unmarshal(img, &f))
	recs := f["records"].(map[string]any)
	st, err := hex.DecodeString(recs[stateKey].(string))
	require.NoError(t, err)
	require.Len(t, st, 15)
	edit(st)
	recs[stateKey] = hex.EncodeToString(st)
	out, err := json.Marshal(f)
	require.NoError(t, err)
	return out
}

// setATC sets the ATC in an image's state record.
func setATC(t testing.TB, img []byte, atc uint32) []byte {
	return editState(t, img, func(st []byte) { binary.BigEndian.PutUint32(st[6:], atc) })
}

// editRecord rewrites one of the purse's records (in hex) inside a card
// image.
func editRecord(t testing.TB, img []byte, name string, edit func(hexValue string) string) []byte {
	t.Helper()
	var f map[string]any
	require.NoError(t, json.Unmarshal(img, &f))
	recs := f["records"].(map[string]any)
	key := "a/" + hex.EncodeToString(purse.AID) + "/" + name
	v, ok := recs[key].(string)
	require.True(t, ok, "no record %s", key)
	recs[key] = edit(v)
	out, err := json.Marshal(f)
	require.NoError(t, err)
	return out
}
