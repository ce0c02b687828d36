package config

import (
	"maps"
	"strings"
	"testing"
)

// TestPages checks the branding settings that are valid: none at all, and
// each of them set, with scope descriptions keyed by any RFC 6749 scope.
func TestPages(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		c := mustParse(t, doc(nil), noEnv)
		if c.Pages.ServiceName != "" || c.Pages.LogoURL != "" || c.Pages.AccentColor != "" || c.Pages.ScopeDescriptions != nil {
			t.Errorf("pages = %+v, want nothing set", c.Pages)
		}
	})
	t.Run("every setting", func(t *testing.T) {
		section := `pages:
  service_name: Acme Bank — Sign-in
  logo_url: https://cdn.example.com:8443/brand/logo.svg?v=2
  accent_color: "#0A5C36"
  scope_descriptions:
    accounts:read: See your accounts and balances
    "https://api.example.com/pay": Make payments for you
    email: Your e-mail address, for receipts
    blank_allowed_key: ${DESCRIPTION:-Read your statements}
    phone: &phone Your phone number, for security calls
    phone_number: *phone
`
		c := mustParse(t, doc(map[string]string{"limits": section}), noEnv)
		p := c.Pages
		if p.ServiceName != "Acme Bank — Sign-in" || p.LogoURL != "https://cdn.example.com:8443/brand/logo.svg?v=2" || p.AccentColor != "#0A5C36" {
			t.Errorf("pages = %+v", p)
		}
		want := map[string]string{
			"accounts:read":               "See your accounts and balances",
			"https://api.example.com/pay": "Make payments for you",
			"email":                       "Your e-mail address, for receipts",
			"blank_allowed_key":           "Read your statements",
			"phone":                       "Your phone number, for security calls",
			"phone_number":                "Your phone number, for security calls",
		}
		if !maps.Equal(p.ScopeDescriptions, want) {
			t.Errorf("scope_descriptions = %v, want %v", p.ScopeDescriptions, want)
		}
	})
}

// TestPagesRules breaks each rule of the pages section and checks that the
// problem names the offending path and says what is wrong.
func TestPagesRules(t *testing.T) {
	tests := []struct {
		name, section, path, msg string
	}{
		{"the service name is not blank", "pages:\n  service_name: '  '", "pages.service_name", "must not be empty or blank"},
		{"the service name fits on a phone", "pages:\n  service_name: " + strings.Repeat("x", 81), "pages.service_name", "at most 80 characters"},
		{"the service name is one line", "pages:\n  service_name: \"Acme\\nBank\"", "pages.service_name", "control characters"},
		{"the logo is https", "pages:\n  logo_url: http://cdn.example.com/logo.png", "pages.logo_url", "absolute https URL"},
		{"the logo URL is absolute", "pages:\n  logo_url: /static/logo.png", "pages.logo_url", "absolute https URL"},
		{"the logo is not a data: URL", "pages:\n  logo_url: 'data:image/png;base64,AAAA'", "pages.logo_url", "absolute https URL"},
		{"the logo URL holds no credentials", "pages:\n  logo_url: https://user:pw@cdn.example.com/logo.png", "pages.logo_url", "user info"},
		{"the logo URL has no fragment", "pages:\n  logo_url: 'https://cdn.example.com/logo.svg#icon'", "pages.logo_url", "fragment"},
		{"the logo URL cannot break the CSP header", "pages:\n  logo_url: \"https://cdn.example.com/a'b.png\"", "pages.logo_url", "quotes"},
		{"the logo URL names a host", "pages:\n  logo_url: 'https://:443/logo.png'", "pages.logo_url", "absolute https URL"},
		{"the logo URL's host fits a CSP source", "pages:\n  logo_url: 'https://cdn;example.com/logo.png'", "pages.logo_url", "plain host name"},
		{"the logo URL is not too long", "pages:\n  logo_url: https://cdn.example.com/" + strings.Repeat("a", 2048), "pages.logo_url", "at most 2048 characters"},
		{"the accent is #rrggbb", "pages:\n  accent_color: green", "pages.accent_color", "#rrggbb"},
		{"an unquoted colour is a comment, not a value", "pages:\n  accent_color: #0a5c36", "pages.accent_color", `quote the colour, as "#0a5c36"`},
		{"an unquoted short colour too", "pages:\n  accent_color: #fff", "pages.accent_color", `quote the colour`},
		{"the accent has six digits", "pages:\n  accent_color: '#0a6'", "pages.accent_color", "#rrggbb"},
		{"the accent is hexadecimal", "pages:\n  accent_color: '#00gg00'", "pages.accent_color", "#rrggbb"},
		{"the accent is not CSS", "pages:\n  accent_color: '#000000;background:url(x)'", "pages.accent_color", "#rrggbb"},
		{"a description is text", "pages:\n  scope_descriptions:\n    email: [a, b]", "pages.scope_descriptions.email", "expected a string"},
		{"a description is not empty", "pages:\n  scope_descriptions:\n    email: ''", "pages.scope_descriptions.email", "must not be empty"},
		{"a description is not too long", "pages:\n  scope_descriptions:\n    email: " + strings.Repeat("y", 201), "pages.scope_descriptions.email", "at most 200 characters"},
		{"a description is one line", "pages:\n  scope_descriptions:\n    email: \"a\\tb\"", "pages.scope_descriptions.email", "control characters"},
		{"a description's key is a scope", "pages:\n  scope_descriptions:\n    'read all': Read everything", "pages.scope_descriptions.read all", "invalid scope"},
		{"the descriptions are a mapping", "pages:\n  scope_descriptions: [email]", "pages.scope_descriptions", "expected a mapping"},
		{"pages keys are checked", "pages:\n  service_nam: Acme", "pages.service_nam", `did you mean "service_name"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := problemsOf(t, doc(map[string]string{"limits": tt.section}), noEnv)
			for _, p := range ps {
				if p.Path == tt.path && strings.Contains(p.Message, tt.msg) {
					if p.Line == 0 {
						t.Errorf("problem %q has no line", p.Message)
					}
					return
				}
			}
			t.Errorf("no problem at %s saying %q; got:\n%v", tt.path, tt.msg, ps)
		})
	}
}
