package chip

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/applet"
)

// kv is a test applet: a key-value store whose value-changing command
// writes several records in one transaction.
//
//	80 01 00 00 Lc v   SET: writes records r0..r3 := v, atomically
//	80 02 00 00 00     GET: r0||r1||r2||r3
//	80 03 00 00 Lc v   SETRAW: like SET but without a transaction
//	80 04 00 00 00     PANIC after a write inside a transaction
//	80 05 0N 00        LONG: returns N*100 bytes
type kv struct{}

var (
	kvModuleAID = []byte{0xF0, 0, 0, 0, 0x10, 0x01}
	kvFileAID   = []byte{0xF0, 0, 0, 0, 0x10}
	kvModule    = applet.Module{AID: kvModuleAID, Name: "kv", Version: "1", New: func(env applet.Env, params []byte) (applet.Applet, error) {
		if _, ok := env.Memory().Get("r0"); !ok {
			for i := 0; i < 4; i++ {
				if err := env.Memory().Put(fmt.Sprintf("r%d", i), params); err != nil {
					return nil, err
				}
			}
		}
		return kv{}, nil
	}}
)

func (kv) Select(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) { return nil, apdu.SWNoError }
func (kv) Deselect(env applet.Env)                                   {}
func (kv) Process(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	m := env.Memory()
	switch cmd.INS {
	case 0x01, 0x03:
		if cmd.INS == 0x01 {
			if err := env.Begin(); err != nil {
				return nil, applet.StatusOf(err)
			}
		}
		for i := 0; i < 4; i++ {
			if err := m.Put(fmt.Sprintf("r%d", i), cmd.Data); err != nil {
				return nil, applet.StatusOf(err)
			}
		}
		if cmd.INS == 0x01 {
			if err := env.Commit(); err != nil {
				return nil, applet.StatusOf(err)
			}
		}
		return nil, apdu.SWNoError
	case 0x02:
		var out []byte
		for i := 0; i < 4; i++ {
			v, _ := m.Get(fmt.Sprintf("r%d", i))
			out = append(out, v...)
		}
		return out, apdu.SWNoError
	case 0x04:
		_ = env.Begin()
		_ = m.Put("r0", []byte{0xEE})
		panic("applet bug")
	case 0x05:
		return bytes.Repeat([]byte{0xAB}, int(cmd.P1)*100), apdu.SWNoError
	}
	return nil, apdu.ErrINSNotSupported
}

var testATR = []byte{0x3B, 0x80, 0x80, 0x01, 0x01}

// newTestChip makes a chip with the kv module installed twice (instances
// F0000000100101 and F0000000100102), the first default-selected.
func newTestChip(t *testing.T) *Chip {
	t.Helper()
	c := New(testATR, WithModules(kvModule))
	f := c.Factory()
	require.NoError(t, f.AddLoadFile(applet.LoadFile{AID: kvFileAID, Modules: [][]byte{kvModuleAID}}))
	require.NoError(t, f.Install(kvFileAID, kvModuleAID, append(kvFileAID, 1, 1), applet.Privileges{applet.PrivCardReset}, []byte{0}, true))
	require.NoError(t, f.Install(kvFileAID, kvModuleAID, append(kvFileAID, 1, 2), applet.Privileges{}, []byte{0}, true))
	c.PowerOn()
	return c
}

func tx(t *testing.T, c *Chip, s string) string {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return strings.ToUpper(hex.EncodeToString(c.Transmit(b)))
}

func TestSelection(t *testing.T) {
	c := newTestChip(t)
	for _, tc := range []struct{ cmd, want string }{
		{"80020000 00", "000000009000"}, // default application selected at power-on
		{"00A4040007 F0000000100102", "6F098407F00000001001029000"},
		{"00A4040005 F000000010", "6F098407F00000001001019000"}, // partial: first occurrence
		{"00A4040205 F000000010", "6F098407F00000001001029000"}, // next occurrence
		{"00A4040205 F000000010", "6A82"},                       // no further occurrence
		{"80020000 00", "000000009000"},                         // not found: the selection stays (JC RE §4.5)
		{"00A4040C07 F0000000100101", "9000"},                   // no FCI
		{"00A4040100 ", "6A86"},                                 // last occurrence unsupported
		{"00A40400 00", "6F098407F00000001001019000"},           // empty AID: default application
		{"00A4040011 F0000000100101000000000000000000", "6700"}, // AID too long
	} {
		require.Equal(t, tc.want, tx(t, c, tc.cmd), tc.cmd)
	}
}

func TestChannels(t *testing.T) {
	c := newTestChip(t)
	require.Equal(t, "019000", tx(t, c, "0070000001"))
	require.Equal(t, "029000", tx(t, c, "0070000001"))
	require.Equal(t, "039000", tx(t, c, "0070000001"))
	require.Equal(t, "6A81", tx(t, c, "0070000001"), "no more channels")
	// Channel 1 got the default application; select the second there.
	require.Equal(t, "000000009000", tx(t, c, "81020000 00"))
	require.Equal(t, "9000", tx(t, c, "01A4040C07 F0000000100102"))
	require.Equal(t, "9000", tx(t, c, "81010000 01 07"))
	require.Equal(t, "070707079000", tx(t, c, "81020000 00"))
	require.Equal(t, "000000009000", tx(t, c, "80020000 00"), "channel 0 still on the first instance")
	require.Equal(t, "9000", tx(t, c, "00708001"))
	require.Equal(t, "6881", tx(t, c, "81020000 00"), "closed channel")
	require.Equal(t, "6A86", tx(t, c, "00708001"))
	require.Equal(t, "6A86", tx(t, c, "00708000"), "the basic channel cannot close")
	c.Reset(true)
	require.Equal(t, "6881", tx(t, c, "82020000 00"), "channels close on reset")
}

func TestGetResponse(t *testing.T) {
	c := newTestChip(t)
	require.Equal(t, "6100", tx(t, c, "80050300 00"))
	r := tx(t, c, "00C0000000")
	require.Len(t, r, 2*256+4)
	require.True(t, strings.HasSuffix(r, "612C"))
	require.Equal(t, strings.Repeat("AB", 44)+"9000", tx(t, c, "00C000002C"))
	require.Equal(t, "6985", tx(t, c, "00C0000000"))
	require.Equal(t, "6100", tx(t, c, "80050300 00"))
	require.Equal(t, "6C00", tx(t, c, "00C00000"), "GET RESPONSE without Le")
	require.Equal(t, "6881", tx(t, c, "01C0000000"))
}

func TestTransactionAtomicUnderTearing(t *testing.T) {
	// Count the writes of one SET, then cut power after each of them.
	c := newTestChip(t)
	before := c.Writes()
	require.Equal(t, "9000", tx(t, c, "80010000 01 11"))
	writes := c.Writes() - before
	require.Equal(t, uint64(5), writes, "4 journal writes and the commit mark")

	for n := uint64(1); n <= writes; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := newTestChip(t)
			c.TearAfter(n)
			require.Nil(t, c.Transmit([]byte{0x80, 0x01, 0, 0, 1, 0x22}), "no answer once power is cut")
			require.False(t, c.Powered())
			require.Nil(t, c.Transmit([]byte{0x80, 0x02, 0, 0, 0}), "silent until powered")
			img, err := c.MarshalImage()
			require.NoError(t, err)
			reloaded, err := UnmarshalImage(img, WithModules(kvModule))
			require.NoError(t, err, "the torn image loads")
			for _, chip := range []*Chip{c, reloaded} {
				chip.PowerOn()
				got := tx(t, chip, "80020000 00")
				if n == writes {
					require.Equal(t, "222222229000", got, "the commit mark was written: rolled forward")
				} else {
					require.Equal(t, "000000009000", got, "no commit mark: rolled back")
				}
			}
		})
	}
}

func TestWritesOutsideTransactionAreIndividual(t *testing.T) {
	c := newTestChip(t)
	c.TearAfter(2)
	require.Nil(t, c.Transmit([]byte{0x80, 0x03, 0, 0, 1, 0x33}))
	c.PowerOn()
	require.Equal(t, "333300009000", tx(t, c, "80020000 00"))
}

func TestAppletPanicRollsBack(t *testing.T) {
	c := newTestChip(t)
	require.Equal(t, "6F00", tx(t, c, "80040000 00"))
	require.Equal(t, "000000009000", tx(t, c, "80020000 00"))
	require.True(t, c.Powered())
}

func TestUnknownCommands(t *testing.T) {
	c := newTestChip(t)
	require.Equal(t, "6D00", tx(t, c, "80FF0000"))
	require.Equal(t, "6700", tx(t, c, "80010000 05 11"))
	require.Equal(t, "6700", tx(t, c, "80"))
	require.Equal(t, "6881", tx(t, c, "C0020000 00"), "channel 4 does not exist")
}

func TestImageFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "card.json")
	c := newTestChip(t)
	require.NoError(t, c.SaveTo(path))
	require.Equal(t, "9000", tx(t, c, "80010000 01 44"))

	again, err := Open(path, WithModules(kvModule))
	require.NoError(t, err)
	again.PowerOn()
	require.Equal(t, "444444449000", tx(t, again, "80020000 00"), "saved after the command")
	require.Equal(t, 2, len(again.Applications()))
	require.Equal(t, testATR, again.ATR())

	// A tear leaves a journal in the file, and the next load recovers.
	again.TearAfter(2)
	require.Nil(t, again.Transmit([]byte{0x80, 0x01, 0, 0, 1, 0x55}))
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"in_transaction": true`)
	third, err := Open(path, WithModules(kvModule))
	require.NoError(t, err)
	third.PowerOn()
	require.Equal(t, "444444449000", tx(t, third, "80020000 00"))
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files left")
}

func TestImageRefusesBadFiles(t *testing.T) {
	c := newTestChip(t)
	good, err := c.MarshalImage()
	require.NoError(t, err)
	for name, mutate := range map[string]func(string) string{
		"not json":      func(string) string { return "{" },
		"format":        func(s string) string { return strings.Replace(s, ImageFormat, "other", 1) },
		"version":       func(s string) string { return strings.Replace(s, `"version": 1`, `"version": 9`, 1) },
		"unknown field": func(s string) string { return strings.Replace(s, `"version": 1`, `"version": 1, "code": "x"`, 1) },
		"bad hex":       func(s string) string { return strings.Replace(s, `"sys/card": "01"`, `"sys/card": "zz"`, 1) },
		"bad atr":       func(s string) string { return strings.Replace(s, `"atr": "3B80800101"`, `"atr": "3B"`, 1) },
		"orphan journal": func(s string) string {
			return strings.Replace(s, `"records": {`, `"journal": [{"key": "x"}], "records": {`, 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := UnmarshalImage([]byte(mutate(string(good))), WithModules(kvModule))
			require.ErrorIs(t, err, ErrImage)
		})
	}
}

func TestRegistry(t *testing.T) {
	c := newTestChip(t)
	f := c.Factory()
	second := append(kvFileAID, 1, 2)
	require.ErrorIs(t, f.Install(kvFileAID, kvModuleAID, second, applet.Privileges{}, nil, true), applet.ErrExists)
	require.ErrorIs(t, f.Install([]byte{1, 2, 3, 4, 5}, kvModuleAID, []byte{9, 9, 9, 9, 9}, applet.Privileges{}, nil, true), applet.ErrNotFound)
	require.ErrorIs(t, f.AddLoadFile(applet.LoadFile{AID: []byte{1, 2, 3, 4, 5}, Modules: [][]byte{{7, 7, 7, 7, 7}}}), applet.ErrUnknownModule)
	require.ErrorIs(t, f.Delete(kvFileAID, false), applet.ErrReferenced)
	require.NoError(t, f.SetLifeCycle(second, applet.AppSelectable|applet.AppLockedBit))
	require.Equal(t, "6A82", tx(t, c, "00A4040007 F0000000100102"), "a locked application cannot be selected")
	require.NoError(t, f.Delete(kvFileAID, true))
	require.Empty(t, c.Applications())
	require.Empty(t, c.LoadFiles())
	// Deleting removed the instances' records too.
	for k := range c.mem.records {
		require.False(t, strings.HasPrefix(k, prefixData), k)
	}
}

// Every registry operation is atomic under tearing: install a third
// instance, tearing at every write.
func TestInstallAtomicUnderTearing(t *testing.T) {
	third := append(kvFileAID, 1, 3)
	probe := newTestChip(t)
	before := probe.Writes()
	require.NoError(t, probe.Factory().Install(kvFileAID, kvModuleAID, third, applet.Privileges{}, []byte{5}, true))
	writes := probe.Writes() - before
	require.Greater(t, writes, uint64(2))
	for n := uint64(1); n <= writes; n++ {
		c := newTestChip(t)
		c.TearAfter(n)
		func() {
			defer func() { _ = recover() }()
			_ = c.Factory().Install(kvFileAID, kvModuleAID, third, applet.Privileges{}, []byte{5}, true)
		}()
		c.PowerOn()
		apps := len(c.Applications())
		if n == writes {
			require.Equal(t, 3, apps, "tear after the commit mark")
			require.Equal(t, "9000", tx(t, c, "00A4040C07 F0000000100103"))
			require.Equal(t, "050505059000", tx(t, c, "80020000 00"), "install parameters written by the install method")
		} else {
			require.Equal(t, 2, apps, "tear at write %d of %d", n, writes)
		}
	}
}
