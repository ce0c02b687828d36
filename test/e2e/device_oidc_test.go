package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// The device grant (RFC 8628) with the oidc upstream: the verification page
// signs the user in at a real OpenID Provider (node-oidc-provider), and the
// device receives the provider's own tokens.

// fedTV is a public device client of cibaproxy: it has no secret here, so
// its registration at the IdP (another id, with a secret) is set with
// upstream_credentials.
var fedTV = testutil.Client{ID: "fed-tv"}

const (
	fedTVAtIdP       = "fed-tv-at-idp"
	fedTVAtIdPSecret = "fed-tv-idp-secret"
)

// startDeviceFederation starts the IdP with alice and mallory and cibaproxy
// on the oidc upstream with one public device client.
func startDeviceFederation(t *testing.T) (*testutil.Server, *idp.IdP) {
	t.Helper()
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(f *testutil.Federation) idp.Config {
			return idp.Config{
				Clients: []idp.Client{
					{ID: fedTVAtIdP, Secret: fedTVAtIdPSecret, RedirectURIs: []string{f.Callback}},
				},
				Accounts: []idp.Account{
					{ID: "alice", Password: "alice-password", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice"},
					{ID: "mallory", Password: "mallory-password", Email: "mallory@example.com", EmailVerified: true, PreferredUsername: "mallory"},
				},
			}
		},
		Config: func(f *testutil.Federation) string {
			return f.OIDCProxyConfig([]string{"email"}, fmt.Sprintf(`clients:
  - client_id: %s
    client_name: Federated TV
    token_endpoint_auth_methods: [none]
    device_authorization: true
    upstream_credentials:
      client_id: %s
      client_secret: %s
device:
  interval: 1s
`, fedTV.ID, fedTVAtIdP, fedTVAtIdPSecret))
		},
		Options: testutil.Options{Binary: binary, WebhookURL: testutil.NewWebhook(t).URL},
	})
	return f.Server, f.IdP
}

// approveAtIdP runs the verification page in a fresh browser: it opens
// verification_uri_complete, confirms the code, presses Approve, signs in
// at the IdP as account and follows the IdP back to cibaproxy's callback;
// it returns the callback's answer.
func approveAtIdP(t *testing.T, srv *testutil.Server, userCode, account, password string) (int, string) {
	t.Helper()
	p := newPage(t, srv)
	status, body, csrf := p.enter(userCode)
	if status != 200 || csrf == "" {
		t.Fatalf("confirming the code: %d\n%s", status, body)
	}
	if strings.Contains(body, `name="password"`) {
		t.Errorf("the page asks for a password although the user signs in at the IdP\n%s", body)
	}
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, srv.URL+"/device",
		strings.NewReader(url.Values{"csrf": {csrf}, "user_code": {userCode}, "action": {"approve"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.c.Do(req)
	if err != nil {
		t.Fatalf("Approve: %v", err)
	}
	_ = resp.Body.Close()
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || authURL == "" {
		t.Fatalf("Approve: %d to %q, want 303 to the IdP", resp.StatusCode, authURL)
	}
	au, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	if got := au.Query().Get("client_id"); got != fedTVAtIdP {
		t.Errorf("authorization request client_id = %q, want the client's id at the IdP %q", got, fedTVAtIdP)
	}
	if au.Query().Has("login_hint") {
		t.Errorf("authorization request names a user (login_hint) for a device request: %s", authURL)
	}
	back, err := idp.Login(ctx(t), p.c, authURL, account, password)
	if err != nil {
		t.Fatalf("login at the IdP as %s: %v", account, err)
	}
	if !strings.HasPrefix(back.String(), srv.URL+"/approve/callback?") {
		t.Fatalf("the IdP sent the browser to %s, not cibaproxy's callback", back)
	}
	req, _ = http.NewRequestWithContext(ctx(t), http.MethodGet, back.String(), nil)
	resp, err = p.c.Do(req)
	if err != nil {
		t.Fatalf("callback: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// verifyFromIdP checks an ID token against the IdP's keys, issued to the
// client's registration at the IdP, and returns its subject.
func verifyFromIdP(t *testing.T, issuer, raw string) string {
	t.Helper()
	c := context.Background()
	p, err := oidc.NewProvider(c, issuer)
	if err != nil {
		t.Fatalf("IdP discovery: %v", err)
	}
	tok, err := p.Verifier(&oidc.Config{ClientID: fedTVAtIdP}).Verify(c, raw)
	if err != nil {
		t.Fatalf("the ID token does not verify against the IdP's keys for %s: %v", fedTVAtIdP, err)
	}
	if !slices.Equal(tok.Audience, []string{fedTVAtIdP}) {
		t.Errorf("ID token aud = %v, want [%s]", tok.Audience, fedTVAtIdP)
	}
	return tok.Subject
}

func TestDeviceFlowOIDCUpstream(t *testing.T) {
	t.Parallel()
	srv, op := startDeviceFederation(t)
	var issued []string

	// RFC 8628 names no user: whoever signs in at the IdP approves, and the
	// tokens are theirs. alice and mallory each approve a request of their own.
	for _, account := range []string{"alice", "mallory"} {
		t.Run("signing in at the IdP as "+account+" approves with "+account+"'s tokens", func(t *testing.T) {
			deviceCode, userCode := deviceStart(t, srv, fedTV, "openid email")
			if r := devicePoll(t, srv, fedTV, deviceCode); r.Str("error") != "authorization_pending" {
				t.Fatalf("first poll: %s, want authorization_pending", r)
			}
			status, body := approveAtIdP(t, srv, userCode, account, account+"-password")
			if status != 200 || !strings.Contains(body, "Approved") {
				t.Fatalf("callback: %d, want the Approved page\n%s", status, body)
			}
			r := pollUntil(t, srv, fedTV, deviceCode)
			checkTokens(t, "device token", r)
			issued = append(issued, r.Str("access_token"), r.Str("id_token"), deviceCode)
			if sub := verifyFromIdP(t, op.Issuer(), r.Str("id_token")); sub != account {
				t.Errorf("ID token sub = %q, want %q", sub, account)
			}
			// The IdP's access token, not one cibaproxy minted.
			if r.Str("access_token") == "" {
				t.Error("no access_token")
			}
			checkError(t, "second redemption", devicePoll(t, srv, fedTV, deviceCode), http.StatusBadRequest, "invalid_grant")
		})
	}

	t.Run("Deny on the verification page gives access_denied", func(t *testing.T) {
		deviceCode, userCode := deviceStart(t, srv, fedTV, "openid")
		p := newPage(t, srv)
		status, body, csrf := p.enter(userCode)
		if status != 200 || csrf == "" {
			t.Fatalf("confirming the code: %d\n%s", status, body)
		}
		if status, body := p.decide(userCode, csrf, "deny", "", ""); status != 200 {
			t.Fatalf("Deny: %d\n%s", status, body)
		}
		checkError(t, "poll after Deny", devicePoll(t, srv, fedTV, deviceCode), http.StatusBadRequest, "access_denied")
	})

	t.Run("the log holds none of the IdP's tokens, the device codes nor the IdP secret", func(t *testing.T) {
		srv.Stop()
		logs := srv.Logs()
		if len(issued) != 6 {
			t.Fatalf("captured %d values, want 6", len(issued))
		}
		for _, s := range append(issued, fedTVAtIdPSecret) {
			if s == "" || strings.Contains(logs, s) {
				t.Errorf("the log contains a token or secret (%.8s…)", s)
			}
		}
	})
}
