package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/metrics"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
	cibaup "github.com/cibaproxy/cibaproxy/internal/upstream/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
	oidcup "github.com/cibaproxy/cibaproxy/internal/upstream/oidc"
)

// upstream is what one upstream kind contributes to the server.
type upstream struct {
	ciba.Upstream
	minter    ciba.Minter
	refresher httpapi.Refresher
	// tokens serves introspection, revocation and userinfo (local).
	tokens     httpapi.TokenServices
	passwords  httpapi.Passwords
	federation httpapi.Federation
	forwarder  httpapi.TokenForwarder
	// relay runs requests at a CIBA upstream (ciba upstream).
	relay ciba.Relay
	// audiences are further aud values clients may use for cibaproxy.
	audiences []string
	discovery func(ctx context.Context) (map[string]any, error)
	ready     func(ctx context.Context) error
}

func buildLocal(cfg *config.Config, st ciba.Store, signer *keys.Live, reg registry, slots *limit.Slots, log *slog.Logger) (*upstream, error) {
	users := make([]local.User, 0, len(cfg.Upstream.Local.Users))
	for _, u := range cfg.Upstream.Local.Users {
		users = append(users, local.User{
			Username: u.Username, Subject: u.Subject, Claims: u.Claims,
			PasswordHash: []byte(u.PasswordHash), UserCodeHash: []byte(u.UserCodeHash),
		})
	}
	up, err := local.New(local.Config{
		Issuer:          cfg.Issuer,
		Users:           users,
		AccessTokenTTL:  cfg.Tokens.AccessTokenTTL,
		IDTokenTTL:      cfg.Tokens.IDTokenTTL,
		RefreshTokenTTL: cfg.Tokens.RefreshTokenTTL,
		Signer:          signer,
		Hints: &clientauth.Hints{
			Registry:        reg.Live,
			IDTokens:        jose.IDTokenHintPolicy{Issuer: cfg.Issuer, KeySet: signer.KeySet()},
			LoginHintTokens: jose.HintTokenPolicy{Issuer: cfg.Issuer},
		},
		LeftHash: keys.LeftHash,
		Store:    st,
		Slots:    slots,
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	return &upstream{
		Upstream: up, minter: up, refresher: up, passwords: up, tokens: up,
		// Built per call: the clients (and so the algs) may be reloaded.
		discovery: func(context.Context) (map[string]any, error) {
			doc := discovery(cfg, reg, up)
			// RFC 8705 §3.3: this issuer binds access tokens to client
			// certificates, when one can reach it.
			doc["tls_client_certificate_bound_access_tokens"] = cfg.MTLS()
			// RFC 9449 §5.1: the algorithms of the DPoP proofs accepted
			// (tokens.dpop_algs, the verifier's list).
			algs := cfg.Tokens.DPoPAlgs
			if algs == nil {
				algs = dpop.DefaultAlgs()
			}
			doc["dpop_signing_alg_values_supported"] = algs
			// What the issuer's keys really sign with: one algorithm, two
			// while a rotation switches (FAPI 1.0 Advanced §8.6).
			doc["id_token_signing_alg_values_supported"] = signer.Algs()
			// The scopes granted to a client without its own list.
			doc["scopes_supported"] = localScopes(cfg)
			tokenServices(doc, cfg)
			return doc, nil
		},
	}, nil
}

// tokenServices lists the local issuer's introspection (RFC 7662 §4,
// RFC 8414 §2), revocation (RFC 7009 §3, RFC 8414 §2) and userinfo (OIDC
// Discovery §3) endpoints in doc; the first two take the token endpoint's
// client authentication methods.
func tokenServices(doc map[string]any, cfg *config.Config) {
	doc["introspection_endpoint"] = cfg.Issuer + httpapi.PathIntrospect
	doc["revocation_endpoint"] = cfg.Issuer + httpapi.PathRevoke
	doc["userinfo_endpoint"] = cfg.Issuer + httpapi.PathUserinfo
	for _, name := range []string{"introspection_endpoint", "revocation_endpoint"} {
		doc[name+"_auth_methods_supported"] = doc["token_endpoint_auth_methods_supported"]
		doc[name+"_auth_signing_alg_values_supported"] = doc["token_endpoint_auth_signing_alg_values_supported"]
	}
}

func buildOIDC(ctx context.Context, cfg *config.Config, reg registry, m *metrics.Metrics, tr *tracing.Tracing, log *slog.Logger) (*upstream, error) {
	o := cfg.Upstream.OIDC
	up, err := oidcup.New(ctx, oidcup.Config{
		Issuer:      o.Issuer,
		RedirectURL: cfg.Issuer + httpapi.PathApproveCallback,
		Clients:     oidcCredentials(cfg),
		MatchClaims: o.MatchClaims,
		Prompt:      o.Prompt,
		HTTPClient:  upstreamHTTP("oidc", o.Timeout, m, tr),
		Logger:      log,
	})
	if err != nil {
		return nil, fmt.Errorf("oidc upstream: %w", err)
	}
	return &upstream{
		Upstream:   up,
		federation: &federation{up: up, issuer: o.Issuer},
		forwarder:  up,
		audiences:  []string{o.Issuer},
		discovery: func(ctx context.Context) (map[string]any, error) {
			md, err := up.Metadata(ctx)
			if err != nil {
				return nil, err
			}
			return federatedDiscovery(md, discovery(cfg, reg, up)), nil
		},
		ready: up.Ready,
	}, nil
}

// upstreamHTTP is the client of the calls to the identity provider of kind
// (its name in traces and metrics): each bounded by timeout, traced and
// counted, and never following a redirect.
func upstreamHTTP(kind string, timeout time.Duration, m *metrics.Metrics, tr *tracing.Tracing) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     tr.Transport(kind, m.Transport(kind, nil)),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// oidcCredentials are each client's credentials at the identity provider,
// for its authorization code flow and its other grants.
func oidcCredentials(cfg *config.Config) map[string]idp.Credentials {
	creds := make(map[string]idp.Credentials, len(cfg.Clients))
	for _, c := range cfg.Clients {
		cr := c.Credentials()
		creds[c.ID] = idp.Credentials{ClientID: cr.ClientID, ClientSecret: cr.ClientSecret, AuthMethod: cr.AuthMethod}
	}
	return creds
}

// federatedDiscovery is the provider's metadata with cibaproxy's token
// endpoint and CIBA fields, so that a client validates the provider's
// tokens against the provider's keys unchanged.
func federatedDiscovery(md, own map[string]any) map[string]any {
	doc := maps.Clone(md)
	for _, k := range []string{
		"token_endpoint", "backchannel_authentication_endpoint",
		"backchannel_authentication_request_signing_alg_values_supported",
		"token_endpoint_auth_methods_supported", "token_endpoint_auth_signing_alg_values_supported",
	} {
		doc[k] = own[k]
	}
	doc["backchannel_token_delivery_modes_supported"] = []string{"poll", "ping"}
	// cibaproxy does not relay authorization_details to a provider yet
	// (the configuration refuses them with these upstreams): the
	// provider's types are not accepted at cibaproxy's bc-authorize.
	delete(doc, "authorization_details_types_supported")
	// The approval page asks the user to confirm a user_code.
	doc["backchannel_user_code_parameter_supported"] = true
	grants := []string{"authorization_code", "refresh_token"}
	if gs, ok := md["grant_types_supported"].([]any); ok {
		grants = grants[:0]
		for _, g := range gs {
			if s, ok := g.(string); ok && s != httpapi.GrantCIBA {
				grants = append(grants, s)
			}
		}
	}
	doc["grant_types_supported"] = append(slices.Clone(grants), httpapi.GrantCIBA)
	// Aliases would send mTLS clients to the provider's own token endpoint.
	delete(doc, "mtls_endpoint_aliases")
	// The provider binds none of the tokens obtained through cibaproxy: it
	// sees cibaproxy's connection, not the client's certificate.
	delete(doc, "tls_client_certificate_bound_access_tokens")
	return doc
}

// federation adapts the oidc upstream to the approval page.
type federation struct {
	up     *oidcup.Upstream
	issuer string
}

func (f *federation) LoginURL(ctx context.Context, r *ciba.AuthRequest, l httpapi.Login) (string, error) {
	return f.up.AuthCodeURL(ctx, r.ClientID, oidcup.Login{State: l.State, Nonce: l.Nonce, CodeVerifier: l.Verifier},
		oidcup.AuthParams{Scopes: r.Scopes, LoginHint: r.LoginHint, ACRValues: r.ACRValues, AuthzDetails: r.AuthzDetails, Resources: r.Resources})
}

// Complete exchanges the code at the provider. A CIBA request must be
// approved by the user the client named; a device request (RFC 8628) names
// nobody, so whoever signs in approves it, after the same checks of the ID
// token.
func (f *federation) Complete(ctx context.Context, r *ciba.AuthRequest, code string, l httpapi.Login) (httpapi.Completed, error) {
	want := oidcup.Expected{Subject: r.Subject, LoginHint: r.LoginHint}
	if r.Kind == ciba.KindDevice {
		want = oidcup.Expected{AnyUser: true}
	}
	x, err := f.up.ExchangeUser(ctx, r.ClientID, code, oidcup.Login{State: l.State, Nonce: l.Nonce, CodeVerifier: l.Verifier}, want)
	if errors.Is(err, oidcup.ErrWrongUser) {
		return httpapi.Completed{}, fmt.Errorf("%w: %w", httpapi.ErrWrongUser, err)
	}
	if err != nil {
		return httpapi.Completed{}, err
	}
	body, err := json.Marshal(x.Tokens)
	if err != nil {
		return httpapi.Completed{}, fmt.Errorf("encode token response: %w", err)
	}
	return httpapi.Completed{Tokens: body, AuthTime: x.AuthTime, Subject: x.Subject}, nil
}

// Origin is the origin of the provider's authorization endpoint, once
// its metadata could be read.
func (f *federation) Origin() string {
	u, err := url.Parse(f.up.AuthorizationEndpoint())
	if err != nil || u.Scheme == "" || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

// Issuer is the provider's issuer identifier, which it may send back with
// the authorization response (RFC 9207).
func (f *federation) Issuer() string { return f.issuer }

func buildCIBA(ctx context.Context, cfg *config.Config, reg registry, m *metrics.Metrics, tr *tracing.Tracing, log *slog.Logger) (*upstream, error) {
	u := cfg.Upstream.CIBA
	relayCreds := make(map[string]cibaup.Credentials, len(cfg.Clients))
	for _, c := range cfg.Clients {
		cr := c.Credentials()
		relayCreds[c.ID] = cibaup.Credentials{
			Credentials: idp.Credentials{ClientID: cr.ClientID, ClientSecret: cr.ClientSecret, AuthMethod: cr.AuthMethod},
			Ping:        cr.Ping,
		}
	}
	rel, err := cibaup.New(ctx, cibaup.Config{Issuer: u.Issuer, Clients: relayCreds, HTTPClient: upstreamHTTP("ciba", u.Timeout, m, tr), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("ciba upstream: %w", err)
	}
	// The provider's other grants (refresh_token) pass through, as with
	// the oidc upstream, which also serves its metadata.
	fed, err := oidcup.New(ctx, oidcup.Config{
		Issuer: u.Issuer, RedirectURL: cfg.Issuer + httpapi.PathApproveCallback, Clients: oidcCredentials(cfg),
		HTTPClient: upstreamHTTP("oidc", u.Timeout, m, tr), Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("ciba upstream: %w", err)
	}
	if cfg.DeviceEnabled() {
		// The device grant is relayed to the IdP's own endpoint: an IdP
		// without one cannot serve it. One that cannot be reached now is
		// checked again at each request (StartDevice).
		_, err := rel.DeviceAuthorizationEndpoint(ctx)
		switch {
		case errors.Is(err, cibaup.ErrNoDeviceEndpoint):
			return nil, fmt.Errorf("ciba upstream: clients with device_authorization need an identity provider with the device grant: %w", err)
		case err != nil:
			log.Warn("ciba upstream: the identity provider's device_authorization_endpoint could not be checked; checked again at each device request", slog.Any("error", err))
		}
	}
	return &upstream{
		relay:     rel,
		forwarder: fed,
		audiences: []string{u.Issuer},
		discovery: func(ctx context.Context) (map[string]any, error) {
			md, err := rel.Metadata(ctx)
			if err != nil {
				return nil, err
			}
			doc := federatedDiscovery(md, discovery(cfg, reg, nil))
			// The provider checks user codes; say what it says.
			doc["backchannel_user_code_parameter_supported"] = md["backchannel_user_code_parameter_supported"] == true
			return doc, nil
		},
		ready: func(ctx context.Context) error {
			if err := rel.Ready(ctx); err != nil {
				return err
			}
			return fed.Ready(ctx)
		},
	}, nil
}
