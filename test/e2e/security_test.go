package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestOutboundAndPushBombing runs the quickstart with two changes: the
// outbound policy allows http but no special-use network, and the ping and
// push clients' notification endpoint is named "localhost", a host name
// the configuration check cannot judge. At run time the name resolves to
// loopback and the ping is refused at connection time (server-side request
// forgery), while the operator's webhook on 127.0.0.1 is not restricted.
// The per-user limit is 3 requests per 10 minutes: the 4th request for alice
// is refused with access_denied, from any client ("push bombing").
func TestOutboundAndPushBombing(t *testing.T) {
	t.Parallel()
	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	const open = `allow_networks: [127.0.0.0/8, "::1/128"]`
	if !strings.Contains(string(quick), open) {
		t.Fatalf("examples/quickstart.yaml no longer has %s", open)
	}
	cfg := strings.Replace(string(quick), open, "allow_networks: []", 1)
	path := filepath.Join(t.TempDir(), "quickstart.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	internal := strings.Replace(e.notify.URL, "127.0.0.1", "localhost", 1)
	e.srv = testutil.Start(t, testutil.Options{
		Binary: binary, Config: path, WebhookURL: e.hook.URL, NotifyURL: internal,
		Env: []string{"CIBAPROXY_REQUESTS_PER_USER=3"},
	})

	t.Run("a notification endpoint on loopback is refused when it is not allowlisted", func(t *testing.T) {
		req := e.mustAuthorize(testutil.DemoPing, "ssrf")
		e.answer(req, "approved") // the webhook (operator-set) works
		cx := ctx(t)
		for !strings.Contains(e.srv.Logs(), "refused to connect to") {
			select {
			case <-cx.Done():
				t.Fatalf("no refused connection in the log within %v:\n%s", waitTimeout, e.srv.Logs())
			case <-time.After(50 * time.Millisecond):
			}
		}
		if n := e.notify.For(req.AuthReqID); len(n) != 0 {
			t.Fatalf("the receiver on loopback got %d notifications", len(n))
		}
		logs := e.srv.Logs()
		if !strings.Contains(logs, "outbound.allow_networks") {
			t.Errorf("the log does not say how to allow the address")
		}
		if strings.Contains(logs, req.NotificationToken) {
			t.Errorf("the log holds the client_notification_token")
		}
	})

	t.Run("the 4th request for one user in 10 minutes is access_denied, from any client", func(t *testing.T) {
		// The first request for alice was the ping above.
		for i := range 2 {
			binding := tag("accepted")
			if r := e.authorize(testutil.DemoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}}); r.Status != http.StatusOK {
				t.Fatalf("request %d for alice: %s", i+2, r)
			}
			if _, err := e.hook.WaitBinding(ctx(t), binding); err != nil {
				t.Fatal(err)
			}
		}
		refused := tag("refused")
		for _, c := range []testutil.Client{testutil.DemoPoll, testutil.DemoPush} {
			form := url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {refused}, "client_notification_token": {notificationToken()}}
			if c == testutil.DemoPoll {
				form.Del("client_notification_token")
			}
			r := e.authorize(c, form)
			if r.Status != http.StatusForbidden || r.Str("error") != "access_denied" ||
				!strings.Contains(r.Str("error_description"), "too many authentication requests for this user") {
				t.Fatalf("4th request for alice from %s: %s, want 403 access_denied saying why", c.ID, r)
			}
			if r.Str("auth_req_id") != "" {
				t.Fatal("the refused request has an auth_req_id")
			}
		}
		for _, m := range e.hook.Messages() {
			if strings.Contains(string(m.Raw), refused) {
				t.Errorf("a refused request reached the user: %s", m.Raw)
			}
		}
		if r := e.authorize(testutil.DemoPoll, url.Values{"scope": {"openid"}, "login_hint": {"bob"}}); r.Status != http.StatusOK {
			t.Fatalf("bob is held by alice's limit: %s", r)
		}
	})
}
