package abuse

// The smaller points of issue #15, on the built binary with the shipped
// configurations unchanged: repeated JSON members at the callback, readable
// error descriptions, refresh token reuse, and the metrics kept off the
// listener clients reach.

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// smallApproved starts a request for alice as demoPoll with binding
// message binding on e, approves it at the callback and returns the token
// response.
func smallApproved(t *testing.T, e *env, binding string) *testutil.Response {
	t.Helper()
	id := e.mustAuthorize(demoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}})
	m, err := e.hook.WaitBinding(ctx(t), binding)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := testutil.Callback(ctx(t), m, "approved"); err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("approve %q: %v %v", binding, r, err)
	}
	r := smallToken(t, e, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {id}})
	if r.Status != http.StatusOK || r.Str("refresh_token") == "" {
		t.Fatalf("tokens of %q: %s, want 200 with a refresh_token", binding, r)
	}
	return r
}

// smallToken POSTs form to e's token endpoint as demoPoll.
func smallToken(t *testing.T, e *env, form url.Values) *testutil.Response {
	t.Helper()
	r, err := testutil.PostForm(ctx(t), e.url("/token"), demoPoll, form)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return r
}

// smallRefresh redeems refresh token rt at e as demoPoll.
func smallRefresh(t *testing.T, e *env, rt string) *testutil.Response {
	t.Helper()
	return smallToken(t, e, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// smallUserinfo GETs /userinfo of e with access token at as a bearer token.
func smallUserinfo(t *testing.T, e *env, at string) *testutil.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, e.url("/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+at)
	r, err := testutil.Do(req)
	if err != nil {
		t.Fatalf("GET /userinfo: %v", err)
	}
	return r
}

// TestCallbackRepeatedMembersAreRefused: the authentication device's
// answer {"status":"denied","status":"approved"} was read by a parser that
// keeps the last copy and approved. A parallel burst of such answers (and
// of other repeated members) is refused, every one, with invalid_request,
// and the request stays undecided: the device's real answer afterwards is
// the one that counts. examples/quickstart.yaml, default limits (40
// refusals stay under callback_failures_per_ip's 60 a minute, so the last,
// legitimate callback is not held back by the limit under test elsewhere).
func TestCallbackRepeatedMembersAreRefused(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	id := e.mustAuthorize(demoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {"dup 1"}})
	m, err := e.hook.WaitBinding(ctx(t), "dup 1")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(m.Raw, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["acr_values"]; ok {
		t.Errorf("the webhook message has acr_values though the client sent none; docs/webhook.md says it is left out: %s", m.Raw)
	}

	bodies := []string{
		`{"status":"denied","status":"approved"}`,
		`{"status":"approved","status":"approved"}`,
		`{"status":"denied","reason":"a","reason":"b","status":"approved"}`,
		`{"status":"approved","status":"denied"}`,
	}
	h := http.Header{"Authorization": {"Bearer " + m.Token}}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			r, err := testutil.PostRaw(ctx(t), m.CallbackURL, "application/json", bodies[i%len(bodies)], h)
			switch {
			case err != nil:
				t.Errorf("callback: %v", err)
			case r.Status != http.StatusBadRequest || r.Str("error") != "invalid_request" || !strings.Contains(r.Str("error_description"), "more than once"):
				t.Errorf("callback %s: %s, want 400 invalid_request naming the repeated member", bodies[i%len(bodies)], r)
			}
		})
	}
	wg.Wait()
	// Nothing was decided: the device's answer now is the first decision.
	if r, err := testutil.Callback(ctx(t), m, "denied"); err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("the device's real answer after the refused ones: %v %v, want 204", r, err)
	}
	if r := smallToken(t, e, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {id}}); r.Str("error") != "access_denied" {
		t.Fatalf("poll after the denial: %s, want access_denied", r)
	}
}

// TestErrorDescriptionsNameCharactersReadably: a binding_message with a
// character outside the allowed set was refused with "binding_message
// contains" and three apostrophes (a double quote made an apostrophe
// between apostrophes), and the list of allowed marks ended in "??". The character is now named
// by its code point, and the description stays within RFC 6749 §5.2's
// characters.
func TestErrorDescriptionsNameCharactersReadably(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	for msg, want := range map[string]string{
		`Pay "10"`: "binding_message contains U+0022;",
		"Pay 10 ¥": "binding_message contains U+00A5;",
		`a\b`:      "binding_message contains U+005C;",
	} {
		r := e.authorize(demoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {msg}})
		desc := r.Str("error_description")
		if r.Status != http.StatusBadRequest || r.Str("error") != "invalid_binding_message" || !strings.HasPrefix(desc, want) {
			t.Errorf("binding_message %q: %s, want invalid_binding_message starting %q", msg, r, want)
		}
		if !strings.HasSuffix(desc, "=$ U+20AC U+00A3") || strings.Contains(desc, "?'") || strings.Contains(desc, "'''") {
			t.Errorf("binding_message %q: description %q is mangled", msg, desc)
		}
		for i := 0; i < len(desc); i++ {
			if c := desc[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
				t.Errorf("description %q has %q, outside RFC 6749 §5.2's set", desc, c)
			}
		}
	}
}

// TestRefreshReuseRevokesTheFamily: RFC 9700 §4.14.2. A refresh token
// that was already rotated comes back: it is invalid_grant, and the
// family's current refresh token stops working too. On the quick start
// (embedded store) and across the two instances of examples/redis.yaml,
// where the rotation, the reuse and the current token meet different
// instances; and for a parallel burst of one token's uses: one wins, the
// rest are reuses, and the winner's new refresh token is revoked.
func TestRefreshReuseRevokesTheFamily(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, a, b *env) {
		first := smallApproved(t, a, "rt 1").Str("refresh_token")
		other := smallApproved(t, a, "rt 2").Str("refresh_token")
		second := smallRefresh(t, a, first)
		if second.Status != http.StatusOK {
			t.Fatalf("first refresh: %s", second)
		}
		current := smallRefresh(t, b, second.Str("refresh_token"))
		if current.Status != http.StatusOK {
			t.Fatalf("second refresh: %s", current)
		}
		if r := smallRefresh(t, b, first); r.Status != http.StatusBadRequest || r.Str("error") != "invalid_grant" {
			t.Fatalf("the reused refresh token: %s, want invalid_grant", r)
		}
		if r := smallRefresh(t, a, current.Str("refresh_token")); r.Status != http.StatusBadRequest || r.Str("error") != "invalid_grant" {
			t.Fatalf("the family's current refresh token after the reuse: %s, want invalid_grant", r)
		}
		if r := smallRefresh(t, a, other); r.Status != http.StatusOK {
			t.Fatalf("another grant's refresh token after the revocation: %s, want 200", r)
		}

		burst := smallApproved(t, a, "rt 3").Str("refresh_token")
		var mu sync.Mutex
		var won, wonAT []string
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				at := a
				if i%2 == 1 {
					at = b
				}
				r := smallRefresh(t, at, burst)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case r.Status == http.StatusOK:
					won = append(won, r.Str("refresh_token"))
					wonAT = append(wonAT, r.Str("access_token"))
				case r.Str("error") != "invalid_grant":
					t.Errorf("a losing refresh: %s, want invalid_grant", r)
				}
			})
		}
		wg.Wait()
		if len(won) != 1 {
			t.Fatalf("%d of 20 parallel refreshes of one token got tokens, want 1", len(won))
		}
		if r := smallRefresh(t, b, won[0]); r.Str("error") != "invalid_grant" {
			t.Fatalf("the burst winner's refresh token: %s, want invalid_grant (its family saw reuses)", r)
		}
		// The family's access tokens are revoked with it (issue #18):
		// userinfo refuses the winner's on either instance.
		for _, e := range []*env{a, b} {
			if r := smallUserinfo(t, e, wonAT[0]); r.Status != http.StatusUnauthorized {
				t.Fatalf("userinfo with the burst winner's access token: %s, want 401 (its family is revoked)", r)
			}
		}
		// A refresh token revoked at /revoke (RFC 7009) on one instance
		// no longer refreshes on the other.
		revoked := smallApproved(t, a, "rt 4")
		r, err := testutil.PostForm(ctx(t), a.url("/revoke"), demoPoll, url.Values{"token": {revoked.Str("refresh_token")}})
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("revoke: %v %v", r, err)
		}
		if r := smallRefresh(t, b, revoked.Str("refresh_token")); r.Str("error") != "invalid_grant" {
			t.Fatalf("a revoked refresh token: %s, want invalid_grant", r)
		}
		if r := smallUserinfo(t, b, revoked.Str("access_token")); r.Status != http.StatusUnauthorized {
			t.Fatalf("userinfo with the revoked family's access token: %s, want 401", r)
		}
	}
	t.Run("quickstart", func(t *testing.T) {
		t.Parallel()
		e := startQuickstart(t)
		check(t, e, e)
	})
	t.Run("redis pair", func(t *testing.T) {
		t.Parallel()
		p := startRedisPair(t)
		check(t, p[0], p[1])
	})
}

// TestMetricsStayOffTheMainListener: the metrics name every client_id and
// count its requests and failures. The shipped configurations serve them
// on a listener of their own (metrics.listen), with /healthz and /readyz,
// and not on the listener clients reach.
func TestMetricsStayOffTheMainListener(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, e *env) {
		e.mustAuthorize(demoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}})
		if r, err := testutil.Get(ctx(t), e.url("/metrics")); err != nil || r.Status != http.StatusNotFound {
			t.Errorf("GET /metrics on the main listener: %v %v, want 404", r, err)
		}
		r, err := testutil.Get(ctx(t), e.srv.MetricsURL+"/metrics")
		if err != nil || r.Status != http.StatusOK || !strings.Contains(string(r.Body), `client="demo-poll"`) {
			t.Fatalf("GET /metrics on metrics.listen: %v %v, want 200 with the client's counts", r, err)
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			if r, err := testutil.Get(ctx(t), e.srv.MetricsURL+path); err != nil || r.Status != http.StatusOK {
				t.Errorf("GET %s on metrics.listen: %v %v, want 200", path, r, err)
			}
		}
		if r, err := testutil.PostForm(ctx(t), e.srv.MetricsURL+"/bc-authorize", demoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}}); err != nil || r.Status != http.StatusNotFound {
			t.Errorf("POST /bc-authorize on metrics.listen: %v %v, want 404", r, err)
		}
	}
	t.Run("quickstart", func(t *testing.T) {
		t.Parallel()
		check(t, startQuickstart(t))
	})
	t.Run("redis pair", func(t *testing.T) {
		t.Parallel()
		for _, e := range startRedisPair(t) {
			check(t, e)
		}
	})
}
