package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// cliResult is what one run of an operator command printed, and its exit
// code.
type cliResult struct {
	Stdout, Stderr string
	Code           int
}

func (r cliResult) String() string {
	return "exit " + strconv.Itoa(r.Code) + "\nstdout:\n" + r.Stdout + "\nstderr:\n" + r.Stderr
}

// operator runs the operator commands against the server of e.
type operator struct {
	e *env
	// config is the server's config file (the quick start when empty).
	config string
	// env are further KEY=VALUE entries the config needs.
	env []string
}

// cli runs the built binary with args, --config and the environment the
// server runs with, so the config resolves to the same store.
func (o operator) cli(t *testing.T, args ...string) cliResult {
	t.Helper()
	e, config := o.e, o.config
	if config == "" {
		config = testutil.QuickstartConfig()
	}
	cmd := exec.CommandContext(ctx(t), binary, append(args, "--config", config)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CIBAPROXY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"CIBAPROXY_ISSUER="+e.srv.URL,
		"CIBAPROXY_DATA="+e.srv.DataDir,
		"CIBAPROXY_WEBHOOK_URL="+e.hook.URL,
		"CIBAPROXY_DEMO_NOTIFY_URL="+e.notify.URL,
	)
	cmd.Env = append(cmd.Env, o.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	default:
		t.Fatalf("run %v: %v", args, err)
	}
	return res
}

// mustCLI is cli expecting exit code 0.
func (o operator) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	r := o.cli(t, args...)
	if r.Code != 0 {
		t.Fatalf("cibaproxy %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// listed is a request as `requests list --json` and `show --json` print it.
type listed struct {
	ID           string `json:"auth_req_id"`
	ClientID     string `json:"client_id"`
	Mode         string `json:"mode"`
	Subject      string `json:"subject"`
	State        string `json:"state"`
	DenyReason   string `json:"deny_reason"`
	ClientNotice struct {
		Due bool `json:"due"`
	} `json:"client_notice"`
	ChannelNotice struct {
		Due bool `json:"due"`
	} `json:"channel_notice"`
}

// listJSON runs `requests list --json` with extra flags, keyed by id.
func (o operator) listJSON(t *testing.T, flags ...string) map[string]listed {
	t.Helper()
	out := o.mustCLI(t, append([]string{"requests", "list", "--json"}, flags...)...)
	var body struct {
		Requests []listed `json:"requests"`
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil {
		t.Fatalf("requests list --json: %v\n%s", err, out)
	}
	m := map[string]listed{}
	for _, r := range body.Requests {
		m[r.ID] = r
	}
	return m
}

// checkNoSecrets fails when out holds one of the secrets of req.
func checkNoSecrets(t *testing.T, what, out string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("%s shows the secret %q:\n%s", what, s, out)
		}
	}
}

// TestAdminEmbedded: the operator commands against a server on the embedded
// store, which holds the database file, through its admin socket; and
// against the file once the server stopped.
func TestAdminEmbedded(t *testing.T) {
	t.Parallel()
	e := start(t)
	op := operator{e: e}
	poll := e.mustAuthorize(testutil.DemoPoll, "Admin poll")
	ping := e.mustAuthorize(testutil.DemoPing, "Admin ping")
	pollMsg, pingMsg := e.message(poll), e.message(ping)
	// Every secret a request has: none may be printed.
	secrets := []string{ping.NotificationToken, pollMsg.ID, pollMsg.Token, pingMsg.ID, pingMsg.Token,
		testutil.DemoPoll.Secret, testutil.DemoPing.Secret, testutil.DemoPush.Secret}

	sock := filepath.Join(e.srv.DataDir, "cibaproxy.db.admin.sock")
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket %s: %v, %v; want a socket with mode 0600", sock, fi, err)
	}

	t.Run("list shows both requests pending", func(t *testing.T) {
		got := op.listJSON(t)
		for _, req := range []request{poll, ping} {
			r, ok := got[req.AuthReqID]
			if !ok {
				t.Fatalf("requests list lacks %s: %v", req.AuthReqID, got)
			}
			if r.ClientID != req.Client.ID || r.State != "pending" || r.Subject != "alice" {
				t.Errorf("listed %+v, want client %s, pending, alice", r, req.Client.ID)
			}
		}
		table := op.mustCLI(t, "requests", "list")
		if !strings.Contains(table, poll.AuthReqID[:12]) || strings.Contains(table, poll.AuthReqID) {
			t.Errorf("the table should show the first 12 characters of %s only:\n%s", poll.AuthReqID, table)
		}
		if full := op.mustCLI(t, "requests", "list", "--full"); !strings.Contains(full, poll.AuthReqID) {
			t.Errorf("the --full table lacks %s:\n%s", poll.AuthReqID, full)
		}
		checkNoSecrets(t, "requests list", table, secrets...)
	})
	t.Run("list --client keeps that client's requests", func(t *testing.T) {
		got := op.listJSON(t, "--client", "demo-ping")
		if _, ok := got[ping.AuthReqID]; !ok || len(got) != 1 {
			t.Errorf("requests list --client demo-ping: %v, want only %s", got, ping.AuthReqID)
		}
	})
	t.Run("show has the deliveries and no secret", func(t *testing.T) {
		out := op.mustCLI(t, "requests", "show", ping.AuthReqID, "--json")
		var r listed
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("show --json: %v\n%s", err, out)
		}
		if r.ID != ping.AuthReqID || r.Mode != "ping" || !r.ChannelNotice.Due {
			t.Errorf("show: %+v, want ping with its channel notice due", r)
		}
		checkNoSecrets(t, "requests show --json", out, secrets...)
		text := op.mustCLI(t, "requests", "show", ping.AuthReqID[:10], "--full")
		if !strings.Contains(text, ping.AuthReqID) || !strings.Contains(text, "channel_notice") {
			t.Errorf("show by prefix:\n%s", text)
		}
		checkNoSecrets(t, "requests show", text, secrets...)
	})
	t.Run("cancel denies a pending request: the client's poll answers access_denied", func(t *testing.T) {
		out := op.mustCLI(t, "requests", "cancel", poll.AuthReqID)
		checkNoSecrets(t, "requests cancel", out, secrets...)
		r := e.token(poll.Client, poll.AuthReqID)
		checkError(t, "poll after cancel", r, http.StatusBadRequest, "access_denied")
		if d := r.Str("error_description"); d != "cancelled by an operator" {
			t.Errorf("error_description %q, want %q", d, "cancelled by an operator")
		}
	})
	t.Run("cancel of a ping request tells the client", func(t *testing.T) {
		op.mustCLI(t, "requests", "cancel", ping.AuthReqID)
		n, err := e.notify.WaitFor(ctx(t), ping.AuthReqID)
		if err != nil {
			t.Fatal(err)
		}
		if n.Bearer != ping.NotificationToken {
			t.Errorf("ping bearer %q, want the client_notification_token", n.Bearer)
		}
		r := e.token(ping.Client, ping.AuthReqID)
		checkError(t, "token after the ping", r, http.StatusBadRequest, "access_denied")
	})
	t.Run("cancel of a request that is not pending is an error and changes nothing", func(t *testing.T) {
		res := op.cli(t, "requests", "cancel", poll.AuthReqID)
		if res.Code != 1 || !strings.Contains(res.Stderr, "not pending") {
			t.Errorf("second cancel: %s\nwant exit 1 saying not pending", res)
		}
		if got := op.listJSON(t, "--state", "denied"); got[poll.AuthReqID].DenyReason != "cancelled by an operator" {
			t.Errorf("after the second cancel: %+v", got[poll.AuthReqID])
		}
	})
	t.Run("exit codes: 1 for an unknown request, 2 for a wrong command line", func(t *testing.T) {
		if res := op.cli(t, "requests", "show", "no-such-request-id"); res.Code != 1 {
			t.Errorf("show of an unknown id: %s\nwant exit 1", res)
		}
		for _, args := range [][]string{
			{"requests", "cancel"},
			{"requests", "list", "--state", "waiting"},
			{"requests", "frobnicate"},
			{"clients", "list", "extra"},
		} {
			if res := op.cli(t, args...); res.Code != 2 {
				t.Errorf("cibaproxy %s: %s\nwant exit 2", strings.Join(args, " "), res)
			}
		}
	})
	t.Run("clients list shows the demo clients without secrets", func(t *testing.T) {
		out := op.mustCLI(t, "clients", "list")
		for _, c := range []string{"demo-poll", "demo-ping", "demo-push"} {
			if !strings.Contains(out, c) {
				t.Errorf("clients list lacks %s:\n%s", c, out)
			}
		}
		u, err := url.Parse(e.notify.URL)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, u.Host) || strings.Contains(out, u.Path) {
			t.Errorf("clients list should show the notification host %s, not the path %s:\n%s", u.Host, u.Path, out)
		}
		checkNoSecrets(t, "clients list", out, secrets...)
		js := op.mustCLI(t, "clients", "list", "--json")
		checkNoSecrets(t, "clients list --json", js, secrets...)
	})

	e.srv.Stop()
	t.Run("after the server stopped, its socket is gone and list opens the file", func(t *testing.T) {
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the admin socket is still there after shutdown: %v", err)
		}
		got := op.listJSON(t)
		if got[poll.AuthReqID].State != "denied" || got[ping.AuthReqID].State != "denied" {
			t.Errorf("requests list of the stopped server's file: %v", got)
		}
	})
}

// redisConfig is a config on the redis store at addr: the quick start's
// alice, demo-poll and demo-ping.
const redisConfig = `issuer: ${CIBAPROXY_ISSUER}
listen: 127.0.0.1:0
store:
  type: redis
  redis:
    addrs: ["${ADMIN_TEST_REDIS}"]
    key_prefix: "admin-test:"
upstream:
  type: local
  local:
    users:
      - username: alice
        password_hash: "$2a$10$spJ.y58rlNOoHwC/fKk3.OoacF3R0k9OFHXbH8WIIXHS/cr20EHNu"
channels:
  webhook:
    url: ${CIBAPROXY_WEBHOOK_URL}
outbound:
  allow_http: true
  allow_networks: [127.0.0.0/8]
limits:
  requests_per_user:
    requests: 100000
clients:
  - client_id: demo-poll
    client_secret: demo-poll-secret
    backchannel_token_delivery_mode: poll
  - client_id: demo-ping
    client_secret: demo-ping-secret
    backchannel_token_delivery_mode: ping
    backchannel_client_notification_endpoint: ${CIBAPROXY_DEMO_NOTIFY_URL}
`

// TestAdminRedis: the operator commands open the redis store a running
// server shares, and a cancel reaches the server's clients: the poll answers
// access_denied and the ping client is told.
func TestAdminRedis(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	config := filepath.Join(t.TempDir(), "redis.yaml")
	if err := os.WriteFile(config, []byte(redisConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{
		Binary: binary, Config: config, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL,
		Env: []string{"ADMIN_TEST_REDIS=" + rs.Addr()},
	})
	op := operator{e: e, config: config, env: []string{"ADMIN_TEST_REDIS=" + rs.Addr()}}
	poll := e.mustAuthorize(testutil.DemoPoll, "Admin redis poll")
	ping := e.mustAuthorize(testutil.DemoPing, "Admin redis ping")

	got := op.listJSON(t, "--state", "pending")
	if got[poll.AuthReqID].State != "pending" || got[ping.AuthReqID].State != "pending" {
		t.Fatalf("requests list on redis: %v, want both pending", got)
	}
	out := op.mustCLI(t, "requests", "cancel", poll.AuthReqID, "--json")
	checkNoSecrets(t, "requests cancel", out, ping.NotificationToken)
	r := e.token(poll.Client, poll.AuthReqID)
	checkError(t, "poll after cancel", r, http.StatusBadRequest, "access_denied")

	out = op.mustCLI(t, "requests", "cancel", ping.AuthReqID)
	checkNoSecrets(t, "requests cancel", out, ping.NotificationToken)
	if _, err := e.notify.WaitFor(ctx(t), ping.AuthReqID); err != nil {
		t.Fatalf("the ping client was not told of the cancel: %v", err)
	}
	if res := op.cli(t, "requests", "cancel", ping.AuthReqID); res.Code != 1 || !strings.Contains(res.Stderr, "not pending") {
		t.Errorf("second cancel: %s\nwant exit 1 saying not pending", res)
	}
}
