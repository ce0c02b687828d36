package abuse

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// The request size bounds (docs/configuration.md, "Request size bounds"),
// as a client sees them. They are constants of package ciba and httpapi;
// restated here so that a change is a visible change of the contract.
const (
	sizesMaxScopes      = 50
	sizesMaxScopeLen    = 2048
	sizesMaxACR         = 10
	sizesMaxLoginHint   = 512
	sizesMaxTokenHint   = 16 << 10
	sizesMaxUserCode    = 128
	sizesMaxBinding     = 1024
	sizesMaxNotifyToken = 1024
	sizesMaxParams      = 50
	sizesMaxParamValue  = 16 << 10
	sizesMaxIDValue     = 1 << 10
	sizesMaxForm        = 64 << 10
)

// sizesWords is n distinct space-separated values prefixN, after first.
func sizesWords(first, prefix string, n int) string {
	v := []string{}
	if first != "" {
		v = append(v, first)
	}
	for i := len(v); i < n; i++ {
		v = append(v, prefix+strconv.Itoa(i))
	}
	return strings.Join(v, " ")
}

// sizesStored is the number of requests in the quick start's store, as the
// operator command `cibaproxy requests list --json` reports it.
func sizesStored(t *testing.T, e *env) int {
	t.Helper()
	cmd := exec.CommandContext(ctx(t), binary, "requests", "list", "--json", "--config", example("quickstart.yaml"))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CIBAPROXY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "CIBAPROXY_ISSUER="+e.srv.URL, "CIBAPROXY_DATA="+e.srv.DataDir,
		"CIBAPROXY_WEBHOOK_URL="+e.hook.URL, "CIBAPROXY_DEMO_NOTIFY_URL="+e.notify.URL)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cibaproxy requests list: %v\n%s", err, stderr.String())
	}
	var body struct {
		Requests []json.RawMessage `json:"requests"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &body); err != nil {
		t.Fatalf("requests list --json: %v\n%s", err, stdout.String())
	}
	return len(body.Requests)
}

// TestRequestSizes sends examples/quickstart.yaml, at its defaults, requests
// with every list and string over its bound, in parallel: each is
// invalid_request naming the parameter and the bound, and nothing is
// stored or sent to the user.
func TestRequestSizes(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	demoPing := testutil.Client{ID: "demo-ping", Secret: "demo-ping-secret"}
	long := func(n int) string { return strings.Repeat("a", n) }
	base := func(kv ...string) url.Values {
		f := url.Values{"scope": {"openid"}, "login_hint": {"alice"}}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	many := base()
	for i := range sizesMaxParams {
		many.Set("x"+strconv.Itoa(i), "1")
	}
	type attempt struct {
		name   string
		client testutil.Client
		path   string
		form   url.Values
		want   []string // in error_description
	}
	attempts := []attempt{
		{"too many scope values", demoPoll, "/bc-authorize", base("scope", sizesWords("openid", "s", sizesMaxScopes+1)), []string{"scope", strconv.Itoa(sizesMaxScopes)}},
		{"the scope parameter too long", demoPoll, "/bc-authorize", base("scope", "openid "+strings.Repeat("openid ", sizesMaxScopeLen/7)), []string{"scope", strconv.Itoa(sizesMaxScopeLen)}},
		{"too many acr_values", demoPoll, "/bc-authorize", base("acr_values", sizesWords("", "urn:acr:", sizesMaxACR+1)), []string{"acr_values", strconv.Itoa(sizesMaxACR)}},
		{"login_hint too long", demoPoll, "/bc-authorize", base("login_hint", long(sizesMaxLoginHint+1)), []string{"login_hint", strconv.Itoa(sizesMaxLoginHint)}},
		{"id_token_hint too long", demoPoll, "/bc-authorize", url.Values{"scope": {"openid"}, "id_token_hint": {long(sizesMaxTokenHint + 1)}}, []string{"id_token_hint", strconv.Itoa(sizesMaxTokenHint)}},
		{"login_hint_token too long", demoPoll, "/bc-authorize", url.Values{"scope": {"openid"}, "login_hint_token": {long(sizesMaxTokenHint + 1)}}, []string{"login_hint_token", strconv.Itoa(sizesMaxTokenHint)}},
		{"binding_message too long", demoPoll, "/bc-authorize", base("binding_message", long(sizesMaxBinding+1)), []string{"binding_message", strconv.Itoa(sizesMaxBinding)}},
		{"user_code too long", demoPoll, "/bc-authorize", base("user_code", long(sizesMaxUserCode+1)), []string{"user_code", strconv.Itoa(sizesMaxUserCode)}},
		{"client_notification_token too long", demoPing, "/bc-authorize", base("client_notification_token", long(sizesMaxNotifyToken+1)), []string{"client_notification_token", strconv.Itoa(sizesMaxNotifyToken)}},
		{"a request object too long", demoPoll, "/bc-authorize", url.Values{"request": {long(sizesMaxParamValue + 1)}}, []string{"request", strconv.Itoa(sizesMaxParamValue)}},
		{"too many parameters", demoPoll, "/bc-authorize", many, []string{strconv.Itoa(sizesMaxParams)}},
		{"an auth_req_id too long", demoPoll, "/token", url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {long(sizesMaxIDValue + 1)}}, []string{"auth_req_id", strconv.Itoa(sizesMaxIDValue)}},
		{"a body over the form bound", demoPoll, "/bc-authorize", base("junk", long(sizesMaxForm)), []string{strconv.Itoa(sizesMaxForm)}},
	}
	// Each attempt 10 times, all at once.
	const copies = 10
	type result struct {
		a   attempt
		r   *testutil.Response
		err error
	}
	results := make(chan result, len(attempts)*copies)
	for _, a := range attempts {
		for range copies {
			go func() {
				r, err := testutil.PostForm(ctx(t), e.url(a.path), a.client, a.form)
				results <- result{a, r, err}
			}()
		}
	}
	for range len(attempts) * copies {
		res := <-results
		if res.err != nil {
			t.Errorf("%s: %v", res.a.name, res.err)
			continue
		}
		r := res.r
		if r.Status != http.StatusBadRequest || r.Str("error") != "invalid_request" {
			t.Errorf("%s: %s, want 400 invalid_request", res.a.name, r)
			continue
		}
		for _, w := range res.a.want {
			if !strings.Contains(r.Str("error_description"), w) {
				t.Errorf("%s: error_description %q does not name %q", res.a.name, r.Str("error_description"), w)
			}
		}
	}
	if n := sizesStored(t, e); n != 0 {
		t.Errorf("%d requests stored after the refused ones, want none", n)
	}
	if m := e.hook.Messages(); len(m) != 0 {
		t.Errorf("the user was sent %d messages, want none", len(m))
	}
	// At the bounds, the request passes; its lists are stored once each.
	r := e.authorize(demoPoll, base("scope", sizesWords("openid", "s", sizesMaxScopes), "acr_values", sizesWords("", "urn:acr:", sizesMaxACR),
		"binding_message", "Code 1234"))
	if r.Status != http.StatusOK {
		t.Fatalf("a request at the bounds: %s", r)
	}
	if n := sizesStored(t, e); n != 1 {
		t.Errorf("%d requests stored, want 1", n)
	}
}

// TestLocalScopePolicy checks the scope policy of the local issuer with
// examples/quickstart.yaml (no clients[].scopes, no upstream.local.scopes):
// scopes other than the standard OpenID Connect ones are dropped from the
// request, so they never reach the user's screen or the tokens, and the
// token response's scope says what was granted (RFC 6749 §3.3).
func TestLocalScopePolicy(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	id := e.mustAuthorize(demoPoll, url.Values{
		"scope": {"openid email admin payments:write " + sizesWords("", "junk", 40)}, "login_hint": {"alice"}, "binding_message": {"Scopes 1"},
	})
	m, err := e.hook.WaitBinding(ctx(t), "Scopes 1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Scope != "openid email" {
		t.Errorf("the user is shown scope %q, want %q", m.Scope, "openid email")
	}
	if r, err := testutil.Callback(ctx(t), m, "approved"); err != nil || r.Status != http.StatusNoContent {
		t.Fatalf("approve: %v %v", r, err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		r, err := testutil.PostForm(ctx(t), e.url("/token"), demoPoll, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {id}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == http.StatusOK {
			if got := r.Str("scope"); got != "openid email" {
				t.Errorf("token response scope %q, want %q", got, "openid email")
			}
			return
		}
		if code := r.Str("error"); (code != "slow_down" && code != "authorization_pending") || time.Now().After(deadline) {
			t.Fatalf("poll: %s", r)
		}
		// The quick start's interval is 5 s; slow_down adds 5 s.
		wait := 5 * time.Second
		if r.Str("error") == "slow_down" {
			wait = 10 * time.Second
		}
		time.Sleep(wait)
	}
}
