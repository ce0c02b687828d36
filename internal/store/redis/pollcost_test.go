package redisstore

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// commandStats returns the commands a Redis server has processed, per
// command (INFO commandstats: the commands inside a script count too, as in
// total_commands_processed, which bench/run.sh reads), and their sum.
func commandStats(t *testing.T, c *redis.Client) (map[string]int, int) {
	t.Helper()
	info, err := c.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatalf("INFO commandstats: %v", err)
	}
	calls, total := map[string]int{}, 0
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
		if err != nil {
			t.Fatalf("INFO commandstats line %q: %v", line, err)
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		calls[name] = n
		total += n
	}
	return calls, total
}

// commandsSince returns what the server processed since the stats before,
// per command and in all, leaving out the INFO calls of the measurement
// and the handshakes (HELLO, CLIENT) of connections the client pool opens.
func commandsSince(t *testing.T, c *redis.Client, before map[string]int) (map[string]int, int) {
	t.Helper()
	after, _ := commandStats(t, c)
	diff, total := map[string]int{}, 0
	for name, n := range after {
		if d := n - before[name]; d > 0 && name != "info" && name != "hello" && !strings.HasPrefix(name, "client") {
			diff[name] = d
			total += d
		}
	}
	return diff, total
}

// warmScripts has s run the poll and merge scripts once, on a request of
// its own, so that the server has loaded them: a first EVALSHA is refused
// (NOSCRIPT) and sent again as EVAL, once per server and script.
func warmScripts(t *testing.T, s *Store) {
	t.Helper()
	r := cibaRequest()
	if err := s.CreateRequest(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: rule(time.Now())}
		if _, err := s.Poll(t.Context(), r.ID, q); err != nil {
			t.Fatal(err)
		}
	}
	s.flushPaces(t.Context(), nil, time.Now())
}

// TestPollsOfOnePendingIDReachRedisOnce counts what Redis processes while
// one instance answers n polls of one pending request, as the benchmark's
// one-id scenario does (one poll client polling as fast as it can): the
// first poll is the poll script (HMGET and HSET inside EVALSHA), every
// later one is early and answered slow_down by the instance (pollcache.go),
// and the interval grown by them is merged into Redis once (EVALSHA with
// EXISTS, HGET and HSET inside), by the flusher within flushEvery or here.
// Besides, the instance publishes a heartbeat every heartbeatEvery. So n
// polls cost Redis a fixed handful of commands, not a share of n.
func TestPollsOfOnePendingIDReachRedisOnce(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv.Addr(), newPrefix())
	raw := rawClient(t, srv.Addr())
	ctx := t.Context()
	r := cibaRequest()
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the instance hears its own heartbeat", func() bool { return s.cache.fresh(time.Now()) })
	warmScripts(t, s)

	const n = 2000
	before, _ := commandStats(t, raw)
	start := time.Now()
	for i := range n {
		q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: rule(time.Now())}
		res, err := s.Poll(ctx, r.ID, q)
		want := ciba.PollSlow
		if i == 0 {
			want = ciba.PollPending
		}
		if err != nil || res.Outcome != want {
			t.Fatalf("poll %d: %v %v, want outcome %v", i, res.Outcome, err, want)
		}
	}
	s.flushPaces(ctx, nil, time.Now())
	elapsed := time.Since(start)
	calls, total := commandsSince(t, raw, before)
	t.Logf("%d polls of one pending id in %v: Redis processed %d commands (%.4f per poll): %v", n, elapsed, total, float64(total)/n, calls)

	if calls["evalsha"] != 2 || calls["hmget"] != 1 || calls["exists"] != 1 {
		t.Errorf("scripts run: %v; want the poll script once (its HMGET) and the merge once (its EXISTS)", calls)
	}
	// The heartbeats are the only other commands: one PUBLISH per
	// heartbeatEvery of the run, and one more for a tick on either side.
	beats := int(elapsed/heartbeatEvery) + 2
	if calls["publish"] > beats {
		t.Errorf("%d PUBLISH in %v; the heartbeats are at most %d", calls["publish"], elapsed, beats)
	}
	if want := 2 + 2 + 3 + calls["publish"]; total != want {
		t.Errorf("%d commands for %d polls of one id, want %d (2 scripts, 5 commands inside them, %d heartbeats): %v",
			total, n, want, calls["publish"], calls)
	}
}

// TestGrownPacesAreMergedOncePerSpacing: every request polled early on an
// instance has its grown interval merged into Redis, four commands each
// (EVALSHA with EXISTS, HGET and HSET inside), at the first flush and then
// at most once per spacing (shareSpacing, doubling), however often it is
// polled. These merges, for all the requests the instance polled early,
// come in waves that fall wherever their spacing ends: they are what the
// benchmark's Redis command counts per run measure beyond the heartbeats,
// whichever request the run itself polls.
func TestGrownPacesAreMergedOncePerSpacing(t *testing.T) {
	srv := redistest.Start(t)
	s := open(t, srv.Addr(), newPrefix())
	raw := rawClient(t, srv.Addr())
	ctx := t.Context()
	const k = 50
	var reqs []*ciba.AuthRequest
	for range k {
		r := cibaRequest()
		if err := s.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	eventually(t, "the instance hears its own heartbeat", func() bool { return s.cache.fresh(time.Now()) })
	warmScripts(t, s)
	pollAll := func(times int) {
		t.Helper()
		for range times {
			for _, r := range reqs {
				q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: rule(time.Now())}
				if _, err := s.Poll(ctx, r.ID, q); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	merges := func(calls map[string]int) int { return calls["exists"] }

	before, _ := commandStats(t, raw)
	pollAll(5) // a first poll each (the script), then early ones
	s.flushPaces(ctx, nil, time.Now())
	calls, _ := commandsSince(t, raw, before)
	if merges(calls) != k || calls["hmget"] != k {
		t.Fatalf("first wave: %v; want %d poll scripts (HMGET) and %d merges (EXISTS)", calls, k, k)
	}

	// Polled early again within the spacing: nothing more reaches Redis
	// until the spacing has passed.
	before, _ = commandStats(t, raw)
	pollAll(5)
	s.flushPaces(ctx, nil, time.Now())
	if calls, _ := commandsSince(t, raw, before); merges(calls) != 0 || calls["hmget"] != 0 {
		t.Fatalf("within the spacing: %v; want no script run", calls)
	}
	before, _ = commandStats(t, raw)
	s.flushPaces(ctx, nil, time.Now().Add(shareSpacing))
	if calls, _ := commandsSince(t, raw, before); merges(calls) != k || calls["hset"] != k {
		t.Fatalf("second wave: %v; want %d merges, each with its HSET", calls, k)
	}
}
