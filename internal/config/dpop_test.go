package config

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
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
		{"tokens of the oidc upstream cannot be bound here", map[string]string{"upstream": oidc, "clients": clients(poll + bound)},
			"not possible with the oidc upstream"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			oneProblemAt(t, doc(tt.over), "dpop_bound_access_tokens", tt.msg)
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
	t.Run("a bound device client of the local upstream is valid: the device grant binds its tokens", func(t *testing.T) {
		c := mustParse(t, doc(map[string]string{"clients": clients(poll + "device_authorization: true\n" + bound)}), noEnv)
		if !c.Clients[0].DPoPBoundAccessTokens {
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

// tokens.dpop_algs and tokens.dpop_window: read, defaulted, and refused
// with a message naming the key when they cannot be applied.
func TestDPoPSettings(t *testing.T) {
	poll := "client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\n"
	oidc := "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com"
	t.Run("the defaults: every asymmetric algorithm, a 60 s window", func(t *testing.T) {
		c := mustParse(t, doc(map[string]string{"clients": clients(poll)}), noEnv)
		if c.Tokens.DPoPAlgs != nil || c.Tokens.DPoPWindow != 60*time.Second {
			t.Fatalf("algs %v, window %s; want nil (dpop.DefaultAlgs) and 60s", c.Tokens.DPoPAlgs, c.Tokens.DPoPWindow)
		}
	})
	t.Run("both are read", func(t *testing.T) {
		c := mustParse(t, doc(map[string]string{"tokens": "tokens:\n  dpop_algs: [ES256, EdDSA]\n  dpop_window: 30s", "clients": clients(poll)}), noEnv)
		if !slices.Equal(c.Tokens.DPoPAlgs, []string{"ES256", "EdDSA"}) || c.Tokens.DPoPWindow != 30*time.Second {
			t.Fatalf("algs %v, window %s", c.Tokens.DPoPAlgs, c.Tokens.DPoPWindow)
		}
	})
	for _, tt := range []struct {
		name, tokens, path, msg string
		over                    map[string]string
	}{
		{"alg none is refused", "dpop_algs: [ES256, none]", "tokens.dpop_algs[1]", `"none" is not an asymmetric JWS algorithm`, nil},
		{"a MAC is refused", "dpop_algs: [HS256]", "tokens.dpop_algs[0]", `"HS256" is not an asymmetric JWS algorithm`, nil},
		{"an unknown name is refused", "dpop_algs: [es256]", "tokens.dpop_algs[0]", "allowed: ES256", nil},
		{"a name twice is refused", "dpop_algs: [ES256, ES256]", "tokens.dpop_algs[1]", "listed twice", nil},
		{"an empty list is refused", "dpop_algs: []", "tokens.dpop_algs", "at least one algorithm", nil},
		{"a window under 5 s is refused", "dpop_window: 1s", "tokens.dpop_window", "between 5s and 5m0s, got 1s", nil},
		{"a window over 5 min is refused", "dpop_window: 1h", "tokens.dpop_window", "between 5s and 5m0s, got 1h0m0s", nil},
		{"algs with the oidc upstream do nothing", "dpop_algs: [ES256]", "tokens.dpop_algs", "no effect with the oidc upstream", map[string]string{"upstream": oidc}},
		{"a window with the oidc upstream does nothing", "dpop_window: 30s", "tokens.dpop_window", "no effect with the oidc upstream", map[string]string{"upstream": oidc}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			over := map[string]string{"tokens": "tokens:\n  " + tt.tokens, "clients": clients(poll)}
			maps.Copy(over, tt.over)
			ps := problemsOf(t, doc(over), noEnv)
			if len(ps) != 1 || ps[0].Path != tt.path || !strings.Contains(ps[0].Message, tt.msg) {
				t.Fatalf("problems %v, want one at %s containing %q", ps, tt.path, tt.msg)
			}
		})
	}
}

// fapi.sender_constrained_tokens: every FAPI-CIBA client has mTLS- or
// DPoP-bound access tokens (FAPI 1.0 Advanced §5.2.2-5).
func TestFAPISenderConstrained(t *testing.T) {
	// A FAPI client authenticating with private_key_jwt, its tokens not
	// bound unless a row says so.
	fapi := "client_id: f1\nprofile: fapi-ciba\nbackchannel_token_delivery_mode: poll\ntoken_endpoint_auth_methods: [private_key_jwt]\nbackchannel_authentication_request_signing_alg: ES256\njwks_uri: https://client.example/jwks\n"
	on := "fapi:\n  sender_constrained_tokens: true\n"
	t.Run("a FAPI client without bound tokens is refused, naming both ways", func(t *testing.T) {
		ps := problemsOf(t, doc(map[string]string{"clients": clients(fapi)})+on, noEnv)
		if len(ps) != 1 || !strings.HasSuffix(ps[0].Path, ".dpop_bound_access_tokens") || !strings.Contains(ps[0].Message, "tls_client_certificate_bound_access_tokens") {
			t.Fatalf("problems %v, want one at dpop_bound_access_tokens", ps)
		}
	})
	t.Run("a FAPI client with DPoP-bound tokens is valid", func(t *testing.T) {
		mustParse(t, doc(map[string]string{"clients": clients(fapi + "dpop_bound_access_tokens: true\n")})+on, noEnv)
	})
	t.Run("without the switch, an unbound FAPI client is valid as before", func(t *testing.T) {
		mustParse(t, doc(map[string]string{"clients": clients(fapi)}), noEnv)
	})
	t.Run("the switch is refused with the oidc upstream", func(t *testing.T) {
		over := map[string]string{"upstream": "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com", "clients": clients("client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\n")}
		ps := problemsOf(t, doc(over)+on, noEnv)
		if len(ps) != 1 || ps[0].Path != "fapi.sender_constrained_tokens" {
			t.Fatalf("problems %v, want one at fapi.sender_constrained_tokens", ps)
		}
	})
}
