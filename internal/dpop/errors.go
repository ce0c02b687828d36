package dpop

import (
	"errors"
	"fmt"
)

// What went wrong with a proof, for errors.Is on the errors of Verify. The
// wire code (RFC 9449 §7.1: invalid_dpop_proof, use_dpop_nonce) is chosen
// by the caller that speaks the protocol; this package names the fault.
var (
	// ErrInvalidProof: the proof is malformed, or a header, a claim or
	// its signature fails a check of RFC 9449 §4.3. The client's fault
	// (invalid_dpop_proof).
	ErrInvalidProof = errors.New("dpop: invalid proof")
	// ErrReplay: the proof's jti was already used within its window
	// (RFC 9449 §11.1). Matches ErrInvalidProof too.
	ErrReplay = fmt.Errorf("%w: jti already used", ErrInvalidProof)
	// ErrUseNonce: the server requires a nonce and the proof has none, or
	// one that is not (or no longer) valid (RFC 9449 §8). Error.Nonce is a
	// fresh one for the DPoP-Nonce response header (use_dpop_nonce).
	ErrUseNonce = errors.New("dpop: a server nonce is required")
	// ErrReplayCheck: the replay record could not be made, so the proof is
	// refused though it may be fine. Error.Err is the Replay's error; the
	// caller tells a temporary failure (try again later) by it.
	ErrReplayCheck = errors.New("dpop: replay check failed")
)

// Error is the error of Verify: the fault (Kind, one of ErrInvalidProof,
// ErrReplay, ErrUseNonce, ErrReplayCheck, matched by errors.Is), the header
// parameter or claim concerned, and a reason fit to be shown to the client
// (it quotes values of the proof clipped, never a secret).
type Error struct {
	// Kind is the fault.
	Kind error
	// Field is the header parameter or claim concerned ("typ", "alg",
	// "jwk", "htm", "htu", "iat", "jti", "nonce", "ath"), or "" for the
	// proof as a whole.
	Field string
	// Reason says what is wrong, for the error_description.
	Reason string
	// Nonce is, with ErrUseNonce, a fresh server nonce for the DPoP-Nonce
	// response header; "" otherwise.
	Nonce string
	// Err is the underlying cause, for logs; nil when there is none.
	Err error
}

// Description is the reason prefixed by "DPoP proof: ", as shown to the
// client.
func (e *Error) Description() string { return "DPoP proof: " + e.Reason }

// Error implements error.
func (e *Error) Error() string {
	msg := "dpop: " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is matches the Kind, so errors.Is(err, ErrInvalidProof) holds for a
// replayed proof as well.
func (e *Error) Is(target error) bool { return errors.Is(e.Kind, target) }

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// invalid returns an ErrInvalidProof error about field.
func invalid(field, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalidProof, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// clip shortens a value taken from a proof for an error message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
