package config

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseSigningKey: the parser of tokens.signing_key_file (PEM or JWK)
// never panics, and a key it accepts is an RSA key of at least 2048 bits or
// an EC key on P-256, P-384 or P-521 whose public part verifies what its
// private part signs (the public part is what /jwks publishes). Seeds: the
// example key, and keys as openssl writes them.
func FuzzParseSigningKey(f *testing.F) {
	jwk, err := os.ReadFile(filepath.Join(examplesDir, "keys", "demo-poll.private.jwk"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(jwk)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		f.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		f.Fatal(err)
	}
	// A small RSA key: refused for its size, but its PEM shape is seeded.
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		f.Fatal(err)
	}
	params := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	for _, b := range [][]byte{
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}),
		append(params, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...), // openssl ecparam -genkey
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: sec1}),
		[]byte(`{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}`),
		[]byte(`{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}`),
		[]byte("{"), []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"),
	} {
		f.Add(b)
	}
	msg := sha256.Sum256([]byte("cibaproxy"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _, err := parseSigningKey(data)
		if err != nil {
			if s != nil {
				t.Fatalf("a key with an error (%v)", err)
			}
			return
		}
		switch k := s.(type) {
		case *rsa.PrivateKey:
			if k.N.BitLen() < minRSABits {
				t.Fatalf("accepted an RSA key of %d bits", k.N.BitLen())
			}
			sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, msg[:])
			if err != nil || rsa.VerifyPKCS1v15(&k.PublicKey, crypto.SHA256, msg[:], sig) != nil {
				t.Fatalf("the RSA key's public part does not verify its signature (%v)", err)
			}
		case *ecdsa.PrivateKey:
			switch k.Curve {
			case elliptic.P256(), elliptic.P384(), elliptic.P521():
			default:
				t.Fatalf("accepted an EC key on %s", k.Curve.Params().Name)
			}
			sig, err := ecdsa.SignASN1(rand.Reader, k, msg[:])
			if err != nil || !ecdsa.VerifyASN1(&k.PublicKey, msg[:], sig) {
				t.Fatalf("the EC key's public part (x, y) does not verify its signature (%v)", err)
			}
		default:
			t.Fatalf("accepted a %T", s)
		}
	})
}
