// Package e2e drives the real cibaproxy binary over HTTP: every token
// delivery mode end to end, the HTTP-level error answers, discovery, crash
// recovery of the embedded store, refresh tokens and long polling.
//
// The server runs with examples/quickstart.yaml; its webhook channel posts to
// a receiver in the test, which answers at the callback endpoint the way an
// authentication device would.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

var binary string

func TestMain(m *testing.M) {
	// Every test runs its own servers (own port, own data directory) and
	// spends most of its time waiting on them: an expiry, a retry backoff,
	// a long poll. More of them wait at once than there are cores.
	testutil.DefaultParallel(8)
	bin, cleanup := testutil.MustBuild()
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// waitTimeout bounds every wait of a test for something the server sends.
const waitTimeout = 30 * time.Second

// env is one running cibaproxy with its webhook receiver and the demo
// clients' notification endpoint.
type env struct {
	t      *testing.T
	srv    *testutil.Server
	hook   *testutil.Webhook
	notify *testutil.Notifier
}

// start runs a fresh cibaproxy (new data directory, free port).
func start(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{
		Binary:     binary,
		WebhookURL: e.hook.URL,
		NotifyURL:  e.notify.URL,
	})
	return e
}

func (e *env) url(path string) string { return e.srv.URL + path }

// ctx is a context bounded by waitTimeout, cancelled when the test ends.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

// tag returns a binding_message unique in the test run, used to find a
// request's webhook message.
func tag(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + " " + base64.RawURLEncoding.EncodeToString(b)
}

// notificationToken returns a fresh client_notification_token.
func notificationToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// authorize sends a backchannel authentication request.
func (e *env) authorize(c testutil.Client, form url.Values) *testutil.Response {
	e.t.Helper()
	r, err := testutil.PostForm(ctx(e.t), e.url("/bc-authorize"), c, form)
	if err != nil {
		e.t.Fatalf("POST /bc-authorize: %v", err)
	}
	return r
}

// request is one created authentication request.
type request struct {
	Client    testutil.Client
	AuthReqID string
	Binding   string
	// NotificationToken is the client_notification_token (ping and push).
	NotificationToken string
}

// mustAuthorize creates a request for alice with scope "openid email" and
// a unique binding_message; ping and push clients get a notification token.
func (e *env) mustAuthorize(c testutil.Client, prefix string) request {
	e.t.Helper()
	req := request{Client: c, Binding: tag(prefix)}
	form := url.Values{
		"scope":           {"openid email"},
		"login_hint":      {"alice"},
		"binding_message": {req.Binding},
	}
	if c.ID != testutil.DemoPoll.ID {
		req.NotificationToken = notificationToken()
		form.Set("client_notification_token", req.NotificationToken)
	}
	r := e.authorize(c, form)
	if r.Status != http.StatusOK {
		e.t.Fatalf("POST /bc-authorize as %s: got %s, want 200", c.ID, r)
	}
	checkNoStore(e.t, "/bc-authorize", r)
	req.AuthReqID = r.Str("auth_req_id")
	if req.AuthReqID == "" {
		e.t.Fatalf("bc-authorize answer has no auth_req_id: %s", r.Body)
	}
	if n, ok := r.JSON["expires_in"].(float64); !ok || n <= 0 {
		e.t.Errorf("bc-authorize answer has no positive expires_in: %s", r.Body)
	}
	return req
}

// token sends a token request with the CIBA grant; it may be held (long
// polling), so its bound is longer than waitTimeout.
func (e *env) token(c testutil.Client, authReqID string) *testutil.Response {
	e.t.Helper()
	r := e.tokenNoFatal(c, authReqID)
	if r.Status == 0 {
		e.t.Fatalf("POST /token: %s", r.Body)
	}
	return r
}

// tokenNoFatal is token for other goroutines than the test's: a transport
// error is returned as a response with Status 0 and the error as body.
func (e *env) tokenNoFatal(c testutil.Client, authReqID string) *testutil.Response {
	cx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := testutil.PostForm(cx, e.url("/token"), c, url.Values{
		"grant_type":  {testutil.GrantCIBA},
		"auth_req_id": {authReqID},
	})
	if err != nil {
		return &testutil.Response{Body: []byte(err.Error())}
	}
	return r
}

// message waits for the accepted webhook message of req.
func (e *env) message(req request) testutil.Message {
	e.t.Helper()
	m, err := e.hook.WaitBinding(ctx(e.t), req.Binding)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// answer answers req's webhook message at the callback with status
// ("approved" or "denied") and expects 204.
func (e *env) answer(req request, status string) testutil.Message {
	e.t.Helper()
	m := e.message(req)
	r, err := testutil.Callback(ctx(e.t), m, status)
	if err != nil {
		e.t.Fatalf("POST %s: %v", m.CallbackURL, err)
	}
	if r.Status != http.StatusNoContent {
		e.t.Fatalf("callback %q for %q: got %s, want 204", status, req.Binding, r)
	}
	return m
}

// checkNoStore checks the answer is JSON and not cacheable (RFC 6749 §5.1).
func checkNoStore(t *testing.T, what string, r *testutil.Response) {
	t.Helper()
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: Cache-Control = %q, want no-store", what, cc)
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		t.Errorf("%s: Content-Type = %q, want application/json", what, r.Header.Get("Content-Type"))
	}
}

// checkTokens checks a successful token response (RFC 6749 §5.1, OIDC Core
// §3.1.3.3) and returns it.
func checkTokens(t *testing.T, what string, r *testutil.Response) *testutil.Response {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("%s: got %s, want 200 with tokens", what, r)
	}
	checkNoStore(t, what, r)
	if r.Str("access_token") == "" {
		t.Errorf("%s: no access_token in %s", what, r.Body)
	}
	if !strings.EqualFold(r.Str("token_type"), "Bearer") {
		t.Errorf("%s: token_type = %q, want Bearer", what, r.Str("token_type"))
	}
	if r.Str("id_token") == "" {
		t.Errorf("%s: no id_token although scope had openid: %s", what, r.Body)
	}
	if n, ok := r.JSON["expires_in"].(float64); !ok || n <= 0 {
		t.Errorf("%s: expires_in missing or not positive: %s", what, r.Body)
	}
	return r
}

// checkError checks an OAuth error answer: status, error code, JSON and
// no-store.
func checkError(t *testing.T, what string, r *testutil.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.Str("error") != code {
		t.Errorf("%s: got %s, want HTTP %d with error %q", what, r, status, code)
	}
	checkNoStore(t, what, r)
}

// in returns e for the subtest t, so helpers fail the right test.
func (e *env) in(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}
