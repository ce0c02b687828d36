// Package cibaup is the HTTP client side of the "ciba" upstream: cibaproxy
// relays each backchannel authentication request to a CIBA-capable
// identity provider (the IdP) with the requesting client's own credentials
// there, and polls the IdP's token endpoint for the result (or takes its
// ping). The scheduling of those polls, and the state of each request, live
// in package ciba; this package makes one HTTP call per method and maps the
// answer to what package ciba understands.
//
// Discovery uses github.com/coreos/go-oidc/v3 (with its issuer check). The
// backchannel authentication request (CIBA Core 1.0 §7.1) and the CIBA
// token request (§10.1) are plain form POSTs: golang.org/x/oauth2 knows
// neither. An IdP that cannot be reached when the upstream is created is
// not fatal: discovery is retried on use, with a backoff, and Ready reports
// it.
//
// CIBA Core 1.0: https://openid.net/specs/openid-client-initiated-backchannel-authentication-core-1_0.html
package cibaup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
)

// Token delivery modes of CIBA Core §5 that this upstream uses with the IdP
// (push would hand tokens to cibaproxy unasked; it is not supported).
const (
	modePoll = "poll"
	modePing = "ping"
)

// Config configures the ciba upstream.
type Config struct {
	// Issuer is the IdP's issuer URL, exactly as its discovery document
	// spells it; discovery is at Issuer + "/.well-known/openid-configuration".
	// The document must name a backchannel_authentication_endpoint and a
	// token_endpoint.
	Issuer string
	// Clients maps a cibaproxy client_id to that client's credentials at
	// the IdP: each relayed request is made in the client's own name, so
	// the IdP's tokens are issued to it. A client missing here cannot use
	// this upstream (unauthorized_client).
	Clients map[string]Credentials
	// HTTPClient calls the IdP. It should not follow redirects and must
	// have a timeout shorter than the relay's poll lease (30 s). Nil: a
	// default with a 10 s timeout that does not follow redirects.
	HTTPClient *http.Client
	// Logger receives discovery failures and recoveries, and warnings
	// about delivery modes the IdP does not list; nil discards.
	Logger *slog.Logger
}

// Credentials are one client's credentials at the IdP, and how it is
// registered there.
type Credentials struct {
	idp.Credentials
	// Ping says the client is registered at the IdP with
	// backchannel_token_delivery_mode=ping and with cibaproxy's upstream
	// ping endpoint as its backchannel_client_notification_endpoint
	// (CIBA §4): Start then sends a client_notification_token and the IdP
	// pings cibaproxy when the result is ready. Otherwise the client is a
	// poll client at the IdP.
	Ping bool
}

// maxBody bounds what is read of an IdP answer.
const maxBody = 1 << 20

// Upstream is the ciba upstream's client of the IdP. It is safe for
// concurrent use.
type Upstream struct {
	cfg     Config
	http    *http.Client
	log     *slog.Logger
	clients map[string]Credentials

	// idp loads the discovery document on use, with a backoff, and
	// probes it for Ready.
	idp *idp.Loader[provider]
}

// provider is what discovery yields.
type provider struct {
	discoveryURL   string
	backchannelURL string
	tokenURL       string
	// modes is backchannel_token_delivery_modes_supported; nil when the
	// document lacks it (then the credentials' Ping is trusted).
	modes []string
	raw   []byte // the discovery document as the IdP served it
	// authzTypes is authorization_details_types_supported (RFC 9396 §10):
	// requests with details of another type are refused, not relayed.
	authzTypes []string
}

// errNotCIBA marks a discovery document without the CIBA endpoints.
var errNotCIBA = errors.New("the identity provider does not publish CIBA endpoints")

// New validates cfg and returns the upstream. It attempts discovery with
// ctx: an IdP that cannot be reached (or answers 5xx) is logged and retried
// on use. An IdP that answers with another issuer, or whose discovery
// document has no backchannel_authentication_endpoint, is a configuration
// error and fails New.
func New(ctx context.Context, cfg Config) (*Upstream, error) {
	return newUpstream(ctx, cfg, time.Now)
}

func newUpstream(ctx context.Context, cfg Config, now func() time.Time) (*Upstream, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	u := &Upstream{cfg: cfg, http: cfg.HTTPClient, log: cfg.Logger, clients: cfg.Clients}
	if u.http == nil {
		u.http = idp.DefaultHTTPClient()
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.idp = idp.New(idp.Config[provider]{
		Prefix:          "cibaup",
		Issuer:          cfg.Issuer,
		Discover:        u.discover,
		Probe:           func(ctx context.Context, p *provider) error { return u.probe(ctx, p.discoveryURL) },
		Document:        func(p *provider) []byte { return p.raw },
		Loaded:          u.warnModes,
		DiscoveryProbes: true,
		Logger:          u.log,
		Now:             now,
	})
	if _, err := u.provider(ctx); err != nil {
		if err := idp.IssuerMismatch("cibaup", err); err != nil {
			return nil, err
		}
		if errors.Is(err, errNotCIBA) {
			return nil, fmt.Errorf("cibaup: issuer %q: %w (backchannel_authentication_endpoint and token_endpoint are required)", cfg.Issuer, errNotCIBA)
		}
		// Logged by provider; retried on use.
	}
	return u, nil
}

func validate(cfg Config) error {
	if err := absURL("issuer", cfg.Issuer); err != nil {
		return err
	}
	return idp.CheckClients("cibaup", cfg.Clients)
}

func absURL(what, s string) error { return idp.AbsURL("cibaup", what, s) }

// Ready reports whether the IdP's discovery document has been loaded; if
// not, it tries (at most once per backoff period) and returns an error
// wrapping ciba.ErrUnavailable while the IdP cannot be reached.
//
// Once loaded, it checks that the IdP still answers by fetching the
// discovery document again, at most once per idp.ReadyProbeEvery
// (readiness probes come often, from every instance), so an IdP that went
// away turns readiness red.
func (u *Upstream) Ready(ctx context.Context) error { return u.idp.Ready(ctx) }

// probe checks that the discovery document still answers 200.
func (u *Upstream) probe(ctx context.Context, discoveryURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, discoveryURL, nil)
	if err != nil {
		return unavailable(fmt.Errorf("cibaup: probe %s: %w", discoveryURL, err))
	}
	req.Header.Set("Accept", "application/json")
	resp, err := u.http.Do(req)
	if err != nil {
		return unavailable(fmt.Errorf("cibaup: probe the identity provider %s: %w", u.cfg.Issuer, err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode != http.StatusOK {
		return unavailable(fmt.Errorf("cibaup: probe the identity provider %s: discovery answered HTTP %d", u.cfg.Issuer, resp.StatusCode))
	}
	return nil
}

// Metadata returns the IdP's discovery document as a JSON object, a fresh
// copy on every call. Error as for Ready.
func (u *Upstream) Metadata(ctx context.Context) (map[string]any, error) {
	return u.idp.Metadata(ctx)
}

// SupportsPing reports whether the IdP pings cibaproxy for clientID's
// requests: the client's credentials say it is registered for ping at the
// IdP, and the IdP lists ping in backchannel_token_delivery_modes_supported.
// Before discovery has succeeded (or when the IdP lists no modes) the
// credentials alone decide: the registration at the IdP is what makes the
// IdP ping, and a ping client that sends no client_notification_token is
// refused there (CIBA §7.1).
func (u *Upstream) SupportsPing(clientID string) bool {
	c, ok := u.clients[clientID]
	if !ok || !c.Ping {
		return false
	}
	if p := u.idp.Loaded(); p != nil && p.modes != nil {
		return slices.Contains(p.modes, modePing)
	}
	return true
}

// provider returns the discovered IdP, running discovery when it has not
// succeeded yet and the backoff allows.
func (u *Upstream) provider(ctx context.Context) (*provider, error) { return u.idp.Get(ctx) }

// discover loads the discovery document (OIDC Discovery §4, CIBA §4).
// Every error wraps ciba.ErrUnavailable.
func (u *Upstream) discover(ctx context.Context) (*provider, error) {
	gp, err := idp.Fetch(ctx, "cibaup", u.http, u.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		Token       string   `json:"token_endpoint"`
		Backchannel string   `json:"backchannel_authentication_endpoint"`
		Modes       []string `json:"backchannel_token_delivery_modes_supported"`
		AuthzTypes  []string `json:"authorization_details_types_supported"`
	}
	if err := gp.Claims(&meta); err != nil {
		return nil, unavailable(fmt.Errorf("cibaup: discovery of %s: %w", u.cfg.Issuer, err))
	}
	if absURL("backchannel_authentication_endpoint", meta.Backchannel) != nil || absURL("token_endpoint", meta.Token) != nil {
		return nil, unavailable(fmt.Errorf("cibaup: discovery of %s: %w", u.cfg.Issuer, errNotCIBA))
	}
	var raw json.RawMessage
	if err := gp.Claims(&raw); err != nil {
		return nil, unavailable(fmt.Errorf("cibaup: discovery of %s: %w", u.cfg.Issuer, err))
	}
	return &provider{
		discoveryURL:   strings.TrimSuffix(u.cfg.Issuer, "/") + "/.well-known/openid-configuration",
		backchannelURL: meta.Backchannel,
		tokenURL:       meta.Token,
		modes:          meta.Modes,
		raw:            raw,
		authzTypes:     meta.AuthzTypes,
	}, nil
}

// warnModes logs the clients whose delivery mode the IdP does not list.
func (u *Upstream) warnModes(p *provider) {
	if p.modes == nil {
		return
	}
	for id, c := range u.clients {
		mode := modePoll
		if c.Ping {
			mode = modePing
		}
		if !slices.Contains(p.modes, mode) {
			u.log.Warn("cibaup: the identity provider does not list the client's delivery mode",
				slog.String("client_id", id), slog.String("mode", mode), slog.Any("supported", p.modes))
		}
	}
}

// credentials returns the IdP credentials of cibaproxy client clientID.
func (u *Upstream) credentials(clientID string) (Credentials, error) {
	c, ok := u.clients[clientID]
	if !ok {
		return Credentials{}, ciba.Errorf(ciba.CodeUnauthorizedClient, "the client has no credentials at the identity provider")
	}
	return c, nil
}

// unavailable marks err as the IdP being unreachable (see idp.Unavailable).
func unavailable(err error) error { return idp.Unavailable(err) }
