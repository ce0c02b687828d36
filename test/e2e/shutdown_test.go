package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestShutdownFinishesHeldPoll: SIGTERM while a /token poll is held (the
// quick start's ciba.long_poll is 20s) answers that poll at once with a
// complete authorization_pending error rather than cutting it, stops
// taking connections before it answers, and exits with status 0 well
// within testutil.StopTimeout (15s, shorter than the hold).
func TestShutdownFinishesHeldPoll(t *testing.T) {
	t.Parallel()
	e := start(t)
	req := e.mustAuthorize(testutil.DemoPoll, "Held")
	e.message(req) // the webhook message went out: nothing else is in flight

	answered := make(chan *testutil.Response, 1)
	go func() { answered <- e.tokenNoFatal(req.Client, req.AuthReqID) }()
	// Give the poll a moment to reach the server; it must be held there,
	// not answered, as the request is pending and long polling is on.
	select {
	case r := <-answered:
		t.Fatalf("the poll was answered before SIGTERM with %s; with long polling on it should be held", r)
	case <-time.After(500 * time.Millisecond):
	}

	// Stop sends SIGTERM, waits for the exit and fails the test unless the
	// process exits with status 0 within testutil.StopTimeout.
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.srv.Stop()
	}()
	var r *testutil.Response
	select {
	case r = <-answered:
	case <-time.After(waitTimeout):
		t.Fatal("the held poll got no answer after SIGTERM")
	}
	if r.Status == 0 {
		t.Fatalf("the held poll was cut by the shutdown instead of answered: %s", r.Body)
	}
	// The whole JSON body arrived (testutil reads it to the end): the
	// answer a poll of a pending request gets, not a cut connection.
	checkError(t, "held poll at SIGTERM", r, http.StatusBadRequest, "authorization_pending")
	if r.JSON == nil {
		t.Errorf("held poll at SIGTERM: the body is not a JSON object: %q", r.Body)
	}

	// The held poll is answered only after the listener closed: a new
	// connection is refused, whether or not the process has exited yet.
	refused := func(when string) {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
		cx, cancel := context.WithTimeout(context.Background(), testutil.CallTimeout)
		defer cancel()
		hr, err := http.NewRequestWithContext(cx, http.MethodPost, e.url("/token"), strings.NewReader(url.Values{
			"grant_type": {testutil.GrantCIBA}, "auth_req_id": {req.AuthReqID},
		}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		hr.SetBasicAuth(req.Client.ID, req.Client.Secret)
		resp, err := c.Do(hr)
		if err == nil {
			resp.Body.Close()
			t.Errorf("a /token request %s was answered %s; want the connection refused", when, resp.Status)
			return
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("a /token request %s failed with %v; want the connection refused", when, err)
		}
	}
	refused("after the held poll was answered")
	<-stopped
	refused("after the process exited")
}

// TestShutdownResumesDeliveries: a ping and a push that the clients'
// notification endpoint refuses (503) are being retried when cibaproxy gets
// SIGTERM; once the endpoint accepts again and cibaproxy restarts on the
// same embedded store, each arrives exactly once, and the ping client gets
// its tokens exactly once from /token (the push client had them in the
// push).
func TestShutdownResumesDeliveries(t *testing.T) {
	t.Parallel()
	e := start(t)
	op := operator{e: e}
	e.notify.Reply(http.StatusServiceUnavailable)
	ping := e.mustAuthorize(testutil.DemoPing, "Resume")
	push := e.mustAuthorize(testutil.DemoPush, "Resume")
	e.answer(ping, "approved")
	e.answer(push, "approved")

	// Two refused attempts each: the deliveries are in their retries.
	for _, req := range []request{ping, push} {
		waitAttempts(t, e, req, 2)
		if got := showNotice(t, op, req); got.ClientNotice.Done || !got.ClientNotice.Due {
			t.Fatalf("%s: client_notice %+v before SIGTERM, want due and not done", req.Client.ID, got.ClientNotice)
		}
	}
	e.srv.Stop()
	refusedBefore := map[string]int{}
	for _, req := range []request{ping, push} {
		for _, n := range e.notify.For(req.AuthReqID) {
			if n.Status/100 == 2 {
				t.Fatalf("%s: a notification was accepted before the restart", req.Client.ID)
			}
			refusedBefore[req.AuthReqID]++
		}
	}

	e.notify.Reply(http.StatusNoContent)
	e.srv.Restart()

	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // the retry backoff reaches 1 min
	defer cancel()
	for _, req := range []request{ping, push} {
		n, err := e.notify.WaitFor(c, req.AuthReqID)
		if err != nil {
			t.Fatalf("%s: the notification owed at SIGTERM never arrived after the restart: %v", req.Client.ID, err)
		}
		if n.Bearer != req.NotificationToken {
			t.Errorf("%s: notification bearer = %q, want the client_notification_token %q", req.Client.ID, n.Bearer, req.NotificationToken)
		}
	}
	pushed, _ := e.notify.WaitFor(c, push.AuthReqID)
	if pushed.Body["access_token"] == nil || pushed.Body["id_token"] == nil {
		t.Errorf("the push after the restart carries no tokens: %s", pushed.Raw)
	}
	checkTokens(t, "ping client's /token after the restart", e.token(ping.Client, ping.AuthReqID))
	checkError(t, "ping client's second /token", e.token(ping.Client, ping.AuthReqID), http.StatusBadRequest, "invalid_grant")
	checkError(t, "/token by the push client", e.token(push.Client, push.AuthReqID), http.StatusBadRequest, "unauthorized_client")

	// Exactly once: once the store records a delivery done it is never
	// sent again, so count the accepted ones after that.
	for _, req := range []request{ping, push} {
		got := waitNoticeDone(t, op, req)
		ok, refused := 0, 0
		for _, n := range e.notify.For(req.AuthReqID) {
			if n.Status/100 == 2 {
				ok++
			} else {
				refused++
			}
		}
		if ok != 1 {
			t.Errorf("%s: %d accepted notifications, want exactly 1", req.Client.ID, ok)
		}
		if refused != refusedBefore[req.AuthReqID] {
			t.Errorf("%s: %d refused notifications, want the %d from before the restart", req.Client.ID, refused, refusedBefore[req.AuthReqID])
		}
		if req.Client.ID == testutil.DemoPush.ID && (got.State != "redeemed" || got.TokensHeld) {
			t.Errorf("push request after its push: state %q, tokens held %v; want redeemed, none held", got.State, got.TokensHeld)
		}
	}
}

// noticeState is the part of `requests show --json` these tests read.
type noticeState struct {
	State        string `json:"state"`
	TokensHeld   bool   `json:"tokens_held"`
	ClientNotice struct {
		Due      bool `json:"due"`
		Done     bool `json:"done"`
		Attempts int  `json:"attempts"`
	} `json:"client_notice"`
}

// showNotice reads req as `requests show --json` prints it.
func showNotice(t *testing.T, op operator, req request) noticeState {
	t.Helper()
	out := op.mustCLI(t, "requests", "show", req.AuthReqID, "--json")
	var s noticeState
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("requests show --json: %v\n%s", err, out)
	}
	return s
}

// waitAttempts waits (bounded by waitTimeout) until the notification
// endpoint got at least n attempts for req.
func waitAttempts(t *testing.T, e *env, req request, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for len(e.notify.For(req.AuthReqID)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d notification attempts within %v, want %d", req.Client.ID, len(e.notify.For(req.AuthReqID)), waitTimeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitNoticeDone waits (bounded by waitTimeout) until the store records
// req's client notification done, and returns the request as then shown.
func waitNoticeDone(t *testing.T, op operator, req request) noticeState {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		s := showNotice(t, op, req)
		if s.ClientNotice.Done {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: client_notice %+v %v after the notification was accepted, want done", req.Client.ID, s.ClientNotice, waitTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestShutdownFinishesInFlightDelivery: SIGTERM while a ping is on its way
// (the client's notification endpoint has it and has not answered yet)
// lets that ping finish and records it, so the restarted cibaproxy does
// not send it again: a receiver sees a message twice only when the process
// dies (docs/design.md, "Delivery: exactly once").
func TestShutdownFinishesInFlightDelivery(t *testing.T) {
	t.Parallel()
	slow := newHeldNotifier(t)
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{Binary: binary, WebhookURL: e.hook.URL, NotifyURL: slow.URL})
	ping := e.mustAuthorize(testutil.DemoPing, "InFlight")
	e.answer(ping, "approved")
	select {
	case <-slow.arrived:
	case <-time.After(waitTimeout):
		t.Fatal("the ping never reached the notification endpoint")
	}

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.srv.Stop() // fails the test unless it exits 0 within testutil.StopTimeout
	}()
	// The shutdown is under way once the listener is closed. Answer the
	// ping then, or as soon as cibaproxy gives up on it, if sooner than a
	// moment after.
	waitRefused(t, e.srv.Addr)
	select {
	case <-slow.gone:
	case <-time.After(time.Second):
	}
	close(slow.release)
	<-stopped

	e.srv.Restart()
	checkTokens(t, "ping client's /token after the restart", e.token(ping.Client, ping.AuthReqID))
	got := waitNoticeDone(t, operator{e: e}, ping)
	if n := slow.accepted(ping.AuthReqID); n != 1 {
		t.Errorf("the notification endpoint accepted %d pings for one request, want exactly 1 (client_notice %+v)", n, got.ClientNotice)
	}
}

// heldNotifier is a notification endpoint that holds the first ping until
// release is closed, then accepts it (204); later ones it accepts at once.
type heldNotifier struct {
	URL     string
	arrived chan struct{} // closed when the first ping arrived
	gone    chan struct{} // closed when its sender gave up on the first ping
	release chan struct{} // closed by the test: answer the first ping

	mu    sync.Mutex
	first bool
	ok    map[string]int // auth_req_id → pings accepted
}

func newHeldNotifier(t *testing.T) *heldNotifier {
	h := &heldNotifier{arrived: make(chan struct{}), gone: make(chan struct{}), release: make(chan struct{}), ok: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		srv.Close()
	})
	h.URL = srv.URL + "/notify"
	return h
}

func (h *heldNotifier) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AuthReqID string `json:"auth_req_id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil || body.AuthReqID == "" {
		http.Error(w, "want {\"auth_req_id\": ...}", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	first := !h.first
	h.first = true
	h.mu.Unlock()
	if first {
		close(h.arrived)
		select {
		case <-h.release:
		case <-r.Context().Done():
			close(h.gone)
			<-h.release
		}
	}
	// The receiver acted on the ping, whether or not its answer still
	// reaches cibaproxy.
	h.mu.Lock()
	h.ok[body.AuthReqID]++
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *heldNotifier) accepted(authReqID string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ok[authReqID]
}

// waitRefused waits (bounded by waitTimeout) until addr refuses
// connections.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		} else if errors.Is(err, syscall.ECONNREFUSED) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still takes connections %v after SIGTERM (last: %v)", addr, waitTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShutdownFinishesInFlightRequest: a bc-authorize still in flight when
// SIGTERM arrives (it waits for the validation hook, which answers only
// after the signal) finishes: the hook's verdict arrives, the request is
// stored and the client gets its auth_req_id, and the process exits 0. The
// signal must not cancel the requests being served, only release held
// polls.
func TestShutdownFinishesInFlightRequest(t *testing.T) {
	t.Parallel()
	called := make(chan struct{}, 1)
	release := make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case called <- struct{}{}:
		default:
		}
		<-release
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"allow":true}`)
	}))
	t.Cleanup(hook.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	e := startValidated(t, hook.URL, "closed")

	answered := make(chan *testutil.Response, 1)
	go func() {
		r, err := testutil.PostForm(ctx(t), e.url("/bc-authorize"), testutil.DemoPoll,
			url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {"InFlight"}})
		if err != nil {
			r = &testutil.Response{Body: []byte(err.Error())} // Status 0: cut
		}
		answered <- r
	}()
	select {
	case <-called:
	case <-time.After(waitTimeout):
		t.Fatal("the validation hook was never called")
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		e.srv.Stop() // SIGTERM; fails the test unless the exit is 0 within StopTimeout
	}()
	// The listener closes on SIGTERM; only then does the hook answer.
	waitRefused(t, e.srv.Addr)
	close(release)
	var r *testutil.Response
	select {
	case r = <-answered:
	case <-time.After(waitTimeout):
		t.Fatal("the in-flight bc-authorize got no answer after SIGTERM")
	}
	if r.Status != http.StatusOK {
		t.Fatalf("the in-flight bc-authorize answered %d %s; want 200 with an auth_req_id", r.Status, r.Body)
	}
	var ok struct {
		AuthReqID string `json:"auth_req_id"`
	}
	if err := json.Unmarshal(r.Body, &ok); err != nil || ok.AuthReqID == "" {
		t.Fatalf("the in-flight bc-authorize answered %s: %v", r.Body, err)
	}
	<-stopped
}
