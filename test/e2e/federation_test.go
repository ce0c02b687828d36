package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// Clients of the federation tests: registered at the IdP with the same
// credentials (cibaproxy uses a client's own credentials at the IdP by
// default).
var (
	fedPoll = testutil.Client{ID: "fed-poll", Secret: "fed-poll-secret"}
	fedPing = testutil.Client{ID: "fed-ping", Secret: "fed-ping-secret"}
)

// fedEnv is cibaproxy with the oidc upstream in front of a real OpenID
// Provider (node-oidc-provider) this project did not write.
type fedEnv struct {
	*env
	idp *idp.IdP
	// op runs the operator's commands against the server; set by the
	// starters that write a config file of their own.
	op operator
}

// startFederation starts the IdP with alice and mallory and cibaproxy on
// the oidc upstream, matching login_hint against the e-mail.
func startFederation(t *testing.T) *fedEnv {
	t.Helper()
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(f *testutil.Federation) idp.Config {
			return idp.Config{
				Clients: []idp.Client{
					{ID: fedPoll.ID, Secret: fedPoll.Secret, RedirectURIs: []string{f.Callback}},
					{ID: fedPing.ID, Secret: fedPing.Secret, RedirectURIs: []string{f.Callback}},
				},
				Accounts: []idp.Account{
					{ID: "alice", Password: "alice-password", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice", Name: "Alice"},
					{ID: "mallory", Password: "mallory-password", Email: "mallory@example.com", EmailVerified: true, PreferredUsername: "mallory"},
				},
			}
		},
		Config: func(f *testutil.Federation) string {
			return f.OIDCProxyConfig([]string{"email", "preferred_username"}, fmt.Sprintf(`limits:
  requests_per_user:
    requests: 100000
clients:
  - client_id: %s
    client_secret: %s
    token_endpoint_auth_methods: [client_secret_basic, client_secret_post]
    backchannel_token_delivery_mode: poll
  - client_id: %s
    client_secret: %s
    backchannel_token_delivery_mode: ping
    backchannel_client_notification_endpoint: ${CIBAPROXY_DEMO_NOTIFY_URL}
`, fedPoll.ID, fedPoll.Secret, fedPing.ID, fedPing.Secret))
		},
		Options: testutil.Options{Binary: binary, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL},
	})
	e.srv = f.Server
	return &fedEnv{env: e, idp: f.IdP}
}

// fedAuthorize starts a request for login_hint with a unique binding message.
func (f *fedEnv) fedAuthorize(c testutil.Client, loginHint, scope string) request {
	f.t.Helper()
	req := request{Client: c, Binding: tag("Fed")}
	form := url.Values{"scope": {scope}, "login_hint": {loginHint}, "binding_message": {req.Binding}}
	if c.ID == fedPing.ID {
		req.NotificationToken = notificationToken()
		form.Set("client_notification_token", req.NotificationToken)
	}
	r := f.authorize(c, form)
	if r.Status != http.StatusOK {
		f.t.Fatalf("bc-authorize: %s", r)
	}
	req.AuthReqID = r.Str("auth_req_id")
	return req
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// digestInput is the approval form's hidden digest of the
// authorization_details it shows, posted back as a browser does.
var digestInput = regexp.MustCompile(`name="details_digest" value="([^"]+)"`)

// browser is the user's phone: a cookie jar that does not follow redirects
// by itself, so each hop can be checked.
type browser struct {
	t  *testing.T
	hc *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, target string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx(b.t), method, target, body)
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

// approve opens the approval link, presses Approve and returns the
// provider's authorization URL it was sent to.
func (b *browser) approve(approveURL string) string {
	b.t.Helper()
	resp, page := b.do("GET", approveURL, nil)
	m := csrfInput.FindStringSubmatch(page)
	if resp.StatusCode != 200 || m == nil {
		b.t.Fatalf("approval page: %d\n%s", resp.StatusCode, page)
	}
	form := url.Values{"csrf": {m[1]}, "action": {"approve"}}
	if d := digestInput.FindStringSubmatch(page); d != nil {
		form.Set("details_digest", d[1])
	}
	resp, page = b.do("POST", approveURL, form)
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("Approve: %d, want 303 to the provider\n%s", resp.StatusCode, page)
	}
	return resp.Header.Get("Location")
}

// signIn logs in at the provider as account and returns cibaproxy's
// callback URL the provider redirected to.
func (f *fedEnv) signIn(b *browser, authURL, account, password string) string {
	f.t.Helper()
	back, err := idp.Login(ctx(f.t), b.hc, authURL, account, password)
	if err != nil {
		f.t.Fatalf("login at the IdP as %s: %v", account, err)
	}
	if !strings.HasPrefix(back.String(), f.srv.URL+"/approve/callback?") {
		f.t.Fatalf("the IdP sent the browser to %s, not cibaproxy's callback", back)
	}
	return back.String()
}

func TestFederation(t *testing.T) {
	t.Parallel()
	f := startFederation(t)
	// Every token the IdP issued through cibaproxy, to look for in its log.
	var issued []string
	keep := func(r *testutil.Response) *testutil.Response {
		for _, k := range []string{"access_token", "refresh_token", "id_token"} {
			if v := r.Str(k); v != "" {
				issued = append(issued, v)
			}
		}
		return r
	}

	t.Run("discovery is the IdP's metadata with cibaproxy's token and CIBA endpoints", func(t *testing.T) {
		r, err := testutil.Get(ctx(t), f.url("/.well-known/openid-configuration"))
		if err != nil || r.Status != 200 {
			t.Fatalf("discovery: %v %v", r, err)
		}
		want := map[string]string{
			"issuer":                              f.idp.Issuer(),
			"token_endpoint":                      f.url("/token"),
			"backchannel_authentication_endpoint": f.url("/bc-authorize"),
		}
		for k, v := range want {
			if got := r.Str(k); got != v {
				t.Errorf("%s = %q, want %q", k, got, v)
			}
		}
		if jwks := r.Str("jwks_uri"); !strings.HasPrefix(jwks, f.idp.Issuer()) {
			t.Errorf("jwks_uri = %q, want the IdP's", jwks)
		}
		if modes := fmt.Sprint(r.JSON["backchannel_token_delivery_modes_supported"]); modes != "[poll ping]" {
			t.Errorf("delivery modes = %s, want [poll ping] (no push: the IdP's ID token cannot carry auth_req_id)", modes)
		}
	})

	t.Run("poll: the user signs in at the IdP and the client gets the IdP's tokens", func(t *testing.T) {
		f := &fedEnv{env: f.in(t), idp: f.idp}
		req := f.fedAuthorize(fedPoll, "alice@example.com", "openid email profile")
		checkError(t, "poll before approval", f.token(fedPoll, req.AuthReqID), http.StatusBadRequest, "authorization_pending")
		m := f.message(req)
		b := newBrowser(t)
		authURL := f.approve(b, m.ApproveURL)
		back := f.signIn(b, authURL, "alice", "alice-password")
		resp, page := b.do("GET", back, nil)
		if resp.StatusCode != 200 || !strings.Contains(page, "You approved") {
			t.Fatalf("callback page: %d\n%s", resp.StatusCode, page)
		}
		tok := keep(checkTokens(t, "poll after approval", f.token(fedPoll, req.AuthReqID)))
		verifyIDToken(t, f.idp.Issuer(), fedPoll.ID, tok.Str("id_token"), "alice")
		checkError(t, "second poll", f.token(fedPoll, req.AuthReqID), http.StatusBadRequest, "invalid_grant")
		if status, _ := b.do("GET", back, nil); status.StatusCode != http.StatusBadRequest {
			t.Errorf("replayed callback: %d, want 400", status.StatusCode)
		}
	})

	t.Run("ping: the client is notified once and gets the IdP's tokens", func(t *testing.T) {
		f := &fedEnv{env: f.in(t), idp: f.idp}
		req := f.fedAuthorize(fedPing, "alice@example.com", "openid email")
		b := newBrowser(t)
		back := f.signIn(b, f.approve(b, f.message(req).ApproveURL), "alice", "alice-password")
		if resp, _ := b.do("GET", back, nil); resp.StatusCode != 200 {
			t.Fatalf("callback: %d", resp.StatusCode)
		}
		n, err := f.notify.WaitFor(ctx(t), req.AuthReqID)
		if err != nil {
			t.Fatal(err)
		}
		if n.Bearer != req.NotificationToken {
			t.Errorf("ping bearer is not the client_notification_token")
		}
		tok := keep(checkTokens(t, "token after ping", f.token(fedPing, req.AuthReqID)))
		verifyIDToken(t, f.idp.Issuer(), fedPing.ID, tok.Str("id_token"), "alice")
	})

	t.Run("another user signing in at the IdP is denied, never given tokens", func(t *testing.T) {
		f := &fedEnv{env: f.in(t), idp: f.idp}
		req := f.fedAuthorize(fedPoll, "alice@example.com", "openid email")
		b := newBrowser(t)
		back := f.signIn(b, f.approve(b, f.message(req).ApproveURL), "mallory", "mallory-password")
		resp, page := b.do("GET", back, nil)
		if resp.StatusCode != 200 || !strings.Contains(page, "someone other than") {
			t.Fatalf("callback page: %d\n%s", resp.StatusCode, page)
		}
		checkError(t, "poll after the wrong user", f.token(fedPoll, req.AuthReqID), http.StatusBadRequest, "access_denied")
	})

	t.Run("deny on the approval page gives access_denied without visiting the IdP", func(t *testing.T) {
		f := &fedEnv{env: f.in(t), idp: f.idp}
		req := f.fedAuthorize(fedPoll, "alice@example.com", "openid")
		b := newBrowser(t)
		m := f.message(req)
		_, page := b.do("GET", m.ApproveURL, nil)
		csrf := csrfInput.FindStringSubmatch(page)[1]
		if resp, _ := b.do("POST", m.ApproveURL, url.Values{"csrf": {csrf}, "action": {"deny"}}); resp.StatusCode != 200 {
			t.Fatalf("deny: %d", resp.StatusCode)
		}
		checkError(t, "poll after deny", f.token(fedPoll, req.AuthReqID), http.StatusBadRequest, "access_denied")
	})

	t.Run("the webhook callback cannot approve: only signing in at the IdP does", func(t *testing.T) {
		f := &fedEnv{env: f.in(t), idp: f.idp}
		req := f.fedAuthorize(fedPoll, "alice@example.com", "openid")
		m := f.message(req)
		r, err := testutil.Callback(ctx(t), m, "approved")
		if err != nil {
			t.Fatal(err)
		}
		checkError(t, "callback approved", r, http.StatusBadRequest, "invalid_request")
		checkError(t, "poll", f.token(fedPoll, req.AuthReqID), http.StatusBadRequest, "authorization_pending")
	})

	t.Run("refresh_token is passed through to the IdP", func(t *testing.T) {
		f := &fedEnv{env: f.in(t), idp: f.idp}
		req := f.fedAuthorize(fedPoll, "alice@example.com", "openid email offline_access")
		b := newBrowser(t)
		back := f.signIn(b, f.approve(b, f.message(req).ApproveURL), "alice", "alice-password")
		if resp, _ := b.do("GET", back, nil); resp.StatusCode != 200 {
			t.Fatalf("callback: %d", resp.StatusCode)
		}
		tok := keep(checkTokens(t, "poll", f.token(fedPoll, req.AuthReqID)))
		rt := tok.Str("refresh_token")
		if rt == "" {
			t.Fatalf("the IdP issued no refresh token for offline_access: %s", tok.Body)
		}
		r, err := testutil.PostForm(ctx(t), f.url("/token"), fedPoll, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if err != nil {
			t.Fatal(err)
		}
		refreshed := keep(checkTokens(t, "refresh through cibaproxy", r))
		verifyIDToken(t, f.idp.Issuer(), fedPoll.ID, refreshed.Str("id_token"), "alice")
		r, err = testutil.PostForm(ctx(t), f.url("/token"), testutil.Client{ID: fedPoll.ID, Secret: "wrong"}, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusUnauthorized || r.Str("error") != "invalid_client" {
			t.Errorf("refresh with a wrong secret: %s, want the IdP's 401 invalid_client", r)
		}
	})

	t.Run("IdP down: a clear error, the request stays pending and completes when it returns", func(t *testing.T) {
		f := &fedEnv{env: f.in(t), idp: f.idp}
		req := f.fedAuthorize(fedPoll, "alice@example.com", "openid email")
		m := f.message(req)
		f.idp.Kill()
		b := newBrowser(t)
		resp, page := b.do("GET", m.ApproveURL, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("approval page with the IdP down: %d", resp.StatusCode)
		}
		csrf := csrfInput.FindStringSubmatch(page)[1]
		resp, page = b.do("POST", m.ApproveURL, url.Values{"csrf": {csrf}, "action": {"approve"}})
		// Discovery was cached: the browser is sent on, and the IdP is
		// unreachable from there; or cibaproxy says so itself.
		if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("approve with the IdP down: %d\n%s", resp.StatusCode, page)
		}
		r, err := testutil.PostForm(ctx(t), f.url("/token"), fedPoll, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}})
		if err != nil {
			t.Fatal(err)
		}
		checkError(t, "refresh with the IdP down", r, http.StatusServiceUnavailable, "temporarily_unavailable")
		checkError(t, "poll with the IdP down", f.token(fedPoll, req.AuthReqID), http.StatusBadRequest, "authorization_pending")

		f.idp.Restart()
		back := f.signIn(b, f.approve(b, m.ApproveURL), "alice", "alice-password")
		if resp, _ := b.do("GET", back, nil); resp.StatusCode != 200 {
			t.Fatalf("callback after the IdP returned: %d", resp.StatusCode)
		}
		keep(checkTokens(t, "poll after the IdP returned", f.token(fedPoll, req.AuthReqID)))
	})

	t.Run("the log holds none of the IdP's tokens nor the client secrets", func(t *testing.T) {
		f.srv.Stop()
		logs := f.srv.Logs()
		if len(issued) < 5 {
			t.Fatalf("only %d tokens captured", len(issued))
		}
		for _, s := range append(issued, fedPoll.Secret, fedPing.Secret) {
			if strings.Contains(logs, s) {
				t.Errorf("the log contains a token or secret (%.8s…)", s)
			}
		}
	})
}

// approve is browser.approve for the federation env.
func (f *fedEnv) approve(b *browser, approveURL string) string {
	f.t.Helper()
	return b.approve(approveURL)
}

// verifyIDToken checks an ID token against the IdP's own keys, as a
// client does, and that it is about account.
func verifyIDToken(t *testing.T, issuer, clientID, raw, account string) {
	t.Helper()
	c := context.Background()
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
