package config

import "testing"

// tls_client_certificate_bound_access_tokens (RFC 8705 §3.4): one row per
// rule, each breaking only that rule.
func TestCertBoundRules(t *testing.T) {
	poll := "client_id: c1\nclient_secret: s1\nbackchannel_token_delivery_mode: poll\n"
	bound := "tls_client_certificate_bound_access_tokens: true\n"
	mtlsProxy := "mtls_proxy:\n  header: X-Client-Cert\n  trusted_proxies: [10.0.0.0/8]"
	oidc := "upstream:\n  type: oidc\n  oidc:\n    issuer: https://idp.example.com"
	for _, tt := range []struct {
		name string
		over map[string]string
		msg  string
	}{
		{"a bound client needs a way for certificates to arrive", map[string]string{"clients": clients(poll + bound)},
			"needs tls.cert_file or mtls_proxy"},
		{"tokens of the oidc upstream cannot be bound here", map[string]string{"upstream": oidc, "clients": clients(poll + bound), "limits": mtlsProxy},
			"not possible with the oidc upstream"},
		{"a public client cannot have bound tokens", map[string]string{"clients": clients(poll, "client_id: tv\ntoken_endpoint_auth_methods: [none]\ndevice_authorization: true\n"+bound), "limits": mtlsProxy},
			"not supported for a public client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			oneProblemAt(t, doc(tt.over), "tls_client_certificate_bound_access_tokens", tt.msg)
		})
	}

	t.Run("a bound secret client behind an mTLS proxy is valid", func(t *testing.T) {
		c := mustParse(t, doc(map[string]string{"clients": clients(poll + bound), "limits": mtlsProxy}), noEnv)
		if !c.Clients[0].CertBoundAccessTokens || !c.CertBound(&c.Clients[0]) {
			t.Fatal("the setting was not read")
		}
	})
}

// CertBound: set, or implied for a FAPI-CIBA client using mutual TLS with
// the local upstream (FAPI 1.0 Advanced §5.2.2-5 sender-constrained
// tokens); never implied where an identity provider issues the tokens.
func TestCertBound(t *testing.T) {
	for _, tt := range []struct {
		name     string
		upstream string
		fapi     bool
		methods  []string
		set      bool
		want     bool
	}{
		{"set explicitly", UpstreamLocal, false, []string{AuthClientSecretBasic}, true, true},
		{"off by default", UpstreamLocal, false, []string{AuthTLSClient}, false, false},
		{"implied for FAPI-CIBA with tls_client_auth", UpstreamLocal, true, []string{AuthTLSClient}, false, true},
		{"implied for FAPI-CIBA with self_signed_tls_client_auth", UpstreamLocal, true, []string{AuthPrivateKeyJWT, AuthSelfSignedTLSClient}, false, true},
		{"not implied for FAPI-CIBA with private_key_jwt only", UpstreamLocal, true, []string{AuthPrivateKeyJWT}, false, false},
		{"not implied under the oidc upstream", UpstreamOIDC, true, []string{AuthTLSClient}, false, false},
		{"not implied under the ciba upstream", UpstreamCIBA, true, []string{AuthTLSClient}, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{Upstream: Upstream{Type: tt.upstream}, FAPI: FAPI{CIBA: tt.fapi}}
			cl := &Client{TokenEndpointAuthMethods: tt.methods, CertBoundAccessTokens: tt.set}
			if got := c.CertBound(cl); got != tt.want {
				t.Fatalf("CertBound = %v, want %v", got, tt.want)
			}
		})
	}
}
