// Package oidc is the "oidc" upstream: federation to an existing OpenID
// Provider (the IdP). cibaproxy resolves the user a client names, sends the
// user's browser to the IdP (authorization code flow with PKCE, state and
// nonce), exchanges the code with that client's own credentials at the IdP,
// verifies the ID token and that its user is the one the client named, and
// hands the IdP's tokens back unchanged. Grants other than CIBA are passed
// through to the IdP's token endpoint.
//
// Discovery and the IdP's keys come from github.com/coreos/go-oidc/v3; the
// code exchange from golang.org/x/oauth2. An IdP that cannot be reached when
// the upstream is created is not fatal: discovery is retried on use, with a
// backoff, and Ready reports it.
package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
)

// Config configures the oidc upstream.
type Config struct {
	// Issuer is the IdP's issuer URL, exactly as its discovery document
	// and ID tokens spell it; discovery is at
	// Issuer + "/.well-known/openid-configuration".
	Issuer string
	// RedirectURL is cibaproxy's callback on the approval page (the
	// redirect_uri registered at the IdP for every client), e.g.
	// https://ciba.example/approve/callback.
	RedirectURL string
	// Clients maps a cibaproxy client_id to that client's credentials at
	// the IdP. The tokens the IdP issues are the client's own (aud = its
	// IdP client_id); a client missing here cannot use this upstream.
	Clients map[string]idp.Credentials
	// MatchClaims are the ID-token claims compared with a login_hint, in
	// order; the first equal one accepts the user. "email" is compared
	// case-insensitively and only when email_verified is not false.
	// Default ["sub"].
	MatchClaims []string
	// Prompt is "login" to make the IdP re-authenticate the user for every
	// approval (OIDC Core §3.1.2.1), or "" to let it reuse its session.
	Prompt string
	// HTTPClient calls the IdP. It should not follow redirects and must
	// have a timeout: it also fetches keys in the background. Nil: a
	// default with a 10 s timeout that does not follow redirects.
	HTTPClient *http.Client
	// Logger receives discovery failures and recoveries; nil discards.
	Logger *slog.Logger
}

// maxBody bounds what is read of an IdP answer (JWKS probe, forwarded
// token responses).
const maxBody = 1 << 20

// Upstream is the oidc upstream. It implements ciba.Upstream; the approval
// page uses AuthCodeURL and Exchange, the token endpoint ForwardToken. It is
// safe for concurrent use.
type Upstream struct {
	cfg     Config
	http    *http.Client
	now     func() time.Time
	clients map[string]idp.Credentials

	// idp loads the discovery document and key set on use, with a
	// backoff, and probes the keys for Ready.
	idp *idp.Loader[provider]
}

// provider is what discovery yields.
type provider struct {
	issuer   string
	endpoint oauth2.Endpoint // AuthStyle is set per client
	keys     *keySet
	jwksURI  string
	algs     []string
	raw      []byte // the discovery document as the IdP served it
	// authzTypes is authorization_details_types_supported (RFC 9396 §10).
	authzTypes []string
}

// New validates cfg and returns the upstream. It attempts discovery with
// ctx: an IdP that cannot be reached (or answers 5xx) is logged and retried
// on use; an IdP that answers with another issuer is a configuration error
// and fails New.
func New(ctx context.Context, cfg Config) (*Upstream, error) {
	return newUpstream(ctx, cfg, time.Now)
}

func newUpstream(ctx context.Context, cfg Config, now func() time.Time) (*Upstream, error) {
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	u := &Upstream{cfg: cfg, http: cfg.HTTPClient, now: now, clients: cfg.Clients}
	if u.http == nil {
		u.http = idp.DefaultHTTPClient()
	}
	u.idp = idp.New(idp.Config[provider]{
		Prefix:   "oidc",
		Issuer:   cfg.Issuer,
		Discover: u.discover,
		Probe:    func(ctx context.Context, p *provider) error { return u.probeKeys(ctx, p.jwksURI) },
		Document: func(p *provider) []byte { return p.raw },
		// The keys fetched by discovery do not count as a probe: the
		// first Ready after discovery fetches them again.
		DiscoveryProbes: false,
		Logger:          cfg.Logger, // nil discards
		Now:             now,
	})
	if _, err := u.provider(ctx); err != nil {
		if err := idp.IssuerMismatch("oidc", err); err != nil {
			return nil, err
		}
		// Logged by provider; retried on use.
	}
	return u, nil
}

func validate(cfg *Config) error {
	if err := absURL("issuer", cfg.Issuer); err != nil {
		return err
	}
	if err := absURL("redirect URL", cfg.RedirectURL); err != nil {
		return err
	}
	if err := idp.CheckClients("oidc", cfg.Clients); err != nil {
		return err
	}
	if len(cfg.MatchClaims) == 0 {
		cfg.MatchClaims = []string{"sub"}
	}
	for _, c := range cfg.MatchClaims {
		if c == "" {
			return errors.New("oidc: an empty claim name in match claims")
		}
	}
	if cfg.Prompt != "" && cfg.Prompt != "login" {
		return fmt.Errorf("oidc: prompt %q is not supported (\"login\" or empty)", cfg.Prompt)
	}
	return nil
}

func absURL(what, s string) error { return idp.AbsURL("oidc", what, s) }

// Ready reports whether the IdP's discovery document and keys have been
// loaded; if not, it tries (at most once per backoff period) and returns an
// error wrapping ciba.ErrUnavailable while the IdP cannot be reached.
//
// Once loaded, it checks that the IdP still answers by fetching its keys,
// at most once per idp.ReadyProbeEvery (readiness probes come often, from
// every instance), so an IdP that went away turns readiness red.
func (u *Upstream) Ready(ctx context.Context) error { return u.idp.Ready(ctx) }

// Metadata returns the IdP's discovery document as a JSON object, a fresh
// copy on every call (cibaproxy's own discovery is built from it in this
// mode). Error as for Ready.
func (u *Upstream) Metadata(ctx context.Context) (map[string]any, error) {
	return u.idp.Metadata(ctx)
}

// AuthorizationEndpoint is the IdP's authorization_endpoint, or "" while
// discovery has not succeeded (the approval page allows it as a form target).
func (u *Upstream) AuthorizationEndpoint() string {
	if p := u.idp.Loaded(); p != nil {
		return p.endpoint.AuthURL
	}
	return ""
}

// provider returns the discovered IdP, running discovery when it has not
// succeeded yet and the backoff allows.
func (u *Upstream) provider(ctx context.Context) (*provider, error) { return u.idp.Get(ctx) }

// discover loads the discovery document (OIDC Discovery §4) and checks
// that the key set it names can be fetched. Every error wraps
// ciba.ErrUnavailable.
func (u *Upstream) discover(ctx context.Context) (*provider, error) {
	gp, err := idp.Fetch(ctx, "oidc", u.http, u.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
		// AuthzTypes: RFC 9396 §10.
		AuthzTypes []string `json:"authorization_details_types_supported"`
	}
	if err := gp.Claims(&meta); err != nil {
		return nil, unavailable(fmt.Errorf("oidc: discovery of %s: %w", u.cfg.Issuer, err))
	}
	ep := gp.Endpoint()
	if ep.AuthURL == "" || ep.TokenURL == "" || meta.JWKSURI == "" {
		return nil, unavailable(fmt.Errorf("oidc: discovery of %s: authorization_endpoint, token_endpoint and jwks_uri are required", u.cfg.Issuer))
	}
	if err := u.probeKeys(ctx, meta.JWKSURI); err != nil {
		return nil, err
	}
	return &provider{
		issuer:   u.cfg.Issuer,
		endpoint: oauth2.Endpoint{AuthURL: ep.AuthURL, TokenURL: ep.TokenURL},
		// One key set for the life of the upstream: go-oidc caches the
		// keys and refetches them when a token names an unknown kid
		// (OIDC Core §10.1.1, key rotation).
		keys: newKeySet(func() *gooidc.RemoteKeySet {
			return gooidc.NewRemoteKeySet(gooidc.ClientContext(context.Background(), u.http), meta.JWKSURI)
		}, u.now),
		jwksURI:    meta.JWKSURI,
		algs:       supportedAlgs(meta.Algs),
		raw:        rawClaims(gp),
		authzTypes: meta.AuthzTypes,
	}, nil
}

// probeKeys checks that the JWKS can be fetched and holds at least one key.
// go-oidc fetches and parses the keys themselves when it verifies a token.
func (u *Upstream) probeKeys(ctx context.Context, jwksURI string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURI, nil)
	if err != nil {
		return unavailable(fmt.Errorf("oidc: jwks_uri %q: %w", jwksURI, err))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := u.http.Do(req)
	if err != nil {
		return unavailable(fmt.Errorf("oidc: fetch the keys of %s: %w", u.cfg.Issuer, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return unavailable(fmt.Errorf("oidc: fetch the keys of %s: %w", u.cfg.Issuer, err))
	}
	if resp.StatusCode != http.StatusOK {
		return unavailable(fmt.Errorf("oidc: fetch the keys of %s: %s answered HTTP %d", u.cfg.Issuer, jwksURI, resp.StatusCode))
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) == 0 {
		return unavailable(fmt.Errorf("oidc: the key set at %s is not a JWKS with at least one key", jwksURI))
	}
	return nil
}

// rawClaims returns the discovery document go-oidc kept.
func rawClaims(gp *gooidc.Provider) []byte {
	var raw json.RawMessage
	if err := gp.Claims(&raw); err != nil {
		return []byte("{}")
	}
	return raw
}

// supportedAlgs keeps the ID-token algorithms go-oidc verifies; none left
// means go-oidc's default (RS256, OIDC Core §15.1).
func supportedAlgs(advertised []string) []string {
	var out []string
	for _, a := range advertised {
		switch a {
		case gooidc.RS256, gooidc.RS384, gooidc.RS512, gooidc.ES256, gooidc.ES384, gooidc.ES512,
			gooidc.PS256, gooidc.PS384, gooidc.PS512, gooidc.EdDSA:
			out = append(out, a)
		}
	}
	return out
}

// credentials returns the IdP credentials of cibaproxy client clientID.
func (u *Upstream) credentials(clientID string) (idp.Credentials, error) {
	c, ok := u.clients[clientID]
	if !ok {
		return idp.Credentials{}, ciba.Errorf(ciba.CodeUnauthorizedClient, "the client has no credentials at the identity provider")
	}
	return c, nil
}

// unavailable marks err as the IdP being unreachable (see idp.Unavailable).
func unavailable(err error) error { return idp.Unavailable(err) }

// shorten bounds a message that may quote an answer's body.
func shorten(s string) string { return idp.Shorten(s) }
