package scale

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// settle is how long a test keeps watching after a delivery for a second
// one that must not come. It is longer than the first retry backoff (1 s)
// and the takeover period of the dispatcher (a few seconds), so that a
// duplicate sent by a retry or by another instance would show.
const settle = 4 * time.Second

// pause waits d, or until cx ends.
func pause(cx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-cx.Done():
	case <-t.C:
	}
}

// waiting reports whether r is an answer after which a poll client polls
// again: authorization_pending or slow_down (CIBA §11).
func waiting(r *testutil.Response) bool {
	return r.Status == http.StatusBadRequest && (r.Str("error") == "authorization_pending" || r.Str("error") == "slow_down")
}

// TestConcurrentPollsAcrossInstances: "two polls that race after approval
// give exactly one token response (the other gets invalid_grant), on one
// instance or many" (DESIGN.md, State). A request created on instance 1 and
// approved through the callback of instance 2 is polled round-robin on all
// three by 50 concurrent pollers: exactly one gets the tokens, every other
// ends with invalid_grant, and before the approval they hear only
// authorization_pending or slow_down. The ID token verifies with /jwks of
// every instance: the signing key is shared through the store.
func TestConcurrentPollsAcrossInstances(t *testing.T) {
	t.Parallel()
	racingPolls(t, newCluster(t))
}

// racingPolls is TestConcurrentPollsAcrossInstances on the cluster c.
func racingPolls(t *testing.T, c *cluster) {
	req := c.authorize(0, testutil.DemoPoll, "Fifty")
	m := c.message(req)

	const (
		pollers = 50
		// maxPolls bounds each poller's loop; with pollPause it is far
		// more than the test needs and far less than the request's life.
		maxPolls  = 150
		pollPause = 100 * time.Millisecond
	)
	cx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var (
		waits, slowDowns atomic.Int64
		finals           = make([]*testutil.Response, pollers)
		wg               sync.WaitGroup
	)
	for p := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range maxPolls {
				if cx.Err() != nil {
					return
				}
				r := c.token(cx, (p+n)%instances, req)
				if !waiting(r) {
					finals[p] = r
					return
				}
				waits.Add(1)
				if r.Str("error") == "slow_down" {
					slowDowns.Add(1)
				}
				pause(cx, pollPause)
			}
		}()
	}
	// Approve once every poller could have polled at least once.
	waitUntil(t, cx, "the pollers' first answers", func() bool { return waits.Load() >= pollers })
	c.answerOn(1, m, "approved")
	wg.Wait()

	var winner *testutil.Response
	for p, r := range finals {
		switch {
		case r == nil:
			t.Errorf("poller %d: no final answer within %d polls and %v", p, maxPolls, waitTimeout)
		case r.Status == http.StatusOK:
			if winner != nil {
				t.Errorf("poller %d: a second token response: %s", p, r)
			}
			winner = r
		default:
			checkError(t, "a losing poll", r, http.StatusBadRequest, "invalid_grant")
		}
	}
	t.Logf("%d pending or slow_down answers before the approval, %d of them slow_down", waits.Load(), slowDowns.Load())
	if winner == nil {
		t.Fatalf("no poller got the tokens")
	}
	checkTokens(t, "the winning poll", winner)
	for i := range instances {
		c.verifyIDToken(i, winner.Str("id_token"), testutil.DemoPoll.ID)
	}
}

// TestSlowDownIsShared: the interval of CIBA §7.3 binds the client, not one
// instance. Two polls in quick succession on two different instances: the
// first hears authorization_pending, the second slow_down, and so does a
// third on yet another instance, since slow_down grew the shared interval.
//
// It is the one test of the package that does not run in parallel with the
// others: it needs three polls within 400 ms.
func TestSlowDownIsShared(t *testing.T) {
	c := newCluster(t)
	// "Quick" is within the poll tolerance (0.5 s) of the 1 s interval;
	// a machine too loaded to send three polls within quick gets another
	// try with a fresh request, a few times.
	const quick = 400 * time.Millisecond
	for try := 1; try <= 3; try++ {
		req := c.authorize(0, testutil.DemoPoll, "Pace")
		cx := ctx(t)
		start := time.Now()
		first := c.token(cx, 1, req)
		second := c.token(cx, 2, req)
		third := c.token(cx, 0, req)
		if took := time.Since(start); took >= quick {
			t.Logf("try %d: the three polls took %v, not in quick succession; again", try, took)
			continue
		}
		checkError(t, "first poll (instance 2)", first, http.StatusBadRequest, "authorization_pending")
		checkError(t, "second poll (instance 3)", second, http.StatusBadRequest, "slow_down")
		checkError(t, "third poll (instance 1)", third, http.StatusBadRequest, "slow_down")
		return
	}
	t.Skipf("three polls never took less than %v: the machine is too loaded to test pacing", quick)
}

// TestPingOnceAcrossInstances: CIBA §10.2, the ping client is notified once
// (not once per instance) with its client_notification_token as bearer, and
// then gets its tokens from any instance, once.
func TestPingOnceAcrossInstances(t *testing.T) {
	t.Parallel()
	pingOnce(t, newCluster(t))
}

// pingOnce is TestPingOnceAcrossInstances on the cluster c.
func pingOnce(t *testing.T, c *cluster) {
	req := c.authorize(0, testutil.DemoPing, "Ping")
	c.answerOn(1, c.message(req), "approved")

	cx := ctx(t)
	n, err := c.notify.WaitFor(cx, req.AuthReqID)
	if err != nil {
		t.Fatal(err)
	}
	if n.Bearer != req.NotificationToken {
		t.Errorf("ping bearer = %q, want the client_notification_token %q", n.Bearer, req.NotificationToken)
	}
	pause(cx, settle)
	if got := c.notify.For(req.AuthReqID); len(got) != 1 {
		t.Errorf("%d notifications for the request across the instances, want exactly 1: %+v", len(got), got)
	}
	checkTokens(t, "token after the ping (instance 3)", c.token(cx, 2, req))
	checkError(t, "second token request (instance 1)", c.token(cx, 0, req), http.StatusBadRequest, "invalid_grant")
}

// TestInstanceKilledMidFlow: an instance killed (SIGKILL) after it
// acknowledged a request loses nothing: the request created on instance 1
// is approved on instance 2 and redeemed on instance 3.
func TestInstanceKilledMidFlow(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	req := c.authorize(0, testutil.DemoPoll, "Killed")
	m := c.message(req)
	c.nodes[0].Kill()
	c.answerOn(1, m, "approved")
	r := c.token(ctx(t), 2, req)
	checkTokens(t, "token on instance 3 after instance 1 was killed", r)
	c.verifyIDToken(1, r.Str("id_token"), testutil.DemoPoll.ID)
}

// deliveryFailures reports whether the instance logged a failed attempt of
// a client notification.
func deliveryFailures(s *testutil.Server) bool {
	for line := range strings.SplitSeq(s.Logs(), "\n") {
		if strings.Contains(line, "delivery failed") && strings.Contains(line, "client notification") {
			return true
		}
	}
	return false
}

// TestDeliveryTakeover: a ping whose endpoint refuses (503) is retried; the
// instance retrying it is killed; once the endpoint accepts, another
// instance delivers it, exactly once, and the client gets its tokens.
func TestDeliveryTakeover(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.notify.Reply(http.StatusServiceUnavailable)
	req := c.authorize(0, testutil.DemoPing, "Takeover")
	c.answerOn(1, c.message(req), "approved")

	cx := ctx(t)
	waitUntil(t, cx, "two refused ping attempts", func() bool { return len(c.notify.For(req.AuthReqID)) >= 2 })
	var retriers, survivors []int
	for i, s := range c.nodes {
		if deliveryFailures(s) {
			retriers = append(retriers, i)
		} else {
			survivors = append(survivors, i)
		}
	}
	if len(retriers) == 0 || len(survivors) == 0 {
		t.Fatalf("instances that logged a failed ping: %v of %d; want some but not all", retriers, instances)
	}
	for _, i := range retriers {
		c.nodes[i].Kill()
	}
	refused := len(c.notify.For(req.AuthReqID))
	c.notify.Reply(http.StatusNoContent)
	t.Logf("killed instance(s) %v after %d refused attempts", retriers, refused)

	// The killed instance's lease on the next attempt runs out, and a
	// survivor must notice without anyone telling it.
	n, err := c.notify.WaitFor(cx, req.AuthReqID)
	if err != nil {
		t.Fatalf("no instance took the delivery over: %v", err)
	}
	if n.Bearer != req.NotificationToken {
		t.Errorf("ping bearer = %q, want %q", n.Bearer, req.NotificationToken)
	}
	pause(cx, settle)
	accepted := 0
	for _, x := range c.notify.For(req.AuthReqID) {
		if x.Status/100 == 2 {
			accepted++
		}
	}
	if accepted != 1 {
		t.Errorf("%d accepted pings, want exactly 1", accepted)
	}
	checkTokens(t, "token after the takeover", c.token(cx, survivors[0], req))
}

// TestRedisRestart: Redis killed (kill -9) while requests are being created,
// then restarted with its append-only file. Every request acknowledged
// before the kill is still there and completes. During the outage the
// instances answer 503 temporarily_unavailable in JSON, at once, and /readyz
// says 503; when Redis is back /readyz says 200 again, without a restart of
// cibaproxy.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	// The whole test, from the first request to the last token.
	cx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()

	// Creators: bounded loops of bc-authorize, round-robin on the instances,
	// until each has heard the outage twice.
	const (
		creators   = 3
		maxCreates = 100
		createGap  = 20 * time.Millisecond
	)
	var (
		mu       sync.Mutex
		acked    []request
		refusals []*testutil.Response
		odd      []string
		wg       sync.WaitGroup
	)
	for g := range creators {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outage := 0
			for n := 0; n < maxCreates && outage < 2 && cx.Err() == nil; n++ {
				req := newRequest(testutil.DemoPoll, "Outage")
				node := (g + n) % instances
				r, err := testutil.PostForm(cx, c.url(node, "/bc-authorize"), req.Client, authorizeForm(req))
				mu.Lock()
				switch {
				case err != nil:
					odd = append(odd, err.Error())
				case r.Status == http.StatusOK && r.Str("auth_req_id") != "":
					req.AuthReqID = r.Str("auth_req_id")
					acked = append(acked, req)
				case r.Status == http.StatusServiceUnavailable:
					refusals = append(refusals, r)
					outage++
				default:
					odd = append(odd, r.String())
				}
				mu.Unlock()
				pause(cx, createGap)
			}
		}()
	}
	const before = 6
	waitUntil(t, cx, "requests acknowledged before the kill", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= before || len(odd) > 0
	})
	c.redis.Kill()
	wg.Wait()
	if len(odd) > 0 {
		t.Fatalf("bc-authorize around the kill answered neither 200 nor 503: %q", odd)
	}
	if len(refusals) == 0 {
		t.Fatalf("no bc-authorize was refused during the outage (%d acknowledged)", len(acked))
	}
	for _, r := range refusals {
		checkError(t, "bc-authorize during the outage", r, http.StatusServiceUnavailable, "temporarily_unavailable")
	}
	t.Logf("%d requests acknowledged before the kill, %d refused after it", len(acked), len(refusals))

	// While Redis is down, every instance says so at once, in JSON.
	for i := range instances {
		r, err := testutil.PostForm(cx, c.url(i, "/bc-authorize"), testutil.DemoPoll, authorizeForm(newRequest(testutil.DemoPoll, "Down")))
		if err != nil {
			t.Fatalf("bc-authorize on instance %d during the outage: %v", i+1, err)
		}
		checkError(t, "bc-authorize during the outage", r, http.StatusServiceUnavailable, "temporarily_unavailable")
		r = c.token(cx, i, acked[0])
		checkError(t, "token during the outage", r, http.StatusServiceUnavailable, "temporarily_unavailable")
		r, err = testutil.Get(cx, c.url(i, "/readyz"))
		if err != nil || r.Status != http.StatusServiceUnavailable {
			t.Errorf("/readyz of instance %d during the outage: got %v %v, want 503", i+1, r, err)
		}
	}

	c.redis.Restart()
	for i := range instances {
		waitUntil(t, cx, "/readyz 200 after Redis came back", func() bool {
			r, err := testutil.Get(cx, c.url(i, "/readyz"))
			return err == nil && r.Status == http.StatusOK
		})
	}
	// For about a second after Redis is back, an instance whose /readyz
	// already said 200 can still answer 503 temporarily_unavailable: once
	// PoolSize dials have failed, go-redis fails every new dial at once
	// until its probe, one a second, gets through (seen under load: a
	// callback 0.5 s after /readyz). A client retries
	// temporarily_unavailable; the answers and polls here do too, for at
	// most 5 s each.
	for k, req := range acked {
		m := c.message(req)
		r := retryUnavailable(cx, func() *testutil.Response { return c.callbackOn(cx, k%instances, m, "approved") })
		if r.Status != http.StatusNoContent {
			t.Fatalf("callback on instance %d after the outage: got %s, want 204", k%instances+1, r)
		}
		r = retryUnavailable(cx, func() *testutil.Response { return c.token(cx, (k+1)%instances, req) })
		checkTokens(t, "token of a request acknowledged before the outage", r)
	}
	// And new requests work as before.
	req := c.authorize(2, testutil.DemoPoll, "After")
	c.answerOn(0, c.message(req), "approved")
	checkTokens(t, "token of a request made after the outage", c.token(cx, 1, req))
}
