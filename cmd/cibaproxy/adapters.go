package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// registry is the client registry with a lookup the ciba service can use.
type registry struct{ *clientauth.Registry }

// Client returns the domain view of client id.
func (r registry) Client(id string) (*ciba.Client, bool) {
	reg, ok := r.Lookup(id)
	if !ok {
		return nil, false
	}
	return reg.Client(), true
}

// buildClients turns the config's clients into registrations.
func buildClients(ctx context.Context, cfg *config.Config, replay jose.Replay) (registry, error) {
	regs := make([]*clientauth.Registration, 0, len(cfg.Clients))
	for _, c := range cfg.Clients {
		var jwks gojose.JSONWebKeySet
		if len(c.JWKS) > 0 {
			if err := json.Unmarshal(c.JWKS, &jwks); err != nil {
				return registry{}, fmt.Errorf("client %q: jwks: %w", c.ID, err)
			}
		}
		reg, err := clientauth.NewRegistration(ctx, clientauth.Options{
			Client: ciba.Client{
				ID:                   c.ID,
				Name:                 c.Name,
				Mode:                 ciba.DeliveryMode(c.DeliveryMode),
				NotificationEndpoint: c.NotificationEndpoint,
				RequireUserCode:      c.UserCodeParameter,
				Scopes:               c.Scopes,
			},
			Secret:                  c.Secret,
			SecretHash:              c.SecretHash,
			Methods:                 c.TokenEndpointAuthMethods,
			JWKS:                    jwks,
			JWKSURI:                 c.JWKSURI,
			RequestObjectAlg:        c.RequestSigningAlg,
			AllowHS256RequestObject: c.AllowHS256RequestObject,
		})
		if err != nil {
			return registry{}, fmt.Errorf("client %q: %w", c.ID, err)
		}
		regs = append(regs, reg)
	}
	r, err := clientauth.NewRegistry(regs...)
	if err != nil {
		return registry{}, err
	}
	r.AssertionPolicy = jose.AssertionPolicy{Issuer: cfg.Issuer, Replay: replay}
	return registry{r}, nil
}

// discovery is the OpenID Provider metadata (OIDC Discovery §3, RFC 8414,
// CIBA §4), listing only what is enabled.
func discovery(cfg *config.Config, reg registry, up ciba.Upstream) map[string]any {
	algs := jose.DefaultAlgs()
	for _, id := range reg.IDs() {
		if r, _ := reg.Lookup(id); r.AllowsHS256RequestObject() && !slices.Contains(algs, "HS256") {
			algs = append(algs, "HS256")
		}
	}
	return map[string]any{
		"issuer":                                cfg.Issuer,
		"token_endpoint":                        cfg.Issuer + httpapi.PathToken,
		"backchannel_authentication_endpoint":   cfg.Issuer + httpapi.PathBCAuthz,
		"jwks_uri":                              cfg.Issuer + httpapi.PathJWKS,
		"grant_types_supported":                 []string{httpapi.GrantCIBA, "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{clientauth.MethodSecretBasic, clientauth.MethodSecretPost, clientauth.MethodPrivateKeyJWT},
		"token_endpoint_auth_signing_alg_values_supported":                jose.DefaultAlgs(),
		"backchannel_token_delivery_modes_supported":                      []string{"poll", "ping", "push"},
		"backchannel_authentication_request_signing_alg_values_supported": algs,
		"backchannel_user_code_parameter_supported":                       up != nil && up.SupportsUserCode(),
		"subject_types_supported":                                         []string{"public"},
		"id_token_signing_alg_values_supported":                           []string{"RS256", "PS256", "ES256"},
		"scopes_supported":                                                []string{"openid", "profile", "email", "address", "phone"},
		"claims_supported":                                                []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "name", "email", "email_verified", "preferred_username"},
		"response_types_supported":                                        []string{},
	}
}
