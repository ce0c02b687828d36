package jose

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

func requestPolicy(t testing.TB) RequestObjectPolicy {
	return RequestObjectPolicy{
		ClientID:  testClient,
		Issuer:    testIssuer,
		Audiences: []string{testEndpoint},
		KeySet:    clientKeys(t),
		Replay:    newMemReplay(),
		Now:       fixedNow,
	}
}

func TestVerifyRequestObject(t *testing.T) {
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(rsaKey1().Public()))})
	rsaPubDER := x509.MarshalPKCS1PublicKey(&rsaKey1().PublicKey)
	with := func(k string, v any) func(map[string]any) {
		return func(c map[string]any) { c[k] = v }
	}
	without := func(k string) func(map[string]any) {
		return func(c map[string]any) { delete(c, k) }
	}
	tests := []struct {
		name   string
		signer signer
		claims func(map[string]any)       // changes to the valid claims
		token  func(t *testing.T) string  // a token built otherwise
		policy func(*RequestObjectPolicy) // changes to the policy
		kind   error                      // nil means accepted
		desc   []string
	}{
		{name: "a request object signed RS256 by a key of the client is accepted (§7.1.1)", signer: rs256()},
		{name: "PS256 is accepted by default", signer: signer{alg: gojose.PS256, key: rsaKey1(), kid: "rsa1"}},
		{name: "ES256 is accepted by default", signer: signer{alg: gojose.ES256, key: ecKey1(), kid: "ec1"}},
		{name: "a JWS without kid is verified with the keys that fit its alg", signer: signer{alg: gojose.ES256, key: ecKey1()}},
		{name: "aud may be an array that contains the issuer", signer: rs256(), claims: with("aud", []string{"https://other", testIssuer})},
		{name: "aud may be the backchannel authentication endpoint", signer: rs256(), claims: with("aud", testEndpoint)},
		{name: "exp within the clock skew is accepted", signer: rs256(), claims: with("exp", testNow.Add(-30*time.Second).Unix())},
		{name: "iat and nbf within the clock skew are accepted", signer: rs256(), claims: func(c map[string]any) {
			c["iat"] = testNow.Add(30 * time.Second).Unix()
			c["nbf"] = testNow.Add(30 * time.Second).Unix()
		}},
		{name: "the typ oauth-authz-req+jwt of RFC 9101 is accepted", signer: signer{alg: gojose.RS256, key: rsaKey1(), kid: "rsa1",
			headers: map[gojose.HeaderKey]any{"typ": "oauth-authz-req+jwt"}}},
		{name: "HS256 with the legacy switch is verified with the client secret", signer: signer{alg: gojose.HS256, key: []byte(testSecret)},
			policy: func(p *RequestObjectPolicy) { p.AllowHS256, p.Secret = true, testSecret }},

		{name: "alg none is refused", token: func(t *testing.T) string { return unsigned(t, requestClaims()) },
			kind: ErrInvalid, desc: []string{`alg "none" is not allowed`}},
		{name: "HS256 is refused without the legacy switch (§7.1.1: asymmetric only)", signer: signer{alg: gojose.HS256, key: []byte(testSecret)},
			policy: func(p *RequestObjectPolicy) { p.Secret = testSecret },
			kind:   ErrInvalid, desc: []string{`alg "HS256" is not allowed`}},
		{name: "HS256 signed with an RS client's public key is refused (alg confusion)", signer: signer{alg: gojose.HS256, key: rsaPubPEM},
			kind: ErrInvalid, desc: []string{`alg "HS256" is not allowed`}},
		{name: "HS256 signed with an RS client's public key is refused even with the legacy switch (alg confusion)", signer: signer{alg: gojose.HS256, key: rsaPubDER},
			policy: func(p *RequestObjectPolicy) { p.AllowHS256, p.Secret = true, testSecret },
			kind:   ErrInvalid, desc: []string{"signature does not verify"}},
		{name: "HS256 with the legacy switch and a wrong secret is refused", signer: signer{alg: gojose.HS256, key: []byte(strings.Repeat("x", 40))},
			policy: func(p *RequestObjectPolicy) { p.AllowHS256, p.Secret = true, testSecret },
			kind:   ErrInvalid, desc: []string{"signature does not verify"}},
		{name: "an alg other than the registered one is refused", signer: rs256(),
			policy: func(p *RequestObjectPolicy) { p.Algs = []string{"PS256"} },
			kind:   ErrInvalid, desc: []string{`alg "RS256" is not allowed (allowed: PS256)`}},
		{name: "oversized request object", signer: rs256(), claims: with("binding_message", strings.Repeat("a", 17<<10)),
			kind: ErrInvalid, desc: []string{"over the limit of 16384"}},
		{name: "empty request object", token: func(*testing.T) string { return "" },
			kind: ErrInvalid, desc: []string{"is empty"}},
		{name: "a request object that is not a JWS is refused", token: func(*testing.T) string { return "not.a-jws" },
			kind: ErrInvalid, desc: []string{"not a JWS in compact serialization"}},
		{name: "claims that are not a JSON object are refused", token: func(t *testing.T) string { return signPayload(t, rs256(), []byte(`["iss"]`)) },
			kind: ErrInvalid, desc: []string{"not a valid JWT claims set"}},
		{name: "duplicate claims are refused", token: func(t *testing.T) string {
			c := requestClaims()
			b, _ := json.Marshal(c)
			dup := strings.Replace(string(b), "{", `{"iss":"attacker",`, 1)
			return signPayload(t, rs256(), []byte(dup))
		}, kind: ErrInvalid, desc: []string{"duplicate key"}},
		{name: "iss must be the client_id", signer: rs256(), claims: with("iss", "client-2"),
			kind: ErrInvalid, desc: []string{`iss "client-2" is not the client_id "client-1"`}},
		{name: "wrong aud", signer: rs256(), claims: with("aud", "https://other.example.com"),
			kind: ErrInvalid, desc: []string{`aud ["https://other.example.com"] does not contain "https://ciba.example.com" or "https://ciba.example.com/bc-authorize"`}},
		{name: "missing aud", signer: rs256(), claims: without("aud"),
			kind: ErrInvalid, desc: []string{"aud is missing"}},
		{name: "expired", signer: rs256(), claims: with("exp", testNow.Add(-2*time.Minute).Unix()),
			kind: ErrExpired, desc: []string{"expired at 2026-03-01T11:58:00Z"}},
		{name: "missing exp", signer: rs256(), claims: without("exp"),
			kind: ErrInvalid, desc: []string{"exp is missing"}},
		{name: "exp that is not a number is refused", signer: rs256(), claims: with("exp", "tomorrow"),
			kind: ErrInvalid, desc: []string{"not a valid JWT claims set"}},
		{name: "missing iat", signer: rs256(), claims: without("iat"),
			kind: ErrInvalid, desc: []string{"iat is missing"}},
		{name: "iat in the future", signer: rs256(), claims: with("iat", testNow.Add(5*time.Minute).Unix()),
			kind: ErrInvalid, desc: []string{"iat 2026-03-01T12:05:00Z is in the future"}},
		{name: "missing nbf", signer: rs256(), claims: without("nbf"),
			kind: ErrInvalid, desc: []string{"nbf is missing"}},
		{name: "not yet valid nbf", signer: rs256(), claims: with("nbf", testNow.Add(5*time.Minute).Unix()),
			kind: ErrInvalid, desc: []string{"nbf 2026-03-01T12:05:00Z is in the future"}},
		{name: "missing jti", signer: rs256(), claims: without("jti"),
			kind: ErrInvalid, desc: []string{"jti is missing"}},
		{name: "an overlong jti is refused", signer: rs256(), claims: with("jti", strings.Repeat("j", 300)),
			kind: ErrInvalid, desc: []string{"jti is 300 characters"}},
		{name: "unknown kid", signer: signer{alg: gojose.RS256, key: rsaKey1(), kid: "rotated-away"},
			kind: ErrInvalid, desc: []string{`no key of client "client-1" has kid "rotated-away"`}},
		{name: "a kid whose key does not fit the alg is refused", signer: signer{alg: gojose.ES256, key: ecKey1(), kid: "rsa1"},
			kind: ErrInvalid, desc: []string{`has kid "rsa1" for alg ES256`}},
		{name: "a signature by a key of someone else is refused", signer: signer{alg: gojose.RS256, key: rsaKey2(), kid: "rsa1"},
			kind: ErrInvalid, desc: []string{`signature does not verify with the keys of client "client-1"`}},
		{name: "a key embedded in the jwk header is not trusted", signer: signer{alg: gojose.RS256, key: rsaKey2(), embedJWK: true},
			kind: ErrInvalid, desc: []string{"signature does not verify"}},
		{name: "a client without keys cannot send an RS256 request object", signer: rs256(),
			policy: func(p *RequestObjectPolicy) { p.KeySet = nil },
			kind:   ErrInvalid, desc: []string{`client "client-1" has no keys to verify RS256`}},
		{name: "FAPI: exp - nbf over the maximum lifetime is refused", signer: rs256(), claims: with("exp", testNow.Add(61*time.Minute).Unix()),
			policy: func(p *RequestObjectPolicy) { p.MaxLifetime = time.Hour },
			kind:   ErrInvalid, desc: []string{"over the limit of 1h0m0s"}},
		{name: "FAPI: nbf older than the maximum lifetime is refused even if exp is far", signer: rs256(), claims: func(c map[string]any) {
			c["nbf"] = testNow.Add(-90 * time.Minute).Unix()
			c["exp"] = testNow.Add(-30 * time.Minute).Unix()
		}, policy: func(p *RequestObjectPolicy) { p.MaxLifetime = time.Hour; p.ClockSkew = 2 * time.Hour },
			kind: ErrInvalid, desc: []string{"is more than 1h0m0s old"}},
		{name: "a policy without Replay is a server error", signer: rs256(),
			policy: func(p *RequestObjectPolicy) { p.Replay = nil },
			kind:   ErrPolicy},
		{name: "a policy listing HS256 without the switch is a server error", signer: rs256(),
			policy: func(p *RequestObjectPolicy) { p.Algs = []string{"HS256"} },
			kind:   ErrPolicy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := requestPolicy(t)
			if tt.policy != nil {
				tt.policy(&p)
			}
			var raw string
			if tt.token != nil {
				raw = tt.token(t)
			} else {
				c := requestClaims()
				if tt.claims != nil {
					tt.claims(c)
				}
				raw = sign(t, tt.signer, c)
			}
			claims, err := VerifyRequestObject(t.Context(), raw, p)
			noSecretIn(t, err, testSecret)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("VerifyRequestObject: %v", err)
				}
				if claims["login_hint"] != "alice" {
					t.Fatalf("claims = %v", claims)
				}
				return
			}
			wantError(t, err, tt.kind, tt.desc...)
		})
	}
}

func TestVerifyRequestObjectReplay(t *testing.T) {
	p := requestPolicy(t)
	c := requestClaims()
	raw := sign(t, rs256(), c)

	t.Run("a replayed jti is refused", func(t *testing.T) {
		if _, err := VerifyRequestObject(t.Context(), raw, p); err != nil {
			t.Fatal(err)
		}
		_, err := VerifyRequestObject(t.Context(), raw, p)
		wantError(t, err, ErrReplay, "jti", "was already used")
	})
	t.Run("a jti is per client", func(t *testing.T) {
		c := requestClaims()
		c["iss"] = "client-2"
		p2 := p
		p2.ClientID = "client-2"
		c["jti"] = requestClaimsJTI(t, raw)
		if _, err := VerifyRequestObject(t.Context(), sign(t, rs256(), c), p2); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a refused request object does not consume its jti", func(t *testing.T) {
		c := requestClaims()
		bad := sign(t, signer{alg: gojose.RS256, key: rsaKey2(), kid: "rsa1"}, c)
		if _, err := VerifyRequestObject(t.Context(), bad, p); err == nil {
			t.Fatal("a forged request object was accepted")
		}
		if _, err := VerifyRequestObject(t.Context(), sign(t, rs256(), c), p); err != nil {
			t.Fatalf("the genuine request object with the same jti: %v", err)
		}
	})
	t.Run("the jti is recorded until exp plus the skew", func(t *testing.T) {
		r := newMemReplay()
		p := p
		p.Replay = r
		c := requestClaims()
		if _, err := VerifyRequestObject(t.Context(), sign(t, rs256(), c), p); err != nil {
			t.Fatal(err)
		}
		for _, until := range r.seen {
			if want := testNow.Add(5*time.Minute + DefaultClockSkew); !until.Equal(want) {
				t.Fatalf("recorded until %s, want %s", until, want)
			}
		}
	})
}

func requestClaimsJTI(t *testing.T, raw string) string {
	t.Helper()
	jws, err := gojose.ParseSignedCompact(raw, []gojose.SignatureAlgorithm{gojose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		t.Fatal(err)
	}
	return c.JTI
}

func TestVerifyRequestObjectNumbers(t *testing.T) {
	for _, tt := range []struct {
		name string
		v    any
		want any
	}{
		{"requested_expiry as a number is kept as json.Number", 120, json.Number("120")},
		{"requested_expiry as a string is kept as a string", "120", "120"},
		{"a fractional requested_expiry is kept as written", 120.5, json.Number("120.5")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := requestClaims()
			c["requested_expiry"] = tt.v
			claims, err := VerifyRequestObject(t.Context(), sign(t, rs256(), c), requestPolicy(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := claims["requested_expiry"]; got != tt.want {
				t.Fatalf("requested_expiry = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
