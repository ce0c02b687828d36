package browser

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// waitTimeout bounds each wait for a server: an HTTP call, a webhook
// message, a request reaching its expiry.
const waitTimeout = 30 * time.Second

// Selectors of cibaproxy's approval page and of node-oidc-provider's
// devInteractions login form.
const (
	approveButton = `button[value=approve]`
	denyButton    = `button[value=deny]`
	passwordInput = `#password`
	idpLogin      = `input[name=login]`
	idpPassword   = `input[name=password]`
	idpSubmit     = `form button[type=submit]`
)

// fedPollName is the client_name of the federation tests' poll client at
// cibaproxy, which the approval page shows.
const fedPollName = "Corner Shop Till"

// env is one running cibaproxy with the webhook receiver that hands the
// tests each request's approval link.
type env struct {
	srv    *testutil.Server
	hook   *testutil.Webhook
	client testutil.Client
	// idp is the upstream provider; nil for the local upstream.
	idp *idp.IdP
}

// startFederation starts the IdP with alice and mallory, and cibaproxy on
// the oidc upstream in front of it, matching login_hint against the
// e-mail.
func startFederation(t *testing.T) *env {
	t.Helper()
	// Registered at the IdP with the same credentials: cibaproxy uses a
	// client's own credentials there by default.
	client := testutil.Client{ID: "fed-poll", Secret: "fed-poll-secret"}
	hook := testutil.NewWebhook(t)
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(f *testutil.Federation) idp.Config {
			return idp.Config{
				Clients: []idp.Client{
					{ID: client.ID, Secret: client.Secret, RedirectURIs: []string{f.Callback}},
				},
				Accounts: []idp.Account{
					{ID: "alice", Password: "alice-password", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice", Name: "Alice"},
					{ID: "mallory", Password: "mallory-password", Email: "mallory@example.com", EmailVerified: true, PreferredUsername: "mallory"},
				},
			}
		},
		Config: func(f *testutil.Federation) string {
			return fmt.Sprintf(`issuer: %s
listen: %s
store:
  type: memory
upstream:
  type: oidc
  oidc:
    issuer: %s
    match_claims: [email, preferred_username]
channels:
  webhook:
    url: ${CIBAPROXY_WEBHOOK_URL}
limits:
  requests_per_user:
    requests: 100000
clients:
  - client_id: %s
    client_name: %s
    client_secret: %s
    token_endpoint_auth_methods: [client_secret_basic]
    backchannel_token_delivery_mode: poll
`, f.Issuer, f.Addr, f.IdP.Issuer(), client.ID, fedPollName, client.Secret)
		},
		Options: testutil.Options{Binary: binary, WebhookURL: hook.URL},
	})
	return &env{srv: f.Server, hook: hook, client: client, idp: f.IdP}
}

// startLocal starts cibaproxy with examples/quickstart.yaml: the local
// upstream, alice / alice-password.
func startLocal(t *testing.T) *env {
	t.Helper()
	hook := testutil.NewWebhook(t)
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: testutil.QuickstartConfig(), WebhookURL: hook.URL})
	return &env{srv: srv, hook: hook, client: testutil.DemoPoll}
}

// ctx is a context bounded by waitTimeout, cancelled when the test ends.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return c
}

// request is one backchannel authentication request and its approval link.
type request struct {
	AuthReqID  string
	Binding    string
	Scope      string
	ApproveURL string
}

// authorize starts a request of the env's client for loginHint with a
// unique binding message, and waits for its webhook message. extra are
// further parameters (requested_expiry).
func (e *env) authorize(t *testing.T, loginHint, scope string, extra url.Values) request {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	req := request{Binding: "Code " + strings.ToUpper(hex.EncodeToString(b)), Scope: scope}
	form := url.Values{"scope": {scope}, "login_hint": {loginHint}, "binding_message": {req.Binding}}
	for k, v := range extra {
		form[k] = v
	}
	r, err := testutil.PostForm(ctx(t), e.srv.URL+"/bc-authorize", e.client, form)
	if err != nil || r.Status != http.StatusOK || r.Str("auth_req_id") == "" {
		t.Fatalf("POST /bc-authorize: %v %v", r, err)
	}
	req.AuthReqID = r.Str("auth_req_id")
	m, err := e.hook.WaitBinding(ctx(t), req.Binding)
	if err != nil {
		t.Fatal(err)
	}
	if m.ApproveURL == "" {
		t.Fatalf("the webhook message has no approve_url: %s", m.Raw)
	}
	req.ApproveURL = m.ApproveURL
	return req
}

// poll is the client's token request with the CIBA grant (client_secret_basic).
func (e *env) poll(t *testing.T, req request) *testutil.Response {
	t.Helper()
	r, err := testutil.PostForm(ctx(t), e.srv.URL+"/token", e.client, url.Values{
		"grant_type":  {testutil.GrantCIBA},
		"auth_req_id": {req.AuthReqID},
	})
	if err != nil {
		t.Fatalf("POST /token: %v", err)
	}
	return r
}

// mustTokens checks that a poll gave the tokens, and returns the ID token.
func mustTokens(t *testing.T, what string, r *testutil.Response) string {
	t.Helper()
	if r.Status != http.StatusOK || r.Str("access_token") == "" || r.Str("id_token") == "" {
		t.Fatalf("%s: got %s, want 200 with an access_token and an id_token", what, r)
	}
	return r.Str("id_token")
}

// mustError checks that a poll was answered 400 with the OAuth error code.
func mustError(t *testing.T, what string, r *testutil.Response, code string) {
	t.Helper()
	if r.Status != http.StatusBadRequest || r.Str("error") != code {
		t.Errorf("%s: got %s, want 400 with error %q", what, r, code)
	}
}

// verifyIDToken checks an ID token against the IdP's keys, as the client
// does, and that it is about account.
func verifyIDToken(t *testing.T, issuer, clientID, raw, account string) {
	t.Helper()
	c := ctx(t)
	p, err := oidc.NewProvider(c, issuer)
	if err != nil {
		t.Fatalf("IdP discovery: %v", err)
	}
	tok, err := p.Verifier(&oidc.Config{ClientID: clientID}).Verify(c, raw)
	if err != nil {
		t.Fatalf("the ID token does not verify against the IdP's keys: %v", err)
	}
	if tok.Subject != account {
		t.Errorf("ID token sub = %q, want %q", tok.Subject, account)
	}
}

// approveAtIdP presses Approve on the approval page the tab shows and
// checks it lands on the IdP's login form; it returns that form's URL.
func (e *env) approveAtIdP(b *tab) string {
	b.t.Helper()
	if status := b.click(approveButton); status != http.StatusOK {
		b.t.Fatalf("Approve: the login form answered %d\n%s", status, b.textNoFatal())
	}
	loc := b.location()
	if !strings.HasPrefix(loc, e.idp.Issuer()+"/") {
		b.t.Fatalf("Approve led to %s, not to the IdP at %s\n%s", loc, e.idp.Issuer(), b.textNoFatal())
	}
	b.do("wait for the IdP's login form", chromedp.WaitVisible(chromedp.CSS(idpLogin)), chromedp.WaitVisible(chromedp.CSS(idpPassword)))
	return loc
}

// signIn fills in the IdP's login form as account and submits it; it
// returns the HTTP status of the page the browser lands on, which must be
// cibaproxy's callback.
func (e *env) signIn(b *tab, account, password string) int {
	b.t.Helper()
	b.clear(idpLogin) // login_hint may prefill it
	b.do("fill in the IdP's login form",
		chromedp.SendKeys(chromedp.CSS(idpLogin), account),
		chromedp.SendKeys(chromedp.CSS(idpPassword), password),
	)
	status := b.click(idpSubmit)
	if loc := b.location(); !strings.HasPrefix(loc, e.srv.URL+"/approve/callback?") {
		b.t.Fatalf("signing in at the IdP led to %s, not to cibaproxy's callback\n%s", loc, b.textNoFatal())
	}
	return status
}

// showsRequest checks that the approval page shows who asks, the binding
// message and the scopes (each by its name, under its description), and
// offers Approve and Deny.
func showsRequest(b *tab, client string, req request) {
	b.t.Helper()
	b.mustShow("approval page", append([]string{"Approve sign-in", client, req.Binding, "It asks for"}, strings.Fields(req.Scope)...)...)
	b.do("find Approve and Deny", chromedp.WaitVisible(chromedp.CSS(approveButton)), chromedp.WaitVisible(chromedp.CSS(denyButton)))
}

func TestFederatedApproval(t *testing.T) {
	browser := startChromium(t)
	e := startFederation(t)

	t.Run("approve: the page shows the request, the user signs in at the IdP, the client gets the IdP's tokens", func(t *testing.T) {
		req := e.authorize(t, "alice@example.com", "openid email profile", nil)
		b := newTab(t, browser)
		if status := b.open(req.ApproveURL); status != http.StatusOK {
			t.Fatalf("approval page: %d", status)
		}
		showsRequest(b, fedPollName, req)
		b.mustShow("approval page", "alice@example.com", "Approve takes you to your identity provider")
		e.approveAtIdP(b)
		if status := e.signIn(b, "alice", "alice-password"); status != http.StatusOK {
			t.Fatalf("callback page: %d\n%s", status, b.textNoFatal())
		}
		b.mustShow("callback page", "You approved the sign-in to "+fedPollName)
		idToken := mustTokens(t, "poll after approval", e.poll(t, req))
		verifyIDToken(t, e.idp.Issuer(), e.client.ID, idToken, "alice")
	})

	t.Run("deny: the page says so and the client gets access_denied", func(t *testing.T) {
		req := e.authorize(t, "alice@example.com", "openid email", nil)
		b := newTab(t, browser)
		if status := b.open(req.ApproveURL); status != http.StatusOK {
			t.Fatalf("approval page: %d", status)
		}
		showsRequest(b, fedPollName, req)
		if status := b.click(denyButton); status != http.StatusOK {
			t.Fatalf("Deny: %d", status)
		}
		if loc := b.location(); !strings.HasPrefix(loc, e.srv.URL+"/") {
			t.Errorf("Deny left cibaproxy for %s", loc)
		}
		b.mustShow("after Deny", "You denied the sign-in")
		mustError(t, "poll after Deny", e.poll(t, req), "access_denied")
	})

	t.Run("another user signing in at the IdP: the page says denied, the client gets access_denied", func(t *testing.T) {
		req := e.authorize(t, "alice@example.com", "openid email", nil)
		b := newTab(t, browser)
		b.open(req.ApproveURL)
		e.approveAtIdP(b)
		if status := e.signIn(b, "mallory", "mallory-password"); status != http.StatusOK {
			t.Fatalf("callback page: %d\n%s", status, b.textNoFatal())
		}
		b.mustShow("callback page", "someone other than alice@example.com", "denied")
		mustError(t, "poll after the wrong user", e.poll(t, req), "access_denied")
	})

	t.Run("expired link: 410 and the page says expired", func(t *testing.T) {
		// requested_expiry is a positive whole number of seconds
		// (internal/ciba/params.go); 2 leaves time for the webhook message.
		req := e.authorize(t, "alice@example.com", "openid", url.Values{"requested_expiry": {"2"}})
		waitExpired(t, req.ApproveURL)
		b := newTab(t, browser)
		if status := b.open(req.ApproveURL); status != http.StatusGone {
			t.Errorf("expired link: HTTP %d, want 410", status)
		}
		b.mustShow("expired link", "expired")
		if n := countVisible(b, approveButton); n != 0 {
			t.Errorf("the expired page still offers Approve")
		}
		mustError(t, "poll after expiry", e.poll(t, req), "expired_token")
	})

	t.Run("replayed callback: refused, and the one token response stays the only one", func(t *testing.T) {
		req := e.authorize(t, "alice@example.com", "openid email", nil)
		b := newTab(t, browser)
		b.open(req.ApproveURL)
		e.approveAtIdP(b)
		if status := e.signIn(b, "alice", "alice-password"); status != http.StatusOK {
			t.Fatalf("callback page: %d\n%s", status, b.textNoFatal())
		}
		b.mustShow("callback page", "You approved")
		callback := b.location() // the IdP's redirect: /approve/callback?code=…&state=…
		if q, err := url.Parse(callback); err != nil || q.Query().Get("code") == "" || q.Query().Get("state") == "" {
			t.Fatalf("the callback URL %q has no code and state", callback)
		}
		mustTokens(t, "poll after approval", e.poll(t, req))

		if status := b.open(callback); status != http.StatusBadRequest {
			t.Errorf("replayed callback: HTTP %d, want 400", status)
		}
		b.mustShow("replayed callback", "not valid or was already used")
		mustError(t, "second poll", e.poll(t, req), "invalid_grant")
	})

	t.Run("forged state: refused, the request stays pending and the real sign-in still works", func(t *testing.T) {
		req := e.authorize(t, "alice@example.com", "openid email", nil)
		b := newTab(t, browser)
		b.open(req.ApproveURL)
		loginForm := e.approveAtIdP(b)

		if status := b.open(e.srv.URL + "/approve/callback?state=forged&code=x"); status != http.StatusBadRequest {
			t.Errorf("forged callback: HTTP %d, want 400", status)
		}
		b.mustShow("forged callback", "not valid")
		mustError(t, "poll after the forged callback", e.poll(t, req), "authorization_pending")

		// Back to the IdP's login form of the sign-in that was started:
		// its state was not used up by the forgery.
		if status := b.open(loginForm); status != http.StatusOK {
			t.Fatalf("the IdP's login form again: %d\n%s", status, b.textNoFatal())
		}
		if status := e.signIn(b, "alice", "alice-password"); status != http.StatusOK {
			t.Fatalf("callback page: %d\n%s", status, b.textNoFatal())
		}
		b.mustShow("callback page", "You approved")
		idToken := mustTokens(t, "poll after approval", e.poll(t, req))
		verifyIDToken(t, e.idp.Issuer(), e.client.ID, idToken, "alice")
	})

	t.Run("phone width: Approve and Deny are in view without horizontal scrolling", func(t *testing.T) {
		const width, height = 390, 844
		req := e.authorize(t, "alice@example.com", "openid email profile", nil)
		b := newTab(t, browser)
		b.do("emulate a phone", chromedp.EmulateViewport(width, height, chromedp.EmulateMobile, chromedp.EmulatePortrait, chromedp.EmulateScale(2)))
		if status := b.open(req.ApproveURL); status != http.StatusOK {
			t.Fatalf("approval page: %d", status)
		}
		showsRequest(b, fedPollName, req)

		png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		shot := filepath.Join(t.TempDir(), fmt.Sprintf("approval-%dx%d.png", width, height))
		if err := os.WriteFile(shot, png, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", shot)

		l := layout(b)
		if l.InnerWidth != width {
			t.Errorf("layout viewport is %v px wide, want %d (the page's viewport meta tag)", l.InnerWidth, width)
		}
		if l.ScrollWidth > width {
			t.Errorf("the page is %v px wide: it scrolls horizontally at %d px", l.ScrollWidth, width)
		}
		for name, r := range map[string]rect{"Approve": l.Approve, "Deny": l.Deny} {
			if r.Width <= 0 || r.Height <= 0 || r.Left < 0 || r.Top < 0 || r.Right > l.InnerWidth || r.Bottom > l.InnerHeight {
				t.Errorf("%s button at %+v is not inside the %vx%v viewport", name, r, l.InnerWidth, l.InnerHeight)
			}
		}
	})
}

func TestLocalApproval(t *testing.T) {
	browser := startChromium(t)
	e := startLocal(t)

	t.Run("approve with the password: the client gets tokens", func(t *testing.T) {
		req := e.authorize(t, "alice", "openid email", nil)
		b := newTab(t, browser)
		if status := b.open(req.ApproveURL); status != http.StatusOK {
			t.Fatalf("approval page: %d", status)
		}
		showsRequest(b, "Demo poll client", req)
		b.mustShow("approval page", "Password for alice")
		b.do("type the password", chromedp.SendKeys(chromedp.CSS(passwordInput), "alice-password"))
		if status := b.click(approveButton); status != http.StatusOK {
			t.Fatalf("Approve: %d\n%s", status, b.textNoFatal())
		}
		b.mustShow("after Approve", "You approved the sign-in to Demo poll client")
		mustTokens(t, "poll after approval", e.poll(t, req))
	})

	t.Run("a wrong password shows the error and leaves the request pending", func(t *testing.T) {
		req := e.authorize(t, "alice", "openid email", nil)
		b := newTab(t, browser)
		b.open(req.ApproveURL)
		b.do("type a wrong password", chromedp.SendKeys(chromedp.CSS(passwordInput), "not-alice-password"))
		if status := b.click(approveButton); status != http.StatusUnauthorized {
			t.Errorf("Approve with a wrong password: HTTP %d, want 401", status)
		}
		b.mustShow("after a wrong password", "The password is not right.", req.Binding)
		// Still pending: the link still opens the form (the quick start
		// holds a pending poll for 20 s, so the page is asked, not /token).
		if r, err := testutil.Get(ctx(t), req.ApproveURL); err != nil || r.Status != http.StatusOK {
			t.Fatalf("approval link after a wrong password: %v %v, want 200 with the form", r, err)
		}
		// And the right password on the re-shown form still approves.
		b.do("type the right password", chromedp.SendKeys(chromedp.CSS(passwordInput), "alice-password"))
		if status := b.click(approveButton); status != http.StatusOK {
			t.Fatalf("Approve: %d\n%s", status, b.textNoFatal())
		}
		b.mustShow("after Approve", "You approved")
		mustTokens(t, "poll after approval", e.poll(t, req))
	})
}

// waitExpired asks for the approval link (plain HTTP) until it answers
// 410 Gone, within waitTimeout.
func waitExpired(t *testing.T, link string) {
	t.Helper()
	c := ctx(t)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := testutil.Get(c, link)
		if err != nil {
			t.Fatalf("GET %s: %v", link, err)
		}
		if r.Status == http.StatusGone {
			return
		}
		if r.Status != http.StatusOK {
			t.Fatalf("approval link before expiry: HTTP %d, want 200 then 410", r.Status)
		}
		select {
		case <-c.Done():
			t.Fatalf("the approval link did not expire within %v", waitTimeout)
		case <-tick.C:
		}
	}
}

// rect is an element's bounding box in CSS pixels.
type rect struct {
	Left   float64 `json:"left"`
	Top    float64 `json:"top"`
	Right  float64 `json:"right"`
	Bottom float64 `json:"bottom"`
	Width  float64 `json:"width"`
	Height float64 `json:"height"`
}

// pageLayout is what the phone-width check measures.
type pageLayout struct {
	ScrollWidth float64 `json:"scrollWidth"`
	InnerWidth  float64 `json:"innerWidth"`
	InnerHeight float64 `json:"innerHeight"`
	Approve     rect    `json:"approve"`
	Deny        rect    `json:"deny"`
}

// layout measures the page and its two buttons.
func layout(b *tab) pageLayout {
	b.t.Helper()
	l, err := chromedp.Run(b.ctx, chromedp.Evaluate[pageLayout](fmt.Sprintf(`(() => {
  const box = sel => {
    const r = document.querySelector(sel).getBoundingClientRect();
    return {left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height};
  };
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    innerHeight: window.innerHeight,
    approve: box(%q),
    deny: box(%q),
  };
})()`, approveButton, denyButton)))
	if err != nil {
		b.t.Fatalf("measure the page: %v", err)
	}
	return l
}

// countVisible counts the elements matching sel that are rendered.
func countVisible(b *tab, sel string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](fmt.Sprintf(
		`[...document.querySelectorAll(%q)].filter(e => e.getClientRects().length > 0).length`, sel)))
	if err != nil {
		b.t.Fatalf("count %s: %v", sel, err)
	}
	return n
}
