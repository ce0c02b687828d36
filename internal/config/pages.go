package config

import (
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
)

// Limits of the pages settings: long enough for any real name or
// sentence, short enough to fit on a phone.
const (
	maxServiceName      = 80
	maxLogoURL          = 2048
	maxScopeDescription = 200
)

// Pages brands the pages users see: the approval page, the device
// verification page and the messages that follow them. Everything is
// optional; without it the pages name no service, show no logo and use a
// neutral blue.
type Pages struct {
	// ServiceName is the operator's service, shown at the top of every
	// page and in the device page's "connect a device to …" line (for
	// instance "Acme Bank"). At most 80 characters, no control characters.
	ServiceName string `yaml:"service_name"`

	// LogoURL is an image shown next to the service name, 32 px high. It
	// must be an absolute https URL without user info or fragment; the
	// pages' Content-Security-Policy allows images from its origin only.
	LogoURL string `yaml:"logo_url"`

	// AccentColor colours the Approve button and the top of the page,
	// as "#rrggbb". The text on it is white or black, whichever contrasts
	// more, which gives at least WCAG's 4.5:1 on any colour; a colour too
	// light to stand out on white gets a dark outline.
	AccentColor string `yaml:"accent_color"`

	// ScopeDescriptions say what each scope gives the client, in the
	// user's words, shown instead of the raw scope name (which the page
	// still shows, small, next to it). They add to and override the
	// built-in descriptions of openid, profile, email, address, phone and
	// offline_access. Each key is a scope (RFC 6749 §3.3 characters), each
	// value up to 200 characters.
	ScopeDescriptions map[string]string `yaml:"scope_descriptions"`
}

// checkPages checks the branding of the pages. Every value is shown to
// users, so the messages may quote them.
func (v *validator) checkPages(p *Pages) {
	if p.ServiceName != "" {
		if msg := checkDisplayText(p.ServiceName, maxServiceName); msg != "" {
			v.fail("pages.service_name", "%s", msg)
		}
	}
	if p.LogoURL != "" {
		if msg := checkLogoURL(p.LogoURL); msg != "" {
			v.fail("pages.logo_url", "%s", msg)
		}
	}
	if p.AccentColor != "" && !isHexColor(p.AccentColor) {
		v.fail("pages.accent_color", "must be a colour as #rrggbb (six hexadecimal digits), got %q", abbrev(p.AccentColor, 40))
	}
	for scope, text := range p.ScopeDescriptions {
		at := joinKey("pages.scope_descriptions", scope)
		if !clientmeta.IsScopeToken(scope) {
			v.fail(at, "invalid scope %q: a scope is non-empty, without spaces, quotes or backslashes (RFC 6749 §3.3)", abbrev(scope, 40))
			continue
		}
		if msg := checkDisplayText(text, maxScopeDescription); msg != "" {
			v.fail(at, "%s", msg)
		}
	}
}

// checkDisplayText returns why s cannot be shown as a line of text on
// the pages, or "": it is non-empty, valid UTF-8, at most max characters,
// without control characters.
func checkDisplayText(s string, max int) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "must not be empty or blank"
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case utf8.RuneCountInString(s) > max:
		return fmt.Sprintf("must be at most %d characters", max)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "must not contain control characters (such as a newline or tab)"
	}
	return ""
}

// checkLogoURL returns why s is not a logo URL, or "": an absolute https
// URL with a plain host name, without user info or fragment. The host
// becomes part of the pages' Content-Security-Policy header.
func checkLogoURL(s string) string {
	if len(s) > maxLogoURL {
		return fmt.Sprintf("must be at most %d characters", maxLogoURL)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Opaque != "":
		return "must be an absolute https URL, such as https://cdn.example.com/logo.svg"
	case u.User != nil:
		return "must not hold user info (\"user:password@\")"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "must not have a fragment (\"#…\")"
	case !isCSPHost(u.Host):
		return "the host must be a plain host name or address with an optional port"
	case strings.ContainsFunc(s, isUnsafeInCSP):
		return "must not contain spaces, quotes, '<', '>' or '\\' (percent-encode them)"
	}
	return ""
}

// isUnsafeInCSP reports whether r must be percent-encoded in a URL that
// goes into a Content-Security-Policy header or an HTML attribute.
func isUnsafeInCSP(r rune) bool {
	return r <= ' ' || r == 0x7f || r == '"' || r == '\'' || r == '<' || r == '>' || r == '\\'
}

// isCSPHost reports whether host (a URL's host, with an optional port) can
// be written into a Content-Security-Policy source: letters, digits, '.',
// '-', and a port or a bracketed IPv6 address.
func isCSPHost(host string) bool {
	if host == "" {
		return false
	}
	for _, r := range host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return false
		}
	}
	return true
}

// isHexColor reports whether s is a colour as #rrggbb.
func isHexColor(s string) bool {
	if len(s) != 7 || s[0] != '#' {
		return false
	}
	for i := 1; i < 7; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
