package profile

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/cardmanager"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/testcard"
)

func tx(t testing.TB, c *chip.Chip, s string) string {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return strings.ToUpper(hex.EncodeToString(c.Transmit(b)))
}

func TestSample(t *testing.T) {
	p := Sample()
	c, err := Build(p)
	require.NoError(t, err)
	c.PowerOn()
	require.True(t, p.TestKeys, "the sample card holds the test keys")
	require.Equal(t, applet.CardSecured, c.CardLifeCycle())
	apps := c.Applications()
	require.Len(t, apps, 2)
	require.Equal(t, ISDAID, apps[0].AID)
	require.Equal(t, testcard.AID, apps[1].AID)

	// The ISD is selected at power-on; its CPLC carries the serial.
	fci := tx(t, c, "00A4040000")
	require.True(t, strings.HasPrefix(fci, "6F"), fci)
	require.Contains(t, fci, "8408A000000151000000")
	cplc := tx(t, c, "80CA9F7F00")
	require.Contains(t, cplc, strings.ToUpper(hex.EncodeToString(p.Serial[4:])), "IC serial in the CPLC")
	require.Equal(t, "6F108408F056435445535401A5049F6501FF9000", tx(t, c, "00A4040008F056435445535401"))
}

func TestEmpty(t *testing.T) {
	c, err := Build(Empty())
	require.NoError(t, err)
	c.PowerOn()
	require.Len(t, c.Applications(), 1)
	require.Equal(t, "6A82", tx(t, c, "00A4040008F056435445535401"))
}

func TestOpenCreatesOnceAndReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "card.json")
	p := Sample()
	p.Serial = []byte{1, 2, 3, 4, 5, 6, 7, 8}
	c, created, err := Open(path, p)
	require.NoError(t, err)
	require.True(t, created)
	c.PowerOn()
	tx(t, c, "00A4040008F056435445535401")
	require.Equal(t, "000000019000", tx(t, c, "8020000004"))

	again, created, err := Open(path, Empty())
	require.NoError(t, err)
	require.False(t, created, "an existing image is loaded, whatever the profile")
	again.PowerOn()
	tx(t, again, "00A4040008F056435445535401")
	require.Equal(t, "000000019000", tx(t, again, "8022000004"))
	require.Contains(t, tx(t, again, "00A4040000"), "A000000151000000")
	require.Contains(t, tx(t, again, "80CA004500"), "0102030405060708", "CIN is the serial")

	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "the image holds card secrets: owner only")
}

func TestProfileFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "p.json")
	key := "00112233445566778899AABBCCDDEEFF"
	require.NoError(t, os.WriteFile(good, []byte(`{"serial": "0102030405060708", "test_applet": true,
		"keys": [{"kvn": 2, "enc": "`+key+`", "mac": "`+key+`", "dek": "`+key+`"}]}`), 0o600))
	p, err := Load(good)
	require.NoError(t, err)
	c, err := Build(p)
	require.NoError(t, err)
	require.False(t, p.TestKeys)
	c.PowerOn()
	require.Contains(t, tx(t, c, "80CA00E000"), "C00401028810"[0:6], "key information names KVN 02")

	for name, content := range map[string]string{
		"unknown field": `{"serail": "01"}`,
		"bad hex":       `{"serial": "zz"}`,
		"bad kvn":       `{"keys": [{"kvn": 0, "enc": "` + key + `", "mac": "` + key + `", "dek": "` + key + `"}]}`,
		"short serial":  `{"serial": "0102"}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			require.NoError(t, os.WriteFile(f, []byte(content), 0o600))
			p, err := Load(f)
			if err == nil {
				_, err = Build(p)
			}
			require.Error(t, err)
		})
	}
}

// FuzzUnmarshalImage: no image file, however damaged, makes the loader
// panic; one that loads can be powered on and answers a SELECT.
func FuzzUnmarshalImage(f *testing.F) {
	c, err := Build(Sample())
	require.NoError(f, err)
	img, err := c.MarshalImage()
	require.NoError(f, err)
	f.Add(img)
	f.Add([]byte(`{"format": "valuechip card image", "version": 1, "atr": "3B00", "persistent_writes": 0, "records": {}}`))
	f.Add(bytes.Replace(img, []byte(`"records"`), []byte(`"journal": [{"key": "sys/card", "value": "ff"}], "in_transaction": true, "commit_marked": true, "records"`), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := chip.UnmarshalImage(b, chip.WithModules(Modules()...))
		if err != nil {
			return
		}
		c.PowerOn()
		rsp := c.Transmit([]byte{0x00, 0xA4, 0x04, 0x00, 0x00})
		require.GreaterOrEqual(t, len(rsp), 2)
	})
}

// FuzzChip feeds random APDUs to a sample chip (ISD default-selected, test
// applet installed): it never panics, never goes silent (no tear is armed)
// and always answers a status word.
func FuzzChip(f *testing.F) {
	for _, s := range []string{
		"00A4040000", "00A4040008F056435445535401", "80CA9F7F00", "80F28000024F0000", "8050010008000102030405060700",
		"0070000001", "00708001", "8012012C00", "00C0000000", "80E2800003010203", "80E60C0000", "84820000100000000000000000000000000000000000",
	} {
		b, _ := hex.DecodeString(s)
		f.Add(b, []byte{0x00, 0xA4, 0x04, 0x00, 0x00})
	}
	f.Fuzz(func(t *testing.T, first, second []byte) {
		c, err := Build(Sample())
		require.NoError(t, err)
		c.PowerOn()
		for _, cmd := range [][]byte{first, second} {
			rsp := c.Transmit(cmd)
			require.GreaterOrEqual(t, len(rsp), 2, "command %X", cmd)
		}
	})
}

// TestISDMaster: the ISD keys diversified from a master by the KDD are the
// known answer of docs/gp.md "Diversification".
func TestISDMaster(t *testing.T) {
	master := scp03.Key(cardmanager.TestKey)
	d := cardmanager.DefaultParams()
	d.KDD = []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}
	p := Empty()
	p.ISD, p.ISDMaster, p.ISDKeyVersion = &d, &scp03.StaticKeys{ENC: master, MAC: master, DEK: master}, 0x30
	_, err := Build(p)
	require.NoError(t, err)
	require.False(t, p.TestKeys)
	require.Len(t, p.ISD.KeySets, 1)
	ks := p.ISD.KeySets[0]
	require.Equal(t, byte(0x30), ks.Version)
	require.Equal(t, "3B6B00DF2A55F632608F4FE35A0DF681", strings.ToUpper(hex.EncodeToString(ks.Keys.ENC)))
	require.Equal(t, "8AD39E98529BBB9F38FB21D456FA5B73", strings.ToUpper(hex.EncodeToString(ks.Keys.MAC)))
	require.Equal(t, "0865ADBEDF902F5ECE662FA5D5279A5D", strings.ToUpper(hex.EncodeToString(ks.Keys.DEK)))

	f := File{ISDMaster: strings.Repeat("40", 16), ISDKVN: 0x30}
	fp, err := f.Profile()
	require.NoError(t, err)
	require.Equal(t, byte(0x30), fp.ISDKeyVersion)
	require.Equal(t, scp03.Key(bytes.Repeat([]byte{0x40}, 16)), fp.ISDMaster.DEK)
	_, err = File{ISDMaster: "4040", Keys: []FileKey{{KVN: 1}}}.Profile()
	require.ErrorContains(t, err, "not both")
	_, err = Build(&Profile{ISDMaster: &scp03.StaticKeys{ENC: scp03.Key{1}}})
	require.ErrorContains(t, err, "ISD master")
}
