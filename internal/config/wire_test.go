package config

import (
	"slices"
	"strings"
	"testing"
)

// TestAuth0WireSettings: http.token_aliases, ciba.login_hint_issuers and
// clients[].resources are read, and reach the client's checked metadata.
func TestAuth0WireSettings(t *testing.T) {
	c := mustParse(t, doc(map[string]string{
		"limits":  "http:\n  token_aliases: [/oauth/token]",
		"ciba":    "ciba:\n  login_hint_issuers: [\"https://tenant.idp.example/\"]",
		"clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\nresources: [\"https://api.example/\", my-api]"),
	}), noEnv)
	if !slices.Equal(c.HTTP.TokenAliases, []string{"/oauth/token"}) || !slices.Equal(c.CIBA.LoginHintIssuers, []string{"https://tenant.idp.example/"}) {
		t.Errorf("http %+v, ciba.login_hint_issuers %v", c.HTTP, c.CIBA.LoginHintIssuers)
	}
	if got := c.Clients[0].Checked.Metadata().Resources; !slices.Equal(got, []string{"https://api.example/", "my-api"}) {
		t.Errorf("client resources = %v", got)
	}
}

// TestAuth0WireSettingsRefused: each bad value is a problem at its path
// saying why.
func TestAuth0WireSettingsRefused(t *testing.T) {
	for _, tc := range []struct {
		name, section, value, path, msg string
	}{
		{"relative alias", "limits", "http:\n  token_aliases: [oauth/token]", "http.token_aliases[0]", "must be an absolute path"},
		{"alias with a query", "limits", "http:\n  token_aliases: [\"/oauth/token?x=1\"]", "http.token_aliases[0]", "must be an absolute path"},
		{"alias of an endpoint", "limits", "http:\n  token_aliases: [/bc-authorize]", "http.token_aliases[0]", "already an endpoint's path"},
		{"alias of introspection", "limits", "http:\n  token_aliases: [/introspect]", "http.token_aliases[0]", "already an endpoint's path"},
		{"alias under the approval pages", "limits", "http:\n  token_aliases: [/approve/token]", "http.token_aliases[0]", "already an endpoint's path"},
		{"alias twice", "limits", "http:\n  token_aliases: [/oauth/token, /oauth/token]", "http.token_aliases[1]", "listed before"},
		{"issuer not a URL", "ciba", "ciba:\n  login_hint_issuers: [tenant.idp.example]", "ciba.login_hint_issuers[0]", "must be an issuer URL"},
		{"resource with a fragment", "clients", clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\nresources: [\"https://api.example/#x\"]"),
			"clients[0].resources[0]", "has a fragment"},
		{"resource twice", "clients", clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\nresources: [a, a]"),
			"clients[0].resources[1]", "listed twice"},
		{"resource with a space", "clients", clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\nresources: [\"my api\"]"),
			"clients[0].resources[0]", "printable ASCII"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := problemsOf(t, doc(map[string]string{tc.section: tc.value}), noEnv)
			if !slices.ContainsFunc(ps, func(p Problem) bool { return p.Path == tc.path && strings.Contains(p.Message, tc.msg) }) {
				t.Errorf("no problem at %s saying %q; got:\n%v", tc.path, tc.msg, ps)
			}
		})
	}
}
