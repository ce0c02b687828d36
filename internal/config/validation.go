package config

import (
	"net/url"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// Values of [Validation.Fail].
const (
	ValidationFailClosed = "closed"
	ValidationFailOpen   = "open"
)

// Bounds of the validation hook's settings.
const (
	defaultValidationTimeout = 3 * time.Second
	maxValidationTimeout     = 30 * time.Second
	minValidationSecret      = 32
)

// Validation configures the consumption-device validation hook (the
// seed's step 3, docs/validation.md): before a backchannel authentication
// request is accepted, cibaproxy POSTs what a policy needs to URL, and the
// hook answers allow or deny. Off by default. A client with
// skip_validation: true is never sent to the hook. The device grant (RFC
// 8628) is not validated: it names no user.
type Validation struct {
	// URL is the hook. Empty (default): no hook. Otherwise an absolute
	// https URL (http only with AllowHTTP) without user info or fragment.
	// Only the operator sets it, so, like the webhook channel's URL, it is
	// not restricted by address: the hook is usually an internal service
	// (SECURITY.md). Redirects are never followed.
	URL string `yaml:"url"`

	// Secret is the key of the HMAC-SHA256 signature of each call (the
	// Cibaproxy-Signature header), shared with the hook so it can tell
	// cibaproxy's calls from forgeries. Required with URL: at least 32
	// characters, e.g. from `openssl rand -base64 32`. Use ${VAR} rather
	// than writing it in the file.
	Secret string `yaml:"secret"`

	// Timeout bounds each call, answer included. Default 3s; at most 30s.
	// The client waits for it: keep it short.
	Timeout time.Duration `yaml:"timeout"`

	// Fail is what happens when the hook gives no verdict (unreachable,
	// slower than Timeout, an answer other than HTTP 200 with a
	// well-formed verdict): "closed" (default) refuses the request with
	// HTTP 503 temporarily_unavailable; "open" accepts it, so an outage
	// of the hook does not stop logins, at the price of letting through
	// what the hook would have refused.
	Fail string `yaml:"fail"`

	// AllowHTTP allows a plain http URL. A development switch: over http
	// anyone on the path reads the requests and can forge the verdicts.
	AllowHTTP bool `yaml:"allow_http"`
}

// FailOpen reports whether requests are accepted when the hook gives no
// verdict.
func (v *Validation) FailOpen() bool { return v.Fail == ValidationFailOpen }

// checkValidation sets the hook's defaults and checks its settings. The
// messages never quote the URL or the secret.
func (v *validator) checkValidation(c *Config) {
	h := &c.Validation
	if !v.src.set["validation.timeout"] {
		h.Timeout = defaultValidationTimeout
	}
	if h.Fail == "" {
		h.Fail = ValidationFailClosed
	}
	v.oneOf("validation.fail", h.Fail, ValidationFailClosed, ValidationFailOpen)
	if h.Timeout <= 0 || h.Timeout > maxValidationTimeout {
		v.fail("validation.timeout", "must be positive and at most %s, got %s", maxValidationTimeout, h.Timeout)
	}
	if h.URL == "" {
		if h.Secret != "" {
			v.fail("validation.secret", "set without validation.url: there is no hook to sign calls to")
		}
		return
	}
	if msg := clientmeta.CheckHTTPURL(h.URL); msg != "" {
		v.fail("validation.url", "%s", msg)
	} else {
		u, _ := url.Parse(h.URL)
		switch {
		case u.User != nil:
			v.fail("validation.url", "must not hold user info (\"user:password@\"): credentials in a URL end up in logs; use validation.secret")
		case u.Scheme != "https" && !h.AllowHTTP:
			v.fail("validation.url", "must be an https URL; plain http is allowed only with the development switch validation.allow_http: true")
		}
	}
	switch {
	case h.Secret == "":
		v.fail("validation.secret", "required with validation.url: the key that signs each call, at least %d characters, e.g. from `openssl rand -base64 32`", minValidationSecret)
	case len(h.Secret) < minValidationSecret:
		v.fail("validation.secret", "must be at least %d characters, got %d", minValidationSecret, len(h.Secret))
	}
}
