package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// demoKey is the published demo private key of demo-poll (ES256, kid
// demo-poll-1), examples/keys/demo-poll.private.jwk.
func demoKey(t *testing.T) jose.JSONWebKey {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "examples", "keys", "demo-poll.private.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		t.Fatalf("demo-poll.private.jwk: %v", err)
	}
	if k.IsPublic() {
		t.Fatal("demo-poll.private.jwk is not a private key")
	}
	return k
}

// sign makes a compact JWS of claims with key (alg from the key).
func sign(t *testing.T, key jose.JSONWebKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsafeJWT builds a JWT with any header, signed with HMAC-SHA256 under
// hmacKey, or unsigned (empty signature) when hmacKey is nil.
func unsafeJWT(t *testing.T, header, claims map[string]any, hmacKey []byte) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	if hmacKey == nil {
		return input + "."
	}
	m := hmac.New(sha256.New, hmacKey)
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func jti() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestSignedRequests: a signed authentication request (CIBA §7.1.1) and
// private_key_jwt client authentication (RFC 7523) with the demo key, and
// the request objects that must be refused.
func TestSignedRequests(t *testing.T) {
	t.Parallel()
	e := start(t)
	key := demoKey(t)
	poll := testutil.DemoPoll

	requestObject := func(t *testing.T, change func(map[string]any)) (map[string]any, string) {
		now := time.Now()
		c := map[string]any{
			"iss": poll.ID, "aud": e.srv.URL, "iat": now.Unix(), "nbf": now.Unix(),
			"exp": now.Add(5 * time.Minute).Unix(), "jti": jti(),
			"scope": "openid email", "login_hint": "alice", "binding_message": tag("Signed"),
		}
		if change != nil {
			change(c)
		}
		return c, sign(t, key, c)
	}
	send := func(t *testing.T, f url.Values) *testutil.Response {
		t.Helper()
		r, err := testutil.PostForm(ctx(t), e.url("/bc-authorize"), poll, f)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	t.Run("valid request object, then replayed", func(t *testing.T) {
		e := e.in(t)
		claims, ro := requestObject(t, nil)
		r := send(t, url.Values{"request": {ro}})
		if r.Status != http.StatusOK || r.Str("auth_req_id") == "" {
			t.Fatalf("/bc-authorize with a valid signed request: got %s, want 200", r)
		}
		req := request{Client: poll, AuthReqID: r.Str("auth_req_id"), Binding: claims["binding_message"].(string)}
		m := e.answer(req, "approved")
		if m.LoginHint != "alice" || m.Scope != "openid email" {
			t.Errorf("the webhook message does not carry the request object's parameters: %s", m.Raw)
		}
		tr := checkTokens(t, "/token for a signed request", e.token(poll, req.AuthReqID))
		if sub := e.verifyIDToken(tr.Str("id_token"), poll.ID).str("sub"); sub != "alice" {
			t.Errorf("ID token sub = %q, want alice", sub)
		}
		checkError(t, "/bc-authorize with the same request object again (replayed jti)", send(t, url.Values{"request": {ro}}), http.StatusBadRequest, "invalid_request")
	})

	t.Run("refused request objects", func(t *testing.T) {
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		otherKey := jose.JSONWebKey{Key: other, KeyID: key.KeyID, Algorithm: key.Algorithm, Use: "sig"}
		_, valid := requestObject(t, nil)
		// Each case has its own jti, so none is refused as a mere replay.
		fresh := func() map[string]any { c, _ := requestObject(t, nil); return c }
		cases := []struct {
			name string
			form url.Values
		}{
			{"parameter beside the request object", url.Values{"request": {valid}, "login_hint": {"bob"}}},
			{"signed with another key (same kid)", url.Values{"request": {sign(t, otherKey, fresh())}}},
			{"alg none", url.Values{"request": {unsafeJWT(t, map[string]any{"alg": "none", "typ": "JWT"}, fresh(), nil)}}},
			{"HS256 with the client secret", url.Values{"request": {unsafeJWT(t, map[string]any{"alg": "HS256", "typ": "JWT"}, fresh(), []byte(poll.Secret))}}},
			{"wrong aud", url.Values{"request": {sign(t, key, with(fresh(), "aud", "https://elsewhere.example"))}}},
			{"wrong iss", url.Values{"request": {sign(t, key, with(fresh(), "iss", "demo-ping"))}}},
			{"expired", url.Values{"request": {sign(t, key, with(with(fresh(), "exp", time.Now().Add(-time.Hour).Unix()), "iat", time.Now().Add(-2*time.Hour).Unix()))}}},
			{"not a JWT", url.Values{"request": {"not-a-jwt"}}},
		}
		for _, tc := range cases {
			checkError(t, "/bc-authorize: "+tc.name, send(t, tc.form), http.StatusBadRequest, "invalid_request")
		}
	})

	t.Run("private_key_jwt", func(t *testing.T) {
		e := e.in(t)
		assertion := func(aud string) string {
			now := time.Now()
			return sign(t, key, map[string]any{
				"iss": poll.ID, "sub": poll.ID, "aud": aud, "jti": jti(),
				"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
			})
		}
		withAssertion := func(a string, f url.Values) url.Values {
			f.Set("client_id", poll.ID)
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			f.Set("client_assertion", a)
			return f
		}
		post := func(endpoint string, f url.Values) *testutil.Response {
			t.Helper()
			r, err := testutil.PostForm(ctx(t), e.url(endpoint), testutil.Client{}, f)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		binding := tag("PKJWT")
		r := post("/bc-authorize", withAssertion(assertion(e.srv.URL), url.Values{
			"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding},
		}))
		if r.Status != http.StatusOK {
			t.Fatalf("/bc-authorize with private_key_jwt (aud = issuer): got %s, want 200", r)
		}
		req := request{Client: poll, AuthReqID: r.Str("auth_req_id"), Binding: binding}
		e.answer(req, "approved")
		a := assertion(e.url("/token"))
		tokenForm := func() url.Values {
			return url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {req.AuthReqID}}
		}
		checkTokens(t, "/token with private_key_jwt (aud = token endpoint)", post("/token", withAssertion(a, tokenForm())))
		checkError(t, "/token with a replayed client assertion", post("/token", withAssertion(a, tokenForm())), http.StatusUnauthorized, "invalid_client")
	})
}

// with returns a copy of claims with k set to v.
func with(claims map[string]any, k string, v any) map[string]any {
	c := make(map[string]any, len(claims))
	for ck, cv := range claims {
		c[ck] = cv
	}
	c[k] = v
	return c
}

// TestSignedLifetimeBounds: a client outside the FAPI-CIBA profile is held
// to lifetime bounds too, so no jti stays in the store for long: a request
// object whose exp is more than 60 minutes after its nbf is invalid_request,
// a client assertion whose exp is more than 5 minutes after its iat is
// invalid_client, each description naming the limit; exactly the limit is
// accepted.
func TestSignedLifetimeBounds(t *testing.T) {
	t.Parallel()
	e := start(t)
	key := demoKey(t)
	poll := testutil.DemoPoll

	t.Run("request object", func(t *testing.T) {
		send := func(t *testing.T, life time.Duration) *testutil.Response {
			t.Helper()
			now := time.Now()
			ro := sign(t, key, map[string]any{
				"iss": poll.ID, "aud": e.srv.URL, "iat": now.Unix(), "nbf": now.Unix(),
				"exp": now.Add(life).Unix(), "jti": jti(),
				"scope": "openid", "login_hint": "alice", "binding_message": tag("Life"),
			})
			r, err := testutil.PostForm(ctx(t), e.url("/bc-authorize"), poll, url.Values{"request": {ro}})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if r := send(t, 60*time.Minute); r.Status != http.StatusOK {
			t.Errorf("/bc-authorize with exp 60 minutes after nbf: got %s, want 200", r)
		}
		r := send(t, 60*time.Minute+time.Second)
		checkError(t, "/bc-authorize with exp 60 minutes 1 second after nbf", r, http.StatusBadRequest, "invalid_request")
		if d := r.Str("error_description"); !strings.Contains(d, "over the limit of 1h0m0s") {
			t.Errorf("error_description %q does not name the limit", d)
		}
	})

	t.Run("client assertion", func(t *testing.T) {
		// At /token with an auth_req_id that does not exist: an accepted
		// assertion gets invalid_grant (400), a refused one invalid_client.
		send := func(t *testing.T, life time.Duration) *testutil.Response {
			t.Helper()
			now := time.Now()
			a := sign(t, key, map[string]any{
				"iss": poll.ID, "sub": poll.ID, "aud": e.url("/token"), "jti": jti(),
				"iat": now.Unix(), "exp": now.Add(life).Unix(),
			})
			r, err := testutil.PostForm(ctx(t), e.url("/token"), testutil.Client{}, url.Values{
				"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"no-such-request"}, "client_id": {poll.ID},
				"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a},
			})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		checkError(t, "/token with an assertion whose exp is 5 minutes after iat", send(t, 5*time.Minute), http.StatusBadRequest, "invalid_grant")
		r := send(t, 5*time.Minute+time.Second)
		checkError(t, "/token with an assertion whose exp is 5 minutes 1 second after iat", r, http.StatusUnauthorized, "invalid_client")
		if d := r.Str("error_description"); !strings.Contains(d, "over the limit of 5m0s") {
			t.Errorf("error_description %q does not name the limit", d)
		}
	})
}
