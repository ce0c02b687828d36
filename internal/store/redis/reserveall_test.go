package redisstore

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// TestLimiterReserveAllMixedOutcomesAcrossInstances is the password
// lockout's shape on the shared limiter: a share per source (5 per hour)
// reserved before the user's bucket (10 per hour), on two instances, 300
// tries racing from four sources, a third of them successes whose tokens go
// back. No bucket lets more failures through than its size, and afterwards
// each holds exactly its size less the failures that went through it: no
// token was lost or made up by the refunds racing the reservations.
func TestLimiterReserveAllMixedOutcomesAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	prefix := newPrefix()
	type pair struct{ share, whole *Limiter }
	var inst [2]pair
	for i := range inst {
		st := open(t, srv.Addr(), prefix)
		inst[i] = pair{
			share: limiter(t, st, "failures_per_user_ip", limit.Rate{Requests: 5, Per: time.Hour}),
			whole: limiter(t, st, "failures_per_user", limit.Rate{Requests: 10, Per: time.Hour}),
		}
	}
	now := func() time.Time { return time.UnixMilli(1_800_000_000_000) }
	var mu sync.Mutex
	failed := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 300 {
		src := fmt.Sprintf("198.51.100.%d", i%4)
		in := inst[i%2]
		wg.Go(func() {
			<-start
			ok, _, settle, err := limit.ReserveAll(ctx, now, limit.Bucket{Limit: in.share, Key: "alice " + src}, limit.Bucket{Limit: in.whole, Key: "alice"})
			if err != nil {
				t.Error(err)
				return
			}
			if !ok {
				return
			}
			time.Sleep(time.Millisecond) // the password check
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
	left := func(l *Limiter, key string) int {
		n := 0
		for ; n <= 100; n++ {
			ok, _, err := l.Allow(ctx, key, now())
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
		}
		return n
	}
	total := 0
	for src, n := range failed {
		if n > 5 {
			t.Errorf("%s: %d failures went through a share of 5", src, n)
		}
		if got := left(inst[1].share, "alice "+src); got != 5-n {
			t.Errorf("%s: its share holds %d tokens after %d failures, want %d", src, got, n, 5-n)
		}
		total += n
	}
	if total == 0 || total > 10 {
		t.Errorf("%d failures went through the user's bucket of 10, want 1 to 10", total)
	}
	if got := left(inst[0].whole, "alice"); got != 10-total {
		t.Errorf("the user's bucket holds %d tokens after %d failures, want %d", got, total, 10-total)
	}
}
