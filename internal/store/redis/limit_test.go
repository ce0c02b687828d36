package redisstore

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// limiter returns the shared limiter name of rate on s.
func limiter(t *testing.T, s *Store, name string, rate limit.Rate) *Limiter {
	t.Helper()
	l, err := s.Limiter(name, rate)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLimiterAgreesWithLimit runs the same decisions through the Lua script
// and through limit.Limiter, at the same instants: every answer (allowed or
// not, and Retry-After) must agree, so the two implementations of the rule
// cannot drift apart. The rates include ones whose token time is not a
// whole number of milliseconds or seconds; the instants go forward by
// irregular steps, sometimes not at all, and sometimes back a little (an
// instance whose clock is behind).
func TestLimiterAgreesWithLimit(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	st := open(t, srv.Addr(), newPrefix())
	rates := []limit.Rate{
		{Requests: 3, Per: time.Minute},
		{Requests: 7, Per: time.Minute},
		{Requests: 2, Per: 3 * time.Second},
		{Requests: 10, Per: 10 * time.Minute},
		{Requests: 1, Per: time.Hour},
		{Requests: 1200, Per: time.Minute},
		{Requests: 30, Per: 7 * time.Second},
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	start := time.UnixMilli(time.Now().UnixMilli())
	for ri, rate := range rates {
		name := fmt.Sprintf("agree%d", ri)
		shared := limiter(t, st, name, rate)
		mem := limit.New(rate, 0)
		now := start
		every := rate.Every()
		for i := range 400 {
			switch n := rng.IntN(10); {
			case n < 3: // the same instant
			case n < 4: // a little back
				now = now.Add(-time.Duration(rng.IntN(200)) * time.Millisecond)
			default: // up to two token times on
				now = now.Add(time.Duration(rng.Int64N(int64(2*every/time.Millisecond)+1)) * time.Millisecond)
			}
			key := fmt.Sprint("k", rng.IntN(3))
			var (
				op                string
				gotOK, wantOK     bool
				gotWait, wantWait time.Duration
				err               error
			)
			switch rng.IntN(2) {
			case 0:
				op = "Allow"
				gotOK, gotWait, err = shared.Allow(ctx, key, now)
				wantOK, wantWait, _ = mem.Allow(ctx, key, now)
			default:
				op = "Refund"
				err = shared.Refund(ctx, key, now)
				_ = mem.Refund(ctx, key, now)
				gotOK, wantOK = true, true
			}
			if err != nil {
				t.Fatalf("rate %+v, decision %d: %s: %v", rate, i, op, err)
			}
			if gotOK != wantOK || gotWait != wantWait {
				t.Fatalf("rate %d per %v, decision %d (%s %s at +%v): Redis says %v, %v; limit.Limiter says %v, %v",
					rate.Requests, rate.Per, i, op, key, now.Sub(start), gotOK, gotWait, wantOK, wantWait)
			}
		}
	}
}

// TestLimiterIsSharedAcrossInstances: "limit 5 per minute" holds for the
// key, not per instance. Three stores on one Redis (three instances) take
// turns: exactly 5 of 15 requests are allowed, and each refused one is told
// to retry after the 12 s a token takes to come back. The same limit name
// under another key prefix (another deployment), another name, and another
// key each have buckets of their own.
func TestLimiterIsSharedAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	prefix := newPrefix()
	rate := limit.Rate{Requests: 5, Per: time.Minute}
	var ls []*Limiter
	for range 3 {
		ls = append(ls, limiter(t, open(t, srv.Addr(), prefix), "bc", rate))
	}
	now := time.Now()
	allowed := 0
	for i := range 15 {
		ok, wait, err := ls[i%3].Allow(ctx, "client-a", now)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
			continue
		}
		if wait != 12*time.Second {
			t.Errorf("request %d refused with retry after %v, want 12s", i+1, wait)
		}
	}
	if allowed != 5 {
		t.Fatalf("%d of 15 requests over 3 instances allowed, want 5", allowed)
	}
	others := map[string]*Limiter{
		"another key prefix": limiter(t, open(t, srv.Addr(), newPrefix()), "bc", rate),
		"another limit name": limiter(t, ls[0].s, "other", rate),
	}
	for what, l := range others {
		if ok, _, err := l.Allow(ctx, "client-a", now); !ok || err != nil {
			t.Errorf("%s shares the bucket: Allow = %v, %v", what, ok, err)
		}
	}
	if ok, _, err := ls[1].Allow(ctx, "client-b", now); !ok || err != nil {
		t.Errorf("another key shares the bucket: Allow = %v, %v", ok, err)
	}
	// A token comes back for everyone 12 s on.
	if ok, _, _ := ls[2].Allow(ctx, "client-a", now.Add(12*time.Second)); !ok {
		t.Error("refused after a token came back")
	}
}

// TestLimiterConcurrentDecisionsAreAtomic: 60 concurrent requests on three
// instances, 10 tokens: exactly 10 are allowed (each decision is one
// script, so no two instances take the same token).
func TestLimiterConcurrentDecisionsAreAtomic(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	prefix := newPrefix()
	rate := limit.Rate{Requests: 10, Per: time.Hour}
	var ls []*Limiter
	for range 3 {
		ls = append(ls, limiter(t, open(t, srv.Addr(), prefix), "burst", rate))
	}
	now := time.Now()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, _, err := ls[i%3].Allow(ctx, "user", now)
			if err != nil {
				t.Error(err)
			}
			if ok {
				allowed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := allowed.Load(); n != 10 {
		t.Fatalf("%d of 60 concurrent requests allowed, want 10", n)
	}
}

// TestLimiterKeys: a bucket is one key under the prefix, named by the
// limit and a hash of the limited key (never the key itself: it may be a
// user's e-mail address), hash-tagged, with a TTL that ends when the bucket
// would be full again; a bucket that is full is no key at all.
func TestLimiterKeys(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	prefix := newPrefix()
	st := open(t, srv.Addr(), prefix)
	raw := rawClient(t, srv.Addr())
	l := limiter(t, st, "requests_per_user", limit.Rate{Requests: 2, Per: 10 * time.Minute})
	keys := func() []string {
		t.Helper()
		ks, err := raw.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return ks
	}
	now := time.Now()
	const user = "login_hint:alice@example.com"
	if err := l.Refund(ctx, user, now); err != nil {
		t.Fatalf("Refund of a new key: %v", err)
	}
	if ks := keys(); len(ks) != 0 {
		t.Fatalf("a Refund wrote %v; a full bucket needs no key", ks)
	}
	if ok, _, err := l.Allow(ctx, user, now); !ok || err != nil {
		t.Fatalf("Allow = %v, %v", ok, err)
	}
	ks := keys()
	if len(ks) != 1 {
		t.Fatalf("keys after one Allow: %v, want one", ks)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `limit:requests_per_user:\{[0-9a-f]{32}\}$`).MatchString(ks[0]) {
		t.Errorf("bucket key %q, want %slimit:requests_per_user:{<128-bit hex hash>}", ks[0], prefix)
	}
	if strings.Contains(ks[0], "alice") {
		t.Errorf("bucket key %q holds the limited key", ks[0])
	}
	// One token of 2 per 10 min is 5 min away, plus a second of margin.
	ttl, err := raw.PTTL(ctx, ks[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 4*time.Minute || ttl > 5*time.Minute+time.Second {
		t.Errorf("bucket TTL %v, want just under 5m1s (the time until it is full again)", ttl)
	}
	// Once it is full again, the next decision removes the key.
	if err := l.Refund(ctx, user, now.Add(5*time.Minute)); err != nil {
		t.Fatalf("Refund when full again: %v", err)
	}
	if ks := keys(); len(ks) != 0 {
		t.Errorf("keys of a full bucket: %v, want none", ks)
	}
	// A value that is not a bucket counts as a full one.
	if err := raw.Set(ctx, l.bucketKey(user), "garbage", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if ok, _, err := l.Allow(ctx, user, now); !ok || err != nil {
			t.Fatalf("request %d on a garbled bucket = %v, %v; want a full bucket", i+1, ok, err)
		}
	}
	if ok, _, _ := l.Allow(ctx, user, now); ok {
		t.Error("the third request of 2 was allowed")
	}
}

// TestLimiterRedisDown: with Redis gone a decision is an error wrapping
// ciba.ErrUnavailable, and behind limit.FailOpen the request is allowed and
// the failure reported. When Redis is back the bucket, kept on disk, still
// holds what was taken.
func TestLimiterRedisDown(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPersistence())
	ctx := t.Context()
	st := open(t, srv.Addr(), newPrefix())
	l := limiter(t, st, "down", limit.Rate{Requests: 1, Per: time.Hour})
	now := time.Now()
	if ok, _, err := l.Allow(ctx, "k", now); !ok || err != nil {
		t.Fatalf("Allow = %v, %v", ok, err)
	}
	srv.Kill()
	if _, _, err := l.Allow(ctx, "k", now); !errors.Is(err, ciba.ErrUnavailable) {
		t.Errorf("Allow with Redis down: %v, want an error wrapping ErrUnavailable", err)
	}
	if err := l.Refund(ctx, "k", now); !errors.Is(err, ciba.ErrUnavailable) {
		t.Errorf("Refund with Redis down: %v, want an error wrapping ErrUnavailable", err)
	}
	var reported []error
	fo := limit.FailOpen(l, func(err error) { reported = append(reported, err) })
	if ok, _, err := fo.Allow(ctx, "k", now); !ok || err != nil {
		t.Errorf("FailOpen Allow with Redis down = %v, %v; want allowed", ok, err)
	}
	if len(reported) != 1 || !errors.Is(reported[0], ciba.ErrUnavailable) {
		t.Errorf("reported %v, want the one unavailable error", reported)
	}

	srv.Restart()
	var err error
	for range 200 { // the client reconnects by itself; bounded wait
		var ok bool
		if ok, _, err = l.Allow(ctx, "k", now); err == nil {
			if ok {
				t.Fatal("after the restart the bucket is full again: the token taken before was lost")
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Allow after the restart: %v", err)
	}
}

func TestLimiterRefusesBadNamesAndOffRates(t *testing.T) {
	srv := redistest.Start(t)
	st := open(t, srv.Addr(), newPrefix())
	for _, name := range []string{"", "Upper", "has space", "brace{", "colon:", strings.Repeat("a", 65)} {
		if _, err := st.Limiter(name, limit.Rate{Requests: 1, Per: time.Second}); err == nil {
			t.Errorf("Limiter(%q) accepted the name", name)
		}
	}
	for _, r := range []limit.Rate{{}, {Requests: 1}, {Per: time.Second}} {
		if _, err := st.Limiter("ok", r); err == nil {
			t.Errorf("Limiter with rate %+v (off) gave a limiter", r)
		}
	}
}

// TestLimiterReserveHoldsAcrossInstances is the check-then-charge race on
// the shared limiter: 200 failures racing over two instances against a
// bucket of 30 (the approval page's default per address) are let through
// 30 times, and successes settled in between give their tokens back.
func TestLimiterReserveHoldsAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	prefix := newPrefix()
	rate := limit.Rate{Requests: 30, Per: 5 * time.Minute}
	ls := []*Limiter{
		limiter(t, open(t, srv.Addr(), prefix), "approval_failures", rate),
		limiter(t, open(t, srv.Addr(), prefix), "approval_failures", rate),
	}
	now := func() time.Time { return time.UnixMilli(1_800_000_000_000) }
	for range 20 { // successes cost nothing
		ok, _, settle, err := limit.Reserve(ctx, ls[0], "203.0.113.9", now)
		if !ok || err != nil {
			t.Fatalf("a success was refused: %v, %v", ok, err)
		}
		settle(false)
	}
	var passed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, _, settle, err := limit.Reserve(ctx, ls[i%2], "203.0.113.9", now)
			if err != nil {
				t.Error(err)
				return
			}
			if ok {
				passed.Add(1)
				time.Sleep(time.Millisecond) // the password check
				settle(true)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := passed.Load(); n != 30 {
		t.Fatalf("%d of 200 parallel failures over two instances passed a limit of 30", n)
	}
}
