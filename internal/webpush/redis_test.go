package webpush_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
	"github.com/cibaproxy/cibaproxy/internal/webpush/webpushtest"
)

// TestSubscriptionsSharedOnRedis: two instances on one Redis change one
// user's subscriptions at once: 30 browsers subscribing through either are
// all kept, and a subscription through one racing the removal of a gone
// one through the other keeps the new one.
func TestSubscriptionsSharedOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	open := func() *webpush.Subscriptions {
		s, err := redisstore.Open(t.Context(), redisstore.Config{Addrs: []string{srv.Addr()}, KeyPrefix: "wp-test:"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return &webpush.Subscriptions{Records: s, Max: webpush.MaxLimit}
	}
	one, two := open(), open()
	ps := webpushtest.New(t)
	var wg sync.WaitGroup
	want := make([]string, 30)
	for i := range want {
		_, sub := ps.Subscribe(t, fmt.Sprintf("/p/%d", i))
		want[i] = sub.Endpoint
		wg.Go(func() {
			s := one
			if i%2 == 1 {
				s = two
			}
			if err := s.Add(t.Context(), "alice", sub); err != nil {
				t.Errorf("Add: %v", err)
			}
		})
	}
	wg.Wait()
	endpoints := func(s *webpush.Subscriptions, user string) []string {
		t.Helper()
		l, err := s.List(t.Context(), user)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range l {
			out = append(out, x.Endpoint)
		}
		slices.Sort(out)
		return out
	}
	slices.Sort(want)
	if got := endpoints(two, "alice"); !slices.Equal(got, want) {
		t.Fatalf("30 subscriptions through two instances kept %d", len(got))
	}

	for round := range 10 {
		user := fmt.Sprintf("bob-%d", round)
		_, gone := ps.Subscribe(t, fmt.Sprintf("/gone/%d", round))
		_, fresh := ps.Subscribe(t, fmt.Sprintf("/fresh/%d", round))
		if err := one.Add(t.Context(), user, gone); err != nil {
			t.Fatal(err)
		}
		start := make(chan struct{})
		wg.Go(func() {
			<-start
			if err := one.Remove(t.Context(), user, gone.Endpoint); err != nil {
				t.Errorf("Remove: %v", err)
			}
		})
		wg.Go(func() {
			<-start
			if err := two.Add(t.Context(), user, fresh); err != nil {
				t.Errorf("Add: %v", err)
			}
		})
		close(start)
		wg.Wait()
		if got := endpoints(one, user); !slices.Equal(got, []string{fresh.Endpoint}) {
			t.Fatalf("round %d: a subscribe racing a removal on another instance left %q", round, got)
		}
	}
}
