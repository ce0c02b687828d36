package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/idp"
)

// FederationOptions configures StartIdPAndProxy: a real OpenID Provider
// (test/idp, node-oidc-provider) and cibaproxy in front of it, on the oidc
// or the ciba upstream.
type FederationOptions struct {
	// IdP returns the provider's clients and accounts. It is called with
	// the Federation before either process starts, when only cibaproxy's
	// address is known (Addr, Issuer, Callback), so that the clients can
	// name cibaproxy's callback or upstream ping endpoint.
	IdP func(f *Federation) idp.Config
	// Config returns cibaproxy's configuration file (YAML), called once
	// the provider runs (f.IdP.Issuer() is its issuer); it is written to a
	// temporary file. When nil, Options.Config is used as is (a shipped
	// example, pointed at the provider through Env).
	Config func(f *Federation) string
	// Env, when set, returns further KEY=VALUE entries for cibaproxy,
	// called once the provider runs (e.g. "IDP_ISSUER=" + f.IdP.Issuer()).
	Env func(f *Federation) []string
	// Options start cibaproxy (Binary is required); Addr and Config are
	// filled in by StartIdPAndProxy.
	Options Options
}

// Federation is a running provider and the cibaproxy in front of it. Both
// are stopped when the test ends.
type Federation struct {
	// Addr is cibaproxy's listen address, 127.0.0.1:PORT.
	Addr string
	// Issuer is cibaproxy's issuer, http://Addr.
	Issuer string
	// Callback is cibaproxy's approval callback, the redirect_uri to
	// register at the provider for the oidc upstream.
	Callback string
	// IdP is the provider; nil while FederationOptions.IdP runs.
	IdP *idp.IdP
	// Server is cibaproxy; nil until it has started.
	Server *Server
}

// StartIdPAndProxy picks cibaproxy's address, starts the provider with
// o.IdP's configuration, then cibaproxy with o.Config's configuration, and
// waits until cibaproxy answers /healthz. With -short the test is skipped
// (the provider needs node).
func StartIdPAndProxy(t testing.TB, o FederationOptions) *Federation {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	f := &Federation{Addr: addr, Issuer: "http://" + addr}
	f.Callback = f.Issuer + "/approve/callback"
	f.IdP = idp.Start(t, o.IdP(f))
	opts := o.Options
	opts.Addr = addr
	if o.Config != nil {
		path := filepath.Join(t.TempDir(), "cibaproxy.yaml")
		if err := os.WriteFile(path, []byte(o.Config(f)), 0o600); err != nil {
			t.Fatal(err)
		}
		opts.Config = path
	}
	if o.Env != nil {
		opts.Env = append(append([]string(nil), opts.Env...), o.Env(f)...)
	}
	f.Server = Start(t, opts)
	return f
}

// OIDCProxyConfig is the configuration file (YAML) of a cibaproxy on the
// oidc upstream in front of f's provider, for FederationOptions.Config:
// f's issuer and address, the embedded store in ${CIBAPROXY_DATA}, the
// webhook channel at ${CIBAPROXY_WEBHOOK_URL}, outbound calls allowed over
// plain http to loopback (the provider), and login_hint matched against
// the provider's claims matchClaims (e.g. email). rest is the remainder,
// appended as it is: the clients, and any other top-level section
// (limits, device, authorization_details).
func (f *Federation) OIDCProxyConfig(matchClaims []string, rest string) string {
	return fmt.Sprintf(`issuer: %s
listen: %s
store:
  type: embedded
  path: ${CIBAPROXY_DATA}/cibaproxy.db
upstream:
  type: oidc
  oidc:
    issuer: %s
    match_claims: [%s]
channels:
  webhook:
    url: ${CIBAPROXY_WEBHOOK_URL}
outbound:
  allow_http: true
  allow_networks: [127.0.0.0/8]
`, f.Issuer, f.Addr, f.IdP.Issuer(), strings.Join(matchClaims, ", ")) + rest
}
