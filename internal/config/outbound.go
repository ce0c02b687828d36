package config

import (
	"net/netip"
	"net/url"
	"strings"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

// Outbound restricts the HTTP requests whose URL a client chose: its
// backchannel_client_notification_endpoint (ping and push) and its
// jwks_uri. Without it, such a URL could aim cibaproxy at the cloud
// metadata service, an admin port on loopback or any internal host
// (server-side request forgery). URLs only the operator sets (the webhook,
// the upstream provider, the SMTP server) are not restricted by address;
// they never follow redirects and are bounded in time and size all the same.
type Outbound struct {
	// AllowHTTP is a development switch: it allows plain http
	// notification endpoints and jwks_uri. Off (default), they must be
	// https (CIBA Core §4), both when the configuration is loaded and on
	// every request. Never turn it on in production: over http every ping
	// and push carries the client's bearer (and a push the tokens) in clear.
	AllowHTTP bool `yaml:"allow_http"`

	// AllowNetworks are CIDR networks (e.g. 127.0.0.0/8, 10.1.2.0/24,
	// fd00:1::/48) that notification endpoints and jwks_uri may connect to
	// although they are special-use. Empty (default): loopback, private
	// (RFC 1918, fc00::/7), link-local (169.254.0.0/16 with the cloud
	// metadata service, fe80::/10), shared CGNAT (100.64.0.0/10),
	// 0.0.0.0/8, multicast, documentation and the other special-use
	// ranges are refused, in IPv4, IPv6 and IPv4-mapped form. The check is
	// made on the resolved address when connecting, so a host name that
	// resolves (or is re-bound) to such an address is refused too.
	AllowNetworks []string `yaml:"allow_networks"`

	// Networks is AllowNetworks parsed. Set by [Load].
	Networks []netip.Prefix `yaml:"-"`
}

// Policy is the outbound policy for URLs clients chose.
func (o *Outbound) Policy() outbound.Policy {
	return outbound.Policy{AllowHTTP: o.AllowHTTP, AllowNetworks: o.Networks}
}

// checkOutbound parses outbound.allow_networks and checks every client's
// notification endpoint and jwks_uri against the policy: https unless
// allow_http, and no special-use IP literal outside allow_networks. Host
// names (localhost included) are checked when connecting, on the address
// they resolve to then.
func (v *validator) checkOutbound(c *Config) {
	o := &c.Outbound
	o.Networks = v.parseNetworks("outbound.allow_networks", o.AllowNetworks)
	p := o.Policy()
	for i := range c.Clients {
		cl := &c.Clients[i]
		at := joinIndex("clients", i)
		if cl.NotificationEndpoint != "" && clientmeta.CheckHTTPURL(cl.NotificationEndpoint) == "" {
			v.checkClientURL(joinKey(at, "backchannel_client_notification_endpoint"), cl.ID, cl.NotificationEndpoint, &p, false)
		}
		if cl.JWKSURI != "" && clientmeta.CheckHTTPURL(cl.JWKSURI) == "" {
			v.checkClientURL(joinKey(at, "jwks_uri"), cl.ID, cl.JWKSURI, &p, true)
		}
	}
}

// checkClientURL applies p to a URL of client id; with loopbackHTTP (a
// jwks_uri), plain http is allowed on a loopback host only, even with
// allow_http. The message does not quote the URL, which may hold a secret
// of the client's, only its host.
func (v *validator) checkClientURL(path, id, raw string, p *outbound.Policy, loopbackHTTP bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return // reported by checkHTTPURL
	}
	host := strings.TrimSuffix(u.Hostname(), ".")
	switch {
	case u.Scheme != "https" && !p.AllowHTTP:
		v.fail(path, "client %q: must be an https URL (CIBA Core §4); plain http is allowed only with the development switch outbound.allow_http: true", id)
	case u.Scheme != "https" && loopbackHTTP && !isLoopbackHost(host):
		v.fail(path, "client %q: must be an https URL; plain http is allowed, with outbound.allow_http, on a loopback address only (localhost, 127.0.0.1, ::1)", id)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if err := p.Check(a); err != nil {
			why, _ := outbound.SpecialUse(a)
			v.fail(path, "client %q: %s is a special-use address (%s), refused against server-side request forgery; list its network in outbound.allow_networks to allow it", id, a.WithZone(""), why)
		}
	}
}

// parseNetworks parses a list of CIDR networks; a bare address is a
// network of one address.
func (v *validator) parseNetworks(path string, list []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(list))
	for i, s := range list {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				v.fail(joinIndex(path, i), "must be a CIDR network like 10.0.0.0/8 or fd00::/8, or an IP address, got %q", s)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p != p.Masked() {
			v.fail(joinIndex(path, i), "%s has host bits set; did you mean %s?", s, p.Masked())
			continue
		}
		out = append(out, p)
	}
	return out
}

// isLoopbackHost reports whether host is localhost or a loopback address.
func isLoopbackHost(host string) bool {
	a, err := netip.ParseAddr(host)
	return host == "localhost" || err == nil && a.Unmap().IsLoopback()
}
