package ciba

// checkDPoP answers a token request for request r made with a DPoP proof
// of the key whose thumbprint is presented ("" for no proof): nil when
// the keys agree, else keyError. It changes nothing, so the holder of the
// right key can still redeem the request.
func checkDPoP(r *AuthRequest, presented string) error {
	if r.DPoPJKT == presented {
		return nil
	}
	return keyError(r.Kind, r.DPoPJKT != "", presented)
}

// keyMismatch is the answer to a poll whose DPoP key is not the request's
// (PollWrongKey, PollUnboundKey), whatever the request's state, pending
// included (keyError). The store answers it before the pace is applied and
// without the request's state, so a poller without the key learns nothing
// of the user's decision and cannot slow the key holder's polls down.
func keyMismatch(k Kind, out PollOutcome, presented string) error {
	return keyError(k, out == PollWrongKey, presented)
}

// keyError is the error of a token request of grant k whose DPoP key
// (presented, "" for no proof) is not the one the request is bound to:
// invalid_grant when the request is bound to a key and the proof is
// missing or of another key, as for an authorization code bound with
// dpop_jkt (RFC 9449 §10); invalid_dpop_proof when a proof comes for a
// request that was not bound, whose tokens are minted unbound at approval
// and are not handed to a client that asked for DPoP.
func keyError(k Kind, bound bool, presented string) error {
	switch {
	case !bound:
		return tokenError(CodeInvalidDPoPProof, "the %s was not bound to a DPoP key when it was requested, so its tokens are not DPoP-bound: send the DPoP proof (or dpop_jkt) with the authorization request, or poll without one", k.idParam())
	case presented == "":
		return tokenError(CodeInvalidGrant, "the %s is bound to a DPoP key; send a DPoP proof of that key (RFC 9449 §10)", k.idParam())
	}
	return tokenError(CodeInvalidGrant, "the %s is bound to another DPoP key than the proof's (RFC 9449 §10)", k.idParam())
}
