package outbound

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
)

// Policy restricts where a guarded client may connect, against server-side
// request forgery: a client's notification endpoint or jwks_uri is a URL a
// client chose, and without a policy it could aim cibaproxy at the cloud
// metadata service (169.254.169.254), an admin port on loopback or any host
// of the internal network.
type Policy struct {
	// AllowHTTP lets requests use plain http. Off, only https URLs are
	// called (CIBA Core §4 asks for https notification endpoints). A
	// development switch: http exposes the bearer tokens on the wire.
	AllowHTTP bool

	// AllowNetworks are networks that may be dialled although they are
	// special-use (see SpecialUse), e.g. 127.0.0.0/8 for a local test
	// receiver or 10.1.2.0/24 for notification endpoints inside the
	// operator's network. An address of the IPv4-mapped form
	// (::ffff:10.1.2.3) matches IPv4 networks too.
	AllowNetworks []netip.Prefix
}

// RefusedError is a connection the policy did not allow.
type RefusedError struct {
	// Addr is the address that was about to be dialled, after DNS
	// resolution.
	Addr netip.Addr
	// Why names the special-use range it is in.
	Why string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("outbound: refused to connect to %s (%s); list it in outbound.allow_networks to allow it", e.Addr, e.Why)
}

// ErrPlainHTTP is the answer to an http:// URL without Policy.AllowHTTP.
var ErrPlainHTTP = errors.New("outbound: plain http is not allowed (outbound.allow_http is off); use https")

// special are the special-use ranges of the IANA IPv4 and IPv6
// Special-Purpose Address Registries (RFC 6890 and its updates), and
// multicast, that are not public unicast destinations. IPv4-mapped and
// NAT64 addresses are checked by the IPv4 address they carry.
var special = func() []struct {
	p   netip.Prefix
	why string
} {
	rows := []struct{ cidr, why string }{
		{"0.0.0.0/8", "this network, RFC 791"},
		{"10.0.0.0/8", "private, RFC 1918"},
		{"100.64.0.0/10", "shared address space (CGNAT), RFC 6598"},
		{"127.0.0.0/8", "loopback, RFC 1122"},
		{"169.254.0.0/16", "link-local (cloud metadata), RFC 3927"},
		{"172.16.0.0/12", "private, RFC 1918"},
		{"192.0.0.0/24", "IETF protocol assignments, RFC 6890"},
		{"192.0.2.0/24", "documentation, RFC 5737"},
		{"192.88.99.0/24", "6to4 relay anycast, RFC 7526"},
		{"192.168.0.0/16", "private, RFC 1918"},
		{"198.18.0.0/15", "benchmarking, RFC 2544"},
		{"198.51.100.0/24", "documentation, RFC 5737"},
		{"203.0.113.0/24", "documentation, RFC 5737"},
		{"224.0.0.0/4", "multicast, RFC 5771"},
		{"240.0.0.0/4", "reserved and broadcast, RFC 1112, RFC 919"},
		{"::/96", "unspecified, loopback or IPv4-compatible, RFC 4291"},
		{"64:ff9b:1::/48", "local-use IPv4/IPv6 translation, RFC 8215"},
		{"100::/64", "discard-only, RFC 6666"},
		{"2001::/23", "IETF protocol assignments (Teredo …), RFC 2928"},
		{"2001:db8::/32", "documentation, RFC 3849"},
		{"2002::/16", "6to4, RFC 3056"},
		{"3fff::/20", "documentation, RFC 9637"},
		{"5f00::/16", "segment routing SIDs, RFC 9602"},
		{"fc00::/7", "unique local (private), RFC 4193"},
		{"fe80::/10", "link-local, RFC 4291"},
		{"fec0::/10", "site-local, RFC 3879"},
		{"ff00::/8", "multicast, RFC 4291"},
	}
	out := make([]struct {
		p   netip.Prefix
		why string
	}, len(rows))
	for i, r := range rows {
		out[i].p, out[i].why = netip.MustParsePrefix(r.cidr), r.why
	}
	return out
}()

// nat64 is the well-known NAT64 prefix (RFC 6052): its addresses carry an
// IPv4 address in their last 32 bits.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// SpecialUse reports whether a is not a public unicast address, and which
// range it is in. An IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d)
// address is judged by the IPv4 address it carries.
func SpecialUse(a netip.Addr) (why string, ok bool) {
	a = a.WithZone("")
	if !a.IsValid() {
		return "not an IP address", true
	}
	if a.Is4In6() {
		a = a.Unmap()
	} else if nat64.Contains(a) {
		b := a.As16()
		a = netip.AddrFrom4([4]byte(b[12:]))
	}
	for _, s := range special {
		if s.p.Contains(a) {
			return s.why, true
		}
	}
	return "", false
}

// Check returns a *RefusedError when p does not let a be dialled: a is
// special-use and in none of p.AllowNetworks.
func (p *Policy) Check(a netip.Addr) error {
	a = a.WithZone("")
	why, bad := SpecialUse(a)
	if !bad {
		return nil
	}
	for _, n := range p.AllowNetworks {
		if n.Contains(a) || a.Is4In6() && n.Contains(a.Unmap()) {
			return nil
		}
	}
	return &RefusedError{Addr: a, Why: why}
}

// control is a net.Dialer Control function: it runs after DNS resolution,
// on the very address about to be connected to, so a name that resolves to
// a public address when checked and to an internal one when used (DNS
// rebinding) is still refused.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("outbound: dialling %s %q: %w", network, address, err)
	}
	return p.Check(ap.Addr())
}

// guardTransport refuses plain http unless the policy allows it. The dial
// check is in the transport's dialer.
type guardTransport struct {
	policy *Policy
	next   http.RoundTripper
}

func (t *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !t.policy.AllowHTTP {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, ErrPlainHTTP
	}
	return t.next.RoundTrip(req)
}

// guardedDialer returns a dialer that checks every address with p.
func guardedDialer(p *Policy) *net.Dialer {
	return &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive, Control: p.control}
}
