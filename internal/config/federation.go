package config

import (
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// OIDCUpstream configures the "oidc" upstream: cibaproxy federates to an
// existing OpenID Provider. The user approves by signing in there (from the
// approval page, with authorization code and PKCE), and the client receives
// that provider's tokens, issued to the client's own registration at it.
type OIDCUpstream struct {
	// Issuer is the provider's issuer identifier; its discovery document
	// is read from Issuer + "/.well-known/openid-configuration". Required.
	Issuer string `yaml:"issuer"`

	// MatchClaims are the ID-token claims compared with a request's
	// login_hint, in order; the user who signs in must have one of them
	// equal to the hint, or the request is denied. Default [sub]: the
	// login_hint is the provider's subject. Typical: [email,
	// preferred_username]. "email" compares case-insensitively and is
	// refused when the provider says email_verified is false. A request
	// named by id_token_hint always compares "sub".
	MatchClaims []string `yaml:"match_claims"`

	// Prompt is sent to the provider's authorization endpoint: "login"
	// makes the user sign in again even with a session there (the
	// sign-in is then fresh evidence for this request); "" (default)
	// sends none.
	Prompt string `yaml:"prompt"`

	// Timeout bounds each call to the provider. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// UpstreamCredentials are a client's credentials at the upstream
// provider, when they differ from the ones it uses at cibaproxy.
type UpstreamCredentials struct {
	// ClientID is the client_id at the provider. Required.
	ClientID string `yaml:"client_id"`

	// ClientSecret is the client secret at the provider, in plain (it is
	// sent to the provider): use ${VAR}. Required.
	ClientSecret string `yaml:"client_secret"`

	// AuthMethod is how cibaproxy authenticates as the client at the
	// provider's token endpoint: client_secret_basic (default) or
	// client_secret_post.
	AuthMethod string `yaml:"auth_method"`

	// Ping (ciba upstream only): the client is registered at the provider
	// in ping mode with cibaproxy's <issuer>/ciba/upstream-ping as its
	// notification endpoint, so cibaproxy polls the provider once, when
	// pinged, instead of once per interval. Default false (poll).
	Ping bool `yaml:"ping"`
}

// CIBAUpstream configures the "ciba" upstream: cibaproxy relays each
// backchannel request to a CIBA-capable provider and answers the clients'
// polls itself, calling the provider at most once per its interval (or once
// when it pings).
type CIBAUpstream struct {
	// Issuer is the provider's issuer identifier; its discovery document
	// must list backchannel_authentication_endpoint. Required.
	Issuer string `yaml:"issuer"`

	// Timeout bounds each call to the provider. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

const defaultUpstreamTimeout = 10 * time.Second

// matchableClaims are the ID-token claims match_claims may name: ones that
// identify a user and are strings.
var matchableClaims = []string{"sub", "email", "preferred_username", "phone_number", "upn"}

func (v *validator) oidcDefaults(c *Config) {
	if c.Upstream.Type == UpstreamCIBA {
		if !v.src.set["upstream.ciba.timeout"] {
			c.Upstream.CIBA.Timeout = defaultUpstreamTimeout
		}
	} else {
		o := &c.Upstream.OIDC
		if len(o.MatchClaims) == 0 {
			o.MatchClaims = []string{"sub"}
		}
		if !v.src.set["upstream.oidc.timeout"] {
			o.Timeout = defaultUpstreamTimeout
		}
	}
	for i := range c.Clients {
		if u := &c.Clients[i].Upstream; (u.ClientID != "" || u.ClientSecret != "") && u.AuthMethod == "" {
			u.AuthMethod = AuthClientSecretBasic
		}
	}
}

// checkOIDC checks the oidc upstream and what it asks of the clients.
func (v *validator) checkOIDC(c *Config) {
	o := &c.Upstream.OIDC
	v.checkUpstreamIssuer("upstream.oidc.issuer", o.Issuer, "identity provider")
	seen := make(map[string]bool)
	for i, m := range o.MatchClaims {
		p := joinIndex("upstream.oidc.match_claims", i)
		if !slices.Contains(matchableClaims, m) {
			v.fail(p, "must be one of %s, got %q", strings.Join(matchableClaims, ", "), m)
		} else if seen[m] {
			v.fail(p, "%q is listed twice", m)
		}
		seen[m] = true
	}
	if o.Prompt != "" && o.Prompt != "login" {
		v.fail("upstream.oidc.prompt", "must be \"login\" or empty, got %q", o.Prompt)
	}
	if o.Timeout <= 0 {
		v.fail("upstream.oidc.timeout", "must be positive, got %s", o.Timeout)
	}
	v.checkUpstreamClients(c, UpstreamOIDC)
}

// checkCIBAUpstream checks the ciba upstream and what it asks of the clients.
func (v *validator) checkCIBAUpstream(c *Config) {
	u := &c.Upstream.CIBA
	v.checkUpstreamIssuer("upstream.ciba.issuer", u.Issuer, "CIBA-capable identity provider")
	if u.Timeout <= 0 {
		v.fail("upstream.ciba.timeout", "must be positive, got %s", u.Timeout)
	}
	if c.Channels.Webhook.URL != "" {
		v.fail("channels.webhook.url", "not used with the ciba upstream, which reaches the user itself; remove it")
	}
	if c.Channels.Email.Host != "" {
		v.fail("channels.email.host", "not used with the ciba upstream, which reaches the user itself; remove it")
	}
	v.checkUpstreamClients(c, UpstreamCIBA)
}

// checkUpstreamIssuer checks the issuer of a federating upstream, at path
// (what names its identity provider in the message).
func (v *validator) checkUpstreamIssuer(path, issuer, what string) {
	if issuer == "" {
		v.fail(path, "required: the %s's issuer URL, e.g. https://idp.example.com/realms/main", what)
	} else if msg := checkIssuer(issuer); msg != "" {
		v.fail(path, "%s", msg)
	}
}

// checkUpstreamClients checks what a federating upstream (kind) asks of
// every client: no push, and credentials at the provider.
func (v *validator) checkUpstreamClients(c *Config, kind string) {
	for i := range c.Clients {
		cl := &c.Clients[i]
		p := joinIndex("clients", i)
		if cl.DeliveryMode == DeliveryPush {
			v.fail(joinKey(p, "backchannel_token_delivery_mode"), "push cannot be used with the %s upstream: CIBA Core §10.3.1 requires the pushed ID token to carry urn:openid:params:jwt:claim:auth_req_id, at_hash and rt_hash, which the identity provider's ID token does not; use poll or ping", kind)
		}
		v.checkCredentials(cl, p, kind)
	}
}

// checkCredentials checks the client's credentials at an upstream
// provider: explicit ones, or its own id and plain secret.
func (v *validator) checkCredentials(cl *Client, p, kind string) {
	u := &cl.Upstream
	if u.empty() {
		if cl.Secret == "" {
			v.fail(joinKey(p, "upstream_credentials"), "required with the %s upstream unless the client has a plain client_secret, which is then used at the identity provider too", kind)
		}
		return
	}
	if u.Ping && kind != UpstreamCIBA {
		v.fail(joinKey(p, "upstream_credentials.ping"), "only for the ciba upstream")
	}
	if u.ClientID == "" && u.ClientSecret == "" && u.AuthMethod == "" {
		// Only ping is set: the client's own credentials, in ping mode.
		if cl.Secret == "" {
			v.fail(joinKey(p, "upstream_credentials"), "client_id and client_secret are required unless the client has a plain client_secret, which is then used at the identity provider too")
		}
		return
	}
	p = joinKey(p, "upstream_credentials")
	if u.ClientID == "" {
		v.fail(joinKey(p, "client_id"), "required: the client's client_id at the identity provider")
	} else if !clientmeta.IsVSChars(u.ClientID) {
		v.fail(joinKey(p, "client_id"), "must be printable ASCII (RFC 6749 Appendix A.1), got %q", u.ClientID)
	}
	if u.ClientSecret == "" {
		v.fail(joinKey(p, "client_secret"), "required: the client's secret at the identity provider (use ${VAR})")
	}
	v.oneOf(joinKey(p, "auth_method"), u.AuthMethod, AuthClientSecretBasic, AuthClientSecretPost)
}

// Credentials returns the client's credentials at the upstream provider:
// UpstreamCredentials when set, otherwise its own client_id and plain
// secret with client_secret_basic.
func (c *Client) Credentials() UpstreamCredentials {
	u := c.Upstream
	if u.ClientID == "" && u.ClientSecret == "" {
		return UpstreamCredentials{ClientID: c.ID, ClientSecret: c.Secret, AuthMethod: AuthClientSecretBasic, Ping: u.Ping}
	}
	return u
}

// empty reports whether no credentials were configured.
func (u *UpstreamCredentials) empty() bool {
	return *u == UpstreamCredentials{}
}
