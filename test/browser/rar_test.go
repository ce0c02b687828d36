package browser

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// agentDetails is an agent-style request: a payment (amount, currency,
// creditor) and an account read.
const agentDetails = `[
 {"type":"payment_initiation","actions":["initiate"],"locations":["https://bank.example/payments"],
  "instructedAmount":{"currency":"EUR","amount":"123.45"},"creditorName":"Hotel Seeblick",
  "creditorAccount":{"iban":"DE02100100109307118603"},"remittanceInformationUnstructured":"Booking 4711"},
 {"type":"account_information","actions":["read_balances"],"locations":["https://bank.example/accounts"]}
]`

// decodeJSON decodes b with numbers as written.
func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// accessTokenClaims verifies the access token against cibaproxy's keys
// and returns its claims.
func accessTokenClaims(t *testing.T, issuer, token string) map[string]json.RawMessage {
	t.Helper()
	payload, err := oidc.NewRemoteKeySet(ctx(t), issuer+"/jwks").VerifySignature(ctx(t), token)
	if err != nil {
		t.Fatalf("the access token does not verify against cibaproxy's keys: %v", err)
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// TestRichAuthorizationInBrowser: an agent acting for the user asks for a
// payment and an account read; the approval page shows both in full
// (amount with currency, creditor) and says the agent acts on the user's
// behalf; once approved, the access token carries exactly the list shown
// and an act claim naming the agent. An ordinary client's token has no
// act claim.
func TestRichAuthorizationInBrowser(t *testing.T) {
	browser := startChromium(t)
	hook := testutil.NewWebhook(t)
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: testutil.RARConfig(t, testutil.QuickstartConfig()), WebhookURL: hook.URL})
	e := &env{srv: srv, hook: hook, client: testutil.Agent}

	approve := func(t *testing.T, req request, shows ...string) {
		t.Helper()
		b := newTab(t, browser)
		if status := b.open(req.ApproveURL); status != http.StatusOK {
			t.Fatalf("approval page: %d", status)
		}
		b.mustShow("approval page", shows...)
		b.do("type the password", chromedp.SendKeys(chromedp.CSS(passwordInput), "alice-password"))
		if status := b.click(approveButton); status != http.StatusOK {
			t.Fatalf("Approve: %d\n%s", status, b.textNoFatal())
		}
		b.mustShow("after Approve", "You approved")
	}

	t.Run("the agent's two details are shown, approved and carried exactly into the access token", func(t *testing.T) {
		req := e.authorize(t, "alice", "openid", url.Values{"authorization_details": {agentDetails}})
		m, err := hook.WaitBinding(ctx(t), req.Binding)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			ActsForUser bool            `json:"acts_for_user"`
			Details     json.RawMessage `json:"authorization_details"`
			Text        string          `json:"text"`
		}
		if err := json.Unmarshal(m.Raw, &body); err != nil {
			t.Fatal(err)
		}
		if !body.ActsForUser || !reflect.DeepEqual(decodeJSON(t, body.Details), decodeJSON(t, []byte(agentDetails))) ||
			!strings.Contains(body.Text, "instructedAmount: 123.45 EUR") || !strings.Contains(body.Text, testutil.AgentName+" acting on your behalf") {
			t.Errorf("the webhook message does not carry the details: %s", m.Raw)
		}
		approve(t, req, testutil.AgentName+" acting on your behalf asks to do what is listed below",
			"payment_initiation", "123.45 EUR", "Hotel Seeblick", "DE02100100109307118603", "Booking 4711", "initiate",
			"account_information", "read_balances", "https://bank.example/accounts", req.Binding)
		r := e.poll(t, req)
		mustTokens(t, "poll after approval", r)
		claims := accessTokenClaims(t, srv.URL, r.Str("access_token"))
		shown := decodeJSON(t, []byte(agentDetails))
		if got := decodeJSON(t, claims["authorization_details"]); !reflect.DeepEqual(got, shown) {
			t.Errorf("access token authorization_details = %s\nwant what was shown: %s", claims["authorization_details"], agentDetails)
		}
		var resp struct {
			Details json.RawMessage `json:"authorization_details"`
		}
		if err := json.Unmarshal(r.Body, &resp); err != nil || !reflect.DeepEqual(decodeJSON(t, resp.Details), shown) {
			t.Errorf("token response authorization_details = %s (%v)", resp.Details, err)
		}
		if got := decodeJSON(t, claims["act"]); !reflect.DeepEqual(got, map[string]any{"sub": testutil.Agent.ID}) {
			t.Errorf("access token act = %s, want {\"sub\":%q}", claims["act"], testutil.Agent.ID)
		}
	})

	t.Run("an ordinary client's access token has no act claim", func(t *testing.T) {
		plain := &env{srv: srv, hook: hook, client: testutil.DemoPoll}
		req := plain.authorize(t, "alice", "openid", nil)
		approve(t, req, "Demo poll client asks to sign you in as alice")
		r := plain.poll(t, req)
		mustTokens(t, "poll after approval", r)
		if act, ok := accessTokenClaims(t, srv.URL, r.Str("access_token"))["act"]; ok {
			t.Errorf("access token act = %s, want none", act)
		}
	})
}
