package josetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"

	gojose "github.com/go-jose/go-jose/v4"
)

func TestSignClaims(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw := SignClaims(t, gojose.SigningKey{Algorithm: gojose.ES256, Key: gojose.JSONWebKey{Key: k, KeyID: "k1"}},
		(&gojose.SignerOptions{}).WithType("JWT"), map[string]any{"sub": "alice"})
	jws, err := gojose.ParseSignedCompact(raw, []gojose.SignatureAlgorithm{gojose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.KeyID != "k1" || h.ExtraHeaders["typ"] != "JWT" {
		t.Fatalf("headers %+v", h)
	}
	payload, err := jws.Verify(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil || c["sub"] != "alice" {
		t.Fatalf("claims %s: %v", payload, err)
	}
}
