package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// wakeTimeout bounds waits for a subscription; passing tests never reach it.
const wakeTimeout = 10 * time.Second

// prefixes hands out a distinct KeyPrefix per store, so that tests sharing
// one server do not see each other's keys or changes.
var prefixes atomic.Int64

func newPrefix() string { return fmt.Sprintf("test%d:", prefixes.Add(1)) }

// open opens a store on addr with the given prefix and closes it when the
// test ends.
func open(t *testing.T, addr, prefix string) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{Addrs: []string{addr}, KeyPrefix: prefix})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawClient returns a plain client on addr, closed when the test ends.
func rawClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitWake(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wakeTimeout):
		t.Fatalf("%s: the subscription was not woken", what)
	}
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	storetest.Run(t, func(t *testing.T) ciba.Store { return open(t, srv.Addr(), newPrefix()) })
}

func TestKeysHaveTTLs(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	prefix := newPrefix()
	s, err := Open(ctx, Config{Addrs: []string{srv.Addr()}, KeyPrefix: prefix, Retention: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	raw := rawClient(t, srv.Addr())

	r := storetest.NewRequest()
	r.UserNotice = ciba.Delivery{}
	r.ExpiresAt = time.Now().Add(5 * time.Minute)
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	// ExpiresAt (5 min) plus Retention (2 min), give or take the test's run time.
	wantAbout := func(what, key string, want time.Duration) {
		t.Helper()
		got, err := raw.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got > want || got < want-time.Minute {
			t.Errorf("the TTL of %s (%s) is %v, want about %v", what, key, got, want)
		}
	}
	reqKey := prefix + "{" + r.ID + "}:req"
	apprKey := prefix + "approval:" + r.ApprovalID
	wantAbout("the request", reqKey, 7*time.Minute)
	wantAbout("the ApprovalID index", apprKey, 7*time.Minute)

	// A delivery due later than that keeps the request until Retention
	// after its next attempt, and the index with it.
	if _, err := s.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
		cur.ClientNotice = ciba.Delivery{Due: true, NextAttempt: time.Now().Add(30 * time.Minute)}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantAbout("the request with a delivery due", reqKey, 32*time.Minute)
	wantAbout("the index of the request with a delivery due", apprKey, 32*time.Minute)

	// Pace state is part of the request key and does not change its TTL.
	if _, err := s.UpdatePace(ctx, r.ID, func(p *ciba.Pace) error { p.Interval = time.Second; return nil }); err != nil {
		t.Fatal(err)
	}
	wantAbout("the request after UpdatePace", reqKey, 32*time.Minute)

	// A request long expired is still kept a little after a write.
	old := storetest.NewRequest()
	old.UserNotice = ciba.Delivery{}
	old.ExpiresAt = time.Now().Add(-time.Hour)
	if err := s.CreateRequest(ctx, old); err != nil {
		t.Fatal(err)
	}
	wantAbout("a request created past its retention", prefix+"{"+old.ID+"}:req", minKeep)

	if err := s.PutRecord(ctx, "jti", "a", []byte("x"), time.Hour); err != nil {
		t.Fatal(err)
	}
	wantAbout("a record", prefix+"rec:3:jti:a", time.Hour)
	if err := s.PutRecord(ctx, "key", "b", []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if got, err := raw.PTTL(ctx, prefix+"rec:3:key:b").Result(); err != nil || got != -1 {
		t.Errorf("the TTL of a record without lifetime is %v, %v; want none (-1ms)", got, err)
	}
}

func TestKeysShareTheRequestsHashSlot(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv.Addr())
	s := open(t, srv.Addr(), newPrefix())
	ctx := t.Context()
	r := storetest.NewRequest()
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	keys, err := raw.Keys(ctx, s.prefix+"*"+r.ID+"*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys of the request: %q, %v; want one", keys, err)
	}
	// CLUSTER KEYSLOT works on a standalone server too.
	want, err := raw.ClusterKeySlot(ctx, r.ID).Result()
	if err != nil {
		t.Skipf("CLUSTER KEYSLOT: %v", err)
	}
	if got, err := raw.ClusterKeySlot(ctx, keys[0]).Result(); err != nil || got != want {
		t.Fatalf("the slot of %s is %d, %v; want the slot of the id, %d", keys[0], got, err, want)
	}
}

func TestSubscribeAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	a, b := open(t, srv.Addr(), prefix), open(t, srv.Addr(), prefix)
	ctx := t.Context()
	r := storetest.NewRequest()
	if err := a.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	ch, cancel := b.Subscribe(r.ID)
	defer cancel()
	if _, err := a.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
		return cur.Deny(time.Now(), "no")
	}); err != nil {
		t.Fatal(err)
	}
	waitWake(t, ch, "instance B after an update through A")
	if got, err := b.GetRequest(ctx, r.ID); err != nil || got.Status != ciba.StatusDenied {
		t.Fatalf("instance B reads %+v, %v; want the denied request", got, err)
	}
	if err := a.DeleteRequest(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	waitWake(t, ch, "instance B after a delete through A")

	// Another KeyPrefix is another deployment: its changes wake nobody here.
	other := open(t, srv.Addr(), newPrefix())
	o := storetest.NewRequest()
	o.ID = r.ID
	if err := other.CreateRequest(ctx, o); err != nil {
		t.Fatal(err)
	}
	otherCh, otherCancel := other.Subscribe(o.ID)
	defer otherCancel()
	if _, err := other.UpdateRequest(ctx, o.ID, func(*ciba.AuthRequest) error { return nil }); err != nil {
		t.Fatal(err)
	}
	waitWake(t, otherCh, "the other deployment's own subscriber")
	// Messages on one connection arrive in order: B's change channel is
	// another channel, so compare after a change B does hear.
	second := storetest.NewRequest()
	if err := a.CreateRequest(ctx, second); err != nil {
		t.Fatal(err)
	}
	secondCh, secondCancel := b.Subscribe(second.ID)
	defer secondCancel()
	if _, err := a.UpdateRequest(ctx, second.ID, func(*ciba.AuthRequest) error { return nil }); err != nil {
		t.Fatal(err)
	}
	waitWake(t, secondCh, "instance B after a second update")
	select {
	case <-ch:
		t.Fatal("a change under another KeyPrefix woke a subscriber of the same id")
	default:
	}
}

func TestConcurrentUpdatesAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	stores := []*Store{open(t, srv.Addr(), prefix), open(t, srv.Addr(), prefix)}
	ctx := t.Context()

	r := storetest.NewRequest()
	r.UserNotice = ciba.Delivery{}
	if err := stores[0].CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	const perStore = 40
	var wg sync.WaitGroup
	for _, s := range stores {
		for range perStore {
			wg.Go(func() {
				if _, err := s.UpdateRequest(context.Background(), r.ID, func(cur *ciba.AuthRequest) error {
					cur.UserNotice.Attempts++
					return nil
				}); err != nil {
					t.Errorf("UpdateRequest: %v", err)
				}
			})
		}
	}
	wg.Wait()
	got, err := stores[1].GetRequest(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserNotice.Attempts != 2*perStore {
		t.Fatalf("after %d increments through two instances Attempts = %d", 2*perStore, got.UserNotice.Attempts)
	}

	// Approve through one instance, then redeem from both at once.
	now := time.Now()
	if _, err := stores[0].UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
		return cur.Approve(now, now, []byte("sealed"))
	}); err != nil {
		t.Fatal(err)
	}
	var won, invalidGrant atomic.Int32
	for _, s := range stores {
		for range 10 {
			wg.Go(func() {
				var sealed []byte
				_, err := s.UpdateRequest(context.Background(), r.ID, func(cur *ciba.AuthRequest) error {
					var err error
					sealed, err = cur.Redeem(time.Now())
					return err
				})
				var pe *ciba.Error
				switch {
				case err == nil && string(sealed) == "sealed":
					won.Add(1)
				case errors.As(err, &pe) && pe.Code == ciba.CodeInvalidGrant:
					invalidGrant.Add(1)
				default:
					t.Errorf("Redeem = %q, %v", sealed, err)
				}
			})
		}
	}
	wg.Wait()
	if won.Load() != 1 || invalidGrant.Load() != 19 {
		t.Fatalf("%d redeems won and %d got invalid_grant, want 1 and 19", won.Load(), invalidGrant.Load())
	}

	// Pace updates from both instances all apply too.
	for _, s := range stores {
		for range perStore {
			wg.Go(func() {
				if _, err := s.UpdatePace(context.Background(), r.ID, func(p *ciba.Pace) error {
					p.Interval += time.Second
					return nil
				}); err != nil {
					t.Errorf("UpdatePace: %v", err)
				}
			})
		}
	}
	wg.Wait()
	p, err := stores[0].UpdatePace(ctx, r.ID, func(*ciba.Pace) error { return nil })
	if err != nil || p.Interval != 2*perStore*time.Second {
		t.Fatalf("UpdatePace after %d increments = %+v, %v", 2*perStore, p, err)
	}
}

// everyCall runs each method class once and returns its error by name.
func everyCall(ctx context.Context, s *Store, r *ciba.AuthRequest) map[string]error {
	return map[string]error{
		"CreateRequest": s.CreateRequest(ctx, storetest.NewRequest()),
		"GetRequest": func() error {
			_, err := s.GetRequest(ctx, r.ID)
			return err
		}(),
		"GetRequestByApprovalID": func() error {
			_, err := s.GetRequestByApprovalID(ctx, r.ApprovalID)
			return err
		}(),
		"UpdateRequest": func() error {
			_, err := s.UpdateRequest(ctx, r.ID, func(*ciba.AuthRequest) error { return nil })
			return err
		}(),
		"DeleteRequest": s.DeleteRequest(ctx, r.ID),
		"ListRequests":  s.ListRequests(ctx, func(*ciba.AuthRequest) bool { return true }),
		"UpdatePace": func() error {
			_, err := s.UpdatePace(ctx, r.ID, func(*ciba.Pace) error { return nil })
			return err
		}(),
		"PutRecord": s.PutRecord(ctx, "jti", "new", nil, time.Hour),
		"GetRecord": func() error {
			_, err := s.GetRecord(ctx, "jti", "a")
			return err
		}(),
		"TakeRecord": func() error {
			_, err := s.TakeRecord(ctx, "jti", "a")
			return err
		}(),
	}
}

func TestRedisDownAndBack(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPersistence())
	prefix := newPrefix()
	a, b := open(t, srv.Addr(), prefix), open(t, srv.Addr(), prefix)
	ctx := t.Context()
	r := storetest.NewRequest()
	if err := a.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := a.PutRecord(ctx, "jti", "a", []byte("one"), time.Hour); err != nil {
		t.Fatal(err)
	}
	ch, cancel := a.Subscribe(r.ID)
	defer cancel()

	srv.Kill()
	for name, err := range everyCall(ctx, a, r) {
		if !errors.Is(err, ciba.ErrUnavailable) {
			t.Errorf("%s with Redis down: got %v, want an error wrapping ErrUnavailable", name, err)
		}
	}
	if _, err := Open(ctx, Config{Addrs: []string{srv.Addr()}}); !errors.Is(err, ciba.ErrUnavailable) {
		t.Errorf("Open with Redis down: got %v, want an error wrapping ErrUnavailable", err)
	}

	srv.Restart()
	// The client reconnects by itself; wait (bounded) until it has.
	var got *ciba.AuthRequest
	var err error
	for range 200 {
		if got, err = a.GetRequest(ctx, r.ID); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GetRequest after the restart: %v", err)
	}
	if !storetest.SameRequest(got, r) {
		t.Fatalf("after the restart the request is %+v, want %+v", got, r)
	}
	if v, err := a.GetRecord(ctx, "jti", "a"); err != nil || string(v) != "one" {
		t.Fatalf("GetRecord after the restart = %q, %v", v, err)
	}
	// Nothing the failed calls attempted was written.
	if err := a.ListRequests(ctx, func(l *ciba.AuthRequest) bool {
		if l.ID != r.ID {
			t.Errorf("a request created while Redis was down exists: %s", l.ID)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}

	// The subscription connection came back: its resubscription woke the
	// subscriber (changes may have been missed meanwhile), and a change made
	// through the other instance now wakes a fresh subscriber.
	waitWake(t, ch, "the subscriber, on resubscription")
	fresh, freshCancel := a.Subscribe(r.ID)
	defer freshCancel()
	var updated bool
	for range 200 {
		if _, err = b.UpdateRequest(ctx, r.ID, func(cur *ciba.AuthRequest) error {
			return cur.Deny(time.Now(), "no")
		}); err == nil {
			updated = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !updated {
		t.Fatalf("UpdateRequest through the other instance after the restart: %v", err)
	}
	waitWake(t, fresh, "a subscriber after the restart")
	if got, err := a.GetRequest(ctx, r.ID); err != nil || got.Status != ciba.StatusDenied {
		t.Fatalf("after the restart GetRequest = %+v, %v; want the denied request", got, err)
	}
}

func TestAuthentication(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs(
		"--requirepass", "default-password",
		"--user", "cibaproxy", "on", ">cibaproxy-password", "~*", "&*", "+@all",
	))
	ctx := t.Context()
	for name, cfg := range map[string]Config{
		"password":          {Password: "default-password"},
		"ACL user":          {Username: "cibaproxy", Password: "cibaproxy-password"},
		"ACL user, with DB": {Username: "cibaproxy", Password: "cibaproxy-password", DB: 3},
	} {
		cfg.Addrs, cfg.KeyPrefix = []string{srv.Addr()}, newPrefix()
		s, err := Open(ctx, cfg)
		if err != nil {
			t.Errorf("Open with %s: %v", name, err)
			continue
		}
		if err := s.PutRecord(ctx, "jti", "a", []byte(name), time.Minute); err != nil {
			t.Errorf("PutRecord with %s: %v", name, err)
		}
		_ = s.Close()
	}
	for name, cfg := range map[string]Config{
		"no password":    {},
		"wrong password": {Username: "cibaproxy", Password: "wrong"},
	} {
		cfg.Addrs = []string{srv.Addr()}
		if s, err := Open(ctx, cfg); err == nil {
			_ = s.Close()
			t.Errorf("Open with %s succeeded", name)
		}
	}
}

func TestCloseKeepsCallersClient(t *testing.T) {
	srv := redistest.Start(t)
	c := rawClient(t, srv.Addr())
	s, err := NewFromClient(t.Context(), c, Config{KeyPrefix: newPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("the caller's client after Close: %v", err)
	}
}

func TestOpenRefusesBadConfig(t *testing.T) {
	ctx := t.Context()
	if _, err := Open(ctx, Config{}); err == nil {
		t.Error("Open without address succeeded")
	}
	if _, err := Open(ctx, Config{Addrs: []string{"127.0.0.1:1"}, Retention: -time.Second}); err == nil {
		t.Error("Open with a negative retention succeeded")
	}
}

func TestRecordKeysDoNotCollide(t *testing.T) {
	s := &Store{prefix: DefaultKeyPrefix}
	seen := map[string][2]string{}
	for _, kk := range [][2]string{{"a:b", "c"}, {"a", "b:c"}, {"ab", "c"}, {"a", "bc"}, {"1:a", "b"}, {"1", "a:b"}} {
		k := s.recordKey(kk[0], kk[1])
		if prev, ok := seen[k]; ok {
			t.Fatalf("kind/key %q and %q share the key %q", prev, kk, k)
		}
		seen[k] = kk
	}
}

func TestGlobEscape(t *testing.T) {
	if got, want := globEscape(`a*b?c[d]e\f{g}`), `a\*b\?c\[d\]e\\f{g}`; got != want {
		t.Fatalf("globEscape = %q, want %q", got, want)
	}
}
