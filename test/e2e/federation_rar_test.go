package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
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
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(f *testutil.Federation) idp.Config {
			return idp.Config{
				Clients:  []idp.Client{{ID: fedRAR.ID, Secret: fedRAR.Secret, RedirectURIs: []string{f.Callback}}},
				Accounts: []idp.Account{{ID: "alice", Password: "alice-password", Email: "alice@example.com", EmailVerified: true}},
				RARTypes: rarTypes,
			}
		},
		Config: func(f *testutil.Federation) string {
			return fmt.Sprintf(`issuer: %s
listen: %s
store:
  type: embedded
  path: ${CIBAPROXY_DATA}/cibaproxy.db
upstream:
  type: oidc
  oidc:
    issuer: %s
    match_claims: [email]
channels:
  webhook:
    url: ${CIBAPROXY_WEBHOOK_URL}
outbound:
  allow_http: true
  allow_networks: [127.0.0.0/8]
authorization_details:
  types:
    payment_initiation:
      schema_file: %s
clients:
  - client_id: %s
    client_secret: %s
    backchannel_token_delivery_mode: poll
    authorization_details_types: [payment_initiation]
    resources: [https://api.example.test/]
`, f.Issuer, f.Addr, f.IdP.Issuer(), schema, fedRAR.ID, fedRAR.Secret)
		},
		Options: testutil.Options{Binary: binary, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL},
	})
	e.srv = f.Server
	return &fedEnv{env: e, idp: f.IdP}
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
	})
}
