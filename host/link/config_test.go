package link_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/link"
)

const sampleConfig = `{
  "terminal_id": "TERM0001",
  "merchant_id": "MERCHANT0000001",
  "server": "127.0.0.1:8583",
  "tmk": "404142434445464748494A4B4C4D4E4F",
  "sam": {"version": 1, "key": "202122232425262728292A2B2C2D2E2F"}
}`

func TestConfigRoundTrip(t *testing.T) {
	c, err := link.ParseConfig([]byte(sampleConfig))
	require.NoError(t, err)
	require.Equal(t, "TERM0001", c.TerminalID)
	require.Equal(t, byte(1), c.SAM.Version)
	path := filepath.Join(t.TempDir(), "term.json")
	require.NoError(t, link.SaveConfig(path, c))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	got, err := link.LoadConfig(path)
	require.NoError(t, err)
	require.Equal(t, c, got)
	require.Equal(t, filepath.Join(filepath.Dir(path), "term.state"), link.StateDir(path))

	// Keys print as KCVs only, also through JSON.
	j, err := json.Marshal(c)
	require.NoError(t, err)
	for _, s := range []string{c.String(), string(j)} {
		require.NotContains(t, strings.ToUpper(s), "404142434445464748494A4B4C4D4E4F")
		require.NotContains(t, strings.ToUpper(s), "202122232425262728292A2B2C2D2E2F")
	}
	require.Contains(t, c.String(), "TERM0001")

	require.NoError(t, os.Chmod(path, 0o644))
	_, err = link.LoadConfig(path)
	require.ErrorIs(t, err, link.ErrInsecureConfig)
}

func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct{ name, from, to string }{
		{"short terminal", `"TERM0001"`, `"TERM1"`},
		{"merchant", `"MERCHANT0000001"`, `"M"`},
		{"server", `"127.0.0.1:8583"`, `"localhost"`},
		{"tmk hex", `"404142434445464748494A4B4C4D4E4F"`, `"zz"`},
		{"tmk length", `"404142434445464748494A4B4C4D4E4F"`, `"40414243"`},
		{"sam version", `"version": 1`, `"version": 0`},
		{"sam key", `"202122232425262728292A2B2C2D2E2F"`, `"2021"`},
		{"unknown field", `"server"`, `"srv"`},
		{"trailing", "}\n}", "}\n} {}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := link.ParseConfig([]byte(strings.Replace(sampleConfig, tc.from, tc.to, 1)))
			require.ErrorIs(t, err, link.ErrConfig)
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(sampleConfig))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"sam":{"version":300}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := link.ParseConfig(b)
		if err != nil {
			return
		}
		out, err := c.Encode()
		require.NoError(t, err)
		again, err := link.ParseConfig(out)
		require.NoError(t, err)
		require.Equal(t, c, again)
	})
}

func FuzzParseDE54(f *testing.F) {
	f.Add("0002978C000000002000")
	f.Add("0002978D000000000001")
	f.Add("0002978X00000000000")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := link.ParseDE54(s)
		if err != nil {
			return
		}
		require.Len(t, b.Currency, 3)
	})
}

// FuzzStateLog: any content of the state log either opens or is refused
// as corrupt; it never panics, and what opens survives a reopen.
func FuzzStateLog(f *testing.F) {
	f.Add([]byte(`{"e":"stan","n":1000}` + "\n" + `{"e":"add","add":{"id":1,"kind":"debit","card":"1122334455667788","atc":2,"amount":100,"currency":"978","stan":"000001","de7":"1121080000"}}` + "\n" + `{"e":"ack","id":1,"rc":"00"}` + "\n"))
	f.Add([]byte(`{"e":"snap","snap":{"batch":3,"next_id":7}}` + "\n" + `{"e":"close"}` + "\n" + `{"e":"add"`))
	f.Add([]byte(`{"e":"lsent","key":"k","load":{"amount":5}}` + "\n" + `{"e":"lok","key":"k"}` + "\n" + `{"e":"lrev","key":"k"}` + "\n"))
	f.Add([]byte("garbage\n{}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "state.log"), b, 0o600))
		lk, err := link.Open(testConfig("127.0.0.1:1"), link.Options{StateDir: dir})
		if err != nil {
			require.ErrorIs(t, err, link.ErrCorrupt)
			return
		}
		q := lk.Queued()
		batch, totals := lk.Batch()
		require.NoError(t, lk.Close())
		lk, err = link.Open(testConfig("127.0.0.1:1"), link.Options{StateDir: dir})
		require.NoError(t, err)
		defer lk.Close()
		require.Equal(t, q, lk.Queued())
		b2, t2 := lk.Batch()
		require.Equal(t, batch, b2)
		require.Equal(t, totals, t2)
	})
}
