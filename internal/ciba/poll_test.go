package ciba_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// queryStore records the queries of Store.Poll and may answer them itself.
type queryStore struct {
	ciba.Store
	mu      sync.Mutex
	queries []ciba.PollQuery
	answer  *ciba.PollResult
}

func (s *queryStore) Poll(ctx context.Context, id string, q ciba.PollQuery) (ciba.PollResult, error) {
	s.mu.Lock()
	s.queries = append(s.queries, q)
	answer := s.answer
	s.mu.Unlock()
	if answer != nil {
		return *answer, nil
	}
	return s.Store.Poll(ctx, id, q)
}

func (s *queryStore) last(t *testing.T) ciba.PollQuery {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queries) == 0 {
		t.Fatal("the store was not asked")
	}
	return s.queries[len(s.queries)-1]
}

// TestPollQueries: every poll is one Store.Poll whose query names the
// client, the grant and the certificate; a poll client may be answered
// from an instance's knowledge, a ping client's poll asks for the current
// state, a push client's only checks; and each outcome is answered as
// CIBA §11 says.
func TestPollQueries(t *testing.T) {
	ctx := context.Background()
	var qs *queryStore
	f := newFixture(t, func(c *ciba.Config, d *ciba.Deps) {
		qs = &queryStore{Store: d.Store}
		d.Store = qs
	})
	for _, tc := range []struct {
		client             *ciba.Client
		current, checkOnly bool
		want               ciba.ErrorCode
	}{
		{pollClient, false, false, ciba.CodeAuthorizationPending},
		{pingClient, true, false, ciba.CodeAuthorizationPending},
		{pushClient, true, true, ciba.CodeUnauthorizedClient},
	} {
		id := f.create(t, tc.client)
		if _, err := f.svc.PollCert(ctx, tc.client, id, "cert"); code(err) != tc.want {
			t.Errorf("%s: poll answered %v, want %s", tc.client.ID, err, tc.want)
		}
		q := qs.last(t)
		if q.ClientID != tc.client.ID || q.Kind != ciba.KindCIBA || q.Cert != "cert" || q.Current != tc.current || q.CheckOnly != tc.checkOnly ||
			!q.Rule.Now.Equal(f.clock.Now()) || q.Rule.Step < 5*time.Second {
			t.Errorf("%s: query %+v", tc.client.ID, q)
		}
	}
	dev := newDevice(t, f, nil)
	if _, err := dev.PollCert(ctx, tvClient, "unknown", "cert"); code(err) != ciba.CodeInvalidGrant {
		t.Errorf("device poll of an unknown code: %v", err)
	}
	if q := qs.last(t); q.ClientID != tvClient.ID || q.Kind != ciba.KindDevice || q.Cert != "cert" || q.Rule.Hold != 0 || q.CheckOnly {
		t.Errorf("device poll: query %+v", q)
	}
	for _, tc := range []struct {
		res  ciba.PollResult
		want ciba.ErrorCode
	}{
		{ciba.PollResult{Outcome: ciba.PollUnknown}, ciba.CodeInvalidGrant},
		{ciba.PollResult{Outcome: ciba.PollWrongCert}, ciba.CodeInvalidGrant},
		{ciba.PollResult{Outcome: ciba.PollWrongKey}, ciba.CodeInvalidGrant},
		{ciba.PollResult{Outcome: ciba.PollUnboundKey}, ciba.CodeInvalidDPoPProof},
		{ciba.PollResult{Outcome: ciba.PollSlow}, ciba.CodeSlowDown},
		{ciba.PollResult{Outcome: ciba.PollPending}, ciba.CodeAuthorizationPending},
		{ciba.PollResult{Outcome: ciba.PollDone, Request: &ciba.AuthRequest{ID: "x", Status: ciba.StatusDenied, ExpiresAt: f.clock.Now().Add(time.Minute)}}, ciba.CodeAccessDenied},
		{ciba.PollResult{Outcome: ciba.PollDone, Request: &ciba.AuthRequest{ID: "x", Status: ciba.StatusPending, ExpiresAt: f.clock.Now()}}, ciba.CodeExpiredToken},
	} {
		qs.mu.Lock()
		qs.answer = &tc.res
		qs.mu.Unlock()
		if _, err := f.svc.Poll(ctx, pollClient, "any"); code(err) != tc.want {
			t.Errorf("outcome %d: answered %v, want %s", tc.res.Outcome, err, tc.want)
		}
	}
}

// TestForeignPollsChangeNoPace: polls of a request by another client, or
// over another certificate, are invalid_grant and leave its pace as it
// was: its own client's next early poll is still slow_down by the first
// interval, not a grown one.
func TestForeignPollsChangeNoPace(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, nil)
	id := f.create(t, pollClient, func(p *ciba.AuthParams) { p.CertThumbprint = "mine" })
	if _, err := f.svc.PollCert(ctx, pollClient, id, "mine"); code(err) != ciba.CodeAuthorizationPending {
		t.Fatalf("first poll: %v", err)
	}
	before, err := f.store.UpdatePace(ctx, id, func(*ciba.Pace) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := f.svc.PollCert(ctx, other, id, "mine"); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("another client's poll: %v", err)
		}
		if _, err := f.svc.PollCert(ctx, pollClient, id, "theirs"); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("a poll over another certificate: %v", err)
		}
		if _, err := f.svc.PollCert(ctx, pollClient, id, ""); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("a poll without the certificate: %v", err)
		}
	}
	after, err := f.store.UpdatePace(ctx, id, func(*ciba.Pace) error { return nil })
	if err != nil || after != before {
		t.Fatalf("foreign polls changed the pace from %+v to %+v (%v)", before, after, err)
	}
}
