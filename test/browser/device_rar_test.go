package browser

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestDeviceRichAuthorizationInBrowser: an agent acting for the user
// starts the device grant (RFC 8628) with two authorization_details (RFC
// 9396 §3); in headless Chromium the user enters the code and the device
// page shows both details in full (the amount with its currency, the
// creditor) and says the agent acts on the user's behalf; the user signs
// in and approves. The device's token response, its JWT access token and
// the refreshed ones carry exactly the list shown (its digest is the one
// the page posted), and the access token names the agent in act.
func TestDeviceRichAuthorizationInBrowser(t *testing.T) {
	browser := startChromium(t)
	rar := testutil.RARConfig(t, testutil.QuickstartConfig(), "    acts_for_user: true\n", "    acts_for_user: true\n    device_authorization: true\n")
	base, err := os.ReadFile(rar)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "device-rar.yaml")
	if err := os.WriteFile(cfg, append(base, "\ndevice:\n  interval: 1s\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: cfg})

	start, err := testutil.PostForm(ctx(t), srv.URL+"/device_authorization", testutil.Agent, url.Values{
		"scope": {"openid"}, "authorization_details": {agentDetails},
	})
	if err != nil || start.Status != http.StatusOK || start.Str("device_code") == "" {
		t.Fatalf("POST /device_authorization: %v %v", start, err)
	}

	b := newTab(t, browser)
	if s := b.open(start.Str("verification_uri_complete")); s != http.StatusOK {
		t.Fatalf("GET %s: %d", start.Str("verification_uri_complete"), s)
	}
	b.mustShow("code entry", "Enter the code shown on your device")
	if s := b.click(`button[value=continue]`); s != http.StatusOK {
		t.Fatalf("continue: %d\n%s", s, b.textNoFatal())
	}
	b.mustShow("device page", testutil.AgentName+" acting on your behalf asks to do what is listed below", start.Str("user_code"),
		"payment_initiation", "123.45 EUR", "Hotel Seeblick", "DE02100100109307118603", "Booking 4711", "initiate",
		"account_information", "read_balances", "https://bank.example/accounts")
	shownDigest, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.querySelector("input[name=details_digest]").value`))
	if err != nil || shownDigest == "" {
		t.Fatalf("the device page posts no details digest: %q %v", shownDigest, err)
	}
	b.do("sign in", chromedp.SendKeys(chromedp.CSS(`#username`), "alice"), chromedp.SendKeys(chromedp.CSS(passwordInput), "alice-password"))
	if s := b.click(approveButton); s != http.StatusOK {
		t.Fatalf("approve: %d\n%s", s, b.textNoFatal())
	}
	b.mustShow("approved", "You approved the sign-in of "+testutil.AgentName)

	shown := decodeJSON(t, []byte(agentDetails))
	// carries checks that a token response and its access token carry
	// exactly the list shown, and that the access token names the agent.
	carries := func(what string, r *testutil.Response) {
		t.Helper()
		if r.Status != http.StatusOK || r.Str("access_token") == "" {
			t.Fatalf("%s: %s", what, r)
		}
		var resp struct {
			Details json.RawMessage `json:"authorization_details"`
		}
		if err := json.Unmarshal(r.Body, &resp); err != nil || !reflect.DeepEqual(decodeJSON(t, resp.Details), shown) {
			t.Errorf("%s: token response authorization_details = %s (%v)\nwant what was shown: %s", what, resp.Details, err, agentDetails)
		}
		if l, err := authzdetails.FromJSON(resp.Details); err != nil || l.Digest() != shownDigest {
			t.Errorf("%s: the token response's details are not those whose digest the page posted (%v)", what, err)
		}
		claims := accessTokenClaims(t, srv.URL, r.Str("access_token"))
		if got := decodeJSON(t, claims["authorization_details"]); !reflect.DeepEqual(got, shown) {
			t.Errorf("%s: access token authorization_details = %s\nwant what was shown: %s", what, claims["authorization_details"], agentDetails)
		}
		if got := decodeJSON(t, claims["act"]); !reflect.DeepEqual(got, map[string]any{"sub": testutil.Agent.ID}) {
			t.Errorf("%s: access token act = %s, want {\"sub\":%q}", what, claims["act"], testutil.Agent.ID)
		}
	}
	tokens, err := testutil.PostForm(ctx(t), srv.URL+"/token", testutil.Agent, url.Values{
		"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {start.Str("device_code")},
	})
	if err != nil {
		t.Fatal(err)
	}
	carries("device token response", tokens)
	if tokens.Str("refresh_token") == "" {
		t.Fatalf("no refresh token: %s", tokens)
	}
	refreshed, err := testutil.PostForm(ctx(t), srv.URL+"/token", testutil.Agent, url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {tokens.Str("refresh_token")},
	})
	if err != nil {
		t.Fatal(err)
	}
	carries("refresh", refreshed)
}
