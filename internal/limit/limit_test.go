package limit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// allow is Limiter.Allow, which never fails.
func allow(l *Limiter, key string, now time.Time) (bool, time.Duration) {
	ok, wait, err := l.Allow(context.Background(), key, now)
	if err != nil {
		panic(err)
	}
	return ok, wait
}

func TestBurstThenRefusedWithRetryAfter(t *testing.T) {
	l := New(Rate{Requests: 3, Per: time.Minute}, 0)
	for i := range 3 {
		if ok, _ := allow(l, "c1", t0); !ok {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	ok, wait := allow(l, "c1", t0)
	if ok {
		t.Fatal("the 4th request of 3 per minute was allowed")
	}
	if wait != 20*time.Second {
		t.Fatalf("retry after %v, want 20s (one token per 60s/3)", wait)
	}
	if ok, _ := allow(l, "c2", t0); !ok {
		t.Fatal("another key shares the bucket of c1")
	}
	if ok, _ := allow(l, "c1", t0.Add(19*time.Second)); ok {
		t.Fatal("allowed before a token came back")
	}
	if ok, _ := allow(l, "c1", t0.Add(20*time.Second)); !ok {
		t.Fatal("refused after a token came back")
	}
}

func TestRetryAfterIsWholeSecondsRoundedUp(t *testing.T) {
	l := New(Rate{Requests: 2, Per: 3 * time.Second}, 0) // a token per 1.5s
	allow(l, "k", t0)
	allow(l, "k", t0)
	if _, wait := allow(l, "k", t0); wait != 2*time.Second {
		t.Fatalf("retry after %v, want 2s (1.5s rounded up)", wait)
	}
}

func TestRefillIsCappedAtTheBucketSize(t *testing.T) {
	l := New(Rate{Requests: 2, Per: time.Second}, 0)
	allow(l, "k", t0)
	later := t0.Add(time.Hour)
	for i := range 2 {
		if ok, _ := allow(l, "k", later); !ok {
			t.Fatalf("request %d refused after an hour idle", i+1)
		}
	}
	if ok, _ := allow(l, "k", later); ok {
		t.Fatal("an hour idle saved more than the bucket size")
	}
}

func TestRefundGivesATokenBackUpToTheSize(t *testing.T) {
	ctx := context.Background()
	l := New(Rate{Requests: 2, Per: time.Minute}, 0)
	allow(l, "ip", t0)
	allow(l, "ip", t0)
	if ok, wait := allow(l, "ip", t0); ok || wait != 30*time.Second {
		t.Fatalf("third of 2 = %v, %v; want false, 30s", ok, wait)
	}
	_ = l.Refund(ctx, "ip", t0)
	if ok, _ := allow(l, "ip", t0); !ok {
		t.Fatal("the refunded token is not there")
	}
	// Refunds past the size save nothing up.
	for range 5 {
		_ = l.Refund(ctx, "ip", t0)
	}
	for i := range 2 {
		if ok, _ := allow(l, "ip", t0); !ok {
			t.Fatalf("request %d after refunds refused", i+1)
		}
	}
	if ok, _ := allow(l, "ip", t0); ok {
		t.Fatal("refunds filled the bucket past its size")
	}
	// A key not held has a full bucket: a refund keeps no key.
	_ = l.Refund(ctx, "other", t0)
	if l.Len() != 1 {
		t.Fatalf("%d keys held after a refund of an unknown key, want 1", l.Len())
	}
}

// TestReserveCountsRequestsInFlight is the check-then-charge race: 200
// attempts racing each other on a bucket of 30, each taking long enough
// that all are in flight at once, must not all pass. Exactly 30 go ahead;
// the outcome of each is a failure, so none is given back.
func TestReserveCountsRequestsInFlight(t *testing.T) {
	l := New(Rate{Requests: 30, Per: 5 * time.Minute}, 0)
	now := func() time.Time { return t0 }
	var wg sync.WaitGroup
	var mu sync.Mutex
	passed := 0
	start := make(chan struct{})
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, _, settle, err := Reserve(context.Background(), l, "ip", now)
			if err != nil {
				t.Error(err)
			}
			if !ok {
				return
			}
			mu.Lock()
			passed++
			mu.Unlock()
			time.Sleep(time.Millisecond) // the expensive check
			settle(true)
		}()
	}
	close(start)
	wg.Wait()
	if passed != 30 {
		t.Fatalf("%d of 200 parallel attempts passed a limit of 30", passed)
	}
}

func TestReserveGivesBackWhatDidNotCount(t *testing.T) {
	ctx := context.Background()
	l := New(Rate{Requests: 3, Per: time.Hour}, 0)
	now := func() time.Time { return t0 }
	for i := range 50 {
		ok, _, settle, _ := Reserve(ctx, l, "ip", now)
		if !ok {
			t.Fatalf("success %d was refused: successes must not use up the bucket", i+1)
		}
		settle(false)
	}
	for range 3 {
		ok, _, settle, _ := Reserve(ctx, l, "ip", now)
		if !ok {
			t.Fatal("a failure within the limit was refused")
		}
		settle(true)
	}
	ok, wait, settle, _ := Reserve(ctx, l, "ip", now)
	if ok || wait != 20*time.Minute {
		t.Fatalf("after 3 failures Reserve = %v, %v; want false, 20m", ok, wait)
	}
	settle(false) // a refused reservation took nothing: settling it gives nothing back
	if ok, _, _, _ := Reserve(ctx, l, "ip", now); ok {
		t.Fatal("settling a refused reservation gave a token back")
	}
	if ok, _, settle, err := Reserve(ctx, nil, "ip", now); !ok || err != nil {
		t.Fatal("Reserve on no limit refused")
	} else {
		settle(true)
	}
}

func TestReserveReportsAnUndecidedLimit(t *testing.T) {
	b := &broken{}
	ok, _, settle, err := Reserve(context.Background(), b, "k", func() time.Time { return t0 })
	if !ok || !errors.Is(err, errDown) {
		t.Fatalf("Reserve on a broken store = %v, %v; want true and its error", ok, err)
	}
	settle(false)
	if b.calls != 1 {
		t.Fatalf("%d calls to the broken store, want 1 (no refund of what was not taken)", b.calls)
	}
}

func TestOffAndNilAllowEverything(t *testing.T) {
	for _, r := range []Rate{{}, {Requests: 5}, {Per: time.Second}, {Requests: -1, Per: time.Second}} {
		if l := New(r, 0); l != nil {
			t.Errorf("New(%+v) is a limiter, want nil (off)", r)
		}
	}
	var l *Limiter
	for range 100 {
		if ok, _ := allow(l, "k", t0); !ok {
			t.Fatal("the nil limiter refused")
		}
	}
	if l.Len() != 0 || !l.Rate().Off() {
		t.Fatal("the nil limiter holds keys or a rate")
	}
}

func TestMemoryIsBounded(t *testing.T) {
	l := New(Rate{Requests: 1, Per: time.Hour}, 100)
	for i := range 10_000 {
		allow(l, fmt.Sprint("attacker-", i), t0)
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("holds %d keys, want the bound 100", n)
	}
}

func TestIdleKeysAreEvictedFirst(t *testing.T) {
	l := New(Rate{Requests: 1, Per: time.Minute}, 3)
	allow(l, "idle", t0)                     // full again after a minute
	allow(l, "busy", t0.Add(50*time.Second)) // empty until 1m50s
	allow(l, "other", t0.Add(55*time.Second))
	// A new key at 1m10s: "idle" is full again and goes, "busy" stays.
	allow(l, "new", t0.Add(70*time.Second))
	if ok, _ := allow(l, "busy", t0.Add(70*time.Second)); ok {
		t.Fatal("the busy key was evicted: its empty bucket came back full")
	}
	if n := l.Len(); n != 3 {
		t.Fatalf("holds %d keys, want 3", n)
	}
}

func TestConcurrentUseTakesExactlyTheBucket(t *testing.T) {
	l := New(Rate{Requests: 50, Per: time.Hour}, 0)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if ok, _ := allow(l, "k", t0); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if allowed != 50 {
		t.Fatalf("%d of 160 concurrent requests allowed, want exactly 50", allowed)
	}
}

// broken is a Keyed whose store is down: every decision fails.
type broken struct{ calls int }

var errDown = errors.New("store down")

func (b *broken) Allow(context.Context, string, time.Time) (bool, time.Duration, error) {
	b.calls++
	return false, time.Minute, errDown
}

func (b *broken) Refund(context.Context, string, time.Time) error {
	b.calls++
	return errDown
}

func TestFailOpenAllowsAndReportsWhenTheStoreIsDown(t *testing.T) {
	b := &broken{}
	var reported []error
	l := FailOpen(b, func(err error) { reported = append(reported, err) })
	ctx := context.Background()
	if ok, wait, err := l.Allow(ctx, "k", t0); !ok || wait != 0 || err != nil {
		t.Errorf("Allow = %v, %v, %v; want true, 0, nil (fail open)", ok, wait, err)
	}
	if err := l.Refund(ctx, "k", t0); err != nil {
		t.Errorf("Refund = %v, want nil (fail open)", err)
	}
	if b.calls != 2 || len(reported) != 2 {
		t.Fatalf("%d decisions asked, %d reported; want 2 and 2", b.calls, len(reported))
	}
	for _, err := range reported {
		if !errors.Is(err, errDown) {
			t.Errorf("reported %v, want the store's error", err)
		}
	}
	if FailOpen(nil, func(error) {}) != nil {
		t.Error("FailOpen(nil) is not nil")
	}
}

func TestFailOpenPassesDecisionsThrough(t *testing.T) {
	l := FailOpen(New(Rate{Requests: 1, Per: time.Minute}, 0), func(err error) { t.Errorf("reported %v", err) })
	ctx := context.Background()
	if ok, _, _ := l.Allow(ctx, "k", t0); !ok {
		t.Fatal("the first request was refused")
	}
	if ok, wait, err := l.Allow(ctx, "k", t0); ok || wait != time.Minute || err != nil {
		t.Fatalf("second request: %v, %v, %v; want false, 1m, nil", ok, wait, err)
	}
}
