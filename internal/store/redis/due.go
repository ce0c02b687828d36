package redisstore

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// The due index: the sorted set KeyPrefix+"due" holds the id of every
// request with a delivery pending (ciba.Delivery.Pending) or an upstream poll
// scheduled (ciba.RelayState.NextPoll), scored with the Unix milliseconds of
// the earliest of them. The instance that claims an
// attempt moves NextAttempt forward, a lease; if the instance dies, nobody
// but another instance can resume the delivery when the lease runs out, and
// ListDue lets the others find it within seconds, where a full ListRequests
// sweep of every request is too costly to run that often.
//
// The index is its own key, in another Cluster hash slot than the requests,
// so it is written after the request and apart from it, on a best-effort
// basis. An entry can be missing (the write failed: the dispatcher's full
// sweep still finds the request) or stale (writes of two instances landing
// out of order, a request collected by its TTL); ListDue checks every entry
// it reads against its request and corrects it. The key has no TTL: entries
// leave when their delivery is done or their request is gone.

// dueBatch bounds the entries one ListDue call reads.
const dueBatch = 512

// fixDueScript replaces or removes an entry of the due index if its score is
// still the one read. KEYS[1] due key; ARGV id, score read, new score (the empty
// string removes the entry). Returns 1 if changed, else 0.
var fixDueScript = redis.NewScript(`
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if cur == false or tonumber(cur) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
`)

// dueKey is the key of the due index.
func (s *Store) dueKey() string { return s.prefix + "due" }

// dueScore returns the due index score of r, the Unix milliseconds of the
// earliest next attempt of a pending delivery, and false when none is
// pending (or r is nil).
func dueScore(r *ciba.AuthRequest) (int64, bool) {
	if r == nil {
		return 0, false
	}
	var at int64
	ok := false
	for _, d := range []ciba.Delivery{r.UserNotice, r.ClientNotice} {
		if !d.Pending() {
			continue
		}
		if ms := d.NextAttempt.UnixMilli(); !ok || ms < at {
			at, ok = ms, true
		}
	}
	// A relayed request's upstream poll is held by a lease the same way.
	if rs := r.Relay; rs.Active() && r.Status == ciba.StatusPending && !rs.NextPoll.IsZero() {
		if ms := rs.NextPoll.UnixMilli(); !ok || ms < at {
			at, ok = ms, true
		}
	}
	return at, ok
}

// reindex brings the due index entry of request id from what before implied
// to what after implies (nil: no request); it writes only on a change.
// Failures are not reported: the index is best effort (see above).
func (s *Store) reindex(ctx context.Context, id string, before, after *ciba.AuthRequest) {
	b, hadDue := dueScore(before)
	a, hasDue := dueScore(after)
	switch {
	case hasDue && (!hadDue || a != b):
		_ = s.c.ZAdd(ctx, s.dueKey(), redis.Z{Score: float64(a), Member: id}).Err()
	case !hasDue && (hadDue || after == nil):
		_ = s.c.ZRem(ctx, s.dueKey(), id).Err()
	}
}

// ListDue calls fn, until it returns false, with the id of each request
// that has a pending delivery whose next attempt is at or before t, earliest
// first, at most dueBatch of them. Each entry is checked against its
// request: one that no longer holds is corrected, not given to fn. A request
// listed may change before fn acts on it; the caller claims the attempt with
// a compare-and-set anyway. It serves the dispatcher (ciba.Store.ListDue), so
// that an instance takes over the deliveries of one that died.
func (s *Store) ListDue(ctx context.Context, t time.Time, fn func(id string) bool) error {
	const op = "list due"
	if s.closed.Load() {
		return errClosed
	}
	entries, err := s.c.ZRangeByScoreWithScores(ctx, s.dueKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(t.UnixMilli(), 10), Count: dueBatch,
	}).Result()
	if err != nil {
		return unavailable(op, err)
	}
	if len(entries) == 0 {
		return nil
	}
	cmds := make([]*redis.StringCmd, len(entries))
	pipe := s.c.Pipeline()
	for i, e := range entries {
		id, _ := e.Member.(string)
		cmds[i] = pipe.HGet(ctx, s.requestKey(id), "d")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable(op, err)
	}
	for i, e := range entries {
		id, _ := e.Member.(string)
		data, err := cmds[i].Bytes()
		var r *ciba.AuthRequest
		switch {
		case errors.Is(err, redis.Nil):
			// Gone: collected by its TTL or deleted.
		case err != nil:
			return unavailable(op, err)
		default:
			if r, err = decode(data); err != nil {
				return err
			}
		}
		score, due := dueScore(r)
		if due && score <= t.UnixMilli() {
			if !fn(id) {
				return nil
			}
			continue
		}
		next := ""
		if due {
			next = strconv.FormatInt(score, 10)
		}
		seen := strconv.FormatFloat(e.Score, 'f', -1, 64)
		if err := fixDueScript.Run(ctx, s.c, []string{s.dueKey()}, id, seen, next).Err(); err != nil {
			return unavailable(op+": correct an entry", err)
		}
	}
	return nil
}

// ListSweep calls fn with the sweep's view of every stored request
// (ciba.Store.ListSweep), built from each request as ListRequests reads it:
// Redis sends the whole request anyway.
func (s *Store) ListSweep(ctx context.Context, fn func(v *ciba.SweepView) bool) error {
	var v ciba.SweepView
	return s.ListRequests(ctx, func(r *ciba.AuthRequest) bool {
		ciba.SweepViewOf(r, &v)
		return fn(&v)
	})
}
