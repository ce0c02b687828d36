package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// deviceSignIn starts, on the device page of a new browser, the
// federated sign-in that approves a new device request of tv; it returns
// the browser and the sign-in's state.
func (e *deviceEnv) deviceSignIn(t *testing.T) (*http.Client, string) {
	t.Helper()
	_, uc := e.start(t, "tv", nil)
	c := browser()
	s, body, csrf := e.enter(t, c, uc)
	if s != http.StatusOK || csrf == "" {
		t.Fatalf("device page: %d\n%s", s, body)
	}
	s, _, resp := e.page(t, c, http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}})
	loc, err := url.Parse(resp.Header.Get("Location"))
	if s != http.StatusSeeOther || err != nil || loc.Host != "idp.test" {
		t.Fatalf("approve: %d to %q", s, resp.Header.Get("Location"))
	}
	return c, loc.Query().Get("state")
}

// callback calls the sign-in callback with query in browser c.
func (e *deviceEnv) callback(t *testing.T, c *http.Client, query url.Values) (int, string) {
	t.Helper()
	resp, err := c.Get(e.srv.URL + PathApproveCallback + "?" + query.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// speaksOfALink reports whether a page's text (its <main>) mentions a
// link.
func speaksOfALink(body string) bool {
	_, main, _ := strings.Cut(body, "<main>")
	main, _, _ = strings.Cut(main, "</main>")
	return strings.Contains(strings.ToLower(main), "link")
}

// TestFederatedCallbackPagesOfADeviceRequest: the pages of the federated
// sign-in's callback tell a device request's user, who entered a code and
// followed no link, to enter the code again (or to return to their
// device), and never speak of a link; a CIBA request's user is still
// told to open the approval link again; a callback whose sign-in is
// unknown names both.
func TestFederatedCallbackPagesOfADeviceRequest(t *testing.T) {
	e := newDeviceEnv(t, true)
	const again = "Enter the code shown on your device again"
	for _, tc := range []struct {
		name   string
		query  func(state string) url.Values
		other  bool // called from another browser
		status int
		want   string
	}{
		{"approved", func(s string) url.Values { return url.Values{"state": {s}, "code": {"good"}} }, false, http.StatusOK, "Return to your device"},
		{"another browser", func(s string) url.Values { return url.Values{"state": {s}, "code": {"good"}} }, true, http.StatusForbidden, again + " in this one."},
		{"the provider's error", func(s string) url.Values { return url.Values{"state": {s}, "error": {"server_error"}} }, false, http.StatusBadGateway, again + " to retry."},
		{"another issuer", func(s string) url.Values {
			return url.Values{"state": {s}, "code": {"good"}, "iss": {"https://evil.test"}}
		}, false, http.StatusBadRequest, again + "."},
		{"no code", func(s string) url.Values { return url.Values{"state": {s}} }, false, http.StatusBadRequest, again + "."},
		{"the provider unreachable", func(s string) url.Values { return url.Values{"state": {s}, "code": {"down"}} }, false, http.StatusServiceUnavailable, again + " in a moment."},
		{"the provider failing", func(s string) url.Values { return url.Values{"state": {s}, "code": {"bad"}} }, false, http.StatusBadGateway, again + " to retry."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, state := e.deviceSignIn(t)
			if tc.other {
				c = browser()
			}
			status, body := e.callback(t, c, tc.query(state))
			if status != tc.status || !strings.Contains(body, tc.want) || speaksOfALink(body) {
				t.Fatalf("%d, want %d saying %q and no link:\n%s", status, tc.status, tc.want, body)
			}
		})
	}

	t.Run("a request answered meanwhile", func(t *testing.T) {
		// The request is denied (from elsewhere) while its user signs in.
		c, state := e.deviceSignIn(t)
		l := e.idp.logins[state]
		r, err := e.st.GetRequestByApprovalID(context.Background(), l.ApprovalID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.st.UpdateRequest(context.Background(), r.ID, func(r *ciba.AuthRequest) error { return r.Deny(time.Now(), "test") }); err != nil {
			t.Fatal(err)
		}
		status, body := e.callback(t, c, url.Values{"state": {state}, "code": {"good"}})
		if status != http.StatusConflict || !strings.Contains(body, "This code was already used") || speaksOfALink(body) {
			t.Fatalf("%d, want 409 in terms of the code:\n%s", status, body)
		}
	})

	t.Run("a sign-in kept without its kind still speaks of the code once its request is read", func(t *testing.T) {
		_, state := e.deviceSignIn(t)
		l := e.idp.logins[state]
		l.State, l.Device = "state-old-device", false
		status, body := e.callbackOfLogin(t, l, strings.Repeat("d", 43), "error=server_error")
		if status != http.StatusBadGateway || !strings.Contains(body, again+" to retry.") {
			t.Fatalf("%d:\n%s", status, body)
		}
	})

	t.Run("an unknown sign-in names both", func(t *testing.T) {
		status, body := e.callback(t, browser(), url.Values{"state": {"made-up"}, "code": {"good"}})
		if status != http.StatusBadRequest || !strings.Contains(body, "Open the approval link again, or enter the code shown on your device again.") {
			t.Fatalf("%d:\n%s", status, body)
		}
	})

	t.Run("a CIBA request's user still opens the approval link again", func(t *testing.T) {
		ctx := context.Background()
		now := e.clock.Now()
		r := &ciba.AuthRequest{
			ID: "req-ciba-wording", ApprovalID: "ciba-wording-approval", ClientID: tv.ID, Mode: ciba.ModePoll, Kind: ciba.KindCIBA,
			Subject: "alice", LoginHint: "alice", Scopes: []string{"openid"}, CreatedAt: now, ExpiresAt: now.Add(time.Minute),
			Interval: time.Second, Status: ciba.StatusPending,
		}
		if err := e.st.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		l := Login{State: "state-ciba-wording", Nonce: "n", Verifier: "v", ApprovalID: r.ApprovalID}
		status, body := e.callbackOfLogin(t, l, strings.Repeat("e", 43), "error=server_error")
		if status != http.StatusBadGateway || !strings.Contains(body, "Open the approval link again to retry.") || strings.Contains(body, "code shown") {
			t.Fatalf("%d:\n%s", status, body)
		}
	})
}
