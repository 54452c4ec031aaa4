package provision_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/purse"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/provision"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/internal/dbtest"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

const isdKVN = 0x30

func randomKey(t testing.TB) scp03.Key {
	t.Helper()
	k := make(scp03.Key, 16)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

// freshKeys are random issuer masters, so that finding one in a trace
// cannot be a coincidence of test constants.
func freshKeys(t testing.TB) provision.StaticKeys {
	return provision.StaticKeys{
		Purse: wire.Keys{
			Load:  wire.VersionedKey{Version: 1, Key: randomKey(t)},
			Debit: wire.VersionedKey{Version: 1, Key: randomKey(t)},
			TC:    wire.VersionedKey{Version: 1, Key: randomKey(t)},
		},
		ISD:        scp03.StaticKeys{ENC: randomKey(t), MAC: randomKey(t), DEK: randomKey(t)},
		ISDVersion: isdKVN,
	}
}

// emptyChip is a chip as sold (applet/profile Empty) whose ISD keys were
// diversified at the factory from the issuer's SCP03 master by its KDD
// (profile.ISDMaster); the server derives them with host/gp.Diversify, so
// every installation also checks that the two agree.
func emptyChip(t testing.TB, master scp03.StaticKeys) *chip.Chip {
	t.Helper()
	p := profile.Empty()
	p.ISDMaster, p.ISDKeyVersion = &master, isdKVN
	c, err := profile.Build(p)
	require.NoError(t, err)
	require.False(t, p.TestKeys)
	require.Equal(t, byte(isdKVN), p.ISD.KeySets[0].Version)
	return c
}

type rig struct {
	t    *testing.T
	db   *sqldb.DB
	keys provision.StaticKeys
	srv  *provision.Server
	hs   *httptest.Server
	ends chan provision.SessionEnd
	reg  *fakeRegistry
}

type fakeRegistry struct {
	mu    sync.Mutex
	cards map[wire.CardID]provision.Card
}

func (f *fakeRegistry) Issued(_ context.Context, c provision.Card) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cards[c.CardID] = c
	return nil
}

func newRig(t *testing.T, db *sqldb.DB, tune func(*provision.Config)) *rig {
	t.Helper()
	r := &rig{t: t, db: db, keys: freshKeys(t), ends: make(chan provision.SessionEnd, 16), reg: &fakeRegistry{cards: map[wire.CardID]provision.Card{}}}
	cfg := provision.Config{DB: db, Keys: r.keys, Digest: purse.Module.Digest(), Registry: r.reg,
		OnSessionEnd: func(e provision.SessionEnd) { r.ends <- e }}
	if tune != nil {
		tune(&cfg)
	}
	srv, err := provision.New(context.Background(), cfg)
	require.NoError(t, err)
	r.srv = srv
	r.hs = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		r.hs.Close()
		srv.Close()
	})
	return r
}

// waitEnd waits for the server to report the end of a session.
func (r *rig) waitEnd() provision.SessionEnd {
	r.t.Helper()
	select {
	case e := <-r.ends:
		return e
	case <-time.After(30 * time.Second):
		r.t.Fatal("no session end reported")
	}
	return provision.SessionEnd{}
}

func stack(c *chip.Chip) reader.Transceiver {
	return connect.Stack(emu.Connect(c, "emu:device"), connect.StackOptions{})
}

// captureTransport records every HTTP body both ways and lets a test
// tamper with session requests and answers.
type captureTransport struct {
	mu     sync.Mutex
	bodies bytes.Buffer
	// tamper, when set, sees the n-th session POST (from 0) and decides:
	// it may replace the request body, drop the request, or replace the
	// answer.
	tamper  func(n int, req []byte, prev *exchangeLog) (newReq []byte, action string)
	n       int
	history exchangeLog
}

type exchangeLog struct {
	reqs, resps [][]byte
}

const (
	actSend       = ""
	actDropReq    = "drop-request"  // never reaches the server
	actDropResp   = "drop-response" // reaches it, the answer is lost
	actReplayResp = "replay-response"
)

func (c *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	session := strings.Contains(req.URL.Path, provision.PathSession)
	c.mu.Lock()
	n := -1
	action := actSend
	if session {
		n = c.n
		c.n++
		if c.tamper != nil {
			var nb []byte
			nb, action = c.tamper(n, body, &c.history)
			if nb != nil {
				body = nb
			}
		}
		c.history.reqs = append(c.history.reqs, body)
	}
	c.bodies.Write(body)
	c.bodies.WriteByte('\n')
	c.mu.Unlock()
	if action == actDropReq {
		return nil, errors.New("test relay: request dropped")
	}
	req = req.Clone(req.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodies.Write(rb)
	c.bodies.WriteByte('\n')
	switch action {
	case actDropResp:
		return nil, errors.New("test relay: answer dropped")
	case actReplayResp:
		if k := len(c.history.resps); k > 0 {
			rb = c.history.resps[k-1]
		}
	}
	if session {
		c.history.resps = append(c.history.resps, rb)
	}
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	resp.ContentLength = int64(len(rb))
	return resp, nil
}

func (c *captureTransport) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bodies.String()
}

func (r *rig) device(tr http.RoundTripper, trace io.Writer) *provision.Device {
	return &provision.Device{Server: r.hs.URL, Holder: "holder-0001", PIN: "1234", Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, Trace: trace}
}

// checkIssued asserts that the purse answers SELECT with the assigned
// CardID, and that a load and a debit work with keys derived by a
// terminal from the same masters.
func (r *rig) checkIssued(c *chip.Chip, id wire.CardID) {
	t := r.t
	t.Helper()
	ctx := context.Background()
	m := r.keys.Purse
	sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
	require.NoError(t, err)
	auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
	require.NoError(t, err)
	term := terminal.New(terminal.Config{SAM: sam, Authority: auth, TerminalID: wire.TerminalID{'V', 'D', '0', '0', '0', '0', '0', '1'}})
	tr := stack(c)
	info, err := term.Balance(ctx, tr)
	require.NoError(t, err)
	require.Equal(t, id, info.FCI.CardID)
	require.Equal(t, uint32(0), info.Data.Balance)
	ld, err := term.Load(ctx, tr, 5000)
	require.NoError(t, err)
	require.Equal(t, uint32(5000), ld.Record.BalanceAfter)
	p, err := term.Pay(ctx, tr, 350, terminal.PayOptions{})
	require.NoError(t, err)
	require.Equal(t, uint32(4650), p.Record.BalanceAfter)
	require.NoError(t, auth.VerifyTC(id, p.Record))
}

// secrets lists every key the installation involves, as upper-case hex:
// the purse masters and the card's keys, the SCP03 masters and the chip's
// ISD keys.
func (r *rig) secrets(id wire.CardID, kdd []byte) map[string]string {
	t := r.t
	m := r.keys.Purse
	card, err := m.Diversify(id)
	require.NoError(t, err)
	isd, err := hostgp.Diversify(r.keys.ISD, kdd)
	require.NoError(t, err)
	out := map[string]string{}
	for name, k := range map[string][]byte{
		"MK_LOAD": m.Load.Key, "MK_DEBIT": m.Debit.Key, "MK_TC": m.TC.Key,
		"K_LOAD": card.Load.Key, "K_DEBIT": card.Debit.Key, "K_TC": card.TC.Key,
		"ISD master ENC": r.keys.ISD.ENC, "ISD master MAC": r.keys.ISD.MAC, "ISD master DEK": r.keys.ISD.DEK,
		"ISD ENC": isd.ENC, "ISD MAC": isd.MAC, "ISD DEK": isd.DEK,
	} {
		out[name] = strings.ToUpper(hex.EncodeToString(k))
	}
	return out
}

func requireNoSecrets(t *testing.T, secrets map[string]string, texts ...string) {
	t.Helper()
	for _, text := range texts {
		up := strings.ToUpper(text)
		for name, h := range secrets {
			require.NotContains(t, up, h, "%s in clear in the relay's traffic", name)
			// Also no half of a key: an 8-byte window would be a leak too.
			require.NotContains(t, up, h[:16], "first half of %s in the relay's traffic", name)
			require.NotContains(t, up, h[16:], "second half of %s in the relay's traffic", name)
		}
	}
}

func TestProvision(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r := newRig(t, db, nil)
		ctx := context.Background()
		c := emptyChip(t, r.keys.ISD)
		var trace bytes.Buffer
		capt := &captureTransport{}
		d := r.device(capt, &trace)
		tr := stack(c)
		res, err := d.Provision(ctx, tr)
		require.NoError(t, err)
		end := r.waitEnd()
		require.NoError(t, end.Err)
		require.True(t, provision.ValidCardID(res.CardID), "%X", res.CardID[:])
		require.Equal(t, "990000", hex.EncodeToString(res.CardID[:3]))
		require.Equal(t, "VD000001", res.TerminalID)
		require.Empty(t, res.PIN, "the device chose the PIN")
		require.GreaterOrEqual(t, res.Exchanges, 9)
		require.Equal(t, res.CardID, end.CardID)

		r.checkIssued(c, res.CardID)
		require.Contains(t, r.reg.cards, res.CardID)
		card := r.reg.cards[res.CardID]
		require.Equal(t, "holder-0001", card.Holder)
		require.Equal(t, [3]byte{1, 1, 1}, card.KeyVersions)

		// The relay saw every APDU, and none of the keys.
		require.Contains(t, trace.String(), "> 80CA9F7F00")
		require.Contains(t, trace.String(), "> 84E2", "STORE DATA went through the relay, wrapped")
		requireNoSecrets(t, r.secrets(res.CardID, card.KDD[:]), trace.String(), capt.text())

		// The card is issued: no second installation.
		_, err = d.Provision(ctx, stack(c))
		require.ErrorIs(t, err, provision.ErrAlreadyIssued)

		recs, err := r.srv.Sessions(ctx, res.Registration)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		require.Equal(t, provision.StatusIssued, recs[0].Outcome)
		require.Equal(t, res.Exchanges, recs[0].Exchanges)
	})
}

func TestProvisionServerPIN(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r := newRig(t, db, nil)
		c := emptyChip(t, r.keys.ISD)
		d := r.device(http.DefaultTransport, nil)
		d.PIN = ""
		res, err := d.Provision(context.Background(), stack(c))
		require.NoError(t, err)
		require.NoError(t, r.waitEnd().Err)
		require.Len(t, res.PIN, 4)
		// The chosen PIN is the card's.
		m := r.keys.Purse
		sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
		require.NoError(t, err)
		auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
		require.NoError(t, err)
		term := terminal.New(terminal.Config{SAM: sam, Authority: auth, TerminalID: wire.TerminalID{'T', '0', '0', '0', '0', '0', '0', '1'}})
		tr := stack(c)
		_, err = term.Load(context.Background(), tr, 10000)
		require.NoError(t, err)
		_, err = term.Pay(context.Background(), tr, 5000, terminal.PayOptions{PIN: res.PIN})
		require.NoError(t, err)
	})
}

// faultyCard alters the k-th APDU (after registration) on its way to the
// card or back: one bit flipped.
type faultyCard struct {
	next     reader.Transceiver
	k        int
	response bool
	n        int
}

func (f *faultyCard) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	n := f.n
	f.n++
	if n == f.k && !f.response {
		cmd = bytes.Clone(cmd)
		flip(cmd, len(cmd)-2) // the last data byte (or Le)
	}
	r, err := f.next.Transceive(ctx, cmd)
	if err == nil && n == f.k && f.response {
		r = bytes.Clone(r)
		flip(r, 0)
	}
	return r, err
}

func flip(b []byte, i int) {
	if i < 0 {
		i = 0
	}
	b[i] ^= 0x01
}

// exchangesOfAnInstall is the number of APDUs of a first installation:
// SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, DELETE, INSTALL [for
// load], LOAD, INSTALL [for install], INSTALL [for personalization], two
// STORE DATA.
const exchangesOfAnInstall = 10

// TestProvisionFaults: a relay that alters, drops or replays any message
// makes the installation fail cleanly, and the chip can be provisioned
// again.
func TestProvisionFaults(t *testing.T) {
	type fault struct {
		name   string
		card   func() *faultyCard // alters an APDU
		tamper func(n int) func(int, []byte, *exchangeLog) ([]byte, string)
		want   error // on the device
		// noSession: the fault hits before a session exists.
		noSession bool
		// issued: the fault hits after the card answered the last
		// command: the card is issued, only the device's notice is lost.
		issued bool
	}
	var faults []fault
	for k := range exchangesOfAnInstall {
		faults = append(faults, fault{name: "alter command " + itoa(k), card: func() *faultyCard { return &faultyCard{k: k} }, want: provision.ErrAborted})
		// The SELECT response is not protected (the secure channel starts
		// after it) and the FCI is not used.
		if k > 0 {
			faults = append(faults, fault{name: "alter response " + itoa(k), card: func() *faultyCard { return &faultyCard{k: k, response: true} }, want: provision.ErrAborted})
		}
	}
	at := func(k int, action string) func(int) func(int, []byte, *exchangeLog) ([]byte, string) {
		return func(int) func(int, []byte, *exchangeLog) ([]byte, string) {
			return func(n int, _ []byte, _ *exchangeLog) ([]byte, string) {
				if n == k {
					return nil, action
				}
				return nil, actSend
			}
		}
	}
	for _, k := range []int{0, 1, 4, exchangesOfAnInstall - 1, exchangesOfAnInstall} {
		faults = append(faults,
			fault{name: "drop request " + itoa(k), tamper: at(k, actDropReq), noSession: k == 0},
			fault{name: "drop answer " + itoa(k), tamper: at(k, actDropResp), issued: k == exchangesOfAnInstall})
	}
	for _, k := range []int{2, 5, exchangesOfAnInstall} {
		faults = append(faults,
			fault{name: "replay request " + itoa(k), want: provision.ErrReplay, tamper: func(int) func(int, []byte, *exchangeLog) ([]byte, string) {
				return func(n int, _ []byte, h *exchangeLog) ([]byte, string) {
					if n == k {
						return h.reqs[n-1], actSend
					}
					return nil, actSend
				}
			}},
			fault{name: "replay answer " + itoa(k), want: provision.ErrReplay, tamper: at(k, actReplayResp), issued: k == exchangesOfAnInstall})
	}
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r := newRig(t, db, func(c *provision.Config) { c.ExchangeTimeout = 500 * time.Millisecond })
		for _, f := range faults {
			t.Run(f.name, func(t *testing.T) {
				ctx := context.Background()
				c := emptyChip(t, r.keys.ISD)
				var trace bytes.Buffer
				capt := &captureTransport{}
				if f.tamper != nil {
					capt.tamper = f.tamper(0)
				}
				d := r.device(capt, &trace)
				reg, err := d.Register(ctx, stack(c))
				require.NoError(t, err)
				var tr reader.Transceiver = stack(c)
				if f.card != nil {
					tr = &faultyCard{next: tr, k: f.card().k, response: f.card().response}
				}
				_, err = d.Install(ctx, tr, reg)
				require.Error(t, err)
				id, _ := hex.DecodeString(reg.CardID)
				if f.issued {
					// The server has the card's last answer: it is issued,
					// only the device's notice is lost, and asking again
					// says so.
					require.NoError(t, r.waitEnd().Err)
					_, err := r.device(http.DefaultTransport, nil).Provision(ctx, stack(c))
					require.ErrorIs(t, err, provision.ErrAlreadyIssued)
					require.ErrorContains(t, err, reg.CardID)
					r.checkIssued(c, wire.CardID(id))
					return
				}
				if f.want != nil {
					require.ErrorIs(t, err, f.want)
				}
				if !f.noSession {
					end := r.waitEnd()
					require.Error(t, end.Err, "the server saw the session fail")
					require.Equal(t, reg.Registration, end.Registration)
				}

				// Again, through an honest relay: it succeeds.
				var trace2 bytes.Buffer
				capt2 := &captureTransport{}
				res, err := r.device(capt2, &trace2).Provision(ctx, stack(c))
				require.NoError(t, err)
				require.NoError(t, r.waitEnd().Err)
				require.Equal(t, id, res.CardID[:], "the registration keeps its CardID")
				r.checkIssued(c, res.CardID)
				card := r.reg.cards[res.CardID]
				requireNoSecrets(t, r.secrets(res.CardID, card.KDD[:]), trace.String(), capt.text(), trace2.String(), capt2.text())

				recs, err := r.srv.Sessions(ctx, reg.Registration)
				require.NoError(t, err)
				if f.noSession {
					require.Len(t, recs, 1)
				} else {
					require.Len(t, recs, 2)
					require.Equal(t, provision.StatusFailed, recs[0].Outcome)
					require.NotEmpty(t, recs[0].Error)
					t.Logf("first session: %s", recs[0].Error)
				}
				require.Equal(t, provision.StatusIssued, recs[len(recs)-1].Outcome)
			})
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// BenchmarkProvision: registration and a whole installation over HTTP on
// loopback, in-process chip, SQLite.
func BenchmarkProvision(b *testing.B) {
	db := dbtest.Open(b, "sqlite")
	keys := freshKeys(b)
	srv, err := provision.New(context.Background(), provision.Config{DB: db, Keys: keys, Digest: purse.Module.Digest()})
	require.NoError(b, err)
	hs := httptest.NewServer(srv.Handler())
	defer srv.Close()
	defer hs.Close()
	chips := make([]*chip.Chip, b.N)
	for i := range chips {
		chips[i] = emptyChip(b, keys.ISD)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := provision.Relay(context.Background(), hs.URL, stack(chips[i]), "bench"); err != nil {
			b.Fatal(err)
		}
	}
}
