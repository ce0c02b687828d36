package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestBCAuthorizeResources: repeated resource parameters and audience, in
// the form or in a request object (a string or an array claim), are stored
// on the request; a value off the client's list is a 400 invalid_target
// naming it, and so are more than ciba.MaxResources values together (as
// at the device authorization endpoint, TestDeviceTooManyResources).
func TestBCAuthorizeResources(t *testing.T) {
	st, srv := rarServer(t)
	obj, _ := json.Marshal(map[string]any{"scope": "openid", "login_hint": "alice", "resource": []string{"https://api.example/", "https://pay.example/"}})
	one, _ := json.Marshal(map[string]any{"scope": "openid", "login_hint": "alice", "resource": "https://pay.example/", "audience": "my-api"})
	eleven := slices.Repeat([]string{"https://api.example/"}, ciba.MaxResources+1)
	manyObj, _ := json.Marshal(map[string]any{"scope": "openid", "login_hint": "alice", "resource": eleven})
	for name, tc := range map[string]struct {
		form url.Values
		want []string
	}{
		"form": {url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "resource": {"https://api.example/", "https://pay.example/"}, "audience": {"my-api"}},
			[]string{"https://api.example/", "https://pay.example/", "my-api"}},
		"empty audience":        {url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "audience": {""}}, nil},
		"request object array":  {url.Values{"request": {string(obj)}}, []string{"https://api.example/", "https://pay.example/"}},
		"request object string": {url.Values{"request": {string(one)}}, []string{"https://pay.example/", "my-api"}},
	} {
		t.Run(name, func(t *testing.T) {
			a := limPost(t, srv, PathBCAuthz, "res", tc.form, nil)
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			id, _ := a.body["auth_req_id"].(string)
			r, err := st.GetRequest(context.Background(), id)
			if err != nil || !slices.Equal(r.Resources, tc.want) {
				t.Fatalf("stored resources %q (%v), want %q", r.Resources, err, tc.want)
			}
		})
	}
	for name, tc := range map[string]struct {
		client string
		form   url.Values
		code   string
		desc   string
	}{
		"off the list":       {"res", url.Values{"resource": {"https://other.example/"}}, "invalid_target", "https://other.example/"},
		"fragment":           {"res", url.Values{"resource": {"https://api.example/#f"}}, "invalid_target", "has a fragment"},
		"client without any": {"pay", url.Values{"audience": {"my-api"}}, "invalid_target", "its resources list is empty"},
		"11 resources":       {"res", url.Values{"resource": eleven}, "invalid_target", "at most 10 resource and audience values are allowed together"},
		"10 resources and an audience": {"res", url.Values{"resource": eleven[:ciba.MaxResources], "audience": {"my-api"}}, "invalid_target",
			"at most 10 resource and audience values are allowed together"},
		"11 resources in a request object": {"res", url.Values{"request": {string(manyObj)}}, "invalid_target", "at most 10 resource and audience values are allowed together"},
		"beside a request object": {"res", url.Values{"request": {string(obj)}, "resource": {"https://api.example/"}}, "invalid_request",
			"must be inside the signed request object"},
		"claim not a string": {"res", url.Values{"request": {`{"scope":"openid","login_hint":"alice","resource":[1]}`}}, "invalid_request",
			"resource must be a string or an array of strings"},
	} {
		t.Run(name, func(t *testing.T) {
			form := tc.form
			if !form.Has("request") {
				form.Set("scope", "openid")
				form.Set("login_hint", "alice")
			}
			a := limPost(t, srv, PathBCAuthz, tc.client, form, nil)
			desc, _ := a.body["error_description"].(string)
			if a.status != http.StatusBadRequest || a.body["error"] != tc.code || !strings.Contains(desc, tc.desc) {
				t.Fatalf("got %d %s; want 400 %s containing %q", a.status, a.raw, tc.code, tc.desc)
			}
		})
	}
}

// TestTokenAliasAndSlowDownRetryAfter: the token endpoint answers at a
// configured alias (Auth0-style clients post to /oauth/token) as at /token,
// a path that is no alias is not found, and a poll's slow_down carries
// Retry-After (the interval as grown by the slow_down step: 1 + 5 s).
func TestTokenAliasAndSlowDownRetryAfter(t *testing.T) {
	_, srv := rarServerWith(t, func(s *Server) {
		s.TokenAliases = []string{"/oauth/token"}
	})
	a := limPost(t, srv, PathBCAuthz, "res", aliceForm, nil)
	id, _ := a.body["auth_req_id"].(string)
	if a.status != http.StatusOK || id == "" {
		t.Fatalf("bc-authorize: %d %s", a.status, a.raw)
	}
	poll := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {id}}
	first := limPost(t, srv, "/oauth/token", "res", poll, nil)
	if first.status != http.StatusBadRequest || first.body["error"] != "authorization_pending" || first.retryAfter != "" {
		t.Fatalf("first poll at the alias: %d %s (Retry-After %q); want authorization_pending without Retry-After", first.status, first.raw, first.retryAfter)
	}
	// The clock stands still: the next poll comes before the interval.
	second := limPost(t, srv, PathToken, "res", poll, nil)
	if second.status != http.StatusBadRequest || second.body["error"] != "slow_down" || second.retryAfter != "6" {
		t.Fatalf("early poll: %d %s (Retry-After %q); want slow_down with Retry-After 6", second.status, second.raw, second.retryAfter)
	}
	if other := limPost(t, srv, "/oauth/other", "res", poll, nil); other.status != http.StatusNotFound {
		t.Fatalf("a path that is no alias: %d %s; want 404", other.status, other.raw)
	}
}
