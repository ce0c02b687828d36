package redisstore

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// The poll cache is what this instance knows of the pending requests it has
// polled: their poll view and pace as the poll script last returned them
// (ciba.PollCache). Clients poll far more often than they are allowed to,
// and an early poll by that knowledge is answered slow_down here, without a
// round trip to Redis; the interval it grows is merged into Redis by a
// flusher every flushEvery, so the other instances see it too.
//
// Knowledge is dropped when it may be stale: when any instance changes or
// deletes the request (the change channel, pubsub.go), when this instance
// writes its pace, and all of it while the change channel is down. A read
// that raced with a change is not remembered (the shard's generation).
// Knowledge that is nonetheless stale can only answer slow_down to a poll
// that was early anyway; an on-time poll always goes to Redis.

const (
	// cacheShards splits the cache so polls of different requests rarely
	// wait on one lock.
	cacheShards = 64
	// DefaultPollCacheSize is how many pending requests an instance
	// remembers at most; beyond it, polls of the others go to Redis.
	DefaultPollCacheSize = 200_000
	// flushEvery is how often the intervals grown here are merged into
	// Redis.
	flushEvery = time.Second
	// sweepEvery is how often expired knowledge is dropped.
	sweepEvery = time.Minute
	// maxInterval is beyond any poll interval: a flush at now+maxInterval
	// shares every grown pace.
	maxInterval = 100 * 365 * 24 * time.Hour
)

// cached is what the cache knows of one pending request.
type cached struct {
	view ciba.PollView
	pace ciba.Pace
	// dirty is set when pace grew here and Redis has not heard it yet.
	dirty bool
	// shareAfter is when a grown pace may next be merged into Redis: one
	// interval after the last merge, so that a client polling early all
	// the time costs Redis a merge per interval, not one per poll.
	shareAfter time.Time
}

// cacheShard is one lock's share of the cache.
type cacheShard struct {
	mu sync.Mutex
	// gen counts the drops in the shard, so that a read made before a
	// drop is not remembered after it.
	gen uint64
	m   map[string]*cached
}

// pollCache is the instance's knowledge of pending requests.
type pollCache struct {
	seed     maphash.Seed
	perShard int
	// live is false while the change channel may be missing messages:
	// nothing is known or remembered then.
	live   atomic.Bool
	shards [cacheShards]cacheShard
}

func newPollCache(size int) *pollCache {
	c := &pollCache{seed: maphash.MakeSeed(), perShard: max(size/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cached)
	}
	c.live.Store(true)
	return c
}

func (c *pollCache) shard(id string) *cacheShard {
	return &c.shards[maphash.String(c.seed, id)%cacheShards]
}

// generation returns what remember needs to tell whether a drop happened
// in id's shard since.
func (c *pollCache) generation(id string) uint64 {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.gen
}

// remember records what a read of request id made at generation gen
// returned: its view and its pace after the read's poll. A request that is
// not pending is forgotten. Nothing is remembered if a drop happened in the
// shard since gen, the change channel is down, or the shard is full.
func (c *pollCache) remember(id string, gen uint64, r *ciba.AuthRequest, pace ciba.Pace, now time.Time) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r.Status != ciba.StatusPending || r.Expired(now) {
		c.dropLocked(sh, id)
		return
	}
	if sh.gen != gen || !c.live.Load() {
		return
	}
	if e, ok := sh.m[id]; ok {
		// Keep a pace grown here since the read, until it is flushed.
		e.pace = laterPace(pace, e.pace)
		return
	}
	if len(sh.m) >= c.perShard {
		return
	}
	sh.m[id] = &cached{
		view: ciba.PollView{ClientID: r.ClientID, Kind: r.Kind, Status: r.Status, ExpiresAt: r.ExpiresAt,
			Interval: r.Interval, CertThumbprint: r.CertThumbprint},
		pace: pace,
	}
}

// laterPace merges two pace states of one request: the longer interval and
// the later not-before. HoldUntil is a's: a hold is only ever ended by the
// instance that holds the poll, which writes the pace and forgets it here.
func laterPace(a, b ciba.Pace) ciba.Pace {
	a.Interval = max(a.Interval, b.Interval)
	if b.NotBefore.After(a.NotBefore) {
		a.NotBefore = b.NotBefore
	}
	return a
}

// drop forgets request id: it changed.
func (c *pollCache) drop(id string) {
	sh := c.shard(id)
	sh.mu.Lock()
	c.dropLocked(sh, id)
	sh.mu.Unlock()
}

func (c *pollCache) dropLocked(sh *cacheShard, id string) {
	sh.gen++
	delete(sh.m, id)
}

// setLive turns the cache on or off; either way it forgets everything, as
// changes may have been missed while the change channel was down.
func (c *pollCache) setLive(live bool) {
	c.live.Store(live)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		clear(sh.m)
		sh.mu.Unlock()
	}
}

// CachedPoll implements ciba.PollCache.
func (c *pollCache) CachedPoll(id string) (ciba.PollView, bool) {
	if !c.live.Load() {
		return ciba.PollView{}, false
	}
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[id]
	if !ok {
		return ciba.PollView{}, false
	}
	return e.view, true
}

// PaceEarly implements ciba.PollCache.
func (c *pollCache) PaceEarly(id string, rule ciba.PaceRule) bool {
	if !c.live.Load() {
		return false
	}
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[id]
	if !ok {
		return false
	}
	p := e.pace
	if !rule.Apply(&p) {
		return false
	}
	e.pace, e.dirty = p, true
	return true
}

// grown is a pace grown here, to be merged into Redis.
type grown struct {
	id   string
	pace ciba.Pace
}

// takeDirty returns the paces grown here that are due to be merged into
// Redis at now and marks them clean, appending to buf. A pace is due when
// it grew and the last merge of the request was an interval ago or more.
func (c *pollCache) takeDirty(buf []grown, now time.Time) []grown {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for id, e := range sh.m {
			if e.dirty && !now.Before(e.shareAfter) {
				e.dirty = false
				e.shareAfter = now.Add(e.pace.Interval)
				buf = append(buf, grown{id: id, pace: e.pace})
			}
		}
		sh.mu.Unlock()
	}
	return buf
}

// merged records the pace Redis holds after a flush merged the one grown
// here into it.
func (c *pollCache) merged(id string, pace ciba.Pace) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[id]; ok {
		e.pace = laterPace(e.pace, pace)
	}
}

// sweep forgets the requests expired at now.
func (c *pollCache) sweep(now time.Time) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for id, e := range sh.m {
			if e.view.Expired(now) {
				delete(sh.m, id)
			}
		}
		sh.mu.Unlock()
	}
}

// paceMergeScript merges the interval and not-before grown by one instance
// into the request's pace state (see laterPace), and returns the result.
// KEYS[1] request key; ARGV interval ms, not-before ms. Returns the pace as
// stored, or nil if the request is gone.
var paceMergeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local p = redis.call('HGET', KEYS[1], 'p')
local iv, nb, hu = 0, 0, 0
if p then
  local a, b, c = string.match(p, '^(%d+) (%d+) (%d+)$')
  if a then iv, nb, hu = tonumber(a), tonumber(b), tonumber(c) end
end
iv = math.max(iv, tonumber(ARGV[1]))
nb = math.max(nb, tonumber(ARGV[2]))
p = string.format('%d %d %d', iv, nb, hu)
redis.call('HSET', KEYS[1], 'p', p)
return p
`)

// flushPaces merges the paces grown here and due at now into Redis, in one
// pipeline, and returns buf for reuse. A request gone from Redis is
// forgotten here.
func (s *Store) flushPaces(ctx context.Context, buf []grown, now time.Time) []grown {
	buf = s.cache.takeDirty(buf[:0], now)
	if len(buf) == 0 {
		return buf
	}
	cmds := make([]*redis.Cmd, len(buf))
	_, _ = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, g := range buf {
			cmds[i] = paceMergeScript.EvalSha(ctx, p, []string{s.requestKey(g.id)},
				g.pace.Interval.Milliseconds(), g.pace.NotBefore.UnixMilli())
		}
		return nil
	})
	for i, g := range buf {
		res, err := cmds[i].Text()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			res, err = paceMergeScript.Run(ctx, s.c, []string{s.requestKey(g.id)},
				g.pace.Interval.Milliseconds(), g.pace.NotBefore.UnixMilli()).Text()
		}
		switch {
		case err == redis.Nil:
			s.cache.drop(g.id)
		case err != nil:
			// Redis is unreachable: the pace stays known here, and is
			// shared at the next flush.
			s.cache.markDirty(g.id)
		default:
			s.cache.merged(g.id, decodePace(res))
		}
	}
	return buf
}

// markDirty marks the pace of request id as still to be merged.
func (c *pollCache) markDirty(id string) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[id]; ok {
		e.dirty, e.shareAfter = true, time.Time{}
	}
}

// runCache flushes grown paces every flushEvery and sweeps expired
// knowledge every sweepEvery, until ctx is done; a last flush then shares
// what was grown since the previous one.
func (s *Store) runCache(ctx context.Context) {
	defer close(s.cacheDone)
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	var buf []grown
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			// The last flush shares every pace grown here, due or not.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			s.flushPaces(fctx, buf, time.Now().Add(maxInterval))
			cancel()
			return
		case now := <-flush.C:
			buf = s.flushPaces(ctx, buf, now)
			if now.Sub(lastSweep) >= sweepEvery {
				s.cache.sweep(now)
				lastSweep = now
			}
		}
	}
}
