package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

// rule is the pace rule of a poll at now: 5 s interval and step, 0.5 s
// tolerance, no hold.
func rule(now time.Time) ciba.PaceRule {
	return ciba.PaceRule{Now: now, Tolerance: 500 * time.Millisecond, Step: 5 * time.Second, Initial: 5 * time.Second}
}

// storedPace is the pace state of request id as Redis holds it.
func storedPace(t *testing.T, s *Store, id string) ciba.Pace {
	t.Helper()
	p, err := s.c.HGet(t.Context(), s.requestKey(id), "p").Result()
	if err != nil {
		t.Fatalf("read the stored pace: %v", err)
	}
	return decodePace(p)
}

// eventually waits (bounded) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wakeTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wakeTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEarlyPollsAreAnsweredLocallyAndShared follows one request polled on
// instance a: the poll script's answer is remembered, an early poll is
// slow_down by a's knowledge without touching Redis, an on-time one is
// left to Redis, and the flush shares the grown interval with instance b.
func TestEarlyPollsAreAnsweredLocallyAndShared(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	a, b := open(t, srv.Addr(), prefix), open(t, srv.Addr(), prefix)
	ctx := t.Context()
	r := cibaRequest()
	if err := a.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.cachedPoll(r.ID); ok {
		t.Fatal("a request never polled is known")
	}
	start := time.UnixMilli(time.Now().UnixMilli())
	if _, slow, err := a.readAndPace(ctx, r.ID, rule(start)); err != nil || slow {
		t.Fatalf("first poll: slow %v, %v", slow, err)
	}
	v, ok := a.cachedPoll(r.ID)
	want := ciba.PollView{ClientID: r.ClientID, Kind: r.Kind, Status: r.Status, ExpiresAt: r.ExpiresAt,
		Interval: r.Interval, CertThumbprint: r.CertThumbprint}
	if !ok || v.ClientID != want.ClientID || v.Kind != want.Kind || v.Status != want.Status ||
		!v.ExpiresAt.Equal(want.ExpiresAt) || v.Interval != want.Interval || v.CertThumbprint != want.CertThumbprint {
		t.Fatalf("CachedPoll after the first poll = %+v, %v; want %+v", v, ok, want)
	}
	if _, ok := b.cachedPoll(r.ID); ok {
		t.Fatal("instance b knows a request it never polled")
	}
	before := storedPace(t, a, r.ID)

	// Early by a's knowledge: answered here, Redis untouched.
	if slow, answered := a.paceCached(r.ID, rule(start.Add(100*time.Millisecond))); !slow || !answered {
		t.Fatalf("a poll 100 ms after the first: slow %v, answered %v; want slow_down from the cache", slow, answered)
	}
	if got := storedPace(t, a, r.ID); got != before {
		t.Fatalf("an early poll answered locally wrote the pace: %+v, was %+v", got, before)
	}
	// On time an hour later, when the last heartbeat heard is an hour
	// old by the poll's clock: not for the cache to answer.
	if _, answered := a.paceCached(r.ID, rule(start.Add(time.Hour))); answered {
		t.Fatal("an on-time poll was answered from knowledge not vouched for")
	}
	// Without the flush, b would find the poll at +6 s on time (the
	// first poll set not-before to +5 s). After it, a's early poll at
	// +0.1 s has grown the interval to 10 s: not before +10.1 s.
	a.flushPaces(ctx, nil, time.Now())
	wantPace := ciba.Pace{Interval: 10 * time.Second, NotBefore: start.Add(10100 * time.Millisecond)}
	if got := storedPace(t, a, r.ID); got.Interval != wantPace.Interval || !got.NotBefore.Equal(wantPace.NotBefore) {
		t.Fatalf("after the flush Redis holds %+v, want %+v", got, wantPace)
	}
	if _, slow, err := b.readAndPace(ctx, r.ID, rule(start.Add(6*time.Second))); err != nil || !slow {
		t.Fatalf("poll on b at +6 s after the flush: slow %v, %v; want slow_down", slow, err)
	}
	// A flush with nothing grown sends nothing and changes nothing.
	after := storedPace(t, a, r.ID)
	a.flushPaces(ctx, nil, time.Now())
	if got := storedPace(t, a, r.ID); got != after {
		t.Fatalf("an empty flush changed the pace: %+v, was %+v", got, after)
	}
}

// TestPollCacheForgetsChangedRequests: a change of the request through
// either instance, a deletion, a pace written by the instance itself, and a
// read of a request no longer pending all make the instance forget it.
func TestPollCacheForgetsChangedRequests(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	a, b := open(t, srv.Addr(), prefix), open(t, srv.Addr(), prefix)
	ctx := t.Context()
	known := func(s *Store, id string) bool { _, ok := s.cachedPoll(id); return ok }
	poll := func(s *Store, id string) {
		t.Helper()
		if _, _, err := s.readAndPace(ctx, id, rule(time.Now())); err != nil {
			t.Fatal(err)
		}
		if !known(s, id) {
			t.Fatal("a pending request polled is not known")
		}
	}
	newRequest := func() *ciba.AuthRequest {
		r := cibaRequest()
		if err := a.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	deny := func(cur *ciba.AuthRequest) error { return cur.Deny(time.Now(), "no") }

	r := newRequest()
	poll(a, r.ID)
	if _, err := b.UpdateRequest(ctx, r.ID, deny); err != nil {
		t.Fatal(err)
	}
	eventually(t, "instance a forgets a request changed through b", func() bool { return !known(a, r.ID) })
	// A read of the request no longer pending is not remembered.
	if _, _, err := a.readAndPace(ctx, r.ID, rule(time.Now())); err != nil || known(a, r.ID) {
		t.Fatalf("a denied request read: %v, known %v", err, known(a, r.ID))
	}

	r = newRequest()
	poll(a, r.ID)
	if _, err := a.UpdateRequest(ctx, r.ID, func(*ciba.AuthRequest) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if known(a, r.ID) {
		t.Fatal("a request changed through the instance itself is still known right after")
	}

	r = newRequest()
	poll(a, r.ID)
	if _, err := a.UpdatePace(ctx, r.ID, func(p *ciba.Pace) error { p.NotBefore = time.Time{}; return nil }); err != nil {
		t.Fatal(err)
	}
	if known(a, r.ID) {
		t.Fatal("a request whose pace the instance wrote is still known")
	}

	poll(a, r.ID)
	if err := b.DeleteRequest(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "instance a forgets a request deleted through b", func() bool { return !known(a, r.ID) })
}

// TestPollCacheFlushOfADeletedRequest: a pace grown here for a request
// deleted meanwhile is not written back (the request stays gone) and the
// request is forgotten.
func TestPollCacheFlushOfADeletedRequest(t *testing.T) {
	a, r := storeWithRequest(t, redistest.Start(t))
	ctx := t.Context()
	now := time.Now()
	if _, _, err := a.readAndPace(ctx, r.ID, rule(now)); err != nil {
		t.Fatal(err)
	}
	if slow, answered := a.paceCached(r.ID, rule(now.Add(time.Millisecond))); !slow || !answered {
		t.Fatal("an early poll was not answered")
	}
	// Delete behind the cache's back, as a key expiry would.
	if err := a.c.Del(ctx, a.requestKey(r.ID)).Err(); err != nil {
		t.Fatal(err)
	}
	a.flushPaces(ctx, nil, time.Now())
	if n, err := a.c.Exists(ctx, a.requestKey(r.ID)).Result(); err != nil || n != 0 {
		t.Fatalf("the flush recreated the deleted request's key: %d, %v", n, err)
	}
	if _, ok := a.cachedPoll(r.ID); ok {
		t.Fatal("the deleted request is still known after the flush")
	}
}

// TestPollCacheLearnsNothingWhileChangesMayBeMissed: while the change
// channel is down, everything is forgotten and nothing is learnt; once it
// is back, polls are remembered again.
func TestPollCacheLearnsNothingWhileChangesMayBeMissed(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPersistence())
	a, r := storeWithRequest(t, srv)
	ctx := t.Context()
	if _, _, err := a.readAndPace(ctx, r.ID, rule(time.Now())); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	eventually(t, "the request is forgotten when the change channel breaks", func() bool {
		_, ok := a.cachedPoll(r.ID)
		return !ok
	})
	srv.Restart()
	eventually(t, "a poll is remembered again after the change channel is back", func() bool {
		if _, _, err := a.readAndPace(ctx, r.ID, rule(time.Now())); err != nil {
			return false
		}
		_, ok := a.cachedPoll(r.ID)
		return ok
	})
}

// TestPollCacheOff: a negative size turns the cache off.
func TestPollCacheOff(t *testing.T) {
	srv := redistest.Start(t)
	s, err := Open(t.Context(), Config{Addrs: []string{srv.Addr()}, KeyPrefix: newPrefix(), PollCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := cibaRequest()
	if err := s.CreateRequest(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, _, err := s.readAndPace(t.Context(), r.ID, rule(now)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.cachedPoll(r.ID); ok {
		t.Fatal("the cache knows a request while off")
	}
	if _, answered := s.paceCached(r.ID, rule(now.Add(time.Millisecond))); answered {
		t.Fatal("the cache answers while off")
	}
}

// cibaRequest is storetest's request as a CIBA one (storetest's is a
// device request, which the cache does not keep).
func cibaRequest() *ciba.AuthRequest {
	r := storetest.NewRequest()
	r.Kind = ciba.KindCIBA
	return r
}

// storeWithRequest opens a store on srv holding one pending CIBA request.
func storeWithRequest(t *testing.T, srv *redistest.Server) (*Store, *ciba.AuthRequest) {
	t.Helper()
	s := open(t, srv.Addr(), newPrefix())
	r := cibaRequest()
	if err := s.CreateRequest(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	return s, r
}

// pending is a pending request for the cache's unit tests.
func pending(id string, now time.Time) *ciba.AuthRequest {
	return &ciba.AuthRequest{ID: id, ClientID: "c", Kind: ciba.KindCIBA, Status: ciba.StatusPending,
		ExpiresAt: now.Add(time.Minute), Interval: 5 * time.Second}
}

func TestPollCacheDoesNotRememberAReadOlderThanADrop(t *testing.T) {
	c := newPollCache(100)
	now := time.Now()
	gen := c.generation("x")
	c.drop("x") // a change message arrived while the read was on its way
	c.remember("x", gen, pending("x", now), ciba.Pace{}, now)
	if _, ok := c.CachedPoll("x"); ok {
		t.Fatal("a read older than a drop was remembered")
	}
	c.remember("x", c.generation("x"), pending("x", now), ciba.Pace{}, now)
	if _, ok := c.CachedPoll("x"); !ok {
		t.Fatal("a read after the drop was not remembered")
	}
}

// TestPollCacheKeepsOnlyCIBARequests: the CIBA poll path is the only one
// that asks, so device requests are not kept.
func TestPollCacheKeepsOnlyCIBARequests(t *testing.T) {
	c := newPollCache(100)
	now := time.Now()
	r := pending("d", now)
	r.Kind = ciba.KindDevice
	c.remember("d", c.generation("d"), r, ciba.Pace{}, now)
	if _, ok := c.CachedPoll("d"); ok {
		t.Fatal("a device request was kept")
	}
	c.remember("c", c.generation("c"), pending("c", now), ciba.Pace{}, now)
	v, ok := c.CachedPoll("c")
	if !ok || v.Kind != ciba.KindCIBA || v.Status != ciba.StatusPending || v.ClientID != "c" || !v.ExpiresAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("CachedPoll = %+v, %v", v, ok)
	}
}

func TestPollCacheIsBounded(t *testing.T) {
	c := newPollCache(cacheShards) // one per shard
	now := time.Now()
	for i := range 10 * cacheShards {
		id := fmt.Sprint("id-", i)
		c.remember(id, c.generation(id), pending(id, now), ciba.Pace{}, now)
	}
	n := 0
	for i := range c.shards {
		n += len(c.shards[i].index)
	}
	if n > cacheShards {
		t.Fatalf("%d requests remembered, want at most %d", n, cacheShards)
	}
}

func TestPollCacheExpiry(t *testing.T) {
	c := newPollCache(100)
	now := time.Now()
	old := pending("old", now)
	old.ExpiresAt = now.Add(-time.Second)
	c.remember("old", c.generation("old"), old, ciba.Pace{}, now)
	if _, ok := c.CachedPoll("old"); ok {
		t.Fatal("an expired request was remembered")
	}
	c.remember("soon", c.generation("soon"), pending("soon", now), ciba.Pace{}, now)
	c.sweep(now.Add(2 * time.Minute))
	if _, ok := c.CachedPoll("soon"); ok {
		t.Fatal("the sweep kept a request expired since")
	}
}

// TestPollCacheKeepsAPaceGrownSinceTheRead: a read that lands after early
// polls were answered here does not lose the interval they grew.
func TestPollCacheKeepsAPaceGrownSinceTheRead(t *testing.T) {
	c := newPollCache(100)
	now := time.UnixMilli(time.Now().UnixMilli())
	first := ciba.Pace{Interval: 5 * time.Second, NotBefore: now.Add(5 * time.Second)}
	c.remember("x", c.generation("x"), pending("x", now), first, now)
	if slow, answered, _ := c.PaceCached("x", rule(now.Add(time.Second))); !slow || !answered {
		t.Fatal("not early")
	}
	c.remember("x", c.generation("x"), pending("x", now), first, now) // a read sent before the early poll
	got := c.takeDirty(nil, now)
	if len(got) != 1 || got[0].pace.Interval != 10*time.Second || !got[0].pace.NotBefore.Equal(now.Add(11*time.Second)) {
		t.Fatalf("grown paces = %+v; want interval 10 s, not before +11 s", got)
	}
	if again := c.takeDirty(nil, now); len(again) != 0 {
		t.Fatalf("a pace taken is still dirty: %+v", again)
	}
	// Grown again: shared shareSpacing (10 s) after the first merge, not
	// before.
	if slow, answered, _ := c.PaceCached("x", rule(now.Add(2*time.Second))); !slow || !answered {
		t.Fatal("not early")
	}
	if early := c.takeDirty(nil, now.Add(9*time.Second)); len(early) != 0 {
		t.Fatalf("a pace shared again before an interval passed: %+v", early)
	}
	if due := c.takeDirty(nil, now.Add(10*time.Second)); len(due) != 1 || due[0].pace.Interval != 15*time.Second {
		t.Fatalf("a pace due 10 s after the first merge: %+v", due)
	}
	// The spacing doubles: the next merge 20 s after this one.
	if slow, answered, _ := c.PaceCached("x", rule(now.Add(11*time.Second))); !slow || !answered {
		t.Fatal("not early")
	}
	if early := c.takeDirty(nil, now.Add(29*time.Second)); len(early) != 0 {
		t.Fatalf("a pace shared again 19 s after the second merge: %+v", early)
	}
	if due := c.takeDirty(nil, now.Add(30*time.Second)); len(due) != 1 {
		t.Fatalf("a pace due 20 s after the second merge: %+v", due)
	}
}

// TestOnTimePollsAreAnsweredLocallyWhileHeartbeatsAreHeard: once the
// instance hears its own heartbeats, an on-time poll of a request it knows
// is authorization_pending here and its pace stays the instance's (only a
// grown interval is merged); a poll to be held (long polling) still goes
// to Redis.
func TestOnTimePollsAreAnsweredLocallyWhileHeartbeatsAreHeard(t *testing.T) {
	a := open(t, redistest.Start(t).Addr(), newPrefix())
	ctx := t.Context()
	// A 10 ms interval, so that the next poll is on time within the test.
	r := cibaRequest()
	r.Interval = 10 * time.Millisecond
	if err := a.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the instance hears its own heartbeat", func() bool { return a.cache.fresh(time.Now()) })
	short := func(now time.Time) ciba.PaceRule {
		return ciba.PaceRule{Now: now, Step: 5 * time.Second, Initial: 10 * time.Millisecond}
	}
	if _, slow, err := a.readAndPace(ctx, r.ID, short(time.Now())); err != nil || slow {
		t.Fatalf("first poll: slow %v, %v", slow, err)
	}
	before := storedPace(t, a, r.ID)
	time.Sleep(20 * time.Millisecond)
	held := short(time.Now())
	held.Hold = time.Second
	if _, answered := a.paceCached(r.ID, held); answered {
		t.Fatal("a poll to be held was answered from the cache")
	}
	now := time.UnixMilli(time.Now().UnixMilli())
	if slow, answered := a.paceCached(r.ID, short(now)); slow || !answered {
		t.Fatalf("an on-time poll: slow %v, answered %v; want authorization_pending from the cache", slow, answered)
	}
	if got := storedPace(t, a, r.ID); got != before {
		t.Fatalf("an on-time poll answered locally wrote the pace: %+v, was %+v", got, before)
	}
	// Only a grown interval is shared: the flush leaves Redis as it was.
	a.flushPaces(ctx, nil, time.Now())
	if got := storedPace(t, a, r.ID); got != before {
		t.Fatalf("an on-time poll's pace was merged: %+v, was %+v", got, before)
	}
	// The pace set by the on-time poll is the instance's: a poll 1 ms
	// later is early.
	if slow, answered := a.paceCached(r.ID, short(now.Add(time.Millisecond))); !slow || !answered {
		t.Fatalf("a poll 1 ms after an on-time one: slow %v, answered %v; want slow_down", slow, answered)
	}
}

// TestOnlyOwnHeartbeatsVouch: another instance's heartbeat (another clock)
// does not make this instance's knowledge fresh; its own does.
func TestOnlyOwnHeartbeatsVouch(t *testing.T) {
	srv := redistest.Start(t)
	prefix := newPrefix()
	a, b := open(t, srv.Addr(), prefix), open(t, srv.Addr(), prefix)
	a.cache.setLive(true) // forgets the heartbeats heard so far
	sent := time.Now()
	if !a.hearHeartbeat(b.heartbeat + strconv.FormatInt(sent.UnixNano(), 10)) {
		t.Fatal("b's heartbeat was not taken for a heartbeat")
	}
	if a.cache.fresh(sent) {
		t.Fatal("b's heartbeat vouched for a's knowledge")
	}
	if !a.hearHeartbeat(a.heartbeat + strconv.FormatInt(sent.UnixNano(), 10)) {
		t.Fatal("a's heartbeat was not taken for a heartbeat")
	}
	if !a.cache.fresh(sent.Add(freshFor)) || a.cache.fresh(sent.Add(freshFor+time.Millisecond)) {
		t.Fatalf("a heartbeat sent at %v vouches until %v", sent, sent.Add(freshFor))
	}
	if a.hearHeartbeat("an-auth-req-id") {
		t.Fatal("a request id was taken for a heartbeat")
	}
}

// TestPollCacheEntries: the entries hold the request's view (certificate
// binding included), freed slots are reused, an id too long to keep is not
// remembered, and an entry is found only by the id it holds.
func TestPollCacheEntries(t *testing.T) {
	c := newPollCache(100)
	now := time.Now()
	a := pending("a", now)
	a.CertThumbprint = "cert-a"
	c.remember("a", c.generation("a"), a, ciba.Pace{}, now)
	if v, ok := c.CachedPoll("a"); !ok || v.CertThumbprint != "cert-a" || v.ClientID != "c" {
		t.Fatalf("CachedPoll(a) = %+v, %v", v, ok)
	}
	ka, sh := c.key("a")
	slot := sh.index[ka]
	c.drop("a")
	if _, ok := c.CachedPoll("a"); ok {
		t.Fatal("a dropped request is still known")
	}
	// The next request of the shard takes the freed slot.
	var b string
	for i := range 10_000 {
		id := fmt.Sprint("b-", i)
		if _, s := c.key(id); s == sh {
			b = id
			break
		}
	}
	c.remember(b, c.generation(b), pending(b, now), ciba.Pace{}, now)
	kb, _ := c.key(b)
	if got := sh.index[kb]; got != slot {
		t.Fatalf("the new request took slot %d, want the freed %d", got, slot)
	}
	if v, ok := c.CachedPoll(b); !ok || v.CertThumbprint != "" {
		t.Fatalf("CachedPoll(b) = %+v, %v; want no certificate binding", v, ok)
	}
	// Found only by the id it holds: b's entry under a's key is not a's.
	sh.index[ka] = slot
	if _, ok := c.CachedPoll("a"); ok {
		t.Fatal("an entry was found by another id's key")
	}
	long := strings.Repeat("x", maxCachedID+1)
	c.remember(long, c.generation(long), pending(long, now), ciba.Pace{}, now)
	if _, ok := c.CachedPoll(long); ok {
		t.Fatal("an id longer than maxCachedID was remembered")
	}
}

// TestPollFromTheCache: Store.Poll answers an early poll of a request this
// instance knows from its knowledge (Redis keeps the pace it had), checks
// client, grant and certificate first (a foreign poll paces nothing, here
// or in Redis), and goes to Redis for a poll that asks for the current
// state (a ping client's).
func TestPollFromTheCache(t *testing.T) {
	a, r := storeWithRequest(t, redistest.Start(t))
	ctx := t.Context()
	now := time.UnixMilli(time.Now().UnixMilli())
	q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: rule(now)}
	if res, err := a.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollPending {
		t.Fatalf("first poll: %+v, %v", res, err)
	}
	if _, ok := a.cachedPoll(r.ID); !ok {
		t.Fatal("the first poll's request is not remembered")
	}
	before := storedPace(t, a, r.ID)
	known := func() ciba.Pace {
		k, sh := a.cache.key(r.ID)
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if e := sh.find(k, r.ID); e != nil {
			return e.pace()
		}
		t.Fatal("the request is no longer known")
		return ciba.Pace{}
	}
	knownBefore := known()
	for _, foreign := range []ciba.PollQuery{
		{ClientID: "client-2", Kind: r.Kind, Cert: r.CertThumbprint},
		{ClientID: r.ClientID, Kind: ciba.KindDevice, Cert: r.CertThumbprint},
		{ClientID: r.ClientID, Kind: r.Kind, Cert: "another"},
	} {
		foreign.Rule = rule(now.Add(time.Millisecond))
		res, err := a.Poll(ctx, r.ID, foreign)
		if err != nil || res.Outcome != ciba.PollUnknown && res.Outcome != ciba.PollWrongCert {
			t.Fatalf("foreign poll %+v: %+v, %v", foreign, res, err)
		}
	}
	if got := known(); got != knownBefore {
		t.Fatalf("foreign polls changed the known pace from %+v to %+v", knownBefore, got)
	}
	q.Rule = rule(now.Add(time.Second))
	if res, err := a.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollSlow {
		t.Fatalf("early poll: %+v, %v", res, err)
	}
	if got := storedPace(t, a, r.ID); got != before {
		t.Fatalf("an early poll answered from the cache wrote Redis: %+v, was %+v", got, before)
	}
	q.Current = true
	q.Rule = rule(now.Add(2 * time.Second))
	if res, err := a.Poll(ctx, r.ID, q); err != nil || res.Outcome != ciba.PollSlow {
		t.Fatalf("early poll asking for the current state: %+v, %v", res, err)
	}
	if got := storedPace(t, a, r.ID); got.Interval != before.Interval+5*time.Second {
		t.Fatalf("a poll asking for the current state did not pace in Redis: %+v, was %+v", got, before)
	}
}
