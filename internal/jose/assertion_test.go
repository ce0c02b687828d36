package jose

import (
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

const testTokenEndpoint = "https://ciba.example.com/token"

func assertionClaims() map[string]any {
	return map[string]any{
		"iss": testClient,
		"sub": testClient,
		"aud": testTokenEndpoint,
		"exp": testNow.Add(time.Minute).Unix(),
		"iat": testNow.Unix(),
		"jti": randomID(),
	}
}

func assertionPolicy(t testing.TB) AssertionPolicy {
	return AssertionPolicy{
		ClientID: testClient,
		Issuer:   testIssuer,
		Endpoint: testTokenEndpoint,
		KeySet:   clientKeys(t),
		Replay:   newMemReplay(),
		Now:      fixedNow,
	}
}

func TestVerifyClientAssertion(t *testing.T) {
	with := func(k string, v any) func(map[string]any) { return func(c map[string]any) { c[k] = v } }
	without := func(k string) func(map[string]any) { return func(c map[string]any) { delete(c, k) } }
	tests := []struct {
		name   string
		signer signer
		claims func(map[string]any)
		token  func(*testing.T) string
		policy func(*AssertionPolicy)
		desc   []string // empty: accepted
		kind   error    // of the failure; nil means ErrInvalid
	}{
		{name: "an assertion with aud = the token endpoint URL is accepted (RFC 7523 §3)", signer: rs256()},
		{name: "an assertion with aud = the issuer is accepted (CIBA §7.1)", signer: rs256(), claims: with("aud", testIssuer)},
		{name: "an assertion for the bc-authorize endpoint is accepted there", signer: rs256(), claims: with("aud", testEndpoint),
			policy: func(p *AssertionPolicy) { p.Endpoint = testEndpoint }},
		{name: "ES256 is accepted", signer: signer{alg: gojose.ES256, key: ecKey1(), kid: "ec1"}},
		{name: "iss must be the client_id", signer: rs256(), claims: with("iss", "someone"), desc: []string{`iss "someone" is not the client_id`}},
		{name: "sub must be the client_id", signer: rs256(), claims: with("sub", "someone"), desc: []string{`sub "someone" is not the client_id`}},
		{name: "an assertion for another endpoint is refused", signer: rs256(), claims: with("aud", testEndpoint),
			desc: []string{`aud ["https://ciba.example.com/bc-authorize"] does not contain`}},
		{name: "exp is required", signer: rs256(), claims: without("exp"), desc: []string{"exp is missing"}},
		{name: "an expired assertion is refused", signer: rs256(), claims: with("exp", testNow.Add(-5*time.Minute).Unix()), desc: []string{"expired at"}, kind: ErrExpired},
		{name: "a future nbf is refused", signer: rs256(), claims: with("nbf", testNow.Add(5*time.Minute).Unix()), desc: []string{"nbf"}},
		{name: "jti is required", signer: rs256(), claims: without("jti"), desc: []string{"jti is missing"}},
		{name: "alg none is refused", token: func(t *testing.T) string { return unsigned(t, assertionClaims()) }, desc: []string{`alg "none" is not allowed`}},
		{name: "HS256 (client_secret_jwt) is refused", signer: signer{alg: gojose.HS256, key: []byte(testSecret)}, desc: []string{`alg "HS256" is not allowed`}},
		{name: "a signature by another key is refused", signer: signer{alg: gojose.RS256, key: rsaKey2(), kid: "rsa1"}, desc: []string{"signature does not verify"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := assertionPolicy(t)
			if tt.policy != nil {
				tt.policy(&p)
			}
			var raw string
			if tt.token != nil {
				raw = tt.token(t)
			} else {
				c := assertionClaims()
				if tt.claims != nil {
					tt.claims(c)
				}
				raw = sign(t, tt.signer, c)
			}
			err := VerifyClientAssertion(t.Context(), raw, p)
			if len(tt.desc) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			kind := tt.kind
			if kind == nil {
				kind = ErrInvalid
			}
			wantError(t, err, kind, tt.desc...)
		})
	}
}

func TestVerifyClientAssertionReplay(t *testing.T) {
	p := assertionPolicy(t)
	raw := sign(t, rs256(), assertionClaims())
	if err := VerifyClientAssertion(t.Context(), raw, p); err != nil {
		t.Fatal(err)
	}
	wantError(t, VerifyClientAssertion(t.Context(), raw, p), ErrReplay, "was already used")
}

func TestAssertionSubject(t *testing.T) {
	sub, err := AssertionSubject(sign(t, rs256(), assertionClaims()))
	if err != nil || sub != testClient {
		t.Fatalf("AssertionSubject = %q, %v", sub, err)
	}
	for name, raw := range map[string]string{
		"empty":      "",
		"garbage":    "a.b.c",
		"alg none":   unsigned(t, assertionClaims()),
		"HS256":      sign(t, signer{alg: gojose.HS256, key: []byte(testSecret)}, assertionClaims()),
		"sub absent": sign(t, rs256(), map[string]any{"iss": testClient}),
	} {
		if _, err := AssertionSubject(raw); err == nil {
			t.Errorf("%s: accepted", name)
		} else {
			wantError(t, err, ErrInvalid)
		}
	}
}

// TestClientAssertionIssuerAudience: the issuer is an acceptable aud with
// or without a trailing slash, whichever way cibaproxy's issuer is written
// (Auth0-style clients sign aud "https://<host>/"); the endpoint URL and,
// at the token endpoint, its aliases are accepted as written (RFC 7523 §3);
// another host, another path, or an alias at another endpoint is refused.
func TestClientAssertionIssuerAudience(t *testing.T) {
	const alias = testIssuer + "/oauth/token"
	aliases := map[string][]string{testTokenEndpoint: {alias}}
	for _, tt := range []struct {
		name, issuer, endpoint, aud string
		ok                          bool
	}{
		{"issuer without slash, aud without", testIssuer, testTokenEndpoint, testIssuer, true},
		{"issuer without slash, aud with", testIssuer, testTokenEndpoint, testIssuer + "/", true},
		{"issuer with slash, aud without", testIssuer + "/", testTokenEndpoint, testIssuer, true},
		{"issuer with slash, aud with", testIssuer + "/", testTokenEndpoint, testIssuer + "/", true},
		{"issuer with a path, aud with a slash", testIssuer + "/tenant", testIssuer + "/tenant/token", testIssuer + "/tenant/", true},
		{"the token endpoint URL", testIssuer + "/", testTokenEndpoint, testTokenEndpoint, true},
		{"a token endpoint alias at the token endpoint", testIssuer, testTokenEndpoint, alias, true},
		{"a token endpoint alias at bc-authorize", testIssuer, testEndpoint, alias, false},
		{"the token endpoint URL with a slash added", testIssuer, testTokenEndpoint, testTokenEndpoint + "/", false},
		{"another host", testIssuer, testTokenEndpoint, "https://ciba.example.org/", false},
		{"a host that extends the issuer's", testIssuer, testTokenEndpoint, testIssuer + ".evil.example/", false},
		{"another path", testIssuer, testTokenEndpoint, testIssuer + "/other/", false},
		{"two slashes", testIssuer, testTokenEndpoint, testIssuer + "//", false},
		{"a parent of the issuer's path", testIssuer + "/tenant", testIssuer + "/tenant/token", testIssuer + "/", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := assertionPolicy(t)
			p.Issuer, p.Endpoint, p.EndpointAliases = tt.issuer, tt.endpoint, aliases
			c := assertionClaims()
			c["aud"] = tt.aud
			err := VerifyClientAssertion(t.Context(), sign(t, rs256(), c), p)
			switch {
			case tt.ok && err != nil:
				t.Fatalf("aud %q refused: %v", tt.aud, err)
			case !tt.ok:
				wantError(t, err, ErrInvalid, "aud ")
			}
		})
	}
}
