package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// fedRAR may send payment_initiation details.
var fedRAR = testutil.Client{ID: "fed-rar", Secret: "fed-rar-secret"}

const fedDetails = `[{"type":"payment_initiation","actions":["initiate"],"instructedAmount":{"amount":"50.00","currency":"EUR"},"creditorName":"ACME"}]`

// startFederationRAR starts node-oidc-provider, with rich authorization
// requests for rarTypes (none: off), and cibaproxy on the oidc upstream
// accepting payment_initiation details from fed-rar.
func startFederationRAR(t *testing.T, rarTypes []string) *fedEnv {
	t.Helper()
	schema := filepath.Join(t.TempDir(), "payment_initiation.json")
	if err := os.WriteFile(schema, []byte(`{"type":"object","required":["instructedAmount"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	config := filepath.Join(t.TempDir(), "operator.yaml")
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(f *testutil.Federation) idp.Config {
			return idp.Config{
				Clients:  []idp.Client{{ID: fedRAR.ID, Secret: fedRAR.Secret, RedirectURIs: []string{f.Callback}}},
				Accounts: []idp.Account{{ID: "alice", Password: "alice-password", Email: "alice@example.com", EmailVerified: true}},
				RARTypes: rarTypes,
			}
		},
		Config: func(f *testutil.Federation) string {
			text := fedRARConfig(f, schema)
			// The same file for the operator's commands (fedEnv.op).
			if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			return text
		},
		Options: testutil.Options{Binary: binary, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL},
	})
	e.srv = f.Server
	return &fedEnv{env: e, idp: f.IdP, op: operator{e: e, config: config}}
}

// fedRARConfig is startFederationRAR's cibaproxy configuration: fed-rar
// may send payment_initiation details, with CIBA and the device grant.
func fedRARConfig(f *testutil.Federation, schema string) string {
	return f.OIDCProxyConfig([]string{"email"}, fmt.Sprintf(`authorization_details:
  types:
    payment_initiation:
      schema_file: %s
clients:
  - client_id: %s
    client_secret: %s
    backchannel_token_delivery_mode: poll
    device_authorization: true
    authorization_details_types: [payment_initiation]
    resources: [https://api.example.test/]
device:
  interval: 1s
`, schema, fedRAR.ID, fedRAR.Secret))
}

// TestFederationAuthorizationDetails: with the oidc upstream, details go to
// the IdP in its authorization request when its discovery lists their
// type, and the IdP's authorization_details come back in the tokens; an IdP
// that does not list the type gets no request: bc-authorize refuses it
// with invalid_authorization_details naming the type.
func TestFederationAuthorizationDetails(t *testing.T) {
	t.Parallel()
	form := url.Values{"scope": {"openid email"}, "login_hint": {"alice@example.com"}, "authorization_details": {fedDetails},
		"resource": {"https://api.example.test/"}}

	t.Run("an IdP without the type: refused at bc-authorize", func(t *testing.T) {
		t.Parallel()
		f := startFederationRAR(t, nil)
		r := f.authorize(fedRAR, form)
		checkError(t, "bc-authorize", r, http.StatusBadRequest, "invalid_authorization_details")
		if d := r.Str("error_description"); !strings.Contains(d, "payment_initiation") || !strings.Contains(d, "authorization_details_types_supported") {
			t.Errorf("error_description %q; want it to name the type and the discovery member", d)
		}
		if n := len(f.hook.Messages()); n != 0 {
			t.Errorf("%d messages reached the user for a refused request", n)
		}
		// The device grant takes the same details, and refuses them the same way.
		r = f.post("/device_authorization", fedRAR, url.Values{"scope": {"openid"}, "authorization_details": {fedDetails}})
		checkError(t, "device_authorization", r, http.StatusBadRequest, "invalid_authorization_details")
		if d := r.Str("error_description"); !strings.Contains(d, "payment_initiation") || !strings.Contains(d, "authorization_details_types_supported") {
			t.Errorf("device_authorization error_description %q; want it to name the type and the discovery member", d)
		}
	})

	t.Run("an IdP with the type: sent, approved, in the tokens", func(t *testing.T) {
		t.Parallel()
		f := startFederationRAR(t, []string{"payment_initiation"})
		req := request{Client: fedRAR, Binding: tag("Rar")}
		form := url.Values{"binding_message": {req.Binding}}
		for k, v := range map[string][]string{"scope": {"openid email"}, "login_hint": {"alice@example.com"}, "authorization_details": {fedDetails},
			"resource": {"https://api.example.test/"}} {
			form[k] = v
		}
		r := f.authorize(fedRAR, form)
		if r.Status != http.StatusOK {
			t.Fatalf("bc-authorize: %s", r)
		}
		req.AuthReqID = r.Str("auth_req_id")
		b := newBrowser(t)
		authURL := f.approve(b, f.message(req).ApproveURL)
		u, err := url.Parse(authURL)
		if err != nil || u.Query().Get("authorization_details") == "" || u.Query().Get("resource") != "https://api.example.test/" {
			t.Fatalf("authorization URL %s (%v); want authorization_details and resource", authURL, err)
		}
		back := f.signIn(b, authURL, "alice", "alice-password")
		if resp, page := b.do("GET", back, nil); resp.StatusCode != 200 {
			t.Fatalf("callback: %d\n%s", resp.StatusCode, page)
		}
		tok := checkTokens(t, "poll after approval", f.token(fedRAR, req.AuthReqID))
		got, _ := json.Marshal(tok.JSON["authorization_details"])
		var a, w any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal([]byte(fedDetails), &w)
		x, _ := json.Marshal(a)
		y, _ := json.Marshal(w)
		if string(x) != string(y) {
			t.Errorf("token response authorization_details = %s; want the IdP's, %s", got, fedDetails)
		}
		// The digest of what the page showed is recorded with the
		// federated decision, as on the local path.
		f.mustRecordApproved(t, req.AuthReqID)
	})

	t.Run("the device grant with an IdP with the type: shown, sent, approved, recorded, in the tokens", func(t *testing.T) {
		t.Parallel()
		f := startFederationRAR(t, []string{"payment_initiation"})
		start := f.post("/device_authorization", fedRAR, url.Values{"scope": {"openid email"}, "authorization_details": {fedDetails},
			"resource": {"https://api.example.test/"}})
		if start.Status != http.StatusOK {
			t.Fatalf("device_authorization: %s", start)
		}
		p := newPage(t, f.srv)
		status, body, csrf := p.enter(start.Str("user_code"))
		if status != http.StatusOK || csrf == "" || !strings.Contains(body, "50.00 EUR") || !strings.Contains(body, "ACME") {
			t.Fatalf("confirming the code: %d; want the details shown\n%s", status, body)
		}
		digest := detailsDigestRE.FindStringSubmatch(body)
		if digest == nil {
			t.Fatalf("the device page posts no details digest\n%s", body)
		}
		req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, f.srv.URL+"/device", strings.NewReader(url.Values{
			"csrf": {csrf}, "user_code": {start.Str("user_code")}, "action": {"approve"}, "details_digest": {digest[1]}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := p.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		authURL := resp.Header.Get("Location")
		u, err := url.Parse(authURL)
		if resp.StatusCode != http.StatusSeeOther || err != nil || u.Query().Get("authorization_details") == "" || u.Query().Get("resource") != "https://api.example.test/" {
			t.Fatalf("Approve: %d to %q; want 303 to the IdP with authorization_details and resource", resp.StatusCode, authURL)
		}
		back, err := idp.Login(ctx(t), p.c, authURL, "alice", "alice-password")
		if err != nil {
			t.Fatalf("login at the IdP: %v", err)
		}
		cbReq, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, back.String(), nil)
		cb, err := p.c.Do(cbReq)
		if err != nil {
			t.Fatal(err)
		}
		_ = cb.Body.Close()
		if cb.StatusCode != http.StatusOK {
			t.Fatalf("callback: %d", cb.StatusCode)
		}
		tok := checkTokens(t, "device token", pollUntil(t, f.srv, fedRAR, start.Str("device_code")))
		var a, w any
		got, _ := json.Marshal(tok.JSON["authorization_details"])
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal([]byte(fedDetails), &w)
		x, _ := json.Marshal(a)
		y, _ := json.Marshal(w)
		if string(x) != string(y) {
			t.Errorf("device token response authorization_details = %s; want the IdP's, %s", got, fedDetails)
		}
		f.mustRecordApproved(t, start.Str("device_code"))
	})
}

// detailsDigestRE finds the digest the approval or device page posts.
var detailsDigestRE = regexp.MustCompile(`name="details_digest" value="([^"]+)"`)

// post POSTs form to the server's path as client c.
func (f *fedEnv) post(path string, c testutil.Client, form url.Values) *testutil.Response {
	f.t.Helper()
	r, err := testutil.PostForm(ctx(f.t), f.srv.URL+path, c, form)
	if err != nil {
		f.t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

// mustRecordApproved checks with `cibaproxy requests show --json` that
// request id was approved with the digest of its authorization_details
// recorded with the decision.
func (f *fedEnv) mustRecordApproved(t *testing.T, id string) {
	t.Helper()
	var v struct {
		State    string `json:"state"`
		Digest   string `json:"authorization_details_digest"`
		Approved string `json:"approved_details_digest"`
	}
	out := f.op.mustCLI(t, "requests", "show", id, "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("requests show --json: %v\n%s", err, out)
	}
	if v.Digest == "" || v.Approved != v.Digest {
		t.Errorf("requests show: details digest %q, approved %q; want the approval to record the digest\n%s", v.Digest, v.Approved, out)
	}
}
