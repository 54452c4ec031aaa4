package terminal_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/host/terminal"
)

func mac(t *testing.T, s string) (m wire.MAC) {
	t.Helper()
	b := mustHex(t, s)
	require.Len(t, b, wire.MACLen)
	copy(m[:], b)
	return m
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for i := 0; i+1 < len(s); i += 2 {
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'A' && c <= 'F':
				v |= byte(c - 'A' + 10)
			default:
				t.Fatalf("bad hex %q", s)
			}
		}
		out = append(out, v)
	}
	return out
}

// The SAM and the authority reproduce the worked examples of
// docs/purse.md §10.4 (S1 verified, S2) and §10.5 (M1, M2 verified) from
// the development masters, which are the §10.1 keys.
func TestWorkedExamples(t *testing.T) {
	ctx := context.Background()
	m := terminal.DevMasters()
	tid := wire.TerminalID(mustHex(t, "5445524D30303031"))
	dt := func(s string) (d wire.DateTime) { copy(d[:], mustHex(t, s)); return d }

	t.Run("load §10.4", func(t *testing.T) {
		auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
		require.NoError(t, err)
		terminal.SetAuthorityClock(auth, func() time.Time { return time.Date(2025, 6, 1, 10, 30, 0, 0, time.UTC) }, 0x12344)
		req := terminal.LoadRequest{CardID: testCardID, KeyVersion: 1, ATC: 1, Amount: 5000, Currency: eur, Balance: 0, TerminalID: tid,
			CardNonce: wire.Nonce(mustHex(t, "C1C2C3C4C5C6C7C8")), HostNonce: wire.Nonce(mustHex(t, "0102030405060708")), S1: mac(t, "13E15377B1851CDC")}
		a, err := auth.AuthorizeLoad(ctx, req)
		require.NoError(t, err)
		require.Equal(t, uint32(0x12345), a.AuthRef)
		require.Equal(t, dt("20250601103000"), a.DateTime)
		require.Equal(t, mac(t, "A4C950A0DC2A50E1"), a.S2)
		req.S1[0] ^= 1
		_, err = auth.AuthorizeLoad(ctx, req)
		require.ErrorIs(t, err, terminal.ErrLoadRefused)
		req.S1[0] ^= 1
		req.KeyVersion = 2
		_, err = auth.AuthorizeLoad(ctx, req)
		require.ErrorIs(t, err, terminal.ErrLoadRefused)
	})

	t.Run("debit §10.5", func(t *testing.T) {
		sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
		require.NoError(t, err)
		terminal.SetSAMRand(sam, bytes.NewReader(mustHex(t, "A1A2A3A4A5A6A7A8")))
		sam.SetSequence(6)
		d := wire.DebitData{CardID: testCardID, ATC: 2, Amount: 350, Currency: eur, Balance: 5000, TerminalID: tid, DateTime: dt("20250601103500")}
		a, err := sam.AuthorizeDebit(ctx, d, wire.Nonce(mustHex(t, "D1D2D3D4D5D6D7D8")))
		require.NoError(t, err)
		require.Equal(t, uint32(7), a.Data.TSMSeq)
		require.Equal(t, mac(t, "A83E5F2165CC7D5F"), a.M1)
		m2 := mac(t, "C95CBD83EFEC488F")
		require.NoError(t, sam.VerifyDebit(ctx, a, 2, 0x122A, m2))
		for _, bad := range []struct {
			atc, after uint32
			m2         wire.MAC
		}{{3, 0x122A, m2}, {2, 0x122B, m2}, {2, 0x122A, mac(t, "C95CBD83EFEC4880")}} {
			require.ErrorIs(t, sam.VerifyDebit(ctx, a, bad.atc, bad.after, bad.m2), terminal.ErrBadProof)
		}
		// A fresh module (no cached keys) verifies the same proof, as
		// recovery from a journal in a new process does (§9.4).
		sam2, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
		require.NoError(t, err)
		require.NoError(t, sam2.VerifyDebit(ctx, a, 2, 0x122A, m2))
	})

	t.Run("TC §10.4 and §10.5", func(t *testing.T) {
		auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
		require.NoError(t, err)
		load := wire.LogRecord{ATC: 1, Type: wire.TypeLoad, Amount: 5000, BalanceAfter: 5000, Currency: eur, DateTime: dt("20250601103000"),
			TerminalID: tid, Reference: 0x12345, HostMAC: mac(t, "A4C950A0DC2A50E1"), CardMAC: mac(t, "13E15377B1851CDC"), TC: mac(t, "964C5EBA577F5266")}
		debit := wire.LogRecord{ATC: 2, Type: wire.TypeDebit, Amount: 350, BalanceAfter: 0x122A, Currency: eur, DateTime: dt("20250601103500"),
			TerminalID: tid, Reference: 7, HostMAC: mac(t, "A83E5F2165CC7D5F"), CardMAC: mac(t, "C95CBD83EFEC488F"), TC: mac(t, "121B679AA83D1FB0")}
		for _, r := range []wire.LogRecord{load, debit} {
			require.NoError(t, auth.Advise(ctx, testCardID, r))
		}
		require.Equal(t, int64(5000-350), auth.Net(testCardID))
		other := debit
		other.Reference = 8
		require.Error(t, auth.Advise(ctx, testCardID, other), "a different record for a used ATC (§9.5)")
	})
}

func TestLoadMasters(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body, err string
	}{
		{"ok", `{"load":"101112131415161718191A1B1C1D1E1F","debit":"202122232425262728292A2B2C2D2E2F","tc":"303132333435363738393A3B3C3D3E3F","kvn":"01"}`, ""},
		{"bad hex", `{"load":"zz","debit":"20","tc":"30"}`, "load: not a hex key"},
		{"short key", `{"load":"1011","debit":"202122232425262728292A2B2C2D2E2F","tc":"303132333435363738393A3B3C3D3E3F"}`, "K_LOAD"},
		{"kvn 00", `{"load":"101112131415161718191A1B1C1D1E1F","debit":"202122232425262728292A2B2C2D2E2F","tc":"303132333435363738393A3B3C3D3E3F","kvn":"00"}`, "key version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dir + "/" + tc.name + ".json"
			require.NoError(t, writeFile(p, tc.body))
			k, err := terminal.LoadMasters(p)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, terminal.DevMasters(), k)
			require.NotContains(t, k.String(), "1011121314", "keys print masked")
		})
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o600) }
