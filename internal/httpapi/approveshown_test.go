package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// agent is a delegate client (acts_for_user).
var agent = &ciba.Client{ID: "agent", Name: "Shopping Agent", Mode: ciba.ModePoll, ActsForUser: true}

// shownServer is approvalServer with the operator's templates.
func shownServer(t *testing.T, tpls *authzdetails.Templates) (*ciba.Service, ciba.Store, *httptest.Server) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	st := memory.New()
	svc, err := ciba.NewService(ciba.Config{DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20},
		ciba.Deps{Store: st, Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
			Clients: func(string) (*ciba.Client, bool) { return agent, true }, CallbackKey: key, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	(&Approval{Service: svc, Passwords: fakeUpstream{}, Key: key, Logger: discard(), DetailTemplates: authzdetails.NewLive(authzdetails.Set{Templates: tpls})}).register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return svc, st, srv
}

var digestField = regexp.MustCompile(`name="details_digest" value="([^"]+)"`)

// TestApprovalRecordsShownDetails: the approval page posts the digest of
// the authorization_details it showed; an approval with another digest
// approves nothing, and one with the shown digest records it with the
// decision, and the tokens carry exactly that list. A delegate client is
// announced as acting on the user's behalf, and an operator's template
// renders its type with every member still under "All details".
func TestApprovalRecordsShownDetails(t *testing.T) {
	tpls, err := authzdetails.ParseTemplates(map[string][]byte{
		"payment_initiation": []byte(`<p class="pay">Pay {{range .Amounts}}{{.Amount}} {{.Currency}}{{end}} to {{.Value.creditorName}}</p>`),
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, st, srv := shownServer(t, tpls)
	ctx := context.Background()
	now := time.Now()
	const details = `[{"creditorName":"ACME <Ltd>","instructedAmount":{"amount":"50.00","currency":"EUR"},"type":"payment_initiation"},{"actions":["read"],"type":"account_information"}]`
	newRequest := func(id string) *ciba.AuthRequest {
		r := &ciba.AuthRequest{
			ID: id, ApprovalID: id + "-approval", ClientID: agent.ID, Mode: ciba.ModePoll, Subject: "sub-alice", LoginHint: "alice",
			Scopes: []string{"openid"}, CreatedAt: now, ExpiresAt: now.Add(time.Minute), Interval: time.Second, Status: ciba.StatusPending,
			AuthzDetails: details, Actor: agent.ID,
		}
		if err := st.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	open := func(c *http.Client, r *ciba.AuthRequest) (body, csrf, digest string) {
		resp, err := c.Get(srv.URL + PathApprove + r.ApprovalID)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		m, d := csrfField.FindStringSubmatch(body), digestField.FindStringSubmatch(body)
		if resp.StatusCode != 200 || m == nil || d == nil {
			t.Fatalf("GET approval page: %d\n%s", resp.StatusCode, body)
		}
		return body, m[1], d[1]
	}
	post := func(c *http.Client, r *ciba.AuthRequest, form url.Values) int {
		resp, err := c.PostForm(srv.URL+PathApprove+r.ApprovalID, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	browser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar}
	}

	t.Run("the page shows the delegate, the template and every member, and carries the digest", func(t *testing.T) {
		r := newRequest("show")
		body, _, digest := open(browser(), r)
		if digest != authzdetails.DigestOf([]byte(details)) {
			t.Errorf("details_digest %q, want the stored list's", digest)
		}
		for _, want := range []string{
			"<strong>Shopping Agent</strong> acting on your behalf asks to do what is listed below as <strong>alice</strong>.",
			`<div class="detail-custom"><p class="pay">Pay 50.00 EUR to ACME &lt;Ltd&gt;</p></div>`,
			"<summary>All details</summary>",
			`<dt>creditorName</dt><dd>ACME &lt;Ltd&gt;</dd>`,
			`<dt>actions</dt><dd>read</dd>`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("the page does not show %s", want)
			}
		}
	})
	t.Run("an approval of another list approves nothing", func(t *testing.T) {
		r := newRequest("tampered")
		c := browser()
		_, csrf, _ := open(c, r)
		other := authzdetails.DigestOf([]byte(`[{"type":"payment_initiation"}]`))
		for _, d := range []string{other, ""} {
			if got := post(c, r, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"alice-password"}, "details_digest": {d}}); got != http.StatusConflict {
				t.Fatalf("approve with digest %q: %d, want 409", d, got)
			}
		}
		if got, _ := st.GetRequest(ctx, r.ID); got.Status != ciba.StatusPending || got.ApprovedDetails != "" {
			t.Fatalf("after the refused approvals: %s, approved %q", got.Status, got.ApprovedDetails)
		}
	})
	t.Run("the approval records the shown digest and the tokens carry exactly the list", func(t *testing.T) {
		r := newRequest("approved")
		c := browser()
		_, csrf, digest := open(c, r)
		if got := post(c, r, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"alice-password"}, "details_digest": {digest}}); got != 200 {
			t.Fatalf("approve: %d", got)
		}
		got, err := st.GetRequest(ctx, r.ID)
		if err != nil || got.Status != ciba.StatusApproved || got.ApprovedDetails != digest {
			t.Fatalf("after approval: %+v, %v; want approved with digest %q", got, err, digest)
		}
		body, err := svc.Poll(ctx, agent, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		var tr struct {
			AuthorizationDetails json.RawMessage `json:"authorization_details"`
		}
		if err := json.Unmarshal(body, &tr); err != nil {
			t.Fatal(err)
		}
		// The same JSON value (encoding/json writes < as \u003c).
		l, err := authzdetails.FromJSON(tr.AuthorizationDetails)
		if err != nil || l.Digest() != digest {
			t.Fatalf("token response authorization_details %s (%v), want %s", tr.AuthorizationDetails, err, details)
		}
	})
}
