package config

import (
	"math"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// AuthNone is the token_endpoint_auth_method of a public client (RFC 7591
// §2): it presents only its client_id. Allowed only for clients that use
// nothing but the device authorization grant (RFC 8628 §3.1, §5.6).
const AuthNone = clientmeta.MethodNone

// DefaultUserCodeCharset is the default of [Device.UserCodeCharset]: the
// consonants of RFC 8628 §6.1's example.
const DefaultUserCodeCharset = "BCDFGHJKLMNPQRSTVWXZ"

// Device configures the device authorization grant (RFC 8628). It is on
// when at least one client sets device_authorization.
type Device struct {
	// Expiry is the lifetime of a device request (expires_in). Default
	// 10m; between 1s and 30m. The user has this long to type the code
	// and approve; RFC 8628 §3.2's example is 30m.
	Expiry time.Duration `yaml:"expiry"`

	// Interval is the minimum poll interval told to devices (RFC 8628
	// §3.2); faster polls get slow_down and the interval grows by 5s.
	// Default 5s; at least 1s.
	Interval time.Duration `yaml:"interval"`

	// UserCodeCharset are the characters of user codes: distinct upper-case
	// ASCII letters and digits (what users type is upper-cased and loses
	// its dashes). Default "BCDFGHJKLMNPQRSTVWXZ" (no vowels, so no words).
	UserCodeCharset string `yaml:"user_code_charset"`

	// UserCodeLength is the number of characters of a user code, shown in
	// groups of four. Default 8. Charset and length must give at least 30
	// bits (the default gives 34.6); the rate limits below do the rest.
	UserCodeLength int `yaml:"user_code_length"`

	// AttemptsPerIP is how many wrong user codes one IP address may enter
	// per minute on the verification page before it is answered 429.
	// Default 5. Counted across all instances with the redis store, per
	// instance otherwise.
	AttemptsPerIP int `yaml:"user_code_attempts_per_ip"`

	// Attempts is how many wrong user codes all addresses together may
	// enter per minute, against guessing from many addresses. Default
	// 100. When it is reached, every user waits for the next minute.
	Attempts int `yaml:"user_code_attempts"`
}

// DeviceEnabled reports whether any client uses the device grant.
func (c *Config) DeviceEnabled() bool {
	for i := range c.Clients {
		if c.Clients[i].DeviceAuthorization {
			return true
		}
	}
	return false
}

// IsPublic reports whether the client is public (token_endpoint_auth_method
// none): it has no credentials.
func (c *Client) IsPublic() bool {
	return len(c.TokenEndpointAuthMethods) == 1 && c.TokenEndpointAuthMethods[0] == AuthNone
}

func (v *validator) deviceDefaults(d *Device) {
	if !v.src.set["device.expiry"] {
		d.Expiry = 10 * time.Minute
	}
	if !v.src.set["device.interval"] {
		d.Interval = 5 * time.Second
	}
	if d.UserCodeCharset == "" {
		d.UserCodeCharset = DefaultUserCodeCharset
	}
	if d.UserCodeLength == 0 {
		d.UserCodeLength = 8
	}
	if d.AttemptsPerIP == 0 {
		d.AttemptsPerIP = 5
	}
	if d.Attempts == 0 {
		d.Attempts = 100
	}
}

func (v *validator) checkDevice(c *Config) {
	d := &c.Device
	if d.Expiry < time.Second || d.Expiry > 30*time.Minute {
		v.fail("device.expiry", "must be between 1s and 30m, got %s", d.Expiry)
	}
	if d.Interval < time.Second {
		v.fail("device.interval", "must be at least 1s, got %s", d.Interval)
	}
	cs := d.UserCodeCharset
	charsetOK := isUserCodeCharset(cs)
	if !charsetOK {
		v.fail("device.user_code_charset", "must be at least two distinct upper-case ASCII letters or digits, got %q", cs)
	}
	if d.UserCodeLength < 1 || d.UserCodeLength > 32 {
		v.fail("device.user_code_length", "must be between 1 and 32, got %d", d.UserCodeLength)
	} else if charsetOK {
		if bits := float64(d.UserCodeLength) * math.Log2(float64(len(cs))); bits < 30 {
			v.fail("device.user_code_length", "%d characters from %d give %.1f bits; at least 30 are needed against guessing (RFC 8628 §5.1)", d.UserCodeLength, len(cs), bits)
		}
	}
	if d.AttemptsPerIP < 1 {
		v.fail("device.user_code_attempts_per_ip", "must be at least 1, got %d", d.AttemptsPerIP)
	}
	if d.Attempts < d.AttemptsPerIP {
		v.fail("device.user_code_attempts", "must be at least user_code_attempts_per_ip (%d), got %d", d.AttemptsPerIP, d.Attempts)
	}
	v.checkDeviceUpstream(c)
}

// checkDeviceUpstream checks the device clients against the upstream.
func (v *validator) checkDeviceUpstream(c *Config) {
	// With the oidc upstream the verification page signs the user in at
	// the IdP; with the ciba upstream the request is relayed to the IdP's
	// own device endpoint (checked at startup, from its discovery), for
	// confidential clients: cibaproxy authenticates as the client there.
	if c.DeviceEnabled() && c.Upstream.Type == UpstreamCIBA {
		for i := range c.Clients {
			if c.Clients[i].DeviceAuthorization && c.Clients[i].IsPublic() {
				v.fail(joinKey(joinIndex("clients", i), "token_endpoint_auth_methods"), "a public client cannot use the device grant with the ciba upstream, which relays it with the client's credentials at the identity provider; give it a secret")
			}
		}
	}
}

// isUserCodeCharset reports whether cs is at least two distinct upper-case
// ASCII letters or digits.
func isUserCodeCharset(cs string) bool {
	if len(cs) < 2 {
		return false
	}
	for i := 0; i < len(cs); i++ {
		ch := cs[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') || strings.IndexByte(cs[:i], ch) >= 0 {
			return false
		}
	}
	return true
}
