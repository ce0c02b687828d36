package config

// checkDPoP checks what a client's dpop_bound_access_tokens needs of the
// server (RFC 9449 §5.2); push mode is clientmeta's rule.
func (v *validator) checkDPoP(c *Config) {
	if c.Tokens.DPoPNonce && c.Upstream.Type != UpstreamLocal {
		v.fail("tokens.dpop_nonce", "has no effect with the %s upstream, whose tokens cibaproxy does not bind to DPoP keys; remove it", c.Upstream.Type)
	}
	for i := range c.Clients {
		cl := &c.Clients[i]
		if !cl.DPoPBoundAccessTokens {
			continue
		}
		at := joinKey(joinIndex("clients", i), "dpop_bound_access_tokens")
		switch {
		case c.Upstream.Type != UpstreamLocal:
			v.fail(at, "not possible with the %s upstream: its access tokens are the identity provider's, which cibaproxy cannot bind to a DPoP key (RFC 9449 §6); have the provider bind them, or remove this setting", c.Upstream.Type)
		case cl.DeviceAuthorization:
			// Its device_code polls would all be refused.
			v.fail(at, "not supported with device_authorization yet: the device grant does not bind its tokens to a DPoP key")
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
