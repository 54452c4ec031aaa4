package provision_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet/profile"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/provision"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// The keyring of host/keystore is a Keys as it is.
var _ provision.Keys = (*keystore.Keyring)(nil)

// post sends a raw protocol message and returns the status and body.
func post(t *testing.T, url, token string, body any) (int, []byte) {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		b, err = json.Marshal(v)
		require.NoError(t, err)
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("Content-Type", provision.ContentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out bytes.Buffer
	_, err = out.ReadFrom(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out.Bytes()
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var eb provision.ErrorBody
	require.NoError(t, json.Unmarshal(body, &eb), string(body))
	return eb.Code
}

func (r *rig) register(t *testing.T) provision.RegisterResponse {
	t.Helper()
	c := emptyChip(t, r.keys.ISD)
	reg, err := r.device(http.DefaultTransport, nil).Register(context.Background(), stack(c))
	require.NoError(t, err)
	return reg
}

func TestSessionRules(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r := newRig(t, db, func(c *provision.Config) { c.MaxSessions = 2 })
		reg := r.register(t)
		url := r.hs.URL + provision.PathSession + reg.Registration

		for _, tc := range []struct {
			name, url, token string
			body             any
			status           int
			code             string
		}{
			{"no token", url, "", provision.SessionRequest{}, http.StatusUnauthorized, "unauthorized"},
			{"wrong token", url, strings.Repeat("0", 64), provision.SessionRequest{}, http.StatusUnauthorized, "unauthorized"},
			{"unknown registration", r.hs.URL + provision.PathSession + strings.Repeat("ab", 16), reg.Token, provision.SessionRequest{}, http.StatusNotFound, "unknown"},
			{"bad registration ID", r.hs.URL + provision.PathSession + "x", reg.Token, provision.SessionRequest{}, http.StatusNotFound, "unknown"},
			{"not JSON", url, reg.Token, "{", http.StatusBadRequest, "malformed"},
			{"unknown field", url, reg.Token, `{"seq":0,"extra":1}`, http.StatusBadRequest, "malformed"},
			{"start with responses", url, reg.Token, provision.SessionRequest{Responses: []string{"9000"}}, http.StatusBadRequest, "malformed"},
			{"bad PIN", url, reg.Token, provision.SessionRequest{PIN: "12"}, http.StatusBadRequest, "malformed"},
			{"no session", url, reg.Token, provision.SessionRequest{Session: strings.Repeat("cd", 16), Seq: 1, Nonce: strings.Repeat("00", 16), Responses: []string{"9000"}}, http.StatusNotFound, "unknown"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, body := post(t, tc.url, tc.token, tc.body)
				require.Equal(t, tc.status, status, string(body))
				require.Equal(t, tc.code, errorCode(t, body))
			})
		}

		// A session runs: a second one for the same card is refused.
		status, body := post(t, url, reg.Token, provision.SessionRequest{PIN: "1234"})
		require.Equal(t, http.StatusOK, status, string(body))
		var first provision.SessionResponse
		require.NoError(t, json.Unmarshal(body, &first))
		require.Equal(t, provision.StatusRunning, first.Status)
		require.Equal(t, uint64(1), first.Seq)
		require.Equal(t, []string{"00A4040008A00000015100000000"}, first.Commands, "SELECT of the ISD first")
		status, body = post(t, url, reg.Token, provision.SessionRequest{})
		require.Equal(t, http.StatusServiceUnavailable, status)
		require.Equal(t, "busy", errorCode(t, body))

		// The bound on sessions.
		reg2 := r.register(t)
		status, _ = post(t, r.hs.URL+provision.PathSession+reg2.Registration, reg2.Token, provision.SessionRequest{})
		require.Equal(t, http.StatusOK, status)
		reg3 := r.register(t)
		status, body = post(t, r.hs.URL+provision.PathSession+reg3.Registration, reg3.Token, provision.SessionRequest{})
		require.Equal(t, http.StatusServiceUnavailable, status)
		require.Equal(t, "busy", errorCode(t, body))

		// Another registration's token does not drive this session.
		next := provision.SessionRequest{Session: first.Session, Seq: first.Seq, Nonce: first.Nonce, Responses: []string{"9000"}}
		status, _ = post(t, url, reg2.Token, next)
		require.Equal(t, http.StatusUnauthorized, status)

		// A wrong nonce is a replay: refused, and the session is over.
		bad := next
		bad.Nonce = strings.Repeat("00", 16)
		status, body = post(t, url, reg.Token, bad)
		require.Equal(t, http.StatusConflict, status)
		require.Equal(t, "replay", errorCode(t, body))
		end := r.waitEnd()
		require.ErrorIs(t, end.Err, provision.ErrReplay)
		require.Equal(t, reg.Registration, end.Registration)
		status, body = post(t, url, reg.Token, next)
		require.Equal(t, http.StatusNotFound, status, "the aborted session is gone")
		require.Equal(t, "unknown", errorCode(t, body))
	})
}

func TestSessionTimeout(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r := newRig(t, db, func(c *provision.Config) { c.SessionTimeout = 200 * time.Millisecond })
		reg := r.register(t)
		status, _ := post(t, r.hs.URL+provision.PathSession+reg.Registration, reg.Token, provision.SessionRequest{})
		require.Equal(t, http.StatusOK, status)
		end := r.waitEnd()
		require.ErrorIs(t, end.Err, provision.ErrAborted)
		require.ErrorContains(t, end.Err, "session over")
		recs, err := r.srv.Sessions(context.Background(), reg.Registration)
		require.NoError(t, err)
		require.Len(t, recs, 1)
		require.Equal(t, provision.StatusFailed, recs[0].Outcome)
	})
}

// TestWrongCard: a relay that registers one chip and presents another is
// refused before any key is used.
func TestWrongCard(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r := newRig(t, db, nil)
		ctx := context.Background()
		a, b := emptyChip(t, r.keys.ISD), emptyChip(t, r.keys.ISD)
		d := r.device(http.DefaultTransport, nil)
		reg, err := d.Register(ctx, stack(a))
		require.NoError(t, err)
		_, err = d.Install(ctx, stack(b), reg)
		require.ErrorIs(t, err, provision.ErrAborted)
		require.ErrorIs(t, r.waitEnd().Err, provision.ErrWrongCard)
		res, err := d.Install(ctx, stack(a), reg)
		require.NoError(t, err)
		require.NoError(t, r.waitEnd().Err)
		r.checkIssued(a, res.CardID)
	})
}

// TestDevelopmentChip: a chip straight from `valuechip emulate --profile
// empty` holds the GP test key; the server opens it with ISDKeys.
func TestDevelopmentChip(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r := newRig(t, db, func(c *provision.Config) { c.ISDKeys = hostgp.TestKeys(); c.Level = 0x13 })
		p := profile.Empty()
		c, err := profile.Build(p)
		require.NoError(t, err)
		require.True(t, p.TestKeys)
		res, err := provision.Relay(context.Background(), r.hs.URL, stack(c), "dev-holder")
		require.NoError(t, err)
		require.NoError(t, r.waitEnd().Err)
		require.Len(t, res.PIN, 4)
		r.checkIssued(c, res.CardID)
		require.Equal(t, "dev-holder", r.reg.cards[res.CardID].Holder)
	})
}

func TestRegistration(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		r := newRig(t, db, nil)
		ctx := context.Background()
		c := emptyChip(t, r.keys.ISD)
		d := r.device(http.DefaultTransport, nil)
		reg1, err := d.Register(ctx, stack(c))
		require.NoError(t, err)
		// Registering again (not issued yet) keeps the IDs, renews the token.
		d.Holder = "holder-0002"
		reg2, err := d.Register(ctx, stack(c))
		require.NoError(t, err)
		require.Equal(t, reg1.Registration, reg2.Registration)
		require.Equal(t, reg1.CardID, reg2.CardID)
		require.Equal(t, reg1.TerminalID, reg2.TerminalID)
		require.NotEqual(t, reg1.Token, reg2.Token)
		status, _ := post(t, r.hs.URL+provision.PathSession+reg1.Registration, reg1.Token, provision.SessionRequest{})
		require.Equal(t, http.StatusUnauthorized, status, "the old token is void")
		// Another chip gets the next numbers.
		reg3, err := d.Register(ctx, stack(emptyChip(t, r.keys.ISD)))
		require.NoError(t, err)
		require.NotEqual(t, reg1.CardID, reg3.CardID)
		require.Equal(t, "VD000002", reg3.TerminalID)

		for _, tc := range []struct {
			name string
			body any
		}{
			{"no holder", provision.RegisterRequest{CPLC: strings.Repeat("00", 42), KDD: strings.Repeat("00", 10)}},
			{"short CPLC", provision.RegisterRequest{CPLC: "00", KDD: strings.Repeat("00", 10), Holder: "x"}},
			{"short KDD", provision.RegisterRequest{CPLC: strings.Repeat("00", 42), KDD: "00", Holder: "x"}},
			{"holder with newline", provision.RegisterRequest{CPLC: strings.Repeat("00", 42), KDD: strings.Repeat("00", 10), Holder: "a\nb"}},
			{"trailing data", `{"cplc":"","kdd":"","holder":"x"} {}`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, body := post(t, r.hs.URL+provision.PathRegister, "", tc.body)
				require.Equal(t, http.StatusBadRequest, status)
				require.Equal(t, "malformed", errorCode(t, body))
			})
		}
	})
}

func TestCardID(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		seq    uint64
		want   string
		err    bool
	}{
		{"990000", 1, "9900000000000010", false},
		{"990000", 123456789, "9900001234567899", false},
		{"411111111111111", 0, "", true},
		{"41111111111111", 1, "4111111111111111", false},
		{"990000", 1234567890, "", true},
		{"99a", 1, "", true},
	} {
		id, err := provision.NewCardID(tc.prefix, tc.seq)
		if tc.err {
			require.Error(t, err, tc.prefix)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tc.want, strings.ToUpper(hexs(id[:])))
		require.True(t, provision.ValidCardID(id))
		id[7] ^= 0x01
		require.False(t, provision.ValidCardID(id))
	}
	require.False(t, provision.ValidCardID(wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x8A}))
}

func hexs(b []byte) string {
	const digits = "0123456789ABCDEF"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}

// TestCardRegistry: with host/registry behind it, an issued card is a
// registered card, and recording it twice is harmless.
func TestCardRegistry(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		store, err := registry.New(ctx, db, nil)
		require.NoError(t, err)
		r := newRig(t, db, func(c *provision.Config) { c.Registry = provision.CardRegistry{Store: store} })
		c := emptyChip(t, r.keys.ISD)
		res, err := r.device(http.DefaultTransport, nil).Provision(ctx, stack(c))
		require.NoError(t, err)
		require.NoError(t, r.waitEnd().Err)
		got, err := store.Card(ctx, hexs(res.CardID[:]))
		require.NoError(t, err)
		require.Equal(t, "978", got.Currency)
		require.Equal(t, int64(100000), got.MaxBalance)
		require.Equal(t, byte(1), got.KeyVersion)
		require.Equal(t, "holder-0001", got.HolderRef)
		require.Equal(t, registry.Active, got.Status)
		card := provision.Card{CardID: res.CardID, Holder: "holder-0001", Currency: wire.Currency{0x09, 0x78},
			Limits: wire.Limits{MaxBalance: 100000}, KeyVersions: [3]byte{1, 1, 1}}
		require.NoError(t, provision.CardRegistry{Store: store}.Issued(ctx, card), "idempotent")
	})
}
