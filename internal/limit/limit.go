// Package limit is a keyed token-bucket rate limiter, held in memory.
//
// Each key (a client id, a user's subject, a network address) has a bucket
// of Rate.Requests tokens that refills evenly over Rate.Per; a request takes
// one token, and is refused while the bucket is empty. A key that has been
// idle long enough for its bucket to be full again carries no information
// and is forgotten, and the number of keys held is bounded: past MaxKeys the
// least recently used key is dropped. Memory stays bounded whatever the
// keys an attacker makes up.
//
// # Several instances
//
// Buckets are per process. Behind a load balancer that spreads requests over
// N cibaproxy instances, a key can take up to N times its rate in the worst
// case (evenly spread requests), and exactly its rate when the balancer is
// sticky. That is acceptable for what these limits are for: they stop
// floods (push bombing, password and id guessing, a runaway client) by
// orders of magnitude, not to the request, and the operator who runs N
// instances sets the rate to 1/N of the intended total. A limit that must be
// exact across instances would keep its buckets in the shared Redis store
// (one INCR with expiry per fixed window, or a small Lua script for a token
// bucket): one network round trip per limited request, which the poll hot
// path should not pay.
package limit

import (
	"container/list"
	"sync"
	"time"
)

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
		every:   rate.Per / time.Duration(rate.Requests),
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

// Allow takes a token from key's bucket at now. When the bucket is empty it
// takes nothing and returns false and how long until a token is back.
func (l *Limiter) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	return l.take(key, now, true)
}

// Check reports whether key has a token at now, without taking it, and
// otherwise how long until it has one. With Charge it limits only some
// outcomes: check before the work, charge when it failed.
func (l *Limiter) Check(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	return l.take(key, now, false)
}

// Charge takes a token from key's bucket at now if one is left.
func (l *Limiter) Charge(key string, now time.Time) {
	l.take(key, now, true)
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
