package jose

import (
	"context"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

// typed is rs256 with a typ header.
func typed(typ string) signer {
	s := rs256()
	s.headers = map[gojose.HeaderKey]any{gojose.HeaderType: typ}
	return s
}

// bothRoles are claims that satisfied the rules of a request object and of
// a client assertion at once before the roles were kept apart: iss = sub =
// the client, aud = the issuer, exp, iat, nbf and jti.
func bothRoles() map[string]any {
	return map[string]any{
		"iss": testClient, "sub": testClient, "aud": testIssuer,
		"exp": testNow.Add(time.Minute).Unix(), "iat": testNow.Unix(), "nbf": testNow.Unix(),
		"jti": randomID(),
	}
}

// TestNoJWTIsAcceptedInTwoRoles: a JWT is accepted as a request object or
// as a client assertion, never as both (RFC 8725 §3.11, RFC 9101 §10.8),
// whatever its typ.
func TestNoJWTIsAcceptedInTwoRoles(t *testing.T) {
	for _, typ := range []string{"", "JWT", TypRequestObject, TypClientAssertion} {
		s := rs256()
		if typ != "" {
			s = typed(typ)
		}
		raw := sign(t, s, bothRoles())
		_, roErr := VerifyRequestObject(t.Context(), raw, requestPolicy(t))
		asErr := VerifyClientAssertion(t.Context(), raw, assertionPolicy(t))
		if roErr == nil && asErr == nil {
			t.Errorf("typ %q: accepted as a request object and as a client assertion", typ)
		}
		if roErr == nil {
			t.Errorf("typ %q: iss = sub = client_id accepted as a request object", typ)
		}
	}
	// A JWT made as a client assertion is still one.
	if err := VerifyClientAssertion(t.Context(), sign(t, rs256(), bothRoles()), assertionPolicy(t)); err != nil {
		t.Fatalf("a plain client assertion: %v", err)
	}
}

func TestRequestObjectRoleRules(t *testing.T) {
	tests := []struct {
		name   string
		signer signer
		claims func(map[string]any)
		desc   string // "": accepted
	}{
		{name: "typ oauth-authz-req+jwt (RFC 9101 §4, openid-client)", signer: typed(TypRequestObject)},
		{name: "typ application/oauth-authz-req+jwt, any case", signer: typed("Application/OAuth-Authz-Req+JWT")},
		{name: "typ JWT", signer: typed("JWT")},
		{name: "a sub other than the client_id", signer: rs256(), claims: func(c map[string]any) { c["sub"] = "alice" }},
		{name: "sub = client_id is a client assertion's", signer: rs256(), claims: func(c map[string]any) { c["sub"] = testClient },
			desc: `sub must not be the client_id "client-1"`},
		{name: "typ client-authentication+jwt", signer: typed(TypClientAssertion), desc: `typ "client-authentication+jwt" is not "oauth-authz-req+jwt"`},
		{name: "another explicit type (an access token)", signer: typed("at+jwt"), desc: `typ "at+jwt"`},
		{name: "a typ that is not a string", signer: signer{alg: gojose.RS256, key: rsaKey1(), kid: "rsa1",
			headers: map[gojose.HeaderKey]any{gojose.HeaderType: 7}}, desc: "the typ header must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := requestClaims()
			if tt.claims != nil {
				tt.claims(c)
			}
			_, err := VerifyRequestObject(t.Context(), sign(t, tt.signer, c), requestPolicy(t))
			if tt.desc == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantError(t, err, ErrInvalid, tt.desc)
		})
	}
}

func TestClientAssertionRoleRules(t *testing.T) {
	tests := []struct {
		name   string
		signer signer
		claims func(map[string]any)
		desc   string // "": accepted
	}{
		{name: "no typ (openid-client, most clients)", signer: rs256()},
		{name: "typ JWT", signer: typed("JWT")},
		{name: "typ client-authentication+jwt (RFC 7523bis)", signer: typed(TypClientAssertion)},
		{name: "a client_id claim", signer: rs256(), claims: func(c map[string]any) { c["client_id"] = testClient }},
		{name: "typ oauth-authz-req+jwt is a request object's", signer: typed(TypRequestObject),
			desc: `typ "oauth-authz-req+jwt" is not "client-authentication+jwt"`},
		{name: "typ application/oauth-authz-req+jwt", signer: typed("application/oauth-authz-req+jwt"), desc: "made for another use"},
		{name: "an ID token's typ", signer: typed("id_token+jwt"), desc: "made for another use"},
		{name: "login_hint is a request parameter", signer: rs256(), claims: func(c map[string]any) { c["login_hint"] = "alice" },
			desc: `claim "login_hint" is an authentication request parameter`},
		{name: "scope is a request parameter", signer: rs256(), claims: func(c map[string]any) { c["scope"] = "openid" },
			desc: `claim "scope" is an authentication request parameter`},
		{name: "a null binding_message still marks a request object", signer: rs256(), claims: func(c map[string]any) { c["binding_message"] = nil },
			desc: `claim "binding_message"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := assertionClaims()
			if tt.claims != nil {
				tt.claims(c)
			}
			err := VerifyClientAssertion(t.Context(), sign(t, tt.signer, c), assertionPolicy(t))
			if tt.desc == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantError(t, err, ErrInvalid, tt.desc)
		})
	}
}

// TestARequestObjectIsNeverAnAssertion: the request object a client
// made (no sub, request parameters, its typ) is refused as a client
// assertion at every audience the assertion accepts.
func TestARequestObjectIsNeverAnAssertion(t *testing.T) {
	c := requestClaims()
	raw := sign(t, typed(TypRequestObject), c)
	if _, err := VerifyRequestObject(t.Context(), raw, requestPolicy(t)); err != nil {
		t.Fatalf("the request object itself: %v", err)
	}
	for _, endpoint := range []string{testEndpoint, testTokenEndpoint} {
		p := assertionPolicy(t)
		p.Endpoint = endpoint
		if err := VerifyClientAssertion(t.Context(), raw, p); err == nil {
			t.Fatalf("a request object was accepted as a client assertion at %s", endpoint)
		}
		// Without its typ and with sub = client_id added, its request
		// parameters still give it away.
		c2 := requestClaims()
		c2["sub"] = testClient
		wantError(t, VerifyClientAssertion(t.Context(), sign(t, rs256(), c2), p), ErrInvalid, "authentication request parameter")
	}
}

// TestLoginHintTokenIsNotARequestObject: a JWT the client typed as a request
// object or a client assertion is not accepted as its login_hint_token.
func TestLoginHintTokenIsNotARequestObject(t *testing.T) {
	claims := func() map[string]any {
		return map[string]any{"iss": testClient, "sub": "alice", "aud": testIssuer, "exp": testNow.Add(time.Minute).Unix()}
	}
	if _, err := VerifyLoginHintToken(t.Context(), sign(t, typed("JWT"), claims()), hintPolicy(t)); err != nil {
		t.Fatalf("typ JWT: %v", err)
	}
	for _, typ := range []string{TypRequestObject, TypClientAssertion, "application/" + TypRequestObject} {
		_, err := VerifyLoginHintToken(t.Context(), sign(t, typed(typ), claims()), hintPolicy(t))
		wantError(t, err, ErrInvalid, "made for another use")
	}
	// A typ that is not a string is refused, as for every other role,
	// rather than read as no typ at all.
	for _, typ := range []any{42, true, []string{TypRequestObject}} {
		s := rs256()
		s.headers = map[gojose.HeaderKey]any{gojose.HeaderType: typ}
		_, err := VerifyLoginHintToken(t.Context(), sign(t, s, claims()), hintPolicy(t))
		wantError(t, err, ErrInvalid, "typ header must be a string")
	}
}

// FuzzRolesAreDisjoint: no claims set and typ header make a JWT that is
// accepted both as a request object and as a client assertion of the same
// client, at the audience both accept (the issuer).
func FuzzRolesAreDisjoint(f *testing.F) {
	for _, typ := range []string{"", "JWT", TypRequestObject, TypClientAssertion, "application/jwt"} {
		for _, b := range claimsSeeds(f, bothRoles,
			func(c map[string]any) { delete(c, "sub") },
			func(c map[string]any) { c["sub"] = "alice" },
			func(c map[string]any) { c["login_hint"] = "alice" },
			func(c map[string]any) { c["client_id"] = testClient },
		) {
			f.Add(typ, b)
		}
	}
	ro, as := requestPolicy(f), assertionPolicy(f)
	ro.Replay, as.Replay = acceptAll{}, acceptAll{}
	as.Endpoint = testEndpoint
	f.Fuzz(func(t *testing.T, typ string, payload []byte) {
		s := es256()
		if typ != "" {
			s.headers = map[gojose.HeaderKey]any{gojose.HeaderType: typ}
		}
		raw := signPayload(t, s, payload)
		_, roErr := VerifyRequestObject(context.Background(), raw, ro)
		asErr := VerifyClientAssertion(context.Background(), raw, as)
		if roErr == nil && asErr == nil {
			t.Fatalf("typ %q, claims %s: accepted as a request object and as a client assertion", typ, payload)
		}
	})
}
