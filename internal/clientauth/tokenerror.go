package clientauth

import (
	"errors"
	"net/http"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// tokenError maps the error of package jose's verification of a token a
// client sent (a client assertion, a request object, a login_hint_token
// or an id_token_hint) to the protocol error the client is answered with.
// It is the one place where the faults of a JWT become wire codes (RFC
// 6749 §5.2, CIBA §13):
//
//   - a policy that cannot be applied (jose.ErrPolicy): server_error,
//     "internal error", the cause kept for logs;
//   - a replay record that could not be made (jose.ErrReplayCheck):
//     temporarily_unavailable when the store is unavailable
//     (ciba.ErrUnavailable), else server_error;
//   - an expired login_hint_token: expired_login_hint_token (CIBA §13);
//   - any other fault of a client assertion: invalid_client, answered
//     with 401 (RFC 7523 §3, RFC 6749 §5.2);
//   - any other fault of a request object or a hint: invalid_request
//     (CIBA §7.1, §7.1.1, §13).
//
// A client's fault is described as jose describes it: which token, which
// claim, what was expected. An error that is not a *jose.ValidationError
// is returned as it is, so ciba.AsError makes it server_error.
func tokenError(err error) error {
	var v *jose.ValidationError
	if !errors.As(err, &v) {
		return err
	}
	switch {
	case errors.Is(v, jose.ErrPolicy):
		return &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: v}
	case errors.Is(v, jose.ErrReplayCheck) && errors.Is(v.Err, ciba.ErrUnavailable):
		return &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: v.Token + ": the replay check is unavailable; try again later", Err: v}
	case errors.Is(v, jose.ErrReplayCheck):
		return &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: v}
	case v.Token == jose.TokenLoginHint && errors.Is(v, jose.ErrExpired):
		return &ciba.Error{Code: ciba.CodeExpiredLoginHintToken, Description: v.Description(), Err: v.Err}
	case v.Token == jose.TokenClientAssertion:
		return &ciba.Error{Code: ciba.CodeInvalidClient, Status: http.StatusUnauthorized, Description: v.Description(), Err: v.Err}
	default:
		return &ciba.Error{Code: ciba.CodeInvalidRequest, Description: v.Description(), Err: v.Err}
	}
}
