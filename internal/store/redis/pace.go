package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// The pace state is kept in the request hash's field p as three integers,
// "interval_ms not_before_ms hold_until_ms" (0 for a zero time), so that
// the poll script can apply the pace rule in Redis itself. Pace is soft
// state: a value that does not parse counts as none.

func encodePace(p ciba.Pace) string {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	return strconv.FormatInt(p.Interval.Milliseconds(), 10) + " " +
		strconv.FormatInt(ms(p.NotBefore), 10) + " " + strconv.FormatInt(ms(p.HoldUntil), 10)
}

func decodePace(s string) ciba.Pace {
	f := strings.Fields(s)
	if len(f) != 3 {
		return ciba.Pace{}
	}
	var n [3]int64
	for i := range f {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || v < 0 {
			return ciba.Pace{}
		}
		n[i] = v
	}
	t := func(ms int64) time.Time {
		if ms == 0 {
			return time.Time{}
		}
		return time.UnixMilli(ms)
	}
	return ciba.Pace{Interval: time.Duration(n[0]) * time.Millisecond, NotBefore: t(n[1]), HoldUntil: t(n[2])}
}

// pollScript reads a request and applies the pace rule of a poll to it, in
// one round trip (ciba.PaceRule.Apply, in Lua; keep the two alike).
// KEYS[1] request key; ARGV now, tolerance, step, hold, initial interval,
// all in milliseconds. Returns {data, slow (0|1), pace after the poll}, or
// nil if there is no request.
var pollScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'd', 'p')
if v[1] == false then return false end
local now, tol, step, hold, initial = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local iv, nb, hu = 0, 0, 0
if v[2] then
  local a, b, c = string.match(v[2], '^(%d+) (%d+) (%d+)$')
  if a then iv, nb, hu = tonumber(a), tonumber(b), tonumber(c) end
end
if iv == 0 then iv = initial end
local slow = 0
if (hu ~= 0 and now < hu) or (nb ~= 0 and now + tol < nb) then
  slow = 1
  iv = iv + step
  nb = now + iv
elseif hold > 0 then
  hu = now + hold
else
  nb = now + iv
end
local p = string.format('%d %d %d', iv, nb, hu)
redis.call('HSET', KEYS[1], 'p', p)
return {v[1], slow, p}
`)

// ReadAndPace reads request id and applies rule to its pace state in one
// script call (ciba.PacedReader): the poll hot path on Redis. Concurrent
// polls share round trips (batch.go). A pending request read is remembered
// with its pace, for the early polls that follow (pollcache.go).
func (s *Store) ReadAndPace(ctx context.Context, id string, rule ciba.PaceRule) (*ciba.AuthRequest, bool, error) {
	const op = "poll"
	if err := s.usable(ctx, op); err != nil {
		return nil, false, err
	}
	var gen uint64
	if s.cache != nil {
		gen = s.cache.generation(id)
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	res, err := s.polls.do(ctx, s.requestKey(id),
		[5]any{rule.Now.UnixMilli(), ms(rule.Tolerance), ms(rule.Step), ms(rule.Hold), ms(rule.Initial)})
	if errors.Is(err, redis.Nil) {
		return nil, false, errRequestNotFound
	}
	if err != nil {
		return nil, false, unavailable(op, err)
	}
	if len(res) != 3 {
		return nil, false, fmt.Errorf("redis store: %s: unexpected answer", op)
	}
	data, ok := res[0].(string)
	slow, ok2 := res[1].(int64)
	pace, ok3 := res[2].(string)
	if !ok || !ok2 || !ok3 {
		return nil, false, fmt.Errorf("redis store: %s: unexpected answer", op)
	}
	r, err := decode([]byte(data))
	if err != nil {
		return nil, false, err
	}
	if s.cache != nil {
		s.cache.remember(id, gen, r, decodePace(pace), rule.Now)
	}
	return r, slow == 1, nil
}

// Compile-time check: the store offers the poll cache to the service.
var _ ciba.PollCache = (*Store)(nil)

// CachedPoll implements ciba.PollCache (pollcache.go).
func (s *Store) CachedPoll(id string) (ciba.PollView, bool) {
	if s.cache == nil {
		return ciba.PollView{}, false
	}
	return s.cache.CachedPoll(id)
}

// PaceCached implements ciba.PollCache (pollcache.go).
func (s *Store) PaceCached(id string, rule ciba.PaceRule) (slow, answered bool) {
	if s.cache == nil {
		return false, false
	}
	return s.cache.PaceCached(id, rule)
}

// forget drops what this instance knows of request id, which it is about
// to change.
func (s *Store) forget(id string) {
	if s.cache != nil {
		s.cache.drop(id)
	}
}
