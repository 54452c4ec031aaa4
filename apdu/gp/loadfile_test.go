package gp

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func purseManifest() Manifest {
	var d [DigestLen]byte
	for i := range d {
		d[i] = byte(i)
	}
	return Manifest{PackageAID: purseAID, Version: [2]byte{1, 2}, Modules: []ModuleRef{{AID: purseInst, Digest: d}}}
}

func TestManifestEncoding(t *testing.T) {
	m := purseManifest()
	b, err := m.Bytes()
	require.NoError(t, err)
	want := "4F0AF0000000015055525345" + "CE020102" +
		"A1" + "2F" + "4F0BF000000001505552534501" + "8E20" + "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
	require.Equal(t, want, fmt.Sprintf("%X", b))
	got, err := ParseManifest(b)
	require.NoError(t, err)
	require.Equal(t, m, got)
	require.Equal(t, "1.2", got.VersionString())
	mod, ok := got.Module(purseInst)
	require.True(t, ok)
	require.Equal(t, m.Modules[0].Digest, mod.Digest)
	_, ok = got.Module(purseAID)
	require.False(t, ok)

	// Copies, not aliases: the caller may reuse its buffer.
	b[2] = 0
	require.Equal(t, byte(0xF0), got.PackageAID[0])
}

func TestManifestErrors(t *testing.T) {
	digest := "8E20" + strings.Repeat("00", 32)
	mod := "A12F4F0BF000000001505552534501" + digest
	for _, tc := range []struct {
		name, hex string
		err       error
	}{
		{"empty", "", ErrMalformed},
		{"no module", "4F0AF0000000015055525345CE020100", ErrMalformed},
		{"version first", "CE0201004F0AF0000000015055525345" + mod, ErrMalformed},
		{"3-byte version", "4F0AF0000000015055525345CE03010000" + mod, ErrMalformed},
		{"short package AID", "4F03F00000CE020100" + mod, ErrBadAID},
		{"unknown tag", "4F0AF0000000015055525345CE020100" + mod + "8001FF", ErrMalformed},
		{"padding", "4F0AF0000000015055525345CE020100" + mod + "00", ErrMalformed},
		{"short digest", "4F0AF0000000015055525345CE020100A1164F0BF0000000015055525345018E07" + strings.Repeat("00", 7), ErrMalformed},
		{"digest first", "4F0AF0000000015055525345CE020100A12F" + digest + "4F0BF000000001505552534501", ErrMalformed},
		{"module twice", "4F0AF0000000015055525345CE020100" + mod + mod, ErrMalformed},
		{"truncated", "4F0AF0000000015055525345CE020100A12F4F0B", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest(hx(t, tc.hex))
			require.ErrorIs(t, err, tc.err)
		})
	}
	_, err := Manifest{PackageAID: purseAID}.Bytes()
	require.ErrorIs(t, err, ErrMalformed)
	_, err = Manifest{PackageAID: purseAID, Modules: []ModuleRef{{AID: []byte{1}}}}.Bytes()
	require.ErrorIs(t, err, ErrBadAID)
}

func TestParseVersion(t *testing.T) {
	v, err := ParseVersion("1.0")
	require.NoError(t, err)
	require.Equal(t, [2]byte{1, 0}, v)
	v, err = ParseVersion("255.17")
	require.NoError(t, err)
	require.Equal(t, [2]byte{255, 17}, v)
	for _, bad := range []string{"", "1", "1.", ".1", "256.0", "1.0.0", "a.b", "-1.0"} {
		_, err := ParseVersion(bad)
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}

func TestLoadFileAndDAP(t *testing.T) {
	m := purseManifest()
	block, err := m.Bytes()
	require.NoError(t, err)

	// Without DAP: C4 <len> <manifest>.
	plain, err := BuildLoadFile(m)
	require.NoError(t, err)
	require.Equal(t, append([]byte{0xC4, byte(len(block))}, block...), plain)
	lf, err := ParseLoadFile(plain)
	require.NoError(t, err)
	require.Empty(t, lf.DAPs)
	require.Equal(t, block, lf.DataBlock)
	require.Equal(t, sha256.Sum256(block), lf.Hash())
	got, err := lf.Manifest()
	require.NoError(t, err)
	require.Equal(t, m, got)

	// With a DAP for the ISD.
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	sig, err := SignDAP(priv, block)
	require.NoError(t, err)
	signed, err := BuildLoadFile(m, DAPBlock{SecurityDomainAID: isdAID, Signature: sig})
	require.NoError(t, err)
	require.Equal(t, byte(0xE2), signed[0])
	require.Equal(t, "4F08A000000151000000C3", fmt.Sprintf("%X", signed[2:13]))
	lf, err = ParseLoadFile(signed)
	require.NoError(t, err)
	require.Len(t, lf.DAPs, 1)
	s, ok := lf.DAP(isdAID)
	require.True(t, ok)
	require.Equal(t, sig, s)
	_, ok = lf.DAP(purseAID)
	require.False(t, ok)
	require.NoError(t, VerifyDAP(&priv.PublicKey, lf.DataBlock, s))
	h := lf.Hash()
	require.NoError(t, VerifyDAPHash(&priv.PublicKey, h[:], s))

	// The signed message is the hash: ECDSA over SHA-256(SHA-256(block)).
	e := sha256.Sum256(h[:])
	require.True(t, ecdsa.VerifyASN1(&priv.PublicKey, e[:], s))

	// Tampering with the data block, the signature or the key fails.
	tampered := bytes.Clone(block)
	tampered[len(tampered)-1] ^= 1
	require.ErrorIs(t, VerifyDAP(&priv.PublicKey, tampered, s), ErrBadSignature)
	badSig := bytes.Clone(s)
	badSig[len(badSig)-1] ^= 1
	require.ErrorIs(t, VerifyDAP(&priv.PublicKey, block, badSig), ErrBadSignature)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	require.ErrorIs(t, VerifyDAP(&other.PublicKey, block, s), ErrBadSignature)
	require.ErrorIs(t, VerifyDAPHash(&priv.PublicKey, h[:5], s), ErrBadSignature)
	require.ErrorIs(t, VerifyDAP(nil, block, s), ErrBadKey)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	_, err = SignDAP(p384, block)
	require.ErrorIs(t, err, ErrBadKey)
}

func TestParseLoadFileErrors(t *testing.T) {
	block := "C403010203"
	dap := "E20E4F05A000000001C305" + "0102030405"
	for _, tc := range []struct {
		name, hex string
		err       error
	}{
		{"empty", "", ErrMalformed},
		{"only DAP", dap, ErrMalformed},
		{"DAP after block", block + dap, ErrMalformed},
		{"two blocks", block + block, ErrMalformed},
		{"empty block", "C400", ErrMalformed},
		{"ciphered", "D403010203", ErrUnsupported},
		{"unknown", "C0010001", ErrMalformed},
		{"DAP without sig", "E2074F05A000000001" + block, ErrMalformed},
		{"DAP short AID", "E2084F02A000C3020102" + block, ErrBadAID},
		{"DAP empty sig", "E2094F05A000000001C300" + block, ErrMalformed},
		{"padding", "00" + block, ErrMalformed},
		{"truncated", "C40501", ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseLoadFile(hx(t, tc.hex))
			require.ErrorIs(t, err, tc.err)
		})
	}
	lf, err := ParseLoadFile(hx(t, dap+block))
	require.NoError(t, err)
	require.Len(t, lf.DAPs, 1)
	// A data block that is not a manifest parses as a load file but not
	// as a manifest.
	_, err = lf.Manifest()
	require.ErrorIs(t, err, ErrMalformed)

	_, err = LoadFile{}.Bytes()
	require.ErrorIs(t, err, ErrMalformed)
	_, err = LoadFile{DataBlock: []byte{1}, DAPs: []DAPBlock{{SecurityDomainAID: isdAID}}}.Bytes()
	require.ErrorIs(t, err, ErrMalformed)
	_, err = LoadFile{DataBlock: []byte{1}, DAPs: []DAPBlock{{Signature: []byte{1}}}}.Bytes()
	require.ErrorIs(t, err, ErrBadAID)
}

// A load file as big as LOAD allows goes through LoadBlocks and the
// assembler unchanged.
func TestLoadFileThroughBlocks(t *testing.T) {
	m := Manifest{PackageAID: purseAID, Version: [2]byte{1, 0}}
	for i := range 60 {
		m.Modules = append(m.Modules, ModuleRef{AID: append(bytes.Clone(purseAID), byte(i))})
	}
	file, err := BuildLoadFile(m)
	require.NoError(t, err)
	require.Greater(t, len(file), 2*DefaultLoadBlockSize)
	require.Equal(t, []byte{0xC4, 0x82}, file[:2])
	cmds, err := LoadBlocks(file, 0)
	require.NoError(t, err)
	var a BlockAssembler
	for _, c := range cmds {
		_, err := a.Add(c.P1, c.P2, c.Data)
		require.NoError(t, err)
	}
	lf, err := ParseLoadFile(a.Bytes())
	require.NoError(t, err)
	got, err := lf.Manifest()
	require.NoError(t, err)
	require.Len(t, got.Modules, 60)
}
