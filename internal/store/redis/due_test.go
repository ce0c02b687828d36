package redisstore

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

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

// TestPollScriptMatchesTheRuleInSequence runs the same sequence of polls through the
// poll script and through ciba.PaceRule.Apply in Go: the answers and the
// stored pace must agree, so the two implementations of the rule cannot
// drift apart.
func TestPollScriptMatchesTheRuleInSequence(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	st := open(t, srv.Addr(), newPrefix())
	r := storetest.NewRequest()
	if err := st.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.readAndPace(ctx, "no-such-id", ciba.PaceRule{Now: time.Now()}); !errors.Is(err, ciba.ErrNotFound) {
		t.Fatalf("readAndPace of an unknown id: %v", err)
	}
	start := time.UnixMilli(time.Now().UnixMilli())
	var want ciba.Pace
	// Offsets of the polls from start (ms), with and without holds: on
	// time, early, within tolerance, during a hold, after it.
	polls := []struct {
		at   int64
		hold time.Duration
	}{{0, 0}, {100, 0}, {400, 0}, {5600, 0}, {10000, 0}, {15100, 0}, {21000, 3 * time.Second}, {22000, 0}, {24500, 0}, {60000, 0}}
	for i, p := range polls {
		rule := ciba.PaceRule{Now: start.Add(time.Duration(p.at) * time.Millisecond), Tolerance: 500 * time.Millisecond,
			Step: 5 * time.Second, Hold: p.hold, Initial: 5 * time.Second}
		got, slow, err := st.readAndPace(ctx, r.ID, rule)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != r.ID || got.ClientID != r.ClientID {
			t.Fatalf("poll %d read %+v", i, got)
		}
		wantSlow := rule.Apply(&want)
		if slow != wantSlow {
			t.Errorf("poll %d at +%d ms: slow = %v, the rule says %v", i, p.at, slow, wantSlow)
		}
		stored, err := st.UpdatePace(ctx, r.ID, func(*ciba.Pace) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if stored.Interval != want.Interval || !stored.NotBefore.Equal(want.NotBefore) || !stored.HoldUntil.Equal(want.HoldUntil) {
			t.Errorf("poll %d: stored pace %+v, the rule gives %+v", i, stored, want)
		}
	}
}
