package ciba_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// cachingStore is a store with a scripted ciba.PollCache in front: the
// service must answer early polls from it, and only those.
type cachingStore struct {
	ciba.Store
	mu       sync.Mutex
	views    map[string]ciba.PollView
	early    bool // PaceCached's slow
	answered bool // PaceCached's answered
	asked    int  // PaceCached calls
}

func (s *cachingStore) CachedPoll(id string) (ciba.PollView, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.views[id]
	return v, ok
}

func (s *cachingStore) PaceCached(string, ciba.PaceRule) (bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	return s.early, s.answered
}

func (s *cachingStore) set(id string, v ciba.PollView, early, answered bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.views[id], s.early, s.answered, s.asked = v, early, answered, 0
}

func (s *cachingStore) askedEarly() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked
}

func TestPollCache(t *testing.T) {
	ctx := context.Background()
	newCaching := func(t *testing.T) (*fixture, *cachingStore) {
		var cs *cachingStore
		f := newFixture(t, func(_ *ciba.Config, d *ciba.Deps) {
			cs = &cachingStore{Store: d.Store, views: map[string]ciba.PollView{}}
			d.Store = cs
		})
		return f, cs
	}
	pendingView := func(f *fixture, c *ciba.Client) ciba.PollView {
		return ciba.PollView{ClientID: c.ID, Kind: ciba.KindCIBA, Status: ciba.StatusPending,
			ExpiresAt: f.clock.Now().Add(time.Minute), Interval: 5 * time.Second}
	}
	paceOf := func(t *testing.T, f *fixture, id string) ciba.Pace {
		t.Helper()
		p, err := f.store.UpdatePace(ctx, id, func(*ciba.Pace) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("an early poll by the cache is slow_down without the store", func(t *testing.T) {
		f, cs := newCaching(t)
		id := f.create(t, pollClient)
		cs.set(id, pendingView(f, pollClient), true, true)
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeSlowDown {
			t.Fatalf("got %v, want slow_down", err)
		}
		if p := paceOf(t, f, id); p != (ciba.Pace{}) {
			t.Fatalf("the store's pace was written: %+v", p)
		}
	})
	t.Run("an on-time poll paced by the cache is authorization_pending without the store", func(t *testing.T) {
		f, cs := newCaching(t)
		id := f.create(t, pollClient)
		cs.set(id, pendingView(f, pollClient), false, true)
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("got %v, want authorization_pending", err)
		}
		if p := paceOf(t, f, id); p != (ciba.Pace{}) {
			t.Fatalf("the store's pace was written: %+v", p)
		}
	})
	t.Run("a poll the cache cannot answer goes to the store", func(t *testing.T) {
		f, cs := newCaching(t)
		id := f.create(t, pollClient)
		cs.set(id, pendingView(f, pollClient), true, false)
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("got %v, want authorization_pending", err)
		}
		if cs.askedEarly() != 1 {
			t.Fatalf("PaceCached asked %d times", cs.askedEarly())
		}
		if p := paceOf(t, f, id); p.NotBefore.IsZero() {
			t.Fatal("the store's pace was not written by the poll")
		}
	})
	t.Run("another client's request is invalid_grant and its pace untouched", func(t *testing.T) {
		f, cs := newCaching(t)
		id := f.create(t, pollClient)
		cs.set(id, pendingView(f, pollClient), true, true)
		if _, err := f.svc.Poll(ctx, other, id); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("got %v, want invalid_grant", err)
		}
		if cs.askedEarly() != 0 {
			t.Fatal("another client's poll paced the request")
		}
	})
	t.Run("a request bound to another certificate is invalid_grant and its pace untouched", func(t *testing.T) {
		f, cs := newCaching(t)
		id := f.create(t, pollClient)
		v := pendingView(f, pollClient)
		v.CertThumbprint = "cert-a"
		cs.set(id, v, true, true)
		if _, err := f.svc.PollCert(ctx, pollClient, id, "cert-b"); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("got %v, want invalid_grant", err)
		}
		if cs.askedEarly() != 0 {
			t.Fatal("a poll over another certificate paced the request")
		}
	})
	t.Run("a ping client's token request is never answered from the cache", func(t *testing.T) {
		f, cs := newCaching(t)
		id := f.create(t, pingClient)
		f.approve(t, id)
		cs.set(id, pendingView(f, pingClient), false, true) // not yet heard of the approval
		body, err := f.svc.Poll(ctx, pingClient, id)
		if err != nil || !strings.Contains(string(body), `"access_token"`) {
			t.Fatalf("got %s, %v; want the tokens the ping announced", body, err)
		}
		if cs.askedEarly() != 0 {
			t.Fatal("a ping client's request was paced from the cache")
		}
	})
	t.Run("a request the cache knows as decided is not paced by it", func(t *testing.T) {
		f, cs := newCaching(t)
		id := f.create(t, pollClient)
		f.approve(t, id)
		v := pendingView(f, pollClient)
		v.Status = ciba.StatusApproved
		cs.set(id, v, true, true)
		body, err := f.svc.Poll(ctx, pollClient, id)
		if err != nil || !strings.Contains(string(body), `"access_token"`) {
			t.Fatalf("got %s, %v; want the tokens", body, err)
		}
		if cs.askedEarly() != 0 {
			t.Fatal("a decided request was paced from the cache")
		}
	})
	t.Run("a request the cache knows as expired is not paced by it", func(t *testing.T) {
		f, cs := newCaching(t)
		id := f.create(t, pollClient)
		v := pendingView(f, pollClient)
		v.ExpiresAt = f.clock.Now()
		cs.set(id, v, true, true)
		if _, err := f.svc.Poll(ctx, pollClient, id); code(err) != ciba.CodeAuthorizationPending {
			t.Fatalf("got %v; want the store's answer", err)
		}
		if cs.askedEarly() != 0 {
			t.Fatal("an expired request was paced from the cache")
		}
	})
}
