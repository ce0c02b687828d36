package redisstore

import (
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// Compile-time check that the dispatcher finds the due index.
var _ ciba.DueLister = (*Store)(nil)

// TestListDue: the due index lists, through any Store on the same Redis,
// the requests whose pending delivery is due at the time asked, and only
// them; entries that no longer hold (delivery done, request gone, a later
// next attempt) are corrected rather than listed.
func TestListDue(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	prefix := newPrefix()
	a, b := open(t, srv.Addr(), prefix), open(t, srv.Addr(), prefix)
	raw := rawClient(t, srv.Addr())
	now := time.Now().Round(0)

	list := func(s *Store, at time.Time) []string {
		t.Helper()
		var ids []string
		if err := s.ListDue(ctx, at, func(id string) bool { ids = append(ids, id); return true }); err != nil {
			t.Fatalf("ListDue: %v", err)
		}
		return ids
	}
	score := func(id string) (float64, bool) {
		t.Helper()
		v, err := raw.ZScore(ctx, prefix+"due", id).Result()
		if err == redis.Nil {
			return 0, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return v, true
	}

	// A new request whose channel message is due in a second.
	r := storetest.NewRequest()
	r.Relay = ciba.RelayState{} // deliveries only; relayed requests below
	r.UserNotice = ciba.Delivery{Due: true, NextAttempt: now.Add(time.Second)}
	if err := a.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := list(b, now); len(got) != 0 {
		t.Errorf("ListDue before the attempt is due: %q, want none", got)
	}
	if got := list(b, now.Add(2*time.Second)); !slices.Equal(got, []string{r.ID}) {
		t.Errorf("ListDue after the attempt is due: %q, want [%s]", got, r.ID)
	}

	// A claim (the lease) moves the entry with NextAttempt.
	if _, err := a.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
		cur.UserNotice.Attempts++
		cur.UserNotice.NextAttempt = now.Add(time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := list(b, now.Add(2*time.Second)); len(got) != 0 {
		t.Errorf("ListDue within the lease: %q, want none", got)
	}
	if got := list(b, now.Add(2*time.Minute)); !slices.Equal(got, []string{r.ID}) {
		t.Errorf("ListDue after the lease: %q, want [%s]", got, r.ID)
	}

	// Done: the entry leaves.
	if _, err := b.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
		cur.UserNotice.Done = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := score(r.ID); ok {
		t.Errorf("the request whose delivery is done is still in the due index")
	}

	// Stale entries: a request that is gone, and one whose delivery is due
	// later than its entry says. Neither is listed; both are corrected.
	later := storetest.NewRequest()
	later.Relay = ciba.RelayState{} // deliveries only; relayed requests below
	later.UserNotice = ciba.Delivery{Due: true, NextAttempt: now.Add(time.Hour)}
	if err := a.CreateRequest(ctx, later); err != nil {
		t.Fatal(err)
	}
	past := float64(now.Add(-time.Minute).UnixMilli())
	if err := raw.ZAdd(ctx, prefix+"due", redis.Z{Score: past, Member: "gone"}, redis.Z{Score: past, Member: later.ID}).Err(); err != nil {
		t.Fatal(err)
	}
	if got := list(a, now); len(got) != 0 {
		t.Errorf("ListDue with stale entries: %q, want none", got)
	}
	if _, ok := score("gone"); ok {
		t.Errorf("the entry of a request that does not exist was kept")
	}
	if got, ok := score(later.ID); !ok || int64(got) != later.UserNotice.NextAttempt.UnixMilli() {
		t.Errorf("the stale entry of a pending request has score %v (%v), want its next attempt %d", got, ok, later.UserNotice.NextAttempt.UnixMilli())
	}

	// Delete removes the entry.
	if err := b.DeleteRequest(ctx, later.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := score(later.ID); ok {
		t.Errorf("a deleted request is still in the due index")
	}

	// A relayed request is listed by its next upstream poll (a lease too).
	rl := storetest.NewRequest()
	rl.UserNotice = ciba.Delivery{}
	rl.Relay = ciba.RelayState{ID: []byte("sealed"), Interval: time.Second, NextPoll: now.Add(time.Second)}
	if err := a.CreateRequest(ctx, rl); err != nil {
		t.Fatal(err)
	}
	if got := list(b, now.Add(2*time.Second)); !slices.Contains(got, rl.ID) {
		t.Errorf("ListDue after the upstream poll is due: %q, want it to hold %s", got, rl.ID)
	}
	if _, err := a.UpdateRequest(ctx, rl.ID, func(r *ciba.AuthRequest) error { return r.Deny(now, "no") }); err != nil {
		t.Fatal(err)
	}
	if _, ok := score(rl.ID); ok {
		t.Error("a relayed request that is no longer pending is still in the due index")
	}
}
