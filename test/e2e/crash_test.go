package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestCrashRecovery kills cibaproxy with SIGKILL while it holds requests in
// every state and restarts it on the same data directory and port: every
// request it acknowledged must still be there and complete normally.
//
// Of the 20 poll requests, 8 are approved before the kill ("Approved"), 7
// only had their webhook message delivered ("Pending"), and for 5 the
// webhook receiver refused every delivery until the kill ("Late"). A ping
// request is approved while its notification endpoint refuses pings, so
// its ping is still owed at the kill.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	e := start(t)
	const approved, pending, late = 8, 7, 5

	e.hook.Refuse(func(m testutil.Message) bool { return strings.HasPrefix(m.BindingMessage, "Late") })
	e.notify.Reply(http.StatusServiceUnavailable)

	var reqs []request
	groups := []struct {
		prefix string
		n      int
	}{{"Approved", approved}, {"Pending", pending}, {"Late", late}}
	for _, g := range groups {
		for range g.n {
			reqs = append(reqs, e.mustAuthorize(testutil.DemoPoll, g.prefix))
		}
	}
	group := func(prefix string) []request {
		var out []request
		for _, r := range reqs {
			if strings.HasPrefix(r.Binding, prefix) {
				out = append(out, r)
			}
		}
		return out
	}

	// Before the kill: every webhook message delivered (or, for "Late",
	// attempted), the "Approved" ones approved.
	messages := map[string]testutil.Message{}
	for _, r := range reqs {
		if strings.HasPrefix(r.Binding, "Late") {
			if _, err := e.hook.WaitRefused(ctx(t), r.Binding); err != nil {
				t.Fatal(err)
			}
			continue
		}
		messages[r.Binding] = e.message(r)
	}
	for _, r := range group("Approved") {
		e.answer(r, "approved")
	}
	ping := e.mustAuthorize(testutil.DemoPing, "Ping")
	e.answer(ping, "approved")
	if _, err := e.notify.WaitAttempt(ctx(t), ping.AuthReqID); err != nil {
		t.Fatalf("no ping attempt before the kill: %v", err)
	}

	e.srv.Kill()
	e.hook.Refuse(nil)
	e.notify.Reply(http.StatusNoContent)
	e.srv.Restart()

	// Each request completes independently; run them concurrently and
	// collect failures (t.Fatal is for the test goroutine only).
	var (
		mu   sync.Mutex
		errs []string
		wg   sync.WaitGroup
	)
	fail := func(r request, format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf("%s (%s): %s", r.Binding, r.AuthReqID, fmt.Sprintf(format, args...)))
		mu.Unlock()
	}
	redeem := func(r request) {
		first := e.tokenNoFatal(r.Client, r.AuthReqID)
		if first.Status != http.StatusOK || first.Str("access_token") == "" || first.Str("id_token") == "" {
			fail(r, "/token after restart: got %s, want 200 with tokens", first)
			return
		}
		second := e.tokenNoFatal(r.Client, r.AuthReqID)
		if second.Status != http.StatusBadRequest || second.Str("error") != "invalid_grant" {
			fail(r, "second /token after restart: got %s, want 400 invalid_grant (tokens exactly once)", second)
		}
	}
	for _, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch {
			case strings.HasPrefix(r.Binding, "Approved"):
			case strings.HasPrefix(r.Binding, "Pending"):
				// The callback token from before the crash still works.
				m := messages[r.Binding]
				resp, err := testutil.Callback(ctx(t), m, "approved")
				if err != nil || resp.Status != http.StatusNoContent {
					fail(r, "callback after restart with the token from before the crash: got %v %v, want 204", resp, err)
					return
				}
			case strings.HasPrefix(r.Binding, "Late"):
				// The webhook message owed at the crash is delivered now.
				m, err := e.hook.WaitBinding(ctx(t), r.Binding)
				if err != nil {
					fail(r, "%v", err)
					return
				}
				resp, err := testutil.Callback(ctx(t), m, "approved")
				if err != nil || resp.Status != http.StatusNoContent {
					fail(r, "callback after restart: got %v %v, want 204", resp, err)
					return
				}
			}
			redeem(r)
		}()
	}
	wg.Wait()
	for _, msg := range errs {
		t.Error(msg)
	}

	// The ping owed at the crash arrives after the restart.
	n, err := e.notify.WaitFor(ctx(t), ping.AuthReqID)
	if err != nil {
		t.Fatalf("the ping of a request approved before the crash never arrived after the restart: %v", err)
	}
	if n.Bearer != ping.NotificationToken {
		t.Errorf("ping bearer after restart = %q, want %q", n.Bearer, ping.NotificationToken)
	}
	tr := checkTokens(t, "ping client's /token after restart", e.token(ping.Client, ping.AuthReqID))
	checkError(t, "ping client's second /token", e.token(ping.Client, ping.AuthReqID), http.StatusBadRequest, "invalid_grant")

	// These tokens were minted at the approval, before the crash: the
	// signing key and the refresh token survived it.
	tok := e.verifyIDToken(tr.Str("id_token"), ping.Client.ID)
	if tok.str("sub") != "alice" {
		t.Errorf("ID token sub = %q, want alice", tok.str("sub"))
	}
	if rt := tr.Str("refresh_token"); rt != "" {
		r, err := testutil.PostForm(ctx(t), e.url("/token"), ping.Client, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusOK || r.Str("access_token") == "" {
			t.Errorf("refresh with a refresh token issued before the crash: got %s, want 200", r)
		}
	}
}

// TestDataDirInUse: a second cibaproxy on the data directory of a running
// one must refuse to start (the embedded store is single-writer) instead of
// hanging or sharing the file, and the first one keeps serving.
func TestDataDirInUse(t *testing.T) {
	t.Parallel()
	e := start(t)
	addr, err := testutil.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(cx, binary, "serve", "--config", testutil.QuickstartConfig(), "--listen", addr)
	cmd.Env = append(os.Environ(), "CIBAPROXY_ISSUER=http://"+addr, "CIBAPROXY_DATA="+e.srv.DataDir,
		"CIBAPROXY_WEBHOOK_URL="+e.hook.URL, "CIBAPROXY_DEMO_NOTIFY_URL="+e.notify.URL,
		"CIBAPROXY_METRICS_LISTEN="+strings.TrimPrefix(e.srv.MetricsURL, "http://")) // not the first one's: only the data directory may clash
	out, err := cmd.CombinedOutput()
	switch {
	case cx.Err() != nil:
		t.Errorf("a second cibaproxy on a data directory in use neither exited nor failed within %v:\n%s", waitTimeout, out)
	case err == nil:
		t.Errorf("a second cibaproxy on a data directory in use exited with status 0:\n%s", out)
	default:
		t.Logf("second instance refused to start as it should (%v): %s", err, strings.TrimSpace(string(out)))
	}
	r, err := testutil.Get(ctx(t), e.url("/healthz"))
	if err != nil || r.Status != http.StatusOK {
		t.Errorf("the first instance's /healthz after the second one tried: %v %v", r, err)
	}
}
