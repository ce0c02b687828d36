package e2e

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestErrorAnswers checks the HTTP-level error answers: status, JSON body
// with "error", Cache-Control: no-store, and WWW-Authenticate where due.
func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	e := start(t)
	poll := testutil.DemoPoll
	post := poll
	post.Post = true
	wrongBasic := testutil.Client{ID: poll.ID, Secret: "wrong-secret"}
	wrongPost := testutil.Client{ID: poll.ID, Secret: "wrong-secret", Post: true}
	unknown := testutil.Client{ID: "no-such-client", Secret: "whatever"}
	okAuthz := url.Values{"scope": {"openid"}, "login_hint": {"alice"}}
	okToken := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"unknown"}}

	form := func(t *testing.T, endpoint string, c testutil.Client, f url.Values) *testutil.Response {
		t.Helper()
		r, err := testutil.PostForm(ctx(t), e.url(endpoint), c, f)
		if err != nil {
			t.Fatalf("POST %s: %v", endpoint, err)
		}
		return r
	}
	raw := func(t *testing.T, endpoint, contentType, body string, c testutil.Client) *testutil.Response {
		t.Helper()
		h := http.Header{}
		if c.ID != "" {
			req, _ := http.NewRequest(http.MethodPost, "http://x", nil)
			req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
			h.Set("Authorization", req.Header.Get("Authorization"))
		}
		r, err := testutil.PostRaw(ctx(t), e.url(endpoint), contentType, body, h)
		if err != nil {
			t.Fatalf("POST %s: %v", endpoint, err)
		}
		return r
	}
	challenge := func(t *testing.T, what string, r *testutil.Response) {
		t.Helper()
		if wa := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(strings.ToLower(wa), "basic") {
			t.Errorf("%s: WWW-Authenticate = %q, want a Basic challenge (RFC 6749 §5.2: the client used HTTP Basic)", what, wa)
		}
	}

	t.Run("client authentication", func(t *testing.T) {
		for _, ep := range []string{"/bc-authorize", "/token"} {
			f := okAuthz
			if ep == "/token" {
				f = okToken
			}
			r := form(t, ep, wrongBasic, f)
			checkError(t, ep+" wrong secret (Basic)", r, http.StatusUnauthorized, "invalid_client")
			challenge(t, ep+" wrong secret (Basic)", r)

			r = form(t, ep, unknown, f)
			checkError(t, ep+" unknown client (Basic)", r, http.StatusUnauthorized, "invalid_client")
			challenge(t, ep+" unknown client (Basic)", r)

			checkError(t, ep+" wrong secret (client_secret_post)", form(t, ep, wrongPost, f), http.StatusUnauthorized, "invalid_client")
			checkError(t, ep+" no client authentication", form(t, ep, testutil.Client{}, f), http.StatusUnauthorized, "invalid_client")
		}
		// Both Basic and client_secret_post at once (RFC 6749 §2.3: one method only).
		f := url.Values{"client_id": {poll.ID}, "client_secret": {poll.Secret}}
		for k, v := range okToken {
			f[k] = v
		}
		r := form(t, "/token", poll, f)
		if r.Status != http.StatusBadRequest && r.Status != http.StatusUnauthorized {
			t.Errorf("/token with two authentication methods: got %s, want 400 invalid_request or 401 invalid_client", r)
		}
	})

	t.Run("repeated parameter", func(t *testing.T) {
		r := raw(t, "/bc-authorize", "application/x-www-form-urlencoded", "scope=openid&scope=openid+email&login_hint=alice", poll)
		checkError(t, "/bc-authorize with scope twice", r, http.StatusBadRequest, "invalid_request")
		r = raw(t, "/token", "application/x-www-form-urlencoded",
			"grant_type="+url.QueryEscape(testutil.GrantCIBA)+"&grant_type=refresh_token&auth_req_id=x", poll)
		checkError(t, "/token with grant_type twice", r, http.StatusBadRequest, "invalid_request")
	})

	t.Run("content type", func(t *testing.T) {
		r := raw(t, "/token", "application/json", `{"grant_type":"`+testutil.GrantCIBA+`","auth_req_id":"x"}`, poll)
		checkError(t, "/token with a JSON body", r, http.StatusBadRequest, "invalid_request")
		r = raw(t, "/bc-authorize", "text/plain", "scope=openid&login_hint=alice", poll)
		checkError(t, "/bc-authorize with text/plain", r, http.StatusBadRequest, "invalid_request")
		r = raw(t, "/bc-authorize", "", "scope=openid&login_hint=alice", poll)
		checkError(t, "/bc-authorize without Content-Type", r, http.StatusBadRequest, "invalid_request")
	})

	t.Run("grant type", func(t *testing.T) {
		checkError(t, "unknown grant_type", form(t, "/token", poll, url.Values{"grant_type": {"urn:example:nope"}}), http.StatusBadRequest, "unsupported_grant_type")
		checkError(t, "authorization_code grant", form(t, "/token", poll, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}), http.StatusBadRequest, "unsupported_grant_type")
		checkError(t, "no grant_type", form(t, "/token", poll, url.Values{"auth_req_id": {"x"}}), http.StatusBadRequest, "invalid_request")
	})

	t.Run("token request", func(t *testing.T) {
		e := e.in(t)
		checkError(t, "unknown auth_req_id", e.token(poll, "no-such-auth-req-id"), http.StatusBadRequest, "invalid_grant")
		checkError(t, "no auth_req_id", form(t, "/token", post, url.Values{"grant_type": {testutil.GrantCIBA}}), http.StatusBadRequest, "invalid_request")
		checkError(t, "unknown refresh_token", form(t, "/token", poll, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"nope"}}), http.StatusBadRequest, "invalid_grant")

		// Another client's auth_req_id is unknown to this one.
		req := e.mustAuthorize(poll, "Other")
		e.answer(req, "approved")
		checkError(t, "auth_req_id of another client", e.token(testutil.DemoPing, req.AuthReqID), http.StatusBadRequest, "invalid_grant")
		// ... and that attempt did not use it up.
		checkTokens(t, "the owner's /token after another client tried", e.token(poll, req.AuthReqID))
	})

	t.Run("authentication request", func(t *testing.T) {
		cases := []struct {
			name   string
			c      testutil.Client
			f      url.Values
			status int
			code   string
		}{
			{"no hint", poll, url.Values{"scope": {"openid"}}, 400, "invalid_request"},
			{"two hints", poll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "id_token_hint": {"x.y.z"}}, 400, "invalid_request"},
			{"no scope", poll, url.Values{"login_hint": {"alice"}}, 400, "invalid_request"},
			{"scope without openid", poll, url.Values{"scope": {"email"}, "login_hint": {"alice"}}, 400, "invalid_scope"},
			{"unknown user", poll, url.Values{"scope": {"openid"}, "login_hint": {"mallory"}}, 400, "unknown_user_id"},
			{"wrong user_code", poll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "user_code": {"9999"}}, 400, "invalid_user_code"},
			{"binding_message with a newline", poll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {"a\nb"}}, 400, "invalid_binding_message"},
			{"ping without client_notification_token", testutil.DemoPing, url.Values{"scope": {"openid"}, "login_hint": {"alice"}}, 400, "invalid_request"},
			{"request_uri", poll, url.Values{"request_uri": {"urn:example:x"}}, 400, "invalid_request"},
		}
		for _, tc := range cases {
			checkError(t, "/bc-authorize "+tc.name, form(t, "/bc-authorize", tc.c, tc.f), tc.status, tc.code)
		}
		r := form(t, "/bc-authorize", poll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "user_code": {"1234"}})
		if r.Status != http.StatusOK {
			t.Errorf("/bc-authorize with alice's user_code: got %s, want 200", r)
		}
	})

	t.Run("denied", func(t *testing.T) {
		e := e.in(t)
		req := e.mustAuthorize(poll, "Deny")
		m := e.answer(req, "denied")
		checkError(t, "/token after a denial", e.token(poll, req.AuthReqID), http.StatusBadRequest, "access_denied")
		// The decision is final: approving now must not succeed.
		r, err := testutil.Callback(ctx(t), m, "approved")
		if err != nil {
			t.Fatal(err)
		}
		if r.Status/100 == 2 {
			t.Errorf("approving an already denied request: got %s, want an error", r)
		}
	})

	t.Run("callback", func(t *testing.T) {
		e := e.in(t)
		req := e.mustAuthorize(poll, "Callback")
		m := e.message(req)
		invalidToken := func(what, token string) {
			t.Helper()
			r, err := testutil.CallbackWith(ctx(t), m.CallbackURL, token, "approved")
			if err != nil {
				t.Fatal(err)
			}
			checkError(t, what, r, http.StatusUnauthorized, "invalid_token")
			if wa := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(strings.ToLower(wa), "bearer") {
				t.Errorf("%s: WWW-Authenticate = %q, want a Bearer challenge (RFC 6750 §3)", what, wa)
			}
		}
		invalidToken("callback with a wrong bearer", "wrong"+m.Token)
		invalidToken("callback with a well-formed random bearer", notificationToken())
		invalidToken("callback without a bearer", "")

		// A bad body with the right bearer.
		h := http.Header{"Authorization": {"Bearer " + m.Token}}
		r, err := testutil.PostRaw(ctx(t), m.CallbackURL, "application/json", `{"status":"maybe"}`, h)
		if err != nil {
			t.Fatal(err)
		}
		checkError(t, "callback with status maybe", r, http.StatusBadRequest, "invalid_request")

		// None of that touched the request: the right bearer still approves it.
		if r, err = testutil.Callback(ctx(t), m, "approved"); err != nil || r.Status != http.StatusNoContent {
			t.Fatalf("callback approve after the failed attempts: %v %v", r, err)
		}
		checkTokens(t, "/token after approval", e.token(poll, req.AuthReqID))
	})

	t.Run("unknown endpoint", func(t *testing.T) {
		e := e.in(t)
		r, err := testutil.Get(ctx(t), e.url("/no-such-endpoint"))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusNotFound {
			t.Errorf("GET /no-such-endpoint: got %s, want 404", r)
		}
	})
}

// TestDiscovery checks the metadata CIBA clients rely on (CIBA §4, OIDC
// Discovery §3) and the JWKS it points to.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := start(t)
	r, err := testutil.Get(ctx(t), e.url("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusOK || r.JSON == nil {
		t.Fatalf("discovery: got %s, want 200 with a JSON object", r)
	}
	d := r.JSON
	strs := func(k string) []string {
		arr, ok := d[k].([]any)
		if !ok {
			t.Errorf("discovery %s = %v, want a JSON array", k, d[k])
			return nil
		}
		var out []string
		for _, v := range arr {
			s, _ := v.(string)
			out = append(out, s)
		}
		return out
	}
	wantURL := map[string]string{
		"issuer":                              e.srv.URL,
		"backchannel_authentication_endpoint": e.url("/bc-authorize"),
		"token_endpoint":                      e.url("/token"),
		"jwks_uri":                            e.url("/jwks"),
	}
	for k, want := range wantURL {
		if got, _ := d[k].(string); got != want {
			t.Errorf("discovery %s = %v, want %q", k, d[k], want)
		}
	}
	modes := strs("backchannel_token_delivery_modes_supported")
	for _, m := range []string{"poll", "ping", "push"} {
		if !slices.Contains(modes, m) {
			t.Errorf("backchannel_token_delivery_modes_supported = %v, lacks %q", modes, m)
		}
	}
	algs := strs("backchannel_authentication_request_signing_alg_values_supported")
	if len(algs) == 0 {
		t.Errorf("backchannel_authentication_request_signing_alg_values_supported is empty")
	}
	for _, a := range algs {
		if a == "none" || strings.HasPrefix(a, "HS") {
			t.Errorf("backchannel_authentication_request_signing_alg_values_supported lists %q; CIBA §4 forbids none and symmetric algorithms", a)
		}
	}
	if _, ok := d["backchannel_user_code_parameter_supported"].(bool); !ok {
		t.Errorf("backchannel_user_code_parameter_supported = %v, want a boolean", d["backchannel_user_code_parameter_supported"])
	}
	if !slices.Contains(strs("grant_types_supported"), testutil.GrantCIBA) {
		t.Errorf("grant_types_supported = %v, lacks %s", d["grant_types_supported"], testutil.GrantCIBA)
	}
	auth := strs("token_endpoint_auth_methods_supported")
	for _, m := range []string{"client_secret_basic", "client_secret_post"} {
		if !slices.Contains(auth, m) {
			t.Errorf("token_endpoint_auth_methods_supported = %v, lacks %s", auth, m)
		}
	}
	// Required by OpenID Connect Discovery 1.0 §3.
	for _, k := range []string{"id_token_signing_alg_values_supported", "subject_types_supported", "response_types_supported"} {
		if _, ok := d[k].([]any); !ok {
			t.Errorf("discovery lacks %s (REQUIRED by OpenID Connect Discovery §3)", k)
		}
	}
	if slices.Contains(strs("id_token_signing_alg_values_supported"), "none") {
		t.Errorf("id_token_signing_alg_values_supported lists none")
	}

	j, err := testutil.Get(ctx(t), e.url("/jwks"))
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := j.JSON["keys"].([]any)
	if j.Status != http.StatusOK || len(keys) == 0 {
		t.Errorf("GET /jwks: got %s, want 200 with at least one key", j)
	}
	for _, k := range keys {
		km, _ := k.(map[string]any)
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := km[private]; ok {
				t.Errorf("/jwks publishes private key material %q: %v", private, km)
			}
		}
	}
}

// TestErrorDescriptionCharset: RFC 6749 §5.2 (which CIBA §11 and §13 use)
// says error_description "MUST NOT include characters outside the set
// %x20-21 / %x23-5B / %x5D-7E": printable ASCII without '"' and '\'.
func TestErrorDescriptionCharset(t *testing.T) {
	t.Parallel()
	e := start(t)
	poll := testutil.DemoPoll
	cases := []struct {
		name, endpoint string
		form           url.Values
		raw            string
		header         string // Authorization of a raw request; Basic poll when empty
	}{
		{name: "repeated parameter", endpoint: "/bc-authorize", raw: "scope=openid&scope=email&login_hint=alice"},
		{name: "unknown grant_type", endpoint: "/token", form: url.Values{"grant_type": {"foo"}}},
		{name: "non-ASCII grant_type", endpoint: "/token", form: url.Values{"grant_type": {strings.Repeat("é", 40)}}},
		{name: "binding_message with a tab", endpoint: "/bc-authorize", form: url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {"a\tb"}}},
		{name: "scope without openid", endpoint: "/bc-authorize", form: url.Values{"scope": {"email"}, "login_hint": {"alice"}}},
		{name: "malformed Basic credentials", endpoint: "/token", raw: "grant_type=x", header: "Basic !!!"},
		{name: "long malformed requested_expiry", endpoint: "/bc-authorize", form: url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "requested_expiry": {strings.Repeat("x", 60)}}},
	}
	for _, tc := range cases {
		var r *testutil.Response
		var err error
		if tc.raw != "" {
			h := http.Header{}
			req, _ := http.NewRequest(http.MethodPost, "http://x", nil)
			req.SetBasicAuth(poll.ID, poll.Secret)
			h.Set("Authorization", req.Header.Get("Authorization"))
			if tc.header != "" {
				h.Set("Authorization", tc.header)
			}
			r, err = testutil.PostRaw(ctx(t), e.url(tc.endpoint), "application/x-www-form-urlencoded", tc.raw, h)
		} else {
			r, err = testutil.PostForm(ctx(t), e.url(tc.endpoint), poll, tc.form)
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.Status/100 != 4 || r.Str("error") == "" {
			t.Errorf("%s: got %s, want a 4xx error", tc.name, r)
			continue
		}
		desc := r.Str("error_description")
		var bad []string
		for _, c := range desc {
			if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') && !slices.Contains(bad, string(c)) {
				bad = append(bad, string(c))
			}
		}
		if len(bad) > 0 {
			t.Errorf("%s: error_description %q contains %q, outside the characters RFC 6749 §5.2 allows (%%x20-21 / %%x23-5B / %%x5D-7E)", tc.name, desc, bad)
		}
	}
}
