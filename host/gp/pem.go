package gp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	gpwire "github.com/valuechip/valuechip/apdu/gp"
)

// The issuer's DAP keys as PEM files (docs/loadfile.md: DAPs are ECDSA
// P-256 signatures). Errors name the file, never the key material.

// readPEM returns the first PEM block of a file.
func readPEM(path string) (*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("%s: no PEM block", path)
		}
		if !strings.HasSuffix(blk.Type, "PARAMETERS") { // skip openssl's EC PARAMETERS
			return blk, nil
		}
	}
}

// LoadDAPPrivateKey reads the issuer's P-256 private key for signing DAPs: SEC 1 "EC PRIVATE KEY" or
// PKCS #8 "PRIVATE KEY". Errors never quote the key.
func LoadDAPPrivateKey(path string) (*ecdsa.PrivateKey, error) {
	blk, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var key any
	switch blk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("%s: PEM %q is not a private key", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable private key", path)
	}
	priv, ok := key.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: %w: want an EC P-256 key", path, gpwire.ErrBadKey)
	}
	return priv, nil
}

// LoadDAPPublicKey reads the issuer's P-256 public key for verifying DAPs: "PUBLIC KEY" or a certificate.
func LoadDAPPublicKey(path string) (*ecdsa.PublicKey, error) {
	blk, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var key any
	switch blk.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(blk.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("%s: PEM %q is not a public key or certificate", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%s: %w: want an EC P-256 key", path, gpwire.ErrBadKey)
	}
	return pub, nil
}
