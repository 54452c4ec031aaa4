package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/internal/livepcsc"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/pcsc"
)

// (a) valuechip send, through ebfe/scard and pcscd, gets the card's answers.
func TestSendThroughPCSC(t *testing.T) {
	livepcsc.Require(t)
	startEmulator(t, "--slot", "0", "--card-file", filepath.Join(t.TempDir(), "card.json"))

	out := run(t, binary, "send", "--reader", slot0, selectTest, "80 10 00 00 05 48656C6C6F 00", "80 20 00 00 04", "80 20 00 00 04")
	require.Equal(t, []string{
		fci + " 9000 (success)",
		"48656C6C6F 9000 (success)",
		"00000001 9000 (success)",
		"00000002 9000 (success)",
	}, lines(out))

	// An unknown application and an unknown instruction give their status words.
	out = run(t, binary, "send", "--reader", "PCD 00 00", "00A4040005A000000000", selectTest, "80FE0000")
	require.Equal(t, []string{"6A82 (file or application not found)", fci + " 9000 (success)", "6D00 (instruction not supported)"}, lines(out))

	// JSON output for scripts.
	out = run(t, binary, "send", "--reader", slot0, "--json", selectTest)
	var res []struct{ Data, SW string }
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	require.Equal(t, fci, strings.ToUpper(res[0].Data))
	require.Equal(t, "9000", res[0].SW)

	// A command shorter than 4 bytes never reaches vpcd (it would hang the slot).
	out, err := runErr(t, "", binary, "send", "--reader", slot0, "04")
	require.Error(t, err)
	require.Contains(t, out, "needs at least CLA INS P1 P2")
}

// The same card through the Go API: connect.Open by name fragment.
func TestGoAPIThroughPCSC(t *testing.T) {
	livepcsc.Require(t)
	startEmulator(t, "--slot", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := connect.Open(ctx, "PCD 00 00", connect.Options{})
	require.NoError(t, err)
	defer conn.Close()
	require.Equal(t, slot0, conn.Reader())
	require.Equal(t, testATR, strings.ToUpper(hex.EncodeToString(conn.ATR())), "ATR as pcscd reports it")
	require.Equal(t, reader.ProtocolT1, conn.Protocol())
	rsp, err := conn.Transceive(ctx, mustHex(t, selectTest))
	require.NoError(t, err)
	require.Equal(t, fci+"9000", strings.ToUpper(hex.EncodeToString(rsp)))

	// A warm reset through pcscd deselects the applet (volatile state): the
	// issuer security domain, default-selected, answers instead.
	require.NoError(t, conn.Reset(ctx, false))
	rsp, err = conn.Transceive(ctx, mustHex(t, "8022000004"))
	require.NoError(t, err)
	require.Equal(t, "6d00", hex.EncodeToString(rsp), "selection must be lost on reset")
}

// (b) Independent PC/SC clients from Debian see the same card and answers.
func TestIndependentClients(t *testing.T) {
	livepcsc.Require(t)
	startEmulator(t, "--slot", "0")

	out := run(t, "opensc-tool", "--reader", "0", "--atr")
	require.Contains(t, strings.ToLower(out), "3b:85:80:01:80:73:80:01:40:36")

	out = run(t, "opensc-tool", "--reader", "0", "--send-apdu", "00:A4:04:00:08:F0:56:43:54:45:53:54:01", "--send-apdu", "80:10:00:00:05:48:65:6C:6C:6F:00")
	// opensc-tool prints 16 bytes a line, hex then ASCII.
	require.Contains(t, out, "Received (SW1=0x90, SW2=0x00)")
	require.Contains(t, out, "6F 10 84 08 F0 56 43 54 45 53 54 01 A5 04 9F 65")
	require.Contains(t, out, "48 65 6C 6C 6F")

	// scriptor (pcsc-tools) reads a script on stdin.
	out, err := runErr(t, "00 A4 04 00 08 F0 56 43 54 45 53 54 01\n80 10 00 00 03 01 02 03 00\n", "scriptor", "-r", slot0)
	require.NoError(t, err, out)
	flat := strings.Join(strings.Fields(out), " ") // scriptor wraps long responses
	require.Contains(t, flat, "Using T=1 protocol")
	require.Contains(t, flat, "< 6F 10 84 08 F0 56 43 54 45 53 54 01 A5 04 9F 65 01 FF 90 00 : Normal processing.")
	require.Contains(t, flat, "< 01 02 03 90 00 : Normal processing.")
}

// (c) Removal and re-insertion are events: SIGUSR1/SIGUSR2, and "tap" on stdin.
func TestCardEvents(t *testing.T) {
	livepcsc.Require(t)
	emu := startEmulator(t, "--slot", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pcsc.Open()
	require.NoError(t, err)
	defer pc.Close()
	events, err := pc.Watch(ctx)
	require.NoError(t, err)

	// `valuechip readers --watch --json` as a second observer.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watcher := startWatcher(t, watchCtx)
	// Both observers first report the card already there.
	require.Equal(t, []string{"card_inserted"}, watcher(1))

	next := func(kind reader.EventKind) reader.Event {
		t.Helper()
		for {
			select {
			case e := <-events:
				if e.Reader == slot0 && (e.Kind == reader.CardInserted || e.Kind == reader.CardRemoved) {
					require.Equal(t, kind, e.Kind, "event order")
					return e
				}
			case <-ctx.Done():
				t.Fatalf("no %v event", kind)
			}
		}
	}
	next(reader.CardInserted)
	require.NoError(t, emu.cmd.Process.Signal(syscall.SIGUSR1))
	next(reader.CardRemoved)
	emu.expectLine(t, "removed:")
	require.NoError(t, emu.cmd.Process.Signal(syscall.SIGUSR2))
	e := next(reader.CardInserted)
	require.Equal(t, testATR, strings.ToUpper(hex.EncodeToString(e.ATR)))
	emu.expectLine(t, "ready:")

	// A tap from stdin: out and back in.
	_, err = emu.stdin.Write([]byte("tap\n"))
	require.NoError(t, err)
	next(reader.CardRemoved)
	next(reader.CardInserted)
	waitPresence(t, slot0, true)

	// The card answers after the tap, with its volatile state reset: the
	// security domain is selected again, not the test applet.
	out := run(t, binary, "send", "--reader", slot0, "80 22 00 00 04", selectTest)
	require.Equal(t, []string{"6D00 (instruction not supported)", fci + " 9000 (success)"}, lines(out))

	got := watcher(5)
	require.Equal(t, []string{"card_inserted", "card_removed", "card_inserted", "card_removed", "card_inserted"}, got)
}

// startWatcher runs `valuechip readers --watch --json` and returns a
// function that collects the first n card events for slot 0.
func startWatcher(t *testing.T, ctx context.Context) func(n int) []string {
	cmd := execCommand(ctx, binary, "readers", "--watch", "--json")
	var buf syncBuffer
	cmd.Stdout = &buf
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return func(n int) []string {
		deadline := time.Now().Add(10 * time.Second)
		for {
			var kinds []string
			for _, l := range lines(buf.String()) {
				var e struct{ Event, Reader string }
				if json.Unmarshal([]byte(l), &e) == nil && e.Reader == slot0 && strings.HasPrefix(e.Event, "card_") {
					kinds = append(kinds, e.Event)
				}
			}
			if len(kinds) >= n || time.Now().After(deadline) {
				if len(kinds) > n {
					kinds = kinds[:n]
				}
				return kinds
			}
			buf.wait(100 * time.Millisecond)
		}
	}
}

// (d) Extended length, 61xx and 6Cxx through pcscd, smart and raw.
func TestTransportPaths(t *testing.T) {
	livepcsc.Require(t)
	startEmulator(t, "--slot", "0", "--t0")

	big := strings.Repeat("A5", 4000)
	out := run(t, binary, "send", "--reader", slot0,
		selectTest,
		"80 10 00 00 00 0F A0 "+big+" 00 00", // extended ECHO, 4000 bytes each way
		"80 12 03 E8 00 03 E8",               // GENERATE 1000 bytes, extended Le
		"80 12 01 2C 00",                     // 300 bytes on a short Le: 61xx rounds merged
		"80 14 00 00 00",                     // FIXED with the wrong Le: 6C10, re-sent
	)
	l := lines(out)
	require.Len(t, l, 5)
	require.Equal(t, big+" 9000 (success)", l[1])
	require.Equal(t, generated(1000)+" 9000 (success)", l[2])
	require.Equal(t, generated(300)+" 9000 (success)", l[3])
	require.Equal(t, strings.Repeat("A5", 16)+" 9000 (success)", l[4])

	// Raw: the same commands show the transport status words.
	out = run(t, binary, "send", "--reader", slot0, "--raw", selectTest, "80 12 01 2C 00", "80 14 00 00 00", "80 10 00 00 02 0102 00")
	l = lines(out)
	require.Equal(t, "6100 (256 bytes remaining)", l[1])
	require.Equal(t, "6C10 (wrong Le, exact length 16)", l[2])
	require.Equal(t, "6102 (2 bytes remaining)", l[3], "a T=0 card answers case 4 with 61xx")

	// The trace shows every GET RESPONSE round at the wire.
	out, err := runErr(t, "", binary, "send", "--reader", slot0, "--trace", selectTest, "80 12 01 2C 00")
	require.NoError(t, err, out)
	require.Regexp(t, regexp.MustCompile(`(?m)^>> 00C0000000 +GET RESPONSE`), out)
	require.Regexp(t, regexp.MustCompile(`(?m)^>> 00C000002C +GET RESPONSE`), out)
}

// Record through pcscd, replay with no card: identical answers.
func TestRecordReplay(t *testing.T) {
	livepcsc.Require(t)
	startEmulator(t, "--slot", "0")
	dump := filepath.Join(t.TempDir(), "session.dump")
	args := []string{selectTest, "80 12 01 2C 00", "00 20 00 80 04 31323334", "80 22 00 00 04"}
	live := run(t, binary, append([]string{"send", "--reader", slot0, "--record", dump}, args...)...)
	replayed := run(t, binary, append([]string{"send", "--reader", "replay:" + dump}, args...)...)
	require.Equal(t, live, replayed)
	raw := readFile(t, dump)
	require.Contains(t, raw, "\n>> 0020008004********\n", "the PIN must be masked in the recording")
	require.Contains(t, raw, "# ATR 3B858001807380014036")
}

// The card's persistent state survives a restart of the emulator.
func TestPersistenceAcrossRestart(t *testing.T) {
	livepcsc.Require(t)
	file := filepath.Join(t.TempDir(), "card.json")
	for want := 1; want <= 2; want++ {
		func() {
			e := startEmulator(t, "--slot", "0", "--card-file", file)
			out := run(t, binary, "send", "--reader", slot0, selectTest, "80 20 00 00 04")
			require.Equal(t, []string{fci + " 9000 (success)", "0000000" + string(rune('0'+want)) + " 9000 (success)"}, lines(out))
			_ = e.cmd.Process.Signal(syscall.SIGTERM)
			_ = e.cmd.Wait()
			waitPresence(t, slot0, false)
		}()
	}
}

func generated(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

func mustHex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}
