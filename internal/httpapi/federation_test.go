package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// fakeIdP stands in for the oidc upstream: LoginURL points at idp.test and
// Complete answers by code: "good" approves, "wrong-user" is a different
// user, "down" an unreachable provider.
type fakeIdP struct{ logins map[string]Login }

func (f *fakeIdP) LoginURL(_ context.Context, r *ciba.AuthRequest, l Login) (string, error) {
	f.logins[l.State] = l
	return "https://idp.test/authorize?state=" + url.QueryEscape(l.State) + "&login_hint=" + url.QueryEscape(r.LoginHint), nil
}

func (f *fakeIdP) Complete(_ context.Context, r *ciba.AuthRequest, code string, l Login) (Completed, error) {
	if f.logins[l.State].Nonce != l.Nonce || f.logins[l.State].Verifier != l.Verifier {
		return Completed{}, fmt.Errorf("nonce or verifier changed between start and callback")
	}
	switch code {
	case "good":
		b, _ := json.Marshal(ciba.TokenResponse{AccessToken: "idp-at", TokenType: "Bearer", IDToken: "idp-id-token"})
		return Completed{Tokens: b, AuthTime: time.Now(), Subject: "idp-sub-alice"}, nil
	case "wrong-user":
		return Completed{}, fmt.Errorf("%w: sub mallory", ErrWrongUser)
	case "down":
		return Completed{}, fmt.Errorf("token endpoint: %w", ciba.ErrUnavailable)
	}
	return Completed{}, fmt.Errorf("invalid_grant")
}

func (f *fakeIdP) Origin() string { return "https://idp.test" }
func (f *fakeIdP) Issuer() string { return "https://idp.test" }

type federatedUpstream struct{ fakeUpstream }

func (federatedUpstream) SupportsUserCode() bool { return false }

func TestFederatedApproval(t *testing.T) {
	clock := time.Now()
	now := func() time.Time { return clock }
	key := make([]byte, 32)
	rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	st := memory.New()
	codeBank := &ciba.Client{ID: "bank", Name: "Example Bank", Mode: ciba.ModePoll, RequireUserCode: true}
	svc, err := ciba.NewService(ciba.Config{
		DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20,
	}, ciba.Deps{
		Store: st, Upstream: federatedUpstream{}, Sealer: ring, Notifier: nopNotifier{},
		Clients: func(id string) (*ciba.Client, bool) {
			if id == codeBank.ID {
				return codeBank, true
			}
			return nil, false
		},
		CallbackKey: key, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	idp := &fakeIdP{logins: map[string]Login{}}
	mux := http.NewServeMux()
	(&Approval{Service: svc, Federation: idp, Logins: st, Key: key, Logger: discard()}).register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	newRequest := func(userCode string) (authReqID, approvalID string) {
		resp, err := svc.Authorize(ctx, codeBank, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: "Code 1234", UserCode: userCode})
		if err != nil {
			t.Fatal(err)
		}
		r, err := st.GetRequest(ctx, resp.AuthReqID)
		if err != nil {
			t.Fatal(err)
		}
		return resp.AuthReqID, r.ApprovalID
	}
	browser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	fetch := func(c *http.Client, method, path string, form url.Values) (*http.Response, string) {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, srv.URL+path, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	// approve opens the page, answers the user code and returns the state
	// of the sign-in the page started at the provider.
	approve := func(c *http.Client, id, userCode string) string {
		t.Helper()
		resp, body := fetch(c, "GET", PathApprove+id, nil)
		m := csrfField.FindStringSubmatch(body)
		if resp.StatusCode != 200 || m == nil {
			t.Fatalf("GET approval page: %d\n%s", resp.StatusCode, body)
		}
		if strings.Contains(body, `name="password"`) {
			t.Error("a federated approval page asks for a password")
		}
		if !strings.Contains(body, `name="user_code"`) {
			t.Error("the page does not ask to confirm the user code")
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://idp.test") {
			t.Errorf("CSP %q does not allow the redirect to the provider", csp)
		}
		resp, _ = fetch(c, "POST", PathApprove+id, url.Values{"csrf": {m[1]}, "action": {"approve"}, "user_code": {userCode}})
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("approve: %d, want 303 to the provider", resp.StatusCode)
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc.Host != "idp.test" || loc.Query().Get("login_hint") != "alice" {
			t.Fatalf("redirected to %s", loc)
		}
		return loc.Query().Get("state")
	}
	callback := func(c *http.Client, q url.Values) (int, string) {
		resp, body := fetch(c, "GET", PathApproveCallback+"?"+q.Encode(), nil)
		return resp.StatusCode, body
	}
	pollCode := func(authReq string) ciba.ErrorCode {
		_, err := svc.Poll(ctx, codeBank, authReq)
		if err == nil {
			return "tokens"
		}
		return ciba.AsError(err).Code
	}

	t.Run("sign-in as the named user approves; the callback works once", func(t *testing.T) {
		authReq, id := newRequest("4711")
		c := browser()
		state := approve(c, id, "4711")
		if status, body := callback(c, url.Values{"state": {state}, "code": {"good"}}); status != 200 || !strings.Contains(body, "You approved") {
			t.Fatalf("callback: %d\n%s", status, body)
		}
		if stored, _ := st.GetRequest(ctx, authReq); stored.Subject != "sub-alice" {
			t.Errorf("the request's subject after sign-in = %q, want the one the client named (checked equal by the upstream)", stored.Subject)
		}
		body, err := svc.Poll(ctx, codeBank, authReq)
		if err != nil || !strings.Contains(string(body), "idp-at") {
			t.Fatalf("poll: %s %v", body, err)
		}
		if status, _ := callback(c, url.Values{"state": {state}, "code": {"good"}}); status != http.StatusBadRequest {
			t.Fatalf("replayed callback: %d, want 400", status)
		}
	})
	t.Run("a wrong user code does not start the sign-in", func(t *testing.T) {
		authReq, id := newRequest("4711")
		c := browser()
		_, body := fetch(c, "GET", PathApprove+id, nil)
		csrf := csrfField.FindStringSubmatch(body)[1]
		resp, body := fetch(c, "POST", PathApprove+id, url.Values{"csrf": {csrf}, "action": {"approve"}, "user_code": {"0000"}})
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "The code is not") {
			t.Fatalf("wrong user code: %d", resp.StatusCode)
		}
		if got := pollCode(authReq); got != ciba.CodeAuthorizationPending {
			t.Fatalf("poll: %s", got)
		}
	})
	t.Run("the wrong user signing in denies the request", func(t *testing.T) {
		authReq, id := newRequest("4711")
		c := browser()
		state := approve(c, id, "4711")
		if status, body := callback(c, url.Values{"state": {state}, "code": {"wrong-user"}}); status != 200 || !strings.Contains(body, "someone other than alice") {
			t.Fatalf("callback: %d\n%s", status, body)
		}
		if got := pollCode(authReq); got != ciba.CodeAccessDenied {
			t.Fatalf("poll: %s, want access_denied", got)
		}
	})
	t.Run("declining at the provider denies the request", func(t *testing.T) {
		authReq, id := newRequest("4711")
		c := browser()
		state := approve(c, id, "4711")
		if status, _ := callback(c, url.Values{"state": {state}, "error": {"access_denied"}}); status != 200 {
			t.Fatalf("callback: %d", status)
		}
		if got := pollCode(authReq); got != ciba.CodeAccessDenied {
			t.Fatalf("poll: %s, want access_denied", got)
		}
	})
	t.Run("a forged state, or the callback in another browser, changes nothing", func(t *testing.T) {
		authReq, id := newRequest("4711")
		c := browser()
		state := approve(c, id, "4711")
		if status, _ := callback(c, url.Values{"state": {"forged-" + state}, "code": {"good"}}); status != http.StatusBadRequest {
			t.Fatalf("forged state: %d, want 400", status)
		}
		if status, _ := callback(browser(), url.Values{"state": {state}, "code": {"good"}}); status != http.StatusForbidden {
			t.Fatalf("other browser: %d, want 403", status)
		}
		if got := pollCode(authReq); got != ciba.CodeAuthorizationPending {
			t.Fatalf("poll: %s", got)
		}
		// The browser that started the sign-in can still finish it.
		if status, _ := callback(c, url.Values{"state": {state}, "code": {"good"}}); status != 200 {
			t.Fatalf("callback in the right browser: %d", status)
		}
		if got := pollCode(authReq); got != "tokens" {
			t.Fatalf("poll: %s", got)
		}
	})
	t.Run("an unreachable provider leaves the request pending", func(t *testing.T) {
		authReq, id := newRequest("4711")
		c := browser()
		state := approve(c, id, "4711")
		if status, _ := callback(c, url.Values{"state": {state}, "code": {"down"}}); status != http.StatusServiceUnavailable {
			t.Fatalf("callback: %d, want 503", status)
		}
		if got := pollCode(authReq); got != ciba.CodeAuthorizationPending {
			t.Fatalf("poll: %s", got)
		}
		// The user opens the link again and succeeds.
		state = approve(c, id, "4711")
		if status, _ := callback(c, url.Values{"state": {state}, "code": {"good"}}); status != 200 {
			t.Fatalf("second callback: %d", status)
		}
	})
	t.Run("a callback after the request expired approves nothing", func(t *testing.T) {
		authReq, id := newRequest("4711")
		c := browser()
		state := approve(c, id, "4711")
		clock = clock.Add(2 * time.Minute)
		defer func() { clock = clock.Add(-2 * time.Minute) }()
		if status, _ := callback(c, url.Values{"state": {state}, "code": {"good"}}); status != http.StatusGone {
			t.Fatalf("callback after expiry: %d, want 410", status)
		}
		if got := pollCode(authReq); got != ciba.CodeExpiredToken {
			t.Fatalf("poll: %s", got)
		}
	})
	t.Run("an answer naming another issuer is refused (RFC 9207)", func(t *testing.T) {
		authReq, id := newRequest("4711")
		c := browser()
		state := approve(c, id, "4711")
		if status, _ := callback(c, url.Values{"state": {state}, "code": {"good"}, "iss": {"https://evil.test"}}); status != http.StatusBadRequest {
			t.Fatalf("callback from another issuer: %d, want 400", status)
		}
		if got := pollCode(authReq); got != ciba.CodeAuthorizationPending {
			t.Fatalf("poll: %s", got)
		}
	})
	t.Run("a callback without state is refused", func(t *testing.T) {
		if status, _ := callback(browser(), url.Values{"code": {"good"}}); status != http.StatusBadRequest {
			t.Fatalf("no state: %d", status)
		}
	})
}
