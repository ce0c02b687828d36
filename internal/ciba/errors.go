package ciba

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// ErrorCode is an OAuth 2.0 / CIBA error code as it appears in the "error"
// member of a JSON error response. Every code cibaproxy can answer is declared
// here, with the section of the specification it comes from.
type ErrorCode string

// Error codes of RFC 6749 §5.2 and CIBA Core 1.0 §11, §12 and §13.
const (
	// CodeInvalidRequest: a parameter is missing, repeated, malformed or not
	// allowed (RFC 6749 §5.2, CIBA §13).
	CodeInvalidRequest ErrorCode = "invalid_request"
	// CodeInvalidScope: the scope is invalid, unknown, or lacks "openid"
	// (RFC 6749 §5.2, CIBA §13).
	CodeInvalidScope ErrorCode = "invalid_scope"
	// CodeExpiredLoginHintToken: the login_hint_token has expired (CIBA §13).
	CodeExpiredLoginHintToken ErrorCode = "expired_login_hint_token"
	// CodeUnknownUserID: the hint does not name a user the OP knows (CIBA §13).
	CodeUnknownUserID ErrorCode = "unknown_user_id"
	// CodeUnauthorizedClient: the client may not use CIBA, or this delivery
	// mode, or this grant (RFC 6749 §5.2, CIBA §13).
	CodeUnauthorizedClient ErrorCode = "unauthorized_client"
	// CodeMissingUserCode: the client requires a user_code and none was sent (CIBA §13).
	CodeMissingUserCode ErrorCode = "missing_user_code"
	// CodeInvalidUserCode: the user_code is wrong (CIBA §13).
	CodeInvalidUserCode ErrorCode = "invalid_user_code"
	// CodeInvalidBindingMessage: the binding_message is too long or has
	// characters outside the published set (CIBA §13).
	CodeInvalidBindingMessage ErrorCode = "invalid_binding_message"
	// CodeInvalidAuthorizationDetails: authorization_details is malformed,
	// too large, names a type the client may not use, or does not match
	// its type's schema (RFC 9396 §5).
	CodeInvalidAuthorizationDetails ErrorCode = "invalid_authorization_details"
	// CodeInvalidTarget: a resource or audience is not one the client may
	// ask for, or a resource is not an absolute URI without a fragment
	// (RFC 8707 §2).
	CodeInvalidTarget ErrorCode = "invalid_target"
	// CodeInvalidClient: client authentication failed (RFC 6749 §5.2, CIBA §13).
	// Answered with 401.
	CodeInvalidClient ErrorCode = "invalid_client"
	// CodeAccessDenied: the user or the OP refused the request (CIBA §11, §12, §13).
	CodeAccessDenied ErrorCode = "access_denied"
	// CodeAuthorizationPending: the user has not yet answered (CIBA §11).
	CodeAuthorizationPending ErrorCode = "authorization_pending"
	// CodeSlowDown: the client polls faster than its interval; the interval
	// grows by at least five seconds (CIBA §11).
	CodeSlowDown ErrorCode = "slow_down"
	// CodeExpiredToken: the auth_req_id has expired (CIBA §11, §12).
	CodeExpiredToken ErrorCode = "expired_token"
	// CodeInvalidGrant: the auth_req_id is unknown, belongs to another client
	// or was already redeemed (RFC 6749 §5.2, CIBA §11).
	CodeInvalidGrant ErrorCode = "invalid_grant"
	// CodeUnsupportedGrantType: the grant_type is not supported (RFC 6749 §5.2).
	CodeUnsupportedGrantType ErrorCode = "unsupported_grant_type"
	// CodeTransactionFailed: the OP could not complete the request for
	// another reason; used in push error payloads (CIBA §12).
	CodeTransactionFailed ErrorCode = "transaction_failed"
	// CodeServerError: an unexpected condition (RFC 6749 §4.1.2.1).
	CodeServerError ErrorCode = "server_error"
	// CodeTemporarilyUnavailable: a dependency is down; try again later
	// (RFC 6749 §4.1.2.1).
	CodeTemporarilyUnavailable ErrorCode = "temporarily_unavailable"
	// CodeInvalidDPoPProof: the DPoP proof is missing where it is
	// required, repeated, or fails a check of RFC 9449 §4.3 (RFC 9449 §5).
	CodeInvalidDPoPProof ErrorCode = "invalid_dpop_proof"
	// CodeUseDPoPNonce: the server requires a nonce in DPoP proofs; the
	// answer's DPoP-Nonce header gives one (RFC 9449 §8).
	CodeUseDPoPNonce ErrorCode = "use_dpop_nonce"
)

// Error is a protocol error: the code and description answered to the client,
// and the HTTP status it is answered with. Handlers turn it into an RFC 6749
// §5.2 JSON body. Description must never carry a secret or a token.
type Error struct {
	Code        ErrorCode
	Description string
	// Status is the HTTP status code; zero means the default for Code.
	Status int
	// Err is the underlying cause, for logs only; never sent to the client.
	Err error
	// RetryAfter is, for a poll's slow_down, the client's interval now:
	// how long it must wait before it polls again. Zero for other errors.
	RetryAfter time.Duration

	// json is the encoded answer, built once by Shared for errors answered
	// often. It is used only while it still matches Code and Description,
	// so a copy of the error with another description builds its own.
	json *errorJSON
}

// errorJSON is an error's encoded answer and what it was built from.
type errorJSON struct {
	code ErrorCode
	desc string
	body []byte
	// after is the RetryAfter the header value retryAfter says, nil
	// when it is zero.
	after      time.Duration
	retryAfter []string
}

// Shared builds e's JSON answer once, for an error value that is answered
// again and again (authorization_pending, slow_down) and never modified
// after: JSON then returns the same bytes without encoding. It returns e.
func (e *Error) Shared() *Error {
	e.json = &errorJSON{code: e.Code, desc: e.Description, body: e.encode(), after: e.RetryAfter, retryAfter: e.retryAfterValue()}
	return e
}

// RetryAfterHeader returns the value of the Retry-After header (RFC 9110
// §10.2.3) that says RetryAfter in whole seconds, rounded up and at least
// 1; nil when RetryAfter is zero. A Shared error returns the same slice
// each time without allocating: the caller must not modify it.
func (e *Error) RetryAfterHeader() []string {
	if j := e.json; j != nil && j.after == e.RetryAfter {
		return j.retryAfter
	}
	return e.retryAfterValue()
}

// retryAfterValue builds RetryAfterHeader's value.
func (e *Error) retryAfterValue() []string {
	if e.RetryAfter <= 0 {
		return nil
	}
	return []string{strconv.FormatInt(max(int64((e.RetryAfter+time.Second-1)/time.Second), 1), 10)}
}

// JSON returns the RFC 6749 §5.2 body {"error","error_description"} of e.
// The caller must not modify it.
func (e *Error) JSON() []byte {
	if j := e.json; j != nil && j.code == e.Code && j.desc == e.Description {
		return j.body
	}
	return e.encode()
}

// encode encodes e's answer without reflection: an error code is a token
// and SafeDescription leaves only characters that need no JSON escaping
// (RFC 6749 §5.2 allows no '"' or '\\').
func (e *Error) encode() []byte {
	desc := SafeDescription(e.Description)
	b := make([]byte, 0, len(`{"error":"","error_description":""}`)+len(e.Code)+len(desc))
	b = append(b, `{"error":"`...)
	b = append(b, e.Code...)
	if desc != "" {
		b = append(b, `","error_description":"`...)
		b = append(b, desc...)
	}
	return append(b, `"}`...)
}

// Errorf returns a protocol error with a formatted description.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// Error implements error.
func (e *Error) Error() string {
	msg := string(e.Code)
	if e.Description != "" {
		msg += ": " + e.Description
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status to answer: Status when set, else the status the
// specifications give the code.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	switch e.Code {
	case CodeInvalidClient, CodeInvalidToken:
		return http.StatusUnauthorized // RFC 6749 §5.2, CIBA §13, RFC 6750 §3.1
	case CodeAccessDenied:
		return http.StatusForbidden // CIBA §13
	case CodeInsufficientScope:
		return http.StatusForbidden // RFC 6750 §3.1
	case CodeServerError:
		return http.StatusInternalServerError
	case CodeTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// AsError returns err as a protocol error. Anything that is not already one
// becomes server_error, so internal details never reach a client.
func AsError(err error) *Error {
	// Most errors are an *Error as they are (authorization_pending on every
	// pending poll): answered without errors.As, whose target escapes.
	if e, ok := err.(*Error); ok && e != nil {
		return e
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeServerError, Description: "internal error", Err: err}
}

// CodeInvalidToken: the bearer presented at the callback endpoint is wrong
// (RFC 6750 §3.1). Answered with 401.
const CodeInvalidToken ErrorCode = "invalid_token"

// CodeInsufficientScope: the access token presented at a resource (the
// userinfo endpoint) lacks the scope it needs (RFC 6750 §3.1). Answered
// with 403.
const CodeInsufficientScope ErrorCode = "insufficient_scope"

// SafeDescription makes s fit for an error_description, which RFC 6749
// §5.2 limits to printable ASCII without '"' and '\' (%x20-21 / %x23-5B /
// %x5D-7E), and keeps it readable: a section sign becomes "section ", an
// ellipsis "...", a double quote (the quotes %q puts around values) an
// apostrophe, and any other character outside the set, non-ASCII letters
// and control characters included, its code point in angle brackets,
// "<U+00E9>" for é. Invalid UTF-8 becomes "<U+FFFD>". The result needs no
// JSON escaping, and SafeDescription leaves it as it is.
func SafeDescription(s string) string {
	return SafeDescriptionMax(s, -1)
}

// SafeDescriptionMax is SafeDescription bounded to max bytes (a negative
// max: no bound; otherwise at least 3): when the result would be longer it
// is cut and ends in "...", never inside a code point's notation.
func SafeDescriptionMax(s string, max int) string {
	ok := max < 0 || len(s) <= max
	for i := 0; ok && i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			ok = false
		}
	}
	if ok {
		return s
	}
	b := make([]byte, 0, len(s))
	cut := -1 // where to cut for "...": the last boundary within max-3
	for _, r := range s {
		if max >= 0 && len(b) <= max-3 {
			cut = len(b)
		}
		switch {
		case r == '§':
			b = append(b, "section "...)
		case r == '…':
			b = append(b, "..."...)
		case r == '"':
			b = append(b, '\'')
		case r < 0x20 || r > 0x7e || r == '\\':
			b = fmt.Appendf(b, "<U+%04X>", r)
		default:
			b = append(b, byte(r))
		}
		if max >= 0 && len(b) > max {
			return string(b[:cut]) + "..."
		}
	}
	return string(b)
}
