package limit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// fixed is a clock stopped at t.
func fixed(t time.Time) func() time.Time { return func() time.Time { return t } }

// tokensLeft counts the tokens of key in l at now by taking them all.
func tokensLeft(l *Limiter, key string, now time.Time) int {
	n := 0
	for {
		if ok, _ := allow(l, key, now); !ok {
			return n
		}
		n++
	}
}

// TestReserveAllIsAllOrNothing: a reservation refused by one bucket takes
// nothing from any, and says how long that bucket needs.
func TestReserveAllIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	share := New(Rate{Requests: 2, Per: time.Hour}, 0) // a token per 30m
	whole := New(Rate{Requests: 3, Per: time.Hour}, 0) // a token per 20m
	now := fixed(t0)
	reserve := func(key string) (bool, time.Duration, func(bool)) {
		ok, wait, settle, err := ReserveAll(ctx, now, Bucket{share, key + "/user"}, Bucket{whole, "user"})
		if err != nil {
			t.Fatal(err)
		}
		return ok, wait, settle
	}
	for i := range 2 {
		ok, _, settle := reserve("a")
		if !ok {
			t.Fatalf("failure %d of a within its share refused", i+1)
		}
		settle(true)
	}
	// a's share is used up: refused by it, nothing taken from the user's.
	if ok, wait, _ := reserve("a"); ok || wait != 30*time.Minute {
		t.Fatalf("a past its share = %v, %v; want false, 30m (its share's wait)", ok, wait)
	}
	ok, _, settle := reserve("b")
	if !ok {
		t.Fatal("b refused while the user's bucket has a token")
	}
	settle(true)
	// The user's bucket is used up: refused by it with its wait, and b's
	// share gets back the token it lent.
	if ok, wait, _ := reserve("b"); ok || wait != 20*time.Minute {
		t.Fatalf("b past the user's bucket = %v, %v; want false, 20m (the user's wait)", ok, wait)
	}
	if n := tokensLeft(share, "b/user", t0); n != 1 {
		t.Fatalf("b's share holds %d tokens, want 1 (2, less the one failure)", n)
	}
	if n := tokensLeft(whole, "user", t0); n != 0 {
		t.Fatalf("the user's bucket holds %d tokens, want 0", n)
	}
}

// TestReserveAllMixedOutcomesInParallel: 400 tries racing on the buckets
// of four sources sharing one user, some of which succeed (their tokens go
// back) while the rest fail: whatever the interleaving, no bucket lets
// more failures through than its size, and afterwards every bucket holds
// exactly its size less the failures that went through it.
func TestReserveAllMixedOutcomesInParallel(t *testing.T) {
	ctx := context.Background()
	share := New(Rate{Requests: 5, Per: time.Hour}, 0)
	whole := New(Rate{Requests: 10, Per: time.Hour}, 0)
	now := fixed(t0)
	var mu sync.Mutex
	failed := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 400 {
		src := fmt.Sprintf("src%d", i%4)
		wg.Go(func() {
			<-start
			ok, _, settle, err := ReserveAll(ctx, now, Bucket{share, src}, Bucket{whole, "user"})
			if err != nil {
				t.Error(err)
			}
			if !ok {
				return
			}
			time.Sleep(100 * time.Microsecond) // the expensive check
			wrong := i%3 != 0
			if wrong {
				mu.Lock()
				failed[src]++
				mu.Unlock()
			}
			settle(wrong)
		})
	}
	close(start)
	wg.Wait()
	total := 0
	for src, n := range failed {
		if n > 5 {
			t.Errorf("%s: %d failures went through a share of 5", src, n)
		}
		if left := tokensLeft(share, src, t0); left != 5-n {
			t.Errorf("%s: its share holds %d tokens after %d failures, want %d", src, left, n, 5-n)
		}
		total += n
	}
	if total > 10 {
		t.Errorf("%d failures went through the user's bucket of 10", total)
	}
	if left := tokensLeft(whole, "user", t0); left != 10-total {
		t.Errorf("the user's bucket holds %d tokens after %d failures, want %d", left, total, 10-total)
	}
}

// TestReserveAllOneSourceCannotLockOutTheOthers: a source that fails as
// often as it is let, for a day, never empties the user's bucket when its
// share refills slower than the user's: another source is let through at
// every minute of it.
func TestReserveAllOneSourceCannotLockOutTheOthers(t *testing.T) {
	ctx := context.Background()
	share := New(Rate{Requests: 5, Per: time.Hour}, 0)
	whole := New(Rate{Requests: 10, Per: time.Hour}, 0)
	attacks := 0
	for m := range 24 * 60 {
		now := fixed(t0.Add(time.Duration(m) * time.Minute))
		for {
			ok, _, settle, _ := ReserveAll(ctx, now, Bucket{share, "attacker"}, Bucket{whole, "user"})
			if !ok {
				break
			}
			attacks++
			settle(true)
		}
		ok, _, settle, _ := ReserveAll(ctx, now, Bucket{share, "user's phone"}, Bucket{whole, "user"})
		if !ok {
			t.Fatalf("minute %d: the user's own try was refused after %d failures of one source", m, attacks)
		}
		settle(false)
	}
	// 5 at once, then one per 12 minutes.
	if want := 5 + 24*60/12 - 1; attacks != want {
		t.Fatalf("one source failed %d times in a day, want %d", attacks, want)
	}
}

// TestReserveAllPassesOverABrokenBucket: a bucket whose store is down
// allows (its error is returned), and the others still decide.
func TestReserveAllPassesOverABrokenBucket(t *testing.T) {
	ctx := context.Background()
	b := &broken{}
	mem := New(Rate{Requests: 1, Per: time.Hour}, 0)
	ok, _, settle, err := ReserveAll(ctx, fixed(t0), Bucket{b, "k"}, Bucket{mem, "k"}, Bucket{nil, "k"})
	if !ok || !errors.Is(err, errDown) {
		t.Fatalf("ReserveAll = %v, %v; want true and the broken store's error", ok, err)
	}
	settle(true)
	ok, _, _, err = ReserveAll(ctx, fixed(t0), Bucket{b, "k"}, Bucket{mem, "k"})
	if ok || !errors.Is(err, errDown) {
		t.Fatalf("ReserveAll with the working bucket empty = %v, %v; want false and the broken store's error", ok, err)
	}
	if b.calls != 2 {
		t.Fatalf("%d calls to the broken store, want 2 (nothing taken there, so nothing given back)", b.calls)
	}
	if ok, _, _, err := ReserveAll(ctx, fixed(t0)); !ok || err != nil {
		t.Fatalf("ReserveAll of no bucket = %v, %v; want true, nil", ok, err)
	}
}
