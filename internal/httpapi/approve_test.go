package httpapi

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

type fakeUpstream struct{}

func (fakeUpstream) ResolveUser(_ context.Context, _ *ciba.Client, h ciba.Hint) (ciba.User, error) {
	return ciba.User{Subject: "sub-" + h.LoginHint, Display: h.LoginHint}, nil
}
func (fakeUpstream) CheckUserCode(context.Context, ciba.User, string) error { return nil }
func (fakeUpstream) SupportsUserCode() bool                                 { return false }
func (fakeUpstream) Mint(_ context.Context, r *ciba.AuthRequest, _ time.Time) (*ciba.TokenResponse, error) {
	// Like the local issuer, the tokens carry the request's details.
	return &ciba.TokenResponse{AccessToken: "at", TokenType: "Bearer", AuthorizationDetails: ciba.RawJSON(r.AuthzDetails)}, nil
}
func (fakeUpstream) CheckPassword(_ context.Context, user, pw string) (string, bool, error) {
	return "sub-" + user, pw == user+"-password", nil
}

type nopNotifier struct{}

func (nopNotifier) Ping(context.Context, string, string, string) error { return nil }
func (nopNotifier) Push(context.Context, string, string, []byte) error { return nil }

var bank = &ciba.Client{ID: "bank", Name: "Example Bank", Mode: ciba.ModePoll}

func approvalServer(t *testing.T, now func() time.Time) (*ciba.Service, ciba.Store, *httptest.Server) {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	st := memory.New()
	svc, err := ciba.NewService(ciba.Config{
		DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20,
	}, ciba.Deps{
		Store: st, Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
		Clients: func(string) (*ciba.Client, bool) { return bank, true }, CallbackKey: key, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	(&Approval{Service: svc, Passwords: fakeUpstream{}, Key: key, Logger: discard()}).register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return svc, st, srv
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestApprovalPage(t *testing.T) {
	clock := time.Now()
	now := func() time.Time { return clock }
	svc, st, srv := approvalServer(t, now)
	ctx := context.Background()
	newRequest := func() (string, string) {
		resp, err := svc.Authorize(ctx, bank, ciba.AuthParams{Scope: "openid email", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: "Code 1234"})
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
		return &http.Client{Jar: jar}
	}
	get := func(c *http.Client, id string) (int, string) {
		resp, err := c.Get(srv.URL + PathApprove + id)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(c *http.Client, id string, form url.Values) int {
		resp, err := c.PostForm(srv.URL+PathApprove+id, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	open := func(c *http.Client, id string) string {
		status, body := get(c, id)
		m := csrfField.FindStringSubmatch(body)
		if status != 200 || m == nil {
			t.Fatalf("GET approval page: %d\n%s", status, body)
		}
		for _, want := range []string{"Example Bank", "Code 1234", "alice", "Confirm who you are", "Your email address", `<label for="password"`} {
			if !strings.Contains(body, want) {
				t.Errorf("the page does not show %q", want)
			}
		}
		return m[1]
	}

	t.Run("approve with the right password gives the client its tokens", func(t *testing.T) {
		authReq, id := newRequest()
		c := browser()
		csrf := open(c, id)
		if got := post(c, id, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"alice-password"}}); got != 200 {
			t.Fatalf("approve: %d", got)
		}
		if _, err := svc.Poll(ctx, bank, authReq); err != nil {
			t.Fatalf("poll after approval: %v", err)
		}
		if status, _ := get(c, id); status != http.StatusConflict {
			t.Fatalf("the link after the answer: %d, want 409", status)
		}
	})
	t.Run("a wrong password approves nothing", func(t *testing.T) {
		authReq, id := newRequest()
		c := browser()
		csrf := open(c, id)
		if got := post(c, id, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"bob-password"}}); got != 401 {
			t.Fatalf("wrong password: %d", got)
		}
		if _, err := svc.Poll(ctx, bank, authReq); ciba.AsError(err).Code != ciba.CodeAuthorizationPending {
			t.Fatalf("poll: %v", err)
		}
	})
	t.Run("deny gives the client access_denied", func(t *testing.T) {
		authReq, id := newRequest()
		c := browser()
		if got := post(c, id, url.Values{"csrf": {open(c, id)}, "action": {"deny"}}); got != 200 {
			t.Fatalf("deny: %d", got)
		}
		if _, err := svc.Poll(ctx, bank, authReq); ciba.AsError(err).Code != ciba.CodeAccessDenied {
			t.Fatalf("poll: %v", err)
		}
	})
	t.Run("a POST without the CSRF cookie or with a forged token changes nothing", func(t *testing.T) {
		authReq, id := newRequest()
		c := browser()
		csrf := open(c, id)
		if got := post(http.DefaultClient, id, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"alice-password"}}); got != 403 {
			t.Fatalf("without cookie: %d", got)
		}
		if got := post(c, id, url.Values{"csrf": {"forged"}, "action": {"approve"}, "password": {"alice-password"}}); got != 403 {
			t.Fatalf("forged token: %d", got)
		}
		_, other := newRequest()
		if got := post(c, other, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"alice-password"}}); got != 403 {
			t.Fatalf("another request's token: %d", got)
		}
		if _, err := svc.Poll(ctx, bank, authReq); ciba.AsError(err).Code != ciba.CodeAuthorizationPending {
			t.Fatalf("poll: %v", err)
		}
	})
	t.Run("an unknown id and the auth_req_id are not approval links", func(t *testing.T) {
		authReq, _ := newRequest()
		for _, id := range []string{"guessed", authReq} {
			if status, _ := get(browser(), id); status != 404 {
				t.Fatalf("GET %s: %d", id, status)
			}
		}
	})
	t.Run("the link expires with the request", func(t *testing.T) {
		_, id := newRequest()
		c := browser()
		csrf := open(c, id)
		clock = clock.Add(2 * time.Minute)
		if status, _ := get(c, id); status != http.StatusGone {
			t.Fatalf("GET after expiry: %d", status)
		}
		if got := post(c, id, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"alice-password"}}); got != http.StatusGone {
			t.Fatalf("POST after expiry: %d", got)
		}
	})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
