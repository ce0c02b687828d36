package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestLogsHoldNoSecret runs poll, push, refresh and a wrong-secret attempt
// with debug logging on, then searches the whole server log for every
// secret and token the run used: none may appear.
func TestLogsHoldNoSecret(t *testing.T) {
	t.Parallel()
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{
		Binary: binary, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL, Env: []string{"CIBAPROXY_LOG_LEVEL=debug"},
	})

	secrets := map[string]string{
		"client secret demo-poll": "demo-poll-secret", "client secret demo-push": "demo-push-secret",
		"wrong client secret": "wrong-secret-value-1234",
	}
	poll := e.mustAuthorize(testutil.DemoPoll, "Logs")
	m := e.answer(poll, "approved")
	secrets["callback token"] = m.Token
	secrets["auth_req_id (poll)"] = poll.AuthReqID
	r := checkTokens(t, "poll tokens", e.token(poll.Client, poll.AuthReqID))
	for _, k := range []string{"access_token", "refresh_token", "id_token"} {
		secrets["poll "+k] = r.Str(k)
	}
	rr, err := testutil.PostForm(ctx(t), e.url("/token"), poll.Client, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.Str("refresh_token")}})
	if err != nil {
		t.Fatal(err)
	}
	secrets["refreshed access_token"] = rr.Str("access_token")

	push := e.mustAuthorize(testutil.DemoPush, "Logs")
	secrets["client_notification_token"] = push.NotificationToken
	e.answer(push, "approved")
	n, err := e.notify.WaitFor(ctx(t), push.AuthReqID)
	if err != nil {
		t.Fatal(err)
	}
	secrets["pushed access_token"], _ = n.Body["access_token"].(string)

	bad := testutil.DemoPoll
	bad.Secret = secrets["wrong client secret"]
	if _, err := testutil.PostForm(ctx(t), e.url("/token"), bad, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {poll.AuthReqID}}); err != nil {
		t.Fatal(err)
	}

	e.srv.Stop()
	logs := e.srv.Logs()
	if !strings.Contains(logs, "tokens delivered") {
		t.Fatalf("the log does not look like a full run:\n%s", logs)
	}
	for what, s := range secrets {
		if s == "" {
			t.Errorf("%s: the test did not capture it", what)
			continue
		}
		if strings.Contains(logs, s) {
			t.Errorf("the %s appears in the server log", what)
		}
	}
}

// TestRequestLogAndMetrics runs a poll flow with a request id set by a
// proxy, then checks the log (one line per request carrying its id, and the
// service's lines of that request carry it too) and the metrics (requests by
// endpoint, client and result; deliveries; requests by state; store timing).
func TestRequestLogAndMetrics(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.mustAuthorize(testutil.DemoPoll, "Metrics")
	// The quickstart holds polls (long polling): a second poll while the
	// first is held is slow_down, and the held one gets the tokens.
	polls := make(chan *testutil.Response, 2)
	for range 2 {
		go func() { polls <- e.tokenNoFatal(testutil.DemoPoll, req.AuthReqID) }()
	}
	checkError(t, "a poll beside a held one", <-polls, http.StatusBadRequest, "slow_down")
	e.answer(req, "approved")
	checkTokens(t, "held poll", <-polls)

	hreq, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, e.url("/bc-authorize"), strings.NewReader("scope=openid&login_hint=alice"))
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hreq.SetBasicAuth(testutil.DemoPoll.ID, testutil.DemoPoll.Secret)
	hreq.Header.Set("X-Request-Id", "proxy-id-4711")
	r, err := testutil.Do(hreq)
	if err != nil || r.Status != 200 {
		t.Fatalf("bc-authorize with a request id: %v %v", r, err)
	}
	if got := r.Header.Get("X-Request-Id"); got != "proxy-id-4711" {
		t.Errorf("X-Request-Id answered %q, want the proxy's", got)
	}
	hreq, _ = http.NewRequestWithContext(ctx(t), http.MethodGet, e.url("/healthz"), nil)
	hreq.Header.Set("X-Request-Id", "bad id forged=1")
	r, err = testutil.Do(hreq)
	if err != nil || r.Header.Get("X-Request-Id") == "" || strings.Contains(r.Header.Get("X-Request-Id"), " ") {
		t.Errorf("an invalid request id was not replaced: %v %q", err, r.Header.Get("X-Request-Id"))
	}

	// The example configurations serve the metrics on the operators' own
	// listener (metrics.listen), not beside the protocol endpoints.
	if r, err := testutil.Get(ctx(t), e.url("/metrics")); err != nil || r.Status != http.StatusNotFound {
		t.Errorf("GET /metrics on the main listener: %v %v, want 404", r, err)
	}
	m, err := testutil.Get(ctx(t), e.srv.MetricsURL+"/metrics")
	if err != nil || m.Status != 200 {
		t.Fatalf("GET /metrics: %v %v", m, err)
	}
	body := string(m.Body)
	for _, want := range []string{
		`cibaproxy_http_requests_total{client="demo-poll",endpoint="/token",result="slow_down"}`,
		`cibaproxy_http_requests_total{client="demo-poll",endpoint="/token",result="ok"} 1`,
		`cibaproxy_http_requests_total{client="demo-poll",endpoint="/bc-authorize",result="ok"} 2`,
		`cibaproxy_http_requests_total{client="-",endpoint="/ciba/callback",result="ok"} 1`,
		`cibaproxy_delivery_attempts_total{kind="webhook",result="ok"}`,
		`cibaproxy_requests{mode="poll",state="pending"} 1`,
		`cibaproxy_requests{mode="poll",state="redeemed"} 1`,
		`cibaproxy_store_operation_duration_seconds_count{op="create"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, req.AuthReqID) {
		t.Error("/metrics holds an auth_req_id")
	}

	e.srv.Stop()
	logs := e.srv.Logs()
	requests := 0
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "msg=request ") {
			requests++
			if !strings.Contains(line, "request_id=") {
				t.Errorf("a request line has no request_id: %s", line)
			}
		}
		if strings.Contains(line, "auth request created") && !strings.Contains(line, "request_id=") {
			t.Errorf("a service line of a request has no request_id: %s", line)
		}
	}
	if requests < 5 {
		t.Errorf("found %d request lines, want one per request:\n%s", requests, logs)
	}
	if !strings.Contains(logs, "request_id=proxy-id-4711") {
		t.Error("the proxy's request id is not in the log")
	}
}
