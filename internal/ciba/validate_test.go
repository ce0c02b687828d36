package ciba_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/validate"
)

// policyHook is a validation hook on 127.0.0.1 (the real HTTP validator
// calls it): it answers each call with answer and records what it was told.
type policyHook struct {
	srv    *httptest.Server
	hook   *validate.Hook
	mu     sync.Mutex
	answer func(m validate.Message) (status int, body string)
	calls  []validate.Message
}

func newPolicyHook(t *testing.T, answer func(m validate.Message) (int, string)) *policyHook {
	t.Helper()
	p := &policyHook{answer: answer}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m validate.Message
		_ = json.Unmarshal(b, &m)
		p.mu.Lock()
		p.calls = append(p.calls, m)
		status, body := p.answer(m)
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(p.srv.Close)
	client := outbound.New(2*time.Second, outbound.Guard(outbound.Policy{AllowHTTP: true, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}))
	var err error
	p.hook, err = validate.New(validate.Config{URL: p.srv.URL, Secret: []byte(strings.Repeat("k", 32)), Timeout: 2 * time.Second, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *policyHook) seen() []validate.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]validate.Message(nil), p.calls...)
}

// denyBob refuses every request for bob and allows the others.
func denyBob(m validate.Message) (int, string) {
	if m.Subject == "sub-bob" || m.LoginHint == "bob" {
		return 200, `{"allow":false,"reason":"bob may not sign in from this terminal"}`
	}
	return 200, `{"allow":true}`
}

// validationCounter counts the validation outcomes the service reports.
type validationCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (v *validationCounter) ObserveDelivery(string, error) {}
func (v *validationCounter) ObserveValidation(result string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.counts[result]++
}

func storedRequests(t *testing.T, st ciba.Store) int {
	t.Helper()
	n := 0
	if err := st.ListRequests(context.Background(), func(*ciba.AuthRequest) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestValidationHook(t *testing.T) {
	origin := ciba.Origin{Addr: netip.MustParseAddr("203.0.113.9"), RequestID: "rid-42"}
	ctx := ciba.WithOrigin(context.Background(), origin)
	params := func(hint string) ciba.AuthParams {
		return ciba.AuthParams{Scope: "openid email", Hint: ciba.Hint{LoginHint: hint}, BindingMessage: "Code 1234", RequestedExpiry: "120", ACRValues: "urn:acr:2fa"}
	}

	t.Run("a refusal is access_denied with the hook's reason; nothing is stored and the user is not reached", func(t *testing.T) {
		hook := newPolicyHook(t, denyBob)
		ch := &channel{got: make(chan ciba.Notice, 4)}
		obs := &validationCounter{counts: map[string]int{}}
		userLimited := 0
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) {
			d.Now, d.Channel, d.Validator, d.Observer = time.Now, ch, hook.hook, obs
			d.UserLimit = func(context.Context, string, time.Time) (bool, time.Duration, error) {
				userLimited++
				return true, 0, nil
			}
		})
		f.run(t)
		_, err := f.svc.Authorize(ctx, pollClient, params("bob"))
		e := ciba.AsError(err)
		if e.Code != ciba.CodeAccessDenied || e.HTTPStatus() != http.StatusForbidden {
			t.Fatalf("Authorize = %v, want access_denied (HTTP 403)", err)
		}
		if !strings.Contains(e.Description, "bob may not sign in from this terminal") {
			t.Errorf("error_description = %q, want the hook's reason", e.Description)
		}
		if n := storedRequests(t, f.store); n != 0 {
			t.Errorf("%d requests stored after a refusal, want none", n)
		}
		if userLimited != 0 {
			t.Errorf("a refused request used the user's allowance (%d calls of UserLimit)", userLimited)
		}
		// An allowed request afterwards does reach the user: the only
		// notice the channel ever gets is that one.
		f.create(t, pollClient)
		wait(t, ch.got)
		select {
		case n := <-ch.got:
			t.Errorf("the channel was called for the refused request too: %+v", n)
		case <-time.After(100 * time.Millisecond):
		}
		if obs.counts["deny"] != 1 || obs.counts["allow"] != 1 || obs.counts["error"] != 0 {
			t.Errorf("outcomes = %v, want one deny and one allow", obs.counts)
		}
	})

	t.Run("the hook is told what a policy needs, and no credential", func(t *testing.T) {
		hook := newPolicyHook(t, denyBob)
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) { d.Validator = hook.hook })
		p := params("alice")
		p.UserCode = "1234"
		if _, err := f.svc.Authorize(ctx, codeClient, p); err != nil {
			t.Fatal(err)
		}
		calls := hook.seen()
		if len(calls) != 1 {
			t.Fatalf("%d calls of the hook, want 1", len(calls))
		}
		want := validate.Message{
			RequestID: "rid-42", ClientID: "code", ClientIP: "203.0.113.9", HintType: "login_hint", Subject: "sub-alice",
			Scope: "openid email", ACRValues: "urn:acr:2fa", BindingMessage: "Code 1234", RequestedExpiry: 120,
		}
		if calls[0] != want {
			t.Errorf("the hook was told %+v, want %+v", calls[0], want)
		}
	})

	t.Run("bad requests never reach the hook", func(t *testing.T) {
		hook := newPolicyHook(t, denyBob)
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) { d.Validator = hook.hook })
		for _, p := range []ciba.AuthParams{
			{Scope: "email", Hint: ciba.Hint{LoginHint: "alice"}},
			{Scope: "openid", Hint: ciba.Hint{LoginHint: "nobody"}},
			{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}, RequestedExpiry: "0"},
		} {
			if _, err := f.svc.Authorize(ctx, pollClient, p); err == nil {
				t.Fatalf("Authorize(%+v) accepted", p)
			}
		}
		if n := len(hook.seen()); n != 0 {
			t.Errorf("the hook was called %d times for invalid requests", n)
		}
	})

	t.Run("fail closed: no verdict is temporarily_unavailable and nothing is stored", func(t *testing.T) {
		hook := newPolicyHook(t, func(validate.Message) (int, string) { return 502, `{"allow":true}` })
		obs := &validationCounter{counts: map[string]int{}}
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) { d.Validator, d.Observer = hook.hook, obs })
		_, err := f.svc.Authorize(ctx, pollClient, params("alice"))
		if e := ciba.AsError(err); e.Code != ciba.CodeTemporarilyUnavailable || e.HTTPStatus() != http.StatusServiceUnavailable {
			t.Fatalf("Authorize = %v, want temporarily_unavailable (HTTP 503)", err)
		}
		if n := storedRequests(t, f.store); n != 0 {
			t.Errorf("%d requests stored, want none", n)
		}
		if obs.counts["error"] != 1 {
			t.Errorf("outcomes = %v, want one error", obs.counts)
		}
	})

	t.Run("fail open: no verdict accepts the request", func(t *testing.T) {
		hook := newPolicyHook(t, func(validate.Message) (int, string) { return 200, `{"allow":"maybe"}` })
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) { d.Validator, d.ValidationFailOpen = hook.hook, true })
		id := f.create(t, pollClient)
		if _, err := f.store.GetRequest(context.Background(), id); err != nil {
			t.Fatalf("the request accepted under fail open is not stored: %v", err)
		}
	})

	t.Run("fail open does not override a refusal", func(t *testing.T) {
		hook := newPolicyHook(t, denyBob)
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) { d.Validator, d.ValidationFailOpen = hook.hook, true })
		if _, err := f.svc.Authorize(ctx, pollClient, params("bob")); code(err) != ciba.CodeAccessDenied {
			t.Fatalf("Authorize = %v, want access_denied", err)
		}
	})

	t.Run("a client with SkipValidation is not sent to the hook", func(t *testing.T) {
		hook := newPolicyHook(t, denyBob)
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) { d.Validator = hook.hook })
		trusted := &ciba.Client{ID: "trusted", Mode: ciba.ModePoll, SkipValidation: true}
		if _, err := f.svc.Authorize(ctx, trusted, params("bob")); err != nil {
			t.Fatalf("Authorize = %v, want accepted", err)
		}
		if n := len(hook.seen()); n != 0 {
			t.Errorf("the hook was called %d times", n)
		}
	})

	t.Run("the reason is made fit for error_description and shortened", func(t *testing.T) {
		reason := "line\none \"quoted\" \\ " + strings.Repeat("é", 500)
		body, _ := json.Marshal(map[string]any{"allow": false, "reason": reason})
		hook := newPolicyHook(t, func(validate.Message) (int, string) { return 200, string(body) })
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) { d.Validator = hook.hook })
		_, err := f.svc.Authorize(ctx, pollClient, params("alice"))
		desc := ciba.AsError(err).Description
		if ciba.SafeDescription(desc) != desc {
			t.Errorf("error_description %q has characters RFC 6749 §5.2 does not allow", desc)
		}
		if len(desc) > 300 {
			t.Errorf("error_description is %d bytes, want it bounded", len(desc))
		}
		if !strings.Contains(desc, "line<U+000A>one 'quoted' <U+005C> <U+00E9>") {
			t.Errorf("error_description = %q, want the start of the reason", desc)
		}
	})

	t.Run("a relayed request refused by the hook never reaches the upstream", func(t *testing.T) {
		hook := newPolicyHook(t, denyBob)
		relay := &fakeRelay{polls: map[string]int{}, expires: time.Minute}
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) {
			d.Now, d.Relay, d.Upstream, d.Validator = time.Now, relay, nil, hook.hook
		})
		if _, err := f.svc.Authorize(ctx, pollClient, params("bob")); code(err) != ciba.CodeAccessDenied {
			t.Fatalf("Authorize = %v, want access_denied", err)
		}
		relay.mu.Lock()
		started := len(relay.started)
		relay.mu.Unlock()
		if started != 0 {
			t.Errorf("the upstream was asked %d times", started)
		}
		if calls := hook.seen(); len(calls) != 1 || calls[0].LoginHint != "bob" || calls[0].Subject != "" {
			t.Errorf("the hook was told %+v, want the login_hint (no subject is known)", calls)
		}
		f.create(t, pollClient)
		if n := storedRequests(t, f.store); n != 1 {
			t.Errorf("%d requests stored, want only the allowed one", n)
		}
	})
}
