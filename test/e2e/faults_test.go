package e2e

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestKillUnderLoad kills cibaproxy with SIGKILL while eight clients create
// requests and poll them as fast as they can, then restarts it: every
// request it acknowledged (answered 200 with an auth_req_id) must still be
// there and complete. The webhook receiver approves every message it gets,
// including the ones cibaproxy sends again after the restart; an approval
// the kill cut off (the callback got no 204) is sent again, as an
// authentication device must.
func TestKillUnderLoad(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.hook.AutoAnswerLeniently("approved")

	var (
		mu    sync.Mutex
		acked []string
		binds = map[string]string{} // auth_req_id → binding_message
		// done: the client's own poll got the tokens before the kill.
		// cut: that poll got no answer (the kill cut it), so its request
		// may have been redeemed with the answer lost on the way.
		done = map[string]bool{}
		cut  = map[string]bool{}
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Bounded: at most 500 requests per client, and only until the kill.
			for i := 0; i < 500 && !stop.Load(); i++ {
				binding := tag("Load")
				form := url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}}
				c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				r, err := testutil.PostForm(c, e.url("/bc-authorize"), testutil.DemoPoll, form)
				cancel()
				if err != nil || r.Status != http.StatusOK {
					continue // the kill cut it: not acknowledged
				}
				mu.Lock()
				acked = append(acked, r.Str("auth_req_id"))
				binds[r.Str("auth_req_id")] = binding
				mu.Unlock()
				// A poll at once, as an impatient client would.
				id := r.Str("auth_req_id")
				c, cancel = context.WithTimeout(context.Background(), 2*time.Second)
				p, err := testutil.PostForm(c, e.url("/token"), testutil.DemoPoll, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {id}})
				cancel()
				mu.Lock()
				switch {
				case err != nil:
					cut[id] = true
				case p.Status == http.StatusOK:
					done[id] = true
				}
				mu.Unlock()
			}
		}()
	}
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.srv.Kill()
	stop.Store(true)
	wg.Wait()
	e.srv.Restart()

	t.Logf("%d requests acknowledged before the kill (%d already redeemed by their client, %d polls cut by the kill)", len(acked), len(done), len(cut))
	// Every acknowledged request completes: the receiver approves it (its
	// message is resent after the restart when needed), and one poll gets
	// the tokens. Polls are held until the answer lands (long polling).
	sem := make(chan struct{}, 16)
	var failed atomic.Int32
	var pw sync.WaitGroup
	for _, id := range acked {
		if done[id] {
			continue
		}
		sem <- struct{}{}
		pw.Add(1)
		go func() {
			defer func() { <-sem; pw.Done() }()
			deadline := time.Now().Add(waitTimeout)
			// The device answers again (its first answer may have died
			// with the server): before the first poll, which is held up
			// to 20 s for an answer that may never come, after a held
			// poll ended pending, and at every fifth slow_down.
			answerAgain := func() {
				c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if m, err := e.hook.WaitBinding(c, binds[id]); err == nil {
					_, _ = testutil.Callback(c, m, "approved")
				}
				cancel()
			}
			answerAgain()
			for i := 0; time.Now().Before(deadline); i++ {
				r := e.tokenNoFatal(testutil.DemoPoll, id)
				switch r.Str("error") {
				case "authorization_pending", "slow_down":
					if r.Str("error") == "authorization_pending" || i%5 == 4 {
						answerAgain()
					}
					time.Sleep(200 * time.Millisecond)
					continue
				case "":
					if r.Status == http.StatusOK && r.Str("access_token") != "" {
						return
					}
				case "invalid_grant":
					if cut[id] {
						return // redeemed by the poll the kill cut: its answer was lost, not the request
					}
				}
				t.Errorf("acknowledged request %.8s… after the restart: %s", id, r)
				failed.Add(1)
				return
			}
			t.Errorf("acknowledged request %.8s… did not complete after the restart", id)
			failed.Add(1)
		}()
	}
	pw.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d acknowledged requests were lost or failed", failed.Load(), len(acked))
	}
}

// TestNotificationEndpointDownThirtySeconds: the clients' notification
// endpoint refuses everything for 30 s after the approvals; once it is
// back, the ping and the push each arrive, exactly once.
func TestNotificationEndpointDownThirtySeconds(t *testing.T) {
	t.Parallel()
	e := start(t)
	e.notify.Reply(http.StatusServiceUnavailable)
	ping := e.mustAuthorize(testutil.DemoPing, "Down")
	push := e.mustAuthorize(testutil.DemoPush, "Down")
	e.answer(ping, "approved")
	e.answer(push, "approved")
	if _, err := e.notify.WaitAttempt(ctx(t), ping.AuthReqID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second)
	e.notify.Reply(http.StatusNoContent)

	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // the retry backoff reaches 1 min
	defer cancel()
	for _, req := range []request{ping, push} {
		if _, err := e.notify.WaitFor(c, req.AuthReqID); err != nil {
			t.Fatalf("%s: %v", req.Client.ID, err)
		}
	}
	checkTokens(t, "ping client's token request", e.token(testutil.DemoPing, ping.AuthReqID))
	// Count once the store records each delivery done: after that it is
	// never sent again, so a stray retry would already be in the count.
	op := operator{e: e}
	for _, req := range []request{ping, push} {
		waitNoticeDone(t, op, req)
	}
	for _, req := range []request{ping, push} {
		ok, refused := 0, 0
		for _, n := range e.notify.For(req.AuthReqID) {
			if n.Status/100 == 2 {
				ok++
			} else {
				refused++
			}
		}
		if ok != 1 {
			t.Errorf("%s: %d accepted notifications, want exactly 1 (after %d refused)", req.Client.ID, ok, refused)
		}
		if refused < 2 {
			t.Errorf("%s: only %d refused attempts in 30 s: the retries did not happen", req.Client.ID, refused)
		}
	}
}
