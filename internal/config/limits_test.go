package config

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimitsDefaults(t *testing.T) {
	c := mustParse(t, doc(nil), noEnv)
	l := c.Limits
	for name, got := range map[string]Rate{
		"bc_authorize_per_client":     l.BCAuthorizePerClient,
		"token_per_client":            l.TokenPerClient,
		"device_authorization_per_ip": l.DeviceAuthorizationPerIP,
		"introspect_per_client":       l.IntrospectPerClient,
		"requests_per_user":           l.RequestsPerUser,
		"approval_failures_per_ip":    l.ApprovalFailuresPerIP,
		"callback_failures_per_ip":    l.CallbackFailuresPerIP,
		"client_auth_failures_per_ip": l.ClientAuthFailuresPerIP,
	} {
		if got.Requests <= 0 || got.Per <= 0 {
			t.Errorf("limits.%s = %+v, want on by default", name, got)
		}
	}
	if l.RequestsPerUser != (Rate{Requests: 10, Per: 10 * time.Minute}) {
		t.Errorf("requests_per_user = %+v, want 10 per 10m", l.RequestsPerUser)
	}
	if l.IntrospectPerClient != (Rate{Requests: 1200, Per: time.Minute}) {
		t.Errorf("introspect_per_client = %+v, want 1200 per 1m", l.IntrospectPerClient)
	}
	if l.DeviceAuthorizationPerIP != (Rate{Requests: 30, Per: time.Minute}) {
		t.Errorf("device_authorization_per_ip = %+v, want 30 per 1m", l.DeviceAuthorizationPerIP)
	}
	if l.ClientAuthFailuresPerIP != (Rate{Requests: 20, Per: time.Minute}) {
		t.Errorf("client_auth_failures_per_ip = %+v, want 20 per 1m", l.ClientAuthFailuresPerIP)
	}
	if l.MaxKeys != 100_000 || l.ClientIPHeader != "" || len(l.Proxies) != 0 {
		t.Errorf("max_keys %d, header %q, proxies %v", l.MaxKeys, l.ClientIPHeader, l.Proxies)
	}
	if c.Outbound.AllowHTTP || len(c.Outbound.Networks) != 0 {
		t.Errorf("outbound is open by default: %+v", c.Outbound)
	}
}

func TestLimitsSettings(t *testing.T) {
	c := mustParse(t, doc(map[string]string{
		"limits": "limits:\n  token_per_client:\n    requests: 0\n  requests_per_user:\n    requests: 3\n" +
			"  bc_authorize_per_client:\n    per: 1h\n  trusted_proxies: [10.0.0.0/8, 192.0.2.7]\n  client_ip_header: x-real-ip",
		"outbound": "outbound:\n  allow_http: true\n  allow_networks: [127.0.0.0/8, '::1']",
		"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: ping\n" +
			"backchannel_client_notification_endpoint: http://127.0.0.1:9090/notify\nallowed_networks: [203.0.113.0/24]"),
	}), noEnv)
	l := c.Limits
	if !(l.TokenPerClient.Requests == 0) {
		t.Errorf("requests: 0 does not turn the limit off: %+v", l.TokenPerClient)
	}
	if l.RequestsPerUser != (Rate{Requests: 3, Per: 10 * time.Minute}) {
		t.Errorf("requests alone keeps the default period: %+v", l.RequestsPerUser)
	}
	if l.BCAuthorizePerClient != (Rate{Requests: 1200, Per: time.Hour}) {
		t.Errorf("per alone keeps the default requests: %+v", l.BCAuthorizePerClient)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}
	if len(l.Proxies) != 2 || l.Proxies[0] != want[0] || l.Proxies[1] != want[1] || l.ClientIPHeader != "X-Real-Ip" {
		t.Errorf("proxies %v header %q", l.Proxies, l.ClientIPHeader)
	}
	if n := l.ClientNetworks["c1"]; len(n) != 1 || n[0] != netip.MustParsePrefix("203.0.113.0/24") {
		t.Errorf("client networks %v", l.ClientNetworks)
	}
	if p := c.Outbound.Policy(); !p.AllowHTTP || len(p.AllowNetworks) != 2 || p.AllowNetworks[1] != netip.MustParsePrefix("::1/128") {
		t.Errorf("outbound policy %+v", p)
	}
}
