package config

import (
	"strings"
	"testing"
)

// introspection (RFC 7662): a resource server is a client with the
// permission; one row per rule, each breaking only that rule.
func TestIntrospectionRules(t *testing.T) {
	poll := "client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\n"
	rs := "client_id: rs\nclient_secret: rs-secret\nintrospection: true\n"
	oidc := "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com"
	t.Run("a resource server needs no delivery mode, and is registered with the permission", func(t *testing.T) {
		c := mustParse(t, doc(map[string]string{"clients": clients(poll, rs)}), noEnv)
		if !c.Clients[1].Introspection || !c.Clients[1].Checked.Metadata().Introspection || c.Clients[0].Introspection {
			t.Fatal("the setting was not read")
		}
	})
	t.Run("the oidc upstream's tokens are the provider's to introspect", func(t *testing.T) {
		ps := problemsOf(t, doc(map[string]string{"upstream": oidc, "clients": clients(poll, rs)}), noEnv)
		if len(ps) != 1 || !strings.HasSuffix(ps[0].Path, ".introspection") || !strings.Contains(ps[0].Message, "not possible with the oidc upstream") {
			t.Fatalf("problems %v, want one at introspection", ps)
		}
	})
	t.Run("a public client cannot introspect", func(t *testing.T) {
		pub := "client_id: tv\ntoken_endpoint_auth_methods: [none]\ndevice_authorization: true\nintrospection: true\n"
		ps := problemsOf(t, doc(map[string]string{"clients": clients(poll, pub)}), noEnv)
		if len(ps) != 1 || !strings.HasSuffix(ps[0].Path, ".introspection") || !strings.Contains(ps[0].Message, "public client") {
			t.Fatalf("problems %v, want one at introspection", ps)
		}
	})
	t.Run("a client with neither a mode nor introspection still needs a mode", func(t *testing.T) {
		ps := problemsOf(t, doc(map[string]string{"clients": clients(poll, "client_id: rs\nclient_secret: x\n")}), noEnv)
		if len(ps) != 1 || !strings.HasSuffix(ps[0].Path, "backchannel_token_delivery_mode") {
			t.Fatalf("problems %v, want one at backchannel_token_delivery_mode", ps)
		}
	})
}
