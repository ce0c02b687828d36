package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Device grant clients that may send authorization_details: "payer" (an
// ordinary client, payment_initiation and a type the server lacks),
// "helper" (a delegate, acts_for_user) and "plain" (no types).
var (
	payer = &ciba.Client{ID: "payer", Name: "Pay Terminal", AuthzDetailsTypes: []string{"payment_initiation", "gone"},
		Resources: []string{"https://api.example/", "my-api"}}
	helper  = &ciba.Client{ID: "helper", Name: "Travel Helper", AuthzDetailsTypes: []string{"payment_initiation"}, ActsForUser: true}
	plainTV = &ciba.Client{ID: "plain", Name: "Plain TV"}
)

// rarRegistry is rarServerWith's: payment_initiation (rarPaySchema) and
// "other", at most 2 elements of at most 2048 bytes.
func rarRegistry(t *testing.T) *authzdetails.Registry {
	t.Helper()
	reg, err := authzdetails.Compile(authzdetails.Schemas{"payment_initiation": []byte(rarPaySchema), "other": []byte(`{}`)},
		authzdetails.Limits{MaxBytes: 2048, MaxCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// newDeviceRAREnv is a device grant environment with payer, helper and
// plainTV and the details types of rarRegistry.
func newDeviceRAREnv(t *testing.T, o deviceOpts) *deviceEnv {
	t.Helper()
	o.details = rarRegistry(t)
	o.clients = append(o.clients, payer, helper, plainTV)
	return newDeviceEnvWith(t, o)
}

// rarPayment2 is a second payment: two elements in one list.
const rarPayment2 = `{"type":"payment_initiation","instructedAmount":{"currency":"USD","amount":"7.25"},"creditorName":"Hotel Seeblick"}`

// TestDeviceAuthorizationDetailsRefused: every refusal of
// authorization_details, resource and audience at the device authorization
// endpoint is the one bc-authorize gives (the same checks), a 400 JSON
// error whose description names the element and field; nothing is
// created.
func TestDeviceAuthorizationDetailsRefused(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{})
	form := func(details string) url.Values {
		return url.Values{"scope": {"openid"}, "authorization_details": {details}}
	}
	for _, tc := range []struct {
		name, client string
		form         url.Values
		code, desc   string
	}{
		{"a client without types", "plain", form("[" + rarPayment + "]"), "invalid_authorization_details", "not accepted for client 'plain': it may send no authorization_details types"},
		{"a client without the device grant's types (tv)", "tv", form("[" + rarPayment + "]"), "invalid_authorization_details", "not accepted for client 'tv'"},
		{"bad JSON", "payer", form("[{"), "invalid_authorization_details", "authorization_details is not valid JSON"},
		{"an object, not an array", "payer", form(rarPayment), "invalid_authorization_details", "must be a JSON array"},
		{"an unknown type", "payer", form(`[{"type":"nope"}]`), "invalid_authorization_details", "authorization_details[0].type 'nope' is not allowed for this client"},
		{"a type the server does not support", "payer", form(`[{"type":"gone"}]`), "invalid_authorization_details", "authorization_details[0].type 'gone' is not supported by this server"},
		{"a type not allowed for the client", "payer", form("[" + rarPayment + `,{"type":"other"}]`), "invalid_authorization_details", "authorization_details[1].type 'other' is not allowed for this client"},
		{"an element without type", "payer", form(`[{"creditorName":"x"}]`), "invalid_authorization_details", "authorization_details[0].type is missing"},
		{"a schema violation", "payer", form(strings.Replace("["+rarPayment+"]", `"EUR"`, `"euro"`, 1)), "invalid_authorization_details", "authorization_details[0].instructedAmount/currency does not match the pattern"},
		{"a missing required field", "payer", form(strings.Replace("["+rarPayment+"]", `,"creditorName":"ACME"`, "", 1)), "invalid_authorization_details", "authorization_details[0] does not match the schema: missing property 'creditorName'"},
		{"too many elements", "payer", form("[" + rarPayment + "," + rarPayment + "," + rarPayment + "]"), "invalid_authorization_details", "has 3 elements; at most 2"},
		{"too many bytes", "payer", form("[" + rarPayment + strings.Repeat(" ", 2048) + "]"), "invalid_authorization_details", "at most 2048 are allowed"},
		{"a resource not on the client's list", "payer", url.Values{"resource": {"https://other.example/"}}, "invalid_target", "is not one client 'payer' may ask for"},
		{"an audience not on the client's list", "payer", url.Values{"audience": {"their-api"}}, "invalid_target", "is not one client 'payer' may ask for"},
		{"a resource for a client without a list", "tv", url.Values{"resource": {"https://api.example/"}}, "invalid_target", "its resources list is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := e.call(t, PathDeviceAuthorization, tc.client, tc.form)
			if status != http.StatusBadRequest || m["error"] != tc.code {
				t.Fatalf("%d %v, want 400 %s", status, m, tc.code)
			}
			if desc, _ := m["error_description"].(string); !strings.Contains(desc, tc.desc) {
				t.Errorf("error_description %q, want it to contain %q", desc, tc.desc)
			}
		})
	}
	n := 0
	if err := e.st.ListRequests(context.Background(), func(*ciba.AuthRequest) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d requests stored after refusals, want 0", n)
	}
}

// TestDeviceAuthorizationDetailsStored: the details (a JSON array, or a
// JSON string of one, as Auth0-style clients send) are stored in canonical
// form with the device request, with the resources and audience asked for
// and, for a delegate, the actor.
func TestDeviceAuthorizationDetailsStored(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{})
	for name, form := range map[string]url.Values{
		"array":       {"authorization_details": {"[" + rarPayment + "]"}, "resource": {"https://api.example/"}, "audience": {"my-api"}},
		"JSON string": {"authorization_details": {mustJSON(t, "["+rarPayment+"]")}, "resource": {"https://api.example/"}, "audience": {"my-api"}},
	} {
		t.Run(name, func(t *testing.T) {
			dc, _ := e.start(t, "payer", form)
			r, err := e.st.GetRequest(context.Background(), dc)
			if err != nil {
				t.Fatal(err)
			}
			if r.AuthzDetails != rarCanonical || strings.Join(r.Resources, " ") != "https://api.example/ my-api" || r.Actor != "" {
				t.Errorf("stored details %s resources %v actor %q; want %s, [https://api.example/ my-api], none", r.AuthzDetails, r.Resources, r.Actor, rarCanonical)
			}
		})
	}
	t.Run("a delegate is recorded as the actor", func(t *testing.T) {
		dc, _ := e.start(t, "helper", url.Values{"authorization_details": {"[" + rarPayment + "]"}})
		r, _ := e.st.GetRequest(context.Background(), dc)
		if r.Actor != helper.ID || r.AuthzDetails != rarCanonical {
			t.Errorf("actor %q details %s", r.Actor, r.AuthzDetails)
		}
	})
	t.Run("without details nothing is stored", func(t *testing.T) {
		dc, _ := e.start(t, "payer", nil)
		r, _ := e.st.GetRequest(context.Background(), dc)
		if r.AuthzDetails != "" || r.Resources != nil {
			t.Errorf("details %q resources %v", r.AuthzDetails, r.Resources)
		}
	})
}

// TestDevicePageShowsAndRecordsDetails: after the code is entered, the
// device page shows every detail as the approval page does (amounts with
// their currency, the creditor, the delegate's wording, the operator's
// template with "All details" under it) and posts their digest. An
// approval with another digest approves nothing (409); one with the shown
// digest records it with the decision, and the device's tokens carry
// exactly that list.
func TestDevicePageShowsAndRecordsDetails(t *testing.T) {
	tpls, err := authzdetails.ParseTemplates(map[string][]byte{
		"payment_initiation": []byte(`<p class="pay">Pay {{range .Amounts}}{{.Amount}} {{.Currency}}{{end}} to {{.Value.creditorName}}</p>`),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newDeviceRAREnv(t, deviceOpts{templates: tpls})
	list := "[" + rarPayment + "," + rarPayment2 + "]"
	dc, uc := e.start(t, "helper", url.Values{"scope": {"openid"}, "authorization_details": {list}})
	stored, _ := e.st.GetRequest(context.Background(), dc)
	digest := stored.DetailsDigest()

	c := browser()
	status, body, csrf := e.enter(t, c, uc)
	if status != http.StatusOK || csrf == "" {
		t.Fatalf("continue: %d\n%s", status, body)
	}
	for _, want := range []string{
		"<strong>Travel Helper</strong> acting on your behalf asks to do what is listed below",
		`<h2 id="details-heading">To approve</h2>`,
		`<p class="pay">Pay 50.00 EUR to ACME</p>`,
		`<p class="pay">Pay 7.25 USD to Hotel Seeblick</p>`,
		"<summary>All details</summary>",
		`<dt>instructedAmount</dt><dd class="amount"><strong>50.00 EUR</strong></dd>`,
		`<dt>creditorName</dt><dd>ACME</dd>`,
		`<dt>creditorName</dt><dd>Hotel Seeblick</dd>`,
		`name="details_digest" value="` + digest + `"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the device page does not show %s", want)
		}
	}
	if m := digestField.FindStringSubmatch(body); m == nil || m[1] != digest {
		t.Fatalf("digest field %v, want %s", m, digest)
	}
	approve := func(shown string) (int, string) {
		form := url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}, "username": {"alice"}, "password": {"alice-password"}}
		if shown != "" {
			form.Set("details_digest", shown)
		}
		s, b, _ := e.page(t, c, http.MethodPost, "", form)
		return s, b
	}
	for name, shown := range map[string]string{
		"another list's digest": authzdetails.DigestOf([]byte(rarCanonical)),
		"no digest":             "",
	} {
		if s, b := approve(shown); s != http.StatusConflict || !strings.Contains(b, "nothing was approved") {
			t.Fatalf("approve with %s: %d, want 409\n%s", name, s, b)
		}
		if r, _ := e.st.GetRequest(context.Background(), dc); r.Status != ciba.StatusPending || r.ApprovedDetails != "" {
			t.Fatalf("after approving with %s: status %s, approved %q; want pending, none", name, r.Status, r.ApprovedDetails)
		}
	}
	if s, b := approve(digest); s != http.StatusOK || !strings.Contains(b, "You approved") {
		t.Fatalf("approve: %d\n%s", s, b)
	}
	r, _ := e.st.GetRequest(context.Background(), dc)
	if r.Status != ciba.StatusApproved || r.ApprovedDetails != digest || r.Subject != "sub-alice" {
		t.Fatalf("stored status %s approved %q subject %q; want approved, %s, sub-alice", r.Status, r.ApprovedDetails, r.Subject, digest)
	}
	e.clock.Add(time.Minute)
	status, m := e.poll(t, "helper", dc, nil)
	if status != http.StatusOK {
		t.Fatalf("poll: %d %v", status, m)
	}
	got, _ := json.Marshal(m["authorization_details"])
	l, err := authzdetails.FromJSON(got)
	if err != nil || l.Digest() != digest {
		t.Errorf("token response authorization_details %s, want the approved list (digest %s)", got, digest)
	}
}

// TestDevicePageWithoutDetails: a device request without details shows
// no details section and posts no digest, and approves as before; an
// ordinary client is not announced as acting for the user.
func TestDevicePageWithoutDetails(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{})
	dc, uc := e.start(t, "payer", nil)
	c := browser()
	status, body, csrf := e.enter(t, c, uc)
	if status != http.StatusOK || strings.Contains(body, "details-heading") || strings.Contains(body, "details_digest") ||
		strings.Contains(body, "acting on your behalf") || !strings.Contains(body, "<strong>Pay Terminal</strong> asks to sign in to your account") {
		t.Fatalf("continue: %d\n%s", status, body)
	}
	s, b, _ := e.page(t, c, http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}, "username": {"alice"}, "password": {"alice-password"}})
	if s != http.StatusOK {
		t.Fatalf("approve: %d\n%s", s, b)
	}
	if r, _ := e.st.GetRequest(context.Background(), dc); r.Status != ciba.StatusApproved || r.ApprovedDetails != "" {
		t.Fatalf("status %s approved %q", r.Status, r.ApprovedDetails)
	}
}

// TestDeviceFederatedApprovalRecordsDigest: with a federated sign-in the
// device page checks the posted digest before sending the browser to the
// provider (a wrong one goes nowhere), and the digest is recorded with
// the decision when the sign-in completes.
func TestDeviceFederatedApprovalRecordsDigest(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{federated: true})
	dc, uc := e.start(t, "payer", url.Values{"authorization_details": {"[" + rarPayment + "]"}})
	stored, _ := e.st.GetRequest(context.Background(), dc)
	digest := stored.DetailsDigest()
	c := browser()
	s, body, csrf := e.enter(t, c, uc)
	if s != http.StatusOK || !strings.Contains(body, `<dt>creditorName</dt><dd>ACME</dd>`) {
		t.Fatalf("federated form: %d\n%s", s, body)
	}
	post := func(shown string) (int, *http.Response) {
		s, _, resp := e.page(t, c, http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}, "details_digest": {shown}})
		return s, resp
	}
	if s, resp := post("not-the-digest"); s != http.StatusConflict || resp.Header.Get("Location") != "" {
		t.Fatalf("approve with a wrong digest: %d to %q, want 409 and no redirect", s, resp.Header.Get("Location"))
	}
	e.approveFederated(t, c, url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}, "details_digest": {digest}})
	r, _ := e.st.GetRequest(context.Background(), dc)
	if r.Status != ciba.StatusApproved || r.ApprovedDetails != digest || r.Subject != "idp-sub-alice" {
		t.Fatalf("stored status %s approved %q subject %q; want approved, %s, idp-sub-alice", r.Status, r.ApprovedDetails, r.Subject, digest)
	}
}

// refusingUpstream is fakeUpstream as the oidc upstream is to
// authorization_details (ciba.DetailsChecker): its provider lists only
// "other".
type refusingUpstream struct{ fakeUpstream }

func (refusingUpstream) CheckAuthzDetails(_ context.Context, _ *ciba.Client, details string) error {
	if e := ciba.CheckProviderDetailTypes(details, []string{"other"}); e != nil {
		return e
	}
	return nil
}

// TestDeviceDetailsTheProviderCannotTake: with an upstream that carries
// the details to its provider (the oidc upstream), the device
// authorization endpoint refuses a type the provider's discovery does not
// list, as bc-authorize does, rather than dropping it.
func TestDeviceDetailsTheProviderCannotTake(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{federated: true, upstream: refusingUpstream{}})
	status, m := e.call(t, PathDeviceAuthorization, "payer", url.Values{"authorization_details": {"[" + rarPayment + "]"}})
	desc, _ := m["error_description"].(string)
	if status != http.StatusBadRequest || m["error"] != "invalid_authorization_details" ||
		!strings.Contains(desc, "type 'payment_initiation' cannot be passed to the identity provider") {
		t.Fatalf("%d %v", status, m)
	}
	if status, m := e.call(t, PathDeviceAuthorization, "payer", nil); status != http.StatusOK {
		t.Fatalf("without details: %d %v", status, m)
	}
}

// TestFederatedApprovalRecordsDigest: an oidc-federated CIBA approval
// records the digest of the details the approval page showed with the
// decision, as the local path does (issue 17): the page checks it before
// sending the browser to the provider, keeps it with the sign-in, and
// the callback records it in the compare-and-set that approves.
func TestFederatedApprovalRecordsDigest(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{federated: true})
	ctx := context.Background()
	now := e.clock.Now()
	r := &ciba.AuthRequest{
		ID: "fed-rar-req", ApprovalID: "fed-rar-approval", ClientID: payer.ID, Mode: ciba.ModePoll, Kind: ciba.KindCIBA,
		Subject: "alice", LoginHint: "alice", Scopes: []string{"openid"}, CreatedAt: now, ExpiresAt: now.Add(time.Minute),
		Interval: time.Second, Status: ciba.StatusPending, AuthzDetails: rarCanonical,
	}
	if err := e.st.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	c := browser()
	get, err := c.Get(e.srv.URL + PathApprove + r.ApprovalID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(get.Body)
	get.Body.Close()
	csrf, shown := csrfField.FindStringSubmatch(string(b)), digestField.FindStringSubmatch(string(b))
	if get.StatusCode != http.StatusOK || csrf == nil || shown == nil || shown[1] != r.DetailsDigest() {
		t.Fatalf("approval page: %d, digest %v\n%s", get.StatusCode, shown, b)
	}
	post := func(digest string) *http.Response {
		resp, err := c.PostForm(e.srv.URL+PathApprove+r.ApprovalID, url.Values{"csrf": {csrf[1]}, "action": {"approve"}, "details_digest": {digest}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("not-the-digest"); resp.StatusCode != http.StatusConflict || resp.Header.Get("Location") != "" {
		t.Fatalf("a wrong digest: %d to %q, want 409 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp := post(shown[1])
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc == nil || loc.Host != "idp.test" {
		t.Fatalf("approve: %d to %v", resp.StatusCode, loc)
	}
	cb, err := c.Get(e.srv.URL + PathApproveCallback + "?code=good&state=" + url.QueryEscape(loc.Query().Get("state")))
	if err != nil {
		t.Fatal(err)
	}
	cb.Body.Close()
	if cb.StatusCode != http.StatusOK {
		t.Fatalf("callback: %d", cb.StatusCode)
	}
	got, _ := e.st.GetRequest(ctx, r.ID)
	if got.Status != ciba.StatusApproved || got.ApprovedDetails != r.DetailsDigest() {
		t.Fatalf("status %s approved %q; want approved, %q", got.Status, got.ApprovedDetails, r.DetailsDigest())
	}
}

// TestFederatedCallbackRefusesAnotherDigest: a sign-in whose kept digest
// is not the request's (the details changed under it) approves nothing;
// one kept by a version that recorded no digest approves as before.
func TestFederatedCallbackRefusesAnotherDigest(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{federated: true})
	ctx := context.Background()
	now := e.clock.Now()
	for _, tc := range []struct {
		name   string
		digest *string
		status int
		want   ciba.Status
	}{
		{"another digest", ptr(authzdetails.DigestOf([]byte(`[]`))), http.StatusConflict, ciba.StatusPending},
		{"no digest kept (an older sign-in)", nil, http.StatusOK, ciba.StatusApproved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "req-" + strings.ReplaceAll(tc.name, " ", "-")
			r := &ciba.AuthRequest{
				ID: id, ApprovalID: id + "-approval", ClientID: payer.ID, Mode: ciba.ModePoll, Kind: ciba.KindCIBA,
				Subject: "alice", LoginHint: "alice", Scopes: []string{"openid"}, CreatedAt: now, ExpiresAt: now.Add(time.Minute),
				Interval: time.Second, Status: ciba.StatusPending, AuthzDetails: rarCanonical,
			}
			if err := e.st.CreateRequest(ctx, r); err != nil {
				t.Fatal(err)
			}
			status, _ := e.callbackWithLogin(t, "state-"+id, r.ApprovalID, strings.Repeat("b", 43), tc.digest)
			got, _ := e.st.GetRequest(ctx, id)
			if status != tc.status || got.Status != tc.want || got.ApprovedDetails != "" {
				t.Fatalf("callback %d, status %s, approved %q; want %d, %s, none", status, got.Status, got.ApprovedDetails, tc.status, tc.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }

// callbackWithLogin keeps a federated sign-in (state) for the request
// approvalID, bound to the browser cookie and to digest, then calls the
// approval callback with that cookie and returns its status and body.
func (e *deviceEnv) callbackWithLogin(t *testing.T, state, approvalID, cookie string, digest *string) (int, string) {
	t.Helper()
	l := Login{State: state, Nonce: "n", Verifier: "v", ApprovalID: approvalID, DetailsDigest: digest}
	return e.callbackOfLogin(t, l, cookie, "code=good")
}

// callbackOfLogin keeps the federated sign-in l, bound to the browser
// cookie, then calls the approval callback with that cookie, l's state
// and query, and returns its status and body.
func (e *deviceEnv) callbackOfLogin(t *testing.T, l Login, cookie, query string) (int, string) {
	t.Helper()
	l.Browser = sha256Sum(cookie)
	e.idp.logins[l.State] = l
	raw, _ := json.Marshal(l)
	if err := e.st.PutRecord(context.Background(), loginKind, l.State, raw, time.Minute); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+PathApproveCallback+"?"+query+"&state="+url.QueryEscape(l.State), nil)
	req.AddCookie(&http.Cookie{Name: loginCookie, Value: cookie})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

func sha256Sum(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// refusingHook is a validation hook that refuses every request and keeps
// what it was told.
type refusingHook struct {
	mu   sync.Mutex
	seen []ciba.Validation
}

func (h *refusingHook) Validate(_ context.Context, v ciba.Validation) (ciba.Verdict, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen = append(h.seen, v)
	return ciba.Verdict{Allow: false, Reason: "no payments from this device"}, nil
}

// TestDeviceAuthorizationDetailsAskTheHook: at /device_authorization a
// request with authorization_details is judged by the validation hook, as
// at bc-authorize, told the client's address: a refusal is a 403 JSON
// access_denied with the hook's reason and creates nothing; a request
// without details is not asked about.
func TestDeviceAuthorizationDetailsAskTheHook(t *testing.T) {
	hook := &refusingHook{}
	e := newDeviceRAREnv(t, deviceOpts{validator: hook})
	status, m := e.call(t, PathDeviceAuthorization, "payer", url.Values{"scope": {"openid"}, "authorization_details": {"[" + rarPayment + "]"}})
	if desc, _ := m["error_description"].(string); status != http.StatusForbidden || m["error"] != "access_denied" || !strings.Contains(desc, "no payments from this device") {
		t.Fatalf("%d %v, want 403 access_denied with the hook's reason", status, m)
	}
	hook.mu.Lock()
	seen := append([]ciba.Validation(nil), hook.seen...)
	hook.mu.Unlock()
	if len(seen) != 1 || seen[0].Grant != ciba.GrantDevice || seen[0].AuthzDetails != rarCanonical || seen[0].ClientAddr.String() != "127.0.0.1" {
		t.Fatalf("the hook was told %+v", seen)
	}
	if _, uc := e.start(t, "payer", url.Values{"scope": {"openid"}}); uc == "" {
		t.Fatal("a device request without details was not created")
	}
	n := 0
	if err := e.st.ListRequests(context.Background(), func(*ciba.AuthRequest) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(hook.seen) != 1 {
		t.Errorf("%d requests stored, the hook asked %d times; want 1 and 1", n, len(hook.seen))
	}
}

// TestDeviceFederatedCallbackRefusesAnotherDigest: a federated sign-in of
// a device request whose kept digest is no longer the request's approves
// nothing (409), and tells the user to enter the code again: a device
// request has no approval link to open.
func TestDeviceFederatedCallbackRefusesAnotherDigest(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{federated: true})
	ctx := context.Background()
	dc, _ := e.start(t, "payer", url.Values{"authorization_details": {"[" + rarPayment + "]"}})
	r, err := e.st.GetRequest(ctx, dc)
	if err != nil {
		t.Fatal(err)
	}
	status, body := e.callbackWithLogin(t, "state-device-changed", r.ApprovalID, strings.Repeat("c", 43),
		ptr(authzdetails.DigestOf([]byte(`[]`))))
	if got, _ := e.st.GetRequest(ctx, dc); status != http.StatusConflict || got.Status != ciba.StatusPending {
		t.Fatalf("callback %d, status %s; want 409, pending", status, got.Status)
	}
	if !strings.Contains(body, "Enter the code again") || strings.Contains(body, "Open the link again") {
		t.Errorf("the device user is not told to enter the code again:\n%s", body)
	}
}

// TestDeviceTooManyResources: more than ciba.MaxResources resource and
// audience values together at the device authorization endpoint are a 400
// invalid_target, as at bc-authorize (TestBCAuthorizeResources): the set
// of targets is what the server will not accept (RFC 8707 §2), as too
// many authorization_details elements are invalid_authorization_details,
// whether or not each value is on the client's list; nothing is created.
func TestDeviceTooManyResources(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{})
	onList := make([]string, ciba.MaxResources+1)
	for i := range onList {
		onList[i] = "https://api.example/"
	}
	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"11 resources", url.Values{"resource": onList}},
		{"10 resources and an audience", url.Values{"resource": onList[:ciba.MaxResources], "audience": {"my-api"}}},
		{"11 resources with authorization_details", url.Values{"resource": onList, "authorization_details": {"[" + rarPayment + "]"}}},
	} {
		status, m := e.call(t, PathDeviceAuthorization, "payer", tc.form)
		if status != http.StatusBadRequest || m["error"] != "invalid_target" {
			t.Errorf("%s: %d %v, want 400 invalid_target", tc.name, status, m)
		}
		if desc, _ := m["error_description"].(string); !strings.Contains(desc, "at most 10 resource and audience values are allowed together") {
			t.Errorf("%s: error_description %q", tc.name, desc)
		}
	}
	n := 0
	if err := e.st.ListRequests(context.Background(), func(*ciba.AuthRequest) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d requests stored after refusals, want 0", n)
	}
}

// TestDeviceAuthorizationDetailsBurst: 50 device authorization requests
// with authorization_details from one client at once are each answered
// as one alone would be: a 200 with their own device and user codes, each
// stored with the canonical details, or else an RFC 6749 JSON error. (The
// endpoint has no per-client rate of its own, with or without details:
// none refuses here.)
func TestDeviceAuthorizationDetailsBurst(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{})
	const n = 50
	type answer struct {
		status int
		ctype  string
		m      map[string]any
		err    error
	}
	answers := make(chan answer, n)
	form := url.Values{"scope": {"openid"}, "authorization_details": {"[" + rarPayment + "]"}}.Encode()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+PathDeviceAuthorization, strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("payer", "payer-secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer resp.Body.Close()
			a := answer{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type")}
			a.err = json.NewDecoder(resp.Body).Decode(&a.m)
			answers <- a
		})
	}
	wg.Wait()
	close(answers)
	codes := map[string]bool{}
	var ok []string
	for a := range answers {
		if a.err != nil || !strings.HasPrefix(a.ctype, "application/json") {
			t.Fatalf("an answer that is not JSON: %d %q %v", a.status, a.ctype, a.err)
		}
		if a.status != http.StatusOK {
			if code, _ := a.m["error"].(string); code == "" || (a.status != http.StatusBadRequest && a.status != http.StatusTooManyRequests) {
				t.Errorf("a refusal that is not an RFC 6749 error: %d %v", a.status, a.m)
			}
			continue
		}
		dc, _ := a.m["device_code"].(string)
		uc, _ := a.m["user_code"].(string)
		if dc == "" || uc == "" || codes[dc] || codes["u:"+uc] {
			t.Fatalf("codes missing or shared: %v", a.m)
		}
		codes[dc], codes["u:"+uc] = true, true
		ok = append(ok, dc)
	}
	if len(ok) != n {
		t.Errorf("%d of %d accepted, want all: the endpoint has no per-client limit", len(ok), n)
	}
	for _, dc := range ok {
		r, err := e.st.GetRequest(context.Background(), dc)
		if err != nil || r.AuthzDetails != rarCanonical {
			t.Fatalf("request %s: %v %+v, want the canonical details", dc, err, r)
		}
	}
}

// TestDeviceRefusesSignedOnlyClient: a client that must send signed
// authentication requests (a FAPI-CIBA client) is refused at the device
// authorization endpoint with invalid_request, whatever it sends, and
// nothing is created: its scope, authorization_details and resource would
// otherwise be taken unsigned. (The configuration refuses such a client
// the device grant already; this is the endpoint's own check.)
func TestDeviceRefusesSignedOnlyClient(t *testing.T) {
	e := newDeviceRAREnv(t, deviceOpts{signed: []string{"payer"}})
	for _, form := range []url.Values{
		{},
		{"scope": {"openid"}},
		{"authorization_details": {"[" + rarPayment + "]"}, "resource": {"https://api.example/"}},
	} {
		status, m := e.call(t, PathDeviceAuthorization, "payer", form)
		desc, _ := m["error_description"].(string)
		if status != http.StatusBadRequest || m["error"] != "invalid_request" || !strings.Contains(desc, "client 'payer' must send signed authentication requests") {
			t.Errorf("%v: %d %v, want 400 invalid_request naming the client", form, status, m)
		}
	}
	n := 0
	if err := e.st.ListRequests(context.Background(), func(*ciba.AuthRequest) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d requests stored after refusals, want 0", n)
	}
}
