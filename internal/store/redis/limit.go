package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// Shared abuse limits. Each bucket of a Limiter is one string key,
//
//	cibaproxy:limit:<name>:{<hash>}   "tokens at_ms", with a TTL
//
// where <hash> is the first 128 bits of SHA-256 of the limiter's key (a
// client id, a user, an address), in hex: the key's own bytes, chosen by
// whoever sends the request, never make up a Redis key name, and are never
// seen in MONITOR or the slow log. The hash tag spreads the buckets over
// the slots of a Cluster; a decision touches one key, so one slot.
//
// The rule is limit.Limiter's, in Lua (limitScript; keep the two alike:
// TestLimiterAgreesWithLimit checks they decide alike). The time is the
// caller's clock, as the pace rule's is (pace.go): the limiter is given
// now, like limit.Limiter, so both are tested at the same instants. Clocks
// of instances in step (NTP) differ by milliseconds, which is at most that
// much refill; a bucket written by an instance ahead is not refilled by
// one behind until its clock passes the bucket's time, so no time is
// counted twice. A bucket expires once it would be full again (plus a
// second for clock differences): a missing key is a full bucket.

// limitName is what a Limiter name may be: it is part of the key names.
var limitName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// limitScript applies the token-bucket rule of limit.Limiter to one bucket.
// KEYS[1] bucket key; ARGV now (Unix ms), bucket size, the time a token
// takes to come back (ns), mode (1: Allow, takes a token; -1: Refund,
// gives one back). Returns {1, 0} when a token was there (and taken) or was
// given back, or {0, seconds} with the wait until one is back, rounded up
// to whole seconds (at least 1).
//
// Tokens are kept with 17 significant digits, so they read back as the
// exact float64 that limit.Limiter would hold; the refill is computed in
// nanoseconds from millisecond times, as limit.Limiter computes it from the
// times it is given.
var limitScript = redis.NewScript(`
local now, size, every, take, refund = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', ARGV[4] == '-1'
local tokens, at, present = size, now, false
local v = redis.call('GET', KEYS[1])
if v then
  local a, b = string.match(v, '^(%S+) (%d+)$')
  if a and tonumber(a) and tonumber(a) >= 0 and tonumber(a) <= size then
    tokens, at, present = tonumber(a), tonumber(b), true
  end
end
local changed = false
if present and now > at then
  tokens = math.min(size, tokens + ((now - at) * 1000000) / every)
  at = now
  changed = true
end
if refund then
  if not present then
    return {1, 0}
  end
  tokens = math.min(size, tokens + 1)
  changed = true
elseif tokens < 1 then
  if changed then
    redis.call('SET', KEYS[1], string.format('%.17g %d', tokens, at), 'PX', math.ceil((size - tokens) * every / 1000000) + 1000)
  end
  local wait = math.floor((1 - tokens) * every)
  return {0, math.max(1, math.floor((wait + 999999999) / 1000000000))}
elseif take then
  tokens = tokens - 1
  changed = true
end
if changed then
  if tokens >= size then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], string.format('%.17g %d', tokens, at), 'PX', math.ceil((size - tokens) * every / 1000000) + 1000)
  end
end
return {1, 0}
`)

// Limiter is a limit.Keyed whose buckets are kept in Redis, shared by every
// cibaproxy instance on the store: N instances allow a key its rate, not N
// times it. Each decision is one round trip (one Lua script). Make it with
// Store.Limiter; it is safe for concurrent use.
type Limiter struct {
	s      *Store
	name   string
	prefix string
	rate   limit.Rate
	every  int64 // ns
}

// Compile-time check that Limiter implements the contract.
var _ limit.Keyed = (*Limiter)(nil)

// Limiter returns the shared limiter of rate per key named name (lower-case
// letters, digits, _ and -; part of its key names, so two limits of one
// deployment need two names). It is an error when rate is off: callers
// keep no limiter then.
func (s *Store) Limiter(name string, rate limit.Rate) (*Limiter, error) {
	if !limitName.MatchString(name) {
		return nil, fmt.Errorf("redis store: limiter name %q: want 1 to 64 of a-z, 0-9, _ and -", name)
	}
	if rate.Off() {
		return nil, fmt.Errorf("redis store: limiter %s: the rate %d per %v is no limit", name, rate.Requests, rate.Per)
	}
	return &Limiter{s: s, name: name, prefix: s.prefix + "limit:" + name + ":", rate: rate, every: int64(rate.Every())}, nil
}

// Rate is the limiter's rate.
func (l *Limiter) Rate() limit.Rate { return l.rate }

// bucketKey is the Redis key of key's bucket.
func (l *Limiter) bucketKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return l.prefix + "{" + hex.EncodeToString(h[:16]) + "}"
}

// Allow takes a token from key's bucket at now (limit.Keyed). An error
// wrapping ciba.ErrUnavailable when Redis cannot be reached.
func (l *Limiter) Allow(ctx context.Context, key string, now time.Time) (bool, time.Duration, error) {
	return l.decide(ctx, key, now, true)
}

// Refund gives a token back to key's bucket at now, up to its size
// (limit.Keyed): the reservation it settles was not a failure.
func (l *Limiter) Refund(ctx context.Context, key string, now time.Time) error {
	_, _, err := l.decide(ctx, key, now, false)
	return err
}

// decide runs limitScript on key's bucket: take a token (Allow) or give
// one back (Refund).
func (l *Limiter) decide(ctx context.Context, key string, now time.Time, take bool) (bool, time.Duration, error) {
	op := "limit " + l.name
	if err := l.s.usable(ctx, op); err != nil {
		return false, 0, err
	}
	mode := -1
	if take {
		mode = 1
	}
	res, err := limitScript.Run(ctx, l.s.c, []string{l.bucketKey(key)},
		now.UnixMilli(), l.rate.Requests, l.every, mode).Int64Slice()
	if err != nil {
		return false, 0, unavailable(op, err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("redis store: %s: unexpected answer %v", op, res)
	}
	if res[0] == 1 {
		return true, 0, nil
	}
	return false, time.Duration(res[1]) * time.Second, nil
}
