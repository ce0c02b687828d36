package ciba

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
)

// Bounds of the resource indicators of one request (RFC 8707 §2).
const (
	// MaxResources is the most resource and audience values one request
	// may carry.
	MaxResources = 10
	// MaxResourceLength is the longest resource or audience value, in
	// bytes.
	MaxResourceLength = 2048
)

// issSubHint is the JSON login_hint Auth0-style clients send:
// {"format":"iss_sub","iss":"https://<host>/","sub":"<user id>"} (the
// iss_sub subject identifier of RFC 9493 §3.2.3, as a JSON text).
type issSubHint struct {
	Format string `json:"format"`
	Iss    string `json:"iss"`
	Sub    string `json:"sub"`
}

// plainLoginHint turns a login_hint that is a JSON object into the subject
// it names: it must be an iss_sub hint whose iss is issuer or one of
// trusted (a trailing slash either way makes no difference), and its sub
// is the hint from then on. Any other login_hint is returned as it is. A
// JSON hint that cannot be used is invalid_request, with why.
func plainLoginHint(hint, issuer string, trusted []string) (string, *Error) {
	if !strings.HasPrefix(hint, "{") {
		return hint, nil
	}
	var h issSubHint
	d := json.NewDecoder(strings.NewReader(hint))
	d.DisallowUnknownFields()
	if err := d.Decode(&h); err != nil || d.More() {
		return "", Errorf(CodeInvalidRequest, `login_hint is JSON but not {"format":"iss_sub","iss":...,"sub":...} with string members only`)
	}
	switch {
	case h.Format != "iss_sub":
		return "", Errorf(CodeInvalidRequest, "login_hint has format %q; only iss_sub is accepted in a JSON login_hint", truncate(h.Format, 32))
	case h.Sub == "":
		return "", Errorf(CodeInvalidRequest, "login_hint (iss_sub) has no sub")
	case !sameIssuer(h.Iss, issuer) && !slices.ContainsFunc(trusted, func(t string) bool { return sameIssuer(h.Iss, t) }):
		return "", Errorf(CodeInvalidRequest, "login_hint (iss_sub) names issuer %q, which is neither this server's issuer %q nor one of ciba.login_hint_issuers", truncate(h.Iss, 100), issuer)
	}
	return h.Sub, nil
}

// sameIssuer compares two issuer identifiers, a trailing slash aside.
func sameIssuer(a, b string) bool {
	return a != "" && strings.TrimSuffix(a, "/") == strings.TrimSuffix(b, "/")
}

// targets checks the resource indicators (RFC 8707 §2) and the audience
// client c sent against its list (Client.Resources) and returns them
// without repeats, nil for none. An empty audience is no audience (an
// Auth0-style client sends audience= when it has none). A resource must
// be an absolute URI without a fragment; every value must be on the
// client's list. Refusals are invalid_target, saying which value, or, for
// more than MaxResources values together, saying the bound: the set of
// targets is what the server will not accept (RFC 8707 §2), as too many
// authorization_details elements are invalid_authorization_details.
func targets(c *Client, resources []string, audience string) ([]string, *Error) {
	if len(resources) == 0 && audience == "" {
		return nil, nil
	}
	n := len(resources)
	if audience != "" {
		n++
	}
	if n > MaxResources {
		return nil, Errorf(CodeInvalidTarget, "%d resource and audience values; at most %d resource and audience values are allowed together", n, MaxResources)
	}
	var out []string
	add := func(param, v string) *Error {
		if len(v) > MaxResourceLength {
			return Errorf(CodeInvalidTarget, "%s is %d bytes; at most %d are allowed", param, len(v), MaxResourceLength)
		}
		if !slices.Contains(c.Resources, v) {
			if len(c.Resources) == 0 {
				return Errorf(CodeInvalidTarget, "client %q may ask for no %s: its resources list is empty", c.ID, param)
			}
			return Errorf(CodeInvalidTarget, "%s %q is not one client %q may ask for (its resources list)", param, truncate(v, 100), c.ID)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
		return nil
	}
	for _, r := range resources {
		if why := resourceURI(r); why != "" {
			return nil, Errorf(CodeInvalidTarget, "resource %q %s (RFC 8707 §2)", truncate(r, 100), why)
		}
		if e := add("resource", r); e != nil {
			return nil, e
		}
	}
	if audience != "" {
		if e := add("audience", audience); e != nil {
			return nil, e
		}
	}
	return out, nil
}

// resourceURI returns why r is not a resource indicator (an absolute URI
// without a fragment, RFC 8707 §2), "" when it is one.
func resourceURI(r string) string {
	u, err := url.Parse(r)
	switch {
	case r == "":
		return "is empty"
	case err != nil || !u.IsAbs() || (u.Host == "" && u.Opaque == ""):
		return "is not an absolute URI"
	case u.Fragment != "" || strings.Contains(r, "#"):
		return "has a fragment"
	}
	return ""
}
