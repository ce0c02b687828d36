package oidc

import (
	"context"
	"errors"
	"fmt"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// keySet is the IdP's remote key set with one addition: it tells the
// verification that called it when the keys could not be fetched, so an
// unreachable jwks_uri is reported as the IdP being unavailable rather than
// as a bad token. (go-oidc flattens the key set's error into a string.)
type keySet struct {
	remote *gooidc.RemoteKeySet
}

// fetchFailure is where keySet records a key fetch failure for the
// verification whose context carries it.
type fetchFailure struct{ err error }

type fetchFailureKey struct{}

// VerifySignature implements gooidc.KeySet. The remote key set wraps an
// error only when fetching the keys failed; a bad signature is a plain
// error.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.remote.VerifySignature(ctx, jwt)
	if err != nil && errors.Unwrap(err) != nil {
		if f, ok := ctx.Value(fetchFailureKey{}).(*fetchFailure); ok {
			f.err = err
		}
	}
	return payload, err
}

// verify checks an ID token of the IdP for clientID (its client_id at the
// IdP) per OIDC Core §3.1.3.7: signature with the IdP's keys and an
// advertised algorithm, iss, aud, azp when present and, unless skipExpiry,
// exp. It does not
// check the nonce. A failure to fetch the keys wraps ciba.ErrUnavailable.
func (u *Upstream) verify(ctx context.Context, p *provider, clientID, raw string, skipExpiry bool) (*gooidc.IDToken, error) {
	v := gooidc.NewVerifier(p.issuer, p.keys, &gooidc.Config{
		ClientID:             clientID,
		SupportedSigningAlgs: p.algs,
		SkipExpiryCheck:      skipExpiry,
		Now:                  u.now,
	})
	f := &fetchFailure{}
	idt, err := v.Verify(context.WithValue(ctx, fetchFailureKey{}, f), raw)
	if err != nil {
		if f.err != nil {
			return nil, unavailable(fmt.Errorf("oidc: fetch the keys of %s: %w", p.issuer, f.err))
		}
		return nil, err
	}
	// OIDC Core §3.1.3.7 step 5: an azp claim names the client the token
	// was issued to; go-oidc leaves it to the caller.
	var azp struct {
		AZP string `json:"azp"`
	}
	if err := idt.Claims(&azp); err != nil {
		return nil, fmt.Errorf("oidc: decode the ID token's claims: %w", err)
	}
	if azp.AZP != "" && azp.AZP != clientID {
		return nil, fmt.Errorf("oidc: expected authorized party %q got %q", clientID, azp.AZP)
	}
	return idt, nil
}
