package abuse

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// The quick start's demo clients and user (examples/quickstart.yaml).
var (
	demoPoll = testutil.Client{ID: "demo-poll", Secret: "demo-poll-secret"}
)

// env is one running cibaproxy, with the webhook receiver that plays the
// authentication device and the demo clients' notification endpoint.
type env struct {
	t      *testing.T
	srv    *testutil.Server
	hook   *testutil.Webhook
	notify *testutil.Notifier
}

func (e *env) url(path string) string { return e.srv.URL + path }

// example is the path of a shipped example configuration.
func example(name string) string {
	return filepath.Join(testutil.RepoRoot(), "examples", name)
}

// startQuickstart runs examples/quickstart.yaml unchanged, its limits at
// their defaults, on a fresh data directory.
func startQuickstart(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{
		Binary: binary, Config: example("quickstart.yaml"), DefaultLimits: true,
		WebhookURL: e.hook.URL, NotifyURL: e.notify.URL,
	})
	return e
}

// startRedisPair runs two instances of examples/redis.yaml, unchanged, on
// one fresh redis-server: the limits they keep in Redis are shared.
func startRedisPair(t *testing.T) [2]*env {
	t.Helper()
	rs := redistest.Start(t)
	hook, notify := testutil.NewWebhook(t), testutil.NewNotifier(t)
	addr, err := testutil.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + addr
	var pair [2]*env
	for i := range pair {
		o := testutil.Options{
			Binary: binary, Config: example("redis.yaml"), DefaultLimits: true,
			WebhookURL: hook.URL, NotifyURL: notify.URL,
			// Both instances name one issuer, as behind a load balancer
			// (testutil would give each its own URL; the last value of a
			// variable wins).
			Env: []string{"REDIS_ADDR=" + rs.Addr(), "CIBAPROXY_ISSUER=" + issuer},
		}
		if i == 0 {
			o.Addr = addr
		}
		pair[i] = &env{t: t, hook: hook, notify: notify, srv: testutil.Start(t, o)}
	}
	return pair
}

// The clients of examples/oidc.yaml, registered at the test IdP with the
// credentials cibaproxy uses there (their defaults in the file).
var posTerminal = testutil.Client{ID: "pos-terminal", Secret: "change-me-pos-terminal"}

// oidcEnv is examples/oidc.yaml, unchanged, in front of a real OpenID
// Provider (node-oidc-provider) this project did not write.
type oidcEnv struct {
	*env
	idp *idp.IdP
}

// startOIDC starts the test IdP with users user0 … user{n-1} (e-mail
// userN@example.com, password userN-password) and alice, and cibaproxy on
// examples/oidc.yaml pointed at it.
func startOIDC(t *testing.T, users int) *oidcEnv {
	t.Helper()
	accounts := []idp.Account{{ID: "alice", Password: "alice-password", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice", Name: "Alice"}}
	for i := range users {
		accounts = append(accounts, idp.Account{
			ID: fmt.Sprintf("user%d", i), Password: fmt.Sprintf("user%d-password", i),
			Email: fmt.Sprintf("user%d@example.com", i), EmailVerified: true, PreferredUsername: fmt.Sprintf("user%d", i),
		})
	}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(f *testutil.Federation) idp.Config {
			return idp.Config{
				Clients: []idp.Client{
					{ID: posTerminal.ID, Secret: posTerminal.Secret, RedirectURIs: []string{f.Callback}},
					{ID: "cibaproxy-callcenter", Secret: "change-me-callcenter-idp", RedirectURIs: []string{f.Callback}},
				},
				Accounts: accounts,
			}
		},
		Env: func(f *testutil.Federation) []string {
			return []string{"OIDC_ISSUER=" + f.IdP.Issuer(), "CALLCENTER_NOTIFY_URL=" + e.notify.URL}
		},
		Options: testutil.Options{
			Binary: binary, Config: example("oidc.yaml"), DefaultLimits: true,
			WebhookURL: e.hook.URL, NotifyURL: e.notify.URL,
		},
	})
	e.srv = f.Server
	return &oidcEnv{env: e, idp: f.IdP}
}

// authorize sends a backchannel authentication request as c.
func (e *env) authorize(c testutil.Client, form url.Values) *testutil.Response {
	e.t.Helper()
	r, err := testutil.PostForm(ctx(e.t), e.url("/bc-authorize"), c, form)
	if err != nil {
		e.t.Fatalf("bc-authorize: %v", err)
	}
	return r
}

// mustAuthorize is authorize that fails the test unless the request was
// accepted, and returns its auth_req_id.
func (e *env) mustAuthorize(c testutil.Client, form url.Values) string {
	e.t.Helper()
	r := e.authorize(c, form)
	if r.Status != http.StatusOK {
		e.t.Fatalf("bc-authorize %v: %s", form, r)
	}
	return r.Str("auth_req_id")
}

// TestHarnessStartsTheShippedConfigs checks that each shipped configuration
// the suite attacks starts as written and answers a legitimate request.
func TestHarnessStartsTheShippedConfigs(t *testing.T) {
	t.Parallel()
	t.Run("quickstart", func(t *testing.T) {
		t.Parallel()
		e := startQuickstart(t)
		e.mustAuthorize(demoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}})
	})
	t.Run("redis pair", func(t *testing.T) {
		t.Parallel()
		p := startRedisPair(t)
		for _, e := range p {
			e.mustAuthorize(demoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}})
		}
	})
	t.Run("oidc", func(t *testing.T) {
		t.Parallel()
		e := startOIDC(t, 1)
		e.mustAuthorize(posTerminal, url.Values{"scope": {"openid"}, "login_hint": {"user0@example.com"}, "user_code": {"4711"}})
	})
}
