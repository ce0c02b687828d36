package passkey_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/passkey"
	"github.com/cibaproxy/cibaproxy/internal/passkey/passkeytest"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// TestSharedOnRedis: two instances on one Redis share the passkeys and
// the enrolment links: a link is used once across both, and a credential
// enrolled on one is seen, used and removed on the other.
func TestSharedOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	open := func() *redisstore.Store {
		s, err := redisstore.Open(t.Context(), redisstore.Config{Addrs: []string{srv.Addr()}, KeyPrefix: "pk-test:"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	one, two := open(), open()
	en1, en2 := &passkey.Enrolments{Records: one}, &passkey.Enrolments{Records: two}
	tok, _, err := en1.Issue(t.Context(), "alice", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			en := en1
			if i%2 == 1 {
				en = en2
			}
			if _, err := en.Take(context.Background(), tok); err == nil {
				won.Add(1)
			} else if !errors.Is(err, passkey.ErrNotFound) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 20 takers on two instances used the link, want 1", won.Load())
	}

	rp := newRP(t)
	a := passkeytest.New(origin)
	c1, c2 := &passkey.Credentials{Records: one}, &passkey.Credentials{Records: two}
	enrol(t, rp, c1, a)
	list, err := c2.List(t.Context(), "alice")
	if err != nil || len(list) != 1 {
		t.Fatalf("the other instance sees %d passkeys, %v; want 1", len(list), err)
	}
	if _, err := c2.Remove(t.Context(), "alice", a.CredentialID()); err != nil {
		t.Fatal(err)
	}
	if list, _ := c1.List(t.Context(), "alice"); len(list) != 0 {
		t.Fatalf("removed on one instance, %d left on the other", len(list))
	}
}
