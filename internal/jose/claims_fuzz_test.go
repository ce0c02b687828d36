package jose

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	gojson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The targets below fuzz the claims, not the signature: each input is a
// claims set that the test signs with a key of the client (ES256, cheap),
// so the fuzzer reaches every claim check. Property: whatever is accepted
// keeps the policy, including the lifetime bounds that limit how long a
// jti is stored.

// es256 is the client's ES256 signer.
func es256() signer { return signer{alg: gojose.ES256, key: ecKey1(), kid: "ec1"} }

// stdClaims decodes the registered claims of payload as the verifier does.
func stdClaims(t *testing.T, payload []byte) jwt.Claims {
	t.Helper()
	var std jwt.Claims
	if err := gojson.Unmarshal(payload, &std); err != nil {
		t.Fatalf("accepted claims that do not decode: %v", err)
	}
	return std
}

// claimsSeeds returns claims as JSON: base, then base changed by each of
// changes.
func claimsSeeds(f *testing.F, base func() map[string]any, changes ...func(map[string]any)) [][]byte {
	out := make([][]byte, 0, len(changes)+1)
	for _, ch := range append([]func(map[string]any){nil}, changes...) {
		c := base()
		if ch != nil {
			ch(c)
		}
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzClientAssertionClaims: an accepted client assertion has iss and sub
// the client, an aud that names the issuer or the endpoint, a jti, an exp
// not past and at most DefaultAssertionMaxLifetime after its iat (else its
// nbf, else now plus the skew); every failure is invalid_client.
func FuzzClientAssertionClaims(f *testing.F) {
	for _, b := range claimsSeeds(f, assertionClaims,
		func(c map[string]any) { c["exp"] = testNow.Add(5 * time.Minute).Unix() },
		func(c map[string]any) { c["exp"] = testNow.Add(5*time.Minute + time.Second).Unix() },
		func(c map[string]any) { delete(c, "iat"); c["nbf"] = testNow.Unix() },
		func(c map[string]any) { delete(c, "iat"); c["exp"] = testNow.Add(6 * time.Minute).Unix() },
		func(c map[string]any) { c["aud"] = []string{"https://other", testIssuer} },
		func(c map[string]any) { c["exp"] = 1e300 },
	) {
		f.Add(b)
	}
	p := assertionPolicy(f)
	p.Replay = acceptAll{}
	s := es256()
	f.Fuzz(func(t *testing.T, payload []byte) {
		err := VerifyClientAssertion(context.Background(), signPayload(t, s, payload), p)
		if err != nil {
			wantProtocolError(t, err)
			return
		}
		std := stdClaims(t, payload)
		if std.Issuer != testClient || std.Subject != testClient || std.ID == "" {
			t.Fatalf("accepted iss %q, sub %q, jti %q", std.Issuer, std.Subject, std.ID)
		}
		if !std.Audience.Contains(testIssuer) && !std.Audience.Contains(testTokenEndpoint) {
			t.Fatalf("accepted aud %v", std.Audience)
		}
		if std.Expiry == nil || std.Expiry.Time().Before(testNow.Add(-DefaultClockSkew)) {
			t.Fatalf("accepted exp %v", std.Expiry)
		}
		exp, limit := std.Expiry.Time(), testNow.Add(DefaultClockSkew+DefaultAssertionMaxLifetime)
		switch {
		case std.IssuedAt != nil:
			limit = std.IssuedAt.Time().Add(DefaultAssertionMaxLifetime)
		case std.NotBefore != nil:
			limit = std.NotBefore.Time().Add(DefaultAssertionMaxLifetime)
		}
		if exp.After(limit) {
			t.Fatalf("accepted exp %s, after the limit %s", stamp(exp), stamp(limit))
		}
		// However the bound is reached, the jti is stored for little more
		// than the maximum lifetime.
		if exp.After(testNow.Add(2*DefaultClockSkew + DefaultAssertionMaxLifetime)) {
			t.Fatalf("accepted exp %s: its jti would be stored too long", stamp(exp))
		}
	})
}

// FuzzRequestObjectClaims: an accepted request object (of a client outside
// the FAPI profile: no MaxLifetime in the policy) has iss the client, an
// aud that names the issuer or the endpoint, a jti, iat and nbf not in the
// future, an exp not past and at most DefaultRequestObjectMaxLifetime after
// nbf; every failure is invalid_request.
func FuzzRequestObjectClaims(f *testing.F) {
	for _, b := range claimsSeeds(f, requestClaims,
		func(c map[string]any) { c["exp"] = testNow.Add(time.Hour).Unix() },
		func(c map[string]any) { c["exp"] = testNow.Add(time.Hour + time.Second).Unix() },
		func(c map[string]any) { c["nbf"] = testNow.Add(-time.Hour).Unix(); c["exp"] = testNow.Unix() },
		func(c map[string]any) { c["requested_expiry"] = "120"; c["binding_message"] = "Code 1234" },
		func(c map[string]any) { c["exp"] = 1e300 },
	) {
		f.Add(b)
	}
	p := requestPolicy(f)
	p.Replay = acceptAll{}
	s := es256()
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, err := VerifyRequestObject(context.Background(), signPayload(t, s, payload), p)
		if err != nil {
			wantProtocolError(t, err)
			return
		}
		std := stdClaims(t, payload)
		if std.Issuer != testClient || std.ID == "" {
			t.Fatalf("accepted iss %q, jti %q", std.Issuer, std.ID)
		}
		if !std.Audience.Contains(testIssuer) && !std.Audience.Contains(testEndpoint) {
			t.Fatalf("accepted aud %v", std.Audience)
		}
		if std.Expiry == nil || std.NotBefore == nil || std.IssuedAt == nil {
			t.Fatalf("accepted without exp, nbf or iat: %s", payload)
		}
		exp, nbf := std.Expiry.Time(), std.NotBefore.Time()
		if exp.Before(testNow.Add(-DefaultClockSkew)) || nbf.After(testNow.Add(DefaultClockSkew)) || std.IssuedAt.Time().After(testNow.Add(DefaultClockSkew)) {
			t.Fatalf("accepted exp %s, nbf %s, iat %s at %s", stamp(exp), stamp(nbf), stamp(std.IssuedAt.Time()), stamp(testNow))
		}
		if exp.Sub(nbf) > DefaultRequestObjectMaxLifetime || nbf.Before(testNow.Add(-DefaultRequestObjectMaxLifetime)) {
			t.Fatalf("accepted exp %s and nbf %s, over the lifetime bound", stamp(exp), stamp(nbf))
		}
	})
}
