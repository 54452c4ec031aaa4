package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/internal/livepcsc"
)

// Issue 6 end to end, every part real: an EMPTY emulated chip on vpcd inside
// pcscd whose ISD keys are diversified from the key ring's card-manager
// master, one `valuechip server` process serving ISO 8583 and HTTP on SQLite
// and on PostgreSQL, `valuechip provision` relaying the remote installation
// through pcscd; then the purse is loaded online by a registered terminal,
// spent offline, the batch settled, the card's log uploaded over the second
// channel, and `valuechip report` shows no discrepancy and balances that
// reconcile to the cent (docs/provision.md, docs/crosscheck.md,
// docs/server.md §8).
func TestProvisionEndToEnd(t *testing.T) {
	livepcsc.Require(t)
	eachEngine(t, provisionStory)
}

// issuer is a development key ring and a money server on it.
type issuer struct {
	dir, dsn, kek, keyring string
	keyArgs                []string
	srv                    *moneyServer
	base                   string // the server's HTTP base URL
}

// startIssuer makes a development key ring (the public dev masters, whose
// card-manager master is the GP test key, KVN 01) and starts `valuechip
// server` with ISO 8583 and HTTP on ephemeral ports.
func startIssuer(t *testing.T, dir, dsn string) *issuer {
	t.Helper()
	is := &issuer{dir: dir, dsn: dsn, kek: filepath.Join(dir, "kek.hex"), keyring: filepath.Join(dir, "keyring.json")}
	require.NoError(t, os.WriteFile(is.kek, []byte(strings.Repeat("A5", 32)+"\n"), 0o600))
	is.keyArgs = []string{"--keyring", is.keyring, "--kek-file", is.kek}
	run(t, binary, append([]string{"keys", "init", "--dev-masters"}, is.keyArgs...)...)
	is.srv = startMoneyServer(t, append([]string{"--db", dsn, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--ready-file", filepath.Join(dir, "ready")}, is.keyArgs...)...)
	is.base = strings.TrimSuffix(is.srv.metrics, "/metrics")
	require.Equal(t, "ok\n", httpGet(t, is.base+"/healthz"))
	return is
}

// registerTerminal enrols a terminal of the server and returns its file.
func (is *issuer) registerTerminal(t *testing.T, id, merchant string) string {
	t.Helper()
	f := filepath.Join(is.dir, strings.ToLower(id)+".json")
	out := run(t, binary, append([]string{"terminal", "register", "--db", is.dsn, "--id", id, "--merchant", merchant,
		"--server", is.srv.addr, "--out", f, "--notify", is.srv.base()}, is.keyArgs...)...)
	require.Contains(t, out, fmt.Sprintf("registered terminal %q", id))
	return f
}

// emptyChip starts `valuechip emulate` with an ISD-only chip whose keys are
// diversified by its KDD from the dev card-manager master.
func emptyChip(t *testing.T, dir string) {
	t.Helper()
	prof := filepath.Join(dir, "chip.json")
	require.NoError(t, os.WriteFile(prof, []byte(`{"isd_master": "404142434445464748494A4B4C4D4E4F", "isd_kvn": 1}`), 0o600))
	startEmulator(t, "--slot", "0", "--profile", prof, "--card-file", filepath.Join(dir, "card.json"))
}

type provisioned struct {
	CardID     string `json:"card_id"`
	TerminalID string `json:"terminal_id"`
	Exchanges  int    `json:"exchanges"`
}

// provision runs `valuechip provision` against server (a URL) and returns
// its outcome, or its error and output.
func provision(t *testing.T, server, trace string) (provisioned, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "provision", "--server", server, "--holder", "alice", "--pin", "1234",
		"--reader", slot0, "--trace-file", trace, "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "provision timed out:\n%s%s", stdout.String(), stderr.String())
	var p provisioned
	if err == nil {
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &p), "%s", stdout.String())
	}
	return p, stdout.String() + stderr.String(), err
}

// fullReport is `valuechip report --json` with the second channel and the
// wallets.
type fullReport struct {
	ledgerReport
	Discrepancies []struct {
		Kind           string `json:"kind"`
		CardID         string `json:"card_id"`
		ATC            uint32 `json:"atc"`
		TerminalID     string `json:"terminal_id"`
		CardAmount     int64  `json:"card_amount"`
		ReportedAmount int64  `json:"reported_amount"`
	} `json:"discrepancies"`
	Wallets []json.RawMessage `json:"wallets"`
}

func reportFull(t *testing.T, dsn string) fullReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "report", "--db", dsn, "--json").Output()
	require.NoError(t, err, "valuechip report:\n%s", out)
	var r fullReport
	require.NoError(t, json.Unmarshal(out, &r), "%s", out)
	require.NotNil(t, r.Discrepancies, "no discrepancies field: %s", out)
	return r
}

func cardBalance(t *testing.T) (string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := exec.CommandContext(ctx, binary, "purse", "balance", "--reader", slot0, "--json").Output()
	require.NoError(t, err)
	var bal struct {
		Balance int64  `json:"balance"`
		CardID  string `json:"card_id"`
	}
	require.NoError(t, json.Unmarshal(raw, &bal), "%s", raw)
	return bal.CardID, bal.Balance
}

func provisionStory(t *testing.T, dir, dsn string) {
	is := startIssuer(t, dir, dsn)
	emptyChip(t, dir)

	// An empty chip: no purse to select.
	_, err := runErr(t, "", binary, "purse", "balance", "--reader", slot0)
	require.Error(t, err)

	trace := filepath.Join(dir, "relay.trace")
	p, out, err := provision(t, is.base, trace)
	require.NoError(t, err, out)
	require.Regexp(t, `^990000\d{10}$`, p.CardID)
	require.Equal(t, "VD000001", p.TerminalID)
	requireRelayHoldsNoKey(t, is, p.CardID, readFile(t, trace))

	// The purse answers with the assigned CardID and nothing in it.
	id, bal := cardBalance(t)
	require.True(t, strings.EqualFold(p.CardID, id), "card %s, provisioned %s", id, p.CardID)
	require.Zero(t, bal)

	// Loaded online by a registered terminal: the card issued a moment
	// ago is in the ISO 8583 side's registry at once.
	term := is.registerTerminal(t, "TERM0001", "MERCHANT0000001")
	onTerm := []string{"--reader", slot0, "--terminal", term}
	purse := func(args ...string) string {
		t.Helper()
		return run(t, binary, append(append([]string{"purse"}, args...), onTerm...)...)
	}
	require.Contains(t, purse("load", "5000"), "load of 5000 done: balance 5000, ATC 1")
	debits := []struct {
		amount int64
		pin    bool
	}{{350, false}, {3000, true}, {120, false}}
	var debited int64
	for i, d := range debits {
		args := []string{"pay", fmt.Sprint(d.amount)}
		if d.pin {
			args = append(args, "--pin", "1234") // above the PIN-free limit (25.00)
		}
		debited += d.amount
		require.Contains(t, purse(args...), fmt.Sprintf("debit of %d done: balance %d, ATC %d", d.amount, 5000-debited, 2+i))
	}
	out = run(t, binary, "purse", "settle", "--terminal", term)
	require.Contains(t, out, fmt.Sprintf("advices: %d sent, %d acknowledged, 0 rejected, 0 still queued", len(debits), len(debits)))
	require.Contains(t, out, "in balance with the server")

	// The second channel: the card's log, certificates included.
	out = run(t, binary, "upload", "--server", is.base, "--reader", slot0)
	require.Contains(t, out, fmt.Sprintf("uploaded %d records: %d accepted (%d new), 0 refused", 1+len(debits), 1+len(debits), 1+len(debits)))
	require.Contains(t, out, "no discrepancy")
	// Again: harmless, nothing new.
	require.Contains(t, run(t, binary, "upload", "--server", is.base, "--reader", slot0), "accepted (0 new)")

	_, bal = cardBalance(t)
	require.Equal(t, 5000-debited, bal)
	rep := reportFull(t, dsn)
	require.Empty(t, rep.Discrepancies)
	require.Equal(t, -bal, rep.total("purse"), "purse shadow = card balance")
	require.Equal(t, -debited, rep.total("merchant"), "merchant payable = debits")
	require.Equal(t, int64(5000), rep.total("funding"), "funding = loads")
	require.Len(t, rep.Merchants, 1)
	require.Equal(t, debited, rep.Merchants[0].Owed)
	require.Empty(t, rep.InProgress)
	for cur, v := range rep.Imbalance {
		require.Zero(t, v, "imbalance in %s", cur)
	}

	metrics := httpGet(t, is.srv.metrics)
	require.Contains(t, metrics, `valuechip_server_http_requests_total{code="200",route="provision"}`)
	require.Contains(t, metrics, `valuechip_server_http_requests_total{code="200",route="cards"} 2`)

	require.NoError(t, is.srv.stop(t), "server exit")
	requireNoKeyIn(t, is, p.CardID, nil, "server log", is.srv.stderr.String())
}

// secrets lists every key of the installation as upper-case hex: the
// key ring's purse masters and the card's keys derived from them, the
// card-manager master and the chip's ISD keys derived from it by its KDD.
func secrets(t *testing.T, is *issuer, cardID string, kdd []byte) map[string]string {
	t.Helper()
	kek, err := keystore.LoadKEK(is.kek)
	require.NoError(t, err)
	ring, err := keystore.OpenKeyring(is.keyring, kek)
	require.NoError(t, err)
	ctx := context.Background()
	m, err := ring.Masters(ctx)
	require.NoError(t, err)
	raw, err := hex.DecodeString(cardID)
	require.NoError(t, err)
	var id wire.CardID
	copy(id[:], raw)
	card, err := m.Diversify(id)
	require.NoError(t, err)
	cm, _, err := ring.CardManagerMaster(ctx)
	require.NoError(t, err)
	keys := map[string][]byte{
		"MK_LOAD": m.Load.Key, "MK_DEBIT": m.Debit.Key, "MK_TC": m.TC.Key,
		"K_LOAD": card.Load.Key, "K_DEBIT": card.Debit.Key, "K_TC": card.TC.Key,
		"ISD master ENC": cm.ENC, "ISD master MAC": cm.MAC, "ISD master DEK": cm.DEK,
	}
	if kdd != nil {
		isd, err := hostgp.Diversify(cm, kdd)
		require.NoError(t, err)
		keys["ISD ENC"], keys["ISD MAC"], keys["ISD DEK"] = isd.ENC, isd.MAC, isd.DEK
	}
	out := map[string]string{}
	for name, k := range keys {
		require.Len(t, k, 16, name)
		out[name] = strings.ToUpper(hex.EncodeToString(k))
	}
	return out
}

// requireNoKeyIn fails when text holds any key of secrets, or either half
// of one (an 8-byte window would be a leak too).
func requireNoKeyIn(t *testing.T, is *issuer, cardID string, kdd []byte, what, text string) {
	t.Helper()
	up := strings.ToUpper(strings.ReplaceAll(text, " ", ""))
	for name, h := range secrets(t, is, cardID, kdd) {
		require.NotContains(t, up, h, "%s in clear in the %s", name, what)
		require.NotContains(t, up, h[:16], "first half of %s in the %s", name, what)
		require.NotContains(t, up, h[16:], "second half of %s in the %s", name, what)
	}
}

// requireRelayHoldsNoKey checks the relay's APDU trace: the installation
// went through it wrapped (STORE DATA at level 33), and no key is in it.
func requireRelayHoldsNoKey(t *testing.T, is *issuer, cardID, trace string) {
	t.Helper()
	require.Contains(t, trace, "> 80CA9F7F00", "registration read the CPLC")
	require.Contains(t, trace, "> 84E2", "STORE DATA crossed the relay wrapped")
	kdd := kddOf(t, trace)
	require.Len(t, kdd, 10, "KDD (Amd D Table 7-2)")
	requireNoKeyIn(t, is, cardID, kdd, "relay's trace", trace)
}

// kddOf finds the chip's key diversification data in the relay's trace:
// the answer to GET DATA 'CF' (Amd D Table 7-2), "CF 0A" + 10 bytes.
func kddOf(t *testing.T, trace string) []byte {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(trace))
	next := false
	for sc.Scan() {
		l := strings.ReplaceAll(sc.Text(), " ", "")
		if strings.HasPrefix(l, ">80CA00CF") {
			next = true
			continue
		}
		if next && strings.HasPrefix(l, "<") {
			b, err := hex.DecodeString(strings.TrimPrefix(l, "<"))
			require.NoError(t, err, l)
			require.True(t, len(b) > 2 && b[len(b)-2] == 0x90 && b[len(b)-1] == 0x00, "GET DATA CF answered %X", b)
			b = b[:len(b)-2]
			if len(b) > 2 && b[0] == 0xCF && int(b[1]) == len(b)-2 { // the whole TLV (GPCS §11.3.3)
				b = b[2:]
			}
			return b
		}
	}
	t.Fatalf("no GET DATA CF in the relay's trace:\n%s", trace)
	return nil
}

// A relay that alters one C-APDU of the installation (a byte of the first
// STORE DATA, wrapped under C-MAC and C-DECRYPTION) makes it fail cleanly;
// the chip stays installable and an honest second `valuechip provision`
// succeeds with the same CardID (docs/provision.md §5).
func TestProvisionTamperingRelay(t *testing.T) {
	livepcsc.Require(t)
	dir := t.TempDir()
	is := startIssuer(t, dir, "sqlite:"+filepath.Join(dir, "money.db"))
	emptyChip(t, dir)

	var tampered atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), r.Method, is.base+r.URL.Path, bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		out, err := io.ReadAll(res.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out = tamperStoreData(out, &tampered)
		for k, v := range res.Header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(res.StatusCode)
		_, _ = w.Write(out)
	}))
	defer proxy.Close()

	trace := filepath.Join(dir, "tampered.trace")
	_, out, err := provision(t, proxy.URL, trace)
	require.Error(t, err, "an altered STORE DATA must fail the installation:\n%s", out)
	require.Equal(t, int32(1), tampered.Load(), "the proxy altered exactly one command")
	require.Contains(t, out, "6982", "the card refused the altered command (C-MAC)")
	require.Contains(t, readFile(t, trace), "< 6982")
	// Not issued: no purse answers with a CardID.
	_, err = runErr(t, "", binary, "purse", "balance", "--reader", slot0)
	require.Error(t, err)

	p, out, err := provision(t, is.base, filepath.Join(dir, "honest.trace"))
	require.NoError(t, err, out)
	require.Regexp(t, `^990000\d{10}$`, p.CardID)
	id, bal := cardBalance(t)
	require.True(t, strings.EqualFold(p.CardID, id))
	require.Zero(t, bal)
	term := is.registerTerminal(t, "TERM0001", "MERCHANT0000001")
	require.Contains(t, run(t, binary, "purse", "load", "700", "--reader", slot0, "--terminal", term), "load of 700 done: balance 700, ATC 1")
	require.NoError(t, is.srv.stop(t))
}

// tamperStoreData flips a byte in the data of the first wrapped STORE
// DATA (84 E2) of a session answer, once.
func tamperStoreData(body []byte, done *atomic.Int32) []byte {
	if done.Load() > 0 {
		return body
	}
	var msg map[string]json.RawMessage
	if json.Unmarshal(body, &msg) != nil || msg["commands"] == nil {
		return body
	}
	var cmds []string
	if json.Unmarshal(msg["commands"], &cmds) != nil {
		return body
	}
	for i, c := range cmds {
		b, err := hex.DecodeString(c)
		if err != nil || len(b) < 12 || b[0] != 0x84 || b[1] != 0xE2 {
			continue
		}
		b[8] ^= 0x01 // inside the encrypted data, before the C-MAC
		cmds[i] = strings.ToUpper(hex.EncodeToString(b))
		raw, err := json.Marshal(cmds)
		if err != nil {
			return body
		}
		msg["commands"] = raw
		out, err := json.Marshal(msg)
		if err != nil {
			return body
		}
		done.Add(1)
		return out
	}
	return body
}
