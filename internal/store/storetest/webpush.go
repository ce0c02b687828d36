package storetest

import (
	"fmt"
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

func testSubscriptionsConcurrent(t *testing.T, s ciba.Store) {
	subs := &webpush.Subscriptions{Records: s, Max: 10}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if err := subs.Add(t.Context(), "carol", sub(i)); err != nil {
				t.Errorf("Add: %v", err)
			}
		})
	}
	wg.Wait()
	l, err := subs.List(t.Context(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 4 {
		t.Fatalf("4 concurrent adds kept %d subscriptions: %+v", len(l), l)
	}
}
