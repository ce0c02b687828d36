package app

import (
	"context"
	"fmt"
	"slices"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// registry is the client registry in force (replaced on reload, see
// App.ReloadClients) with a lookup the ciba service can use, and the
// authorization_details types in force (replaced by the same reload).
type registry struct {
	*clientauth.Live
	details *authzdetails.Live
}

// Client returns the domain view of client id.
func (r registry) Client(id string) (*ciba.Client, bool) {
	reg, ok := r.Lookup(id)
	if !ok {
		return nil, false
	}
	return reg.Client(), true
}

// buildClients turns the config's clients into the registry in force.
func buildClients(ctx context.Context, cfg *config.Config, replay jose.Replay) (registry, error) {
	r, err := newRegistry(ctx, cfg, replay)
	if err != nil {
		return registry{}, err
	}
	details := authzdetails.NewLive(authzdetails.Set{Registry: cfg.AuthorizationDetails.Registry, Templates: cfg.AuthorizationDetails.Templates})
	return registry{Live: clientauth.NewLive(r), details: details}, nil
}

// newRegistry turns the config's clients into registrations.
func newRegistry(ctx context.Context, cfg *config.Config, replay jose.Replay) (*clientauth.Registry, error) {
	ctx = clientsContext(ctx, cfg) // jwks_uri fetches obey the outbound policy
	regs := make([]*clientauth.Registration, 0, len(cfg.Clients))
	for _, c := range cfg.Clients {
		if c.IsPublic() { // no credentials: see deviceClients
			continue
		}
		// Load checked the client (config.Client.Checked); the
		// registration takes the checked metadata as it is.
		reg, err := clientauth.NewRegistration(ctx, c.Checked)
		if err != nil {
			return nil, fmt.Errorf("client %q: %w", c.ID, err)
		}
		regs = append(regs, reg)
	}
	r, err := clientauth.NewRegistry(regs...)
	if err != nil {
		return nil, err
	}
	r.AssertionPolicy = jose.AssertionPolicy{Issuer: cfg.Issuer, Replay: replay, EndpointAliases: tokenAliasURLs(cfg)}
	r.MTLS = clientauth.MTLS{ClientCAs: cfg.TLS.ClientCAs, ProxyHeader: cfg.MTLSProxy.Header, TrustedProxies: cfg.MTLSProxy.Proxies}
	return r, nil
}

// tokenAliasURLs maps the token endpoint's URL to the URLs of its aliases
// (http.token_aliases): a client assertion posted to an alias may name it
// as its aud (RFC 7523 §3). nil without aliases.
func tokenAliasURLs(cfg *config.Config) map[string][]string {
	if len(cfg.HTTP.TokenAliases) == 0 {
		return nil
	}
	urls := make([]string, 0, len(cfg.HTTP.TokenAliases))
	for _, a := range cfg.HTTP.TokenAliases {
		urls = append(urls, cfg.Issuer+a)
	}
	return map[string][]string{cfg.Issuer + httpapi.PathToken: urls}
}

// discovery is the OpenID Provider metadata (OIDC Discovery §3, RFC 8414,
// CIBA §4), listing only what is enabled. Under the global FAPI-CIBA switch
// (fapi.ciba) it lists only what the profile allows: PS256 and ES256,
// private_key_jwt (and mutual TLS when supported), poll and ping.
func discovery(cfg *config.Config, reg registry, up ciba.Upstream) map[string]any {
	algs := jose.DefaultAlgs()
	for _, id := range reg.IDs() {
		if r, _ := reg.Lookup(id); r.AllowsHS256RequestObject() && !slices.Contains(algs, "HS256") {
			algs = append(algs, "HS256")
		}
	}
	methods := []string{clientauth.MethodSecretBasic, clientauth.MethodSecretPost, clientauth.MethodPrivateKeyJWT}
	assertionAlgs := jose.DefaultAlgs()
	modes := []string{"poll", "ping", "push"}
	if cfg.FAPI.CIBA {
		algs, assertionAlgs = config.FAPIAlgs(), config.FAPIAlgs()
		methods = config.FAPIAuthMethods()
		modes = []string{"poll", "ping"}
	}
	if cfg.MTLS() {
		// RFC 8705 §2.3: the mutual-TLS methods, when a client certificate
		// can reach cibaproxy (tls, or mtls_proxy).
		for _, m := range []string{clientauth.MethodTLSClientAuth, clientauth.MethodSelfSignedTLSClientAuth} {
			if !slices.Contains(methods, m) {
				methods = append(methods, m)
			}
		}
	} else {
		methods = slices.DeleteFunc(methods, func(m string) bool {
			return m == clientauth.MethodTLSClientAuth || m == clientauth.MethodSelfSignedTLSClientAuth
		})
	}
	doc := map[string]any{
		"issuer":                                cfg.Issuer,
		"token_endpoint":                        cfg.Issuer + httpapi.PathToken,
		"backchannel_authentication_endpoint":   cfg.Issuer + httpapi.PathBCAuthz,
		"jwks_uri":                              cfg.Issuer + httpapi.PathJWKS,
		"grant_types_supported":                 []string{httpapi.GrantCIBA, "refresh_token"},
		"token_endpoint_auth_methods_supported": methods,
		"token_endpoint_auth_signing_alg_values_supported":                assertionAlgs,
		"backchannel_token_delivery_modes_supported":                      modes,
		"backchannel_authentication_request_signing_alg_values_supported": algs,
		"backchannel_user_code_parameter_supported":                       up != nil && up.SupportsUserCode(),
		"subject_types_supported":                                         []string{"public"},
		"id_token_signing_alg_values_supported":                           []string{"RS256", "PS256", "ES256"},
		"scopes_supported":                                                []string{"openid", "profile", "email", "address", "phone"},
		"claims_supported":                                                []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "name", "email", "email_verified", "preferred_username"},
		"response_types_supported":                                        []string{},
	}
	// RFC 9396 §10: the authorization_details types accepted, when any
	// (those in force: a reload may change them).
	if types := reg.details.Registry().Types(); len(types) > 0 {
		doc["authorization_details_types_supported"] = types
	}
	return doc
}

// deviceClients are the clients of the device authorization grant, from the
// configuration: those with device_authorization, and among them the public
// ones (token_endpoint_auth_method none), which clientauth does not hold.
type deviceClients struct {
	enabled map[string]bool
	public  map[string]*ciba.Client
}

func newDeviceClients(cfg *config.Config) deviceClients {
	d := deviceClients{enabled: map[string]bool{}, public: map[string]*ciba.Client{}}
	for _, c := range cfg.Clients {
		if !c.DeviceAuthorization {
			continue
		}
		d.enabled[c.ID] = true
		if c.IsPublic() {
			d.public[c.ID] = &ciba.Client{ID: c.ID, Name: c.Name, Scopes: c.Scopes, DPoPBoundAccessTokens: c.DPoPBoundAccessTokens}
		}
	}
	return d
}

// Enabled reports whether client id may use the device grant.
func (d deviceClients) Enabled(id string) bool { return d.enabled[id] }

// Public returns the public device client id.
func (d deviceClients) Public(id string) (*ciba.Client, bool) {
	c, ok := d.public[id]
	return c, ok
}

// lookup adds the public clients to a client lookup.
func (d deviceClients) lookup(next func(string) (*ciba.Client, bool)) func(string) (*ciba.Client, bool) {
	if len(d.public) == 0 {
		return next
	}
	return func(id string) (*ciba.Client, bool) {
		if c, ok := d.public[id]; ok {
			return c, true
		}
		return next(id)
	}
}

// withDevice adds the device grant to a discovery document (RFC 8628 §4):
// its endpoint, its grant type and, with public clients, the "none"
// authentication method.
func withDevice(next func(context.Context) (map[string]any, error), cfg *config.Config, d deviceClients) func(context.Context) (map[string]any, error) {
	return func(ctx context.Context) (map[string]any, error) {
		doc, err := next(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[string]any, len(doc)+1)
		for k, v := range doc {
			out[k] = v
		}
		out["device_authorization_endpoint"] = cfg.Issuer + httpapi.PathDeviceAuthorization
		out["grant_types_supported"] = appendName(out["grant_types_supported"], httpapi.GrantDeviceCode)
		if len(d.public) > 0 {
			out["token_endpoint_auth_methods_supported"] = appendName(out["token_endpoint_auth_methods_supported"], config.AuthNone)
			// A public client revokes its tokens by its client_id, as it
			// refreshes (RFC 7009 §2.1).
			if _, ok := out["revocation_endpoint"]; ok {
				out["revocation_endpoint_auth_methods_supported"] = appendName(out["revocation_endpoint_auth_methods_supported"], config.AuthNone)
			}
		}
		return out, nil
	}
}

// appendName appends name to a metadata list ([]string or []any), once.
func appendName(list any, name string) []string {
	var out []string
	switch l := list.(type) {
	case []string:
		out = slices.Clone(l)
	case []any:
		for _, v := range l {
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
		}
	}
	if !slices.Contains(out, name) {
		out = append(out, name)
	}
	return out
}
