package ciba

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
)

// AuthParams are the authentication request parameters of CIBA §7.1, as the
// client sent them (form parameters or request-object claims turned into
// strings). The service validates them; the HTTP layer only collects them.
type AuthParams struct {
	Scope                   string
	Hint                    Hint
	BindingMessage          string
	UserCode                string
	RequestedExpiry         string
	ClientNotificationToken string
	ACRValues               string
	// AuthorizationDetails is authorization_details (RFC 9396) as received:
	// the form value, or the request object's claim as JSON text.
	AuthorizationDetails string
	// Resources are the resource parameters (RFC 8707 §2), repeatable,
	// each an absolute URI without a fragment.
	Resources []string
	// Audience is the audience parameter Auth0-style clients send: like a
	// resource, but any string the client's list holds; "" for none.
	Audience string
	// CertThumbprint is the x5t#S256 of the client certificate the request
	// came with (RFC 8705 §3.1), for a client whose access tokens are
	// certificate-bound; "" otherwise. It is recorded on the request.
	CertThumbprint string
	// DPoPJKT is the thumbprint of the DPoP key the request is bound to
	// (RFC 9449 §10: the key of a DPoP proof sent with the request, or its
	// dpop_jkt parameter); "" for none. It is recorded on the request.
	DPoPJKT string
}

// MaxNotificationToken is the longest client_notification_token accepted
// (CIBA §7.1: "the length of the token SHOULD NOT exceed 1024 characters").
const MaxNotificationToken = 1024

// BindingMessagePunctuation lists the punctuation allowed in binding_message
// besides letters, digits, combining marks and single spaces. It is published
// in docs/ so client developers know what passes.
const BindingMessagePunctuation = "-._+/!?#:,;'()@&%*=$€£"

// bindingPunctuationText returns BindingMessagePunctuation as an error
// description can show it (RFC 6749 §5.2 allows ASCII only): the ASCII
// marks as they are, the others by code point.
func bindingPunctuationText() string {
	var ascii, other []string
	for _, r := range BindingMessagePunctuation {
		if r < 0x80 {
			ascii = append(ascii, string(r))
		} else {
			other = append(other, describeRune(r))
		}
	}
	return strings.Join(ascii, "") + " " + strings.Join(other, " ")
}

// describeRune names the character r in an error description, where RFC
// 6749 §5.2 allows neither quotes, backslashes nor non-ASCII: by its code
// point, "U+0022", followed by the character itself in apostrophes when it
// is printable ASCII and shows plainly there ("U+0041 'A'").
func describeRune(r rune) string {
	cp := fmt.Sprintf("U+%04X", r)
	if r >= 0x20 && r < 0x7f && r != '"' && r != '\\' && r != '\'' && r != ' ' {
		return cp + " '" + string(r) + "'"
	}
	return cp
}

// ValidBindingMessage reports why msg is not an acceptable binding_message
// of at most max characters, or "" when it is. CIBA §7.1 asks for a
// "relatively short" message of "a limited set of plain text characters";
// unlike Keycloak's and oidc-provider's patterns, this one allows spaces so a
// message like "Code 1234" works.
func ValidBindingMessage(msg string, max int) string {
	if !utf8.ValidString(msg) {
		return "binding_message is not valid UTF-8"
	}
	if n := utf8.RuneCountInString(msg); n > max {
		return "binding_message is " + strconv.Itoa(n) + " characters; at most " + strconv.Itoa(max) + " are allowed"
	}
	if strings.TrimSpace(msg) != msg {
		return "binding_message must not start or end with a space"
	}
	if strings.Contains(msg, "  ") {
		return "binding_message must not contain two spaces in a row"
	}
	for _, c := range msg {
		switch {
		case c == ' ', unicode.IsLetter(c), unicode.IsDigit(c), unicode.IsMark(c):
		case strings.ContainsRune(BindingMessagePunctuation, c):
		default:
			return "binding_message contains " + describeRune(c) + "; allowed are letters, digits, single spaces and " + bindingPunctuationText()
		}
	}
	return ""
}

// validBearer reports whether tok has the b64token syntax of RFC 6750 §2.1:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func validBearer(tok string) bool {
	i := 0
	for i < len(tok) {
		c := tok[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0 {
			i++
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(tok); i++ {
		if tok[i] != '=' {
			return false
		}
	}
	return true
}

// ParseScope splits a scope parameter (RFC 6749 §3.3) into distinct
// tokens: at most MaxScopeLength bytes holding at most MaxScopeValues
// distinct values of at most MaxScopeValueLength bytes each. Failures are
// invalid_scope for a character RFC 6749 does not allow and
// invalid_request for a bound.
func ParseScope(scope string) ([]string, *Error) {
	if len(scope) > MaxScopeLength {
		return nil, tooLong("scope", len(scope), MaxScopeLength)
	}
	var out []string
	for f := range strings.SplitSeq(scope, " ") {
		if f == "" {
			continue
		}
		if len(f) > MaxScopeValueLength {
			return nil, Errorf(CodeInvalidRequest, "scope has a value of %d bytes; at most %d are allowed", len(f), MaxScopeValueLength)
		}
		for i := 0; i < len(f); i++ {
			if c := f[i]; c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
				return nil, Errorf(CodeInvalidScope, "scope %q has a character not allowed by RFC 6749 §3.3", truncate(f, 32))
			}
		}
		if !slices.Contains(out, f) {
			if len(out) == MaxScopeValues {
				return nil, Errorf(CodeInvalidRequest, "scope has more than %d values", MaxScopeValues)
			}
			out = append(out, f)
		}
	}
	return out, nil
}

// parseExpiry parses requested_expiry (CIBA §7.1): a positive integer number
// of seconds.
func parseExpiry(s string) (time.Duration, *Error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, Errorf(CodeInvalidRequest, "requested_expiry must be a positive whole number of seconds, got %q", truncate(s, 32))
	}
	return time.Duration(n) * time.Second, nil
}

// authorizationDetails checks the authorization_details a client sent,
// value as received ("" for none), against the server's types (reg,
// Config.AuthzDetails) and the client's (Client.AuthzDetailsTypes), and
// returns the list in canonical JSON (authzdetails.List.Canonical), ""
// for none.
// A refusal is invalid_authorization_details (RFC 9396 §5) whose
// description names the element and the field.
func authorizationDetails(reg *authzdetails.Registry, c *Client, value string) (string, *Error) {
	if value == "" {
		return "", nil
	}
	if reg == nil || len(c.AuthzDetailsTypes) == 0 {
		return "", Errorf(CodeInvalidAuthorizationDetails, "authorization_details is not accepted for client %q: it may send no authorization_details types", c.ID)
	}
	l, err := reg.ParseAndCheck(value, c.AuthzDetailsTypes)
	if err != nil {
		var ae *authzdetails.Error
		if !errors.As(err, &ae) {
			return "", &Error{Code: CodeServerError, Description: "authorization_details could not be checked", Err: err}
		}
		return "", &Error{Code: CodeInvalidAuthorizationDetails, Description: ae.Description(), Err: err}
	}
	return string(l.Canonical()), nil
}

// truncate shortens s for an error description.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// CheckProviderDetailTypes is the refusal of authorization_details
// (canonical JSON, as checked at bc-authorize) that would go to an identity
// provider whose discovery lists the types in supported
// (authorization_details_types_supported, RFC 9396 §10): nil when it lists
// every type, else invalid_authorization_details naming the first type it
// does not. The upstreams that pass details on use it, so that details are
// refused rather than dropped by a provider that ignores them.
func CheckProviderDetailTypes(details string, supported []string) *Error {
	var list []struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(details), &list); err != nil {
		return &Error{Code: CodeInvalidAuthorizationDetails, Description: "authorization_details could not be read", Err: err}
	}
	for _, d := range list {
		if !slices.Contains(supported, d.Type) {
			return Errorf(CodeInvalidAuthorizationDetails,
				"authorization_details type %q cannot be passed to the identity provider: its discovery does not list it in authorization_details_types_supported; the request is refused rather than sent without it", truncate(d.Type, 100))
		}
	}
	return nil
}
