package clientauth

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/keys"
)

func signClaims(t *testing.T, alg gojose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	if kid != "" {
		key = gojose.JSONWebKey{Key: key, KeyID: kid}
	}
	s, err := gojose.NewSigner(gojose.SigningKey{Algorithm: alg, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func requestObject(iss string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss, "aud": issuer, "exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "nbf": now.Unix(),
		"jti": rand.Text(), "scope": "openid", "login_hint": "alice",
	}
}

func TestAuthenticatorRequestObject(t *testing.T) {
	reg, err := NewRegistry(
		newReg(t, testOpts{Client: ciba.Client{ID: "signed"}, JWKS: clientJWKS(), RequestObjectAlg: "RS256"}),
		newReg(t, testOpts{Client: ciba.Client{ID: "legacy"}, Secret: plainSecret, AllowHS256RequestObject: true}),
		newReg(t, testOpts{Client: ciba.Client{ID: "plain"}, Secret: plainSecret}),
	)
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Registry: reg, RequestObjects: jose.RequestObjectPolicy{Issuer: issuer, Replay: &memReplay{seen: map[string]bool{}}}}

	req := httptest.NewRequest(http.MethodPost, bcEndpoint, nil)
	req.Header.Set("Authorization", basicHeader("legacy", plainSecret))
	c, err := a.Authenticate(t.Context(), req, url.Values{}, bcEndpoint)
	if err != nil || c.ID != "legacy" {
		t.Fatalf("Authenticate = %v, %v", c, err)
	}

	tests := []struct {
		name   string
		client string
		raw    string
		code   ciba.ErrorCode // "" accepted
	}{
		{"a client's request object signed with its registered alg is accepted", "signed",
			signClaims(t, gojose.RS256, clientKey(), "k1", requestObject("signed")), ""},
		{"a client that registered RS256 cannot send PS256", "signed",
			signClaims(t, gojose.PS256, clientKey(), "k1", requestObject("signed")), ciba.CodeInvalidRequest},
		{"the legacy switch accepts HS256 with the client secret", "legacy",
			signClaims(t, gojose.HS256, []byte(plainSecret), "", requestObject("legacy")), ""},
		{"without the legacy switch HS256 is refused", "plain",
			signClaims(t, gojose.HS256, []byte(plainSecret), "", requestObject("plain")), ciba.CodeInvalidRequest},
		{"a request object of another client is refused", "legacy",
			signClaims(t, gojose.RS256, clientKey(), "k1", requestObject("signed")), ciba.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := reg.Lookup(tt.client)
			claims, err := a.RequestObject(t.Context(), r.Client(), tt.raw)
			if tt.code == "" {
				if err != nil || claims["login_hint"] != "alice" {
					t.Fatalf("RequestObject = %v, %v", claims, err)
				}
				return
			}
			if e := ciba.AsError(err); e.Code != tt.code {
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
		})
	}
	for id, want := range map[string]bool{"signed": true, "legacy": false, "plain": false, "nobody": false} {
		if got := a.RequiresSignedRequest(&ciba.Client{ID: id}); got != want {
			t.Errorf("RequiresSignedRequest(%s) = %v", id, got)
		}
	}
}

func TestHints(t *testing.T) {
	own, err := keys.New(otherKey())
	if err != nil {
		t.Fatal(err)
	}
	reg, err := NewRegistry(newReg(t, testOpts{Client: ciba.Client{ID: "jwt"}, JWKS: clientJWKS()}))
	if err != nil {
		t.Fatal(err)
	}
	h := &Hints{
		Registry:        reg,
		IDTokens:        jose.IDTokenHintPolicy{Issuer: issuer, KeySet: own.KeySet()},
		LoginHintTokens: jose.HintTokenPolicy{Issuer: issuer},
	}

	t.Run("an id_token_hint signed by the issuer's keys names its subject", func(t *testing.T) {
		raw, err := own.Sign(map[string]any{"iss": issuer, "aud": "jwt", "sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()}, "JWT")
		if err != nil {
			t.Fatal(err)
		}
		sub, err := h.IDTokenHint(t.Context(), raw, "jwt")
		if err != nil || sub != "alice" {
			t.Fatalf("IDTokenHint = %q, %v", sub, err)
		}
		if _, err := h.IDTokenHint(t.Context(), raw, "other"); ciba.AsError(err).Code != ciba.CodeInvalidRequest {
			t.Fatalf("an id_token_hint of another client: %v", err)
		}
	})
	for _, tt := range []struct {
		name        string
		claims      map[string]any
		kind, value string
		code        ciba.ErrorCode
	}{
		{"a login_hint_token signed by the client names a sub", map[string]any{"iss": "jwt", "sub": "alice"}, jose.HintSub, "alice", ""},
		{"an email subject identifier", map[string]any{"iss": "jwt", "sub_id": map[string]any{"format": "email", "email": "a@example.com"}}, jose.HintEmail, "a@example.com", ""},
		{"an iss_sub of this issuer is a sub", map[string]any{"iss": "jwt", "sub_id": map[string]any{"format": "iss_sub", "iss": issuer, "sub": "alice"}}, jose.HintSub, "alice", ""},
		{"an iss_sub of another issuer names nobody known", map[string]any{"iss": "jwt", "sub_id": map[string]any{"format": "iss_sub", "iss": "https://elsewhere", "sub": "alice"}}, "", "", ciba.CodeUnknownUserID},
		{"an expired login_hint_token", map[string]any{"iss": "jwt", "sub": "alice", "exp": time.Now().Add(-time.Hour).Unix()}, "", "", ciba.CodeExpiredLoginHintToken},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kind, value, err := h.LoginHintToken(t.Context(), signClaims(t, gojose.RS256, clientKey(), "k1", tt.claims), "jwt")
			if tt.code != "" {
				if e := ciba.AsError(err); e.Code != tt.code {
					t.Fatalf("err = %v, want %s", err, tt.code)
				}
				return
			}
			if err != nil || kind != tt.kind || value != tt.value {
				t.Fatalf("LoginHintToken = %q, %q, %v", kind, value, err)
			}
		})
	}
}
