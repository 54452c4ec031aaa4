package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/internal/dbtest"
	"github.com/valuechip/valuechip/internal/livepcsc"
)

// Issue 5 end to end, every part real: the money server as its own process
// (`valuechip server`) on SQLite and on PostgreSQL, an emulated chip on vpcd
// inside pcscd, the purse issued and registered, loaded online over ISO 8583,
// spent offline, the advices forwarded and the batch reconciled (0500), and
// the ledger report balancing to the cent against the card (docs/server.md,
// docs/terminal.md, docs/ledger.md §7).
func TestServerEndToEnd(t *testing.T) {
	livepcsc.Require(t)
	eachEngine(t, serverStory)
}

// eachEngine runs story once on SQLite (a file in a fresh directory) and once
// on a fresh PostgreSQL database, dropped at cleanup — after the server
// process the story starts, stopped by a cleanup registered later.
func eachEngine(t *testing.T, story func(t *testing.T, dir, dsn string)) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "money.db")
			if engine == "postgres" {
				dsn = dbtest.PostgresDSN(t)
			}
			story(t, dir, dsn)
		})
	}
}

func serverStory(t *testing.T, dir, dsn string) {
	kek := filepath.Join(dir, "kek.hex")
	require.NoError(t, os.WriteFile(kek, []byte(strings.Repeat("5A", 32)+"\n"), 0o600))
	keyring := filepath.Join(dir, "keyring.json")
	keyArgs := []string{"--keyring", keyring, "--kek-file", kek}

	out := run(t, binary, append([]string{"keys", "init", "--dev-masters"}, keyArgs...)...)
	require.Contains(t, out, "MK_LOAD")
	require.Contains(t, out, "DEVELOPMENT KEYRING")

	srv := startMoneyServer(t, append([]string{"--db", dsn, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--ready-file", filepath.Join(dir, "ready")}, keyArgs...)...)

	term := filepath.Join(dir, "term.json")
	out = run(t, binary, append([]string{"terminal", "register", "--db", dsn, "--id", "TERM0001",
		"--merchant", "MERCHANT0000001", "--server", srv.addr, "--out", term, "--notify", srv.base()}, keyArgs...)...)
	require.Contains(t, out, `registered terminal "TERM0001"`)
	var termFile struct {
		TMK string `json:"tmk"`
	}
	require.NoError(t, json.Unmarshal([]byte(readFile(t, term)), &termFile))
	require.Len(t, termFile.TMK, 32)

	startEmulator(t, "--slot", "0", "--card-file", filepath.Join(dir, "card.json"))
	const cardID = "1122334455667788"
	out = run(t, binary, "purse", "issue", "--reader", slot0, "--dev-keys", "--test-key", "--level", "33",
		"--card-id", cardID, "--currency", "978", "--pin", "1234", "--journal", filepath.Join(dir, "issue-journal.json"))
	require.Contains(t, out, "issued: card "+cardID)
	require.Contains(t, run(t, binary, "card", "register", cardID, "--db", dsn, "--currency", "978", "--max-balance", "100000"),
		"card "+cardID+" registered")

	onTerm := []string{"--reader", slot0, "--terminal", term}
	purse := func(args ...string) string {
		t.Helper()
		return run(t, binary, append(append([]string{"purse"}, args...), onTerm...)...)
	}
	require.Contains(t, purse("load", "5000"), "load of 5000 done: balance 5000, ATC 1")
	require.Contains(t, purse("load", "1234"), "load of 1234 done: balance 6234, ATC 2")
	// Above the PIN-free limit (2500) without the PIN: refused by the card,
	// nothing debited, nothing queued.
	msg, err := runErr(t, "", binary, append([]string{"purse", "pay", "2600"}, onTerm...)...)
	require.Error(t, err, msg)
	require.Contains(t, msg, "PIN is not verified")
	// Offline: nothing reaches the server until settlement.
	debits := []struct {
		amount int64
		pin    bool
	}{{350, false}, {3000, true}, {120, false}, {1, false}, {2499, false}}
	var debited int64
	for i, d := range debits {
		args := []string{"pay", fmt.Sprint(d.amount)}
		if d.pin {
			args = append(args, "--pin", "1234") // above the PIN-free limit (2500)
		}
		out := purse(args...)
		debited += d.amount
		require.Contains(t, out, fmt.Sprintf("debit of %d done: balance %d, ATC %d", d.amount, 6234-debited, 3+i))
		require.Contains(t, out, fmt.Sprintf("advice queued for the money server, %d waiting", i+1))
	}

	// Before settlement the server knows only the loads.
	rep := report(t, dsn)
	require.Equal(t, int64(-6234), rep.total("purse"))
	require.Equal(t, int64(0), rep.total("merchant"))

	out = run(t, binary, "purse", "settle", "--terminal", term)
	require.Contains(t, out, fmt.Sprintf("advices: %d sent, %d acknowledged, 0 rejected, 0 still queued", len(debits), len(debits)))
	require.Contains(t, out, "in balance with the server")

	var bal struct {
		Balance int64  `json:"balance"`
		CardID  string `json:"card_id"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	raw, err := exec.CommandContext(ctx, binary, "purse", "balance", "--reader", slot0, "--json").Output()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &bal))
	require.Equal(t, cardID, bal.CardID)
	require.Equal(t, 6234-debited, bal.Balance)

	// To the cent: the purse shadow is the card's balance, the merchant is
	// owed every debit, the funding paid every load, nothing in progress,
	// and the books balance.
	rep = report(t, dsn)
	require.Equal(t, -bal.Balance, rep.total("purse"), "purse shadow = card balance")
	require.Equal(t, -debited, rep.total("merchant"), "merchant payable = debits")
	require.Equal(t, int64(5000+1234), rep.total("funding"), "funding = loads")
	require.Len(t, rep.Merchants, 1)
	require.Equal(t, "MERCHANT0000001", rep.Merchants[0].Merchant)
	require.Equal(t, debited, rep.Merchants[0].Owed)
	require.Empty(t, rep.InProgress)
	require.NotEmpty(t, rep.Imbalance)
	for cur, v := range rep.Imbalance {
		require.Zero(t, v, "imbalance in %s", cur)
	}

	// The second channel agrees: the card's own log, uploaded over the
	// server's HTTP side, matches what the terminal reported, record by
	// record (docs/crosscheck.md).
	var up struct {
		Accepted      int               `json:"accepted"`
		Refused       []json.RawMessage `json:"refused"`
		Discrepancies []json.RawMessage `json:"discrepancies"`
	}
	raw, err = exec.CommandContext(ctx, binary, "upload", "--server", strings.TrimSuffix(srv.metrics, "/metrics"),
		"--reader", slot0, "--json").Output()
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &up), "%s", raw)
	require.Equal(t, 2+len(debits), up.Accepted, "%s", raw)
	require.Empty(t, up.Refused, "%s", raw)
	require.Empty(t, up.Discrepancies, "%s", raw)

	// A second settlement has nothing to send and an empty batch in balance.
	out = run(t, binary, "purse", "settle", "--terminal", term)
	require.Contains(t, out, "advices: 0 sent")
	require.Contains(t, out, "in balance with the server")

	// What the server counted, from its /metrics.
	metrics := httpGet(t, srv.metrics)
	for _, want := range []string{
		`valuechip_server_requests_total{code="00",mti="0200"} 2`,
		`valuechip_server_requests_total{code="00",mti="0220"} ` + fmt.Sprint(2+len(debits)), // 2 load completions + the debits
		`valuechip_server_requests_total{code="00",mti="0500"} 2`,
		`valuechip_server_loads_in_progress 0`,
	} {
		require.Contains(t, metrics, want)
	}

	// The ready file holds the ISO 8583 address (written before the ready
	// line is printed).
	require.Equal(t, srv.addr, strings.TrimSpace(readFile(t, filepath.Join(dir, "ready"))))

	// Graceful stop: exit status 0. Keys never reach the log.
	require.NoError(t, srv.stop(t), "server exit")
	logs := srv.stderr.String()
	require.Contains(t, logs, "server stopped")
	require.NotContains(t, strings.ToUpper(logs), strings.ToUpper(termFile.TMK))
	require.NotContains(t, strings.ToUpper(logs), "2021222324252627") // MK_DEBIT of the dev masters
}

// moneyServer is a running `valuechip server`.
type moneyServer struct {
	cmd           *exec.Cmd
	addr, metrics string
	stderr        *syncBuffer
	exited        chan struct{} // closed once the process has exited
	exitErr       error         // set before exited is closed
}

// base is the server's HTTP side, "http://HOST:PORT".
func (s *moneyServer) base() string { return strings.TrimSuffix(s.metrics, "/metrics") }

// The ready line: "ready: listening on ADDR (metrics http://HOST:PORT/metrics…)".
var (
	readyRE   = regexp.MustCompile(`^ready: listening on (\S+)`)
	metricsRE = regexp.MustCompile(`http://[^\s)]+/metrics`)
)

// startMoneyServer runs `valuechip server args...` and returns once it has
// printed its "ready:" line (a probe, not a sleep); it is killed at cleanup
// if the test did not stop it.
func startMoneyServer(t *testing.T, args ...string) *moneyServer {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"server"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	s := &moneyServer{cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	require.NoError(t, cmd.Start())
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := readyRE.FindStringSubmatch(sc.Text()); m != nil && len(ready) == 0 {
				ready <- []string{m[1], metricsRE.FindString(sc.Text())}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		s.exitErr = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
		t.Logf("server log:\n%s", s.stderr.String())
	})
	select {
	case m := <-ready:
		s.addr, s.metrics = m[0], m[1]
		require.NotEmpty(t, s.metrics, "no metrics URL in the ready line")
		return s
	case <-s.exited:
		t.Fatalf("server exited before it was ready (%v)", s.exitErr)
	case <-time.After(60 * time.Second):
		t.Fatalf("server not ready within 60 s")
	}
	return nil
}

// stop sends SIGTERM and returns the process's exit error (nil: status 0).
func (s *moneyServer) stop(t *testing.T) error {
	t.Helper()
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.exited:
		return s.exitErr
	case <-time.After(30 * time.Second):
		t.Fatalf("server did not stop within 30 s of SIGTERM")
		return nil
	}
}

// ledgerReport is `valuechip report --json`.
type ledgerReport struct {
	Balances []struct {
		Kind     string `json:"kind"`
		Currency string `json:"currency"`
		Accounts int    `json:"accounts"`
		Total    int64  `json:"total"`
	} `json:"balances"`
	Merchants []struct {
		Merchant string `json:"merchant"`
		Currency string `json:"currency"`
		Owed     int64  `json:"owed"`
	} `json:"merchants"`
	InProgress []json.RawMessage `json:"in_progress"`
	Imbalance  map[string]int64  `json:"imbalance"`
}

func (r ledgerReport) total(kind string) int64 {
	var sum int64
	for _, b := range r.Balances {
		if b.Kind == kind {
			sum += b.Total
		}
	}
	return sum
}

func report(t *testing.T, dsn string) ledgerReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "report", "--db", dsn, "--json").Output()
	require.NoError(t, err, "valuechip report:\n%s", out)
	var r ledgerReport
	require.NoError(t, json.Unmarshal(out, &r), "%s", out)
	return r
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", b)
	return string(b)
}
