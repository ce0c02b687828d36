package e2e

import (
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
