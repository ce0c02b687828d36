package local_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	redisstore "github.com/cibaproxy/cibaproxy/internal/store/redis"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

// The local issuer the token and refresh family tests run: alice alone,
// client c1, on each store backend.

// stores opens each store backend for the refresh family tests: the rule
// lives in the local upstream, on the Store's record operations, so it
// must hold on every backend.
var stores = []struct {
	name string
	open func(t *testing.T) ciba.Store
}{
	{"memory", func(t *testing.T) ciba.Store { return memory.New() }},
	{"embedded", func(t *testing.T) ciba.Store {
		s, err := embedded.Open(t.Context(), filepath.Join(t.TempDir(), "store.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
	{"redis", func(t *testing.T) ciba.Store {
		srv := redistest.Start(t)
		s, err := redisstore.Open(t.Context(), redisstore.Config{Addrs: []string{srv.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}},
}

// newSigner is a key manager with a fresh P-256 key.
func newSigner(t testing.TB) *keys.Manager {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m, err := keys.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// aliceIssuer is the local issuer of alice alone (subject sub-alice,
// password pw) signing with signer on store st: access tokens for 10
// minutes, ID tokens for 5, refresh tokens for an hour.
func aliceIssuer(t testing.TB, signer local.Signer, st ciba.Store) *local.Upstream {
	t.Helper()
	u, err := local.New(local.Config{
		Issuer:         issuer,
		Users:          []local.User{{Username: "alice", Subject: "sub-alice", PasswordHash: hash(t, "pw")}},
		AccessTokenTTL: 10 * time.Minute, IDTokenTTL: 5 * time.Minute, RefreshTokenTTL: time.Hour,
		Signer: signer, Hints: hints{}, LeftHash: keys.LeftHash, Store: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// upstreamOn is aliceIssuer with a fresh key on store st.
func upstreamOn(t testing.TB, st ciba.Store) *local.Upstream {
	t.Helper()
	return aliceIssuer(t, newSigner(t), st)
}

// mintAlice mints client c1's tokens for alice, scope openid,
// authenticated and issued at now: an access, an ID and a refresh token
// of a new family.
func mintAlice(t testing.TB, u *local.Upstream, now time.Time) *ciba.TokenResponse {
	t.Helper()
	tr, err := u.Mint(t.Context(), &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
