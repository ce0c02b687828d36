package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

func testVAPIDKey(t *testing.T, s ciba.Store) {
	var wg sync.WaitGroup
	keys := make([]string, 4)
	for i := range keys {
		wg.Go(func() {
			v, err := webpush.LoadVAPID(t.Context(), s)
			if err != nil {
				t.Errorf("LoadVAPID: %v", err)
				return
			}
			keys[i] = v.PublicKey()
		})
	}
	wg.Wait()
	again, err := webpush.LoadVAPID(t.Context(), s)
	if err != nil {
		t.Fatalf("LoadVAPID: %v", err)
	}
	for i, k := range keys {
		if k != again.PublicKey() {
			t.Fatalf("loader %d got key %q, a later load %q", i, k, again.PublicKey())
		}
	}
}

func sub(n int) webpush.Subscription {
	return webpush.Subscription{Endpoint: fmt.Sprintf("https://push.example/%d", n), P256DH: []byte{4, byte(n)}, Auth: []byte{byte(n)},
		Created: time.Unix(int64(n), 0).UTC()}
}

func testSubscriptions(t *testing.T, s ciba.Store) {
	subs := &webpush.Subscriptions{Records: s, Max: 3}
	ctx := t.Context()
	list := func(user string) []webpush.Subscription {
		t.Helper()
		l, err := subs.List(ctx, user)
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		return l
	}
	if l := list("alice"); len(l) != 0 {
		t.Fatalf("a new user has %d subscriptions", len(l))
	}
	for i := 1; i <= 4; i++ {
		if err := subs.Add(ctx, "alice", sub(i)); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if err := subs.Add(ctx, "bob", sub(9)); err != nil {
		t.Fatalf("Add: %v", err)
	}
	l := list("alice")
	if len(l) != 3 || l[0].Endpoint != sub(2).Endpoint || l[2].Endpoint != sub(4).Endpoint {
		t.Fatalf("alice's subscriptions after 4 adds with Max 3: %+v", l)
	}
	again := sub(3)
	again.Auth = []byte("new")
	if err := subs.Add(ctx, "alice", again); err != nil {
		t.Fatalf("Add: %v", err)
	}
	l = list("alice")
	if len(l) != 3 || string(l[2].Auth) != "new" || l[2].Endpoint != again.Endpoint {
		t.Fatalf("a subscription added again is not replaced at the end: %+v", l)
	}
	if err := subs.Remove(ctx, "alice", sub(2).Endpoint); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if l = list("alice"); len(l) != 2 {
		t.Fatalf("after Remove: %+v", l)
	}
	for _, x := range l {
		if err := subs.Remove(ctx, "alice", x.Endpoint); err != nil {
			t.Fatalf("Remove: %v", err)
		}
	}
	if l = list("alice"); len(l) != 0 {
		t.Fatalf("after removing all: %+v", l)
	}
	if l = list("bob"); len(l) != 1 || l[0].Endpoint != sub(9).Endpoint {
		t.Fatalf("bob's subscriptions changed with alice's: %+v", l)
	}
}

// listOf returns user's subscriptions, failing the test on an error.
func listOf(t *testing.T, subs *webpush.Subscriptions, user string) []webpush.Subscription {
	t.Helper()
	l, err := subs.List(t.Context(), user)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return l
}

// burst is how many browsers of one user subscribe at once.
const burst = 30

func testSubscriptionsConcurrent(t *testing.T, s ciba.Store) {
	subs := &webpush.Subscriptions{Records: s, Max: webpush.MaxLimit}
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() {
			if err := subs.Add(t.Context(), "carol", sub(i)); err != nil {
				t.Errorf("Add: %v", err)
			}
		})
	}
	wg.Wait()
	l := listOf(t, subs, "carol")
	if len(l) != burst {
		t.Fatalf("%d concurrent adds from different browsers kept %d subscriptions", burst, len(l))
	}
	for i := range burst {
		if !slices.ContainsFunc(l, func(x webpush.Subscription) bool { return x.Endpoint == sub(i).Endpoint }) {
			t.Fatalf("subscription %d of %d concurrent adds was lost", i, burst)
		}
	}
}

func testSubscriptionsBurstCap(t *testing.T, s ciba.Store) {
	const max = 5
	subs := &webpush.Subscriptions{Records: s, Max: max}
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() {
			if err := subs.Add(t.Context(), "dave", sub(100+i)); err != nil {
				t.Errorf("Add: %v", err)
			}
		})
	}
	wg.Wait()
	l := listOf(t, subs, "dave")
	if len(l) != max {
		t.Fatalf("%d concurrent adds with Max %d kept %d subscriptions, want exactly %d", burst, max, len(l), max)
	}
	seen := map[string]bool{}
	for _, x := range l {
		if seen[x.Endpoint] || !strings.HasPrefix(x.Endpoint, "https://push.example/1") {
			t.Fatalf("the capped list holds a duplicate or a stranger: %+v", l)
		}
		seen[x.Endpoint] = true
	}
	// The record itself stays bounded, whatever Max says.
	unbounded := &webpush.Subscriptions{Records: s, Max: 1 << 20}
	for i := range webpush.MaxLimit + 10 {
		if err := unbounded.Add(t.Context(), "erin", sub(1000+i)); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if n := len(listOf(t, unbounded, "erin")); n != webpush.MaxLimit {
		t.Fatalf("%d adds with a huge Max kept %d, want MaxLimit %d", webpush.MaxLimit+10, n, webpush.MaxLimit)
	}
}

func testSubscriptionsAddRacesRemove(t *testing.T, s ciba.Store) {
	subs := &webpush.Subscriptions{Records: s, Max: 10}
	for round := range 20 {
		user := fmt.Sprintf("frank-%d", round)
		old, keep, fresh := sub(1), sub(2), sub(3)
		for _, x := range []webpush.Subscription{old, keep} {
			if err := subs.Add(t.Context(), user, x); err != nil {
				t.Fatalf("Add: %v", err)
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			if err := subs.Add(t.Context(), user, fresh); err != nil {
				t.Errorf("Add: %v", err)
			}
		})
		wg.Go(func() {
			<-start
			if err := subs.Remove(t.Context(), user, old.Endpoint); err != nil {
				t.Errorf("Remove: %v", err)
			}
		})
		close(start)
		wg.Wait()
		var got []string
		for _, x := range listOf(t, subs, user) {
			got = append(got, x.Endpoint)
		}
		slices.Sort(got)
		if want := []string{keep.Endpoint, fresh.Endpoint}; !slices.Equal(got, want) {
			t.Fatalf("round %d: a subscribe racing a 410 removal left %q, want %q", round, got, want)
		}
	}
}

func testSubscriptionsRemoveByID(t *testing.T, s ciba.Store) {
	subs := &webpush.Subscriptions{Records: s, Max: 10}
	ctx := t.Context()
	for i := range 3 {
		if err := subs.Add(ctx, "grace", sub(i)); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	one := sub(1)
	if id := one.ID(); len(id) != 12 || strings.Contains(one.Endpoint, id) {
		t.Fatalf("ID %q", id)
	}
	if _, err := subs.RemoveID(ctx, "grace", one.ID()[:7]); !errors.Is(err, webpush.ErrNotFound) {
		t.Fatalf("RemoveID with 7 characters: %v, want ErrNotFound", err)
	}
	if _, err := subs.RemoveID(ctx, "grace", "ffffffffffff"); !errors.Is(err, webpush.ErrNotFound) && one.ID() != "ffffffffffff" {
		t.Fatalf("RemoveID of an unknown id: %v, want ErrNotFound", err)
	}
	got, err := subs.RemoveID(ctx, "grace", one.ID()[:8])
	if err != nil || got.Endpoint != one.Endpoint {
		t.Fatalf("RemoveID: %+v, %v", got, err)
	}
	if l := listOf(t, subs, "grace"); len(l) != 2 || slices.ContainsFunc(l, func(x webpush.Subscription) bool { return x.Endpoint == one.Endpoint }) {
		t.Fatalf("after RemoveID: %+v", l)
	}
	if n, err := subs.RemoveAll(ctx, "grace"); err != nil || n != 2 {
		t.Fatalf("RemoveAll: %d, %v; want 2", n, err)
	}
	if l := listOf(t, subs, "grace"); len(l) != 0 {
		t.Fatalf("after RemoveAll: %+v", l)
	}
	if n, err := subs.RemoveAll(ctx, "grace"); err != nil || n != 0 {
		t.Fatalf("RemoveAll of none: %d, %v", n, err)
	}
}
