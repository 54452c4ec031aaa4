package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/internal/livepcsc"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
)

const (
	testKeyHex = "404142434445464748494A4B4C4D4E4F"
	newKeyHex  = "00112233445566778899AABBCCDDEEFF"
	pkgAID     = "F0000000AA"
	instAID    = "F0000000AA01"
)

// testAppletDigest asks the binary for the test applet module's digest,
// as a user building a load file would.
func testAppletDigest(t *testing.T) string {
	var mods []struct{ AID, Digest string }
	require.NoError(t, json.Unmarshal([]byte(run(t, binary, "modules", "--json")), &mods))
	for _, m := range mods {
		if m.AID == "F056435445535400" {
			return m.Digest
		}
	}
	t.Fatal("the test applet module is not built in")
	return ""
}

// gpList returns `gp list --json` as a canonical string, to compare the
// card's content before and after a refused command.
func gpList(t *testing.T, keyArgs ...string) string {
	t.Helper()
	args := append([]string{"gp", "list", "--reader", slot0, "--json"}, keyArgs...)
	if len(keyArgs) == 0 {
		args = append(args, "--test-key")
	}
	return run(t, binary, args...)
}

// Issue 3 end to end: SCP03 at every level, install and delete, key
// rotation, all through pcscd + vpcd with valuechip's GP host.
func TestGPThroughPCSC(t *testing.T) {
	livepcsc.Require(t)
	dir := t.TempDir()
	startEmulator(t, "--slot", "0", "--card-file", filepath.Join(dir, "card.json"))

	// Every security level of Amd D Table 7-3 opens and reads the card.
	for _, level := range []string{"00", "01", "03", "11", "13", "33"} {
		out := run(t, binary, "gp", "info", "--reader", slot0, "--test-key", "--level", level)
		require.Contains(t, out, "Security domain   A000000151000000", "level %s", level)
		require.Contains(t, out, "Card life cycle   SECURED", "level %s", level)
	}

	// Install a second instance of the test applet from a new load file.
	lf := filepath.Join(dir, "test.lf")
	run(t, binary, "loadfile", "build", "--package", pkgAID, "--version", "1.2",
		"--module", "F056435445535400:"+testAppletDigest(t), "-o", lf)
	run(t, binary, "gp", "install", "--reader", slot0, "--test-key", "--level", "33",
		"--load-file", lf, "--module", "F056435445535400", "--instance", instAID)
	list := run(t, binary, "gp", "list", "--reader", slot0, "--test-key")
	require.Contains(t, list, "ISD: A000000151000000")
	require.Contains(t, list, "APP: "+instAID+"  SELECTABLE")
	require.Contains(t, list, "PKG: "+pkgAID+"  LOADED  version 1.2")
	out := run(t, binary, "send", "--reader", slot0, "00A4040006"+instAID, "8020000004")
	require.Equal(t, []string{"6F0E8406" + instAID + "A5049F6501FF 9000 (success)", "00000001 9000 (success)"}, lines(out))

	// Delete the package with its instance.
	run(t, binary, "gp", "delete", "--reader", slot0, "--test-key", "--related", pkgAID)
	list = run(t, binary, "gp", "list", "--reader", slot0, "--test-key")
	require.NotContains(t, list, instAID)
	require.NotContains(t, list, "PKG: "+pkgAID)
	out = run(t, binary, "send", "--reader", slot0, "00A4040006"+instAID)
	require.Equal(t, "6A82 (file or application not found)", strings.TrimSpace(out))

	// Rotate the keys, then only the new ones open a channel.
	run(t, binary, "gp", "put-key", "--reader", slot0, "--test-key", "--new-kvn", "2", "--replace", "1", "--new-key", newKeyHex)
	out, err := runErr(t, "", binary, "gp", "list", "--reader", slot0, "--test-key")
	require.Error(t, err)
	require.Contains(t, out, "key")
	list = run(t, binary, "gp", "list", "--reader", slot0, "--key", newKeyHex, "--kvn", "2")
	require.Contains(t, list, "ISD: A000000151000000")
}

// openSession opens SCP03 with the Go API over pcscd, the wire visible to
// the test through tap.
func openSession(t *testing.T, ctx context.Context, level scp03.SecurityLevel, key string, tap reader.Middleware) (*gp.Session, reader.Conn) {
	t.Helper()
	conn, err := connect.Open(ctx, slot0, connect.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var base reader.Transceiver = connect.Stack(conn, connect.StackOptions{})
	if tap != nil {
		base = tap(base)
	}
	k, err := hex.DecodeString(key)
	require.NoError(t, err)
	s, err := gp.Open(ctx, base, gp.Config{Keys: gp.SingleKey(scp03.Key(k)), Level: level})
	if err != nil {
		return nil, conn
	}
	return s, conn
}

// Refusals: wrong keys, a tampered MAC, a replayed command, an
// out-of-sequence LOAD and commands without the needed security all get
// their status word and leave the card as it was.
func TestGPRefusalsThroughPCSC(t *testing.T) {
	livepcsc.Require(t)
	startEmulator(t, "--slot", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	before := gpList(t)

	t.Run("wrong keys", func(t *testing.T) {
		conn, err := connect.Open(ctx, slot0, connect.Options{})
		require.NoError(t, err)
		defer conn.Close()
		k, _ := hex.DecodeString(newKeyHex)
		_, err = gp.Open(ctx, connect.Stack(conn, connect.StackOptions{}), gp.Config{Keys: gp.SingleKey(scp03.Key(k)), Level: scp03.LevelCMAC})
		require.ErrorIs(t, err, gp.ErrWrongKeys)
	})

	t.Run("tampered MAC", func(t *testing.T) {
		tamper := false
		tap := func(next reader.Transceiver) reader.Transceiver {
			return reader.TransceiverFunc(func(ctx context.Context, cmd []byte) ([]byte, error) {
				if c, err := apdu.ParseCommand(cmd); tamper && err == nil && c.CLA&0x04 != 0 && len(c.Data) >= 8 {
					// Flip a bit of the C-MAC, the last 8 bytes of the data.
					c.Data = append([]byte(nil), c.Data...)
					c.Data[len(c.Data)-1] ^= 0x01
					cmd, _ = c.Bytes()
				}
				return next.Transceive(ctx, cmd)
			})
		}
		s, _ := openSession(t, ctx, scp03.LevelCMAC, testKeyHex, tap)
		require.NotNil(t, s)
		tamper = true
		err := s.Delete(ctx, mustHex(t, "F056435445535401"), false)
		require.ErrorIs(t, err, apdu.ErrSecurityStatus)
	})

	t.Run("replayed command", func(t *testing.T) {
		var last []byte
		tap := func(next reader.Transceiver) reader.Transceiver {
			return reader.TransceiverFunc(func(ctx context.Context, cmd []byte) ([]byte, error) {
				last = append([]byte(nil), cmd...)
				return next.Transceive(ctx, cmd)
			})
		}
		s, conn := openSession(t, ctx, scp03.LevelCMAC, testKeyHex, tap)
		require.NotNil(t, s)
		// A harmless protected command, then the same bytes again.
		require.NoError(t, s.Lock(ctx, mustHex(t, "F056435445535401")))
		replay := last
		require.NoError(t, s.Unlock(ctx, mustHex(t, "F056435445535401")))
		rsp, err := conn.Transceive(ctx, replay)
		require.NoError(t, err)
		require.Equal(t, "6982", strings.ToUpper(hex.EncodeToString(rsp)), "a replayed C-MAC fails the MAC chain")
	})

	t.Run("out-of-sequence LOAD", func(t *testing.T) {
		s, _ := openSession(t, ctx, scp03.LevelCMAC, testKeyHex, nil)
		require.NotNil(t, s)
		tr := s.Transceiver()
		// INSTALL [for load] of F0000000BB, then block 01 before block 00.
		rsp, err := tr.Transceive(ctx, mustHex(t, "80E602001205F0000000BB08A00000015100000000000000"))
		require.NoError(t, err)
		require.Equal(t, "9000", strings.ToUpper(hex.EncodeToString(rsp[len(rsp)-2:])))
		rsp, err = tr.Transceive(ctx, mustHex(t, "80E8800104C402000000"))
		require.NoError(t, err)
		require.Equal(t, "6A86", strings.ToUpper(hex.EncodeToString(rsp)))
	})

	t.Run("no secure channel", func(t *testing.T) {
		out := run(t, binary, "send", "--reader", slot0, "00A4040008A000000151000000", "80E400000A4F08F05643544553540100")
		require.Equal(t, "6982 (security status not satisfied)", lines(out)[1], "DELETE needs an authenticated session")
	})

	t.Run("authenticated without C-MAC", func(t *testing.T) {
		s, _ := openSession(t, ctx, scp03.LevelNone, testKeyHex, nil)
		require.NotNil(t, s)
		err := s.Delete(ctx, mustHex(t, "F056435445535401"), false)
		require.ErrorIs(t, err, apdu.ErrSecurityStatus)
	})

	require.Equal(t, before, gpList(t), "the card is unchanged")
}
