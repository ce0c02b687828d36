package jose

import (
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
)

const trustedIssuer = "https://hub.example.com"

// hubKeys are the keys of the trusted hint issuer: rsaKey2 as "hub".
func hubKeys(t testing.TB) KeySet {
	ks, err := NewStaticKeySet(gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{publicJWK(rsaKey2(), "hub")}})
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func hubSigner() signer { return signer{alg: gojose.RS256, key: rsaKey2(), kid: "hub"} }

func hintPolicy(t testing.TB) HintTokenPolicy {
	return HintTokenPolicy{
		ClientID:       testClient,
		ClientKeys:     clientKeys(t),
		TrustedIssuers: map[string]KeySet{trustedIssuer: hubKeys(t)},
		Issuer:         testIssuer,
		Now:            fixedNow,
	}
}

func TestVerifyLoginHintToken(t *testing.T) {
	tests := []struct {
		name   string
		signer signer
		claims map[string]any
		policy func(*HintTokenPolicy)
		kind   error
		desc   []string
	}{
		{name: "a token signed by the requesting client is accepted", signer: rs256(),
			claims: map[string]any{"iss": testClient, "sub": "alice"}},
		{name: "a token signed by a trusted issuer is accepted", signer: hubSigner(),
			claims: map[string]any{"iss": trustedIssuer, "sub_id": map[string]any{"format": "email", "email": "alice@example.com"}, "exp": testNow.Add(time.Hour).Unix()}},
		{name: "a token whose aud names the issuer is accepted", signer: rs256(),
			claims: map[string]any{"iss": testClient, "sub": "alice", "aud": testIssuer}},
		{name: "login_hint_token expired → expired_login_hint_token (§13)", signer: rs256(),
			claims: map[string]any{"iss": testClient, "sub": "alice", "exp": testNow.Add(-time.Hour).Unix()},
			kind:   ErrExpired, desc: []string{"login_hint_token: expired at 2026-03-01T11:00:00Z"}},
		{name: "a token from an untrusted issuer is refused", signer: hubSigner(),
			claims: map[string]any{"iss": "https://evil.example.com", "sub": "alice"},
			kind:   ErrInvalid, desc: []string{`issuer "https://evil.example.com" is neither the client nor a trusted issuer`}},
		{name: "a token without iss is refused", signer: rs256(), claims: map[string]any{"sub": "alice"},
			kind: ErrInvalid, desc: []string{"iss is missing"}},
		{name: "a token claiming the client as iss but signed by the hub is refused", signer: hubSigner(),
			claims: map[string]any{"iss": testClient, "sub": "alice"},
			kind:   ErrInvalid, desc: []string{`no key of client "client-1" has kid "hub"`}},
		{name: "a token claiming the hub as iss but signed by the client is refused", signer: signer{alg: gojose.RS256, key: rsaKey1(), kid: "hub"},
			claims: map[string]any{"iss": trustedIssuer, "sub": "alice"},
			kind:   ErrInvalid, desc: []string{`signature does not verify with the keys of issuer "https://hub.example.com"`}},
		{name: "a client without keys cannot sign its own hint", signer: rs256(), claims: map[string]any{"iss": testClient, "sub": "alice"},
			policy: func(p *HintTokenPolicy) { p.ClientKeys = nil },
			kind:   ErrInvalid, desc: []string{`client "client-1" has no registered keys`}},
		{name: "a not yet valid nbf is refused", signer: rs256(), claims: map[string]any{"iss": testClient, "sub": "alice", "nbf": testNow.Add(time.Hour).Unix()},
			kind: ErrInvalid, desc: []string{"nbf"}},
		{name: "a token for another audience is refused", signer: rs256(), claims: map[string]any{"iss": testClient, "sub": "alice", "aud": "https://other"},
			kind: ErrInvalid, desc: []string{"aud"}},
		{name: "alg none is refused", claims: map[string]any{"iss": testClient, "sub": "alice"},
			kind: ErrInvalid, desc: []string{`alg "none"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := hintPolicy(t)
			if tt.policy != nil {
				tt.policy(&p)
			}
			raw := unsigned(t, tt.claims)
			if tt.signer.alg != "" {
				raw = sign(t, tt.signer, tt.claims)
			}
			claims, err := VerifyLoginHintToken(t.Context(), raw, p)
			if tt.kind == nil {
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := HintSubject(claims); err != nil {
					t.Fatal(err)
				}
				return
			}
			wantError(t, err, tt.kind, tt.desc...)
		})
	}
}

func TestHintSubject(t *testing.T) {
	tests := []struct {
		name   string
		claims map[string]any
		want   SubjectID
		desc   string // error description part; "" means accepted
	}{
		{"sub names the user", map[string]any{"sub": "u-1"}, SubjectID{Kind: HintSub, Value: "u-1"}, ""},
		{"sub_id wins over sub", map[string]any{"sub": "u-1", "sub_id": map[string]any{"format": "opaque", "id": "x"}}, SubjectID{Kind: HintOpaque, Value: "x"}, ""},
		{"sub_id email (RFC 9493 §3.2.2)", map[string]any{"sub_id": map[string]any{"format": "email", "email": "a@example.com"}}, SubjectID{Kind: HintEmail, Value: "a@example.com"}, ""},
		{"sub_id phone_number (RFC 9493 §3.2.5)", map[string]any{"sub_id": map[string]any{"format": "phone_number", "phone_number": "+12065550100"}}, SubjectID{Kind: HintPhoneNumber, Value: "+12065550100"}, ""},
		{"sub_id phone, the draft name of the CIBA example", map[string]any{"sub_id": map[string]any{"format": "phone", "phone": "+13302818004"}}, SubjectID{Kind: HintPhoneNumber, Value: "+13302818004"}, ""},
		{"sub_id opaque uses id (RFC 9493 §3.2.4)", map[string]any{"sub_id": map[string]any{"format": "opaque", "id": "11112222"}}, SubjectID{Kind: HintOpaque, Value: "11112222"}, ""},
		{"sub_id iss_sub keeps the issuer (RFC 9493 §3.2.3)", map[string]any{"sub_id": map[string]any{"format": "iss_sub", "iss": testIssuer, "sub": "u-1"}}, SubjectID{Kind: HintIssSub, Value: "u-1", Issuer: testIssuer}, ""},
		{"no sub and no sub_id is refused", map[string]any{"iss": "x"}, SubjectID{}, "names no user"},
		{"an unsupported format is refused", map[string]any{"sub_id": map[string]any{"format": "did", "url": "did:x"}}, SubjectID{}, `format "did" is not supported`},
		{"a sub_id that is not an object is refused", map[string]any{"sub_id": "alice"}, SubjectID{}, "not a JSON object"},
		{"a sub_id without its member is refused", map[string]any{"sub_id": map[string]any{"format": "email"}}, SubjectID{}, `has no "email"`},
		{"iss_sub without sub is refused", map[string]any{"sub_id": map[string]any{"format": "iss_sub", "iss": testIssuer}}, SubjectID{}, `has no "sub"`},
		{"a sub_id without format is refused", map[string]any{"sub_id": map[string]any{"email": "a@example.com"}}, SubjectID{}, "has no format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HintSubjectID(tt.claims)
			if tt.desc != "" {
				wantError(t, err, ErrInvalid, tt.desc)
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("HintSubjectID = %+v, %v; want %+v", got, err, tt.want)
			}
			kind, value, err := HintSubject(tt.claims)
			if err != nil || kind != tt.want.Kind || value != tt.want.Value {
				t.Fatalf("HintSubject = %q, %q, %v", kind, value, err)
			}
		})
	}
}

func idTokenClaims() map[string]any {
	return map[string]any{
		"iss": testIssuer,
		"sub": "alice-sub",
		"aud": testClient,
		"exp": testNow.Add(time.Hour).Unix(),
		"iat": testNow.Unix(),
	}
}

func TestVerifyIDTokenHint(t *testing.T) {
	// The issuer's own key is rsaKey2 as "op".
	opKeys, err := NewStaticKeySet(gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{publicJWK(rsaKey2(), "op")}})
	if err != nil {
		t.Fatal(err)
	}
	op := signer{alg: gojose.RS256, key: rsaKey2(), kid: "op"}
	with := func(k string, v any) map[string]any { c := idTokenClaims(); c[k] = v; return c }
	without := func(k string) map[string]any { c := idTokenClaims(); delete(c, k); return c }
	tests := []struct {
		name   string
		signer signer
		claims map[string]any
		desc   []string
	}{
		{name: "an ID token the issuer gave the client is accepted", signer: op, claims: idTokenClaims()},
		{name: "an expired id_token_hint is accepted (it is a hint, OIDC Core §3.1.2.1)", signer: op, claims: with("exp", testNow.Add(-24*time.Hour).Unix())},
		{name: "aud may list the client among others", signer: op, claims: with("aud", []string{"other", testClient})},
		{name: "azp equal to the client is accepted", signer: op, claims: with("azp", testClient)},
		{name: "the signature is never skipped", signer: signer{alg: gojose.RS256, key: rsaKey1(), kid: "op"}, claims: idTokenClaims(),
			desc: []string{`signature does not verify with the keys of issuer "https://ciba.example.com"`}},
		{name: "an unsigned id_token_hint is refused", claims: idTokenClaims(), desc: []string{`alg "none"`}},
		{name: "an ID token of another issuer is refused", signer: op, claims: with("iss", "https://other-op"),
			desc: []string{`iss "https://other-op" is not the issuer "https://ciba.example.com"`}},
		{name: "an ID token issued to another client is refused", signer: op, claims: with("aud", "client-2"),
			desc: []string{`aud ["client-2"] does not contain the client_id "client-1"`}},
		{name: "an ID token whose azp is another client is refused", signer: op, claims: func() map[string]any {
			c := with("aud", []string{testClient, "client-2"})
			c["azp"] = "client-2"
			return c
		}(), desc: []string{`azp "client-2" is not the client_id`}},
		{name: "an ID token without sub is refused", signer: op, claims: without("sub"), desc: []string{"sub is missing"}},
		{name: "unknown kid", signer: signer{alg: gojose.RS256, key: rsaKey2(), kid: "old"}, claims: idTokenClaims(),
			desc: []string{`has kid "old"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := unsigned(t, tt.claims)
			if tt.signer.alg != "" {
				raw = sign(t, tt.signer, tt.claims)
			}
			claims, err := VerifyIDTokenHint(t.Context(), raw, IDTokenHintPolicy{Issuer: testIssuer, ClientID: testClient, KeySet: opKeys})
			if len(tt.desc) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if claims["sub"] != "alice-sub" {
					t.Fatalf("claims = %v", claims)
				}
				return
			}
			wantError(t, err, ErrInvalid, tt.desc...)
		})
	}
}
