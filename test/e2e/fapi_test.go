package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// fapiConfig writes the quick start configuration with its clients replaced
// by one FAPI client, fapi-poll (private_key_jwt, ES256 request objects with
// the demo key, poll), and fapi.ciba: true. Its jwks also holds rsaKey's
// public half, so an RS256 signature would verify if the profile allowed it.
func fapiConfig(t *testing.T, rsaKey *rsa.PrivateKey) string {
	t.Helper()
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(base), "\nclients:\n")
	if !ok {
		t.Fatal("quickstart.yaml has no clients: section")
	}
	dk := demoKey(t)
	demo := dk.Public()
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		demo,
		{Key: rsaKey.Public(), KeyID: "fapi-rsa-1", Algorithm: "RS256", Use: "sig"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := head + `
fapi:
  ciba: true
clients:
  - client_id: fapi-poll
    client_name: FAPI poll client
    token_endpoint_auth_methods: [private_key_jwt]
    backchannel_token_delivery_mode: poll
    backchannel_authentication_request_signing_alg: ES256
    jwks: '` + string(jwks) + `'
`
	p := filepath.Join(t.TempDir(), "fapi.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFAPICIBA: the FAPI-CIBA profile switched on for every client
// (fapi.ciba: true): the discovery document lists only what the profile
// allows, a compliant poll flow (private_key_jwt and an ES256 request object
// valid for 10 minutes) gets tokens, and non-compliant requests are refused.
func TestFAPICIBA(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: fapiConfig(t, rsaKey), WebhookURL: e.hook.URL, NotifyURL: e.notify.URL})
	key := demoKey(t)
	const id = "fapi-poll"

	assertion := func(k jose.JSONWebKey, aud string) string {
		now := time.Now()
		return sign(t, k, map[string]any{
			"iss": id, "sub": id, "aud": aud, "jti": jti(),
			"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
		})
	}
	authenticated := func(f url.Values, a string) url.Values {
		f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		f.Set("client_assertion", a)
		return f
	}
	post := func(t *testing.T, endpoint string, f url.Values) *testutil.Response {
		t.Helper()
		r, err := testutil.PostForm(ctx(t), e.url(endpoint), testutil.Client{}, f)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	requestObject := func(binding string, nbf, exp time.Time) map[string]any {
		return map[string]any{
			"iss": id, "aud": e.srv.URL, "iat": nbf.Unix(), "nbf": nbf.Unix(), "exp": exp.Unix(), "jti": jti(),
			"scope": "openid email", "login_hint": "alice", "binding_message": binding,
		}
	}
	bcAuthorize := func(t *testing.T, f url.Values) *testutil.Response {
		t.Helper()
		return post(t, "/bc-authorize", authenticated(f, assertion(key, e.srv.URL)))
	}

	t.Run("discovery lists only what the profile allows", func(t *testing.T) {
		r, err := testutil.Get(ctx(t), e.url("/.well-known/openid-configuration"))
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("discovery: %v %v", r, err)
		}
		for k, want := range map[string][]string{
			"backchannel_authentication_request_signing_alg_values_supported": {"PS256", "ES256"},
			"token_endpoint_auth_signing_alg_values_supported":                {"PS256", "ES256"},
			"backchannel_token_delivery_modes_supported":                      {"poll", "ping"},
			// FAPI 1.0 Advanced §8.6: the key generated under fapi.ciba.
			"id_token_signing_alg_values_supported": {"PS256"},
		} {
			if got := jsonStrings(r.JSON[k]); !slices.Equal(got, want) {
				t.Errorf("discovery %s = %v, want %v", k, got, want)
			}
		}
		methods := jsonStrings(r.JSON["token_endpoint_auth_methods_supported"])
		if !slices.Contains(methods, "private_key_jwt") || slices.ContainsFunc(methods, func(m string) bool {
			return strings.HasPrefix(m, "client_secret") || m == "none"
		}) {
			t.Errorf("discovery token_endpoint_auth_methods_supported = %v, want private_key_jwt (or mTLS) only", methods)
		}
	})

	t.Run("a compliant poll flow gets tokens", func(t *testing.T) {
		e := e.in(t)
		binding := tag("FAPI")
		now := time.Now()
		r := bcAuthorize(t, url.Values{"request": {sign(t, key, requestObject(binding, now, now.Add(10*time.Minute)))}})
		if r.Status != http.StatusOK || r.Str("auth_req_id") == "" {
			t.Fatalf("/bc-authorize with a compliant FAPI request: got %s, want 200", r)
		}
		req := request{Client: testutil.Client{ID: id}, AuthReqID: r.Str("auth_req_id"), Binding: binding}
		e.answer(req, "approved")
		tr := checkTokens(t, "/token for a FAPI client", post(t, "/token", authenticated(url.Values{
			"grant_type": {testutil.GrantCIBA}, "auth_req_id": {req.AuthReqID},
		}, assertion(key, e.url("/token")))))
		idt := e.verifyIDToken(tr.Str("id_token"), id)
		if sub := idt.str("sub"); sub != "alice" {
			t.Errorf("ID token sub = %q, want alice", sub)
		}
		// FAPI 1.0 Advanced §8.6: the authorization server shall use
		// PS256 or ES256 (the key generated under fapi.ciba is PS256).
		if idt.Alg != "PS256" {
			t.Errorf("ID token alg = %q, want PS256", idt.Alg)
		}
		at, err := jose.ParseSignedCompact(tr.Str("access_token"), asymmetric)
		if err != nil {
			t.Fatalf("the access token is not a JWS: %v", err)
		}
		if alg := at.Signatures[0].Protected.Algorithm; alg != "PS256" {
			t.Errorf("access token alg = %q, want PS256", alg)
		}
	})

	t.Run("non-compliant requests are refused", func(t *testing.T) {
		now := time.Now()
		rsaJWK := jose.JSONWebKey{Key: rsaKey, KeyID: "fapi-rsa-1", Algorithm: "RS256", Use: "sig"}
		cases := []struct {
			name string
			r    *testutil.Response
			code string
			desc string
		}{
			{"exp 61 minutes after nbf",
				bcAuthorize(t, url.Values{"request": {sign(t, key, requestObject(tag("FAPI"), now, now.Add(61*time.Minute)))}}),
				"invalid_request", "over the limit of 1h0m0s"},
			{"a request object signed with RS256",
				bcAuthorize(t, url.Values{"request": {sign(t, rsaJWK, requestObject(tag("FAPI"), now, now.Add(10*time.Minute)))}}),
				"invalid_request", "RS256"},
			{"no binding_message",
				bcAuthorize(t, url.Values{"request": {sign(t, key, func() map[string]any {
					ro := requestObject("", now, now.Add(10*time.Minute))
					delete(ro, "binding_message")
					return ro
				}())}}),
				"invalid_request", "binding_message"},
			{"plain form parameters, not a signed request",
				bcAuthorize(t, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {tag("FAPI")}}),
				"invalid_request", ""},
			{"a client assertion signed with RS256",
				post(t, "/bc-authorize", authenticated(url.Values{"request": {sign(t, key, requestObject(tag("FAPI"), now, now.Add(10*time.Minute)))}}, assertion(rsaJWK, e.srv.URL))),
				"invalid_client", "RS256"},
		}
		for _, tc := range cases {
			status := http.StatusBadRequest
			if tc.code == "invalid_client" {
				status = http.StatusUnauthorized
			}
			checkError(t, "/bc-authorize: "+tc.name, tc.r, status, tc.code)
			if d := tc.r.Str("error_description"); !strings.Contains(d, tc.desc) {
				t.Errorf("/bc-authorize: %s: error_description = %q, want it to contain %q", tc.name, d, tc.desc)
			}
		}
	})
}

// jsonStrings returns a decoded JSON array of strings.
func jsonStrings(v any) []string {
	arr, _ := v.([]any)
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
