package config

// checkDPoP checks what a client's dpop_bound_access_tokens needs of the
// server (RFC 9449 §5.2); push mode is clientmeta's rule.
func (v *validator) checkDPoP(c *Config) {
	for i := range c.Clients {
		cl := &c.Clients[i]
		if cl.DPoPBoundAccessTokens && c.Upstream.Type != UpstreamLocal {
			v.fail(joinKey(joinIndex("clients", i), "dpop_bound_access_tokens"), "not possible with the %s upstream: its access tokens are the identity provider's, which cibaproxy cannot bind to a DPoP key (RFC 9449 §6); have the provider bind them, or remove this setting", c.Upstream.Type)
		}
	}
}
