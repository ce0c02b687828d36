package scale

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// The high-availability topologies: three instances on a Redis Cluster
// (three masters, a replica each) and on a Sentinel set (a master, two
// replicas, three Sentinels). The instances wait for one replica after
// each acknowledged write (store.redis.wait_replicas, 1 by default there).

// sentinelTemplate is configTemplate for a Sentinel set named name.
func sentinelTemplate(name string) string {
	return strings.Replace(configTemplate, "    key_prefix:", "    master_name: "+name+"\n    key_prefix:", 1)
}

// TestClusterInstances: three instances on a Redis Cluster behave as one
// server: 50 racing polls of one request across them, exactly one token
// response; a ping client is notified once.
func TestClusterInstances(t *testing.T) {
	t.Parallel()
	rc := redistest.StartCluster(t, 3, 1)
	// Plus a device client (appended to clients:, the template's last
	// section).
	c := newClusterOn(t, configTemplate+`  - client_id: demo-tv
    client_name: Demo TV
    token_endpoint_auth_methods: [none]
    device_authorization: true
`, rc.Addrs()...)
	t.Run("racing polls", func(t *testing.T) { c.t = t; racingPolls(t, c) })
	t.Run("ping", func(t *testing.T) { c.t = t; pingOnce(t, c) })
	t.Run("device", func(t *testing.T) { c.t = t; deviceFlow(t, c) })
}

// deviceGrant is the device flow's grant type (RFC 8628).
const deviceGrant = "urn:ietf:params:oauth:grant-type:device_code"

// csrfRE finds the CSRF token of a form of the verification page.
var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// deviceFlow: a device authorization on instance 1, the user code entered
// and approved on the page of instance 2, the device polling instances 3
// and 1 in turn: one token response, then invalid_grant.
func deviceFlow(t *testing.T, c *cluster) {
	cx := ctx(t)
	form := url.Values{"client_id": {"demo-tv"}, "scope": {"openid"}}
	r, err := testutil.PostForm(cx, c.url(0, "/device_authorization"), testutil.Client{}, form)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("device authorization on instance 1: %v %v", r, err)
	}
	dc, uc := r.Str("device_code"), r.Str("user_code")

	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar, Timeout: testutil.CallTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	page := func(method string, form url.Values) (int, string) {
		var body io.Reader
		u := c.url(1, "/device")
		if form == nil {
			u += "?user_code=" + url.QueryEscape(uc)
		} else {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequestWithContext(cx, method, u, body)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := b.Do(req)
		if err != nil {
			t.Fatalf("%s /device on instance 2: %v", method, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	status, body := page(http.MethodGet, nil)
	m := csrfRE.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		t.Fatalf("GET /device on instance 2: %d\n%s", status, body)
	}
	status, body = page(http.MethodPost, url.Values{"csrf": {m[1]}, "user_code": {uc}, "action": {"continue"}})
	if m = csrfRE.FindStringSubmatch(body); status != http.StatusOK || m == nil {
		t.Fatalf("the code entered on instance 2: %d\n%s", status, body)
	}
	status, body = page(http.MethodPost, url.Values{"csrf": {m[1]}, "user_code": {uc}, "action": {"approve"}, "username": {"alice"}, "password": {"alice-password"}})
	if status != http.StatusOK || !strings.Contains(body, "approved") {
		t.Fatalf("approve on instance 2: %d\n%s", status, body)
	}
	poll := func(i int) *testutil.Response {
		f := url.Values{"grant_type": {deviceGrant}, "device_code": {dc}, "client_id": {"demo-tv"}}
		r, err := testutil.PostForm(cx, c.url(i, "/token"), testutil.Client{}, f)
		if err != nil {
			t.Fatalf("device token request on instance %d: %v", i+1, err)
		}
		return r
	}
	var final *testutil.Response
	for n := range 20 {
		r := poll([]int{2, 0}[n%2])
		if !waiting(r) {
			final = r
			break
		}
		pause(cx, 1100*time.Millisecond)
	}
	if final == nil {
		t.Fatalf("the device got no final answer")
	}
	checkTokens(t, "device tokens", final)
	pause(cx, 1100*time.Millisecond)
	checkError(t, "second device redemption (instance 2)", poll(1), http.StatusBadRequest, "invalid_grant")
}

// TestSentinelFailoverUnderLoad kills the Sentinel master (SIGKILL) under
// bc-authorize and poll traffic; see failoverUnderLoad.
func TestSentinelFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t, 2, 3)
	c := newClusterOn(t, sentinelTemplate(sn.Name), sn.Addrs()...)
	var old *redistest.Server
	failoverUnderLoad(t, c, func() {
		var err error
		if old, err = sn.Master(context.Background()); err != nil {
			t.Errorf("find the master: %v", err)
			return
		}
		old.Kill()
	}, func() time.Duration {
		_, took := sn.WaitFailover(context.Background(), old)
		return took
	})
}

// TestClusterFailoverUnderLoad kills a Redis Cluster master (SIGKILL) under
// bc-authorize and poll traffic, and restarts it once its replica took
// over; see failoverUnderLoad.
func TestClusterFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	rc := redistest.StartCluster(t, 3, 1)
	c := newClusterOn(t, configTemplate, rc.Addrs()...)
	// With one replica per master, the promoted replica has none left:
	// acknowledged writes to its slots wait until the killed node is back
	// (restarted, it rejoins as the new master's replica).
	failoverUnderLoad(t, c, func() { rc.Nodes[0].Kill() }, func() time.Duration {
		took := rc.WaitFailover(context.Background(), rc.Nodes[0])
		rc.Nodes[0].Restart()
		return took + rc.WaitReplicated(context.Background())
	})
}

// failoverUnderLoad runs bounded bc-authorize traffic round-robin on the
// instances and polls of the requests acknowledged, calls kill once a few
// were acknowledged, and goes on until recovered returned (the topology
// failed over) and more were acknowledged. Every answer must be a right
// one: 200, authorization_pending or slow_down, or temporarily_unavailable
// (503) during the failover, never an unknown auth_req_id. Then every
// acknowledged request is approved and redeemed exactly once (a second
// token request hears invalid_grant). It logs how long the failover took
// and for how long clients heard temporarily_unavailable; a /readyz
// answered 503 meanwhile must say why.
func failoverUnderLoad(t *testing.T, c *cluster, kill func(), recovered func() time.Duration) {
	cx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	defer cancel()
	const (
		creators   = 3
		maxCreates = 300
		createGap  = 20 * time.Millisecond
		before     = 6
		after      = 9
	)
	var (
		mu        sync.Mutex
		acked     []request
		afterHeal int
		refusals  int
		odd       []string
		readyWhy  []string
		killedAt  time.Time
		lastRefus time.Time
		healed    = make(chan struct{})
		failover  time.Duration
		wg        sync.WaitGroup
	)
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return afterHeal >= after || len(odd) > 0
	}
	// note files an answer of bc-authorize or of a poll.
	note := func(what string, r *testutil.Response, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case ok:
		case r.Status == http.StatusServiceUnavailable && r.Str("error") == "temporarily_unavailable":
			refusals++
			lastRefus = time.Now()
		default:
			odd = append(odd, what+": "+r.String())
		}
	}
	for g := range creators {
		wg.Go(func() {
			for n := 0; n < maxCreates && !done() && cx.Err() == nil; n++ {
				req := newRequest(testutil.DemoPoll, "Failover")
				r, err := testutil.PostForm(cx, c.url((g+n)%instances, "/bc-authorize"), req.Client, authorizeForm(req))
				if err != nil {
					r = &testutil.Response{Body: []byte(err.Error())}
				}
				ok := r.Status == http.StatusOK && r.Str("auth_req_id") != ""
				note("bc-authorize", r, ok)
				if ok {
					req.AuthReqID = r.Str("auth_req_id")
					mu.Lock()
					acked = append(acked, req)
					select {
					case <-healed:
						afterHeal++
					default:
					}
					mu.Unlock()
				}
				pause(cx, createGap)
			}
		})
	}
	// One poller: pending requests must stay known.
	wg.Go(func() {
		for n := 0; !done() && cx.Err() == nil; n++ {
			mu.Lock()
			var req request
			if len(acked) > 0 {
				req = acked[n%len(acked)]
			}
			mu.Unlock()
			if req.AuthReqID != "" {
				r := c.token(cx, n%instances, req)
				note("poll", r, waiting(r))
			}
			pause(cx, 50*time.Millisecond)
		}
	})
	// One prober of /readyz.
	wg.Go(func() {
		for n := 0; !done() && cx.Err() == nil; n++ {
			if r, err := testutil.Get(cx, c.url(n%instances, "/readyz")); err == nil && r.Status == http.StatusServiceUnavailable {
				mu.Lock()
				readyWhy = append(readyWhy, r.Str("error"))
				mu.Unlock()
			}
			pause(cx, 100*time.Millisecond)
		}
	})
	waitUntil(t, cx, "requests acknowledged before the kill", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= before || len(odd) > 0
	})
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	kill()
	failover = recovered()
	close(healed)
	wg.Wait()
	if len(odd) > 0 {
		t.Fatalf("wrong answers around the failover: %q", odd)
	}
	if afterHeal < after {
		t.Fatalf("only %d requests acknowledged after the failover, want %d", afterHeal, after)
	}
	window := time.Duration(0)
	if !lastRefus.IsZero() {
		window = lastRefus.Sub(killedAt)
	}
	t.Logf("failover took %v; %d answers were temporarily_unavailable, the last %v after the kill; %d requests acknowledged",
		failover.Round(time.Millisecond), refusals, window.Round(time.Millisecond), len(acked))
	for _, why := range readyWhy {
		if why == "" {
			t.Errorf("/readyz answered 503 without saying why")
		}
	}
	if len(readyWhy) > 0 {
		t.Logf("/readyz meanwhile: %d answers 503, e.g. %q", len(readyWhy), readyWhy[0])
	}

	// Recovered: every instance ready again (its client follows the new
	// master a moment after the topology settled).
	for i := range instances {
		waitUntil(t, cx, "/readyz 200 after the failover", func() bool {
			r, err := testutil.Get(cx, c.url(i, "/readyz"))
			return err == nil && r.Status == http.StatusOK
		})
	}
	t.Logf("every instance ready again %v after the kill", time.Since(killedAt).Round(time.Millisecond))

	// Every acknowledged request is known, completes, and is redeemed once.
	for k, req := range acked {
		c.answerOn(k%instances, c.message(req), "approved")
	}
	finals := make([]*testutil.Response, len(acked))
	var rw sync.WaitGroup
	for k, req := range acked {
		rw.Go(func() {
			for n := 0; n < 20 && cx.Err() == nil; n++ {
				r := c.token(cx, (k+n)%instances, req)
				if !waiting(r) {
					finals[k] = r
					return
				}
				pause(cx, time.Second) // slow_down from the pollers' pace
			}
		})
	}
	rw.Wait()
	for k, r := range finals {
		if r == nil {
			t.Errorf("request %d: no final token answer", k)
			continue
		}
		checkTokens(t, "token of a request acknowledged around the failover", r)
		checkError(t, "second token request", c.token(cx, (k+1)%instances, acked[k]), http.StatusBadRequest, "invalid_grant")
	}
}
