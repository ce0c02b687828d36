package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// fedTimeout bounds one federated.mjs run and every wait of the Go side
// around it, so a broken server cannot hang the test.
const fedTimeout = 90 * time.Second

// Clients of the federation interop tests, registered at the IdP with the
// same credentials (cibaproxy uses a client's own credentials at the IdP by
// default).
var (
	fedPoll = testutil.Client{ID: "interop-fed-poll", Secret: "interop-fed-poll-secret"}
	fedPing = testutil.Client{ID: "interop-fed-ping", Secret: "interop-fed-ping-secret"}
)

// fedEnv is cibaproxy on the oidc upstream in front of a real OpenID
// Provider (node-oidc-provider), with the user's authentication device (a
// webhook receiver that gives the approval link) and the ping client's
// notification endpoint served by this test.
type fedEnv struct {
	srv    *testutil.Server
	idp    *idp.IdP
	hook   *testutil.Webhook
	notify *testutil.Notifier
	// jwksURI is the IdP's own jwks_uri, from its discovery document.
	jwksURI string
}

// startFederation starts the IdP with alice and mallory and cibaproxy on
// the oidc upstream, matching login_hint against the e-mail. The poll
// interval is cibaproxy's minimum, 1 s, to keep openid-client's waits short.
func startFederation(t *testing.T) *fedEnv {
	t.Helper()
	f := &fedEnv{hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	fed := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(fed *testutil.Federation) idp.Config {
			return idp.Config{
				Clients: []idp.Client{
					{ID: fedPoll.ID, Secret: fedPoll.Secret, RedirectURIs: []string{fed.Callback}},
					{ID: fedPing.ID, Secret: fedPing.Secret, RedirectURIs: []string{fed.Callback}},
				},
				Accounts: []idp.Account{
					{ID: "alice", Password: "alice-password", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice"},
					{ID: "mallory", Password: "mallory-password", Email: "mallory@example.com", EmailVerified: true, PreferredUsername: "mallory"},
				},
			}
		},
		Config: func(fed *testutil.Federation) string {
			return fmt.Sprintf(`issuer: %s
listen: %s
store:
  type: memory
upstream:
  type: oidc
  oidc:
    issuer: %s
    match_claims: [email]
ciba:
  interval: 1s
channels:
  webhook:
    url: ${CIBAPROXY_WEBHOOK_URL}
outbound:
  allow_http: true
  allow_networks: [127.0.0.0/8]
limits:
  requests_per_user:
    requests: 100000
clients:
  - client_id: %s
    client_secret: %s
    token_endpoint_auth_methods: [client_secret_basic]
    backchannel_token_delivery_mode: poll
  - client_id: %s
    client_secret: %s
    token_endpoint_auth_methods: [client_secret_basic]
    backchannel_token_delivery_mode: ping
    backchannel_client_notification_endpoint: ${CIBAPROXY_DEMO_NOTIFY_URL}
`, fed.Issuer, fed.Addr, fed.IdP.Issuer(), fedPoll.ID, fedPoll.Secret, fedPing.ID, fedPing.Secret)
		},
		Options: testutil.Options{Binary: binary, WebhookURL: f.hook.URL, NotifyURL: f.notify.URL},
	})
	f.srv, f.idp = fed.Server, fed.IdP
	r, err := testutil.Get(fedCtx(t), fed.IdP.Issuer()+"/.well-known/openid-configuration")
	if err != nil || r.Status != http.StatusOK || r.Str("jwks_uri") == "" {
		t.Fatalf("the IdP's discovery document: %v %v", r, err)
	}
	f.jwksURI = r.Str("jwks_uri")
	return f
}

// fedCtx is a context bounded by fedTimeout, cancelled when the test ends.
func fedCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), fedTimeout)
	t.Cleanup(cancel)
	return c
}

// randomString returns 18 random bytes, base64url: a binding_message that
// finds a request's webhook message, or a client_notification_token.
func randomString() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// browser is the user's phone: a cookie jar that does not follow redirects
// by itself, so each hop can be checked.
type browser struct {
	t  *testing.T
	hc *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends one request (a form POST when form is not nil) and returns the
// response with its body read.
func (b *browser) do(method, target string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(fedCtx(b.t), method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

// signIn is the user approving the request with this binding_message: the
// approval link from the webhook message, Approve, the IdP's sign-in as
// account (browserless, idp.Login), and the IdP's redirect back to
// cibaproxy's callback. It returns the callback page.
func (f *fedEnv) signIn(t *testing.T, binding, account, password string) string {
	t.Helper()
	m, err := f.hook.WaitBinding(fedCtx(t), binding)
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	resp, page := b.do(http.MethodGet, m.ApproveURL, nil)
	csrf := csrfInput.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || csrf == nil {
		t.Fatalf("approval page: %d\n%s", resp.StatusCode, page)
	}
	resp, page = b.do(http.MethodPost, m.ApproveURL, url.Values{"csrf": {csrf[1]}, "action": {"approve"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("Approve: %d, want 303 to the IdP\n%s", resp.StatusCode, page)
	}
	back, err := idp.Login(fedCtx(t), b.hc, resp.Header.Get("Location"), account, password)
	if err != nil {
		t.Fatalf("sign-in at the IdP as %s: %v", account, err)
	}
	if !strings.HasPrefix(back.String(), f.srv.URL+"/approve/callback?") {
		t.Fatalf("the IdP sent the browser to %s, not cibaproxy's callback", back)
	}
	resp, page = b.do(http.MethodGet, back.String(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback page: %d\n%s", resp.StatusCode, page)
	}
	return page
}

// fedResult is the result line of federated.mjs.
type fedResult struct {
	result
	// TokenRequests counts the requests to the token endpoint, every poll
	// included.
	TokenRequests int `json:"token_requests"`
	// Pending counts the authorization_pending answers.
	Pending int `json:"pending"`
	// JWKSFetched lists the key sets openid-client fetched to check the
	// ID token's signature.
	JWKSFetched []string `json:"jwks_fetched"`
	// Status is the HTTP status of a failed token request.
	Status int `json:"status"`
}

// fedLine is one line federated.mjs printed: an event, or the result.
type fedLine struct {
	Event     string `json:"event"`
	AuthReqID string `json:"auth_req_id"`
	raw       []byte
}

// fedClient is one run of federated.mjs, whose stdout lines are read as
// they come so the test can act between them.
type fedClient struct {
	t     *testing.T
	args  []string
	stdin io.WriteCloser
	lines chan fedLine // closed after the process has exited
	// waitErr is set once lines is closed.
	waitErr error
	stderr  syncBuffer
}

// startClient runs node federated.mjs for c in mode, signing in as
// loginHint, with binding as the binding_message. The process is killed,
// if still running, when the test ends.
func (f *fedEnv) startClient(t *testing.T, mode string, c testutil.Client, loginHint, binding string, env ...string) *fedClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), fedTimeout)
	fc := &fedClient{
		t:     t,
		args:  []string{"federated.mjs", mode, f.srv.URL, f.idp.Issuer(), c.ID, c.Secret, loginHint, binding},
		lines: make(chan fedLine, 16),
	}
	cmd := exec.CommandContext(ctx, "node", fc.args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &fc.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if fc.stdin, err = cmd.StdinPipe(); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			l := fedLine{raw: slices.Clone(sc.Bytes())}
			_ = json.Unmarshal(l.raw, &l)
			fc.lines <- l
		}
		_, _ = io.Copy(io.Discard, stdout)
		fc.waitErr = cmd.Wait()
		close(fc.lines)
	}()
	t.Cleanup(func() {
		cancel()
		_ = fc.stdin.Close()
		for range fc.lines {
		}
	})
	return fc
}

// next returns the next line, which must be event; the test fails with the
// client's output otherwise.
func (fc *fedClient) next(event string) fedLine {
	fc.t.Helper()
	l, ok := <-fc.lines
	switch {
	case !ok:
		fc.t.Fatalf("node %s exited (%v) before %q\nstderr:\n%s", strings.Join(fc.args, " "), fc.waitErr, event, fc.stderr.String())
	case l.Event != event:
		fc.t.Fatalf("node %s: got %s, want the %q event\nstderr:\n%s", strings.Join(fc.args, " "), l.raw, event, fc.stderr.String())
	}
	return l
}

// send writes one line to the client's stdin.
func (fc *fedClient) send(line string) {
	fc.t.Helper()
	if _, err := io.WriteString(fc.stdin, line+"\n"); err != nil {
		fc.t.Fatalf("writing to node's stdin: %v", err)
	}
}

// result waits for the client to exit and returns its result line. With
// wantOK it must have succeeded, else it must have failed.
func (fc *fedClient) result(wantOK bool) fedResult {
	fc.t.Helper()
	var last fedLine
	for l := range fc.lines {
		if l.Event != "" {
			fc.t.Fatalf("node %s: got %s, want the result line", strings.Join(fc.args, " "), l.raw)
		}
		last = l
	}
	var r fedResult
	if err := json.Unmarshal(last.raw, &r); err != nil {
		fc.t.Fatalf("node %s: no result line (%v, exit %v)\nstderr:\n%s", strings.Join(fc.args, " "), err, fc.waitErr, fc.stderr.String())
	}
	if ok := r.OK && fc.waitErr == nil; ok != wantOK {
		fc.t.Fatalf("node %s: ok = %v (exit %v), want %v:\n%s\nstderr:\n%s", strings.Join(fc.args, " "), ok, fc.waitErr, wantOK, last.raw, fc.stderr.String())
	}
	return r
}

// checkIdPTokens checks what openid-client printed after validating the ID
// token (signature against jwks_uri, iss, aud, exp): it is the IdP's ID
// token about alice for c, and the keys came from the IdP.
func (f *fedEnv) checkIdPTokens(t *testing.T, r fedResult, c testutil.Client) {
	t.Helper()
	if r.Sub != "alice" {
		t.Errorf("sub = %q, want the IdP account alice", r.Sub)
	}
	if iss, _ := r.Claims["iss"].(string); iss != f.idp.Issuer() {
		t.Errorf("iss = %q, want the IdP's issuer %q", iss, f.idp.Issuer())
	}
	switch aud := r.Claims["aud"].(type) {
	case string:
		if aud != c.ID {
			t.Errorf("aud = %q, want %q", aud, c.ID)
		}
	case []any:
		if !slices.Contains(aud, any(c.ID)) {
			t.Errorf("aud = %v, want it to hold %q", aud, c.ID)
		}
	default:
		t.Errorf("aud = %v, want %q", r.Claims["aud"], c.ID)
	}
	if email, _ := r.Claims["email"].(string); email != "alice@example.com" {
		t.Errorf("email = %q, want alice@example.com (scope had email)", email)
	}
	if len(r.JWKSFetched) == 0 {
		t.Error("openid-client fetched no key set: the ID token signature was not checked")
	}
	for _, u := range r.JWKSFetched {
		if u != f.jwksURI {
			t.Errorf("openid-client fetched keys from %s, want only the IdP's %s", u, f.jwksURI)
		}
	}
	if !r.HasAccessToken || !strings.EqualFold(r.TokenType, "bearer") {
		t.Errorf("token_type = %q, access token: %v; want a Bearer access token", r.TokenType, r.HasAccessToken)
	}
}

// TestOpenIDClientFederation runs openid-client, configured from
// cibaproxy's discovery document, through cibaproxy's oidc upstream: the
// user approves by signing in at a real IdP, and the client gets and
// validates the IdP's ID token.
func TestOpenIDClientFederation(t *testing.T) {
	t.Parallel()
	requireNode(t)
	installDeps(t)
	f := startFederation(t)

	t.Run("group", func(t *testing.T) {
		t.Run("poll: the client polls while the user signs in at the IdP, and gets the IdP's ID token", func(t *testing.T) {
			t.Parallel()
			binding := "Fed " + randomString()
			fc := f.startClient(t, "poll", fedPoll, "alice@example.com", binding)
			fc.next("initiated")
			fc.next("pending")
			if page := f.signIn(t, binding, "alice", "alice-password"); !strings.Contains(page, "You approved") {
				t.Errorf("callback page does not say the sign-in was approved:\n%s", page)
			}
			r := fc.result(true)
			f.checkIdPTokens(t, r, fedPoll)
		})

		t.Run("ping: one ping to the client's endpoint, one token request, the IdP's ID token", func(t *testing.T) {
			t.Parallel()
			binding := "Fed " + randomString()
			token := randomString()
			fc := f.startClient(t, "ping", fedPing, "alice@example.com", binding, "CIBA_NOTIFICATION_TOKEN="+token)
			id := fc.next("initiated").AuthReqID
			f.signIn(t, binding, "alice", "alice-password")
			n, err := f.notify.WaitFor(fedCtx(t), id)
			if err != nil {
				t.Fatal(err)
			}
			if n.Bearer != token {
				t.Errorf("ping bearer %q is not the client_notification_token", n.Bearer)
			}
			if !strings.HasPrefix(n.ContentType, "application/json") {
				t.Errorf("ping Content-Type = %q, want application/json", n.ContentType)
			}
			fc.send(n.AuthReqID())
			r := fc.result(true)
			f.checkIdPTokens(t, r, fedPing)
			if r.TokenRequests != 1 {
				t.Errorf("the client made %d token requests, want exactly 1 after the ping", r.TokenRequests)
			}
			if pings := f.notify.For(id); len(pings) != 1 {
				t.Errorf("the notification endpoint got %d pings for the request, want 1", len(pings))
			}
		})

		t.Run("wrong user: signing in at the IdP as someone else makes the poll reject with access_denied", func(t *testing.T) {
			t.Parallel()
			binding := "Fed " + randomString()
			fc := f.startClient(t, "poll", fedPoll, "alice@example.com", binding)
			fc.next("initiated")
			fc.next("pending")
			if page := f.signIn(t, binding, "mallory", "mallory-password"); !strings.Contains(page, "someone other than") {
				t.Errorf("callback page does not say the wrong user signed in:\n%s", page)
			}
			r := fc.result(false)
			if r.Error != "access_denied" || r.Code != "OAUTH_RESPONSE_BODY_ERROR" || r.Status != http.StatusBadRequest {
				t.Errorf("openid-client failed with error %q, code %q, status %d; want the server's 400 access_denied", r.Error, r.Code, r.Status)
			}
		})
	})
}

// syncBuffer is a bytes.Buffer safe to read while the process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
