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

// paceInterval returns the interval of a pace as the poll script returns
// it ("interval next-due hold-until", milliseconds), reading only its first
// field, without allocating; 0 when it does not parse.
func paceInterval(s string) time.Duration {
	var ms int64
	for i := 0; i < len(s) && s[i] != ' '; i++ {
		c := s[i]
		if c < '0' || c > '9' || ms > (1<<62)/10/int64(time.Millisecond) {
			return 0
		}
		ms = ms*10 + int64(c-'0')
	}
	return time.Duration(ms) * time.Millisecond
}

// pollScript answers a poll in one round trip (ciba.Store.Poll): it reads
// the request, checks that the poll's client may poll it (ciba.PollQuery.
// Check: client, kind, certificate, pending), and only then applies the
// pace rule (ciba.PaceRule.Apply, in Lua; TestPollScriptFollowsTheRule
// holds the two alike on generated cases). The request's first interval
// is the rule's Initial (ciba.PollQuery.RuleFor). Expiry is checked by the
// caller: the pace of an expired request is never read.
// KEYS[1] request key; ARGV now, tolerance, step, hold (milliseconds),
// client id, kind, certificate thumbprint, check only ('1' or '0'), DPoP
// key thumbprint.
// Returns {data, slow (0|1), pace after the poll (empty for none), paced
// (0|1)}, or nil if there is no request.
var pollScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'd', 'p')
if v[1] == false then return false end
local r = cjson.decode(v[1])
local cert = r.cert_thumbprint or ''
if r.client_id ~= ARGV[5] or (r.kind or '') ~= ARGV[6] or (cert ~= '' and cert ~= ARGV[7])
  or (r.dpop_jkt or '') ~= ARGV[9] or r.status ~= 'pending' or ARGV[8] == '1' then
  return {v[1], 0, v[2] or '', 0}
end
local now, tol, step, hold = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local iv, nb, hu = 0, 0, 0
if v[2] then
  local a, b, c = string.match(v[2], '^(%d+) (%d+) (%d+)$')
  if a then iv, nb, hu = tonumber(a), tonumber(b), tonumber(c) end
end
if iv == 0 then iv = math.floor((tonumber(r.interval) or 0) / 1000000) end
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
return {v[1], slow, p, 1}
`)

// Poll answers a poll of request id (ciba.Store.Poll). A pending request
// this instance knows (pollcache.go) is checked and paced here, without a
// round trip, when the knowledge can answer for it (not q.Current, not a
// poll to hold); otherwise the poll script checks and paces it in Redis in
// one round trip, which concurrent polls share (batch.go), and a pending
// request read is remembered with its pace for the early polls that follow.
func (s *Store) Poll(ctx context.Context, id string, q ciba.PollQuery) (ciba.PollResult, error) {
	if s.closed.Load() {
		return ciba.PollResult{}, errClosed
	}
	if s.cache != nil && !q.Current && !q.CheckOnly {
		if res, ok := s.pollCached(id, &q); ok {
			return res, nil
		}
	}
	res, _, err := s.pollStore(ctx, id, &q)
	return res, err
}

// pollCached answers the poll q of request id from what this instance
// knows, if it can: ok is false when it cannot (nothing known, the request
// known as no longer pending, knowledge not vouched for, a poll to hold),
// and nothing is changed then.
func (s *Store) pollCached(id string, q *ciba.PollQuery) (ciba.PollResult, bool) {
	v, ok := s.cache.CachedPoll(id)
	if !ok {
		return ciba.PollResult{}, false
	}
	switch out := q.Check(&v); out {
	case ciba.PollUnknown, ciba.PollWrongCert, ciba.PollWrongKey, ciba.PollUnboundKey:
		return ciba.PollResult{Outcome: out}, true
	case ciba.PollPending:
	default:
		return ciba.PollResult{}, false
	}
	slow, answered, interval := s.cache.PaceCached(id, q.RuleFor(&v))
	switch {
	case !answered:
		return ciba.PollResult{}, false
	case slow:
		return ciba.PollResult{Outcome: ciba.PollSlow, Interval: interval}, true
	}
	return ciba.PollResult{Outcome: ciba.PollPending}, true
}

// pollStore answers the poll q of request id with the poll script, and
// returns the request the script read (nil for none).
func (s *Store) pollStore(ctx context.Context, id string, q *ciba.PollQuery) (ciba.PollResult, *ciba.AuthRequest, error) {
	const op = "poll"
	if err := s.usable(ctx, op); err != nil {
		return ciba.PollResult{}, nil, err
	}
	var gen uint64
	if s.cache != nil {
		gen = s.cache.generation(id)
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	// Constants where they can be, which box without allocating.
	var kind, cert, checkOnly, jkt any = "", "", "0", ""
	if q.Kind == ciba.KindDevice {
		kind = string(ciba.KindDevice)
	} else if q.Kind != ciba.KindCIBA {
		kind = string(q.Kind)
	}
	if q.Cert != "" {
		cert = q.Cert
	}
	if q.CheckOnly {
		checkOnly = "1"
	}
	if q.JKT != "" {
		jkt = q.JKT
	}
	rule := q.Rule
	res, err := s.polls.do(ctx, s.requestKey(id),
		[pollArgs]any{rule.Now.UnixMilli(), ms(rule.Tolerance), ms(rule.Step), ms(rule.Hold), q.ClientID, kind, cert, checkOnly, jkt})
	if errors.Is(err, redis.Nil) {
		return ciba.PollResult{}, nil, nil
	}
	if err != nil {
		return ciba.PollResult{}, nil, unavailable(op, err)
	}
	if len(res) != 4 {
		return ciba.PollResult{}, nil, fmt.Errorf("redis store: %s: unexpected answer", op)
	}
	data, ok := res[0].(string)
	slow, ok2 := res[1].(int64)
	pace, ok3 := res[2].(string)
	paced, ok4 := res[3].(int64)
	if !ok || !ok2 || !ok3 || !ok4 {
		return ciba.PollResult{}, nil, fmt.Errorf("redis store: %s: unexpected answer", op)
	}
	r, err := decode([]byte(data))
	if err != nil {
		return ciba.PollResult{}, nil, err
	}
	v := ciba.PollViewOf(r)
	out := q.Check(&v)
	if s.cache != nil && out != ciba.PollUnknown {
		s.cache.remember(id, gen, r, decodePace(pace), rule.Now)
	}
	switch {
	case out == ciba.PollDone:
		return ciba.PollResult{Outcome: out, Request: r}, r, nil
	case out != ciba.PollPending || q.CheckOnly:
		return ciba.PollResult{Outcome: out}, r, nil
	case paced != 1:
		// The script and ciba.PollQuery.Check disagree: a bug.
		return ciba.PollResult{}, nil, fmt.Errorf("redis store: %s: the poll script did not pace a request the poll may pace", op)
	case slow == 1:
		return ciba.PollResult{Outcome: ciba.PollSlow, Interval: paceInterval(pace)}, r, nil
	}
	return ciba.PollResult{Outcome: ciba.PollPending, Hold: q.HoldFor(r.ExpiresAt)}, r, nil
}

// forget drops what this instance knows of request id, which it is about
// to change.
func (s *Store) forget(id string) {
	if s.cache != nil {
		s.cache.drop(id)
	}
}
