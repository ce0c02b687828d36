package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/metrics"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
)

// clientsContext is ctx carrying the HTTP client that fetches clients'
// jwks_uri: guarded by the outbound policy of cfg like the notifications,
// since a client chose the URL.
func clientsContext(ctx context.Context, cfg *config.Config) context.Context {
	out := outbound.New(10*time.Second, outbound.Guard(cfg.Outbound.Policy()))
	return gooidc.ClientContext(ctx, out.HTTPClient())
}

// rate converts a configured rate.
func rate(r config.Rate) limit.Rate { return limit.Rate{Requests: r.Requests, Per: r.Per} }

// limitMaker returns what makes the shared abuse limits (nil for an off
// rate): with the Redis store rs, buckets in Redis that every instance
// shares, failing open (the request goes on, logged and counted in
// cibaproxy_limit_errors_total) when Redis cannot be reached; without it
// (rs nil) in-memory buckets holding at most limits.max_keys keys.
func limitMaker(cfg *config.Config, rs *redisstore.Store, m *metrics.Metrics, log *slog.Logger) func(name string, r limit.Rate) limit.Keyed {
	return func(name string, r limit.Rate) limit.Keyed {
		if r.Off() {
			return nil
		}
		if rs == nil {
			return limit.New(r, cfg.Limits.MaxKeys)
		}
		l, err := rs.Limiter(name, r)
		if err != nil {
			// The names are the constants of this package and the rate is
			// on: only a bug gets here.
			panic(fmt.Sprintf("cibaproxy: shared limit: %v", err))
		}
		// One warning per limit per 10 s is enough to see an outage; the
		// metric counts every decision.
		quiet := limit.New(limit.Rate{Requests: 1, Per: 10 * time.Second}, 1)
		return limit.FailOpen(l, func(err error) {
			m.ObserveLimitError(name)
			if ok, _, _ := quiet.Allow(context.Background(), "", time.Now()); ok {
				log.Warn("abuse limit: Redis unreachable, request allowed (fail open); further failures of this limit in the next 10s are only counted (cibaproxy_limit_errors_total)",
					slog.String("limit", name), slog.Any("error", err))
			}
		})
	}
}

// httpLimits are the HTTP abuse limits and client network policy of cfg;
// newLimit makes the shared ones (limitMaker). The /token limit stays in
// memory per instance: the poll path pays no round trip for it.
func httpLimits(cfg *config.Config, newLimit func(string, limit.Rate) limit.Keyed) *httpapi.Limits {
	l := cfg.Limits
	return &httpapi.Limits{
		BCAuthorize:         newLimit("bc_authorize_per_client", rate(l.BCAuthorizePerClient)),
		DeviceAuthorization: newLimit("device_authorization_per_ip", rate(l.DeviceAuthorizationPerIP)),
		Token:               limit.New(rate(l.TokenPerClient), l.MaxKeys),
		Introspect:          newLimit("introspect_per_client", rate(l.IntrospectPerClient)),
		ApprovalFailures:    newLimit("approval_failures_per_ip", rate(l.ApprovalFailuresPerIP)),
		CallbackFailures:    newLimit("callback_failures_per_ip", rate(l.CallbackFailuresPerIP)),
		ClientNetworks:      l.ClientNetworks,
		TrustedProxies:      l.Proxies,
		ClientIPHeader:      l.ClientIPHeader,

		// The password lockout of the approval and device pages.
		PasswordFailuresPerUser:   newLimit("password_failures_per_user", rate(l.PasswordFailuresPerUser)),
		PasswordFailuresPerUserIP: newLimit("password_failures_per_user_ip", rate(l.PasswordFailuresPerUserIP)),
	}
}

// hashSlots are the slots every bcrypt check of an instance runs in: the
// client secrets' (clientGuard), the passwords' of the approval and
// device pages and the user codes' at bc-authorize (the local upstream),
// clientauth.DefaultHashSlots of them (half the processors) waited for at
// most clientauth.DefaultHashWait (1 s).
//
// One pool for all, not one per kind: the bound is there to keep half the
// processors for the requests that need no bcrypt (polls, token requests
// of verified clients), and pools per kind would each take their half, so
// a flood of wrong passwords together with one of wrong secrets would take
// them all again. The price is that one kind's flood makes the others
// wait too; each kind's failures are limited on their own (per address,
// per user, per client and user), so a flood needs many addresses or
// users.
//
// A request runs its checks one after the other, never holding a slot
// while it waits for another, so one pool cannot deadlock. Each check
// waits at most the 1 s for its slot and then runs alone on a core (about
// 60 ms at cost 10), so a handler is answered within a few seconds —
// well under the server's WriteTimeout (ciba.long_poll + 30 s, cmd
// serve), which would otherwise cut it and leave the client an EOF. A
// check that gets no slot is answered busy (503, Retry-After) and counts
// as no failure anywhere.
func hashSlots() *limit.Slots {
	return limit.NewSlots(clientauth.DefaultHashSlots(), clientauth.DefaultHashWait)
}

// clientGuard is the failed client authentication limit of cfg, per
// address as limits tells it (trusted proxies), made by newLimit (shared in
// Redis with the Redis store), with the bcrypt checks run in slots
// (hashSlots).
func clientGuard(cfg *config.Config, limits *httpapi.Limits, slots *limit.Slots, newLimit func(string, limit.Rate) limit.Keyed) *clientauth.Guard {
	return clientauth.NewGuard(clientauth.GuardOptions{
		Failures: newLimit("client_auth_failures_per_ip", rate(cfg.Limits.ClientAuthFailuresPerIP)),
		Key:      limits.AddrKey,
		Slots:    slots,
	})
}

// userLimit is the per-user limit of cfg for ciba.Deps.UserLimit, made by
// newLimit; nil when it is off.
func userLimit(cfg *config.Config, newLimit func(string, limit.Rate) limit.Keyed) func(context.Context, string, time.Time) (bool, time.Duration, error) {
	lim := newLimit("requests_per_user", rate(cfg.Limits.RequestsPerUser))
	if lim == nil {
		return nil
	}
	return lim.Allow
}

// standardScopes are the OpenID Connect scopes (OIDC Core §5.4, §11) the
// local issuer grants every client.
var standardScopes = []string{"openid", "profile", "email", "address", "phone", "offline_access"}

// localScopes are the scopes the local issuer grants a client without its
// own scopes list (ciba.Config.Scopes): the standard ones and those of
// upstream.local.scopes. Nil for the other upstreams, whose provider
// decides what it grants.
func localScopes(cfg *config.Config) []string {
	if cfg.Upstream.Type != config.UpstreamLocal {
		return nil
	}
	out := slices.Clone(standardScopes)
	for _, s := range cfg.Upstream.Local.Scopes {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// userCodeFailures is the user_code guessing limit of cfg for
// ciba.Deps.UserCodeFailures, made by newLimit: a wrong try is reserved in
// the client's share of the user's bucket, then in the user's, so that one
// client that used up its share takes nothing more from the user's (it
// cannot lock the user out for every client). Nil when both are off.
func userCodeFailures(cfg *config.Config, newLimit func(string, limit.Rate) limit.Keyed) func(context.Context, string, string, time.Time) (bool, time.Duration, func(bool), error) {
	perClient := newLimit("user_code_failures_per_client_user", rate(cfg.Limits.UserCodeFailuresPerClientUser))
	perUser := newLimit("user_code_failures_per_user", rate(cfg.Limits.UserCodeFailuresPerUser))
	if perClient == nil && perUser == nil {
		return nil
	}
	return func(ctx context.Context, clientID, user string, now time.Time) (bool, time.Duration, func(bool), error) {
		// A client id has no NUL: the pair cannot be confused with another.
		return limit.ReserveAll(ctx, func() time.Time { return now },
			limit.Bucket{Limit: perClient, Key: clientID + "\x00" + user},
			limit.Bucket{Limit: perUser, Key: user})
	}
}
