package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/purse"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/internal/livepcsc"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

// Issue 4 end to end: the purse issued, loaded, spent and its log read
// through pcscd + vpcd with the valuechip CLI; every certificate checked
// with the issuer's TC master (docs/purse.md §5.4, §12).
func TestPurseThroughPCSC(t *testing.T) {
	livepcsc.Require(t)
	dir := t.TempDir()
	startEmulator(t, "--slot", "0", "--card-file", filepath.Join(dir, "card.json"))
	common := []string{"--reader", slot0, "--dev-keys", "--journal", filepath.Join(dir, "journal.json")}
	purseCmd := func(args ...string) string {
		t.Helper()
		return run(t, binary, append(append([]string{"purse"}, args...), common...)...)
	}
	// stdout alone (the key warnings go to stderr), for JSON.
	purseJSON := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, binary, append(append([]string{"purse"}, args...), "--json")...).Output()
		require.NoError(t, err, "purse %v", args)
		return out
	}

	out := purseCmd("issue", "--test-key", "--level", "33", "--card-id", "1122334455667788", "--pin", "1234")
	require.Contains(t, out, "purse F000000001505552534501 issued: card 1122334455667788")
	require.Contains(t, purseCmd("load", "5000"), "load of 5000 done: balance 5000, ATC 1")
	require.Contains(t, purseCmd("pay", "350"), "debit of 350 done: balance 4650, ATC 2")
	require.Contains(t, purseCmd("pay", "3000", "--pin", "1234"), "debit of 3000 done: balance 1650, ATC 3")

	// Refusals name the problem and change nothing.
	msg, err := runErr(t, "", binary, append([]string{"purse", "pay", "5000"}, common...)...)
	require.Error(t, err)
	require.Contains(t, msg, "amount above the balance")
	msg, err = runErr(t, "", binary, append([]string{"purse", "pay", "3.50"}, common...)...)
	require.Error(t, err)
	require.Contains(t, msg, `amount "3.50": want a whole number of minor units`)

	var recs []struct {
		ATC          uint32 `json:"atc"`
		Type         string `json:"type"`
		Amount       uint32 `json:"amount"`
		BalanceAfter uint32 `json:"balance_after"`
		TC           string `json:"tc"`
		TCVerified   *bool  `json:"tc_verified"`
	}
	require.NoError(t, json.Unmarshal(purseJSON("log", "--reader", slot0), &recs))
	require.Len(t, recs, 3)
	for i, want := range []struct {
		typ           string
		amount, after uint32
	}{{"debit", 3000, 1650}, {"debit", 350, 4650}, {"load", 5000, 5000}} {
		require.Equal(t, uint32(3-i), recs[i].ATC)
		require.Equal(t, want.typ, recs[i].Type)
		require.Equal(t, want.amount, recs[i].Amount)
		require.Equal(t, want.after, recs[i].BalanceAfter)
		require.Nil(t, recs[i].TCVerified, "no keys given: not checked")
	}

	// The certificates verify with the issuer's TC master (the server's
	// check), and `purse log` with keys says so.
	var full []json.RawMessage
	require.NoError(t, json.Unmarshal(purseJSON(append([]string{"log"}, common...)...), &full))
	m := terminal.DevMasters()
	auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
	require.NoError(t, err)
	id := wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	for _, raw := range full {
		var r struct {
			ATC          uint32 `json:"atc"`
			Type         string `json:"type"`
			Amount       uint32 `json:"amount"`
			BalanceAfter uint32 `json:"balance_after"`
			DateTime     string `json:"date_time"`
			TerminalID   string `json:"terminal_id"`
			Reference    uint32 `json:"reference"`
			HostMAC      string `json:"host_mac"`
			CardMAC      string `json:"card_mac"`
			TC           string `json:"tc"`
			TCVerified   bool   `json:"tc_verified"`
		}
		require.NoError(t, json.Unmarshal(raw, &r))
		require.True(t, r.TCVerified)
		rec := wire.LogRecord{ATC: r.ATC, Type: wire.TypeLoad, Amount: r.Amount, BalanceAfter: r.BalanceAfter, Currency: wire.Currency{0x09, 0x78}, Reference: r.Reference}
		if r.Type == "debit" {
			rec.Type = wire.TypeDebit
		}
		for _, f := range []struct {
			dst []byte
			hex string
		}{{rec.DateTime[:], r.DateTime}, {rec.TerminalID[:], r.TerminalID}, {rec.HostMAC[:], r.HostMAC}, {rec.CardMAC[:], r.CardMAC}, {rec.TC[:], r.TC}} {
			b, err := hex.DecodeString(f.hex)
			require.NoError(t, err)
			copy(f.dst, b)
		}
		require.NoError(t, auth.VerifyTC(id, rec), "ATC %d", r.ATC)
		rec.Amount++
		require.Error(t, auth.VerifyTC(id, rec))
	}
	require.Contains(t, run(t, binary, "purse", "balance", "--reader", slot0), "1650 (currency 978")
}

// BenchmarkDebitTransactionVPCD runs complete debits (SELECT, GET PURSE
// DATA, INITIALIZE DEBIT, DEBIT, with the SAM's M1 and M2 check) through
// ebfe/scard, pcscd and vpcd to an in-process chip:
//
//	go test -run '^$' -bench DebitTransactionVPCD -cpu 1 ./e2e/
func BenchmarkDebitTransactionVPCD(b *testing.B) {
	livepcsc.Require(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := profile.Build(profile.Sample(), chip.WithModules(purse.Module))
	if err != nil {
		b.Fatal(err)
	}
	m := terminal.DevMasters()
	id := wire.CardID{0xBE, 0x4C, 0, 0, 0, 0, 0, 1}
	tid := wire.TerminalID{'B', 'E', 'N', 'C', 'H', '0', '0', '1'}
	func() {
		conn := emu.Connect(c, "emu:issue")
		s, err := hostgp.Open(ctx, connect.Stack(conn, connect.StackOptions{}), hostgp.Config{Keys: hostgp.TestKeys(), Level: scp03.LevelCMAC | scp03.LevelCDEC})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		lim := wire.Limits{MaxBalance: wire.NoLimit, MaxLoad: wire.NoLimit, MaxDebit: 10000, PINFreeLimit: wire.NoLimit, OfflineLimit: wire.NoLimit}
		if err := terminal.Issue(ctx, s, terminal.IssueParams{Digest: purse.Module.Digest(), CardID: id, Currency: wire.Currency{0x09, 0x78}, Limits: lim, PIN: "1234", Masters: m}); err != nil {
			b.Fatal(err)
		}
	}()
	sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
	if err != nil {
		b.Fatal(err)
	}
	auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
	if err != nil {
		b.Fatal(err)
	}
	card := attachVPCD(b, c)
	tr := connect.Stack(card, connect.StackOptions{})
	if _, err := terminal.New(terminal.Config{Authority: auth, TerminalID: tid}).Load(ctx, tr, 0xF0000000); err != nil {
		b.Fatal(err)
	}
	term := terminal.New(terminal.Config{SAM: sam, TerminalID: tid})
	for b.Loop() {
		if _, err := term.Pay(ctx, tr, 1, terminal.PayOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tx/s")
}
