package jose

import (
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

func accessClaims() map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "alice-sub", "aud": testIssuer, "client_id": testClient,
		"exp": testNow.Add(10 * time.Minute).Unix(), "iat": testNow.Unix(), "jti": "j1", "scope": "openid",
	}
}

// TestVerifyAccessToken: RFC 9068 §4, with typ at+jwt required, so an ID
// token of the same issuer and key never passes for an access token.
func TestVerifyAccessToken(t *testing.T) {
	opKeys, err := NewStaticKeySet(gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{publicJWK(rsaKey2(), "op")}})
	if err != nil {
		t.Fatal(err)
	}
	typed := func(typ string) signer {
		return signer{alg: gojose.RS256, key: rsaKey2(), kid: "op", headers: map[gojose.HeaderKey]any{"typ": typ}}
	}
	op := typed("at+jwt")
	with := func(k string, v any) map[string]any { c := accessClaims(); c[k] = v; return c }
	without := func(k string) map[string]any { c := accessClaims(); delete(c, k); return c }
	tests := []struct {
		name   string
		signer signer
		claims map[string]any
		field  string // "" for accepted
	}{
		{"a good access token", op, accessClaims(), ""},
		{"typ application/at+jwt", typed("application/at+jwt"), accessClaims(), ""},
		{"an ID token (typ JWT)", typed("JWT"), accessClaims(), "typ"},
		{"no typ", signer{alg: gojose.RS256, key: rsaKey2(), kid: "op"}, accessClaims(), "typ"},
		{"a DPoP proof's typ", typed("dpop+jwt"), accessClaims(), "typ"},
		{"another issuer", op, with("iss", "https://other"), "iss"},
		{"another audience", op, with("aud", "https://rs"), "aud"},
		{"expired", op, with("exp", testNow.Add(-time.Second).Unix()), "exp"},
		{"no exp", op, without("exp"), "exp"},
		{"iat in the future", op, with("iat", testNow.Add(time.Minute).Unix()), "iat"},
		{"no jti", op, without("jti"), "jti"},
		{"no client_id", op, without("client_id"), "client_id"},
		{"no sub", op, without("sub"), "sub"},
		{"another key", signer{alg: gojose.RS256, key: rsaKey1(), kid: "op", headers: map[gojose.HeaderKey]any{"typ": "at+jwt"}}, accessClaims(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := sign(t, tt.signer, tt.claims)
			at, err := VerifyAccessToken(t.Context(), raw, AccessTokenPolicy{Issuer: testIssuer, KeySet: opKeys, Now: fixedNow, ClockSkew: -1})
			if tt.name == "another key" {
				if err == nil {
					t.Fatal("a token signed by another key was accepted")
				}
				return
			}
			if tt.field == "" {
				if err != nil || at.ClientID != testClient || at.JTI != "j1" || at.Subject != "alice-sub" {
					t.Fatalf("%+v %v", at, err)
				}
				return
			}
			e, ok := err.(*ValidationError)
			if !ok || e.Field != tt.field {
				t.Fatalf("err = %v, want a failure of %s", err, tt.field)
			}
		})
	}
}

// TestIDTokenHintRefusesOtherRoles: an access token of the issuer (typ
// at+jwt) is no id_token_hint, even with an aud naming the client; nor is
// a login_hint_token (RFC 8725 §3.11).
func TestIDTokenHintRefusesOtherRoles(t *testing.T) {
	opKeys, err := NewStaticKeySet(gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{publicJWK(rsaKey2(), "op")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"at+jwt", "application/at+jwt", "logout+jwt", "dpop+jwt"} {
		s := signer{alg: gojose.RS256, key: rsaKey2(), kid: "op", headers: map[gojose.HeaderKey]any{"typ": typ}}
		_, err := VerifyIDTokenHint(t.Context(), sign(t, s, idTokenClaims()), IDTokenHintPolicy{Issuer: testIssuer, ClientID: testClient, KeySet: opKeys})
		wantError(t, err, ErrInvalid, "typ")
	}
	s := signer{alg: gojose.RS256, key: rsaKey2(), kid: "op", headers: map[gojose.HeaderKey]any{"typ": "JWT"}}
	if _, err := VerifyIDTokenHint(t.Context(), sign(t, s, idTokenClaims()), IDTokenHintPolicy{Issuer: testIssuer, ClientID: testClient, KeySet: opKeys}); err != nil {
		t.Fatalf("an ID token typed JWT: %v", err)
	}
	p := hintPolicy(t)
	hub := hubSigner()
	hub.headers = map[gojose.HeaderKey]any{"typ": "at+jwt"}
	_, err = VerifyLoginHintToken(t.Context(), sign(t, hub, map[string]any{"iss": trustedIssuer, "sub": "alice"}), p)
	wantError(t, err, ErrInvalid, "typ")
}
