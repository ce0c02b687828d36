package local_test

import (
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/embedded"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

// header returns the decoded JOSE header of a compact JWS.
func header(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestAccessTokenProfile: the access token is an RFC 9068 JWT (typ
// at+jwt; iss, sub, aud, exp, iat, jti, client_id, scope, auth_time) and
// the ID token is typed too, so neither passes for the other.
func TestAccessTokenProfile(t *testing.T) {
	u, m, _ := newUpstream(t)
	now := time.Now()
	tr, err := u.Mint(t.Context(), &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now.Add(-time.Minute)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if h := header(t, tr.AccessToken); h["typ"] != "at+jwt" {
		t.Errorf("access token typ = %v, want at+jwt (RFC 9068 §2.1)", h["typ"])
	}
	if h := header(t, tr.IDToken); h["typ"] != "JWT" {
		t.Errorf("ID token typ = %v, want JWT", h["typ"])
	}
	at := claims(t, m, tr.AccessToken)
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "auth_time"} {
		if at[k] == nil || at[k] == "" {
			t.Errorf("access token lacks %s: %v", k, at)
		}
	}
	if at["auth_time"] != float64(now.Add(-time.Minute).Unix()) {
		t.Errorf("auth_time = %v", at["auth_time"])
	}
	// auth_time only where known.
	tr2, err := u.Mint(t.Context(), &ciba.AuthRequest{ID: "r2", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := claims(t, m, tr2.AccessToken)["auth_time"]; ok {
		t.Error("auth_time set though the authentication time is unknown")
	}
	// An ID token is never an active access token.
	if info, err := u.Introspect(t.Context(), tr.IDToken, "", now); err != nil || info != nil {
		t.Errorf("introspection of the ID token: %v %v, want inactive", info, err)
	}
}

// TestRevocationOnEveryStore: revoking an access token (by jti) and a
// refresh token (its family, with the family's access tokens), and the
// ownership check, on every store backend.
func TestRevocationOnEveryStore(t *testing.T) {
	for _, b := range stores {
		t.Run(b.name, func(t *testing.T) {
			u := upstreamOn(t, b.open(t))
			ctx, now := t.Context(), time.Now()
			mint := func() *ciba.TokenResponse { return mintAlice(t, u, now) }
			active := func(tok string) bool {
				info, err := u.Introspect(ctx, tok, "", now)
				if err != nil {
					t.Fatal(err)
				}
				return info != nil && info["active"] == true
			}
			tr := mint()
			if !active(tr.AccessToken) || !active(tr.RefreshToken) {
				t.Fatal("fresh tokens are not active")
			}
			for _, tok := range []string{tr.AccessToken, tr.RefreshToken} {
				if err := u.Revoke(ctx, "c2", tok, "", now); ciba.AsError(err).Code != ciba.CodeUnauthorizedClient {
					t.Fatalf("another client's revocation: %v", err)
				}
			}
			if err := u.Revoke(ctx, "c1", tr.AccessToken, local.HintAccessToken, now); err != nil {
				t.Fatal(err)
			}
			if active(tr.AccessToken) || !active(tr.RefreshToken) {
				t.Fatal("the revoked access token is active, or the refresh token is not")
			}
			if _, _, err := u.UserInfo(ctx, tr.AccessToken, now); ciba.AsError(err).Code != ciba.CodeInvalidToken {
				t.Fatalf("userinfo with a revoked access token: %v", err)
			}
			second, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now)
			if err != nil {
				t.Fatal(err)
			}
			// The rotated-away token still names the family.
			if err := u.Revoke(ctx, "c1", tr.RefreshToken, local.HintRefreshToken, now); err != nil {
				t.Fatal(err)
			}
			if active(second.RefreshToken) || active(second.AccessToken) {
				t.Fatal("the family's tokens are active after the revocation")
			}
			if _, err := u.Refresh(ctx, "c1", second.RefreshToken, "", "", now); err == nil {
				t.Fatal("the revoked family's refresh token refreshes")
			}
			// Unknown and repeated revocations are no error.
			for _, tok := range []string{"unknown", "a.b.c", second.RefreshToken, tr.AccessToken} {
				if err := u.Revoke(ctx, "c1", tok, "", now); err != nil {
					t.Fatalf("revoke %q: %v", tok, err)
				}
			}
			// Another family is untouched.
			if other := mint(); !active(other.AccessToken) || !active(other.RefreshToken) {
				t.Fatal("another grant's tokens were revoked")
			}
		})
	}
}

// TestConcurrentRefreshRevokesFamily: the same refresh token redeemed
// concurrently: exactly one use succeeds, and as the others are reuses the
// family is revoked, the winner's new tokens included (RFC 9700
// §4.14.2), on every store backend.
func TestConcurrentRefreshRevokesFamily(t *testing.T) {
	for _, b := range stores {
		t.Run(b.name, func(t *testing.T) {
			u := upstreamOn(t, b.open(t))
			ctx, now := t.Context(), time.Now()
			tr := mintAlice(t, u, now)
			const n = 8
			var wg sync.WaitGroup
			results := make([]*ciba.TokenResponse, n)
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					results[i], _ = u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now)
				}()
			}
			wg.Wait()
			var won *ciba.TokenResponse
			for _, r := range results {
				if r != nil {
					if won != nil {
						t.Fatal("two concurrent uses of one refresh token succeeded")
					}
					won = r
				}
			}
			if won == nil {
				t.Fatal("no use succeeded")
			}
			for _, tok := range []string{won.RefreshToken, won.AccessToken, tr.AccessToken} {
				if info, err := u.Introspect(ctx, tok, "", now); err != nil || info != nil {
					t.Fatalf("after the concurrent reuse a family token is active: %v %v", info, err)
				}
			}
		})
	}
}

// TestRevocationSurvivesRestart: on the embedded store a revocation is
// durable: after a restart the revoked access token and the revoked
// family are still inactive.
func TestRevocationSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	signer := newSigner(t) // the same key before and after the restart
	open := func() (*local.Upstream, func()) {
		s, err := embedded.Open(t.Context(), path)
		if err != nil {
			t.Fatal(err)
		}
		return aliceIssuer(t, signer, s), func() { _ = s.Close() }
	}
	u, closeStore := open()
	ctx, now := t.Context(), time.Now()
	mint := func() *ciba.TokenResponse { return mintAlice(t, u, now) }
	a, b := mint(), mint()
	if err := u.Revoke(ctx, "c1", a.AccessToken, "", now); err != nil {
		t.Fatal(err)
	}
	if err := u.Revoke(ctx, "c1", b.RefreshToken, "", now); err != nil {
		t.Fatal(err)
	}
	closeStore()
	u, closeStore = open()
	defer closeStore()
	for what, tok := range map[string]string{"revoked access token": a.AccessToken, "revoked family's refresh token": b.RefreshToken, "revoked family's access token": b.AccessToken} {
		if info, err := u.Introspect(ctx, tok, "", now); err != nil || info != nil {
			t.Errorf("after a restart the %s is active: %v %v", what, info, err)
		}
	}
	if info, _ := u.Introspect(ctx, a.RefreshToken, "", now); info == nil {
		t.Error("after a restart a refresh token that was not revoked is inactive")
	}
}
