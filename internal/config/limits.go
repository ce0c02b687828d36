package config

import (
	"net/http"
	"net/netip"
	"time"
)

// Limits are the abuse limits. Each is a token bucket per key (client,
// user, network address). With the redis store the buckets are kept in
// Redis and shared by every instance (see package limit), except
// TokenPerClient's, which each instance keeps in memory (with N instances
// a client may reach up to N times it); with the other stores they are in
// memory. Every limit is on by default; a rate with requests: 0 turns it
// off.
type Limits struct {
	// BCAuthorizePerClient bounds each client's backchannel
	// authentication requests. Over it: HTTP 429 with Retry-After and
	// {"error":"slow_down"}. Default 1200 per 1m.
	BCAuthorizePerClient Rate `yaml:"bc_authorize_per_client"`

	// TokenPerClient bounds each client's token requests (all grants,
	// polls included; a client polls each of its pending requests once
	// per interval). Over it: slow_down (CIBA Core §11). Default 12000
	// per 1m.
	TokenPerClient Rate `yaml:"token_per_client"`

	// DeviceAuthorizationPerIP is the share of BCAuthorizePerClient one
	// client address (an IPv6 /64) may use at the device authorization
	// endpoint for one public client (token_endpoint_auth_method none),
	// whose client_id is no secret: it is counted first, and an address
	// that used up its share takes nothing more from the client's bucket,
	// so whoever knows the client_id cannot, from one address, keep the
	// client's real devices from starting a flow. Over it: HTTP 429 with
	// Retry-After and {"error":"slow_down"}. Confidential clients are not
	// counted in it. Default 30 per 1m: the few devices of a household or
	// an office behind one NAT start a flow each when switched on and a
	// new one when a code expires, far below it; one address takes at
	// most 2.5% of the default BCAuthorizePerClient.
	DeviceAuthorizationPerIP Rate `yaml:"device_authorization_per_ip"`

	// IntrospectPerClient bounds each client's token introspection
	// requests (RFC 7662, local upstream), counted once the client is
	// authenticated: a resource server whose secret leaked, or that loops
	// on an error, cannot hammer the endpoint, and guessing tokens there is
	// bounded. Over it: HTTP 429 with Retry-After and {"error":"slow_down"}.
	// Default 1200 per 1m; raise it for a resource server that
	// introspects every call without caching the answers. (Revocation is
	// counted in TokenPerClient, as a token request.)
	IntrospectPerClient Rate `yaml:"introspect_per_client"`

	// RequestsPerUser bounds the requests accepted for one user, from all
	// clients together, so no client can flood a user's authentication
	// device ("push bombing", MFA fatigue). Over it: access_denied with a
	// description. Default 10 per 10m. The price: a client that misbehaves
	// can use up a user's allowance and delay other clients' requests for
	// that user.
	RequestsPerUser Rate `yaml:"requests_per_user"`

	// ApprovalFailuresPerIP bounds the failed approval-page requests
	// (unknown or expired link, wrong password or user code, forged form:
	// any 4xx answer) per client address (an IPv6 /64). Past it, the
	// address gets HTTP 429 on every approval page until the bucket
	// refills. Only failures count, so many users behind one carrier NAT
	// are not blocked by each other's successes. Default 30 per 10m.
	ApprovalFailuresPerIP Rate `yaml:"approval_failures_per_ip"`

	// CallbackFailuresPerIP is the same for POST /ciba/callback (wrong or
	// replayed callback token, malformed body). Only failures count: the
	// authentication-device service makes every callback from few
	// addresses. Default 60 per 1m.
	CallbackFailuresPerIP Rate `yaml:"callback_failures_per_ip"`

	// ClientAuthFailuresPerIP bounds the failed client authentications
	// (wrong or unknown client_id or secret, bad client assertion or
	// certificate: any invalid_client) per client address (an IPv6 /64),
	// at every endpoint. Past it the address gets HTTP 429 with
	// Retry-After and {"error":"slow_down"} for the client_id it named,
	// before anything is checked, until the bucket refills (other
	// clients on the address are still checked). Only failures count, and a success never touches the
	// limit's store, so polling pays nothing for it. It bounds the
	// bcrypt work an unauthenticated sender can cause (a wrong secret of
	// a client_secret_hash costs a bcrypt check) and the guessing of
	// secrets. Default 20 per 1m.
	ClientAuthFailuresPerIP Rate `yaml:"client_auth_failures_per_ip"`

	// PasswordFailuresPerUser bounds the wrong passwords typed for one
	// username on the approval and device pages together (local
	// upstream), from all addresses: once it is used up the password is
	// not checked for that username, the right one included (HTTP 429),
	// until a try comes back, whichever page is used. Default 10 per 1h:
	// a password is tried at most 10 + 10 per hour from the whole
	// Internet. The price: anyone may spend a user's tries and hold off
	// their password approvals; PasswordFailuresPerUserIP makes that take
	// at least two addresses that keep at it.
	PasswordFailuresPerUser Rate `yaml:"password_failures_per_user"`

	// PasswordFailuresPerUserIP is the share of PasswordFailuresPerUser
	// one client address (an IPv6 /64) may use; it is counted first, and
	// an address that used up its share takes nothing more from the
	// user's. It must allow fewer tries per period than
	// PasswordFailuresPerUser, so that one address cannot keep a user
	// locked out alone. Default 5 per 1h: a user who mistypes their
	// password a few times is not held back.
	PasswordFailuresPerUserIP Rate `yaml:"password_failures_per_user_ip"`

	// UserCodeFailuresPerUser bounds the wrong user_code values sent for
	// one user at bc-authorize (CIBA §7.1, checked by the local upstream),
	// from all clients: once it is used up, requests with a user_code for
	// that user are answered access_denied without the code being
	// checked, until a try comes back. Default 10 per 1h: a 4-digit code
	// is found by chance with probability 0.15% within a 30-minute request
	// lifetime, and needs some three weeks on average.
	UserCodeFailuresPerUser Rate `yaml:"user_code_failures_per_user"`

	// UserCodeFailuresPerClientUser is the share of UserCodeFailuresPerUser
	// one client may use for one user; it is counted first, and a client
	// that used up its share takes nothing more from the user's. It must
	// allow fewer tries per period than UserCodeFailuresPerUser, so that
	// one client cannot lock a user out for every client: that takes at
	// least two clients that keep at it. Default 5 per 1h.
	UserCodeFailuresPerClientUser Rate `yaml:"user_code_failures_per_client_user"`

	// MaxKeys bounds the keys each limit holds in memory; past it the
	// least recently used one is forgotten. Default 100000 (a few MB).
	// Limits kept in Redis need no bound: a bucket expires once it is full
	// again.
	MaxKeys int `yaml:"max_keys"`

	// TrustedProxies are the networks of reverse proxies and load
	// balancers whose ClientIPHeader is believed. Empty (default): the
	// client address is the TCP peer address, and the header is ignored.
	// Used by the per-IP limits and by clients' allowed_networks.
	TrustedProxies []string `yaml:"trusted_proxies"`

	// ClientIPHeader is the header in which trusted proxies pass the
	// client address: "X-Forwarded-For" (default when TrustedProxies is
	// set; the rightmost address not of a trusted proxy is the client) or
	// a single-address header such as "X-Real-IP".
	ClientIPHeader string `yaml:"client_ip_header"`

	// Proxies is TrustedProxies parsed. Set by [Load].
	Proxies []netip.Prefix `yaml:"-"`

	// ClientNetworks are the clients' allowed_networks parsed, by
	// client_id; a client without allowed_networks is absent. Set by
	// [Load].
	ClientNetworks map[string][]netip.Prefix `yaml:"-"`
}

// Rate is a number of requests per period.
type Rate struct {
	// Requests is how many requests a key may make per Per, and at once.
	// 0 turns the limit off.
	Requests int `yaml:"requests"`
	// Per is the period. Required when Requests is set.
	Per time.Duration `yaml:"per"`
}

// Default limits.
var (
	defaultBCAuthorizePerClient = Rate{Requests: 1200, Per: time.Minute}
	defaultTokenPerClient       = Rate{Requests: 12000, Per: time.Minute}
	// A household's or an office's few devices start a flow now and then;
	// one address gets 2.5% of the default bc_authorize_per_client.
	defaultDeviceAuthorizationPerIP = Rate{Requests: 30, Per: time.Minute}
	defaultIntrospectPerClient      = Rate{Requests: 1200, Per: time.Minute}
	defaultRequestsPerUser          = Rate{Requests: 10, Per: 10 * time.Minute}
	defaultApprovalFailuresPerIP    = Rate{Requests: 30, Per: 10 * time.Minute}
	defaultCallbackFailuresPerIP    = Rate{Requests: 60, Per: time.Minute}
	// A client fails authentication only when misconfigured; 20 leaves it
	// room to retry, and bounds an address to 20 bcrypt checks a minute.
	defaultClientAuthFailuresPerIP = Rate{Requests: 20, Per: time.Minute}

	defaultPasswordFailuresPerUser       = Rate{Requests: 10, Per: time.Hour}
	defaultPasswordFailuresPerUserIP     = Rate{Requests: 5, Per: time.Hour}
	defaultUserCodeFailuresPerUser       = Rate{Requests: 10, Per: time.Hour}
	defaultUserCodeFailuresPerClientUser = Rate{Requests: 5, Per: time.Hour}
)

const (
	defaultLimitKeys      = 100_000
	defaultClientIPHeader = "X-Forwarded-For"
)

func (v *validator) limitsDefaults(l *Limits) {
	rate := func(r *Rate, path string, def Rate) {
		reqSet, perSet := v.src.set[path+".requests"], v.src.set[path+".per"]
		if !reqSet {
			r.Requests = def.Requests
		}
		if !perSet && (!reqSet || r.Requests > 0) {
			r.Per = def.Per
		}
	}
	rate(&l.BCAuthorizePerClient, "limits.bc_authorize_per_client", defaultBCAuthorizePerClient)
	rate(&l.TokenPerClient, "limits.token_per_client", defaultTokenPerClient)
	rate(&l.DeviceAuthorizationPerIP, "limits.device_authorization_per_ip", defaultDeviceAuthorizationPerIP)
	rate(&l.IntrospectPerClient, "limits.introspect_per_client", defaultIntrospectPerClient)
	rate(&l.RequestsPerUser, "limits.requests_per_user", defaultRequestsPerUser)
	rate(&l.ApprovalFailuresPerIP, "limits.approval_failures_per_ip", defaultApprovalFailuresPerIP)
	rate(&l.CallbackFailuresPerIP, "limits.callback_failures_per_ip", defaultCallbackFailuresPerIP)
	rate(&l.ClientAuthFailuresPerIP, "limits.client_auth_failures_per_ip", defaultClientAuthFailuresPerIP)
	rate(&l.PasswordFailuresPerUser, "limits.password_failures_per_user", defaultPasswordFailuresPerUser)
	rate(&l.PasswordFailuresPerUserIP, "limits.password_failures_per_user_ip", defaultPasswordFailuresPerUserIP)
	rate(&l.UserCodeFailuresPerUser, "limits.user_code_failures_per_user", defaultUserCodeFailuresPerUser)
	rate(&l.UserCodeFailuresPerClientUser, "limits.user_code_failures_per_client_user", defaultUserCodeFailuresPerClientUser)
	if !v.src.set["limits.max_keys"] {
		l.MaxKeys = defaultLimitKeys
	}
	if l.ClientIPHeader == "" && len(l.TrustedProxies) > 0 {
		l.ClientIPHeader = defaultClientIPHeader
	}
}

func (v *validator) checkLimits(c *Config) {
	l := &c.Limits
	v.checkRates(l)
	v.checkShares(l)
	if l.MaxKeys < 1 {
		v.fail("limits.max_keys", "must be at least 1, got %d", l.MaxKeys)
	}
	v.checkLimitsRest(c)
}

// checkRates checks every rate limit: a non-negative count per a period
// long enough to hold it.
func (v *validator) checkRates(l *Limits) {
	for path, r := range map[string]Rate{
		"limits.bc_authorize_per_client":     l.BCAuthorizePerClient,
		"limits.token_per_client":            l.TokenPerClient,
		"limits.device_authorization_per_ip": l.DeviceAuthorizationPerIP,
		"limits.introspect_per_client":       l.IntrospectPerClient,
		"limits.requests_per_user":           l.RequestsPerUser,
		"limits.approval_failures_per_ip":    l.ApprovalFailuresPerIP,
		"limits.callback_failures_per_ip":    l.CallbackFailuresPerIP,
		"limits.client_auth_failures_per_ip": l.ClientAuthFailuresPerIP,

		"limits.password_failures_per_user":         l.PasswordFailuresPerUser,
		"limits.password_failures_per_user_ip":      l.PasswordFailuresPerUserIP,
		"limits.user_code_failures_per_user":        l.UserCodeFailuresPerUser,
		"limits.user_code_failures_per_client_user": l.UserCodeFailuresPerClientUser,
	} {
		switch {
		case r.Requests < 0:
			v.fail(path+".requests", "must not be negative (0 turns the limit off), got %d", r.Requests)
		case r.Requests > 0 && r.Per <= 0:
			v.fail(path+".per", "must be positive, e.g. 1m, got %s", r.Per)
		case r.Requests > 0 && r.Per/time.Duration(r.Requests) <= 0:
			v.fail(path+".per", "is too short for %d requests", r.Requests)
		}
	}
}

// checkShares checks that a share refills slower than the bucket it is a
// share of, or one address (client) alone could keep the user locked out.
func (v *validator) checkShares(l *Limits) {
	for _, p := range []struct {
		share, whole         string
		shareRate, wholeRate Rate
	}{
		{"limits.password_failures_per_user_ip", "limits.password_failures_per_user", l.PasswordFailuresPerUserIP, l.PasswordFailuresPerUser},
		{"limits.user_code_failures_per_client_user", "limits.user_code_failures_per_user", l.UserCodeFailuresPerClientUser, l.UserCodeFailuresPerUser},
	} {
		if p.shareRate.Requests > 0 && p.wholeRate.Requests > 0 && p.shareRate.Per > 0 && p.wholeRate.Per > 0 &&
			float64(p.shareRate.Requests)/float64(p.shareRate.Per) >= float64(p.wholeRate.Requests)/float64(p.wholeRate.Per) {
			v.fail(p.share, "must allow fewer tries per period than %s (%d per %s), or one source alone could keep a user locked out; got %d per %s",
				p.whole, p.wholeRate.Requests, p.wholeRate.Per, p.shareRate.Requests, p.shareRate.Per)
		}
	}
}

// checkLimitsRest checks the trusted proxies, the client address header
// and the clients' allowed networks.
func (v *validator) checkLimitsRest(c *Config) {
	l := &c.Limits
	l.Proxies = v.parseNetworks("limits.trusted_proxies", l.TrustedProxies)
	if l.ClientIPHeader != "" {
		if len(l.TrustedProxies) == 0 {
			v.fail("limits.client_ip_header", "needs limits.trusted_proxies: the header is believed only from those networks")
		} else if !validHeaderName(l.ClientIPHeader) {
			v.fail("limits.client_ip_header", "must be an HTTP header name like X-Forwarded-For, got %q", l.ClientIPHeader)
		} else {
			l.ClientIPHeader = http.CanonicalHeaderKey(l.ClientIPHeader)
		}
	}
	l.ClientNetworks = make(map[string][]netip.Prefix)
	for i, cl := range c.Clients {
		if len(cl.AllowedNetworks) == 0 {
			continue
		}
		if nets := v.parseNetworks(joinKey(joinIndex("clients", i), "allowed_networks"), cl.AllowedNetworks); len(nets) > 0 {
			l.ClientNetworks[cl.ID] = nets
		}
	}
}

// validHeaderName reports whether s is an HTTP field name (RFC 9110 §5.1).
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return s != ""
}
