package gp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return p
}

func TestLoadDAPKeys(t *testing.T) {
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	sec1, err := x509.MarshalECPrivateKey(priv)
	require.NoError(t, err)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	require.NoError(t, err)
	pkix, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	require.NoError(t, err)

	for _, p := range []string{writePEM(t, dir, "sec1.pem", "EC PRIVATE KEY", sec1), writePEM(t, dir, "pkcs8.pem", "PRIVATE KEY", pkcs8)} {
		got, err := LoadDAPPrivateKey(p)
		require.NoError(t, err)
		require.True(t, got.Equal(priv))
	}
	pub, err := LoadDAPPublicKey(writePEM(t, dir, "pub.pem", "PUBLIC KEY", pkix))
	require.NoError(t, err)
	require.True(t, pub.Equal(&priv.PublicKey))

	// Another curve, the wrong block type, garbage: refused, naming the file.
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	der384, err := x509.MarshalECPrivateKey(p384)
	require.NoError(t, err)
	_, err = LoadDAPPrivateKey(writePEM(t, dir, "p384.pem", "EC PRIVATE KEY", der384))
	require.ErrorContains(t, err, "p384.pem")
	_, err = LoadDAPPublicKey(writePEM(t, dir, "wrong.pem", "EC PRIVATE KEY", sec1))
	require.ErrorContains(t, err, "is not a public key")
	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not pem"), 0o600))
	_, err = LoadDAPPrivateKey(garbage)
	require.ErrorContains(t, err, "no PEM block")
}
