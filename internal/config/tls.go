package config

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/netip"
	"os"
	"slices"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// Mutual-TLS client authentication methods of
// [Client.TokenEndpointAuthMethods] (RFC 8705 §2).
const (
	AuthTLSClient           = clientmeta.MethodTLSClientAuth
	AuthSelfSignedTLSClient = clientmeta.MethodSelfSignedTLSClientAuth
)

// TLS makes cibaproxy serve HTTPS itself, and ask clients for a
// certificate (RFC 8705 mutual TLS). The certificate is requested, not
// required: clients authenticating otherwise connect without one.
type TLS struct {
	// CertFile and KeyFile are the server's PEM certificate (chain) and
	// private key. Both or neither; relative to the configuration file.
	// Empty (default): plain HTTP, for a TLS-terminating proxy in front.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`

	// ClientCAFile holds the PEM CA certificates that issue the
	// certificates of tls_client_auth clients: a certificate, presented on
	// TLS or forwarded by mtls_proxy, must chain to one of them (with the
	// clientAuth extended key usage) to be used for tls_client_auth.
	// Required by tls_client_auth. The TLS handshake itself accepts any
	// certificate, so that self_signed_tls_client_auth certificates (which
	// need no CA) get through; the chain is checked when the client
	// authenticates.
	ClientCAFile string `yaml:"client_ca_file"`

	// Certificate is CertFile and KeyFile loaded. Set by [Load].
	Certificate *tls.Certificate `yaml:"-"`

	// ClientCAs is ClientCAFile loaded; nil without it. Set by [Load].
	ClientCAs *x509.CertPool `yaml:"-"`
}

// Enabled reports whether cibaproxy serves HTTPS.
func (t *TLS) Enabled() bool { return t.CertFile != "" }

// MTLSProxy makes cibaproxy believe the client certificate a
// TLS-terminating proxy forwards in a header (the PEM certificate,
// URL-encoded, as nginx's $ssl_client_escaped_cert), from the proxy's
// addresses only: from any other address the header is ignored.
type MTLSProxy struct {
	// Header is the header carrying the certificate, e.g. X-Client-Cert.
	// Required with TrustedProxies.
	Header string `yaml:"header"`

	// TrustedProxies are the CIDR networks of the proxies whose Header is
	// believed (the TCP peer address is checked). Required with Header.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// Proxies is TrustedProxies parsed. Set by [Load].
	Proxies []netip.Prefix `yaml:"-"`
}

// Enabled reports whether a proxy forwards client certificates.
func (p *MTLSProxy) Enabled() bool { return p.Header != "" }

// MTLS reports whether client certificates can reach cibaproxy, directly
// or through a proxy.
func (c *Config) MTLS() bool { return c.TLS.Enabled() || c.MTLSProxy.Enabled() }

// CertBound reports whether client cl gets certificate-bound access tokens
// (RFC 8705 §3): it sets tls_client_certificate_bound_access_tokens, or it
// is a FAPI-CIBA client authenticating with mutual TLS under the local
// upstream, for which binding is implied (FAPI 1.0 Advanced §5.2.2-5 asks
// for sender-constrained access tokens, and such a client presents its
// certificate on every request anyway).
func (c *Config) CertBound(cl *Client) bool {
	if cl.CertBoundAccessTokens {
		return true
	}
	mtls := slices.Contains(cl.TokenEndpointAuthMethods, AuthTLSClient) || slices.Contains(cl.TokenEndpointAuthMethods, AuthSelfSignedTLSClient)
	return mtls && c.IsFAPI(cl) && c.Upstream.Type == UpstreamLocal
}

func (v *validator) tlsDefaults(c *Config) {
	c.TLS.CertFile = v.resolve(c.TLS.CertFile)
	c.TLS.KeyFile = v.resolve(c.TLS.KeyFile)
	c.TLS.ClientCAFile = v.resolve(c.TLS.ClientCAFile)
}

// checkTLS checks tls, mtls_proxy and the clients' mutual-TLS settings
// (RFC 8705 §2.1.2, §2.2.2).
func (v *validator) checkTLS(c *Config) {
	v.checkServerTLS(c)
	v.checkMTLSProxy(&c.MTLSProxy)
	for i := range c.Clients {
		v.checkClientTLS(c, &c.Clients[i], joinIndex("clients", i))
	}
}

// checkServerTLS loads tls: the server's key pair and the client CAs.
func (v *validator) checkServerTLS(c *Config) {
	t := &c.TLS
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		v.fail("tls.key_file", "tls.cert_file and tls.key_file are set together")
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			v.fail("tls.cert_file", "cannot load the key pair: %v", err)
		} else {
			t.Certificate = &cert
		}
	}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		pool := x509.NewCertPool()
		switch {
		case err != nil:
			v.fail("tls.client_ca_file", "cannot read: %v", err)
		case !pool.AppendCertsFromPEM(pem):
			v.fail("tls.client_ca_file", "holds no PEM certificate")
		default:
			t.ClientCAs = pool
		}
		if t.CertFile == "" && !c.MTLSProxy.Enabled() {
			v.fail("tls.client_ca_file", "needs tls.cert_file or mtls_proxy: no client certificate can reach cibaproxy")
		}
	}
}

// checkMTLSProxy checks mtls_proxy: a header and the proxies believed.
func (v *validator) checkMTLSProxy(p *MTLSProxy) {
	switch {
	case p.Header == "" && len(p.TrustedProxies) > 0:
		v.fail("mtls_proxy.header", "required with mtls_proxy.trusted_proxies, e.g. X-Client-Cert")
	case p.Header != "" && len(p.TrustedProxies) == 0:
		v.fail("mtls_proxy.trusted_proxies", "required with mtls_proxy.header: the certificate is believed only from these networks")
	case p.Header != "" && !validHeaderName(p.Header):
		v.fail("mtls_proxy.header", "must be an HTTP header name like X-Client-Cert, got %q", p.Header)
	case p.Header != "":
		p.Header = http.CanonicalHeaderKey(p.Header)
	}
	p.Proxies = v.parseNetworks("mtls_proxy.trusted_proxies", p.TrustedProxies)
}

// checkClientTLS checks what one client's mutual-TLS registration needs of
// the server; the registration itself is clientmeta's to check.
func (v *validator) checkClientTLS(c *Config, cl *Client, p string) {
	at := func(key string) string { return joinKey(p, key) }
	m := c.ClientMetadata(cl)
	if slices.Contains(cl.TokenEndpointAuthMethods, AuthTLSClient) && c.TLS.ClientCAFile == "" && m.HasOneTLSName() {
		// tls.client_ca_file itself needs tls.cert_file or mtls_proxy.
		v.fail(at("token_endpoint_auth_methods"), "tls_client_auth needs tls.client_ca_file, the CAs its certificates must chain to")
	}
	if cl.CertBoundAccessTokens {
		const key = "tls_client_certificate_bound_access_tokens"
		switch {
		case c.Upstream.Type != UpstreamLocal:
			v.fail(at(key), "not possible with the %s upstream: its access tokens are the identity provider's, which cibaproxy cannot bind to a certificate (RFC 8705 §3); have the provider bind them, or remove this setting", c.Upstream.Type)
		case cl.IsPublic():
			v.fail(at(key), "not supported for a public client (token_endpoint_auth_methods [none])")
		case !c.MTLS():
			v.fail(at(key), "needs tls.cert_file or mtls_proxy: the client must present a certificate to bind its tokens to, and none can reach cibaproxy")
		}
	}
	if slices.Contains(cl.TokenEndpointAuthMethods, AuthSelfSignedTLSClient) && !c.MTLS() {
		v.fail(at("token_endpoint_auth_methods"), "self_signed_tls_client_auth needs tls.cert_file or mtls_proxy")
	}
}
