package abuse

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/jose/josetest"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// jwtrolesKey is demo-poll's published DEMO private key
// (examples/keys/demo-poll.private.jwk), the key the quick start registers
// for its private_key_jwt and signed requests.
func jwtrolesKey(t *testing.T) gojose.JSONWebKey {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "examples", "keys", "demo-poll.private.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	var k gojose.JSONWebKey
	if err := k.UnmarshalJSON(raw); err != nil {
		t.Fatal(err)
	}
	return k
}

// jwtrolesSign signs claims with demo-poll's key, with the typ header typ
// ("" for none), and a fresh jti, iat, nbf and exp.
func jwtrolesSign(t *testing.T, typ string, claims map[string]any) string {
	t.Helper()
	k := jwtrolesKey(t)
	opts := &gojose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(gojose.ContentType(typ))
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	now := time.Now()
	c := map[string]any{"jti": base64.RawURLEncoding.EncodeToString(id), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	return josetest.SignClaims(t, gojose.SigningKey{Algorithm: gojose.SignatureAlgorithm(k.Algorithm), Key: k}, opts, c)
}

// TestJWTRoles: a JWT demo-poll signed as a request object does not
// authenticate it as a client assertion, and a client assertion is not
// accepted as a request object (RFC 8725 §3.11, RFC 9101 §10.8): the
// quick start registers one key for both uses. Each JWT is also shown to
// work in the role it was made for.
func TestJWTRoles(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	issuer := e.srv.URL
	params := map[string]any{"scope": "openid", "login_hint": "alice"}
	asRequest := func(raw string) *testutil.Response {
		return e.authorize(demoPoll, url.Values{"request": {raw}})
	}
	asAssertion := func(endpoint, raw string, form url.Values) *testutil.Response {
		t.Helper()
		f := url.Values{"client_id": {demoPoll.ID}, "client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {raw}}
		for k, v := range form {
			f[k] = v
		}
		r, err := testutil.PostForm(ctx(t), e.url(endpoint), testutil.Client{}, f)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	want := func(what string, r *testutil.Response, status int, code string) {
		t.Helper()
		if r.Status != status || (code != "" && r.Str("error") != code) {
			t.Fatalf("%s: %s, want HTTP %d %s", what, r, status, code)
		}
	}
	poll := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"x"}}
	authz := url.Values{"scope": {"openid"}, "login_hint": {"alice"}}

	requestObject := func(typ string, extra map[string]any) string {
		c := map[string]any{"iss": demoPoll.ID, "aud": issuer}
		for k, v := range params {
			c[k] = v
		}
		for k, v := range extra {
			c[k] = v
		}
		return jwtrolesSign(t, typ, c)
	}
	assertion := func(typ, aud string) string {
		return jwtrolesSign(t, typ, map[string]any{"iss": demoPoll.ID, "sub": demoPoll.ID, "aud": aud})
	}

	t.Run("made as a request object", func(t *testing.T) {
		want("a request object as a request object", asRequest(requestObject("oauth-authz-req+jwt", nil)), http.StatusOK, "")
		for name, raw := range map[string]string{
			"typed oauth-authz-req+jwt (openid-client)": requestObject("oauth-authz-req+jwt", nil),
			"untyped": requestObject("", nil),
			"untyped, aud the endpoint, client_id as a claim": requestObject("", map[string]any{"aud": e.url("/token"), "client_id": demoPoll.ID}),
			"typed JWT": requestObject("JWT", nil),
			"typed oauth-authz-req+jwt with sub = the client_id": requestObject("oauth-authz-req+jwt", map[string]any{"sub": demoPoll.ID}),
		} {
			want(name+" as a client assertion at /token", asAssertion("/token", raw, poll), http.StatusUnauthorized, "invalid_client")
			want(name+" as a client assertion at /bc-authorize", asAssertion("/bc-authorize", raw, authz), http.StatusUnauthorized, "invalid_client")
		}
	})

	t.Run("made as a client assertion", func(t *testing.T) {
		want("a client assertion as a client assertion", asAssertion("/bc-authorize", assertion("", issuer), authz), http.StatusOK, "")
		for name, raw := range map[string]string{
			"untyped (openid-client)":           assertion("", issuer),
			"typed JWT":                         assertion("JWT", issuer),
			"typed client-authentication+jwt":   assertion("client-authentication+jwt", issuer),
			"untyped, aud the bc-authorize URL": assertion("", e.url("/bc-authorize")),
		} {
			want(name+" as a request object", asRequest(raw), http.StatusBadRequest, "invalid_request")
		}
		// Even with the request parameters added, a JWT typed as a client
		// assertion, or with sub = the client, is no request object.
		typed := jwtrolesSign(t, "client-authentication+jwt", map[string]any{"iss": demoPoll.ID, "aud": issuer, "scope": "openid", "login_hint": "alice"})
		want("a typed client assertion with request parameters as a request object", asRequest(typed), http.StatusBadRequest, "invalid_request")
		both := jwtrolesSign(t, "", map[string]any{"iss": demoPoll.ID, "sub": demoPoll.ID, "aud": issuer, "scope": "openid", "login_hint": "alice"})
		want("iss = sub = client with request parameters as a request object", asRequest(both), http.StatusBadRequest, "invalid_request")
		want("iss = sub = client with request parameters as a client assertion", asAssertion("/token", both, poll), http.StatusUnauthorized, "invalid_client")
	})
}
