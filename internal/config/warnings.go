package config

// Warnings are the settings of a valid configuration that are allowed but
// do nothing, or leave the server unable to do its job: each is a
// sentence saying what and why, for `cibaproxy check-config` to print and
// `cibaproxy serve` to log at start. Nil when there is none. They never
// quote a secret.
func (c *Config) Warnings() []string {
	var out []string
	if w := c.noChannelWarning(); w != "" {
		out = append(out, w)
	}
	return out
}

// noChannelWarning: without a channel (and with the local or oidc
// upstream, which do not relay CIBA requests to an IdP that reaches the
// user itself) nobody hears of a CIBA request, so each one expires.
func (c *Config) noChannelWarning() string {
	if len(c.Channels.Order) > 0 || c.Upstream.Type == UpstreamCIBA || !c.hasCIBAClients() {
		return ""
	}
	return "no channel configured (channels.webpush, channels.email or channels.webhook.url): nobody is told of a new CIBA request, " +
		"so nobody can approve one and each request expires; configure one (docs/webpush.md, docs/email.md, docs/webhook.md), " +
		"or for the quick start set CIBAPROXY_WEBHOOK_URL or run make run"
}

// hasCIBAClients reports whether a client uses CIBA (has a delivery mode),
// not only the device grant, whose user comes to the verification page by
// themselves, or introspection.
func (c *Config) hasCIBAClients() bool {
	for _, cl := range c.Clients {
		if cl.DeliveryMode != "" {
			return true
		}
	}
	return false
}
