package ciba

// checkDPoP answers a token request for request r, no longer pending, made
// with a DPoP proof of the key whose thumbprint is presented ("" for no
// proof): invalid_grant when r is bound to a DPoP key (AuthRequest.DPoPJKT)
// and the proof is missing or of another key (RFC 9449 §10); and
// invalid_dpop_proof when a proof comes for a request that was not bound,
// whose tokens were minted unbound at approval and are not handed to a
// client that asked for DPoP. It changes nothing, so the holder of the
// right key can still redeem the request.
func checkDPoP(r *AuthRequest, presented string) error {
	switch {
	case r.DPoPJKT == "" && presented == "":
		return nil
	case r.DPoPJKT == "":
		return tokenError(CodeInvalidDPoPProof, "the %s was not bound to a DPoP key when it was requested, so its tokens are not DPoP-bound: send the DPoP proof (or dpop_jkt) with the backchannel authentication request, or poll without one", r.Kind.idParam())
	case presented == "":
		return tokenError(CodeInvalidGrant, "the %s is bound to a DPoP key; send a DPoP proof of that key (RFC 9449 §10)", r.Kind.idParam())
	case presented != r.DPoPJKT:
		return tokenError(CodeInvalidGrant, "the %s is bound to another DPoP key than the proof's (RFC 9449 §10)", r.Kind.idParam())
	}
	return nil
}
