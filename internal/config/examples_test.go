package config

import (
	"crypto"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"
)

const examplesDir = "../../examples"

// quickstartEnv are the variables examples/quickstart.yaml reads.
var quickstartEnv = []string{
	"CIBAPROXY_ISSUER", "CIBAPROXY_LISTEN", "CIBAPROXY_DATA",
	"CIBAPROXY_WEBHOOK_URL", "CIBAPROXY_DEMO_NOTIFY_URL",
}

// unsetEnv unsets names for the duration of the test.
func unsetEnv(t *testing.T, names ...string) {
	for _, n := range names {
		t.Setenv(n, "") // registers the restore
		os.Unsetenv(n)
	}
}

func TestQuickstartDefaults(t *testing.T) {
	unsetEnv(t, quickstartEnv...)
	c, err := Load(filepath.Join(examplesDir, "quickstart.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	checks := []struct {
		name      string
		got, want any
	}{
		{"issuer", c.Issuer, "http://127.0.0.1:8080"},
		{"listen", c.Listen, "127.0.0.1:8080"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"store.type", c.Store.Type, "embedded"},
		{"store.path", c.Store.Path, "./data/cibaproxy.db"},
		{"upstream.type", c.Upstream.Type, "local"},
		{"ciba.default_expiry", c.CIBA.DefaultExpiry, 5 * time.Minute},
		{"ciba.max_expiry", c.CIBA.MaxExpiry, 30 * time.Minute},
		{"ciba.interval", c.CIBA.Interval, 5 * time.Second},
		{"ciba.long_poll", c.CIBA.LongPoll, 20 * time.Second},
		{"ciba.expired_grace", c.CIBA.ExpiredGrace, 10 * time.Minute},
		{"ciba.binding_message_max", c.CIBA.BindingMessageMax, 64},
		{"tokens.access_token_ttl", c.Tokens.AccessTokenTTL, 10 * time.Minute},
		{"tokens.id_token_ttl", c.Tokens.IDTokenTTL, 10 * time.Minute},
		{"tokens.refresh_token_ttl", c.Tokens.RefreshTokenTTL, 24 * time.Hour},
		{"tokens.signing_key_file", c.Tokens.SigningKeyFile, ""},
		{"tokens.signing_key", c.Tokens.SigningKey, crypto.Signer(nil)},
		{"tokens.encryption_keys", len(c.Tokens.EncryptionKeys), 0},
		{"channels.webhook.url", c.Channels.Webhook.URL, ""},
		{"channels.webhook.timeout", c.Channels.Webhook.Timeout, 5 * time.Second},
		{"users", len(c.Upstream.Local.Users), 2},
		{"clients", len(c.Clients), 4},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}

	// The demo credentials the README gives.
	users := []struct {
		username, password, userCode, email, name string
	}{
		{"alice", "alice-password", "1234", "alice@example.com", "Alice Example"},
		{"bob", "bob-password", "", "bob@example.com", ""},
	}
	for i, want := range users {
		u := c.Upstream.Local.Users[i]
		if u.Username != want.username || u.Subject != want.username {
			t.Errorf("user %d = %q (subject %q), want %q", i, u.Username, u.Subject, want.username)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(want.password)); err != nil {
			t.Errorf("%s: password %q does not match: %v", u.Username, want.password, err)
		}
		if cost, _ := bcrypt.Cost([]byte(u.PasswordHash)); cost != 10 {
			t.Errorf("%s: bcrypt cost %d, want 10", u.Username, cost)
		}
		if want.userCode == "" {
			if u.UserCodeHash != "" {
				t.Errorf("%s has a user code, want none", u.Username)
			}
		} else if err := bcrypt.CompareHashAndPassword([]byte(u.UserCodeHash), []byte(want.userCode)); err != nil {
			t.Errorf("%s: user code %q does not match: %v", u.Username, want.userCode, err)
		}
		if u.Claims["email"] != want.email {
			t.Errorf("%s: email = %v, want %q", u.Username, u.Claims["email"], want.email)
		}
		if want.name != "" && u.Claims["name"] != want.name {
			t.Errorf("%s: name = %v, want %q", u.Username, u.Claims["name"], want.name)
		}
	}

	both := []string{AuthClientSecretBasic, AuthClientSecretPost}
	wantClients := []struct {
		id, secret, mode, notify string
		methods                  []string
	}{
		{"demo-poll", "demo-poll-secret", DeliveryPoll, "", append(both, AuthPrivateKeyJWT)},
		{"demo-ping", "demo-ping-secret", DeliveryPing, "http://127.0.0.1:9090/notify", both},
		{"demo-push", "demo-push-secret", DeliveryPush, "http://127.0.0.1:9090/notify", both},
		// The device page's demo client: public, device grant only.
		{"demo-device", "", "", "", []string{AuthNone}},
	}
	for i, want := range wantClients {
		cl := c.Clients[i]
		if cl.ID != want.id || cl.Secret != want.secret || cl.SecretHash != "" ||
			cl.DeliveryMode != want.mode || cl.NotificationEndpoint != want.notify ||
			!slices.Equal(cl.TokenEndpointAuthMethods, want.methods) {
			t.Errorf("client %d = %+v, want %+v", i, cl, want)
		}
		if cl.DeviceAuthorization != (want.id == "demo-device") {
			t.Errorf("client %s: device_authorization = %v", cl.ID, cl.DeviceAuthorization)
		}
	}

	// demo-poll's jwks holds the public half of the published demo key.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(c.Clients[0].JWKS, &set); err != nil {
		t.Fatalf("demo-poll jwks: %v", err)
	}
	if len(set.Keys) != 1 || !set.Keys[0].IsPublic() || set.Keys[0].KeyID != "demo-poll-1" || set.Keys[0].Algorithm != "ES256" {
		t.Fatalf("demo-poll jwks = %+v, want the one public ES256 key demo-poll-1", set.Keys)
	}
	data, err := os.ReadFile(filepath.Join(examplesDir, "keys", "demo-poll.private.jwk"))
	if err != nil {
		t.Fatal(err)
	}
	var priv jose.JSONWebKey
	if err := priv.UnmarshalJSON(data); err != nil {
		t.Fatalf("demo-poll.private.jwk: %v", err)
	}
	if priv.IsPublic() || priv.KeyID != "demo-poll-1" || priv.Algorithm != "ES256" || priv.Use != "sig" {
		t.Fatalf("demo-poll.private.jwk = kid %q alg %q use %q public %v, want a private ES256 sig key demo-poll-1",
			priv.KeyID, priv.Algorithm, priv.Use, priv.IsPublic())
	}
	pub := priv.Public()
	want, _ := pub.Thumbprint(crypto.SHA256)
	got, _ := set.Keys[0].Thumbprint(crypto.SHA256)
	if string(got) != string(want) {
		t.Errorf("demo-poll jwks does not hold the public half of examples/keys/demo-poll.private.jwk")
	}
}

func TestQuickstartEnvironment(t *testing.T) {
	unsetEnv(t, quickstartEnv...)
	t.Setenv("CIBAPROXY_ISSUER", "https://ciba.example.com")
	t.Setenv("CIBAPROXY_LISTEN", ":9443")
	// ':' and '#' in a value cannot break the YAML: expansion happens
	// after parsing.
	t.Setenv("CIBAPROXY_DATA", "/var/lib/cibaproxy #1: x")
	t.Setenv("CIBAPROXY_WEBHOOK_URL", "https://hooks.example.com/ciba?key=a:b")
	t.Setenv("CIBAPROXY_DEMO_NOTIFY_URL", "https://client.example.com/cb")
	c, err := Load(filepath.Join(examplesDir, "quickstart.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, ch := range []struct{ name, got, want string }{
		{"issuer", c.Issuer, "https://ciba.example.com"},
		{"listen", c.Listen, ":9443"},
		{"store.path", c.Store.Path, "/var/lib/cibaproxy #1: x/cibaproxy.db"},
		{"webhook", c.Channels.Webhook.URL, "https://hooks.example.com/ciba?key=a:b"},
		{"ping endpoint", c.Clients[1].NotificationEndpoint, "https://client.example.com/cb"},
		{"push endpoint", c.Clients[2].NotificationEndpoint, "https://client.example.com/cb"},
	} {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.name, ch.got, ch.want)
		}
	}
}

// TestExamplesLoad loads every example configuration a user may copy: every
// .yaml file at the top of examples/ is one (other YAML, such as a users
// file, belongs in a subdirectory).
func TestExamplesLoad(t *testing.T) {
	unsetEnv(t, quickstartEnv...)
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no example configurations found")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("Load(%s):\n%v", f, err)
			}
		})
	}
}
