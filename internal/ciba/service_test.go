package ciba_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/ciba/cibatest"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// upstream knows alice (user code 1234) and bob (no code).
type upstream struct{}

func (upstream) ResolveUser(_ context.Context, _ *ciba.Client, h ciba.Hint) (ciba.User, error) {
	switch {
	case h.LoginHint == "alice" || h.LoginHint == "bob":
		return ciba.User{Subject: "sub-" + h.LoginHint, Display: h.LoginHint}, nil
	case h.LoginHintToken == "expired":
		return ciba.User{}, ciba.Errorf(ciba.CodeExpiredLoginHintToken, "expired")
	case h.LoginHintToken == "broken":
		return ciba.User{}, errors.New("upstream exploded")
	}
	return ciba.User{}, ciba.Errorf(ciba.CodeUnknownUserID, "unknown")
}

func (upstream) CheckUserCode(_ context.Context, u ciba.User, code string) error {
	if u.Subject == "sub-alice" && code == "1234" {
		return nil
	}
	return ciba.Errorf(ciba.CodeInvalidUserCode, "wrong")
}

func (upstream) SupportsUserCode() bool { return true }

type minter struct{}

func (minter) Mint(_ context.Context, r *ciba.AuthRequest, _ time.Time) (*ciba.TokenResponse, error) {
	return &ciba.TokenResponse{AccessToken: "at-" + r.ID, TokenType: "Bearer", IDToken: "idt-" + r.Subject}, nil
}

// notifier records ping and push calls and fails the first `fail` of them.
type notifier struct {
	mu    sync.Mutex
	fail  int
	calls []call
	got   chan call
}

type call struct {
	kind, endpoint, bearer, id string
	body                       []byte
}

func (n *notifier) record(c call) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail > 0 {
		n.fail--
		return errors.New("receiver down")
	}
	n.calls = append(n.calls, c)
	if n.got != nil {
		n.got <- c
	}
	return nil
}

func (n *notifier) Ping(_ context.Context, endpoint, bearer, id string) error {
	return n.record(call{kind: "ping", endpoint: endpoint, bearer: bearer, id: id})
}

func (n *notifier) Push(_ context.Context, endpoint, bearer string, body []byte) error {
	return n.record(call{kind: "push", endpoint: endpoint, bearer: bearer, body: body})
}

// channel records the notices it is asked to send.
type channel struct{ got chan ciba.Notice }

func (c *channel) Name() string { return "test" }
func (c *channel) Send(_ context.Context, _ *ciba.AuthRequest, _ *ciba.Client, n ciba.Notice) error {
	c.got <- n
	return nil
}

var (
	pollClient = &ciba.Client{ID: "poll", Name: "Poll", Mode: ciba.ModePoll}
	pingClient = &ciba.Client{ID: "ping", Mode: ciba.ModePing, NotificationEndpoint: "https://ping.example/cb"}
	pushClient = &ciba.Client{ID: "push", Mode: ciba.ModePush, NotificationEndpoint: "https://push.example/cb"}
	codeClient = &ciba.Client{ID: "code", Mode: ciba.ModePoll, RequireUserCode: true}
	narrow     = &ciba.Client{ID: "narrow", Mode: ciba.ModePoll, Scopes: []string{"openid", "email"}}
	other      = &ciba.Client{ID: "other", Mode: ciba.ModePoll}
)

type fixture struct {
	svc    *ciba.Service
	store  ciba.Store
	clock  *clock
	note   *notifier
	sealer ciba.Sealer
	key    []byte
}

func newFixture(t testing.TB, mod func(*ciba.Config, *ciba.Deps)) *fixture {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	ring, err := seal.NewRing(seal.Key{ID: "k", Secret: key})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: memory.New(), clock: &clock{t: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)}, note: &notifier{}}
	clients := map[string]*ciba.Client{}
	for _, c := range []*ciba.Client{pollClient, pingClient, pushClient, codeClient, narrow, other} {
		clients[c.ID] = c
	}
	cfg := ciba.Config{
		DefaultExpiry: 5 * time.Minute, MaxExpiry: 10 * time.Minute, Interval: 5 * time.Second,
		PollTolerance: 500 * time.Millisecond, ExpiredGrace: 10 * time.Minute, BindingMessageMax: 20,
	}
	deps := ciba.Deps{
		Store: f.store, Upstream: upstream{}, Minter: minter{}, Sealer: ring, Notifier: f.note,
		Clients:     func(id string) (*ciba.Client, bool) { c, ok := clients[id]; return c, ok },
		CallbackKey: key, Now: f.clock.Now,
	}
	if mod != nil {
		mod(&cfg, &deps)
	}
	f.sealer, f.key = deps.Sealer, deps.CallbackKey
	if f.svc, err = ciba.NewService(cfg, deps); err != nil {
		t.Fatal(err)
	}
	return f
}

func code(err error) ciba.ErrorCode {
	if err == nil {
		return ""
	}
	return ciba.AsError(err).Code
}

func (f *fixture) create(t *testing.T, c *ciba.Client, mods ...func(*ciba.AuthParams)) string {
	t.Helper()
	return cibatest.Create(t, f.svc, c, mods...)
}

func (f *fixture) approve(t *testing.T, id string) {
	t.Helper()
	cibatest.Approve(t, f.svc, f.store, id)
}

func TestAuthorizeErrors(t *testing.T) {
	long := strings.Repeat("a", 1025)
	tests := []struct {
		name   string
		client *ciba.Client
		p      ciba.AuthParams
		want   ciba.ErrorCode
	}{
		{"a request without any hint is invalid_request (§7.1: exactly one hint)", pollClient, ciba.AuthParams{Scope: "openid"}, ciba.CodeInvalidRequest},
		{"a request with two hints is invalid_request (§7.1: exactly one hint)", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice", IDTokenHint: "x"}}, ciba.CodeInvalidRequest},
		{"scope is REQUIRED (§7.1)", pollClient, ciba.AuthParams{Hint: ciba.Hint{LoginHint: "alice"}}, ciba.CodeInvalidRequest},
		{"scope without openid is invalid_scope (§7.1)", pollClient, ciba.AuthParams{Scope: "email", Hint: ciba.Hint{LoginHint: "alice"}}, ciba.CodeInvalidScope},
		{"a scope the client may not ask for is invalid_scope", narrow, ciba.AuthParams{Scope: "openid profile", Hint: ciba.Hint{LoginHint: "alice"}}, ciba.CodeInvalidScope},
		{"a scope with a character outside RFC 6749 §3.3 is invalid_scope", pollClient, ciba.AuthParams{Scope: "openid em\"ail", Hint: ciba.Hint{LoginHint: "alice"}}, ciba.CodeInvalidScope},
		{"requested_expiry 0 is invalid_request (a positive integer)", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, RequestedExpiry: "0"}, ciba.CodeInvalidRequest},
		{"requested_expiry -5 is invalid_request", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, RequestedExpiry: "-5"}, ciba.CodeInvalidRequest},
		{"requested_expiry 1.5 is invalid_request", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, RequestedExpiry: "1.5"}, ciba.CodeInvalidRequest},
		{"client_notification_token is REQUIRED for ping (§7.1)", pingClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, ciba.CodeInvalidRequest},
		{"client_notification_token is REQUIRED for push (§7.1)", pushClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, ciba.CodeInvalidRequest},
		{"client_notification_token over 1024 characters is invalid_request", pingClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, ClientNotificationToken: long}, ciba.CodeInvalidRequest},
		{"client_notification_token must have RFC 6750 bearer syntax", pingClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, ClientNotificationToken: "a b"}, ciba.CodeInvalidRequest},
		{"a binding_message over the published length is invalid_binding_message", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: strings.Repeat("x", 21)}, ciba.CodeInvalidBindingMessage},
		{"a binding_message with a control character is invalid_binding_message", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: "Code\n1234"}, ciba.CodeInvalidBindingMessage},
		{"a binding_message with markup is invalid_binding_message", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: "<b>1234</b>"}, ciba.CodeInvalidBindingMessage},
		{"a client that requires a user_code gets missing_user_code without one", codeClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, ciba.CodeMissingUserCode},
		{"a wrong user_code is invalid_user_code", codeClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, UserCode: "9999"}, ciba.CodeInvalidUserCode},
		{"an unknown user is unknown_user_id (§13), not invalid_request", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "mallory"}}, ciba.CodeUnknownUserID},
		{"an expired login_hint_token is expired_login_hint_token", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHintToken: "expired"}}, ciba.CodeExpiredLoginHintToken},
		{"an upstream failure is server_error without its details", pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHintToken: "broken"}}, ciba.CodeServerError},
		{"a client without a delivery mode is unauthorized_client", &ciba.Client{ID: "none"}, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, ciba.CodeUnauthorizedClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			_, err := f.svc.Authorize(context.Background(), tt.client, tt.p)
			if got := code(err); got != tt.want {
				t.Fatalf("error = %v, want %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "exploded") && ciba.AsError(err).Description != "the identity provider failed" {
				t.Errorf("internal detail leaked into the description: %q", ciba.AsError(err).Description)
			}
			n := 0
			f.store.ListRequests(context.Background(), func(*ciba.AuthRequest) bool { n++; return true })
			if n != 0 {
				t.Errorf("a refused request was stored (%d records)", n)
			}
		})
	}
}

func TestAuthorizeAccepts(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	t.Run("requested_expiry above the maximum is shortened and expires_in says so", func(t *testing.T) {
		resp, err := f.svc.Authorize(ctx, pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, RequestedExpiry: "3600"})
		if err != nil || resp.ExpiresIn != 600 || resp.Interval != 5 {
			t.Fatalf("resp = %+v, %v; want expires_in 600, interval 5", resp, err)
		}
	})
	t.Run("without requested_expiry the default lifetime applies", func(t *testing.T) {
		resp, err := f.svc.Authorize(ctx, pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}})
		if err != nil || resp.ExpiresIn != 300 {
			t.Fatalf("resp = %+v, %v", resp, err)
		}
	})
	t.Run("a binding_message with spaces is accepted (\"Code 1234\")", func(t *testing.T) {
		if _, err := f.svc.Authorize(ctx, pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: "Code 1234"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a right user_code is accepted and only its hash is kept", func(t *testing.T) {
		resp, err := f.svc.Authorize(ctx, codeClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, UserCode: "1234"})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := f.store.GetRequest(ctx, resp.AuthReqID)
		if r.UserCodeHash == "" || strings.Contains(r.UserCodeHash, "1234") {
			t.Fatalf("UserCodeHash = %q", r.UserCodeHash)
		}
	})
	t.Run("auth_req_id and approval id are distinct and long", func(t *testing.T) {
		resp, _ := f.svc.Authorize(ctx, pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}})
		r, _ := f.store.GetRequest(ctx, resp.AuthReqID)
		if r.ApprovalID == r.ID || len(r.ID) < 32 || len(r.ApprovalID) < 22 {
			t.Fatalf("ids %q / %q", r.ID, r.ApprovalID)
		}
	})
}

func TestPollStates(t *testing.T) {
	ctx := context.Background()
	t.Run("a pending request answers authorization_pending", func(t *testing.T) {
		f := newFixture(t, nil)
		id := f.create(t, pollClient)
		_, err := f.svc.Poll(ctx, pollClient, id)
		if code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("polling faster than the interval answers slow_down and the interval grows by 5 s", func(t *testing.T) {
		f := newFixture(t, nil)
		id := f.create(t, pollClient)
		f.svc.Poll(ctx, pollClient, id)
		f.clock.Add(time.Second)
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeSlowDown {
			t.Fatalf("early poll: %v", err)
		}
		f.clock.Add(6 * time.Second) // the old interval has passed, the new one (10 s) has not
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeSlowDown {
			t.Fatalf("poll after the old interval: %v", err)
		}
		f.clock.Add(15 * time.Second) // a client that waits its grown interval (15 s) is on time
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("poll on time: %v", err)
		}
		f.clock.Add(14 * time.Second) // the interval stays grown for all later polls
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeSlowDown {
			t.Fatalf("poll 14 s later with a 15 s interval: %v", err)
		}
	})
	t.Run("an approved request gives its tokens exactly once, then invalid_grant", func(t *testing.T) {
		f := newFixture(t, nil)
		id := f.create(t, pollClient)
		f.approve(t, id)
		body, err := f.svc.Poll(ctx, pollClient, id)
		if err != nil || !strings.Contains(string(body), `"access_token":"at-`+id) {
			t.Fatalf("first poll: %s, %v", body, err)
		}
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("second poll: %v", err)
		}
		r, _ := f.store.GetRequest(ctx, id)
		if r.Status != ciba.StatusRedeemed || r.Result != nil {
			t.Fatalf("after redemption: status %s, result %d bytes", r.Status, len(r.Result))
		}
	})
	t.Run("stored tokens are encrypted", func(t *testing.T) {
		f := newFixture(t, nil)
		id := f.create(t, pollClient)
		f.approve(t, id)
		r, _ := f.store.GetRequest(ctx, id)
		if len(r.Result) == 0 || strings.Contains(string(r.Result), "at-") {
			t.Fatalf("result not sealed: %q", r.Result)
		}
	})
	t.Run("a denied request answers access_denied", func(t *testing.T) {
		f := newFixture(t, nil)
		id := f.create(t, pollClient)
		r, _ := f.store.GetRequest(ctx, id)
		if err := f.svc.Callback(ctx, f.svc.CallbackToken(r.ApprovalID), false, "", ""); err != nil {
			t.Fatal(err)
		}
		_, err := f.svc.Poll(ctx, pollClient, id)
		if e := ciba.AsError(err); e.Code != ciba.CodeAccessDenied || e.HTTPStatus() != 400 {
			t.Fatalf("got %v (status %d); the token endpoint answers access_denied with 400", err, e.HTTPStatus())
		}
	})
	t.Run("an expired request answers expired_token, also after approval", func(t *testing.T) {
		f := newFixture(t, nil)
		pend := f.create(t, pollClient)
		appr := f.create(t, pollClient)
		f.approve(t, appr)
		f.clock.Add(5*time.Minute + time.Second)
		for _, id := range []string{pend, appr} {
			if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeExpiredToken {
				t.Fatalf("got %v", err)
			}
		}
	})
	t.Run("an unknown auth_req_id is invalid_grant", func(t *testing.T) {
		f := newFixture(t, nil)
		if _, err := f.svc.Poll(ctx, pollClient, "nope"); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("another client's auth_req_id is invalid_grant and changes nothing", func(t *testing.T) {
		f := newFixture(t, nil)
		id := f.create(t, pollClient)
		f.approve(t, id)
		if _, err := f.svc.Poll(ctx, other, id); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("got %v", err)
		}
		if _, err := f.svc.Poll(ctx, pollClient, id); err != nil {
			t.Fatalf("the owner lost its tokens: %v", err)
		}
	})
	t.Run("a missing auth_req_id is invalid_request", func(t *testing.T) {
		f := newFixture(t, nil)
		if _, err := f.svc.Poll(ctx, pollClient, ""); code(err) != ciba.CodeInvalidRequest {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a push client may not poll (unauthorized_client)", func(t *testing.T) {
		f := newFixture(t, nil)
		id := f.create(t, pushClient)
		if _, err := f.svc.Poll(ctx, pushClient, id); code(err) != ciba.CodeUnauthorizedClient {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a ping client may poll", func(t *testing.T) {
		f := newFixture(t, nil)
		id := f.create(t, pingClient)
		if _, err := f.svc.Poll(ctx, pingClient, id); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("got %v", err)
		}
	})
}

func TestConcurrentPollsYieldOneTokenResponse(t *testing.T) {
	f := newFixture(t, nil)
	id := f.create(t, pollClient)
	f.approve(t, id)
	var ok, grant atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := f.svc.Poll(context.Background(), pollClient, id)
			switch code(err) {
			case "":
				ok.Add(1)
			case ciba.CodeInvalidGrant:
				grant.Add(1)
			default:
				t.Errorf("unexpected answer %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || grant.Load() != 99 {
		t.Fatalf("%d token responses and %d invalid_grant; want 1 and 99", ok.Load(), grant.Load())
	}
}

func TestLongPoll(t *testing.T) {
	ctx := context.Background()
	realClock := func(c *ciba.Config, d *ciba.Deps) { c.LongPoll = 5 * time.Second; d.Now = time.Now }
	t.Run("a held poll is answered the moment the request is approved", func(t *testing.T) {
		f := newFixture(t, realClock)
		id := f.create(t, pollClient)
		done := make(chan error, 1)
		var body []byte
		go func() {
			var err error
			body, err = f.svc.Poll(ctx, pollClient, id)
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		f.approve(t, id)
		if err := <-done; err != nil || !strings.Contains(string(body), "access_token") {
			t.Fatalf("held poll: %s, %v", body, err)
		}
	})
	t.Run("an overlapping poll of the same auth_req_id gets slow_down", func(t *testing.T) {
		f := newFixture(t, realClock)
		id := f.create(t, pollClient)
		done := make(chan error, 1)
		go func() { _, err := f.svc.Poll(ctx, pollClient, id); done <- err }()
		time.Sleep(50 * time.Millisecond)
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeSlowDown {
			t.Fatalf("overlapping poll: %v", err)
		}
		r, _ := f.store.GetRequest(ctx, id)
		if err := f.svc.Callback(ctx, f.svc.CallbackToken(r.ApprovalID), false, "no", ""); err != nil {
			t.Fatal(err)
		}
		if err := <-done; code(err) != ciba.CodeAccessDenied {
			t.Fatalf("held poll after denial: %v", err)
		}
	})
	t.Run("a held poll ends with authorization_pending when the hold ends", func(t *testing.T) {
		f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) { c.LongPoll = 100 * time.Millisecond; d.Now = time.Now })
		id := f.create(t, pollClient)
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a held poll is released when the client goes away", func(t *testing.T) {
		f := newFixture(t, realClock)
		id := f.create(t, pollClient)
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := f.svc.Poll(cctx, pollClient, id); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("got %v", err)
		}
		p, err := f.store.UpdatePace(ctx, id, func(*ciba.Pace) error { return nil })
		if err != nil || !p.HoldUntil.IsZero() {
			t.Fatalf("hold not released: %+v, %v", p, err)
		}
	})
	t.Run("ReleaseHolds answers a held poll, and later polls are not held", func(t *testing.T) {
		// A one-hour hold: only ReleaseHolds can end the poll within the
		// test's bounded wait.
		f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
			c.LongPoll = time.Hour
			c.MaxExpiry = 2 * time.Hour
			d.Now = time.Now
		})
		id := f.create(t, pollClient)
		done := make(chan error, 1)
		go func() { _, err := f.svc.Poll(ctx, pollClient, id); done <- err }()
		time.Sleep(50 * time.Millisecond)
		f.svc.ReleaseHolds()
		select {
		case err := <-done:
			if code(err) != ciba.CodeAuthorizationPending {
				t.Fatalf("released poll: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("ReleaseHolds did not answer the held poll")
		}
		f.svc.ReleaseHolds() // twice is fine
		// A new request and its first (on-time) poll: answered, not held.
		id2 := f.create(t, pollClient)
		got := make(chan error, 1)
		go func() { _, err := f.svc.Poll(ctx, pollClient, id2); got <- err }()
		select {
		case err := <-got:
			if code(err) != ciba.CodeAuthorizationPending {
				t.Fatalf("poll after ReleaseHolds: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a poll after ReleaseHolds was held")
		}
	})
}

func TestCallback(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	id := f.create(t, pollClient)
	r, _ := f.store.GetRequest(ctx, id)
	tok := f.svc.CallbackToken(r.ApprovalID)
	for name, bad := range map[string]string{
		"a forged token":             r.ApprovalID + ".AAAA",
		"a token without a dot":      "garbage",
		"another request's token":    f.svc.CallbackToken("someone-else"),
		"the auth_req_id as a token": id,
	} {
		t.Run(name+" is invalid_token and changes nothing", func(t *testing.T) {
			if err := f.svc.Callback(ctx, bad, true, "", ""); code(err) != ciba.CodeInvalidToken {
				t.Fatalf("got %v", err)
			}
			if got, _ := f.store.GetRequest(ctx, id); got.Status != ciba.StatusPending {
				t.Fatalf("status %s", got.Status)
			}
		})
	}
	t.Run("the right token approves", func(t *testing.T) {
		if err := f.svc.Callback(ctx, tok, true, "", ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a replayed callback changes nothing", func(t *testing.T) {
		if err := f.svc.Callback(ctx, tok, false, "", ""); err == nil {
			t.Fatal("replayed deny accepted")
		}
		if got, _ := f.store.GetRequest(ctx, id); got.Status != ciba.StatusApproved {
			t.Fatalf("status %s", got.Status)
		}
	})
	t.Run("a callback after expiry is expired_token", func(t *testing.T) {
		id2 := f.create(t, pollClient)
		r2, _ := f.store.GetRequest(ctx, id2)
		f.clock.Add(6 * time.Minute)
		if err := f.svc.Callback(ctx, f.svc.CallbackToken(r2.ApprovalID), true, "", ""); code(err) != ciba.CodeExpiredToken {
			t.Fatalf("got %v", err)
		}
	})
}

// run starts the dispatcher with the real clock and stops it at the end of the test.
func (f *fixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a delivery")
		panic("unreachable")
	}
}

func TestDelivery(t *testing.T) {
	ctx := context.Background()
	realTime := func(c *ciba.Config, d *ciba.Deps) { d.Now = time.Now }
	t.Run("ping: the client is pinged once with its bearer, then polls its tokens", func(t *testing.T) {
		f := newFixture(t, realTime)
		f.note.got = make(chan call, 4)
		f.run(t)
		id := f.create(t, pingClient)
		f.approve(t, id)
		c := wait(t, f.note.got)
		if c.kind != "ping" || c.id != id || c.bearer != "note-token" || c.endpoint != pingClient.NotificationEndpoint {
			t.Fatalf("ping = %+v", c)
		}
		if _, err := f.svc.Poll(ctx, pingClient, id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if len(f.note.calls) != 1 {
			t.Fatalf("%d notifications, want 1", len(f.note.calls))
		}
	})
	t.Run("push: the tokens are pushed with auth_req_id exactly once, after retries", func(t *testing.T) {
		f := newFixture(t, realTime)
		f.note.fail = 2
		f.note.got = make(chan call, 4)
		f.run(t)
		id := f.create(t, pushClient)
		f.approve(t, id)
		c := wait(t, f.note.got)
		var m map[string]string
		json.Unmarshal(c.body, &m)
		if c.kind != "push" || m["auth_req_id"] != id || m["access_token"] != "at-"+id {
			t.Fatalf("push = %+v / %s", c, c.body)
		}
		r, _ := f.store.GetRequest(ctx, id)
		for r.Status != ciba.StatusRedeemed {
			time.Sleep(10 * time.Millisecond)
			r, _ = f.store.GetRequest(ctx, id)
		}
		if r.Result != nil || r.ClientNotice.Attempts != 3 {
			t.Fatalf("after push: result %d bytes, attempts %d", len(r.Result), r.ClientNotice.Attempts)
		}
		time.Sleep(100 * time.Millisecond)
		if len(f.note.calls) != 1 {
			t.Fatalf("%d successful pushes, want 1", len(f.note.calls))
		}
	})
	t.Run("push: a denial is pushed as an access_denied push error", func(t *testing.T) {
		f := newFixture(t, realTime)
		f.note.got = make(chan call, 4)
		f.run(t)
		id := f.create(t, pushClient)
		r, _ := f.store.GetRequest(ctx, id)
		f.svc.Callback(ctx, f.svc.CallbackToken(r.ApprovalID), false, "", "")
		c := wait(t, f.note.got)
		if !strings.Contains(string(c.body), `"error":"access_denied"`) || !strings.Contains(string(c.body), id) {
			t.Fatalf("push error = %s", c.body)
		}
	})
	t.Run("push: expiry is pushed as an expired_token push error", func(t *testing.T) {
		f := newFixture(t, realTime)
		f.note.got = make(chan call, 4)
		f.run(t)
		f.create(t, pushClient, func(p *ciba.AuthParams) { p.RequestedExpiry = "1" })
		c := wait(t, f.note.got)
		if !strings.Contains(string(c.body), `"error":"expired_token"`) {
			t.Fatalf("push error = %s", c.body)
		}
	})
	t.Run("push: expiry is pushed also when the dispatcher has nothing else to wake it", func(t *testing.T) {
		// Regression: the next look was computed before processing scheduled
		// it, so the dispatcher slept until some unrelated wake-up.
		ch := &channel{got: make(chan ciba.Notice, 1)}
		f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) { d.Now = time.Now; d.Channel = ch })
		f.note.got = make(chan call, 4)
		f.run(t)
		f.create(t, pushClient, func(p *ciba.AuthParams) { p.RequestedExpiry = "2" })
		wait(t, ch.got)
		c := wait(t, f.note.got)
		if !strings.Contains(string(c.body), `"error":"expired_token"`) {
			t.Fatalf("push error = %s", c.body)
		}
	})
	t.Run("the channel gets the approve link and a callback token that works", func(t *testing.T) {
		ch := &channel{got: make(chan ciba.Notice, 1)}
		f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
			d.Now = time.Now
			d.Channel = ch
			c.ApproveURL = func(id string) string { return "https://proxy.example/approve/" + id }
		})
		f.run(t)
		id := f.create(t, pollClient)
		n := wait(t, ch.got)
		r, _ := f.store.GetRequest(ctx, id)
		if n.ApproveURL != "https://proxy.example/approve/"+r.ApprovalID || strings.Contains(n.ApproveURL, id) {
			t.Fatalf("approve URL %q", n.ApproveURL)
		}
		if err := f.svc.Callback(ctx, n.CallbackToken, true, "", ""); err != nil {
			t.Fatal(err)
		}
		for r.UserNotice.Pending() {
			time.Sleep(10 * time.Millisecond)
			r, _ = f.store.GetRequest(ctx, id)
		}
	})
	t.Run("deliveries due before a restart are resumed by a new service on the same store", func(t *testing.T) {
		f := newFixture(t, realTime)
		f.note.got = make(chan call, 4)
		id := f.create(t, pingClient)
		f.approve(t, id) // no dispatcher running: the ping stays due in the store
		f.run(t)
		if c := wait(t, f.note.got); c.id != id {
			t.Fatalf("resumed ping for %q", c.id)
		}
	})
}

func TestApproveByRecordsWhoApprovedOnlyWhenNobodyWasNamed(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	named := f.create(t, pollClient)
	if err := f.svc.ApproveBy(ctx, named, f.clock.Now(), []byte(`{"access_token":"a","token_type":"Bearer"}`), "someone-else"); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.store.GetRequest(ctx, named); r.Subject != "sub-alice" {
		t.Errorf("a request naming its user: subject %q after ApproveBy, want it kept", r.Subject)
	}
	anon := f.create(t, pollClient)
	if _, err := f.store.UpdateRequest(ctx, anon, func(r *ciba.AuthRequest) error { r.Subject = ""; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.ApproveBy(ctx, anon, f.clock.Now(), []byte(`{"access_token":"a","token_type":"Bearer"}`), "idp-sub-bob"); err != nil {
		t.Fatal(err)
	}
	if r, _ := f.store.GetRequest(ctx, anon); r.Subject != "idp-sub-bob" || r.Status != ciba.StatusApproved {
		t.Errorf("a request naming nobody: subject %q, status %s; want idp-sub-bob, approved", r.Subject, r.Status)
	}
}

func TestABindingMessageCanBeRequired(t *testing.T) {
	f := newFixture(t, nil)
	strict := *pollClient
	strict.RequireBindingMessage = true
	_, err := f.svc.Authorize(context.Background(), &strict, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}})
	if e := ciba.AsError(err); e.Code != ciba.CodeInvalidRequest || !strings.Contains(e.Description, "binding_message") {
		t.Fatalf("a request without binding_message from a client that must send one: %v", err)
	}
	if _, err := f.svc.Authorize(context.Background(), &strict, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: "Code 12"}); err != nil {
		t.Fatalf("with a binding_message: %v", err)
	}
}

// TestChannelMessageLeftToAnInstanceWithAChannel: on a store shared by
// instances, a request created by one with a channel is seen by the
// dispatcher of one without (a rolling configuration change, or a
// deployment that sends through some instances only). That one must leave
// the message alone, not crash or mark it sent; an instance with the
// channel then sends it.
func TestChannelMessageLeftToAnInstanceWithAChannel(t *testing.T) {
	realTime := func(c *ciba.Config, d *ciba.Deps) { d.Now = time.Now }
	ch := &channel{got: make(chan ciba.Notice, 4)}
	with := newFixture(t, func(c *ciba.Config, d *ciba.Deps) { realTime(c, d); d.Channel = ch })
	id := with.create(t, pollClient)
	without := newFixture(t, func(c *ciba.Config, d *ciba.Deps) { realTime(c, d); d.Store = with.store })
	without.run(t)
	time.Sleep(300 * time.Millisecond) // the dispatcher's first look at the store
	r, err := with.store.GetRequest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if !r.UserNotice.Pending() || r.UserNotice.Attempts != 0 {
		t.Fatalf("an instance without a channel touched the message: %+v", r.UserNotice)
	}
	with.run(t)
	if n := wait(t, ch.got); n.CallbackToken == "" {
		t.Fatalf("the channel sent %+v, want the request's message", n)
	}
}
