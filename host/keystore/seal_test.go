package keystore_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/keystore"
)

func TestSealRoundTrip(t *testing.T) {
	s, err := keystore.NewSealer(testKEK(t))
	require.NoError(t, err)
	for _, tc := range []struct {
		label string
		plain []byte
	}{
		{"tmk/VCTERM01", bytes.Repeat([]byte{0xA5}, 16)},
		{"wk/VCTERM01", bytes.Repeat([]byte{0x5A}, 32)},
		{"seed/4294967295", []byte{1, 2, 3, 4}},
		{"empty secret", nil},
		{"big", bytes.Repeat([]byte{7}, 1<<16)},
	} {
		t.Run(tc.label, func(t *testing.T) {
			a, err := s.Seal(tc.label, tc.plain)
			require.NoError(t, err)
			b, err := s.Seal(tc.label, tc.plain)
			require.NoError(t, err)
			require.NotEqual(t, a, b, "fresh nonce per seal")
			require.Len(t, a, 32+len(tc.plain), "01 || KCV || nonce || ciphertext || tag")
			if len(tc.plain) >= 16 {
				require.False(t, bytes.Contains(a, tc.plain[:16]), "plaintext visible")
			}
			got, err := s.Open(tc.label, a)
			require.NoError(t, err)
			require.Equal(t, len(tc.plain), len(got))
			require.True(t, bytes.Equal(tc.plain, got))
		})
	}
	_, err = s.Seal("", []byte{1})
	require.ErrorContains(t, err, "empty label")
}

func TestOpenRefuses(t *testing.T) {
	kek := testKEK(t)
	s, err := keystore.NewSealer(kek)
	require.NoError(t, err)
	other, err := keystore.NewSealer(keystore.GenerateKEK())
	require.NoError(t, err)
	blob, err := s.Seal("tmk/T1", []byte("0123456789abcdef"))
	require.NoError(t, err)
	flip := func(i int) []byte {
		b := bytes.Clone(blob)
		b[i] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name  string
		s     keystore.Sealer
		label string
		blob  []byte
		msg   string
	}{
		{"wrong label", s, "tmk/T2", blob, "wrong label, or the blob was altered"},
		{"label prefix", s, "tmk/T", blob, "altered"},
		{"wrong KEK", other, "tmk/T1", blob, "sealed under the KEK with KCV"},
		{"nil", s, "tmk/T1", nil, "blob of 0 bytes"},
		{"truncated to header", s, "tmk/T1", blob[:31], "blob of 31 bytes, at least 32"},
		{"truncated tag", s, "tmk/T1", blob[:len(blob)-1], "altered"},
		{"extended", s, "tmk/T1", append(bytes.Clone(blob), 0), "altered"},
		{"version", s, "tmk/T1", flip(0), "unknown blob version"},
		{"KEK id", s, "tmk/T1", flip(2), "sealed under the KEK with KCV"},
		{"nonce", s, "tmk/T1", flip(4), "altered"},
		{"ciphertext", s, "tmk/T1", flip(20), "altered"},
		{"tag", s, "tmk/T1", flip(len(blob) - 1), "altered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Open(tc.label, tc.blob)
			require.ErrorIs(t, err, keystore.ErrUnseal)
			require.ErrorContains(t, err, tc.msg)
			require.Nil(t, got)
		})
	}
}

// KEK rotation: a sealer with the new KEK and the old one opens blobs of
// both and seals under the new one only.
func TestSealerRotation(t *testing.T) {
	old, cur := testKEK(t), keystore.GenerateKEK()
	oldS, err := keystore.NewSealer(old)
	require.NoError(t, err)
	blob, err := oldS.Seal("seed/1", []byte("seed"))
	require.NoError(t, err)
	both, err := keystore.NewSealer(cur, old)
	require.NoError(t, err)
	got, err := both.Open("seed/1", blob)
	require.NoError(t, err)
	require.Equal(t, []byte("seed"), got)
	resealed, err := both.Seal("seed/1", got)
	require.NoError(t, err)
	_, err = oldS.Open("seed/1", resealed)
	require.ErrorIs(t, err, keystore.ErrUnseal, "new blobs are under the new KEK")
	curS, err := keystore.NewSealer(cur)
	require.NoError(t, err)
	_, err = curS.Open("seed/1", resealed)
	require.NoError(t, err)
	_, err = keystore.NewSealer(keystore.KEK{})
	require.ErrorIs(t, err, keystore.ErrBadKEK)
}
