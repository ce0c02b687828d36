package config

import (
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/dpop"
)

// The bounds of tokens.dpop_window.
const (
	minDPoPWindow = 5 * time.Second
	maxDPoPWindow = 5 * time.Minute
)

// checkDPoP checks the DPoP settings (tokens.dpop_*) and what a client's
// dpop_bound_access_tokens needs of the server (RFC 9449 §5.2); push mode
// is clientmeta's rule.
func (v *validator) checkDPoP(c *Config) {
	t := &c.Tokens
	if c.Upstream.Type != UpstreamLocal {
		for _, key := range []string{"tokens.dpop_algs", "tokens.dpop_window"} {
			if v.src.set[key] || key == "tokens.dpop_algs" && t.DPoPAlgs != nil {
				v.fail(key, "has no effect with the %s upstream, whose tokens cibaproxy does not bind to DPoP keys; remove it", c.Upstream.Type)
			}
		}
	}
	if t.DPoPAlgs != nil && len(t.DPoPAlgs) == 0 {
		v.fail("tokens.dpop_algs", "must list at least one algorithm, or be left out for the default (%s)", strings.Join(dpop.DefaultAlgs(), ", "))
	}
	for i, alg := range t.DPoPAlgs {
		switch {
		case !slices.Contains(dpop.DefaultAlgs(), alg):
			v.fail(joinIndex("tokens.dpop_algs", i), "%q is not an asymmetric JWS algorithm DPoP proofs may use (RFC 9449 §4.2: never none or a MAC); allowed: %s", alg, strings.Join(dpop.DefaultAlgs(), ", "))
		case slices.Index(t.DPoPAlgs, alg) < i:
			v.fail(joinIndex("tokens.dpop_algs", i), "%q is listed twice", alg)
		}
	}
	if t.DPoPWindow < minDPoPWindow || t.DPoPWindow > maxDPoPWindow {
		v.fail("tokens.dpop_window", "must be between %s and %s, got %s: a proof is accepted for twice this long", minDPoPWindow, maxDPoPWindow, t.DPoPWindow)
	}
	if c.Tokens.DPoPNonce && c.Upstream.Type != UpstreamLocal {
		v.fail("tokens.dpop_nonce", "has no effect with the %s upstream, whose tokens cibaproxy does not bind to DPoP keys; remove it", c.Upstream.Type)
	}
	for i := range c.Clients {
		cl := &c.Clients[i]
		if !cl.DPoPBoundAccessTokens {
			continue
		}
		at := joinKey(joinIndex("clients", i), "dpop_bound_access_tokens")
		if c.Upstream.Type != UpstreamLocal {
			v.fail(at, "not possible with the %s upstream: its access tokens are the identity provider's, which cibaproxy cannot bind to a DPoP key (RFC 9449 §6); have the provider bind them, or remove this setting", c.Upstream.Type)
		}
	}
}

// checkIntrospection checks that clients with introspection have tokens to
// introspect: the local issuer's (RFC 7662); the other upstreams' tokens
// are the identity provider's, which has its own endpoint.
func (v *validator) checkIntrospection(c *Config) {
	if c.Upstream.Type == UpstreamLocal {
		return
	}
	for i := range c.Clients {
		if c.Clients[i].Introspection {
			v.fail(joinKey(joinIndex("clients", i), "introspection"), "not possible with the %s upstream: its tokens are the identity provider's; introspect them at its own endpoint, or remove this setting", c.Upstream.Type)
		}
	}
}
