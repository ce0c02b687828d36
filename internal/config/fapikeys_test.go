package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// fapiSigningKeyFiles writes two signing keys FAPI refuses: an RSA JWK
// with alg RS256 and an EC P-384 PEM key (ES384). It returns their paths.
func fapiSigningKeyFiles(t *testing.T) (rs256, es384 string) {
	t.Helper()
	dir := t.TempDir()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: rk, Algorithm: "RS256"})
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	rs256, es384 = filepath.Join(dir, "rs256.jwk"), filepath.Join(dir, "es384.pem")
	if err := os.WriteFile(rs256, jwk, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(es384, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return rs256, es384
}
