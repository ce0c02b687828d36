package config

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// minRSABits is the smallest RSA signing key accepted (RFC 7518 §3.3).
const minRSABits = 2048

// parseSigningKey reads a private signing key from PEM (PKCS#1, SEC 1 or
// PKCS#8) or JWK data. It returns the key and the JWK's kid, if any.
func parseSigningKey(data []byte) (crypto.Signer, string, error) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		return parseJWKSigningKey(trimmed)
	}
	s, err := parsePEMSigningKey(data)
	return s, "", err
}

// parseJWKSigningKey reads a private signing key from a JWK, and its kid.
func parseJWKSigningKey(data []byte) (crypto.Signer, string, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(data); err != nil {
		return nil, "", fmt.Errorf("not a valid JWK: %w", err)
	}
	if k.IsPublic() {
		return nil, "", errors.New("the JWK is a public key; the signing key must be private")
	}
	if !k.Valid() {
		return nil, "", errors.New("the JWK is incomplete")
	}
	// go-jose checks that an RSA JWK's parts agree, not an EC one's.
	if ec, ok := k.Key.(*ecdsa.PrivateKey); ok && !ecKeyPairMatches(ec) {
		return nil, "", errors.New("the JWK's x and y are not the public key of its d (parts of two keys?)")
	}
	s, err := checkSigner(k.Key)
	return s, k.KeyID, err
}

// parsePEMSigningKey reads the first private key of PEM data (PKCS#1,
// SEC 1 or PKCS#8), skipping other blocks.
func parsePEMSigningKey(data []byte) (crypto.Signer, error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key or JWK found")
		}
		if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("the PEM key is encrypted; decrypt it (the file itself must be protected)")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		default:
			// "EC PARAMETERS" (from openssl ecparam), certificates…
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("invalid PEM %s: %w", block.Type, err)
		}
		return checkSigner(key)
	}
}

// ecKeyPairMatches reports whether k's public key (X, Y) is the one its
// private scalar D derives: /jwks publishes X and Y, so a mismatch would
// make every signature unverifiable.
func ecKeyPairMatches(k *ecdsa.PrivateKey) bool {
	priv, err := k.ECDH()
	if err != nil {
		return false
	}
	pub, err := k.PublicKey.ECDH()
	return err == nil && priv.PublicKey().Equal(pub)
}

// jwkAlg returns the "alg" of signing key data that is a JWK, or "" (PEM,
// or a JWK without alg).
func jwkAlg(data []byte) string {
	var k struct {
		Alg string `json:"alg"`
	}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &k) == nil {
		return k.Alg
	}
	return ""
}

// checkSigner accepts RSA keys of at least minRSABits and EC keys on the
// curves JWS has algorithms for (RFC 7518 §3.4).
func checkSigner(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("the RSA key has %d bits; at least %d are required", k.N.BitLen(), minRSABits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("the EC key is on curve %s; use P-256, P-384 or P-521", k.Curve.Params().Name)
	}
	return nil, fmt.Errorf("a %T cannot be used; use an RSA or EC key", key)
}

// decodeKey decodes base64 in any of its four usual forms.
func decodeKey(s string) ([]byte, error) {
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err == nil {
			return b, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}
