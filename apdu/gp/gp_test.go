package gp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/scp03"
)

func hx(t testing.TB, s string) []byte {
	t.Helper()
	b, err := apdu.DecodeHex(s)
	require.NoError(t, err)
	return b
}

func encode(t testing.TB, c apdu.Command) string {
	t.Helper()
	b, err := c.Bytes()
	require.NoError(t, err)
	return fmt.Sprintf("%X", b)
}

var (
	purseAID    = []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45}
	purseInst   = append(append([]byte{}, purseAID...), 0x01)
	isdAID      = DefaultISDAID()
	testKey     = TestKey()
	testKeyKCV  = "504A77"
	testKeyEncd = "80D2A5B08FA0EE51143B459E638106DF" // AES-CBC(404142…4F, ICV 0, 404142…4F), python cryptography
)

func TestConstants(t *testing.T) {
	require.Equal(t, "A000000151000000", fmt.Sprintf("%X", DefaultISDAID()))
	require.Equal(t, "404142434445464748494A4B4C4D4E4F", fmt.Sprintf("%X", TestKey()))
	kcv, err := scp03.KCV(TestKey())
	require.NoError(t, err)
	require.Equal(t, testKeyKCV, fmt.Sprintf("%X", kcv))
	// Fresh copies: callers cannot corrupt the package's values.
	DefaultISDAID()[0], TestKey()[0] = 0, 0
	require.Equal(t, byte(0xA0), DefaultISDAID()[0])
	require.Equal(t, byte(0x40), TestKey()[0])

	require.Equal(t, "00A4040008A00000015100000000", encode(t, Select(isdAID)))
	require.Equal(t, "80CA9F7F00", encode(t, GetData(TagCPLC)))
	require.Equal(t, "80CA006600", encode(t, GetData(TagCardData)))
	require.Equal(t, "80CA00E000", encode(t, GetData(TagKeyInfo)))
}

// The INSTALL and DELETE lines of the purse install sequence
// (shared/research/protocols.md §3.7).
func TestInstallPurseSequence(t *testing.T) {
	tests := []struct {
		name string
		in   Install
		wire string
	}{
		{"for load", Install{P1: InstallForLoad, LoadFileAID: purseAID, SecurityDomainAID: isdAID},
			"80E6020017 0AF0000000015055525345 08A000000151000000 00 00 00 00"},
		{"for install and make selectable", Install{P1: InstallForInstall | InstallForMakeSelectable,
			LoadFileAID: purseAID, ModuleAID: purseInst, ApplicationAID: purseInst, Privileges: []byte{0x00}, Parameters: []byte{0xC9, 0x00}},
			"80E60C0029 0AF0000000015055525345 0BF000000001505552534501 0BF000000001505552534501 0100 02C900 00 00"},
		{"for personalization", Install{P1: InstallForPersonalization, ApplicationAID: purseInst},
			"80E6200011 00 00 0BF000000001505552534501 00 00 00 00"},
		{"for make selectable", Install{P1: InstallForMakeSelectable, ApplicationAID: purseInst, Privileges: []byte{0x04}},
			"80E608001200000BF000000001505552534501010400 00 00"},
		{"for extradition", Install{P1: InstallForExtradition, SecurityDomainAID: isdAID, ApplicationAID: purseInst},
			"80E6100019 08A000000151000000 00 0BF000000001505552534501 00 00 00 00"},
		{"for registry update", Install{P1: InstallForRegistryUpdate, SecurityDomainAID: isdAID, ApplicationAID: purseInst, Privileges: []byte{0, 0, 0}},
			"80E640001C 08A000000151000000 00 0BF000000001505552534501 03000000 00 00 00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := tc.in.Command()
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("%X", hx(t, tc.wire)), encode(t, cmd))
			got, err := ParseInstall(cmd.P1, cmd.Data)
			require.NoError(t, err)
			require.Equal(t, normInstall(tc.in), normInstall(got))
		})
	}
}

// normInstall maps empty slices to nil for comparison.
func normInstall(in Install) Install {
	for _, p := range []*[]byte{&in.LoadFileAID, &in.SecurityDomainAID, &in.LoadFileDataBlockHash, &in.ModuleAID, &in.ApplicationAID, &in.Privileges, &in.Parameters, &in.Token} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	return in
}

func TestInstallLongParameters(t *testing.T) {
	params, err := InstallParams{Application: bytes.Repeat([]byte{0xAB}, 150)}.Bytes()
	require.NoError(t, err)
	require.Equal(t, []byte{0xC9, 0x81, 150}, params[:3])
	in := Install{P1: InstallForInstall, LoadFileAID: purseAID, ModuleAID: purseInst, ApplicationAID: purseInst, Privileges: []byte{0}, Parameters: params}
	data, err := in.Bytes()
	require.NoError(t, err)
	// Parameters get a BER length (GPCS Table 11-43, "1-3").
	require.Contains(t, fmt.Sprintf("%X", data), "01008199C98196")
	got, err := ParseInstall(InstallForInstall|InstallMoreCommands, data)
	require.NoError(t, err)
	require.Equal(t, params, got.Parameters)
	p, err := ParseInstallParams(got.Parameters)
	require.NoError(t, err)
	require.Len(t, p.Application, 150)
}

func TestInstallErrors(t *testing.T) {
	tests := []struct {
		name string
		p1   byte
		data string
		err  error
	}{
		{"no variant", 0x00, "00", ErrMalformed},
		{"truncated", InstallForLoad, "0AF000", ErrMalformed},
		{"trailing", InstallForPersonalization, "00000BF000000001505552534501000000 00", ErrMalformed},
		{"short AID", InstallForPersonalization, "000003F00000000000", ErrBadAID},
		{"personalization with privileges", InstallForPersonalization, "00000BF00000000150555253450101000000", ErrMalformed},
		{"install without C9", InstallForInstall, "0AF0000000015055525345 0BF000000001505552534501 0BF000000001505552534501 0100 00 00", ErrMalformed},
		{"install with 2 privilege bytes", InstallForInstall, "0AF0000000015055525345 0BF000000001505552534501 0BF000000001505552534501 020000 02C900 00", ErrMalformed},
		{"bad BER length", InstallForLoad, "0AF0000000015055525345 00 00 83000000 00", ErrMalformed},
		{"make selectable with load file", InstallForMakeSelectable, "05A000000001 00 0BF000000001505552534501 00 00 00", ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseInstall(tc.p1, hx(t, tc.data))
			require.ErrorIs(t, err, tc.err)
		})
	}
	_, err := Install{P1: InstallForLoad, LoadFileAID: make([]byte, 256)}.Bytes()
	require.ErrorIs(t, err, ErrTooLong)
	_, err = Install{P1: InstallForInstall, LoadFileAID: purseAID, ModuleAID: purseAID, ApplicationAID: purseAID, Parameters: make([]byte, 300)}.Command()
	require.ErrorIs(t, err, ErrTooLong)
}

func TestInstallParams(t *testing.T) {
	b, err := InstallParams{}.Bytes()
	require.NoError(t, err)
	require.Equal(t, "C900", fmt.Sprintf("%X", b))
	b, err = InstallParams{Application: []byte{1, 2}, System: hx(t, "C8020100")}.Bytes()
	require.NoError(t, err)
	require.Equal(t, "C9020102EF04C8020100", fmt.Sprintf("%X", b))
	p, err := ParseInstallParams(b)
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2}, p.Application)
	for _, bad := range []string{"", "EF00", "C900C900", "C90101 80 00", "C905"} {
		_, err := ParseInstallParams(hx(t, bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestLoadBlocks(t *testing.T) {
	file := make([]byte, 500)
	for i := range file {
		file[i] = byte(i)
	}
	cmds, err := LoadBlocks(file, 200)
	require.NoError(t, err)
	require.Len(t, cmds, 3)
	for i, c := range cmds {
		require.Equal(t, byte(0x80), c.CLA)
		require.Equal(t, INSLoad, c.INS)
		require.Equal(t, byte(i), c.P2)
		require.Equal(t, apdu.MaxShortNe, c.Ne)
	}
	require.Equal(t, []byte{0x00, 0x00, 0x80}, []byte{cmds[0].P1, cmds[1].P1, cmds[2].P1})
	require.Len(t, cmds[2].Data, 100)
	require.Equal(t, "80E88002"+"64", encode(t, cmds[2])[:10])
	require.Equal(t, file, append(append(append([]byte{}, cmds[0].Data...), cmds[1].Data...), cmds[2].Data...))

	// One block: P1 80 at once.
	cmds, err = LoadBlocks([]byte{0xC4, 0x01, 0x00}, 0)
	require.NoError(t, err)
	require.Equal(t, "80E8800003C4010000", encode(t, cmds[0]))

	// 256 blocks is the limit (P2 'FF').
	cmds, err = LoadBlocks(make([]byte, 256*10), 10)
	require.NoError(t, err)
	require.Len(t, cmds, 256)
	require.Equal(t, byte(0xFF), cmds[255].P2)
	_, err = LoadBlocks(make([]byte, 256*10+1), 10)
	require.ErrorIs(t, err, ErrTooManyBlocks)
	_, err = LoadBlocks(nil, 10)
	require.ErrorIs(t, err, ErrMalformed)
	_, err = LoadBlocks(file, 256)
	require.ErrorIs(t, err, ErrTooLong)
}

func TestBlockAssembler(t *testing.T) {
	file := bytes.Repeat([]byte{1, 2, 3}, 200)
	cmds, err := LoadBlocks(file, 100)
	require.NoError(t, err)
	var a BlockAssembler
	for i, c := range cmds {
		last, err := a.Add(c.P1, c.P2, c.Data)
		require.NoError(t, err)
		require.Equal(t, i == len(cmds)-1, last)
		if !last {
			require.True(t, a.InProgress())
			require.Nil(t, a.Bytes())
		}
	}
	require.Equal(t, file, a.Bytes())

	// Out of sequence: restart required.
	a.Reset()
	_, err = a.Add(0, 0, []byte{1})
	require.NoError(t, err)
	_, err = a.Add(0, 2, []byte{1})
	require.ErrorIs(t, err, ErrSequence)
	require.False(t, a.InProgress())
	_, err = a.Add(0x80, 1, []byte{1})
	require.ErrorIs(t, err, ErrSequence)

	// Size limit.
	a = BlockAssembler{MaxSize: 4}
	_, err = a.Add(0, 0, []byte{1, 2, 3})
	require.NoError(t, err)
	_, err = a.Add(0x80, 1, []byte{4, 5})
	require.ErrorIs(t, err, ErrTooLong)

	// 256 blocks without a last one.
	a = BlockAssembler{}
	for i := range 255 {
		_, err = a.Add(0, byte(i), nil)
		require.NoError(t, err)
	}
	_, err = a.Add(0, 255, nil)
	require.ErrorIs(t, err, ErrTooManyBlocks)
}

func TestDelete(t *testing.T) {
	cmd, err := Delete{AID: purseAID}.Command(true)
	require.NoError(t, err)
	require.Equal(t, "80E400800C4F0AF000000001505552534500", encode(t, cmd)) // protocols.md §3.7
	d, err := ParseDelete(cmd.Data)
	require.NoError(t, err)
	require.Equal(t, purseAID, d.AID)

	cmd, err = Delete{KeyID: 0x01, HasKeyID: true, KeyVersion: 0x30, HasKeyVersion: true}.Command(false)
	require.NoError(t, err)
	require.Equal(t, "80E4000006D00101D2013000", encode(t, cmd))
	d, err = ParseDelete(cmd.Data)
	require.NoError(t, err)
	require.True(t, d.HasKeyID && d.HasKeyVersion)
	require.Equal(t, byte(0x30), d.KeyVersion)

	d, err = ParseDelete(hx(t, "4F05A000000001 9E020102"))
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2}, d.Token)

	for _, tc := range []struct {
		data string
		err  error
	}{
		{"", ErrMalformed},
		{"4F00", ErrBadAID},
		{"4F03A00000", ErrBadAID},
		{"4F05A000000001 D00101", ErrMalformed},
		{"D0020101", ErrMalformed},
		{"4F05A0000000014F05A000000001", ErrMalformed},
		{"8001FF", ErrMalformed},
		{"4F09A0", ErrMalformed},
	} {
		_, err := ParseDelete(hx(t, tc.data))
		require.ErrorIs(t, err, tc.err, tc.data)
	}
}

func TestGetStatus(t *testing.T) {
	cmd, err := GetStatusRequest{P1: StatusApplications}.Command()
	require.NoError(t, err)
	require.Equal(t, "80F24002024F0000", encode(t, cmd))
	cmd, err = GetStatusRequest{P1: StatusISD, Next: true, AID: isdAID, TagList: []byte{0x4F, 0x9F, 0x70}}.Command()
	require.NoError(t, err)
	require.Equal(t, "80F280030F4F08A0000001510000005C034F9F7000", encode(t, cmd))
	r, err := ParseGetStatusRequest(cmd.P1, cmd.P2, cmd.Data)
	require.NoError(t, err)
	require.True(t, r.Next)
	require.Equal(t, isdAID, r.AID)
	require.Equal(t, []byte{0x4F, 0x9F, 0x70}, r.TagList)

	for _, tc := range []struct {
		p1, p2 byte
		data   string
		err    error
	}{
		{0x41, 0x02, "4F00", ErrMalformed},
		{0x40, 0x00, "4F00", ErrUnsupported},
		{0x40, 0x04, "4F00", ErrMalformed},
		{0x40, 0x02, "", ErrMalformed},
		{0x40, 0x02, "5C014F", ErrMalformed},
		{0x40, 0x02, "4F00 8000", ErrMalformed},
	} {
		_, err := ParseGetStatusRequest(tc.p1, tc.p2, hx(t, tc.data))
		require.ErrorIs(t, err, tc.err, "%02X %02X %s", tc.p1, tc.p2, tc.data)
	}
}

func TestParseStatusRealCard(t *testing.T) {
	// GP 2.1.1 ISD entry from a real card (GPP TestParseTags, via
	// protocols.md §3.1): 7-byte ISD AID, SECURED... life cycle 07, one
	// privilege byte, and a proprietary EA object.
	data := hx(t, "E3144F07A00000015100009F700107C50180EA028000")
	entries, err := ParseStatus(data)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	e := entries[0]
	require.Equal(t, hx(t, "A0000001510000"), e.AID)
	require.Equal(t, byte(0x07), e.LifeCycle)
	require.Equal(t, []byte{0x80}, e.Privileges)
	require.True(t, e.Privs().Has(PrivSecurityDomain))
	require.Len(t, e.Extra, 1)
	ea, err := e.Extra[0].Bytes()
	require.NoError(t, err)
	require.Equal(t, "EA028000", fmt.Sprintf("%X", ea))
	require.Equal(t, "INITIALIZED", LifeCycleName(KindCard, e.LifeCycle))
	back, err := EncodeStatus(entries)
	require.NoError(t, err)
	require.Equal(t, data, back)
}

func TestStatusRoundTripAndPaging(t *testing.T) {
	entries := []RegistryEntry{
		{AID: isdAID, LifeCycle: CardSecured, Privileges: NewPrivileges(PrivSecurityDomain, PrivCardLock, PrivCardTerminate, PrivCardReset, PrivCVMManagement).Bytes()},
		{AID: purseInst, LifeCycle: AppSelectable, Privileges: []byte{0, 0, 0}, LoadFileAID: purseAID, SecurityDomainAID: isdAID, ImplicitSelection: [][]byte{{0x81}}},
		{AID: purseAID, LifeCycle: LoadFileLoaded, Version: []byte{1, 0}, Modules: [][]byte{purseInst, append(purseAID, 2)}, SecurityDomainAID: isdAID},
	}
	data, err := EncodeStatus(entries)
	require.NoError(t, err)
	require.Equal(t, "E3", fmt.Sprintf("%X", data[:1]))
	got, err := ParseStatus(data)
	require.NoError(t, err)
	require.Equal(t, entries, got)

	// Paging: each page holds whole entries and the card answers 6310
	// until next == len.
	var all []RegistryEntry
	for start := 0; start < len(entries); {
		page, next, err := StatusPage(entries, start, 60)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 60)
		require.Greater(t, next, start)
		p, err := ParseStatus(page)
		require.NoError(t, err)
		all = append(all, p...)
		start = next
	}
	require.Equal(t, entries, all)
	_, _, err = StatusPage(entries, 0, 10)
	require.ErrorIs(t, err, ErrTooLong)
	_, _, err = StatusPage(entries, 4, 10)
	require.ErrorIs(t, err, ErrMalformed)
	page, next, err := StatusPage(entries, 3, 10)
	require.NoError(t, err)
	require.Empty(t, page)
	require.Equal(t, 3, next)

	for _, bad := range []string{"4F00", "E3024F00", "E3049F700101", "E3084F00 9F7003010101", "E3", "E305 4F00 C50200"} {
		_, err := ParseStatus(hx(t, bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestSetStatus(t *testing.T) {
	require.Equal(t, "80F040800BF000000001505552534501", encode(t, SetStatus(SetStatusApp, SetStatusLockApp, purseInst)))
	require.Equal(t, "80F040000BF000000001505552534501", encode(t, SetStatus(SetStatusApp, SetStatusUnlockApp, purseInst)))
	require.Equal(t, "80F0807F08A000000151000000", encode(t, SetStatus(SetStatusISD, CardLocked, isdAID)))
}

func TestPutKeyAES(t *testing.T) {
	keys := scp03.StaticKeys{
		ENC: hx(t, "000102030405060708090A0B0C0D0E0F"),
		MAC: hx(t, "101112131415161718191A1B1C1D1E1F"),
		DEK: hx(t, "202122232425262728292A2B2C2D2E2F"),
	}
	p, err := PutKeyAES(0x30, 0x00, keys, testKey)
	require.NoError(t, err)
	cmd, err := p.Command()
	require.NoError(t, err)
	// Amd D §7.2 layout; ciphertexts and KCVs computed independently with
	// python cryptography (AES-CBC, ICV 0, DEK 404142…4F; AES-ECB of 16×01).
	want := "80D8008146 30" +
		"8811103D0FA4B855D2A5AA4954B8B5DF582A3A03C35280" +
		"881110790ACCDA858B997029FA9AE50C9CD02803013808" +
		"8811108CAA7F589AA0CEB6350A45E70A6E435B03840DE5" + "00"
	require.Equal(t, fmt.Sprintf("%X", hx(t, want)), encode(t, cmd))

	got, err := ParsePutKey(cmd.P1, cmd.P2, cmd.Data)
	require.NoError(t, err)
	require.Equal(t, p, got)
	clearKeys, err := got.AESKeys(testKey)
	require.NoError(t, err)
	require.Len(t, clearKeys, 3)
	require.True(t, clearKeys[0].Equal(keys.ENC))
	require.True(t, clearKeys[2].Equal(keys.DEK))

	resp := got.Expected()
	require.Equal(t, "30C35280013808840DE5", fmt.Sprintf("%X", resp.Bytes()))
	r, err := ParsePutKeyResponse(resp.Bytes())
	require.NoError(t, err)
	require.Equal(t, resp, r)

	// Replacing key set 30 with the test key itself.
	p, err = PutKeyAES(0x31, 0x30, scp03.StaticKeys{ENC: testKey, MAC: testKey, DEK: testKey}, testKey)
	require.NoError(t, err)
	cmd, err = p.Command()
	require.NoError(t, err)
	require.Equal(t, "80D83081", encode(t, cmd)[:8])
	require.Contains(t, encode(t, cmd), "881110"+testKeyEncd+"03"+testKeyKCV)

	// Wrong DEK: the KCV check catches it.
	_, err = got.AESKeys(keys.DEK)
	require.ErrorIs(t, err, ErrBadKCV)
	// Tampered KCV.
	bad := got
	bad.Components = append([]KeyComponent{}, got.Components...)
	bad.Components[1].KCV = []byte{0, 0, 0}
	_, err = bad.AESKeys(testKey)
	require.ErrorIs(t, err, ErrBadKCV)
}

func TestPutKeyAESSizes(t *testing.T) {
	for _, n := range []int{16, 24, 32} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			k := bytes.Repeat([]byte{byte(n)}, n)
			dek := bytes.Repeat([]byte{0x55}, n)
			p, err := PutKeyAES(0x01, 0, scp03.StaticKeys{ENC: k, MAC: k, DEK: k}, dek)
			require.NoError(t, err)
			c := p.Components[0]
			require.Equal(t, byte(n), c.Value[0])
			require.Len(t, c.Value, 1+(n+15)/16*16)
			cmd, err := p.Command()
			require.NoError(t, err)
			got, err := ParsePutKey(cmd.P1, cmd.P2, cmd.Data)
			require.NoError(t, err)
			keys, err := got.AESKeys(dek)
			require.NoError(t, err)
			require.True(t, keys[1].Equal(k))
		})
	}
	_, err := PutKeyAES(0x80, 0, scp03.StaticKeys{ENC: testKey, MAC: testKey, DEK: testKey}, testKey)
	require.ErrorIs(t, err, ErrMalformed)
	_, err = PutKeyAES(0x01, 0, scp03.StaticKeys{ENC: testKey, MAC: testKey[:8], DEK: testKey}, testKey)
	require.ErrorIs(t, err, ErrBadKey)
	_, err = EncryptAESKey(testKey[:5], testKey)
	require.ErrorIs(t, err, ErrBadKey)
}

func TestParsePutKeyErrors(t *testing.T) {
	for _, tc := range []struct {
		data string
		err  error
	}{
		{"", ErrMalformed},
		{"30", ErrMalformed},
		{"00 881110" + testKeyEncd + "03" + testKeyKCV, ErrMalformed},
		{"80 881110" + testKeyEncd + "03" + testKeyKCV, ErrMalformed},
		{"30 8811", ErrMalformed},
		{"30 881110" + testKeyEncd, ErrMalformed},
		{"30 881110" + testKeyEncd + "05" + testKeyKCV, ErrMalformed},
		{"30 FF02000000", ErrUnsupported},
	} {
		_, err := ParsePutKey(0, 0x81, hx(t, tc.data))
		require.ErrorIs(t, err, tc.err, tc.data)
	}
	for _, tc := range []struct {
		comp KeyComponent
		err  error
	}{
		{KeyComponent{Type: 0x80}, ErrUnsupported},
		{KeyComponent{Type: KeyTypeAES}, ErrMalformed},
		{KeyComponent{Type: KeyTypeAES, Value: []byte{15}}, ErrBadKey},
		{KeyComponent{Type: KeyTypeAES, Value: []byte{16, 1, 2}}, ErrMalformed},
		{KeyComponent{Type: KeyTypeAES, Value: hx(t, "10"+testKeyEncd), KCV: []byte{1}}, ErrBadKCV},
	} {
		_, err := tc.comp.DecryptAES(testKey)
		require.ErrorIs(t, err, tc.err)
	}
	for _, bad := range []string{"", "30 01", "300102"} {
		_, err := ParsePutKeyResponse(hx(t, bad))
		require.ErrorIs(t, err, ErrMalformed)
	}
}

func TestPutKeyECCPublic(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p, err := PutKeyECCPublic(DAPKeyVersion, 0, DAPKeyID, &priv.PublicKey)
	require.NoError(t, err)
	cmd, err := p.Command()
	require.NoError(t, err)
	wire := encode(t, cmd)
	require.Equal(t, "80D80001", wire[:8]) // one key, two components: P2 b8 clear
	require.Equal(t, "73B04104", wire[10:18])
	require.Equal(t, "F0010000"+"00", wire[len(wire)-10:]) // F0 01 00, no KCV; Le
	got, err := ParsePutKey(cmd.P1, cmd.P2, cmd.Data)
	require.NoError(t, err)
	pub, err := got.ECCPublicKey()
	require.NoError(t, err)
	require.True(t, pub.Equal(&priv.PublicKey))
	require.Equal(t, []byte{DAPKeyVersion}, got.Expected().Bytes())

	// A point off the curve is refused.
	bad := got
	bad.Components = []KeyComponent{{Type: KeyTypeECCPublic, Value: append([]byte{4}, make([]byte, 64)...)}, got.Components[1]}
	_, err = bad.ECCPublicKey()
	require.ErrorIs(t, err, ErrBadKey)
	bad.Components = got.Components[:1]
	_, err = bad.ECCPublicKey()
	require.ErrorIs(t, err, ErrUnsupported)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	_, err = PutKeyECCPublic(DAPKeyVersion, 0, DAPKeyID, &p384.PublicKey)
	require.ErrorIs(t, err, ErrBadKey)
}

func TestStoreData(t *testing.T) {
	dgis := []DGI{{Tag: 0x0101, Data: []byte{1, 2, 3}}, {Tag: 0x8010, Data: bytes.Repeat([]byte{7}, 300)}, {Tag: 0x9F00}}
	b, err := EncodeDGIs(dgis...)
	require.NoError(t, err)
	require.Equal(t, "0101 03 010203", fmt.Sprintf("%X %X %X", b[:2], b[2:3], b[3:6]))
	require.Equal(t, "8010FF012C", fmt.Sprintf("%X", b[6:11]))
	require.Equal(t, "9F0000", fmt.Sprintf("%X", b[len(b)-3:]))
	got, err := ParseDGIs(b)
	require.NoError(t, err)
	require.Equal(t, dgis[0], got[0])
	require.Equal(t, dgis[1], got[1])
	require.Empty(t, got[2].Data)
	// 254 bytes still use one length byte, 255 need FF xx xx.
	b, err = EncodeDGIs(DGI{Tag: 1, Data: make([]byte, 254)}, DGI{Tag: 2, Data: make([]byte, 255)})
	require.NoError(t, err)
	require.Equal(t, byte(0xFE), b[2])
	require.Equal(t, []byte{0xFF, 0x00, 0xFF}, b[2+1+254+2:2+1+254+5])
	_, err = EncodeDGIs(DGI{Tag: 1, Data: make([]byte, MaxDGILen+1)})
	require.ErrorIs(t, err, ErrTooLong)
	for _, bad := range []string{"01", "010105", "0101FF00", "0101FF000201"} {
		_, err := ParseDGIs(hx(t, bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}

	cmds, err := StoreDataCommands(StoreFormatDGI|StoreEncAll, []byte{1}, []byte{2}, []byte{3})
	require.NoError(t, err)
	require.Equal(t, "80E2680001"+"01", encode(t, cmds[0]))
	require.Equal(t, "80E2680101"+"02", encode(t, cmds[1]))
	require.Equal(t, "80E2E80201"+"03", encode(t, cmds[2]))
	cmds, err = StoreDataCommands(StoreFormatBERTLV|StoreResponseExpected, hx(t, "4F05A000000001"))
	require.NoError(t, err)
	require.Equal(t, "80E291000"+"74F05A00000000100", encode(t, cmds[0]))
	_, err = StoreDataCommands(0)
	require.ErrorIs(t, err, ErrMalformed)
	_, err = StoreDataCommands(0, make([][]byte, 257)...)
	require.ErrorIs(t, err, ErrTooManyBlocks)
	_, err = StoreDataCommands(0, make([]byte, 256))
	require.ErrorIs(t, err, ErrTooLong)
}

func TestSealDGI(t *testing.T) {
	d := DGI{Tag: 0x8001, Data: hx(t, "0102030405")}
	s, err := SealDGI(testKey, d)
	require.NoError(t, err)
	// python cryptography: AES-CBC(404142…4F, ICV 0, 0102030405 80 00×10).
	require.Equal(t, "D82F1DFAC021347321E7370276A8DD74", fmt.Sprintf("%X", s.Data))
	o, err := OpenDGI(testKey, s)
	require.NoError(t, err)
	require.Equal(t, d, o)
	for _, n := range []int{0, 15, 16, 17, 32} {
		d := DGI{Tag: 1, Data: bytes.Repeat([]byte{0x80}, n)}
		s, err := SealDGI(testKey, d)
		require.NoError(t, err)
		require.Len(t, s.Data, (n/16+1)*16)
		o, err := OpenDGI(testKey, s)
		require.NoError(t, err)
		require.Equal(t, len(d.Data), len(o.Data))
	}
	_, err = OpenDGI(testKey, DGI{Data: make([]byte, 15)})
	require.ErrorIs(t, err, ErrMalformed)
	_, err = OpenDGI(bytes.Repeat([]byte{1}, 16), s) // wrong key: padding fails (almost surely)
	require.ErrorIs(t, err, ErrMalformed)
	_, err = SealDGI(nil, d)
	require.ErrorIs(t, err, ErrBadKey)
}

func TestCPLC(t *testing.T) {
	// A CPLC in the shape real cards return (values made up).
	raw := hx(t, "9F7F2A 4790 5167 4791 6042 0011 6043 01020304 0506 4812 6044 1234 6045 0000 6046 00000000 4813 6047 0A0B0C0D")
	c, err := ParseCPLC(raw)
	require.NoError(t, err)
	require.Equal(t, [2]byte{0x47, 0x90}, c.ICFabricator)
	require.Equal(t, [4]byte{1, 2, 3, 4}, c.ICSerialNumber)
	require.Equal(t, [4]byte{0x0A, 0x0B, 0x0C, 0x0D}, c.ICPersonalizationEquipment)
	require.Equal(t, raw, c.Bytes())
	v, err := ParseCPLC(raw[3:])
	require.NoError(t, err)
	require.Equal(t, c, v)
	// Proprietary trailing bytes are tolerated.
	long := append(append([]byte{0x9F, 0x7F, 0x2D}, raw[3:]...), 1, 2, 3)
	v, err = ParseCPLC(long)
	require.NoError(t, err)
	require.Equal(t, c, v)

	js, err := json.Marshal(c)
	require.NoError(t, err)
	require.Contains(t, string(js), `"ic_serial_number":"01020304"`)
	var back CPLC
	require.NoError(t, json.Unmarshal(js, &back))
	require.Equal(t, c, back)
	require.Len(t, c.Fields(), 18)

	for _, bad := range []string{"", "9F7F", "9F7F2A00", "0011"} {
		_, err := ParseCPLC(hx(t, bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
	require.ErrorIs(t, back.UnmarshalJSON([]byte(`{"ic_type":"12"}`)), ErrMalformed)
}

func TestKeyInfo(t *testing.T) {
	raw := hx(t, "E012 C00401308810 C00402308810 C00403308810")
	keys, err := ParseKeyInfo(raw)
	require.NoError(t, err)
	require.Len(t, keys, 3)
	require.Equal(t, KeyInfo{ID: 2, Version: 0x30, Components: []KeyInfoComponent{{Type: KeyTypeAES, Length: 16}}}, keys[1])
	require.Equal(t, "key 02 version 30: AES-16", keys[1].String())
	back, err := EncodeKeyInfo(keys)
	require.NoError(t, err)
	require.Equal(t, raw, back)
	_, err = ParseKeyInfo(hx(t, "C0 0A 01 70 FF 88 00 10 01 00 01 00"))
	require.ErrorIs(t, err, ErrUnsupported)
	for _, bad := range []string{"C001 01", "C10401308810", "C00301 3088", "E0"} {
		_, err := ParseKeyInfo(hx(t, bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
	_, err = EncodeKeyInfo([]KeyInfo{{Components: []KeyInfoComponent{{Length: 300}}}})
	require.ErrorIs(t, err, ErrTooLong)
}

func TestCardData(t *testing.T) {
	cd := CardData{Version: []byte{2, 3, 1}, SCPs: []SCPInfo{{ID: 3, I: 0x70}}}
	b, err := cd.Bytes()
	require.NoError(t, err)
	require.Equal(t, "66"+"31"+"732F"+"06072A864886FC6B01"+"600C060A2A864886FC6B02020301"+"630906072A864886FC6B03"+"640B06092A864886FC6B040370", fmt.Sprintf("%X", b))
	got, err := ParseCardData(b)
	require.NoError(t, err)
	require.Equal(t, cd.Version, got.Version)
	require.Equal(t, cd.SCPs, got.SCPs)
	require.Equal(t, "2.3.1", got.VersionString())
	// The bare 73 template, as some cards answer, with an extra object.
	got, err = ParseCardData(hx(t, "7318 600C060A2A864886FC6B02020201 6508 0606 2A864886FC6B"))
	require.NoError(t, err)
	require.Equal(t, "2.2.1", got.VersionString())
	require.Len(t, got.Extra, 1)
	for _, bad := range []string{"", "6600", "6604 7302 6000", "6607 7305 6403 060100", "7304 6402 0600"} {
		_, err := ParseCardData(hx(t, bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestPrivilegesAndLifeCycles(t *testing.T) {
	p := NewPrivileges(PrivSecurityDomain, PrivDAPVerification, PrivMandatedDAP, PrivGlobalDelete, PrivContactlessSelf)
	require.Equal(t, Privileges{0xC1, 0x10, 0x10}, p)
	require.Equal(t, "C11010 (Security Domain, DAP Verification, Mandated DAP Verification, Global Delete, Contactless Self-Activation)", p.String())
	require.True(t, p.Has(PrivSecurityDomain|PrivDAPVerification))
	require.False(t, p.Has(PrivCardLock))
	require.Equal(t, "000000 (none)", Privileges{}.String())
	require.Contains(t, Privileges{0, 0, 0x0F}.String(), "RFU 00000F")
	one, err := ParsePrivileges([]byte{0x04})
	require.NoError(t, err)
	require.True(t, one.Has(PrivCardReset))
	_, err = ParsePrivileges([]byte{1, 2})
	require.ErrorIs(t, err, ErrMalformed)

	for _, tc := range []struct {
		kind  Kind
		state byte
		want  string
	}{
		{KindCard, 0x01, "OP_READY"},
		{KindCard, 0x0F, "SECURED"},
		{KindCard, 0x7F, "CARD_LOCKED"},
		{KindCard, 0xFF, "TERMINATED"},
		{KindCard, 0x03, "03"},
		{KindLoadFile, 0x01, "LOADED"},
		{KindApplication, 0x03, "INSTALLED"},
		{KindApplication, 0x07, "SELECTABLE"},
		{KindApplication, 0x0F, "SELECTABLE (application-specific 0F)"},
		{KindApplication, 0x87, "LOCKED (was SELECTABLE)"},
		{KindApplication, 0x83, "LOCKED"},
		{KindSecurityDomain, 0x0F, "PERSONALIZED"},
		{KindSecurityDomain, 0x83, "LOCKED"},
		{KindSecurityDomain, 0x8F, "LOCKED (was PERSONALIZED)"},
		{KindSecurityDomain, 0x05, "05"},
	} {
		require.Equal(t, tc.want, LifeCycleName(tc.kind, tc.state), "%s %02X", tc.kind, tc.state)
	}
	require.Equal(t, "ISD", KindCard.String())
	require.Equal(t, "unknown", Kind(0).String())
}
