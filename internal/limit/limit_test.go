package limit

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestBurstThenRefusedWithRetryAfter(t *testing.T) {
	l := New(Rate{Requests: 3, Per: time.Minute}, 0)
	for i := range 3 {
		if ok, _ := l.Allow("c1", t0); !ok {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	ok, wait := l.Allow("c1", t0)
	if ok {
		t.Fatal("the 4th request of 3 per minute was allowed")
	}
	if wait != 20*time.Second {
		t.Fatalf("retry after %v, want 20s (one token per 60s/3)", wait)
	}
	if ok, _ := l.Allow("c2", t0); !ok {
		t.Fatal("another key shares the bucket of c1")
	}
	if ok, _ := l.Allow("c1", t0.Add(19*time.Second)); ok {
		t.Fatal("allowed before a token came back")
	}
	if ok, _ := l.Allow("c1", t0.Add(20*time.Second)); !ok {
		t.Fatal("refused after a token came back")
	}
}

func TestRetryAfterIsWholeSecondsRoundedUp(t *testing.T) {
	l := New(Rate{Requests: 2, Per: 3 * time.Second}, 0) // a token per 1.5s
	l.Allow("k", t0)
	l.Allow("k", t0)
	if _, wait := l.Allow("k", t0); wait != 2*time.Second {
		t.Fatalf("retry after %v, want 2s (1.5s rounded up)", wait)
	}
}

func TestRefillIsCappedAtTheBucketSize(t *testing.T) {
	l := New(Rate{Requests: 2, Per: time.Second}, 0)
	l.Allow("k", t0)
	later := t0.Add(time.Hour)
	for i := range 2 {
		if ok, _ := l.Allow("k", later); !ok {
			t.Fatalf("request %d refused after an hour idle", i+1)
		}
	}
	if ok, _ := l.Allow("k", later); ok {
		t.Fatal("an hour idle saved more than the bucket size")
	}
}

func TestCheckAndCharge(t *testing.T) {
	l := New(Rate{Requests: 2, Per: time.Minute}, 0)
	for range 5 {
		if ok, _ := l.Check("ip", t0); !ok {
			t.Fatal("Check took a token")
		}
	}
	l.Charge("ip", t0)
	l.Charge("ip", t0)
	if ok, wait := l.Check("ip", t0); ok || wait != 30*time.Second {
		t.Fatalf("after two charges Check = %v, %v; want false, 30s", ok, wait)
	}
	l.Charge("ip", t0) // nothing left: no debt either
	if ok, _ := l.Check("ip", t0.Add(30*time.Second)); !ok {
		t.Fatal("a charge on an empty bucket ran into debt")
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
		if ok, _ := l.Allow("k", t0); !ok {
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
		l.Allow(fmt.Sprint("attacker-", i), t0)
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("holds %d keys, want the bound 100", n)
	}
}

func TestIdleKeysAreEvictedFirst(t *testing.T) {
	l := New(Rate{Requests: 1, Per: time.Minute}, 3)
	l.Allow("idle", t0)                     // full again after a minute
	l.Allow("busy", t0.Add(50*time.Second)) // empty until 1m50s
	l.Allow("other", t0.Add(55*time.Second))
	// A new key at 1m10s: "idle" is full again and goes, "busy" stays.
	l.Allow("new", t0.Add(70*time.Second))
	if ok, _ := l.Check("busy", t0.Add(70*time.Second)); ok {
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
				if ok, _ := l.Allow("k", t0); ok {
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
