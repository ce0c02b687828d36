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
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Client authentication methods at the IdP's token endpoint (OIDC Core §9).
const (
	// AuthMethodBasic sends the credentials in an HTTP Basic header
	// (RFC 6749 §2.3.1); the default.
	AuthMethodBasic = "client_secret_basic"
	// AuthMethodPost sends them as form parameters (RFC 6749 §2.3.1).
	AuthMethodPost = "client_secret_post"
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
	Clients map[string]Credentials
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

// Credentials are one client's credentials at the IdP.
type Credentials struct {
	// ClientID is the client's client_id at the IdP.
	ClientID string
	// ClientSecret is its secret there. Secret: never logged.
	ClientSecret string
	// AuthMethod is AuthMethodBasic (default, when empty) or AuthMethodPost.
	AuthMethod string
}

// Discovery retry backoff: the first retry may happen after retryMin, each
// further failure doubles the wait up to retryMax.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// maxBody bounds what is read of an IdP answer (JWKS probe, forwarded
// token responses).
const maxBody = 1 << 20

// Upstream is the oidc upstream. It implements ciba.Upstream; the approval
// page uses AuthCodeURL and Exchange, the token endpoint ForwardToken. It is
// safe for concurrent use.
type Upstream struct {
	cfg     Config
	http    *http.Client
	log     *slog.Logger
	now     func() time.Time
	clients map[string]Credentials

	// idp is the loaded discovery document and key set; nil until
	// discovery and the JWKS probe have succeeded once.
	idp atomic.Pointer[provider]
	// sem serialises discovery attempts (a mutex that honours contexts);
	// it guards failures, nextTry and lastErr.
	sem      chan struct{}
	failures int
	nextTry  time.Time
	lastErr  error

	// probeMu guards the last readiness probe of a loaded IdP.
	probeMu  sync.Mutex
	probedAt time.Time
	probeErr error
}

// provider is what discovery yields.
type provider struct {
	issuer   string
	endpoint oauth2.Endpoint // AuthStyle is set per client
	keys     *keySet
	jwksURI  string
	algs     []string
	raw      []byte // the discovery document as the IdP served it
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
	u := &Upstream{cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger, now: now, clients: cfg.Clients, sem: make(chan struct{}, 1)}
	if u.http == nil {
		u.http = defaultHTTPClient()
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	if _, err := u.provider(ctx); err != nil {
		if mm := (*gooidc.IssuerMismatchError)(nil); errors.As(err, &mm) {
			return nil, fmt.Errorf("oidc: issuer %q: the identity provider calls itself %q; set issuer to exactly that", mm.Provided, mm.Discovered)
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
	if len(cfg.Clients) == 0 {
		return errors.New("oidc: no client has credentials at the identity provider")
	}
	for id, c := range cfg.Clients {
		if c.ClientID == "" || c.ClientSecret == "" {
			return fmt.Errorf("oidc: client %q: the client_id and client_secret at the identity provider are required", id)
		}
		switch c.AuthMethod {
		case "", AuthMethodBasic, AuthMethodPost:
		default:
			return fmt.Errorf("oidc: client %q: auth method %q is not supported (%s or %s)", id, c.AuthMethod, AuthMethodBasic, AuthMethodPost)
		}
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

func absURL(what, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("oidc: the %s %q is not an absolute http(s) URL without query or fragment", what, s)
	}
	return nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		// A redirect could take credentials or codes to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}
}

// Ready reports whether the IdP's discovery document and keys have been
// loaded; if not, it tries (at most once per backoff period) and returns an
// error wrapping ciba.ErrUnavailable while the IdP cannot be reached.
//
// Once loaded, it checks that the IdP still answers by fetching its keys,
// at most once per readyProbeEvery (readiness probes come often, from every
// instance), so an IdP that went away turns readiness red.
func (u *Upstream) Ready(ctx context.Context) error {
	p, err := u.provider(ctx)
	if err != nil {
		return err
	}
	u.probeMu.Lock()
	defer u.probeMu.Unlock()
	if now := u.now(); now.Sub(u.probedAt) >= readyProbeEvery {
		u.probeErr = u.probeKeys(ctx, p.jwksURI)
		u.probedAt = now
	}
	return u.probeErr
}

// readyProbeEvery bounds how often Ready calls the IdP.
const readyProbeEvery = 10 * time.Second

// Metadata returns the IdP's discovery document as a JSON object, a fresh
// copy on every call (cibaproxy's own discovery is built from it in this
// mode). Error as for Ready.
func (u *Upstream) Metadata(ctx context.Context) (map[string]any, error) {
	p, err := u.provider(ctx)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(p.raw, &m); err != nil {
		return nil, fmt.Errorf("oidc: decode the discovery document of %s: %w", p.issuer, err)
	}
	return m, nil
}

// AuthorizationEndpoint is the IdP's authorization_endpoint, or "" while
// discovery has not succeeded (the approval page allows it as a form target).
func (u *Upstream) AuthorizationEndpoint() string {
	if p := u.idp.Load(); p != nil {
		return p.endpoint.AuthURL
	}
	return ""
}

// provider returns the discovered IdP, running discovery when it has not
// succeeded yet and the backoff allows.
func (u *Upstream) provider(ctx context.Context) (*provider, error) {
	if p := u.idp.Load(); p != nil {
		return p, nil
	}
	select {
	case u.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, unavailable(fmt.Errorf("oidc: waiting for discovery of %s: %w", u.cfg.Issuer, ctx.Err()))
	}
	defer func() { <-u.sem }()
	if p := u.idp.Load(); p != nil {
		return p, nil
	}
	now := u.now()
	if now.Before(u.nextTry) {
		return nil, u.lastErr
	}
	p, err := u.discover(ctx)
	if err != nil {
		u.failures++
		wait := retryMax
		if u.failures <= 5 {
			wait = min(retryMin<<(u.failures-1), retryMax)
		}
		u.nextTry = now.Add(wait)
		u.lastErr = err
		u.log.Warn("oidc: identity provider not available; retrying on use",
			slog.String("issuer", u.cfg.Issuer), slog.Int("failures", u.failures),
			slog.Duration("retry_after", wait), slog.Any("error", err))
		return nil, err
	}
	if u.failures > 0 {
		u.log.Info("oidc: identity provider available again", slog.String("issuer", u.cfg.Issuer), slog.Int("failures", u.failures))
	} else {
		u.log.Info("oidc: identity provider discovered", slog.String("issuer", u.cfg.Issuer))
	}
	u.failures, u.lastErr, u.nextTry = 0, nil, time.Time{}
	u.idp.Store(p)
	return p, nil
}

// discover loads the discovery document (OIDC Discovery §4) and checks
// that the key set it names can be fetched. Every error wraps
// ciba.ErrUnavailable.
func (u *Upstream) discover(ctx context.Context) (*provider, error) {
	gp, err := gooidc.NewProvider(gooidc.ClientContext(ctx, u.http), u.cfg.Issuer)
	if err != nil {
		if mm := (*gooidc.IssuerMismatchError)(nil); errors.As(err, &mm) {
			return nil, unavailable(fmt.Errorf("oidc: discovery of %s: %w", u.cfg.Issuer, err))
		}
		return nil, unavailable(fmt.Errorf("oidc: discovery of %s: %s", u.cfg.Issuer, shorten(err.Error())))
	}
	var meta struct {
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
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
		keys:    &keySet{remote: gooidc.NewRemoteKeySet(gooidc.ClientContext(context.Background(), u.http), meta.JWKSURI)},
		jwksURI: meta.JWKSURI,
		algs:    supportedAlgs(meta.Algs),
		raw:     rawClaims(gp),
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
func (u *Upstream) credentials(clientID string) (Credentials, error) {
	c, ok := u.clients[clientID]
	if !ok {
		return Credentials{}, ciba.Errorf(ciba.CodeUnauthorizedClient, "the client has no credentials at the identity provider")
	}
	return c, nil
}

// unavailableError marks an error as the IdP being unreachable: errors.Is
// matches it with ciba.ErrUnavailable, so the caller answers
// temporarily_unavailable, while its message stays the cause's.
type unavailableError struct{ err error }

func unavailable(err error) error { return &unavailableError{err: err} }

func (e *unavailableError) Error() string   { return e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{e.err, ciba.ErrUnavailable} }

// shorten bounds a message that may quote an answer's body.
func shorten(s string) string {
	const n = 300
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
