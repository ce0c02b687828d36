package scale

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// The abuse limits are shared by the instances through Redis: a limit of N
// per period allows N requests whichever instances they reach, not N per
// instance. The rates are per hour (the device page's is fixed per
// minute), so that no token comes back while a test runs: the counts are
// exact.

// newLimitedCluster is newCluster with the limits: section of the
// configuration replaced by limits (YAML, indented as under limits:) and
// extra appended to it (more clients, then other sections).
func newLimitedCluster(t *testing.T, limits, extra string) *cluster {
	t.Helper()
	const defaultLimits = "limits:\n  requests_per_user:\n    requests: 100000\n"
	if !strings.Contains(configTemplate, defaultLimits) {
		t.Fatal("the limits: section of configTemplate changed; update newLimitedCluster")
	}
	return newClusterWith(t, strings.Replace(configTemplate, defaultLimits, "limits:\n"+limits, 1)+extra)
}

// checkRetryAfter checks that r carries Retry-After in whole seconds, at
// least 1 and at most max.
func checkRetryAfter(t *testing.T, what string, r *testutil.Response, max int) {
	t.Helper()
	s, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || s < 1 || s > max {
		t.Errorf("%s: Retry-After %q, want whole seconds in [1, %d]", what, r.Header.Get("Retry-After"), max)
	}
}

// TestBCAuthorizeLimitIsSharedAcrossInstances: limits.bc_authorize_per_client
// of 5 per hour, 15 backchannel authentication requests of one client sent
// round-robin to the 3 instances: exactly 5 are accepted, the other 10 get
// HTTP 429 slow_down with Retry-After (at most the 12 minutes a token takes
// to come back). Another client is not held back. The per-address failure
// limits of the approval page and the callback are shared likewise: 3
// failures per hour from one address, wherever they land, then 429; and so
// is the device page's limit on wrong user codes per address (2 per
// minute: the 6 attempts take far less than the 30 s a token takes to
// come back).
func TestBCAuthorizeLimitIsSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	c := newLimitedCluster(t, `  bc_authorize_per_client: {requests: 5, per: 1h}
  requests_per_user: {requests: 100000, per: 1h}
  approval_failures_per_ip: {requests: 3, per: 1h}
  callback_failures_per_ip: {requests: 3, per: 1h}
`, `  - client_id: demo-tv
    client_name: Demo TV
    token_endpoint_auth_methods: [none]
    device_authorization: true
device:
  user_code_attempts_per_ip: 2
`)
	accepted := 0
	for n := range 15 {
		i := n % instances
		req := newRequest(testutil.DemoPoll, "Limited")
		r, err := testutil.PostForm(ctx(t), c.url(i, "/bc-authorize"), req.Client, authorizeForm(req))
		if err != nil {
			t.Fatalf("POST /bc-authorize on instance %d: %v", i+1, err)
		}
		what := fmt.Sprintf("request %d, on instance %d", n+1, i+1)
		switch r.Status {
		case http.StatusOK:
			accepted++
			if r.Str("auth_req_id") == "" {
				t.Errorf("%s: 200 without auth_req_id: %s", what, r)
			}
		default:
			checkError(t, what, r, http.StatusTooManyRequests, "slow_down")
			checkRetryAfter(t, what, r, 12*60)
		}
	}
	if accepted != 5 {
		t.Fatalf("%d of 15 requests of one client over %d instances accepted, want 5 (bc_authorize_per_client 5 per hour)", accepted, instances)
	}
	// The limit is per client.
	c.authorize(2, testutil.DemoPush, "Other client")

	// Approval page: an unknown link is a failure (404); the 4th failure
	// from this address, on whichever instance, is refused with 429.
	for n := range 6 {
		i := n % instances
		r, err := testutil.Get(ctx(t), c.url(i, "/approve/no-such-approval-id-"+strconv.Itoa(n)))
		if err != nil {
			t.Fatalf("GET /approve on instance %d: %v", i+1, err)
		}
		what := fmt.Sprintf("failed approval page %d, on instance %d", n+1, i+1)
		if n < 3 && r.Status != http.StatusNotFound {
			t.Errorf("%s: HTTP %d, want 404 (within the limit)", what, r.Status)
		}
		if n >= 3 {
			if r.Status != http.StatusTooManyRequests {
				t.Errorf("%s: HTTP %d, want 429 (approval_failures_per_ip 3 per hour)", what, r.Status)
			}
			checkRetryAfter(t, what, r, 20*60)
		}
	}

	// Callback: a wrong bearer is a failure; the 4th gets 429 slow_down.
	for n := range 6 {
		i := n % instances
		r, err := testutil.CallbackWith(ctx(t), c.url(i, "/ciba/callback"), "not-a-callback-token", "approved")
		if err != nil {
			t.Fatalf("POST /ciba/callback on instance %d: %v", i+1, err)
		}
		what := fmt.Sprintf("failed callback %d, on instance %d", n+1, i+1)
		if n < 3 && (r.Status < 400 || r.Status >= 500 || r.Status == http.StatusTooManyRequests) {
			t.Errorf("%s: got %s, want a 4xx other than 429 (within the limit)", what, r)
		}
		if n >= 3 {
			checkError(t, what, r, http.StatusTooManyRequests, "slow_down")
			checkRetryAfter(t, what, r, 20*60)
		}
	}

	// Device verification page: device.user_code_attempts_per_ip of 2 per
	// minute. Wrong codes entered round-robin: the first 2 are answered
	// "not valid" (404), every later one 429, whichever instance.
	type browser struct {
		c    *http.Client
		csrf string
	}
	var browsers []browser
	for i := range instances {
		b, csrf := c.devicePage(i)
		browsers = append(browsers, browser{b, csrf})
	}
	for n := range 6 {
		i := n % instances
		resp := c.enterCode(i, browsers[i].c, browsers[i].csrf, "BBBB-BBBB")
		what := fmt.Sprintf("wrong user code %d, on instance %d", n+1, i+1)
		want := http.StatusNotFound
		if n >= 2 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Errorf("%s: HTTP %d, want %d (user_code_attempts_per_ip 2 per minute)", what, resp.StatusCode, want)
		}
		if n >= 2 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", what)
		}
	}
}

// devicePage opens the device verification page of instance i in a
// browser of its own: the browser and the CSRF token of the code entry form.
func (c *cluster) devicePage(i int) (*http.Client, string) {
	c.t.Helper()
	jar, _ := cookiejar.New(nil)
	// The device page counts its failures against approval_failures_per_ip
	// too, which the approval-page part of the test has used up for
	// 127.0.0.1: the TV's user is at another address, 127.0.0.2.
	b := &http.Client{Jar: jar, Timeout: testutil.CallTimeout, Transport: testutil.TransportFrom("127.0.0.2", 2)}
	req, _ := http.NewRequestWithContext(ctx(c.t), http.MethodGet, c.url(i, "/device"), nil)
	resp, err := b.Do(req)
	if err != nil {
		c.t.Fatalf("GET /device on instance %d: %v", i+1, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		c.t.Fatalf("GET /device on instance %d: HTTP %d without a CSRF token\n%s", i+1, resp.StatusCode, body)
	}
	return b, string(m[1])
}

// enterCode submits code on the device page of instance i with browser b.
func (c *cluster) enterCode(i int, b *http.Client, csrf, code string) *http.Response {
	c.t.Helper()
	form := url.Values{"csrf": {csrf}, "user_code": {code}, "action": {"continue"}}
	req, _ := http.NewRequestWithContext(ctx(c.t), http.MethodPost, c.url(i, "/device"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.Do(req)
	if err != nil {
		c.t.Fatalf("POST /device on instance %d: %v", i+1, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp
}

// TestPerUserLimitIsSharedAcrossInstances: limits.requests_per_user of 3
// per hour ("push bombing"), 9 requests for alice sent round-robin to the 3
// instances by two clients: exactly 3 are accepted and reach alice's
// authentication device; the other 6 are access_denied (403) with a
// description, and never reach her. Requests for bob are not held back.
func TestPerUserLimitIsSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	c := newLimitedCluster(t, `  requests_per_user: {requests: 3, per: 1h}
`, "")
	var accepted []request
	for n := range 9 {
		i := n % instances
		cl := testutil.DemoPoll
		if n%2 == 1 {
			cl = testutil.DemoPush
		}
		req := newRequest(cl, "Bomb")
		r, err := testutil.PostForm(ctx(t), c.url(i, "/bc-authorize"), cl, authorizeForm(req))
		if err != nil {
			t.Fatalf("POST /bc-authorize on instance %d: %v", i+1, err)
		}
		what := fmt.Sprintf("request %d for alice, by %s on instance %d", n+1, cl.ID, i+1)
		if r.Status == http.StatusOK {
			req.AuthReqID = r.Str("auth_req_id")
			accepted = append(accepted, req)
			continue
		}
		checkError(t, what, r, http.StatusForbidden, "access_denied")
		if d := r.Str("error_description"); !strings.Contains(d, "too many authentication requests for this user") {
			t.Errorf("%s: error_description %q, want it to say the user had too many requests", what, d)
		}
	}
	if len(accepted) != 3 {
		t.Fatalf("%d of 9 requests for one user over %d instances accepted, want 3 (requests_per_user 3 per hour)", len(accepted), instances)
	}
	for _, req := range accepted {
		c.message(req)
	}
	// Only the accepted requests reached alice's device. (A refused
	// request was answered before it was stored, so it has nothing to
	// deliver later either.)
	n := 0
	for _, m := range c.hook.Messages() {
		if strings.HasPrefix(m.BindingMessage, "Bomb ") {
			n++
		}
	}
	if n != 3 {
		t.Errorf("alice's device got %d messages, want the 3 accepted requests", n)
	}

	// Another user has an allowance of their own.
	req := newRequest(testutil.DemoPoll, "Bob")
	form := authorizeForm(req)
	form.Set("login_hint", "bob")
	r, err := testutil.PostForm(ctx(t), c.url(1, "/bc-authorize"), req.Client, form)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("a request for bob after alice's were refused: %v %v, want 200", r, err)
	}
}
