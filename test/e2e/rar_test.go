package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/smtpsink"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// rarPayment is a payment_initiation list as a client sends it.
const rarPayment = `[{"type":"payment_initiation","actions":["initiate"],"instructedAmount":{"currency":"EUR","amount":"250.00"},"creditorName":"ACME Flights"}]`

// decodeNumbers decodes JSON text keeping numbers as written.
func decodeNumbers(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// startRAR starts the quick start with Rich Authorization Requests on
// (testutil.RARConfig) and the webhook channel.
func startRAR(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{
		Binary: binary, Config: testutil.RARConfig(t, testutil.QuickstartConfig()),
		WebhookURL: e.hook.URL, NotifyURL: e.notify.URL,
	})
	return e
}

// TestSignedRequestObjectDetails: authorization_details inside a signed
// request object reach the user and the tokens; the same request object
// with a detail tampered with (the amount raised, the signature kept) is
// refused, and so is the untouched one replayed.
func TestSignedRequestObjectDetails(t *testing.T) {
	t.Parallel()
	e := startRAR(t)
	key := demoKey(t)
	poll := testutil.DemoPoll
	now := time.Now()
	binding := tag("RAR")
	claims := map[string]any{
		"iss": poll.ID, "aud": e.srv.URL, "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(5 * time.Minute).Unix(), "jti": jti(),
		"scope": "openid", "login_hint": "alice", "binding_message": binding,
		"authorization_details": decodeNumbers(t, []byte(rarPayment)),
	}
	ro := sign(t, key, claims)
	send := func(ro string) *testutil.Response {
		t.Helper()
		r, err := testutil.PostForm(ctx(t), e.url("/bc-authorize"), poll, url.Values{"request": {ro}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// The detail tampered with: the payload re-encoded with another amount,
	// header and signature kept.
	parts := strings.Split(ro, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	forged := bytes.Replace(payload, []byte(`"250.00"`), []byte(`"25000.00"`), 1)
	if bytes.Equal(forged, payload) {
		t.Fatalf("the amount is not in the payload %s", payload)
	}
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]
	checkError(t, "/bc-authorize with a tampered detail in the request object", send(tampered), http.StatusBadRequest, "invalid_request")

	r := send(ro)
	if r.Status != http.StatusOK || r.Str("auth_req_id") == "" {
		t.Fatalf("/bc-authorize with the signed request object: %s", r)
	}
	req := request{Client: poll, AuthReqID: r.Str("auth_req_id"), Binding: binding}
	m := e.answer(req, "approved")
	var body struct {
		Details json.RawMessage `json:"authorization_details"`
		Digest  string          `json:"authorization_details_digest"`
	}
	if err := json.Unmarshal(m.Raw, &body); err != nil || !reflect.DeepEqual(decodeNumbers(t, body.Details), decodeNumbers(t, []byte(rarPayment))) || body.Digest == "" {
		t.Errorf("the webhook message does not carry the request object's details: %s", m.Raw)
	}
	tr := checkTokens(t, "/token for the signed request", e.token(poll, req.AuthReqID))
	var resp struct {
		Details json.RawMessage `json:"authorization_details"`
	}
	if err := json.Unmarshal(tr.Body, &resp); err != nil || !reflect.DeepEqual(decodeNumbers(t, resp.Details), decodeNumbers(t, []byte(rarPayment))) {
		t.Errorf("token response authorization_details = %s, want %s", resp.Details, rarPayment)
	}

	checkError(t, "/bc-authorize with the request object replayed", send(ro), http.StatusBadRequest, "invalid_request")
	checkError(t, "/bc-authorize with the tampered request object replayed", send(tampered), http.StatusBadRequest, "invalid_request")
}

// TestEmailCarriesDetails: with the e-mail channel, the agent's request
// reaches the user's mailbox saying the agent acts on their behalf, with
// the payment readable: amount with currency and creditor.
func TestEmailCarriesDetails(t *testing.T) {
	t.Parallel()
	tlsCfg, _ := smtpsink.SelfSigned(t)
	sink := smtpsink.Start(t, smtpsink.Options{TLS: tlsCfg, Users: map[string]string{"cibaproxy": "smtp-secret"}})
	caFile := filepath.Join(t.TempDir(), "smtp-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsCfg.Certificates[0].Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testutil.RARConfig(t, testutil.QuickstartConfig(), "channels:\n  webhook:\n    url: ${CIBAPROXY_WEBHOOK_URL}\n", fmt.Sprintf(`channels:
  email:
    host: %s
    port: %d
    tls: starttls
    ca_file: %s
    username: cibaproxy
    password: ${SMTP_PASSWORD}
    from: "Sign-in <signin@bank.example>"
`, sink.Host(), sink.Port(), caFile))
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, Env: []string{"SMTP_PASSWORD=smtp-secret"}})
	e := &env{t: t, srv: srv}
	r := e.authorize(testutil.Agent, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "authorization_details": {rarPayment}})
	if r.Status != http.StatusOK {
		t.Fatalf("/bc-authorize: %s", r)
	}
	m, err := sink.WaitMessage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		testutil.AgentName + " acting on your behalf asks to do what is listed below.",
		"1. payment_initiation", "instructedAmount: 250.00 EUR", "creditorName: ACME Flights", "actions: initiate",
	} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("the e-mail lacks %q:\n%s", want, m.Body)
		}
	}
}
