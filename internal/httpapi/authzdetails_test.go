package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// rarAuth authenticates the HTTP Basic user as the client of that id;
// client "pay" may send payment_initiation details. Its request objects
// are the claims as plain JSON, standing in for a verified JWT.
type rarAuth struct{}

func (rarAuth) Authenticate(_ context.Context, r *http.Request, _ url.Values, _ string) (*ciba.Client, error) {
	id, _, ok := r.BasicAuth()
	if !ok {
		return nil, ciba.Errorf(ciba.CodeInvalidClient, "no client")
	}
	c := &ciba.Client{ID: id, Name: id, Mode: ciba.ModePoll}
	switch id {
	case "pay":
		c.AuthzDetailsTypes = []string{"payment_initiation"}
	case "res":
		c.Resources = []string{"https://api.example/", "https://pay.example/", "my-api"}
	}
	return c, nil
}

func (rarAuth) RequestObject(_ context.Context, _ *ciba.Client, raw string) (map[string]any, error) {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, ciba.Errorf(ciba.CodeInvalidRequest, "bad request object")
	}
	return claims, nil
}

func (rarAuth) RequiresSignedRequest(*ciba.Client) bool { return false }

const rarPaySchema = `{"type":"object","required":["type","instructedAmount","creditorName"],"properties":{
 "instructedAmount":{"type":"object","required":["currency","amount"],
  "properties":{"currency":{"type":"string","pattern":"^[A-Z]{3}$"},"amount":{"type":"string"}}},
 "creditorName":{"type":"string"}}}`

// rarServer runs the handler with payment_initiation configured.
func rarServer(t *testing.T) (ciba.Store, *httptest.Server) {
	t.Helper()
	return rarServerWith(t, nil)
}

// rarServerWith is rarServer with the Server changed by mod first.
func rarServerWith(t *testing.T, mod func(*Server)) (ciba.Store, *httptest.Server) {
	t.Helper()
	reg, err := authzdetails.Compile(authzdetails.Schemas{"payment_initiation": []byte(rarPaySchema), "other": []byte(`{}`)},
		authzdetails.Limits{MaxBytes: 2048, MaxCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	st := memory.New()
	now := func() time.Time { return limNow }
	svc, err := ciba.NewService(ciba.Config{DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20, AuthzDetails: authzdetails.NewLive(authzdetails.Set{Registry: reg})},
		ciba.Deps{Store: st, Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
			Clients:     func(id string) (*ciba.Client, bool) { return &ciba.Client{ID: id, Mode: ciba.ModePoll}, true },
			CallbackKey: key, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Issuer: "https://ciba.test", Service: svc, Clients: rarAuth{}, Now: now, Logger: discard(),
		Approval:  &Approval{Service: svc, Passwords: fakeUpstream{}, Key: key, Logger: discard()},
		Discovery: func(context.Context) (map[string]any, error) { return map[string]any{}, nil },
		JWKS:      func() any { return map[string]any{} },
	}
	if mod != nil {
		mod(s)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return st, srv
}

const rarPayment = `{"type":"payment_initiation","instructedAmount":{"currency":"EUR","amount":"50.00"},"creditorName":"ACME"}`

// rarCanonical is rarPayment's list in canonical form.
const rarCanonical = `[{"creditorName":"ACME","instructedAmount":{"amount":"50.00","currency":"EUR"},"type":"payment_initiation"}]`

// TestBCAuthorizeAuthorizationDetails: details sent in the form (a JSON
// array, or a JSON string of one) or in the request object (an array
// claim, or a string claim) are stored on the request in one canonical
// form.
func TestBCAuthorizeAuthorizationDetails(t *testing.T) {
	st, srv := rarServer(t)
	claims := func(details any) string {
		b, _ := json.Marshal(map[string]any{"scope": "openid", "login_hint": "alice", "authorization_details": details})
		return string(b)
	}
	var arr any
	_ = json.Unmarshal([]byte("["+rarPayment+"]"), &arr)
	for name, form := range map[string]url.Values{
		"form array":            {"scope": {"openid"}, "login_hint": {"alice"}, "authorization_details": {"[" + rarPayment + "]"}},
		"form JSON string":      {"scope": {"openid"}, "login_hint": {"alice"}, "authorization_details": {mustJSON(t, "["+rarPayment+"]")}},
		"request object array":  {"request": {claims(arr)}},
		"request object string": {"request": {claims("[" + rarPayment + "]")}},
	} {
		t.Run(name, func(t *testing.T) {
			a := limPost(t, srv, PathBCAuthz, "pay", form, nil)
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.raw)
			}
			id, _ := a.body["auth_req_id"].(string)
			r, err := st.GetRequest(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if r.AuthzDetails != rarCanonical {
				t.Errorf("stored %s, want %s", r.AuthzDetails, rarCanonical)
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBCAuthorizeAuthorizationDetailsRefused: each refusal is a 400 with
// error invalid_authorization_details (RFC 9396 §5) and a description that
// names the element and field; beside a request object the parameter is
// invalid_request, like every other authentication parameter.
func TestBCAuthorizeAuthorizationDetailsRefused(t *testing.T) {
	_, srv := rarServer(t)
	form := func(details string) url.Values {
		return url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "authorization_details": {details}}
	}
	for _, tc := range []struct {
		name, client string
		form         url.Values
		code, desc   string
	}{
		{"client without types", "poll", form("[" + rarPayment + "]"), "invalid_authorization_details", "not accepted for client 'poll': it may send no authorization_details types"},
		{"not JSON", "pay", form("[{"), "invalid_authorization_details", "authorization_details is not valid JSON"},
		{"an object, not an array", "pay", form(rarPayment), "invalid_authorization_details", "must be a JSON array"},
		{"too many bytes", "pay", form("[" + rarPayment + strings.Repeat(" ", 2048) + "]"), "invalid_authorization_details", "at most 2048 are allowed"},
		{"too many elements", "pay", form("[" + rarPayment + "," + rarPayment + "," + rarPayment + "]"), "invalid_authorization_details", "has 3 elements; at most 2"},
		{"an element without type", "pay", form(`[{"creditorName":"x"}]`), "invalid_authorization_details", "authorization_details[0].type is missing"},
		{"a type not the client's", "pay", form("[" + rarPayment + `,{"type":"other"}]`), "invalid_authorization_details", "authorization_details[1].type 'other' is not allowed for this client"},
		{"a member twice", "pay", form(`[{"type":"payment_initiation","type":"other"}]`), "invalid_authorization_details", "authorization_details[0] has a member name twice"},
		{"the schema", "pay", form(strings.Replace("["+rarPayment+"]", `"EUR"`, `"euro"`, 1)), "invalid_authorization_details", "authorization_details[0].instructedAmount/currency does not match the pattern"},
		{"a missing required field", "pay", form(strings.Replace("["+rarPayment+"]", `,"creditorName":"ACME"`, "", 1)), "invalid_authorization_details", "authorization_details[0] does not match the schema: missing property 'creditorName'"},
		{"request object claim of the wrong type", "pay", url.Values{"request": {`{"scope":"openid","login_hint":"alice","authorization_details":{"type":"payment_initiation"}}`}}, "invalid_authorization_details", "must be a JSON array"},
		{"request object claim of a bad element", "pay", url.Values{"request": {`{"scope":"openid","login_hint":"alice","authorization_details":[{"type":7}]}`}}, "invalid_authorization_details", "authorization_details[0].type must be a string"},
		{"beside a request object", "pay", url.Values{"request": {`{"scope":"openid","login_hint":"alice"}`}, "authorization_details": {"[" + rarPayment + "]"}}, "invalid_request", "parameter 'authorization_details' must be inside the signed request object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := limPost(t, srv, PathBCAuthz, tc.client, tc.form, nil)
			if a.status != http.StatusBadRequest || a.body["error"] != tc.code {
				t.Fatalf("status %d %s, want 400 %s", a.status, a.raw, tc.code)
			}
			if !strings.HasPrefix(a.ctype, "application/json") {
				t.Errorf("Content-Type %q", a.ctype)
			}
			desc, _ := a.body["error_description"].(string)
			if !strings.Contains(desc, tc.desc) {
				t.Errorf("error_description %q, want it to contain %q", desc, tc.desc)
			}
		})
	}
}

// TestApprovalPageShowsAuthorizationDetails: the approval page shows every
// element of the request's authorization_details: its type, amounts with
// their currency, actions, locations and every other field, HTML-escaped.
func TestApprovalPageShowsAuthorizationDetails(t *testing.T) {
	_, st, srv := approvalServer(t, time.Now)
	now := time.Now()
	r := &ciba.AuthRequest{
		ID: "rar-req", ApprovalID: "rar-approval", ClientID: bank.ID, Mode: ciba.ModePoll, Subject: "alice", LoginHint: "alice",
		Scopes: []string{"openid"}, CreatedAt: now, ExpiresAt: now.Add(time.Minute), Interval: time.Second, Status: ciba.StatusPending,
		AuthzDetails: `[{"actions":["initiate"],"creditorAccount":{"iban":"DE02100100109307118603"},"creditorName":"Merchant <A>",` +
			`"instructedAmount":{"amount":"123.50","currency":"EUR"},"locations":["https://bank.example/pay"],"type":"payment_initiation"},` +
			`{"type":"account_information","accounts":["DE1","DE2"]}]`,
	}
	if err := st.CreateRequest(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + PathApprove + r.ApprovalID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d\n%s", resp.StatusCode, body)
	}
	for _, want := range []string{
		`<h2 id="details-heading">To approve</h2>`,
		`<code>payment_initiation</code>`,
		`<dt>instructedAmount</dt><dd class="amount"><strong>123.50 EUR</strong></dd>`,
		`<dt>actions</dt><dd>initiate</dd>`,
		`<dt>locations</dt><dd>https://bank.example/pay</dd>`,
		`<dt>creditorAccount.iban</dt><dd>DE02100100109307118603</dd>`,
		`<dt>creditorName</dt><dd>Merchant &lt;A&gt;</dd>`,
		`<code>account_information</code>`,
		`<dt>accounts</dt><dd>DE1, DE2</dd>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page does not show %s", want)
		}
	}
	if strings.Contains(body, "Merchant <A>") {
		t.Error("a value is not HTML-escaped")
	}
	// Without details, no section.
	r2 := *r
	r2.ID, r2.ApprovalID, r2.AuthzDetails = "plain-req", "plain-approval", ""
	if err := st.CreateRequest(context.Background(), &r2); err != nil {
		t.Fatal(err)
	}
	resp2, err := http.Get(srv.URL + PathApprove + r2.ApprovalID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	b2, _ := io.ReadAll(resp2.Body)
	if resp2.StatusCode != http.StatusOK || strings.Contains(string(b2), "details-heading") {
		t.Errorf("status %d; a request without details shows the section", resp2.StatusCode)
	}
}
