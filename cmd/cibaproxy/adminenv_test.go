package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
)

// unsetSecretConfig writes a config on an embedded store whose client
// secret is ${UNSET_SECRET}, and whose store.path is dbPath as written
// (a path or a ${VAR}); it returns the config's path.
func unsetSecretConfig(t *testing.T, dbPath string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "cibaproxy.yaml")
	yaml := `issuer: http://127.0.0.1:8080
listen: 127.0.0.1:0
store:
  type: embedded
  path: ` + dbPath + `
upstream:
  type: local
  local:
    users:
      - username: alice
        password_hash: "$2a$10$spJ.y58rlNOoHwC/fKk3.OoacF3R0k9OFHXbH8WIIXHS/cr20EHNu"
channels:
  webhook:
    url: http://127.0.0.1:9/ciba
outbound:
  allow_http: true
  allow_networks: [127.0.0.0/8]
clients:
  - client_id: demo-poll
    client_name: Demo
    client_secret: ${UNSET_SECRET}
    token_endpoint_auth_methods: [client_secret_basic]
    backchannel_token_delivery_mode: poll
  - client_id: demo-ping
    client_secret: ${SET_SECRET}
    token_endpoint_auth_methods: [client_secret_post]
    backchannel_token_delivery_mode: ping
    backchannel_client_notification_endpoint: http://127.0.0.1:9/cb?token=${SET_SECRET}
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// unsetenv unsets the environment variable name until the test ends.
func unsetenv(t *testing.T, name string) {
	t.Helper()
	t.Setenv(name, "") // restores name's value at the end
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

// newDatabase creates an empty embedded database at a new path.
func newDatabase(t *testing.T) string {
	t.Helper()
	db := filepath.Join(t.TempDir(), "cibaproxy.db")
	st, err := embedded.Open(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestAdminCommandsToleratedUnsetSecret: the operator commands run with a
// config whose client secret is an unset ${VAR}, which they do not need;
// clients list prints the clients without any secret.
func TestAdminCommandsToleratedUnsetSecret(t *testing.T) {
	const secret = "the-ping-secret-value"
	t.Setenv("SET_SECRET", secret)
	unsetenv(t, "UNSET_SECRET")
	cfg := unsetSecretConfig(t, newDatabase(t))

	code, stdout, stderr := runCLI(t, "", "requests", "list", "--config", cfg)
	if code != 0 || stderr != "" {
		t.Errorf("requests list: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "users", "list", "--config", cfg)
	if code != 0 || stderr != "" || !strings.Contains(stdout, "alice") {
		t.Errorf("users list: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, args := range [][]string{{"clients", "list"}, {"clients", "list", "--json"}} {
		code, stdout, stderr = runCLI(t, "", append(args, "--config", cfg)...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "demo-poll") || !strings.Contains(stdout, "demo-ping") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
		}
		if strings.Contains(stdout, secret) {
			t.Errorf("%s prints a secret:\n%s", strings.Join(args, " "), stdout)
		}
	}
}

// TestAdminCommandsNeededUnsetVariable: an unset ${VAR} in a value the
// command needs, the embedded store's path, fails it, naming the variable
// (instead of the default path).
func TestAdminCommandsNeededUnsetVariable(t *testing.T) {
	t.Setenv("SET_SECRET", "s")
	unsetenv(t, "UNSET_DB_PATH")
	cfg := unsetSecretConfig(t, "${UNSET_DB_PATH}")
	for _, args := range [][]string{{"requests", "list"}, {"users", "list"}, {"keys", "rotate"}} {
		code, stdout, stderr := runCLI(t, "", append(args, "--config", cfg)...)
		if code != 1 || stdout != "" || !strings.Contains(stderr, "store.path: required (from ${UNSET_DB_PATH}, which is not set) by this command") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 naming ${UNSET_DB_PATH}", strings.Join(args, " "), code, stdout, stderr)
		}
	}
}

// TestServeAndCheckConfigStrictAboutUnset: serve and check-config still
// refuse a config whose client secret is an unset ${VAR}.
func TestServeAndCheckConfigStrictAboutUnset(t *testing.T) {
	t.Setenv("SET_SECRET", "s")
	unsetenv(t, "UNSET_SECRET")
	cfg := unsetSecretConfig(t, newDatabase(t))
	const want = "clients[0].client_secret: required (from ${UNSET_SECRET}, which is not set)"

	code, _, stderr := runCLI(t, "", "check-config", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("check-config: exit %d, stderr %q; want 1 with %q", code, stderr, want)
	}
	// A cancelled context: were the config accepted, serve would stop at
	// once (exit 0) instead of running.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, errOut bytes.Buffer
	code = run(ctx, []string{"serve", "--config", cfg}, strings.NewReader(""), &stdout, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), want) {
		t.Errorf("serve: exit %d, stderr %q; want 1 with %q", code, errOut.String(), want)
	}
}
