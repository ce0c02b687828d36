// Package josetest signs JWTs for tests: the compact JWS of a payload or of
// JSON claims, under whatever key and headers a test chooses, so that the
// tests of the packages that verify JWTs (jose, dpop, clientauth, and the
// abuse tests) make their tokens one way. It is imported by tests only.
package josetest

import (
	"encoding/json"
	"testing"

	gojose "github.com/go-jose/go-jose/v4"
)

// Sign returns payload signed with key as a compact JWS, with the headers
// of opts (nil: none beyond alg, and kid when key's is a JSONWebKey with
// one). Any error fails t.
func Sign(t testing.TB, key gojose.SigningKey, opts *gojose.SignerOptions, payload []byte) string {
	t.Helper()
	s, err := gojose.NewSigner(key, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SignClaims is Sign of claims encoded as JSON.
func SignClaims(t testing.TB, key gojose.SigningKey, opts *gojose.SignerOptions, claims any) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return Sign(t, key, opts, b)
}
