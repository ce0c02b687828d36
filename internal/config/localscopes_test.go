package config

import (
	"slices"
	"strings"
	"testing"
)

// TestLocalScopes checks upstream.local.scopes: absent by default, a list
// of distinct RFC 6749 scope tokens otherwise.
func TestLocalScopes(t *testing.T) {
	t.Parallel()
	up := func(scopes string) string {
		return localUsers("username: alice\npassword_hash: \""+hashAlicePassword+"\"") + "\n    scopes: " + scopes
	}
	if c := mustParse(t, doc(nil), noEnv); c.Upstream.Local.Scopes != nil {
		t.Errorf("upstream.local.scopes = %q by default, want none", c.Upstream.Local.Scopes)
	}
	c := mustParse(t, doc(map[string]string{"upstream": up("[payments, accounts]")}), noEnv)
	if !slices.Equal(c.Upstream.Local.Scopes, []string{"payments", "accounts"}) {
		t.Errorf("upstream.local.scopes = %q", c.Upstream.Local.Scopes)
	}
	for _, bad := range []string{`["pay ments"]`, `[payments, payments]`, `[""]`} {
		ps := problemsOf(t, doc(map[string]string{"upstream": up(bad)}), noEnv)
		if !strings.Contains(ps.Error(), "upstream.local.scopes[") {
			t.Errorf("scopes %s: %v, want a problem at upstream.local.scopes[i]", bad, ps)
		}
	}
	// Only the local issuer grants them: with a provider upstream the list
	// would be silently ignored.
	ps := problemsOf(t, doc(map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com\n  local:\n    scopes: [payments]"}), noEnv)
	if !strings.Contains(ps.Error(), "upstream.local.scopes: not used with the oidc upstream") {
		t.Errorf("local.scopes with the oidc upstream: %v, want a problem at upstream.local.scopes", ps)
	}
}
