package e2e

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestLongPollRepollPace: a client whose poll was held to the end of the
// hold and answered authorization_pending may poll again at once: the hold
// was its wait (issue #21, item 9: it got slow_down, and the interval grew).
// A poll that is really early, right after one the client gave up on while
// it was held, still gets slow_down.
func TestLongPollRepollPace(t *testing.T) {
	t.Parallel()
	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	// The quick start holds polls 20 s, more than its interval (5 s, the
	// default), which is what this test needs; 6 s is too, and spares the
	// test 28 s of waiting out its two holds.
	cfg := strings.Replace(string(quick), "long_poll: 20s", "long_poll: 6s", 1)
	if !strings.Contains(cfg, "long_poll: 6s") {
		t.Fatal("the quick start config has no long_poll: 20s to change")
	}
	path := filepath.Join(t.TempDir(), "cibaproxy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: path, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL})
	req := e.mustAuthorize(testutil.DemoPoll, "Repoll")

	checkError(t, "held poll", e.token(req.Client, req.AuthReqID), http.StatusBadRequest, "authorization_pending")
	checkError(t, "poll sent right after the held poll's answer", e.token(req.Client, req.AuthReqID), http.StatusBadRequest, "authorization_pending")

	// The client gives up on a held poll and polls again at once: that one
	// comes before the interval has passed since the poll it gave up on.
	cx, cancel := context.WithTimeout(ctx(t), 300*time.Millisecond)
	r, err := testutil.PostForm(cx, e.url("/token"), req.Client, url.Values{
		"grant_type":  {testutil.GrantCIBA},
		"auth_req_id": {req.AuthReqID},
	})
	cancel()
	if err == nil {
		t.Fatalf("the poll after two held ones was answered at once with %s; want it held", r)
	}
	checkError(t, "poll right after one the client gave up on", e.token(req.Client, req.AuthReqID), http.StatusBadRequest, "slow_down")
}
