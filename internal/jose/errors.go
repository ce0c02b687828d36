package jose

import "errors"

// What went wrong with a token, for errors.Is on the errors of the
// verifiers. Which protocol error a caller answers for each (RFC 6749
// §5.2, CIBA §13) is the caller's decision: this package names the token
// and the fault, not the wire code.
var (
	// ErrInvalid: the token is malformed, or a header, claim or the
	// signature fails a check of its policy. The client's fault.
	ErrInvalid = errors.New("jose: invalid token")
	// ErrExpired: the token's exp has passed (beyond the clock skew). The
	// client's fault; CIBA §13 gives an expired login_hint_token a code
	// of its own.
	ErrExpired = errors.New("jose: token expired")
	// ErrReplay is wrapped by a Replay's error for a key it has seen
	// before, and matches the verifiers' error for a token whose jti was
	// already used. The client's fault.
	ErrReplay = errors.New("jose: already used")
	// ErrReplayCheck: the replay record could not be made, so the token
	// is refused though it may be fine. The Replay's error is the
	// ValidationError's Err; the caller tells a temporary failure (try
	// again later) from another by it.
	ErrReplayCheck = errors.New("jose: replay check failed")
	// ErrPolicy: the policy cannot be applied (a required field unset, an
	// algorithm not supported, a key set that misbehaves). The caller's
	// bug, not the client's fault.
	ErrPolicy = errors.New("jose: unusable policy")
)

// The tokens this package verifies, as ValidationError.Token names them.
const (
	TokenRequestObject   = "request object"
	TokenClientAssertion = "client assertion"
	TokenLoginHint       = "login_hint_token"
	TokenIDTokenHint     = "id_token_hint"
)

// ValidationError is the error of every verifier of this package: which
// token failed, the fault (Kind, one of ErrInvalid, ErrExpired, ErrReplay,
// ErrReplayCheck, ErrPolicy, matched by errors.Is), the header or claim
// concerned, and a reason that says what was found and what was expected.
// Reason quotes values taken from the token clipped, and never a secret:
// Description is fit to be shown to the client that sent the token.
type ValidationError struct {
	// Token is the token that failed: TokenRequestObject,
	// TokenClientAssertion, TokenLoginHint or TokenIDTokenHint.
	Token string
	// Kind is the fault: ErrInvalid, ErrExpired, ErrReplay,
	// ErrReplayCheck or ErrPolicy.
	Kind error
	// Field is the header parameter or claim concerned ("alg", "typ",
	// "iss", "exp", "jti", ...), or "" for the token as a whole (its
	// size, its serialization, its signature).
	Field string
	// Reason says what is wrong, without the token's name.
	Reason string
	// Err is the underlying cause, for logs; nil when there is none.
	Err error
}

// Description is the token's name and the reason, as shown to the client:
// "request object: jti is missing".
func (e *ValidationError) Description() string { return e.Token + ": " + e.Reason }

// Error implements error.
func (e *ValidationError) Error() string {
	msg := "jose: " + e.Description()
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is reports whether target is the error's Kind.
func (e *ValidationError) Is(target error) bool { return target != nil && target == e.Kind }

// Unwrap returns the underlying cause.
func (e *ValidationError) Unwrap() error { return e.Err }
