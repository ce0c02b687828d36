// Package limit is keyed token-bucket rate limiting: the rule, the
// interface its callers use (Keyed), and the in-memory Limiter.
//
// Each key (a client id, a user's subject, a network address) has a bucket
// of Rate.Requests tokens that refills evenly over Rate.Per; a request takes
// one token, and is refused while the bucket is empty, with the time until a
// token is back rounded up to whole seconds (as Retry-After has it). A key
// that has been idle long enough for its bucket to be full again carries no
// information and is forgotten, and the number of keys held is bounded:
// past MaxKeys the least recently used key is dropped. Memory stays bounded
// whatever the keys an attacker makes up.
//
// # Several instances
//
// A Limiter's buckets are per process. Behind a load balancer that spreads
// requests over N cibaproxy instances, a key could take up to N times its
// rate. With the Redis store, cibaproxy therefore keeps the buckets of the
// bc-authorize, device authorization per address, introspection, per-user,
// approval-page, callback and device user-code limits in Redis (redisstore.Limiter: the same rule, in one Lua script per
// decision), so that a limit means what it says whatever the number of
// instances. The /token per-client limit stays a Limiter per instance: it
// is on the poll hot path, which must not pay a second round trip; polling
// itself is paced across instances by the store (CIBA §7.3 interval).
//
// A shared limit that cannot reach its store fails open (FailOpen): the
// request goes on, and the failure is reported (logged and counted). The
// outage already answers temporarily_unavailable wherever the request needs
// the store, which every limited request does.
package limit

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"
)

// Keyed is a rate limit per key, as its callers use it. The in-memory
// *Limiter is one (its nil value allows everything); redisstore.Limiter,
// shared by every instance on one Redis, is another. An implementation
// applies the token-bucket rule of the package doc at the time now given
// by the caller, and returns an error when it cannot decide (its store is
// unreachable): the caller then decides whether to allow the request, which
// FailOpen does for it.
type Keyed interface {
	// Allow takes a token from key's bucket at now. When the bucket is
	// empty it takes nothing and returns false and how long until a token
	// is back, in whole seconds.
	Allow(ctx context.Context, key string, now time.Time) (ok bool, retryAfter time.Duration, err error)
	// Refund gives a token back to key's bucket at now, up to the
	// bucket's size. It settles a reservation (see Reserve) whose outcome
	// was not one the limit counts.
	Refund(ctx context.Context, key string, now time.Time) error
}

// Reserve is how a limit that counts only some outcomes (failed sign-ins,
// wrong codes, failed client authentication) is applied: it takes a token
// before the work, so that N requests racing each other cost N tokens
// whatever their outcome, and returns the settle function to call once the
// outcome is known: settle(true) keeps the token (the outcome counts),
// settle(false) gives it back. When the bucket is empty nothing is taken,
// ok is false, and retryAfter says how long until a token is back; settle
// is then a no-op. A check made before the work and charged after it
// would let every request in flight pass the check.
//
// A decision l fails to make is returned as err with ok true and a settle
// that does nothing: the caller decides (FailOpen does it for it).
func Reserve(ctx context.Context, l Keyed, key string, now func() time.Time) (ok bool, retryAfter time.Duration, settle func(counts bool), err error) {
	noop := func(bool) {}
	if l == nil {
		return true, 0, noop, nil
	}
	ok, retryAfter, err = l.Allow(ctx, key, now())
	if err != nil {
		return true, 0, noop, err
	}
	if !ok {
		return false, retryAfter, noop, nil
	}
	return true, 0, func(counts bool) {
		if !counts {
			// The outcome did not count: the token goes back. A refund
			// that cannot be made leaves the token taken, the safe side.
			_ = l.Refund(context.WithoutCancel(ctx), key, now())
		}
	}, nil
}

// Bucket names one bucket: a limit and a key of it. A nil Limit is no
// limit.
type Bucket struct {
	Limit Keyed
	Key   string
}

// ReserveAll is Reserve on several buckets at once, all or nothing: it
// reserves a token in each, in order, and when one is empty it gives back
// the tokens already taken, takes none from the buckets after it, and
// returns false and that bucket's retryAfter. List the narrowest bucket
// first (a client's or an address's share of a user's, then the user's):
// a key whose own bucket is empty then takes nothing from the wider one,
// so it cannot empty it alone. settle settles every reservation at once.
//
// A bucket whose decision fails is passed over (allowed, nothing to
// settle) and its error returned, joined with the others, with ok
// decided by the remaining buckets.
func ReserveAll(ctx context.Context, now func() time.Time, buckets ...Bucket) (ok bool, retryAfter time.Duration, settle func(counts bool), err error) {
	settles := make([]func(bool), 0, len(buckets))
	all := func(counts bool) {
		for _, s := range settles {
			s(counts)
		}
	}
	var errs []error
	for _, b := range buckets {
		ok, wait, s, err := Reserve(ctx, b.Limit, b.Key, now)
		if err != nil {
			errs = append(errs, err)
		}
		if !ok {
			all(false)
			return false, wait, func(bool) {}, errors.Join(errs...)
		}
		settles = append(settles, s)
	}
	return true, 0, all, errors.Join(errs...)
}

// Compile-time check that the in-memory Limiter is a Keyed.
var _ Keyed = (*Limiter)(nil)

// FailOpen returns l such that a decision l fails to make allows the
// request (Allow answers true, Refund does nothing) after calling
// report with the error; report logs and counts it. The errors of l never
// reach the caller. FailOpen(nil, ...) is nil.
func FailOpen(l Keyed, report func(err error)) Keyed {
	if l == nil {
		return nil
	}
	return failOpen{l: l, report: report}
}

type failOpen struct {
	l      Keyed
	report func(err error)
}

func (f failOpen) Allow(ctx context.Context, key string, now time.Time) (bool, time.Duration, error) {
	ok, wait, err := f.l.Allow(ctx, key, now)
	if err != nil {
		f.report(err)
		return true, 0, nil
	}
	return ok, wait, nil
}

func (f failOpen) Refund(ctx context.Context, key string, now time.Time) error {
	if err := f.l.Refund(ctx, key, now); err != nil {
		f.report(err)
	}
	return nil
}

// Rate is how many requests a key may make per period. The zero Rate (or
// Requests ≤ 0) is no limit.
type Rate struct {
	// Requests is the bucket size: the burst a key may send at once, and
	// the number of requests it may make per Per.
	Requests int
	// Per is the time in which an empty bucket fills up again.
	Per time.Duration
}

// Off reports whether r sets no limit.
func (r Rate) Off() bool { return r.Requests <= 0 || r.Per <= 0 }

// DefaultMaxKeys bounds the keys of a Limiter when New is given 0.
const DefaultMaxKeys = 100_000

// Limiter is a set of token buckets, one per key. It is safe for
// concurrent use. The nil *Limiter allows everything.
type Limiter struct {
	rate    Rate
	maxKeys int
	// every is the time one token takes to come back.
	every time.Duration

	mu   sync.Mutex
	keys map[string]*list.Element
	lru  list.List // of *bucket, most recently used first
}

type bucket struct {
	key string
	// tokens left at at.
	tokens float64
	at     time.Time
}

// New returns a limiter of rate per key holding at most maxKeys keys (0:
// DefaultMaxKeys). It returns nil, which allows everything, when rate is
// off.
func New(rate Rate, maxKeys int) *Limiter {
	if rate.Off() {
		return nil
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Limiter{
		rate:    rate,
		maxKeys: maxKeys,
		every:   rate.Every(),
		keys:    make(map[string]*list.Element),
	}
}

// Rate is the limiter's rate; the zero Rate for the nil limiter.
func (l *Limiter) Rate() Rate {
	if l == nil {
		return Rate{}
	}
	return l.rate
}

// Every is the time one token takes to come back: Per / Requests, in whole
// nanoseconds. A shared implementation of the rule refills by it, to decide
// as a Limiter does. 0 for an off rate.
func (r Rate) Every() time.Duration {
	if r.Off() {
		return 0
	}
	return r.Per / time.Duration(r.Requests)
}

// Allow takes a token from key's bucket at now (Keyed). It never fails.
func (l *Limiter) Allow(_ context.Context, key string, now time.Time) (ok bool, retryAfter time.Duration, err error) {
	ok, retryAfter = l.take(key, now, true)
	return ok, retryAfter, nil
}

// Refund gives a token back to key's bucket at now, up to its size
// (Keyed). A key not held has a full bucket already. It never fails.
func (l *Limiter) Refund(_ context.Context, key string, now time.Time) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.keys[key]; !ok {
		return nil
	}
	b := l.bucket(key, now)
	b.tokens = min(float64(l.rate.Requests), b.tokens+1)
	return nil
}

func (l *Limiter) take(key string, now time.Time, take bool) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	if b.tokens < 1 {
		// Rounded up to whole seconds, as Retry-After has them.
		wait := time.Duration((1 - b.tokens) * float64(l.every))
		return false, max(time.Second, (wait+time.Second-1)/time.Second*time.Second)
	}
	if take {
		b.tokens--
	}
	return true, 0
}

// bucket returns key's bucket refilled up to now, creating it (full) when
// absent and making it the most recently used. l.mu is held.
func (l *Limiter) bucket(key string, now time.Time) *bucket {
	if e, ok := l.keys[key]; ok {
		l.lru.MoveToFront(e)
		b := e.Value.(*bucket)
		if d := now.Sub(b.at); d > 0 {
			b.tokens = min(float64(l.rate.Requests), b.tokens+float64(d)/float64(l.every))
			b.at = now
		}
		return b
	}
	if len(l.keys) >= l.maxKeys {
		l.evict(now)
	}
	b := &bucket{key: key, tokens: float64(l.rate.Requests), at: now}
	l.keys[key] = l.lru.PushFront(b)
	return b
}

// evict makes room for one key: it forgets the keys, least recently used
// first, whose buckets are full again (they carry no information), and if
// none is, the least recently used key. l.mu is held.
func (l *Limiter) evict(now time.Time) {
	for e := l.lru.Back(); e != nil; {
		b := e.Value.(*bucket)
		// The list is in order of use, so stop at the first bucket that
		// is not full yet: the ones used later mostly are not either.
		if b.tokens+float64(now.Sub(b.at))/float64(l.every) < float64(l.rate.Requests) {
			break
		}
		prev := e.Prev()
		l.lru.Remove(e)
		delete(l.keys, b.key)
		e = prev
	}
	if len(l.keys) >= l.maxKeys {
		e := l.lru.Back()
		l.lru.Remove(e)
		delete(l.keys, e.Value.(*bucket).key)
	}
}

// Len is the number of keys held.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
