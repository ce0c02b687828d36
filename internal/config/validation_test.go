package config

import (
	"strings"
	"testing"
	"time"
)

const hookSecret = "0123456789abcdef0123456789abcdef"

func TestValidationDefaults(t *testing.T) {
	c := mustParse(t, doc(nil), noEnv)
	if v := c.Validation; v.URL != "" || v.Timeout != 3*time.Second || v.Fail != ValidationFailClosed || v.FailOpen() {
		t.Errorf("validation = %+v, want off, timeout 3s, fail closed", v)
	}
	c = mustParse(t, doc(map[string]string{
		"limits": "validation:\n  url: https://10.20.0.5/ciba/validate\n  secret: " + hookSecret + "\n  timeout: 1500ms\n  fail: open",
		"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll",
			"client_id: c2\nclient_secret: s2\nbackchannel_token_delivery_mode: poll\nskip_validation: true"),
	}), noEnv)
	v := c.Validation
	if v.URL != "https://10.20.0.5/ciba/validate" || v.Secret != hookSecret || v.Timeout != 1500*time.Millisecond || !v.FailOpen() {
		t.Errorf("validation = %+v", v)
	}
	if v.AllowHTTP {
		t.Errorf("allow_http = true, want false by default")
	}
	if c.Clients[0].SkipValidation || !c.Clients[1].SkipValidation {
		t.Errorf("skip_validation = %v, %v; want false, true", c.Clients[0].SkipValidation, c.Clients[1].SkipValidation)
	}
	// The secret comes from the environment, as the docs advise.
	c = mustParse(t, doc(map[string]string{"limits": "validation:\n  url: https://policy.example.com/v\n  secret: ${HOOK_SECRET}"}),
		envMap(map[string]string{"HOOK_SECRET": hookSecret}))
	if c.Validation.Secret != hookSecret {
		t.Errorf("secret = %q, want the environment's", c.Validation.Secret)
	}
}

// The hook's URL is the operator's (SECURITY.md): an internal address,
// private or loopback, named by an IP literal or a host name, loads
// without any allow list.
func TestValidationInternalURL(t *testing.T) {
	for _, u := range []string{"https://10.20.0.5/ciba/validate", "https://policy.internal/ciba/validate", "https://[fd00:1::5]/v", "https://127.0.0.1:9443/v"} {
		c := mustParse(t, doc(map[string]string{"limits": "validation:\n  url: " + u + "\n  secret: " + hookSecret}), noEnv)
		if c.Validation.URL != u {
			t.Errorf("validation.url = %q, want %q", c.Validation.URL, u)
		}
	}
}

func TestValidationProblems(t *testing.T) {
	hook := func(lines ...string) map[string]string {
		return map[string]string{"limits": "validation:\n  " + strings.Join(lines, "\n  ")}
	}
	secret := "secret: " + hookSecret
	tests := []struct {
		name string
		over map[string]string
		path string
		msg  string
	}{
		{"a url needs a secret", hook("url: https://policy.example.com/v"), "validation.secret", "required with validation.url"},
		{"a short secret", hook("url: https://policy.example.com/v", "secret: short"), "validation.secret", "at least 32 characters"},
		{"a secret without url", hook(secret), "validation.secret", "without validation.url"},
		{"https unless allow_http", hook("url: http://policy.example.com/v", secret), "validation.url", "must be an https URL"},
		{"an absolute URL", hook("url: policy.example.com/v", secret), "validation.url", "absolute http or https URL"},
		{"no credentials in the URL", hook("url: https://u:p@policy.example.com/v", secret), "validation.url", "must not hold user info"},
		{"fail is closed or open", hook("url: https://policy.example.com/v", secret, "fail: maybe"), "validation.fail", "must be one of closed, open"},
		{"timeout positive", hook("url: https://policy.example.com/v", secret, "timeout: 0s"), "validation.timeout", "must be positive"},
		{"timeout bounded", hook("url: https://policy.example.com/v", secret, "timeout: 1m"), "validation.timeout", "at most 30s"},
		// The hook is the operator's, not restricted by address: the
		// former allow list is gone and reported like any unknown key.
		{"allow_networks is no setting", hook("url: https://10.20.0.5/v", secret, "allow_networks: [10.20.0.0/16]"), "validation.allow_networks", "unknown key"},
		{"unknown key", hook("url: https://policy.example.com/v", secret, "fail_open: true"), "validation.fail_open", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, doc(tt.over), noEnv)
			for _, p := range ps {
				if p.Path == tt.path && strings.Contains(p.Message, tt.msg) {
					if len(ps) != 1 {
						t.Errorf("got %d problems, want 1:\n%v", len(ps), ps)
					}
					if strings.Contains(p.String(), hookSecret) {
						t.Errorf("the problem quotes the secret: %s", p)
					}
					return
				}
			}
			t.Errorf("no problem at %s containing %q; got:\n%v", tt.path, tt.msg, ps)
		})
	}
}
