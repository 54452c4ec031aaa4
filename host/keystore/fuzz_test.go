package keystore_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/keystore"
)

// FuzzOpen: no input makes Open panic or open something not sealed under
// that label.
// Seeds: testdata/fuzz/FuzzOpen.
func FuzzOpen(f *testing.F) {
	kek, err := keystore.ParseKEK([]byte(kekHex))
	require.NoError(f, err)
	s, err := keystore.NewSealer(kek)
	require.NoError(f, err)
	genuine, err := s.Seal("tmk/VCTERM01", []byte("0123456789abcdef"))
	require.NoError(f, err)
	f.Add("tmk/VCTERM01", genuine)
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, label string, blob []byte) {
		plain, err := s.Open(label, blob)
		if err != nil {
			require.ErrorIs(t, err, keystore.ErrUnseal)
			require.Nil(t, plain)
			return
		}
		// Forging a GCM tag is out of reach: only genuine blobs (the seeds,
		// sealed under the test KEK) open.
		require.Equal(t, "tmk/VCTERM01", label)
		require.Equal(t, []byte("0123456789abcdef"), plain)
		again, err := s.Seal(label, plain)
		require.NoError(t, err)
		back, err := s.Open(label, again)
		require.NoError(t, err)
		require.Equal(t, plain, back)
	})
}

// FuzzParseKEK: any file content gives a KEK or ErrBadKEK, never a panic,
// and the error never repeats the input.
func FuzzParseKEK(f *testing.F) {
	f.Add([]byte(kekHex + "\n"))
	f.Add(bytes.Repeat([]byte{0xAB}, 32))
	f.Add([]byte("00:11"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := keystore.ParseKEK(b)
		if err != nil {
			require.ErrorIs(t, err, keystore.ErrBadKEK)
			if len(b) >= 8 {
				require.NotContains(t, err.Error(), string(b))
			}
			return
		}
		require.Contains(t, k.String(), "KEK(kcv=")
	})
}

// FuzzParseKeyring: any file content opens to a checked keyring or fails
// with ErrKeyring or ErrWrongKEK, never a panic.
func FuzzParseKeyring(f *testing.F) {
	kek, err := keystore.ParseKEK([]byte(kekHex))
	require.NoError(f, err)
	f.Add([]byte(`{"format":"valuechip-keyring/1","kek_kcv":"000000","keys":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := keystore.ParseKeyring("fuzz.json", data, kek)
		if err != nil {
			if !(errors.Is(err, keystore.ErrKeyring) || errors.Is(err, keystore.ErrWrongKEK)) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		m, err := r.Masters(t.Context())
		require.NoError(t, err)
		require.NoError(t, m.Check())
		require.Len(t, r.Keys(), 6)
	})
}
