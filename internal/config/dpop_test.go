package config

import (
	"strings"
	"testing"
)

// dpop_bound_access_tokens (RFC 9449 §5.2): one row per rule, each
// breaking only that rule.
func TestDPoPBoundRules(t *testing.T) {
	bound := "dpop_bound_access_tokens: true\n"
	poll := "client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\n"
	push := "client_id: c2\nclient_secret: s2\nbackchannel_token_delivery_mode: push\nbackchannel_client_notification_endpoint: https://client.example/cb\n"
	oidc := "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com"
	for _, tt := range []struct {
		name string
		over map[string]string
		msg  string
	}{
		{"push mode delivers tokens with no request to carry a proof", map[string]string{"clients": clients(poll, push+bound)},
			"not allowed in push mode"},
		{"the device grant does not bind to DPoP keys yet", map[string]string{"clients": clients(poll + "device_authorization: true\n" + bound)},
			"not supported with device_authorization yet"},
		{"tokens of the oidc upstream cannot be bound here", map[string]string{"upstream": oidc, "clients": clients(poll + bound)},
			"not possible with the oidc upstream"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, doc(tt.over), noEnv)
			if len(ps) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(ps), ps)
			}
			p := ps[0]
			if !strings.HasSuffix(p.Path, ".dpop_bound_access_tokens") || !strings.Contains(p.Message, tt.msg) || p.Line <= 0 {
				t.Fatalf("problem %q, want one at dpop_bound_access_tokens with a line, containing %q", p, tt.msg)
			}
		})
	}
	t.Run("tokens.dpop_nonce is refused with the oidc upstream, where it would do nothing", func(t *testing.T) {
		ps := problemsOf(t, doc(map[string]string{"upstream": oidc, "tokens": "tokens:\n  dpop_nonce: true", "clients": clients(poll)}), noEnv)
		if len(ps) != 1 || ps[0].Path != "tokens.dpop_nonce" || !strings.Contains(ps[0].Message, "no effect with the oidc upstream") {
			t.Fatalf("problems %v, want one at tokens.dpop_nonce", ps)
		}
	})
	t.Run("tokens.dpop_nonce is read", func(t *testing.T) {
		c := mustParse(t, doc(map[string]string{"tokens": "tokens:\n  dpop_nonce: true", "clients": clients(poll)}), noEnv)
		if !c.Tokens.DPoPNonce {
			t.Fatal("the setting was not read")
		}
	})
	t.Run("a bound poll client of the local upstream is valid and registered bound", func(t *testing.T) {
		c := mustParse(t, doc(map[string]string{"clients": clients(poll + bound)}), noEnv)
		if !c.Clients[0].DPoPBoundAccessTokens || !c.Clients[0].Checked.Metadata().DPoPBoundAccessTokens {
			t.Fatal("the setting was not read")
		}
	})
}
