package ciba_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
)

// fakeRelay is a CIBA upstream: Start hands out ids, Poll answers from a
// script per id (the last answer repeats) and counts the calls.
type fakeRelay struct {
	mu       sync.Mutex
	started  []ciba.AuthParams
	tokens   []string // notification tokens given to Start
	polls    map[string]int
	script   []pollAnswer
	startErr error
	interval time.Duration
	expires  time.Duration
	ping     bool
	polled   chan string
}

type pollAnswer struct {
	res ciba.RelayResult
	err error
}

func (f *fakeRelay) Start(_ context.Context, c *ciba.Client, p ciba.AuthParams, token string) (ciba.RelayStarted, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.startErr != nil {
		return ciba.RelayStarted{}, f.startErr
	}
	f.started = append(f.started, p)
	f.tokens = append(f.tokens, token)
	return ciba.RelayStarted{ID: fmt.Sprintf("upstream-id-%d", len(f.started)), ExpiresIn: f.expires, Interval: f.interval}, nil
}

func (f *fakeRelay) Poll(_ context.Context, c *ciba.Client, id string) (ciba.RelayResult, error) {
	f.mu.Lock()
	n := f.polls[id]
	f.polls[id] = n + 1
	a := f.script[min(n, len(f.script)-1)]
	f.mu.Unlock()
	if f.polled != nil {
		f.polled <- id
	}
	return a.res, a.err
}

func (f *fakeRelay) SupportsPing(string) bool { return f.ping }

func (f *fakeRelay) pollCount(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls[id]
}

var (
	pending  = pollAnswer{res: ciba.RelayResult{Pending: true}}
	slowDown = pollAnswer{res: ciba.RelayResult{SlowDown: true}}
	tokens   = pollAnswer{res: ciba.RelayResult{Tokens: []byte(`{"access_token":"upstream-at","token_type":"Bearer","id_token":"upstream-idt"}`)}}
	down     = pollAnswer{err: fmt.Errorf("connection refused: %w", ciba.ErrUnavailable)}
)

func relayFixture(t *testing.T, relay *fakeRelay) *fixture {
	if relay.polls == nil {
		relay.polls = map[string]int{}
	}
	if relay.expires == 0 {
		relay.expires = time.Minute
	}
	return newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
		d.Now = time.Now
		d.Relay = relay
		d.Upstream = nil
	})
}

// pollUntilDone polls as a client would, every few milliseconds (most
// answers are slow_down: the client is faster than its interval), until the
// answer is not pending.
func pollUntilDone(t *testing.T, f *fixture, c *ciba.Client, id string) ([]byte, error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		body, err := f.svc.Poll(context.Background(), c, id)
		if code := code(err); code != ciba.CodeAuthorizationPending && code != ciba.CodeSlowDown {
			return body, err
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("the request did not finish")
	return nil, nil
}

func TestRelay(t *testing.T) {
	ctx := context.Background()

	t.Run("the upstream is polled at its interval, however often the client polls", func(t *testing.T) {
		relay := &fakeRelay{interval: 30 * time.Millisecond, script: []pollAnswer{pending, pending, tokens}}
		f := relayFixture(t, relay)
		f.run(t)
		id := f.create(t, pollClient, func(p *ciba.AuthParams) { p.BindingMessage = "Code 77"; p.Scope = "openid email" })
		body, err := pollUntilDone(t, f, pollClient, id)
		if err != nil || !strings.Contains(string(body), "upstream-at") {
			t.Fatalf("poll: %s %v", body, err)
		}
		if n := relay.pollCount("upstream-id-1"); n != 3 {
			t.Errorf("upstream polls = %d, want 3 (pending, pending, tokens)", n)
		}
		if p := relay.started[0]; p.BindingMessage != "Code 77" || p.Scope != "openid email" || p.Hint.LoginHint != "alice" {
			t.Errorf("relayed params = %+v", p)
		}
		if relay.tokens[0] != "" {
			t.Error("a notification token was given to a poll-mode upstream")
		}
		r, _ := f.store.GetRequest(ctx, id)
		if bytes.Contains(r.Relay.ID, []byte("upstream-id")) {
			t.Error("the upstream auth_req_id is stored in the clear")
		}
		if r.Relay.Polls != 3 || r.Status != ciba.StatusRedeemed {
			t.Errorf("after delivery: polls %d, status %s", r.Relay.Polls, r.Status)
		}
	})

	t.Run("the client's lifetime never exceeds the upstream's", func(t *testing.T) {
		relay := &fakeRelay{interval: time.Hour, expires: 42 * time.Second, script: []pollAnswer{pending}}
		f := relayFixture(t, relay)
		resp, err := f.svc.Authorize(ctx, pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}})
		if err != nil || resp.ExpiresIn != 42 {
			t.Fatalf("expires_in = %+v %v, want 42", resp, err)
		}
	})

	t.Run("errors of the upstream's start reach the client and store nothing", func(t *testing.T) {
		for _, tt := range []struct {
			err  error
			want ciba.ErrorCode
		}{
			{ciba.Errorf(ciba.CodeUnknownUserID, "the identity provider answered: no such user"), ciba.CodeUnknownUserID},
			{fmt.Errorf("dial: %w", ciba.ErrUnavailable), ciba.CodeTemporarilyUnavailable},
			// The mark of the leaf internal/upstream/idp, which does not
			// import ciba, is mapped here all the same.
			{idp.Unavailable(errors.New("dial tcp: connection refused")), ciba.CodeTemporarilyUnavailable},
			{errors.New("invalid_client at the IdP"), ciba.CodeServerError},
		} {
			f := relayFixture(t, &fakeRelay{startErr: tt.err, script: []pollAnswer{pending}})
			_, err := f.svc.Authorize(ctx, pollClient, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "nobody"}})
			if code(err) != tt.want {
				t.Errorf("start error %v: client got %v, want %s", tt.err, err, tt.want)
			}
			n := 0
			_ = f.store.ListRequests(ctx, func(*ciba.AuthRequest) bool { n++; return true })
			if n != 0 {
				t.Errorf("%d requests stored after a failed start", n)
			}
		}
	})

	t.Run("an upstream outage loses nothing: polling resumes", func(t *testing.T) {
		relay := &fakeRelay{interval: 20 * time.Millisecond, script: []pollAnswer{down, down, pending, tokens}}
		f := relayFixture(t, relay)
		f.run(t)
		id := f.create(t, pollClient)
		if body, err := pollUntilDone(t, f, pollClient, id); err != nil || !strings.Contains(string(body), "upstream-at") {
			t.Fatalf("poll: %s %v", body, err)
		}
		r, _ := f.store.GetRequest(ctx, id)
		if r.Relay.Failures != 0 || r.Relay.LastError != "" {
			t.Errorf("failures not cleared after recovery: %+v", r.Relay)
		}
	})

	t.Run("slow_down from the upstream grows the upstream interval by 5 s", func(t *testing.T) {
		relay := &fakeRelay{interval: 10 * time.Millisecond, script: []pollAnswer{slowDown}, polled: make(chan string, 4)}
		f := relayFixture(t, relay)
		f.run(t)
		id := f.create(t, pollClient)
		wait(t, relay.polled)
		var r *ciba.AuthRequest
		for range 200 {
			r, _ = f.store.GetRequest(ctx, id)
			if r.Relay.Interval > 10*time.Millisecond {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if want := 10*time.Millisecond + 5*time.Second; r.Relay.Interval != want {
			t.Fatalf("upstream interval after slow_down = %v, want %v", r.Relay.Interval, want)
		}
		if d := time.Until(r.Relay.NextPoll); d < 4*time.Second {
			t.Errorf("next upstream poll in %v, want about 5 s", d)
		}
	})

	t.Run("access_denied and other ends at the upstream reach the client", func(t *testing.T) {
		for _, tt := range []struct {
			answer pollAnswer
			want   string
		}{
			{pollAnswer{err: ciba.Errorf(ciba.CodeAccessDenied, "the identity provider answered: user said no")}, "user said no"},
			{pollAnswer{err: ciba.Errorf(ciba.CodeInvalidGrant, "unknown")}, "ended the request: invalid_grant"},
		} {
			f := relayFixture(t, &fakeRelay{interval: 10 * time.Millisecond, script: []pollAnswer{tt.answer}})
			f.run(t)
			id := f.create(t, pollClient)
			_, err := pollUntilDone(t, f, pollClient, id)
			if e := ciba.AsError(err); e.Code != ciba.CodeAccessDenied || !strings.Contains(e.Description, tt.want) {
				t.Errorf("upstream answer %v: client got %v, want access_denied with %q", tt.answer.err, err, tt.want)
			}
		}
	})

	t.Run("expired_token at the upstream expires the request here too", func(t *testing.T) {
		f := relayFixture(t, &fakeRelay{interval: 10 * time.Millisecond, script: []pollAnswer{{err: ciba.Errorf(ciba.CodeExpiredToken, "gone")}}})
		f.note.got = make(chan call, 4)
		f.run(t)
		id := f.create(t, pollClient)
		if _, err := pollUntilDone(t, f, pollClient, id); code(err) != ciba.CodeExpiredToken {
			t.Errorf("poll client: %v, want expired_token", err)
		}
		pid := f.create(t, pingClient)
		c := wait(t, f.note.got)
		if c.kind != "ping" || c.id != pid {
			t.Fatalf("the ping client was not told: %+v", c)
		}
		if _, err := f.svc.Poll(ctx, pingClient, pid); code(err) != ciba.CodeExpiredToken {
			t.Errorf("ping client: %v, want expired_token", err)
		}
	})

	t.Run("ping mode: no upstream poll until the upstream pings, then exactly one", func(t *testing.T) {
		relay := &fakeRelay{interval: 10 * time.Millisecond, ping: true, script: []pollAnswer{tokens}, polled: make(chan string, 4)}
		f := relayFixture(t, relay)
		f.note.got = make(chan call, 4)
		f.run(t)
		id := f.create(t, pingClient)
		token := relay.tokens[0]
		if token == "" {
			t.Fatal("no notification token was given to a ping-mode upstream")
		}
		time.Sleep(50 * time.Millisecond) // five upstream intervals: nothing may be polled
		if n := relay.pollCount("upstream-id-1"); n != 0 {
			t.Fatalf("%d upstream polls before the ping", n)
		}
		if err := f.svc.RelayPing(ctx, token+"x", "upstream-id-1"); code(err) != ciba.CodeInvalidToken {
			t.Errorf("ping with a wrong token: %v", err)
		}
		if err := f.svc.RelayPing(ctx, token, "upstream-id-2"); code(err) != ciba.CodeInvalidRequest {
			t.Errorf("ping with another request's upstream id: %v", err)
		}
		if err := f.svc.RelayPing(ctx, token, "upstream-id-1"); err != nil {
			t.Fatalf("ping: %v", err)
		}
		wait(t, relay.polled)
		c := wait(t, f.note.got) // the client is pinged in turn
		if c.kind != "ping" || c.id != id {
			t.Fatalf("client notification = %+v", c)
		}
		if _, err := f.svc.Poll(ctx, pingClient, id); err != nil {
			t.Fatalf("token after ping: %v", err)
		}
		if err := f.svc.RelayPing(ctx, token, "upstream-id-1"); err != nil {
			t.Errorf("a repeated ping after the end: %v, want it ignored", err)
		}
		time.Sleep(30 * time.Millisecond)
		if n := relay.pollCount("upstream-id-1"); n != 1 {
			t.Errorf("upstream polls = %d, want 1", n)
		}
	})

	t.Run("a restarted service resumes the upstream polls from the store", func(t *testing.T) {
		relay := &fakeRelay{interval: 20 * time.Millisecond, script: []pollAnswer{tokens}}
		f := relayFixture(t, relay)
		id := f.create(t, pollClient) // no dispatcher: nothing polls yet
		time.Sleep(40 * time.Millisecond)
		if n := relay.pollCount("upstream-id-1"); n != 0 {
			t.Fatalf("polled without a dispatcher: %d", n)
		}
		// A new service on the same store, as after a restart.
		g := newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
			d.Now, d.Relay, d.Upstream, d.Store = time.Now, relay, nil, f.store
			d.Sealer, d.CallbackKey = f.sealer, f.key
		})
		g.store = f.store
		g.run(t)
		if body, err := pollUntilDone(t, g, pollClient, id); err != nil || !strings.Contains(string(body), "upstream-at") {
			t.Fatalf("poll after restart: %s %v", body, err)
		}
	})
}
