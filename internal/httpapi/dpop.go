package httpapi

import (
	"errors"
	"net/http"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
)

// The DPoP headers (RFC 9449 §4.1, §8).
const (
	headerDPoP      = "DPoP"
	headerDPoPNonce = "DPoP-Nonce"
)

// dpopBinding verifies the DPoP proof of request r of client c to the
// endpoint at url (RFC 9449 §4.3, §5) and returns the thumbprint of its key
// (cnf.jkt), or "" when the request carries no proof and c need not send
// one. A request with more than one DPoP header is refused, as is one
// without a proof from a client with dpop_bound_access_tokens (RFC 9449
// §5.2). Without a verifier (s.DPoP nil: the upstream's tokens cannot be
// bound here) a proof is ignored, as before DPoP existed, and the tokens
// are of type Bearer. When server nonces are on, w gets a fresh DPoP-Nonce
// whatever the outcome, so the client's next proof can carry it (RFC 9449
// §8.2).
func (s *Server) dpopBinding(w http.ResponseWriter, r *http.Request, c *ciba.Client, url string) (string, error) {
	proofs := r.Header.Values(headerDPoP)
	switch {
	case len(proofs) > 1:
		return "", ciba.Errorf(ciba.CodeInvalidDPoPProof, "exactly one DPoP header is allowed, got %d (RFC 9449 §4.3)", len(proofs))
	case len(proofs) == 0 && c.DPoPBoundAccessTokens:
		return "", ciba.Errorf(ciba.CodeInvalidDPoPProof, "client %q has DPoP-bound access tokens (dpop_bound_access_tokens): send a DPoP proof with each token request (RFC 9449 §5.2)", c.ID)
	case len(proofs) == 0 || s.DPoP == nil && !c.DPoPBoundAccessTokens:
		return "", nil
	case s.DPoP == nil:
		return "", &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: errors.New("httpapi: a client with DPoP-bound access tokens but no DPoP verifier")}
	}
	p, err := s.DPoP.Verify(r.Context(), proofs[0], dpop.Request{Method: r.Method, URL: url})
	if n := s.DPoP.NewNonce(); n != "" {
		w.Header().Set(headerDPoPNonce, n)
	}
	if err != nil {
		return "", dpopError(err)
	}
	return p.JKT, nil
}

// dpopError is the protocol error of a DPoP proof that failed (RFC 9449
// §5, §8): use_dpop_nonce when a nonce is needed, temporarily_unavailable
// when the replay record could not be made for a store that is down, else
// invalid_dpop_proof.
func dpopError(err error) error {
	var e *dpop.Error
	if !errors.As(err, &e) {
		return &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: err}
	}
	switch {
	case errors.Is(err, dpop.ErrUseNonce):
		return &ciba.Error{Code: ciba.CodeUseDPoPNonce, Description: ciba.SafeDescription(e.Description()), Err: err}
	case errors.Is(err, dpop.ErrReplayCheck) && errors.Is(err, ciba.ErrUnavailable):
		return &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: "DPoP proof: the replay check is unavailable; try again later", Err: err}
	case errors.Is(err, dpop.ErrReplayCheck):
		return &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: err}
	default:
		return &ciba.Error{Code: ciba.CodeInvalidDPoPProof, Description: ciba.SafeDescription(e.Description()), Err: err}
	}
}
