package ciba

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Bounds of an authentication request (CIBA §7.1) and a device
// authorization request (RFC 8628 §3.1). Every list and string a client
// sends is bounded, so that one request cannot make the service hold, store
// and copy into tokens more than a few kilobytes: without them a client
// with the default scope policy could send thousands of scope and
// acr_values tokens in each request (the form body alone allows 64 KiB).
// A value over its bound is invalid_request naming the parameter and the
// bound, and nothing is stored. docs/configuration.md ("Request size
// bounds") lists them with the reasons for each value.
const (
	// MaxScopeValues bounds the distinct scope values of a request. The
	// standard OpenID Connect scopes are six; 50 leaves room for an
	// operator's own.
	MaxScopeValues = 50
	// MaxScopeValueLength bounds one scope value, in bytes.
	MaxScopeValueLength = 128
	// MaxScopeLength bounds the whole scope parameter, in bytes (the
	// values, separators included).
	MaxScopeLength = 2048
	// MaxACRValues bounds the acr_values of a request: a client names
	// the few levels of assurance it accepts, in order of preference.
	MaxACRValues = 10
	// MaxACRValueLength bounds one acr value (often a URN), in bytes.
	MaxACRValueLength = 256
	// MaxACRLength bounds the whole acr_values parameter, in bytes.
	MaxACRLength = 1024
	// MaxLoginHint bounds login_hint, in bytes: an e-mail address is at
	// most 254 (RFC 5321), a phone number or user name far less.
	MaxLoginHint = 512
	// MaxTokenHint bounds id_token_hint and login_hint_token, in bytes:
	// the size up to which package jose parses a signed token
	// (jose.DefaultMaxSize).
	MaxTokenHint = 16 << 10
	// MaxUserCode bounds user_code, in bytes: a secret the user types.
	MaxUserCode = 128
	// MaxRequestedExpiry bounds requested_expiry, in bytes: a number of
	// seconds.
	MaxRequestedExpiry = 16
	// MaxBindingMessageBytes bounds binding_message in bytes, whatever
	// ciba.binding_message_max says in characters (at most 256 of 4
	// bytes each).
	MaxBindingMessageBytes = 1024
)

// checkSizes refuses an authentication request with a parameter longer
// than its bound, before any of it is parsed, looked up or stored. The
// lists (scope, acr_values) are bounded by ParseScope and parseACR.
func checkSizes(p AuthParams) *Error {
	for _, b := range []struct {
		name  string
		value string
		max   int
	}{
		{"scope", p.Scope, MaxScopeLength},
		{"acr_values", p.ACRValues, MaxACRLength},
		{"login_hint", p.Hint.LoginHint, MaxLoginHint},
		{"id_token_hint", p.Hint.IDTokenHint, MaxTokenHint},
		{"login_hint_token", p.Hint.LoginHintToken, MaxTokenHint},
		{"binding_message", p.BindingMessage, MaxBindingMessageBytes},
		{"user_code", p.UserCode, MaxUserCode},
		{"requested_expiry", p.RequestedExpiry, MaxRequestedExpiry},
		{"client_notification_token", p.ClientNotificationToken, MaxNotificationToken},
	} {
		if len(b.value) > b.max {
			return tooLong(b.name, len(b.value), b.max)
		}
	}
	if p.Hint.LoginHint != "" {
		if why := checkText(p.Hint.LoginHint); why != "" {
			return Errorf(CodeInvalidRequest, "login_hint %s", why)
		}
	}
	return nil
}

// tooLong is the invalid_request of a parameter of n bytes over its bound.
func tooLong(name string, n, max int) *Error {
	return Errorf(CodeInvalidRequest, "%s is %d bytes; at most %d are allowed", name, n, max)
}

// checkText reports why s, a parameter shown to people and compared with
// their names, is not acceptable text ("" when it is): it must be UTF-8
// without control characters.
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, c := range s {
		if c < 0x20 && c != '\t' || c == 0x7f || c >= 0x80 && c < 0xa0 {
			return fmt.Sprintf("contains the control character U+%04X", c)
		}
	}
	return ""
}

// parseACR splits acr_values (CIBA §7.1: space-separated, in order of
// preference) into distinct values, within MaxACRValues values of at most
// MaxACRValueLength bytes.
func parseACR(s string) ([]string, *Error) {
	if len(s) > MaxACRLength {
		return nil, tooLong("acr_values", len(s), MaxACRLength)
	}
	var out []string
	for v := range strings.FieldsFuncSeq(s, isListSpace) {
		switch {
		case len(v) > MaxACRValueLength:
			return nil, Errorf(CodeInvalidRequest, "acr_values has a value of %d bytes; at most %d are allowed", len(v), MaxACRValueLength)
		case checkText(v) != "":
			return nil, Errorf(CodeInvalidRequest, "acr_values has a value that is not printable UTF-8")
		}
		if !slices.Contains(out, v) {
			if len(out) == MaxACRValues {
				return nil, Errorf(CodeInvalidRequest, "acr_values has more than %d values", MaxACRValues)
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// isListSpace reports whether c separates the values of acr_values: an
// ASCII space, tab or line break.
func isListSpace(c rune) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}
