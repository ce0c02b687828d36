package idp_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/cibaproxy/cibaproxy/test/idp"
)

// testTimeout bounds every network wait of a test; it is a safety net, not
// an assertion.
const testTimeout = 60 * time.Second

const (
	webRedirect = "http://127.0.0.1:1/callback" // never contacted: Login stops at it
	relayID     = "relay"
	relaySecret = "relay-secret"
)

func accounts() []idp.Account {
	return []idp.Account{
		{ID: "alice", Password: "alice-pw", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice.a", Name: "Alice A"},
		{ID: "bob", Email: "bob@example.com", PreferredUsername: "bob.b", Name: "Bob B"},
	}
}

func webClient() idp.Client {
	return idp.Client{ID: "web", Secret: "web-secret", RedirectURIs: []string{webRedirect}}
}

func relayClient() idp.Client {
	return idp.Client{ID: relayID, Secret: relaySecret, GrantTypes: []string{idp.GrantCIBA, idp.GrantRefreshToken}, BackchannelTokenDeliveryMode: "poll"}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestDiscovery(t *testing.T) {
	p := idp.Start(t, idp.Config{Clients: []idp.Client{webClient()}, Accounts: accounts()})
	ctx := testContext(t)
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	var md map[string]any
	if err := prov.Claims(&md); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"authorization_endpoint", "token_endpoint", "jwks_uri", "backchannel_authentication_endpoint", "device_authorization_endpoint"} {
		v, _ := md[k].(string)
		if !strings.HasPrefix(v, p.Issuer()+"/") {
			t.Errorf("discovery %s = %q, want an endpoint under %s", k, v, p.Issuer())
		}
	}
	modes, _ := md["backchannel_token_delivery_modes_supported"].([]any)
	if !slices.Contains(modes, any("poll")) || !slices.Contains(modes, any("ping")) {
		t.Errorf("backchannel_token_delivery_modes_supported = %v, want poll and ping", modes)
	}
	if methods, _ := md["code_challenge_methods_supported"].([]any); !slices.Equal(methods, []any{"S256"}) {
		t.Errorf("code_challenge_methods_supported = %v, want [S256]", methods)
	}
}

func TestCodeFlowWithPKCE(t *testing.T) {
	p := idp.Start(t, idp.Config{Clients: []idp.Client{webClient()}, Accounts: accounts()})
	ctx := testContext(t)
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	conf := oauth2.Config{
		ClientID:     "web",
		ClientSecret: "web-secret",
		Endpoint:     prov.Endpoint(),
		RedirectURL:  webRedirect,
		Scopes:       []string{oidc.ScopeOpenID, "email", "profile", oidc.ScopeOfflineAccess},
	}
	verifier := prov.Verifier(&oidc.Config{ClientID: "web"})

	// authorize runs the browser part and returns the redirect to the client.
	authorize := func(t *testing.T, account, password string, opts ...oauth2.AuthCodeOption) (redirect *url.URL, pkce, state, nonce string) {
		t.Helper()
		pkce, state, nonce = oauth2.GenerateVerifier(), oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
		opts = append(opts, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce))
		redirect, err := idp.Login(ctx, &http.Client{}, conf.AuthCodeURL(state, opts...), account, password)
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		if got := redirect.Scheme + "://" + redirect.Host + redirect.Path; got != webRedirect {
			t.Fatalf("login ended at %s, want the redirect_uri %s", redirect, webRedirect)
		}
		return redirect, pkce, state, nonce
	}

	t.Run("offline_access with prompt=consent gives tokens with the claims and a refresh token", func(t *testing.T) {
		if err := p.ResetCounts(ctx); err != nil {
			t.Fatal(err)
		}
		redirect, pkce, state, nonce := authorize(t, "alice", "alice-pw", oauth2.SetAuthURLParam("prompt", "consent"))
		q := redirect.Query()
		if q.Get("state") != state || q.Get("code") == "" || q.Get("iss") != p.Issuer() {
			t.Fatalf("redirect %s: want state, code and iss=%s", redirect, p.Issuer())
		}
		tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pkce))
		if err != nil {
			t.Fatalf("code exchange: %v", err)
		}
		raw, _ := tok.Extra("id_token").(string)
		idt, err := verifier.Verify(ctx, raw)
		if err != nil {
			t.Fatalf("verify ID token: %v", err)
		}
		var claims struct {
			Email             string `json:"email"`
			EmailVerified     bool   `json:"email_verified"`
			PreferredUsername string `json:"preferred_username"`
			Name              string `json:"name"`
		}
		if err := idt.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		if idt.Subject != "alice" || idt.Nonce != nonce || claims.Email != "alice@example.com" || !claims.EmailVerified ||
			claims.PreferredUsername != "alice.a" || claims.Name != "Alice A" {
			t.Errorf("ID token sub=%q nonce ok=%v claims=%+v, want alice's", idt.Subject, idt.Nonce == nonce, claims)
		}
		if tok.RefreshToken == "" {
			t.Fatal("no refresh_token for offline_access with prompt=consent")
		}
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Hour)
		refreshed, err := conf.TokenSource(ctx, &expired).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if refreshed.AccessToken == "" || refreshed.AccessToken == tok.AccessToken {
			t.Errorf("refresh gave access token %q, want a new one", refreshed.AccessToken)
		}
		c, err := p.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := c.Paths["/interaction/:uid"]; n != 4 {
			t.Errorf("%d interaction requests, want 4 (login form and consent page, each shown and submitted)", n)
		}
		if c.GrantTypes["authorization_code"] != 1 || c.GrantTypes["refresh_token"] != 1 {
			t.Errorf("token grant counts = %v, want one authorization_code and one refresh_token", c.GrantTypes)
		}
	})

	t.Run("without prompt=consent the user sees only the login form", func(t *testing.T) {
		if err := p.ResetCounts(ctx); err != nil {
			t.Fatal(err)
		}
		redirect, _, _, _ := authorize(t, "bob", "any password")
		if redirect.Query().Get("code") == "" {
			t.Fatalf("redirect %s, want a code", redirect)
		}
		c, err := p.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// One page shown (GET) and one form submitted (POST).
		if n := c.Paths["/interaction/:uid"]; n != 2 {
			t.Errorf("%d interaction requests, want 2 (the login form only, no consent page)", n)
		}
	})

	t.Run("the code exchange without the PKCE verifier is refused", func(t *testing.T) {
		redirect, _, _, _ := authorize(t, "bob", "any password")
		_, err := conf.Exchange(ctx, redirect.Query().Get("code"))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" && re.ErrorCode != "invalid_request" {
			t.Errorf("exchange without code_verifier: %v, want invalid_grant or invalid_request", err)
		}
	})

	for _, tc := range []struct{ name, account, password string }{
		{"a wrong password is refused with access_denied", "alice", "wrong"},
		{"an account not in the config is refused with access_denied", "mallory", "x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			redirect, _, _, _ := authorize(t, tc.account, tc.password)
			if q := redirect.Query(); q.Get("error") != "access_denied" || q.Get("code") != "" {
				t.Errorf("redirect %s, want error=access_denied and no code", redirect)
			}
		})
	}
}

// tokenResponse is a token endpoint answer, success or error.
type tokenResponse struct {
	status           int
	Error            string `json:"error"`
	IDToken          string `json:"id_token"`
	AccessToken      string `json:"access_token"`
	RefreshToken     string `json:"refresh_token"`
	AuthReqID        string `json:"auth_req_id"`
	ExpiresIn        int    `json:"expires_in"`
	Interval         int    `json:"interval"`
	ErrorDescription string `json:"error_description"`
}

func postForm(t *testing.T, ctx context.Context, endpoint, id, secret string, form url.Values) tokenResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var tr tokenResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatalf("POST %s: %d %s: %v", endpoint, resp.StatusCode, b, err)
	}
	tr.status = resp.StatusCode
	return tr
}

func backchannel(t *testing.T, ctx context.Context, p *idp.IdP, id, secret string, form url.Values) tokenResponse {
	t.Helper()
	return postForm(t, ctx, p.Issuer()+"/backchannel", id, secret, form)
}

func pollCIBA(t *testing.T, ctx context.Context, p *idp.IdP, id, secret, authReqID string) tokenResponse {
	t.Helper()
	return postForm(t, ctx, p.Issuer()+"/token", id, secret, url.Values{"grant_type": {idp.GrantCIBA}, "auth_req_id": {authReqID}})
}

func TestCIBAPoll(t *testing.T) {
	p := idp.Start(t, idp.Config{Clients: []idp.Client{relayClient()}, Accounts: accounts(), CIBAInterval: 1})
	ctx := testContext(t)
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if err := p.ResetCounts(ctx); err != nil {
		t.Fatal(err)
	}

	bc := backchannel(t, ctx, p, relayID, relaySecret, url.Values{
		"scope": {"openid email profile offline_access"}, "login_hint": {"alice@example.com"}, "binding_message": {"W4-7"},
	})
	if bc.status != http.StatusOK || bc.AuthReqID == "" || bc.ExpiresIn <= 0 || bc.Interval != 1 {
		t.Fatalf("backchannel answer %+v, want 200 with auth_req_id, expires_in and interval 1", bc)
	}
	if r := pollCIBA(t, ctx, p, relayID, relaySecret, bc.AuthReqID); r.status != http.StatusBadRequest || r.Error != "authorization_pending" {
		t.Fatalf("poll before approval: %d %s, want 400 authorization_pending", r.status, r.Error)
	}
	pending, err := p.Pending(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 1 || pending[0].AuthReqID != bc.AuthReqID || pending[0].AccountID != "alice" ||
		pending[0].ClientID != relayID || pending[0].BindingMessage != "W4-7" {
		t.Fatalf("pending = %+v, want the one request of alice", pending)
	}
	res, err := p.ApproveCIBA(ctx, "alice")
	if err != nil {
		t.Fatalf("approve: %v", err)
	}
	if !slices.Equal(res.AuthReqIDs, []string{bc.AuthReqID}) {
		t.Errorf("approved %v, want %s", res.AuthReqIDs, bc.AuthReqID)
	}
	tok := pollCIBA(t, ctx, p, relayID, relaySecret, bc.AuthReqID)
	if tok.status != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("poll after approval: %+v, want tokens with a refresh token", tok)
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: relayID}).Verify(ctx, tok.IDToken)
	if err != nil {
		t.Fatalf("verify CIBA ID token: %v", err)
	}
	var claims struct {
		Email string `json:"email"`
	}
	if err := idt.Claims(&claims); err != nil || idt.Subject != "alice" || claims.Email != "alice@example.com" {
		t.Errorf("CIBA ID token sub=%q email=%q (%v), want alice", idt.Subject, claims.Email, err)
	}
	if r := pollCIBA(t, ctx, p, relayID, relaySecret, bc.AuthReqID); r.Error != "invalid_grant" {
		t.Errorf("second redemption: %d %s, want invalid_grant", r.status, r.Error)
	}
	if rest, err := p.Pending(ctx); err != nil || len(rest) != 0 {
		t.Errorf("pending after redemption = %v (%v), want none", rest, err)
	}

	c, err := p.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The verifier's /jwks fetch is counted too; the CIBA calls are exact.
	if c.Paths["/backchannel"] != 1 || c.Paths["/token"] != 3 ||
		!mapsEqual(c.GrantTypes, map[string]int{idp.GrantCIBA: 3}) ||
		!mapsEqual(c.TokenErrors, map[string]int{"authorization_pending": 1, "invalid_grant": 1}) {
		t.Errorf("counts = %+v, want 1 /backchannel, 3 CIBA polls: 1 authorization_pending, 1 success, 1 invalid_grant", c)
	}

	t.Run("an unknown login_hint is unknown_user_id", func(t *testing.T) {
		r := backchannel(t, ctx, p, relayID, relaySecret, url.Values{"scope": {"openid"}, "login_hint": {"mallory"}})
		if r.status != http.StatusBadRequest || r.Error != "unknown_user_id" {
			t.Errorf("backchannel for mallory: %d %s, want 400 unknown_user_id", r.status, r.Error)
		}
	})

	t.Run("a denied request polls access_denied", func(t *testing.T) {
		bc := backchannel(t, ctx, p, relayID, relaySecret, url.Values{"scope": {"openid"}, "login_hint": {"bob"}})
		if bc.AuthReqID == "" {
			t.Fatalf("backchannel: %+v", bc)
		}
		if _, err := p.DenyCIBA(ctx, bc.AuthReqID); err != nil {
			t.Fatalf("deny: %v", err)
		}
		if r := pollCIBA(t, ctx, p, relayID, relaySecret, bc.AuthReqID); r.status != http.StatusBadRequest || r.Error != "access_denied" {
			t.Errorf("poll after denial: %d %s, want 400 access_denied", r.status, r.Error)
		}
		if _, err := p.DenyCIBA(ctx, bc.AuthReqID); !errors.Is(err, idp.ErrNoPending) {
			t.Errorf("second deny: %v, want ErrNoPending", err)
		}
	})
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestCIBAPing(t *testing.T) {
	type ping struct{ auth, authReqID string }
	pings := make(chan ping, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			AuthReqID string `json:"auth_req_id"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		pings <- ping{r.Header.Get("Authorization"), body.AuthReqID}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(recv.Close)

	pinger := idp.Client{ID: "pinger", Secret: "pinger-secret", GrantTypes: []string{idp.GrantCIBA},
		BackchannelTokenDeliveryMode: "ping", BackchannelClientNotificationEndpoint: recv.URL + "/notify"}
	p := idp.Start(t, idp.Config{Clients: []idp.Client{pinger}, Accounts: accounts()})
	ctx := testContext(t)

	bc := backchannel(t, ctx, p, "pinger", "pinger-secret", url.Values{
		"scope": {"openid"}, "login_hint": {"bob"}, "client_notification_token": {"notify-token-1"},
	})
	if bc.AuthReqID == "" {
		t.Fatalf("backchannel: %+v", bc)
	}
	res, err := p.ApproveCIBA(ctx, bc.AuthReqID)
	if err != nil || len(res.PingErrors) != 0 {
		t.Fatalf("approve: %+v %v", res, err)
	}
	select {
	case got := <-pings:
		if got.auth != "Bearer notify-token-1" || got.authReqID != bc.AuthReqID {
			t.Errorf("ping %+v, want the client_notification_token and auth_req_id", got)
		}
	case <-ctx.Done():
		t.Fatal("no ping received")
	}
	if r := pollCIBA(t, ctx, p, "pinger", "pinger-secret", bc.AuthReqID); r.status != http.StatusOK || r.IDToken == "" {
		t.Errorf("token after ping: %+v", r)
	}
}

func TestRestartKeepsKeysAndPendingRequests(t *testing.T) {
	p := idp.Start(t, idp.Config{Clients: []idp.Client{relayClient()}, Accounts: accounts()})
	ctx := testContext(t)
	jwks := func() string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.Issuer()+"/jwks", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("jwks: %v", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := jwks()
	var set struct {
		Keys []struct {
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	if err := json.Unmarshal([]byte(before), &set); err != nil || len(set.Keys) != 2 {
		t.Fatalf("jwks %s (%v), want an RS256 and an ES256 key", before, err)
	}

	bc := backchannel(t, ctx, p, relayID, relaySecret, url.Values{"scope": {"openid"}, "login_hint": {"alice"}})
	if bc.AuthReqID == "" {
		t.Fatalf("backchannel: %+v", bc)
	}

	p.Kill()
	p.Restart()

	if after := jwks(); after != before {
		t.Errorf("jwks changed across restart:\nbefore %s\nafter  %s", before, after)
	}
	if r := pollCIBA(t, ctx, p, relayID, relaySecret, bc.AuthReqID); r.Error != "authorization_pending" {
		t.Fatalf("poll after restart: %d %s, want authorization_pending", r.status, r.Error)
	}
	if _, err := p.ApproveCIBA(ctx, bc.AuthReqID); err != nil {
		t.Fatalf("approve after restart: %v", err)
	}
	if r := pollCIBA(t, ctx, p, relayID, relaySecret, bc.AuthReqID); r.status != http.StatusOK || r.IDToken == "" {
		t.Errorf("token after restart and approval: %+v", r)
	}
}
