package main

import (
	"context"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"

	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
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

// httpLimits are the HTTP abuse limits and client network policy of cfg.
func httpLimits(cfg *config.Config) *httpapi.Limits {
	l := cfg.Limits
	return &httpapi.Limits{
		BCAuthorize:      limit.New(rate(l.BCAuthorizePerClient), l.MaxKeys),
		Token:            limit.New(rate(l.TokenPerClient), l.MaxKeys),
		ApprovalFailures: limit.New(rate(l.ApprovalFailuresPerIP), l.MaxKeys),
		CallbackFailures: limit.New(rate(l.CallbackFailuresPerIP), l.MaxKeys),
		ClientNetworks:   l.ClientNetworks,
		TrustedProxies:   l.Proxies,
		ClientIPHeader:   l.ClientIPHeader,
	}
}

// userLimit is the per-user limit of cfg for ciba.Deps.UserLimit; nil when
// it is off.
func userLimit(cfg *config.Config) func(string, time.Time) (bool, time.Duration) {
	lim := limit.New(rate(cfg.Limits.RequestsPerUser), cfg.Limits.MaxKeys)
	if lim == nil {
		return nil
	}
	return lim.Allow
}
