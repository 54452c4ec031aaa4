package testcard

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/chip"
)

// newCard returns a powered chip holding only the test applet, not
// selected: the runtime's selection and GET RESPONSE handling are part of
// what these tests check.
func newCard(t testing.TB, opts ...chip.Option) *chip.Chip {
	c := chip.New(DefaultATR, append(opts, chip.WithModules(Module))...)
	f := c.Factory()
	require.NoError(t, f.AddLoadFile(applet.LoadFile{AID: PackageAID, Modules: [][]byte{ModuleAID}}))
	require.NoError(t, f.Install(PackageAID, ModuleAID, AID, applet.Privileges{}, nil, true))
	c.PowerOn()
	return c
}

func tx(t *testing.T, c *chip.Chip, cmd string) string {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(cmd, " ", ""))
	require.NoError(t, err)
	return strings.ToUpper(hex.EncodeToString(c.Transmit(b)))
}

const sel = "00A4040008F056435445535401"

func TestCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		t0   bool
		cmds []string // command, expected response, ...
	}{
		{"select full AID", false, []string{sel, "6F108408F056435445535401A5049F6501FF9000"}},
		{"select partial AID", false, []string{"00A4040005F056435445", "6F108408F056435445535401A5049F6501FF9000"}},
		{"select without FCI", false, []string{"00A4040C08F056435445535401", "9000"}},
		{"select next occurrence after a match finds nothing", false, []string{sel, "6F108408F056435445535401A5049F6501FF9000", "00A4040208F056435445535401", "6A82"}},
		{"select last occurrence unsupported", false, []string{"00A4040108F056435445535401", "6A86"}},
		{"select unknown AID", false, []string{"00A4040005A000000003", "6A82"}},
		{"select wrong P1", false, []string{"00A4000002 3F00", "6985"}},
		{"command before select", false, []string{"8010000001AA00", "6985"}},
		{"echo", false, []string{sel, "", "8010000003010203 00", "0102039000"}},
		{"echo case 3 answers at once", false, []string{sel, "", "8010000003010203", "0102039000"}},
		{"T=0 mode: case 3 goes through 61xx", true, []string{sel, "", "8010000003010203", "6103", "00C0000003", "0102039000"}},
		{"generate 300 on Le 00", false, []string{sel, "", "8012012C00", "6100", "00C0000000", "", "00C000002C", ""}},
		{"get response without pending data", false, []string{"00C0000010", "6985"}},
		{"get response with wrong Le", false, []string{sel, "", "8012001410", "6114", "00C0000010", "000102030405060708090A0B0C0D0E0F6104", "00C0000004", "101112139000", "00C0000004", "6985"}},
		{"get response case 1 asks for the length", false, []string{sel, "", "8012001410", "6114", "00C00000", "6C14"}},
		{"fixed: wrong Le", false, []string{sel, "", "8014000000", "6C10", "8014000010", "A5A5A5A5A5A5A5A5A5A5A5A5A5A5A5A59000"}},
		{"T=0 mode: select through 61xx", true, []string{sel, "6112", "00C0000012", "6F108408F056435445535401A5049F6501FF9000"}},
		{"T=0 mode: case 4 through 61xx", true, []string{sel, "", "00C0000012", "", "801000000201020A", "6102", "00C0000002", "01029000"}},
		{"T=0 mode: case 2 fits Le", true, []string{sel, "", "8022000004", "000000009000"}},
		{"unknown INS", false, []string{sel, "", "80FE0000", "6D00"}},
		{"unknown ISO INS", false, []string{sel, "", "00B0000010", "6D00"}},
		{"unknown CLA", false, []string{sel, "", "A0100000", "6E00"}},
		{"closed logical channel", false, []string{"01A4040008F056435445535401", "6881"}},
		{"chaining", false, []string{sel, "", "9010000001AA", "6884"}},
		{"malformed lengths", false, []string{"80100000050102", "6700"}},
		{"too short", false, []string{"80", "6700"}},
		{"challenge", false, []string{sel, "", "0084000000", ""}},
		{"challenge without Le", false, []string{sel, "", "00840000", "6700"}},
		{"counter", false, []string{sel, "", "8020000004", "000000019000", "8020000004", "000000029000", "8022000004", "000000029000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []chip.Option
			if tc.t0 {
				opts = append(opts, chip.WithT0())
			}
			c := newCard(t, opts...)
			for i := 0; i < len(tc.cmds); i += 2 {
				got := tx(t, c, tc.cmds[i])
				if want := tc.cmds[i+1]; want != "" {
					require.Equal(t, want, got, "command %s", tc.cmds[i])
				} else {
					require.GreaterOrEqual(t, len(got), 4)
				}
			}
		})
	}
}

func TestGeneratedDataThroughGetResponse(t *testing.T) {
	c := newCard(t)
	tx(t, c, sel)
	require.Equal(t, "6100", tx(t, c, "8012012C00"))
	first := tx(t, c, "00C0000000")
	require.Len(t, first, 2*256+4)
	require.True(t, strings.HasSuffix(first, "612C"))
	require.Equal(t, "000102", first[:6])
	last := tx(t, c, "00C000002C")
	require.Equal(t, "2A2B9000", last[len(last)-8:])
	// Any other command discards what was not fetched.
	require.Equal(t, "6100", tx(t, c, "8012012C00"))
	tx(t, c, "8022000004")
	require.Equal(t, "6985", tx(t, c, "00C0000000"))
}

func TestPIN(t *testing.T) {
	c := newCard(t)
	tx(t, c, sel)
	require.Equal(t, "63C3", tx(t, c, "00200080"), "status before any try")
	require.Equal(t, "63C2", tx(t, c, "002000800430303030"))
	require.Equal(t, "63C2", tx(t, c, "00200080"))
	require.Equal(t, "9000", tx(t, c, "002000800431323334"), "right PIN resets the counter")
	require.Equal(t, "9000", tx(t, c, "00200080"), "verified")
	c.Reset(true)
	tx(t, c, sel)
	require.Equal(t, "63C3", tx(t, c, "00200080"), "PIN state is transient")
	for _, want := range []string{"63C2", "63C1", "6983"} {
		require.Equal(t, want, tx(t, c, "002000800430303030"))
	}
	require.Equal(t, "6983", tx(t, c, "002000800431323334"), "blocked even with the right PIN")
	require.Equal(t, "6983", tx(t, c, "00200080"))
	require.Equal(t, "6A86", tx(t, c, "002000010431323334"))
}

func TestResetLosesVolatileState(t *testing.T) {
	for name, reset := range map[string]func(*chip.Chip){
		"warm":      func(c *chip.Chip) { c.Reset(true) },
		"cold":      func(c *chip.Chip) { c.Reset(false) },
		"power off": func(c *chip.Chip) { c.PowerOff(); c.PowerOn() },
	} {
		t.Run(name, func(t *testing.T) {
			c := newCard(t)
			tx(t, c, sel)
			tx(t, c, "8012012C00")
			reset(c)
			require.Equal(t, "6985", tx(t, c, "00C0000000"), "pending data lost")
			require.Equal(t, "6985", tx(t, c, "8022000004"), "selection lost")
		})
	}
}

func TestPersistence(t *testing.T) {
	c := newCard(t)
	tx(t, c, sel)
	require.Equal(t, "000000019000", tx(t, c, "8020000004"))
	require.Equal(t, "63C2", tx(t, c, "002000800430303030"))
	img, err := c.MarshalImage()
	require.NoError(t, err)

	again, err := chip.UnmarshalImage(img, chip.WithModules(Module))
	require.NoError(t, err)
	again.PowerOn()
	tx(t, again, sel)
	require.Equal(t, "000000019000", tx(t, again, "8022000004"), "counter survives")
	require.Equal(t, "63C2", tx(t, again, "00200080"), "PIN try counter survives")
}

// A tear after the try counter's decrement cannot give the try back.
func TestPINTearing(t *testing.T) {
	c := newCard(t)
	tx(t, c, sel)
	c.TearAfter(1)
	require.Nil(t, c.Transmit([]byte{0x00, 0x20, 0x00, 0x80, 0x04, '1', '2', '3', '4'}))
	c.PowerOn()
	tx(t, c, sel)
	require.Equal(t, "63C2", tx(t, c, "00200080"))
}

func TestEcho(t *testing.T) {
	var e Echo
	require.Equal(t, []byte{0x90, 0x00}, e.Transmit([]byte{0x80, 0x10, 0, 0}))
	require.Equal(t, []byte{1, 2, 0x90, 0x00}, e.Transmit([]byte{0x80, 0x10, 0, 0, 2, 1, 2, 0}))
	require.Equal(t, []byte{0x67, 0x00}, e.Transmit([]byte{0x80, 0x10, 0, 0, 9, 1}))
}

func FuzzTransmit(f *testing.F) {
	for _, s := range []string{sel, "8012012C00", "00C0000000", "002000800431323334", "80100000000003010203000A", "00"} {
		b, _ := hex.DecodeString(s)
		f.Add(b, false)
	}
	f.Fuzz(func(t *testing.T, cmd []byte, t0 bool) {
		var opts []chip.Option
		if t0 {
			opts = append(opts, chip.WithT0())
		}
		c := newCard(t, opts...)
		for _, pre := range []string{sel, "8012012C00"} { // reach states with pending data
			b, _ := hex.DecodeString(pre)
			c.Transmit(b)
		}
		rsp := c.Transmit(cmd)
		require.GreaterOrEqual(t, len(rsp), 2, "every command gets a status word")
		require.LessOrEqual(t, len(rsp), 65538)
	})
}

func BenchmarkTransmitEcho(b *testing.B) {
	c := newCard(b)
	sb, _ := hex.DecodeString(sel)
	c.Transmit(sb)
	cmd, _ := hex.DecodeString("80100000050102030405" + "00")
	for b.Loop() {
		c.Transmit(cmd)
	}
}
