package gp

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fuzz targets check that parsers never panic and that whatever they
// accept re-encodes to something they parse back to the same value. Seed
// corpora live in testdata/fuzz/<Name>/ (real bytes from protocols.md and
// the tests above); run one with
//
//	go test -run '^$' -fuzz '^FuzzParseInstall$' -fuzztime 30s ./apdu/gp/

func FuzzParseInstall(f *testing.F) {
	f.Fuzz(func(t *testing.T, p1 byte, data []byte) {
		in, err := ParseInstall(p1, data)
		if err != nil {
			return
		}
		b, err := in.Bytes()
		require.NoError(t, err)
		again, err := ParseInstall(in.P1, b)
		require.NoError(t, err)
		require.Equal(t, normInstall(in), normInstall(again))
		if installVariant(p1) == InstallForInstall {
			_, err := ParseInstallParams(in.Parameters)
			require.NoError(t, err)
		}
	})
}

func FuzzParseGetStatus(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 {
			_, _ = ParseGetStatusRequest(data[0]&0xF0, data[0]&0x0F, data[1:])
		}
		entries, err := ParseStatus(data)
		if err != nil {
			return
		}
		enc, err := EncodeStatus(entries)
		require.NoError(t, err)
		back, err := ParseStatus(enc)
		require.NoError(t, err)
		enc2, err := EncodeStatus(back)
		require.NoError(t, err)
		require.Equal(t, enc, enc2)
		for _, e := range entries {
			_ = e.Privs().String()
			_ = LifeCycleName(KindApplication, e.LifeCycle)
		}
		// Paging never loses or duplicates an entry.
		var paged []byte
		for start := 0; start < len(entries); {
			page, next, err := StatusPage(entries, start, 256)
			if err != nil {
				return // an entry larger than a response
			}
			paged = append(paged, page...)
			start = next
		}
		require.Equal(t, enc, paged)
	})
}

func FuzzParseLoadFile(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if m, err := ParseManifest(data); err == nil {
			b, err := m.Bytes()
			require.NoError(t, err)
			again, err := ParseManifest(b)
			require.NoError(t, err)
			require.Equal(t, m, again)
		}
		lf, err := ParseLoadFile(data)
		if err != nil {
			return
		}
		b, err := lf.Bytes()
		require.NoError(t, err)
		again, err := ParseLoadFile(b)
		require.NoError(t, err)
		require.Equal(t, lf.DataBlock, again.DataBlock)
		require.Equal(t, len(lf.DAPs), len(again.DAPs))
		if m, err := lf.Manifest(); err == nil {
			built, err := BuildLoadFile(m, lf.DAPs...)
			require.NoError(t, err)
			_, err = ParseLoadFile(built)
			require.NoError(t, err)
		}
		// Loading it block by block reassembles it exactly.
		cmds, err := LoadBlocks(b, 0)
		if err != nil {
			return
		}
		var a BlockAssembler
		for _, c := range cmds {
			_, err := a.Add(c.P1, c.P2, c.Data)
			require.NoError(t, err)
		}
		require.True(t, bytes.Equal(b, a.Bytes()))
	})
}

func FuzzParsePutKey(f *testing.F) {
	dek := TestKey()
	f.Fuzz(func(t *testing.T, p1, p2 byte, data []byte) {
		_, _ = ParsePutKeyResponse(data)
		p, err := ParsePutKey(p1, p2, data)
		if err != nil {
			return
		}
		cmd, err := p.Command()
		if err != nil {
			require.ErrorIs(t, err, ErrTooLong) // non-minimal lengths shrink, never grow
			return
		}
		again, err := ParsePutKey(cmd.P1, cmd.P2, cmd.Data)
		require.NoError(t, err)
		require.Equal(t, p, again)
		if keys, err := p.AESKeys(dek); err == nil {
			for _, k := range keys {
				require.NoError(t, k.Check())
			}
		}
		_, _ = p.ECCPublicKey()
		_ = p.Expected().Bytes()
	})
}

// FuzzParseCPLC also feeds the other GET DATA and data-field parsers.
func FuzzParseCPLC(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if c, err := ParseCPLC(data); err == nil {
			again, err := ParseCPLC(c.Bytes())
			require.NoError(t, err)
			require.Equal(t, c, again)
			js, err := c.MarshalJSON()
			require.NoError(t, err)
			var back CPLC
			require.NoError(t, back.UnmarshalJSON(js))
			require.Equal(t, c, back)
		}
		if keys, err := ParseKeyInfo(data); err == nil {
			for _, k := range keys {
				_ = k.String()
			}
		}
		if cd, err := ParseCardData(data); err == nil {
			_ = cd.VersionString()
		}
		if dgis, err := ParseDGIs(data); err == nil {
			b, err := EncodeDGIs(dgis...)
			require.NoError(t, err)
			require.Len(t, b, len(data)-nonMinimalDGILengths(dgis, data))
		}
		if d, err := ParseDelete(data); err == nil {
			_, err := d.Bytes()
			require.NoError(t, err)
		}
		_, _ = OpenDGI(TestKey(), DGI{Data: data})
	})
}

// nonMinimalDGILengths counts the bytes saved by re-encoding FF-form
// lengths below 255 in one byte.
func nonMinimalDGILengths(dgis []DGI, data []byte) int {
	saved, off := 0, 0
	for _, d := range dgis {
		if data[off+2] == 0xFF {
			if len(d.Data) < 0xFF {
				saved += 2
			}
			off += 5 + len(d.Data)
		} else {
			off += 3 + len(d.Data)
		}
	}
	return saved
}
