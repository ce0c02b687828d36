package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
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
// endpoint at path of the issuer (RFC 9449 §4.3, §5) and returns the thumbprint of its key
// (cnf.jkt), or "" when the request carries no proof and c need not send
// one. A request with more than one DPoP header is refused, as is one
// without a proof from a client with dpop_bound_access_tokens (RFC 9449
// §5.2). Without a verifier (s.DPoP nil: the upstream's tokens cannot be
// bound here) a proof is refused (invalid_dpop_proof), so that a client
// that asked for DPoP is not handed bearer tokens. When server nonces are on, w gets a fresh DPoP-Nonce
// whatever the outcome, so the client's next proof can carry it (RFC 9449
// §8.2).
func (s *Server) dpopBinding(w http.ResponseWriter, r *http.Request, c *ciba.Client, path string) (string, error) {
	proofs := r.Header.Values(headerDPoP)
	switch {
	case len(proofs) > 1:
		return "", ciba.Errorf(ciba.CodeInvalidDPoPProof, "exactly one DPoP header is allowed, got %d (RFC 9449 §4.3)", len(proofs))
	case len(proofs) == 0 && c.DPoPBoundAccessTokens:
		return "", ciba.Errorf(ciba.CodeInvalidDPoPProof, "client %q has DPoP-bound access tokens (dpop_bound_access_tokens): send a DPoP proof with this request (RFC 9449 §5.2; at bc-authorize dpop_jkt will do, §10)", c.ID)
	case len(proofs) == 0:
		return "", nil
	case s.DPoP == nil && c.DPoPBoundAccessTokens:
		return "", &ciba.Error{Code: ciba.CodeServerError, Description: "internal error", Err: errors.New("httpapi: a client with DPoP-bound access tokens but no DPoP verifier")}
	case s.DPoP == nil:
		// The upstream's tokens cannot be bound here: refused rather than
		// answered with bearer tokens the client did not ask for.
		return "", ciba.Errorf(ciba.CodeInvalidDPoPProof, "DPoP-bound tokens are not available here: the identity provider issues the tokens, and cibaproxy cannot bind them to a DPoP key; send the request without a DPoP header")
	}
	// The URL is built only here: the poll path without a proof allocates
	// nothing for DPoP.
	p, err := s.DPoP.Verify(r.Context(), proofs[0], dpop.Request{Method: r.Method, URL: s.Issuer + path})
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

// requestDPoPKey returns the DPoP key a backchannel authentication request
// of client c is bound to (RFC 9449 §10): the key of its DPoP proof (for
// the bc-authorize URL), or its dpop_jkt parameter, or "" for none. The
// CIBA grant's tokens are minted when the user approves, before any poll,
// so the key must be known here: a client with dpop_bound_access_tokens
// must give one, and both, when given, must name the same key.
func (s *Server) requestDPoPKey(w http.ResponseWriter, r *http.Request, c *ciba.Client, param, path string) (string, error) {
	if param != "" && !validJKT(param) {
		return "", ciba.Errorf(ciba.CodeInvalidRequest, "dpop_jkt must be a JWK SHA-256 thumbprint, base64url without padding (RFC 9449 §10)")
	}
	if param != "" && s.DPoP == nil {
		return "", ciba.Errorf(ciba.CodeInvalidRequest, "dpop_jkt is not supported: tokens of this upstream cannot be bound to a DPoP key here")
	}
	// A client that must use DPoP may bind with dpop_jkt alone.
	bound := *c
	bound.DPoPBoundAccessTokens = c.DPoPBoundAccessTokens && param == ""
	jkt, err := s.dpopBinding(w, r, &bound, path)
	switch {
	case err != nil:
		return "", err
	case jkt != "" && param != "" && jkt != param:
		return "", ciba.Errorf(ciba.CodeInvalidDPoPProof, "dpop_jkt names another key than the DPoP proof's (RFC 9449 §10)")
	case jkt != "":
		return jkt, nil
	}
	return param, nil
}

// validJKT reports whether s looks like a JWK SHA-256 thumbprint: 32
// bytes, base64url without padding.
func validJKT(s string) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}
