package abuse

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// The failed client authentication limit at its default
// (limits.client_auth_failures_per_ip: 20 per 1m, one back every 3 s).
const (
	clientauthFailures = 20
	clientauthRefill   = 3 * time.Second
	// clientauthBurst is the number of wrong secrets sent at once.
	clientauthBurst = 120
)

// clientauthFrom is an HTTP client whose connections come from source
// address ip (a loopback address: the whole of 127.0.0.0/8 is local), so a
// test can play several client addresses. Its bound is burstTimeout: the
// wrong secrets of a burst that are checked wait for bcrypt.
func clientauthFrom(ip string) *http.Client {
	return &http.Client{Timeout: burstTimeout, Transport: testutil.TransportFrom(ip, clientauthBurst)}
}

// clientauthPost POSTs form to endpoint as c with client_secret_basic,
// from hc, with the extra headers h.
func clientauthPost(t *testing.T, hc *http.Client, endpoint string, c testutil.Client, form url.Values, h http.Header) *testutil.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(burstCtx(t), http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := hc.Do(req)
	if err != nil {
		t.Errorf("POST %s: %v", endpoint, err)
		return &testutil.Response{}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return &testutil.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// clientauthBurstFrom sends clientauthBurst wrong secrets of demo-poll at
// once from hc, spread over the endpoints (round robin), and returns the
// answers by status and how long the burst took.
func clientauthBurstFrom(t *testing.T, hc *http.Client, endpoints []string) (map[int]int, time.Duration) {
	t.Helper()
	wrong := testutil.Client{ID: demoPoll.ID, Secret: "not-the-secret"}
	form := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"x"}}
	var mu sync.Mutex
	got := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	began := time.Now()
	for i := range clientauthBurst {
		wg.Go(func() {
			<-start
			r := clientauthPost(t, hc, endpoints[i%len(endpoints)], wrong, form, nil)
			if r.Status == http.StatusTooManyRequests {
				if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
					t.Errorf("429 without a Retry-After of whole seconds: %q", r.Header.Get("Retry-After"))
				}
				if !bytes.Contains(r.Body, []byte(`"slow_down"`)) {
					t.Errorf("429 body %s, want slow_down", r.Body)
				}
			}
			mu.Lock()
			got[r.Status]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return got, time.Since(began)
}

// clientauthCheckBurst checks the answers to a burst: only 401 and 429,
// at most the limit's worth of 401 (plus what refilled while the burst
// ran), and the rest refused.
func clientauthCheckBurst(t *testing.T, got map[int]int, took time.Duration) {
	t.Helper()
	allowed := clientauthFailures + int(took/clientauthRefill) + 1
	if got[http.StatusUnauthorized]+got[http.StatusTooManyRequests] != clientauthBurst {
		t.Fatalf("%d wrong secrets at once: answers %v, want only 401 and 429", clientauthBurst, got)
	}
	if n := got[http.StatusUnauthorized]; n > allowed || n < 1 {
		t.Fatalf("%d wrong secrets at once from one address were checked %d times (answers %v, %s); the limit allows %d",
			clientauthBurst, n, got, took, allowed)
	}
}

// clientauthUntilRefused sends wrong secrets of demo-poll from hc to
// endpoint until one is refused (429), and fails the test when more were
// checked (401) than the tokens that came back since drained, the time the
// address's budget was used up: the budget was not reset. It returns when
// the refusal came, so that what the test checks next is checked while the
// address is refused (a token takes clientauthRefill to come back).
func clientauthUntilRefused(t *testing.T, hc *http.Client, endpoint string, drained time.Time) {
	t.Helper()
	wrong := testutil.Client{ID: demoPoll.ID, Secret: "not-the-secret"}
	form := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"x"}}
	for checked := 0; ; checked++ {
		r := clientauthPost(t, hc, endpoint, wrong, form, nil)
		if r.Status == http.StatusTooManyRequests {
			return
		}
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("a wrong secret: %s", r)
		}
		if allowed := 1 + int(time.Since(drained)/clientauthRefill); checked+1 > allowed {
			t.Fatalf("%d wrong secrets checked %s after the budget was used up; at most %d tokens came back", checked+1, time.Since(drained), allowed)
		}
	}
}

// TestClientAuthFailureBurstIsLimited: a burst of wrong client secrets from
// one address is checked at most the default 20 times; the rest are
// answered 429 with Retry-After without being checked, and from then on
// the client_id attacked is refused from that address even with its right
// secret (no guessing around the limit), whatever X-Forwarded-For it
// claims (the quick start trusts no proxy). Another client on that address
// is still served, and so is a legitimate client on another address.
func TestClientAuthFailureBurstIsLimited(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	attacker, legit := clientauthFrom("127.0.0.1"), clientauthFrom("127.0.0.2")
	got, took := clientauthBurstFrom(t, attacker, []string{e.url("/token"), e.url("/bc-authorize")})
	drained := time.Now()
	t.Logf("%d wrong secrets at once: %v in %s", clientauthBurst, got, took)
	clientauthCheckBurst(t, got, took)

	poll := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"x"}}
	clientauthUntilRefused(t, attacker, e.url("/token"), drained)
	r := clientauthPost(t, attacker, e.url("/token"), demoPoll, poll, nil)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("the right secret from the refused address: %s, want 429 until a token is back", r)
	}
	r = clientauthPost(t, attacker, e.url("/token"), demoPoll, poll, http.Header{"X-Forwarded-For": {"203.0.113.9"}})
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("a forged X-Forwarded-For escaped the limit: %s", r)
	}
	// Another client sharing the attacker's address (one NAT) is still
	// checked, and served with its right (plain) secret.
	demoPing := testutil.Client{ID: "demo-ping", Secret: "demo-ping-secret"}
	r = clientauthPost(t, attacker, e.url("/token"), demoPing, poll, nil)
	if r.Status != http.StatusBadRequest || !bytes.Contains(r.Body, []byte("invalid_grant")) {
		t.Fatalf("another client on the attacker's address: %s, want its own answer (invalid_grant for auth_req_id x)", r)
	}

	authz := url.Values{"scope": {"openid"}, "login_hint": {"alice"}}
	r = clientauthPost(t, legit, e.url("/bc-authorize"), demoPoll, authz, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("a legitimate client on another address: %s", r)
	}
	r = clientauthPost(t, legit, e.url("/token"), demoPoll, poll, nil)
	if r.Status != http.StatusBadRequest || !bytes.Contains(r.Body, []byte("invalid_grant")) {
		t.Fatalf("a legitimate poll on another address: %s, want its own answer (invalid_grant for auth_req_id x)", r)
	}

	// Reloading the clients (SIGHUP) keeps the count: the budget is not
	// given back by a reload the attacker cannot cause but may wait for.
	if err := e.srv.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(e.srv.Logs(), "reload: clients reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload in the log after SIGHUP:\n%s", e.srv.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	clientauthUntilRefused(t, attacker, e.url("/token"), drained)
}

// TestClientAuthUnknownClientCountsAsWrongSecret: an unknown client_id and
// a wrong secret of a real client get byte-identical answers and draw on
// one budget, so neither the answer nor the limit tells which client_ids
// exist. (The shipped configurations hold plain secrets only: there every
// failure is a constant-time digest compare. With a client_secret_hash, an
// unknown client gets a decoy bcrypt check of the same cost; that is
// asserted in internal/clientauth, TestGuardUnknownClientCostsAWrongSecret.)
func TestClientAuthUnknownClientCountsAsWrongSecret(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	hc := clientauthFrom("127.0.0.3")
	form := url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {"x"}}
	answer := func(r *testutil.Response) string {
		return fmt.Sprintf("%d %s %s", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
	}
	var first string
	for i := range clientauthFailures {
		c := testutil.Client{ID: demoPoll.ID, Secret: "wrong"}
		if i%2 == 1 {
			c = testutil.Client{ID: "no-such-client", Secret: "wrong"}
		}
		r := clientauthPost(t, hc, e.url("/token"), c, form, nil)
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d (%s): %s, want 401 within the limit", i+1, c.ID, r)
		}
		if first == "" {
			first = answer(r)
		} else if a := answer(r); a != first {
			t.Fatalf("failure %d (%s) answered %q, the first %q", i+1, c.ID, a, first)
		}
	}
	for _, id := range []string{"no-such-client", demoPoll.ID} {
		if r := clientauthPost(t, hc, e.url("/token"), testutil.Client{ID: id, Secret: "wrong"}, form, nil); r.Status != http.StatusTooManyRequests {
			t.Fatalf("%s after %d mixed failures: %s, want 429: unknown clients and wrong secrets share one budget", id, clientauthFailures, r)
		}
	}
}

// TestClientAuthFailuresSharedOnRedis: with examples/redis.yaml the limit
// is kept in Redis, so a burst spread over two instances is checked at
// most the default 20 times in all, and both instances then refuse the
// address; a legitimate client elsewhere is served by both.
func TestClientAuthFailuresSharedOnRedis(t *testing.T) {
	t.Parallel()
	p := startRedisPair(t)
	attacker, legit := clientauthFrom("127.0.0.1"), clientauthFrom("127.0.0.4")
	got, took := clientauthBurstFrom(t, attacker, []string{p[0].url("/token"), p[1].url("/token")})
	drained := time.Now()
	t.Logf("%d wrong secrets at once: %v in %s", clientauthBurst, got, took)
	clientauthCheckBurst(t, got, took)

	authz := url.Values{"scope": {"openid"}, "login_hint": {"alice"}}
	for i, e := range p {
		// Each instance finds the budget used up in Redis, whichever
		// instance used it.
		clientauthUntilRefused(t, attacker, e.url("/token"), drained)
		if r := clientauthPost(t, attacker, e.url("/bc-authorize"), demoPoll, authz, nil); r.Status != http.StatusTooManyRequests {
			t.Fatalf("instance %d, demo-poll's right secret from the refused address: %s, want 429", i, r)
		}
		if r := clientauthPost(t, legit, e.url("/bc-authorize"), demoPoll, authz, nil); r.Status != http.StatusOK {
			t.Fatalf("instance %d, a legitimate client on another address: %s", i, r)
		}
	}
}
