package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// reloadClient is the client the test adds to the configuration.
var reloadClient = testutil.Client{ID: "reload-poll", Secret: "reload-poll-secret-3f9a"}

const reloadClientYAML = `
  - client_id: reload-poll
    client_name: Added by a reload
    client_secret: reload-poll-secret-3f9a
    token_endpoint_auth_methods: [client_secret_basic]
    backchannel_token_delivery_mode: poll
`

// A client added to the file works after SIGHUP; a broken file keeps the
// clients in force, and the log says why.
func TestReloadClientsOnSIGHUP(t *testing.T) {
	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cibaproxy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(string(quick))
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: path, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL})

	form := func(prefix string) (url.Values, string) {
		b := tag(prefix)
		return url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {b}}, b
	}
	f, _ := form("before")
	if r := e.authorize(reloadClient, f); r.Status != http.StatusUnauthorized {
		t.Fatalf("bc-authorize as the client not yet in the file: got %s, want 401", r)
	}

	// Add the client and change a setting that needs a restart.
	added := strings.Replace(string(quick)+reloadClientYAML, "long_poll: 20s", "long_poll: 19s", 1)
	if !strings.Contains(added, "long_poll: 19s") {
		t.Fatal("the quick start config has no long_poll: 20s to change")
	}
	write(added)
	hup(t, e.srv, "clients reloaded", 1)

	f, binding := form("reloaded")
	r := e.authorize(reloadClient, f)
	if r.Status != http.StatusOK {
		t.Fatalf("bc-authorize as the added client after SIGHUP: got %s, want 200", r)
	}
	req := request{Client: reloadClient, AuthReqID: r.Str("auth_req_id"), Binding: binding}
	e.answer(req, "approved")
	checkTokens(t, "token of the added client", e.token(reloadClient, req.AuthReqID))
	logs := e.srv.Logs()
	if !strings.Contains(logs, "added=reload-poll") {
		t.Errorf("the reload log does not name the added client:\n%s", logs)
	}
	if !strings.Contains(logs, "settings=ciba") {
		t.Errorf("the log does not say the changed ciba.long_poll needs a restart:\n%s", logs)
	}

	// Break the file: an unknown delivery mode and the added client twice.
	write(added + strings.Replace(reloadClientYAML, "backchannel_token_delivery_mode: poll", "backchannel_token_delivery_mode: carrier-pigeon", 1))
	hup(t, e.srv, "the clients in force are kept", 1)
	logs = e.srv.Logs()
	for _, want := range []string{"configuration problem", "clients[4]", "carrier-pigeon"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log of the refused reload lacks %q:\n%s", want, logs)
		}
	}
	for _, c := range []testutil.Client{testutil.DemoPoll, reloadClient} {
		f, _ := form("after broken")
		if r := e.authorize(c, f); r.Status != http.StatusOK {
			t.Errorf("bc-authorize as %s after a refused reload: got %s, want 200", c.ID, r)
		}
	}

	// Removing the client again takes it away.
	write(string(quick))
	hup(t, e.srv, "clients reloaded", 2)
	f, _ = form("removed")
	if r := e.authorize(reloadClient, f); r.Status != http.StatusUnauthorized {
		t.Errorf("bc-authorize as the removed client: got %s, want 401", r)
	}
	if logs := e.srv.Logs(); strings.Contains(logs, reloadClient.Secret) {
		t.Errorf("the log holds the client secret")
	}
}

// hup sends SIGHUP to srv and waits until its log holds want n times.
func hup(t *testing.T, srv *testutil.Server, want string, n int) {
	t.Helper()
	if err := srv.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for strings.Count(srv.Logs(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log %v after SIGHUP:\n%s", want, waitTimeout, srv.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
