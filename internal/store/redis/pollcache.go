package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// The poll cache is what this instance knows of the pending requests it has
// polled: their poll view and pace as the poll script last returned them
// (Store.Poll). A poll of a request known here is paced here, without a
// round trip to Redis, and an interval grown here is merged into Redis by a
// flusher (within flushEvery, then after spacings that double from
// shareSpacing), so the other instances see it too.
//
// Knowledge is dropped when it may be stale: when any instance changes or
// deletes the request (the change channel, pubsub.go), when this instance
// writes its pace, and all of it while the change channel is down. A read
// that raced with a drop is not remembered (the shard's generation).
//
// The instance vouches for its knowledge only while it hears its own
// heartbeats on the change channel: every heartbeatEvery it publishes its
// clock there, and Redis delivers a channel's messages in the order it ran
// them, so a heartbeat sent at t and heard means every change made before t
// was heard too. An on-time poll is answered here only when the last
// heartbeat heard was sent less than freshFor ago; otherwise it goes to
// Redis. An early poll is answered slow_down here whatever the heartbeats
// say: knowledge stale by then can only turn an early poll of a request
// decided a moment ago into slow_down, which only tells the client to wait.

const (
	// cacheShards splits the cache so polls of different requests rarely
	// wait on one lock.
	cacheShards = 64
	// DefaultPollCacheSize is how many pending requests an instance
	// remembers at most; beyond it, polls of the others go to Redis.
	DefaultPollCacheSize = 200_000
	// flushEvery is how often the paces set here are merged into Redis.
	flushEvery = time.Second
	// shareSpacing is the least time between the first two merges of one
	// request's pace; each later spacing doubles, so a client polling early
	// all the time costs Redis a handful of merges over the request's
	// life, not one per poll. The first merge tells the other instances
	// that the client was told to slow down; later ones only how much.
	shareSpacing = 10 * time.Second
	// heartbeatEvery is how often the instance publishes its heartbeat.
	heartbeatEvery = 500 * time.Millisecond
	// freshFor is how recent the last heartbeat heard must be for on-time
	// polls to be answered here.
	freshFor = 2 * time.Second
	// sweepEvery is how often expired knowledge is dropped.
	sweepEvery = time.Minute
	// maxInterval is beyond any poll interval: a flush at now+maxInterval
	// shares every grown pace.
	maxInterval = 100 * 365 * 24 * time.Hour
)

// cached is what the cache knows of one pending CIBA request. It holds no
// pointer: the id is kept inline, the client id and certificate thumbprint
// as indexes into the cache's names, times as Unix nanoseconds (0 for the
// zero time). A shard's entries are one slice and its index a map of
// fixed-size keys, so that however many requests are known, the garbage
// collector has nothing in them to mark.
type cached struct {
	id     [maxCachedID]byte
	idLen  uint8
	used   bool
	client uint32 // names index
	cert   uint32 // names index; 0 for no certificate binding
	// expires and interval are the request's ExpiresAt and Interval.
	expires  int64
	interval time.Duration
	// The pace as known here: ciba.Pace's three fields.
	paceInterval         time.Duration
	notBefore, holdUntil int64
	// shareAfter is when the pace may next be merged into Redis, and
	// spacing the wait after that merge (shareSpacing, doubling).
	shareAfter int64
	spacing    time.Duration
	// dirty is set when the interval grew here and Redis has not heard it.
	dirty bool
}

// maxCachedID bounds the ids the cache keeps (cibaproxy's are 32 bytes);
// a request with a longer id is simply not remembered.
const maxCachedID = 64

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (e *cached) idString() string { return string(e.id[:e.idLen]) }

func (e *cached) is(id string) bool { return e.used && string(e.id[:e.idLen]) == id }

func (e *cached) pace() ciba.Pace {
	return ciba.Pace{Interval: e.paceInterval, NotBefore: fromUnixNano(e.notBefore), HoldUntil: fromUnixNano(e.holdUntil)}
}

func (e *cached) setPace(p ciba.Pace) {
	e.paceInterval, e.notBefore, e.holdUntil = p.Interval, unixNano(p.NotBefore), unixNano(p.HoldUntil)
}

// slotKey is a 128-bit hash of a request id under the cache's seeds; an
// entry found by it is used only if the id it holds is the one looked up.
type slotKey [2]uint64

// cacheShard is one lock's share of the cache.
type cacheShard struct {
	mu sync.Mutex
	// gen counts the drops in the shard, so that a read made before a
	// drop is not remembered after it.
	gen   uint64
	index map[slotKey]int32
	slots []cached
	free  []int32
}

// find returns the entry of id, or nil. The caller holds sh.mu.
func (sh *cacheShard) find(k slotKey, id string) *cached {
	i, ok := sh.index[k]
	if !ok {
		return nil
	}
	if e := &sh.slots[i]; e.is(id) {
		return e
	}
	return nil
}

// add stores e under k. The caller holds sh.mu.
func (sh *cacheShard) add(k slotKey, e cached) {
	e.used = true
	if n := len(sh.free); n > 0 {
		i := sh.free[n-1]
		sh.free = sh.free[:n-1]
		sh.slots[i] = e
		sh.index[k] = i
		return
	}
	sh.slots = append(sh.slots, e)
	sh.index[k] = int32(len(sh.slots) - 1)
}

// remove forgets the entry of id, if any. The caller holds sh.mu.
func (sh *cacheShard) remove(k slotKey, id string) {
	i, ok := sh.index[k]
	if !ok || !sh.slots[i].is(id) {
		return
	}
	delete(sh.index, k)
	sh.slots[i] = cached{}
	sh.free = append(sh.free, i)
}

// reset forgets everything. The caller holds sh.mu.
func (sh *cacheShard) reset() {
	clear(sh.index)
	sh.slots = sh.slots[:0]
	sh.free = sh.free[:0]
}

// maxNames bounds the interned client ids and certificate thumbprints:
// clients are configured, so more than this many distinct ones means
// something odd is stored, and its requests are simply not remembered.
const maxNames = 10_000

// pollCache is the instance's knowledge of pending requests.
type pollCache struct {
	seed, seed2 maphash.Seed
	perShard    int
	// live is false while the change channel may be missing messages:
	// nothing is known or remembered then.
	live atomic.Bool
	// heardAt is when the last heartbeat heard was sent (Unix ns; 0 for
	// none since the channel was last up).
	heardAt atomic.Int64
	shards  [cacheShards]cacheShard
	// names interns the client ids and certificate thumbprints of the
	// requests remembered; names[0] is "".
	namesMu sync.RWMutex
	names   []string
	nameIdx map[string]uint32
}

func newPollCache(size int) *pollCache {
	c := &pollCache{seed: maphash.MakeSeed(), seed2: maphash.MakeSeed(), perShard: max(size/cacheShards, 1),
		names: []string{""}, nameIdx: map[string]uint32{"": 0}}
	for i := range c.shards {
		c.shards[i].index = make(map[slotKey]int32)
	}
	c.live.Store(true)
	return c
}

// key returns the key of id and its shard.
func (c *pollCache) key(id string) (slotKey, *cacheShard) {
	k := slotKey{maphash.String(c.seed, id), maphash.String(c.seed2, id)}
	return k, &c.shards[k[0]%cacheShards]
}

// intern returns the index of name, or false when the names are full.
func (c *pollCache) intern(name string) (uint32, bool) {
	c.namesMu.RLock()
	i, ok := c.nameIdx[name]
	c.namesMu.RUnlock()
	if ok {
		return i, true
	}
	c.namesMu.Lock()
	defer c.namesMu.Unlock()
	if i, ok := c.nameIdx[name]; ok {
		return i, true
	}
	if len(c.names) >= maxNames {
		return 0, false
	}
	i = uint32(len(c.names))
	c.names = append(c.names, name)
	c.nameIdx[name] = i
	return i, true
}

// view returns the poll view of e.
func (c *pollCache) view(e *cached) ciba.PollView {
	c.namesMu.RLock()
	client, cert := c.names[e.client], c.names[e.cert]
	c.namesMu.RUnlock()
	return ciba.PollView{ClientID: client, Kind: ciba.KindCIBA, Status: ciba.StatusPending,
		ExpiresAt: fromUnixNano(e.expires), Interval: e.interval, CertThumbprint: cert}
}

// generation returns what remember needs to tell whether a drop happened
// in id's shard since.
func (c *pollCache) generation(id string) uint64 {
	_, sh := c.key(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.gen
}

// remember records what a read of request id made at generation gen
// returned: its view and its pace after the read's poll. A request that is
// not a pending CIBA request is forgotten (the CIBA poll path is the only
// one that asks). Nothing is remembered if a drop happened in the shard
// since gen, the change channel is down, the shard is full, or the id or
// names do not fit.
func (c *pollCache) remember(id string, gen uint64, r *ciba.AuthRequest, pace ciba.Pace, now time.Time) {
	if r.Kind != ciba.KindCIBA || r.DPoPJKT != "" {
		// Never remembered: a request bound to a DPoP key is rare, and
		// its key would not fit the names (cached.view has none).
		return
	}
	k, sh := c.key(id)
	if r.Status != ciba.StatusPending || r.Expired(now) {
		sh.mu.Lock()
		sh.gen++
		sh.remove(k, id)
		sh.mu.Unlock()
		return
	}
	client, ok1 := c.intern(r.ClientID)
	cert, ok2 := c.intern(r.CertThumbprint)
	if !ok1 || !ok2 || len(id) > maxCachedID {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen || !c.live.Load() {
		return
	}
	if e := sh.find(k, id); e != nil {
		// Keep a pace grown here since the read, until it is flushed.
		e.setPace(laterPace(pace, e.pace()))
		return
	}
	if len(sh.index) >= c.perShard {
		return
	}
	e := cached{idLen: uint8(len(id)), client: client, cert: cert, expires: unixNano(r.ExpiresAt), interval: r.Interval}
	copy(e.id[:], id)
	e.setPace(pace)
	sh.add(k, e)
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
	k, sh := c.key(id)
	sh.mu.Lock()
	sh.gen++
	sh.remove(k, id)
	sh.mu.Unlock()
}

// setLive turns the cache on or off; either way it forgets everything, as
// changes may have been missed while the change channel was down, and waits
// for a heartbeat before it vouches for what it learns again.
func (c *pollCache) setLive(live bool) {
	c.live.Store(live)
	c.heardAt.Store(0)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		sh.reset()
		sh.mu.Unlock()
	}
}

// heard records a heartbeat of this instance, sent at sent, heard back.
func (c *pollCache) heard(sent time.Time) {
	ns := sent.UnixNano()
	for {
		old := c.heardAt.Load()
		if ns <= old || c.heardAt.CompareAndSwap(old, ns) {
			return
		}
	}
}

// fresh reports whether every change made until freshFor before now has
// been heard.
func (c *pollCache) fresh(now time.Time) bool {
	at := c.heardAt.Load()
	return at != 0 && now.UnixNano()-at <= int64(freshFor)
}

// CachedPoll returns the poll view of request id as this instance last
// read it; ok is false when it has none. It does no I/O.
func (c *pollCache) CachedPoll(id string) (ciba.PollView, bool) {
	if !c.live.Load() {
		return ciba.PollView{}, false
	}
	k, sh := c.key(id)
	sh.mu.Lock()
	e := sh.find(k, id)
	if e == nil {
		sh.mu.Unlock()
		return ciba.PollView{}, false
	}
	known := *e
	sh.mu.Unlock()
	return c.view(&known), true
}

// PaceCached applies rule to the pace of pending request id as this
// instance knows it and reports whether the poll was early (slow_down), if
// it can answer for the request, with the interval after the poll; answered
// is false when it cannot, and nothing is changed. It does no I/O. An early
// poll is answered whenever the request is known; an on-time one only if
// the knowledge is fresh and the poll is not to be held.
func (c *pollCache) PaceCached(id string, rule ciba.PaceRule) (slow, answered bool, interval time.Duration) {
	if !c.live.Load() {
		return false, false, 0
	}
	k, sh := c.key(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.find(k, id)
	if e == nil {
		return false, false, 0
	}
	p := e.pace()
	slow = rule.Apply(&p)
	if !slow && (rule.Hold > 0 || !c.fresh(rule.Now)) {
		return false, false, 0
	}
	// Only a grown interval is shared: an on-time poll's next due time
	// matters to the other instances only if the client moves to them
	// early, and they then pace it by what they know.
	e.setPace(p)
	e.dirty = e.dirty || slow
	return slow, true, p.Interval
}

// grown is a pace set here, to be merged into Redis.
type grown struct {
	id   string
	pace ciba.Pace
}

// takeDirty returns the paces set here that are due to be merged into
// Redis at now and marks them clean, appending to buf. A pace is due when
// it changed and the spacing after its last merge has passed (shareSpacing,
// doubling at each merge).
func (c *pollCache) takeDirty(buf []grown, now time.Time) []grown {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			e := &sh.slots[j]
			if e.used && e.dirty && now.UnixNano() >= e.shareAfter {
				e.dirty = false
				e.spacing = max(2*e.spacing, shareSpacing)
				e.shareAfter = now.Add(e.spacing).UnixNano()
				buf = append(buf, grown{id: e.idString(), pace: e.pace()})
			}
		}
		sh.mu.Unlock()
	}
	return buf
}

// merged records the pace Redis holds after a flush merged the one grown
// here into it.
func (c *pollCache) merged(id string, pace ciba.Pace) {
	k, sh := c.key(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.find(k, id); e != nil {
		e.setPace(laterPace(e.pace(), pace))
	}
}

// sweep forgets the requests expired at now.
func (c *pollCache) sweep(now time.Time) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for j := range sh.slots {
			if e := &sh.slots[j]; e.used && now.UnixNano() >= e.expires {
				sh.remove(slotKey{maphash.String(c.seed, e.idString()), maphash.String(c.seed2, e.idString())}, e.idString())
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
	k, sh := c.key(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.find(k, id); e != nil {
		e.dirty, e.shareAfter = true, 0
	}
}

// runCache publishes the instance's heartbeat every heartbeatEvery, flushes
// the paces set here every flushEvery and sweeps expired knowledge every
// sweepEvery, until ctx is done; a last flush then shares every pace set
// since the previous one.
func (s *Store) runCache(ctx context.Context) {
	defer close(s.cacheDone)
	beat := time.NewTicker(heartbeatEvery)
	defer beat.Stop()
	flush := time.NewTicker(flushEvery)
	defer flush.Stop()
	var buf []grown
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			s.flushPaces(fctx, buf, time.Now().Add(maxInterval))
			cancel()
			return
		case <-beat.C:
			s.beat(ctx)
		case now := <-flush.C:
			buf = s.flushPaces(ctx, buf, now)
			if now.Sub(lastSweep) >= sweepEvery {
				s.cache.sweep(now)
				lastSweep = now
			}
		}
	}
}

// heartbeatPrefix starts every heartbeat on the change channel; no request
// id has a space.
const heartbeatPrefix = "heartbeat "

// newHeartbeatPrefix returns the start of this instance's heartbeats: the
// prefix and a random instance id, so that it trusts only its own clock.
func newHeartbeatPrefix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return heartbeatPrefix + hex.EncodeToString(b) + " "
}

// beat publishes a heartbeat carrying the time it is sent.
func (s *Store) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, heartbeatEvery)
	defer cancel()
	// A heartbeat that fails is simply not heard: the knowledge ages.
	_ = s.c.Publish(ctx, s.channel, s.heartbeat+strconv.FormatInt(time.Now().UnixNano(), 10)).Err()
}

// hearHeartbeat handles a message of the change channel that is a
// heartbeat, and reports whether it was one.
func (s *Store) hearHeartbeat(payload string) bool {
	if !strings.HasPrefix(payload, heartbeatPrefix) {
		return false
	}
	if rest, ok := strings.CutPrefix(payload, s.heartbeat); ok && s.cache != nil {
		if ns, err := strconv.ParseInt(rest, 10, 64); err == nil {
			s.cache.heard(time.Unix(0, ns))
		}
	}
	return true
}
