package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// usersConfig writes a config of the local upstream on an embedded store
// in a new directory and returns its path and the database's.
func usersConfig(t *testing.T) (cfg, db string) {
	t.Helper()
	dir := t.TempDir()
	db = filepath.Join(dir, "cibaproxy.db")
	cfg = filepath.Join(dir, "cibaproxy.yaml")
	yaml := `issuer: http://127.0.0.1:8080
store:
  type: embedded
  path: ` + db + `
upstream:
  type: local
  local:
    users:
      - username: alice
        password_hash: "$2a$10$spJ.y58rlNOoHwC/fKk3.OoacF3R0k9OFHXbH8WIIXHS/cr20EHNu"
      - username: bob
        subject: sub-bob
        password_hash: "$2a$10$.P16Yabwk7tQnDCMfpaozOs7u2Fr.GvOssqoEjqrUPPP0WiAt6MRi"
channels:
  webhook:
    url: http://127.0.0.1:9/ciba
outbound:
  allow_http: true
  allow_networks: [127.0.0.0/8]
clients:
  - client_id: demo-poll
    client_secret: demo-poll-secret
    token_endpoint_auth_methods: [client_secret_basic]
    backchannel_token_delivery_mode: poll
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, db
}

// subscribeInFile stores n subscriptions of subject in the database at
// db, the server stopped, each with "secret-path" in its endpoint.
func subscribeInFile(t *testing.T, db, subject string, n int) []webpush.Subscription {
	t.Helper()
	st, err := embedded.Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	subs := &webpush.Subscriptions{Records: st}
	var out []webpush.Subscription
	for i := range n {
		s := webpush.Subscription{Endpoint: fmt.Sprintf("https://push%d.example/secret-path/%d", i, i),
			P256DH: []byte("browser-public-key"), Auth: []byte("auth-secret-0123"), Created: time.Date(2026, 12, 7, 8, i, 0, 0, time.UTC)}
		if err := subs.Add(t.Context(), subject, s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// oneLine reports whether s is a single line starting with prefix and
// containing want.
func oneLine(s, prefix, want string) bool {
	return strings.Count(s, "\n") == 1 && strings.HasSuffix(s, "\n") && strings.HasPrefix(s, prefix) && strings.Contains(s, want)
}

// TestUsersWebPushListAndRemove: on the embedded store (the server
// stopped), `users webpush list` shows a user's subscriptions by short
// id, push service host and time, never the endpoint's path or the keys;
// `users webpush remove` removes one by its id, --all the rest; an
// unknown user or id is a one-line error with exit 1.
func TestUsersWebPushListAndRemove(t *testing.T) {
	cfg, db := usersConfig(t)
	added := subscribeInFile(t, db, "sub-bob", 3)

	code, stdout, stderr := runCLI(t, "", "users", "webpush", "list", "bob", "--config", cfg)
	if code != 0 || stderr != "" {
		t.Fatalf("list: exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "PUSH SERVICE") {
		t.Fatalf("list:\n%s", stdout)
	}
	for i, s := range added {
		if f := strings.Fields(lines[i+1]); len(f) < 3 || f[0] != s.ID() || f[1] != s.Host() {
			t.Errorf("line %d %q, want id %s and host %s", i+1, lines[i+1], s.ID(), s.Host())
		}
	}
	code, js, _ := runCLI(t, "", "users", "webpush", "list", "bob", "--json", "--config", cfg)
	var got struct {
		Subscriptions []struct {
			ID      string    `json:"id"`
			Host    string    `json:"push_service"`
			Created time.Time `json:"created"`
		} `json:"subscriptions"`
	}
	if err := json.Unmarshal([]byte(js), &got); code != 0 || err != nil || len(got.Subscriptions) != 3 ||
		got.Subscriptions[2].ID != added[2].ID() || !got.Subscriptions[2].Created.Equal(added[2].Created) {
		t.Fatalf("list --json: exit %d, %v:\n%s", code, err, js)
	}
	for _, out := range []string{stdout, js} {
		if strings.Contains(out, "secret-path") || strings.Contains(out, "auth-secret") {
			t.Fatalf("the listing shows an endpoint's path or a key:\n%s", out)
		}
	}

	code, stdout, stderr = runCLI(t, "", "users", "webpush", "remove", "bob", added[1].ID()[:8], "--config", cfg)
	if want := fmt.Sprintf("removed Web Push subscription %s (push1.example) of bob\n", added[1].ID()); code != 0 || stdout != want || stderr != "" {
		t.Fatalf("remove: exit %d, stdout %q, stderr %q; want 0 and %q", code, stdout, stderr, want)
	}
	code, stdout, stderr = runCLI(t, "", "users", "webpush", "remove", "bob", added[1].ID(), "--config", cfg)
	if code != 1 || stdout != "" || !oneLine(stderr, "cibaproxy users webpush remove: ", "no subscription "+`"`+added[1].ID()+`"`) {
		t.Fatalf("removing it again: exit %d, stdout %q, stderr %q; want 1 and one line", code, stdout, stderr)
	}
	for _, args := range [][]string{
		{"users", "webpush", "list", "carol"},
		{"users", "webpush", "remove", "carol", added[0].ID()},
		{"users", "webpush", "remove", "carol", "--all"},
	} {
		code, stdout, stderr = runCLI(t, "", append(args, "--config", cfg)...)
		if code != 1 || stdout != "" || !oneLine(stderr, "cibaproxy "+strings.Join(args[:3], " ")+": ", `no user "carol"`) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 1 and one line naming the user", strings.Join(args, " "), code, stdout, stderr)
		}
	}

	code, stdout, _ = runCLI(t, "", "users", "webpush", "remove", "bob", "--all", "--config", cfg)
	if code != 0 || stdout != "removed 2 Web Push subscriptions of bob\n" {
		t.Fatalf("remove --all: exit %d, %q", code, stdout)
	}
	if code, stdout, _ = runCLI(t, "", "users", "webpush", "list", "bob", "--config", cfg); code != 0 || !strings.HasPrefix(stdout, "bob has no Web Push subscriptions (") || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("list after remove --all: exit %d:\n%s", code, stdout)
	}
	if code, stdout, _ = runCLI(t, "", "users", "webpush", "remove", "alice", "--all", "--config", cfg); code != 0 || stdout != "removed 0 Web Push subscriptions of alice\n" {
		t.Fatalf("remove --all of none: exit %d, %q", code, stdout)
	}
}

// TestUsersWebPushWrongCommandLines: a wrong command line of the webpush
// subcommands exits 2 with what is wrong and the usage line.
func TestUsersWebPushWrongCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		say, usage string
	}{
		{[]string{"users", "webpush"}, "want list, remove", "usage: cibaproxy users webpush list USER"},
		{[]string{"users", "webpush", "--config", "x.yaml"}, "the subcommand comes before --config: want list, remove", "usage: cibaproxy users webpush list USER"},
		{[]string{"users", "passkeys", "alice", "--config", "x.yaml"}, `cibaproxy users passkeys: unknown subcommand "alice": want remove (users list shows each user's passkeys)`, "usage: cibaproxy users passkeys remove USER ID"},
		{[]string{"users", "webpush", "frob"}, `unknown subcommand "frob"`, "cibaproxy users webpush remove USER"},
		{[]string{"users", "webpush", "list", "--config", "x.yaml"}, "want one USER", "usage: cibaproxy users webpush list USER"},
		{[]string{"users", "webpush", "list", "alice", "--all", "--config", "x.yaml"}, "unknown flag --all", "usage: cibaproxy users webpush list"},
		{[]string{"users", "webpush", "remove", "alice", "--config", "x.yaml"}, "want USER and the subscription's ID (or --all)", "usage: cibaproxy users webpush remove"},
		{[]string{"users", "webpush", "remove", "alice", "0123456789ab", "--all", "--config", "x.yaml"}, "want USER only with --all", "usage: cibaproxy users webpush remove"},
		{[]string{"users", "webpush", "remove", "alice", "0123456789ab", "--json", "--config", "x.yaml"}, "unknown flag --json", "usage: cibaproxy users webpush remove"},
	} {
		code, stdout, stderr := runCLI(t, "", tc.args...)
		if code != 2 || stdout != "" || !strings.Contains(stderr, tc.say) || !strings.Contains(stderr, tc.usage) {
			t.Errorf("cibaproxy %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2 saying %q and %q", strings.Join(tc.args, " "), code, stdout, stderr, tc.say, tc.usage)
		}
	}
}
