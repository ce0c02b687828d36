package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestMetricsListen: metrics.listen is an address of the operators' own
// listener, "main" (the main listener, asked for by name), or unset (no
// metrics); an address equal to listen is refused.
func TestMetricsListen(t *testing.T) {
	for _, tt := range []struct {
		name, listen, want string
	}{
		{"unset serves no metrics", "", ""},
		{"an address is a listener of its own", "127.0.0.1:9464", "127.0.0.1:9464"},
		{"main serves them on the main listener, by name", "main", MetricsOnMain},
	} {
		t.Run(tt.name, func(t *testing.T) {
			over := map[string]string{"listen": "listen: 127.0.0.1:8080"}
			data := doc(over)
			if tt.listen != "" {
				data += "metrics:\n  listen: " + tt.listen + "\n"
			}
			if got := mustParse(t, data, noEnv).Metrics.Listen; got != tt.want {
				t.Fatalf("metrics.listen = %q, want %q", got, tt.want)
			}
		})
	}
	for _, tt := range []struct{ name, listen, want string }{
		{"the main listener's address is refused", "127.0.0.1:8080", `must differ from listen`},
		{"not host:port is refused", "mainline", "must be host:port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, doc(map[string]string{"listen": "listen: 127.0.0.1:8080"})+"metrics:\n  listen: "+tt.listen+"\n", noEnv)
			found := false
			for _, p := range ps {
				if p.Path == "metrics.listen" && strings.Contains(p.Message, tt.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("problems %v, want metrics.listen: %s", ps, tt.want)
			}
		})
	}
}

// TestTheExamplesServeMetricsApart: every shipped example keeps the
// metrics, which name every client_id, off the listener clients reach.
func TestTheExamplesServeMetricsApart(t *testing.T) {
	for _, name := range []string{"quickstart", "oidc", "redis", "relay", "email", "validation"} {
		t.Run(name, func(t *testing.T) {
			c := loadExample(t, name)
			if c.Metrics.Listen == "" || c.Metrics.Listen == MetricsOnMain || c.Metrics.Listen == c.Listen {
				t.Fatalf("examples/%s.yaml: metrics.listen = %q (listen %q), want an address of its own", name, c.Metrics.Listen, c.Listen)
			}
			if !strings.HasPrefix(c.Metrics.Listen, "127.0.0.1:") {
				t.Errorf("examples/%s.yaml: metrics.listen = %q, want it on loopback by default", name, c.Metrics.Listen)
			}
		})
	}
}

// loadExample loads examples/NAME.yaml with its metrics address at the
// file's default.
func loadExample(t *testing.T, name string) *Config {
	t.Helper()
	unsetEnv(t, append(quickstartEnv, "CIBAPROXY_METRICS_LISTEN")...)
	c, err := Load(filepath.Join(examplesDir, name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTheDeployConfigServesMetricsApart: the compose deployment's
// configuration keeps the metrics off the port the load balancer uses.
func TestTheDeployConfigServesMetricsApart(t *testing.T) {
	setEnv(t, map[string]string{
		"CIBAPROXY_ISSUER":         "http://localhost:8080",
		"CIBAPROXY_ENCRYPTION_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
	})
	c, err := Load(filepath.Join(deployDir, "cibaproxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Listen != ":9464" || c.Listen == c.Metrics.Listen {
		t.Fatalf("deploy/cibaproxy.yaml: metrics.listen = %q (listen %q), want :9464", c.Metrics.Listen, c.Listen)
	}
}
