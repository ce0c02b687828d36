package oidc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// keySet is the IdP's remote key set with two additions.
//
// It tells the verification that called it when the keys could not be
// fetched, so an unreachable jwks_uri is reported as the IdP being
// unavailable rather than as a bad token. (go-oidc flattens the key set's
// error into a string.)
//
// It retries a failed signature once on a fresh remote key set. go-oidc's
// RemoteKeySet shares one fetch between concurrent verifications, and a
// verification that arrives just after a fetch has delivered its keys,
// before the fetch is cleared, joins it and gets the keys of before the
// IdP's rotation: a valid token signed with the new key is refused. A fresh
// set has no fetch to join. Rebuilds are spaced by rebuildEvery, so tokens
// with unknown keys cannot make cibaproxy fetch the IdP's keys more than
// go-oidc already does plus once per interval.
type keySet struct {
	newRemote    func() *gooidc.RemoteKeySet
	now          func() time.Time
	rebuildEvery time.Duration

	mu          sync.Mutex
	remote      *gooidc.RemoteKeySet
	lastRebuild time.Time
}

// rebuildEvery is the least time between two rebuilds of the key set.
const rebuildEvery = 10 * time.Second

func newKeySet(newRemote func() *gooidc.RemoteKeySet, now func() time.Time) *keySet {
	return &keySet{newRemote: newRemote, now: now, rebuildEvery: rebuildEvery, remote: newRemote()}
}

// fetchFailure is where keySet records a key fetch failure for the
// verification whose context carries it.
type fetchFailure struct{ err error }

type fetchFailureKey struct{}

// VerifySignature implements gooidc.KeySet. The remote key set wraps an
// error only when fetching the keys failed; a bad signature is a plain
// error, and is retried once on a fresh key set (see keySet).
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	k.mu.Lock()
	remote := k.remote
	k.mu.Unlock()
	payload, err := remote.VerifySignature(ctx, jwt)
	if err != nil && errors.Unwrap(err) == nil {
		if fresh := k.rebuild(remote); fresh != nil {
			payload, err = fresh.VerifySignature(ctx, jwt)
		}
	}
	if err != nil && errors.Unwrap(err) != nil {
		if f, ok := ctx.Value(fetchFailureKey{}).(*fetchFailure); ok {
			f.err = err
		}
	}
	return payload, err
}

// rebuild replaces the key set that failed with a fresh one and returns
// it, or returns nil when the last rebuild was too recent. When another
// verification has already replaced failed, its replacement is returned.
func (k *keySet) rebuild(failed *gooidc.RemoteKeySet) *gooidc.RemoteKeySet {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.remote != failed {
		return k.remote
	}
	now := k.now()
	if !k.lastRebuild.IsZero() && now.Sub(k.lastRebuild) < k.rebuildEvery {
		return nil
	}
	k.lastRebuild = now
	k.remote = k.newRemote()
	return k.remote
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
