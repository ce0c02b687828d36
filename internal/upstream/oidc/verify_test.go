package oidc

import (
	"context"
	"errors"
	"testing"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
)

// TestKeySetRetriesOnAFreshSet reproduces what go-oidc's shared key fetch
// can do during a rotation: the key set in use answers with the keys of
// before the rotation. The token signed with the new key must still verify,
// on a fresh set.
func TestKeySetRetriesOnAFreshSet(t *testing.T) {
	stale, op := newTestOP(t), newTestOP(t)
	built := 0
	ks := newKeySet(func() *gooidc.RemoteKeySet {
		built++
		if built == 1 { // the set in use still has the keys of before
			return gooidc.NewRemoteKeySet(context.Background(), stale.issuer()+"/jwks")
		}
		return gooidc.NewRemoteKeySet(context.Background(), op.issuer()+"/jwks")
	}, time.Now)
	if _, err := ks.VerifySignature(context.Background(), op.idToken(nil)); err != nil {
		t.Fatalf("VerifySignature after the rotation: %v", err)
	}
	if built != 2 {
		t.Fatalf("key sets built: %d, want 2", built)
	}
	// The fresh set stays in use.
	if _, err := ks.VerifySignature(context.Background(), op.idToken(nil)); err != nil || built != 2 {
		t.Fatalf("second VerifySignature: %v (key sets built: %d)", err, built)
	}
}

// TestKeySetRebuildsAreSpaced checks that tokens with keys the IdP does not
// publish cannot make cibaproxy fetch the IdP's keys at will: beyond
// go-oidc's own refetch, one fresh key set per interval. (Counting the
// fetches themselves would be racy: go-oidc fetches in a goroutine of its
// own, which is the very race the retry is for.)
func TestKeySetRebuildsAreSpaced(t *testing.T) {
	op, foreign := newTestOP(t), newTestOP(t)
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	built := 0
	ks := newKeySet(func() *gooidc.RemoteKeySet {
		built++
		return gooidc.NewRemoteKeySet(context.Background(), op.issuer()+"/jwks")
	}, func() time.Time { return now })
	bad := foreign.idToken(nil)
	for i, want := range []int{2, 2, 2} { // the first bad token rebuilds, the next ones may not
		if _, err := ks.VerifySignature(context.Background(), bad); err == nil {
			t.Fatal("a token signed by another key verified")
		}
		if built != want {
			t.Errorf("after bad token %d: %d key sets built, want %d", i, built, want)
		}
	}
	now = now.Add(rebuildEvery)
	if _, err := ks.VerifySignature(context.Background(), bad); err == nil {
		t.Fatal("a token signed by another key verified")
	}
	if built != 3 {
		t.Errorf("after the interval: %d key sets built, want 3", built)
	}
	// The good token still verifies on the set in use.
	if _, err := ks.VerifySignature(context.Background(), op.idToken(nil)); err != nil {
		t.Fatalf("a token of the IdP: %v", err)
	}
}

// TestKeySetReportsAFetchFailureOfTheFreshSet checks that a failure to
// fetch the keys is still reported as such when it happens on the fresh
// set.
func TestKeySetReportsAFetchFailureOfTheFreshSet(t *testing.T) {
	stale, op := newTestOP(t), newTestOP(t)
	op.set(func(op *testOP) { op.jwksDown = true })
	built := 0
	ks := newKeySet(func() *gooidc.RemoteKeySet {
		built++
		if built == 1 {
			return gooidc.NewRemoteKeySet(context.Background(), stale.issuer()+"/jwks")
		}
		return gooidc.NewRemoteKeySet(context.Background(), op.issuer()+"/jwks")
	}, time.Now)
	f := &fetchFailure{}
	_, err := ks.VerifySignature(context.WithValue(context.Background(), fetchFailureKey{}, f), op.idToken(nil))
	if err == nil || f.err == nil {
		t.Fatalf("VerifySignature = %v, recorded fetch failure %v; want both", err, f.err)
	}
	if errors.Unwrap(f.err) == nil {
		t.Errorf("the recorded failure %v does not wrap the fetch error", f.err)
	}
}
