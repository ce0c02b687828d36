package local_test

import (
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

// hintValues are the token_type_hint values a caller may send: none, the
// two RFC 7009 §2.1 defines, and ones this issuer does not know.
var hintValues = []string{"", local.HintAccessToken, local.HintRefreshToken, "id_token", "Access_Token"}

// TestIntrospectEveryHint: introspection finds an access and a refresh
// token whatever token_type_hint says: the hinted kind is looked up first,
// and a token not found as it is searched for as the other kind (RFC 7662
// §2.1: the server MUST extend its search); a wrong hint or an unknown one
// is no error. What is found is the token's own kind, not the hint's.
func TestIntrospectEveryHint(t *testing.T) {
	u := upstreamOn(t, memory.New())
	ctx, now := t.Context(), time.Now()
	tr := mintAlice(t, u, now)
	for _, hint := range hintValues {
		at, err := u.Introspect(ctx, tr.AccessToken, hint, now)
		if err != nil || at == nil || at["active"] != true || at["token_type"] != "Bearer" || at["jti"] == nil {
			t.Errorf("the access token with hint %q: %v, %v; want active, its claims and token_type Bearer", hint, at, err)
		}
		rt, err := u.Introspect(ctx, tr.RefreshToken, hint, now)
		if err != nil || rt == nil || rt["active"] != true || rt["client_id"] != "c1" || rt["jti"] != nil || rt["token_type"] != nil {
			t.Errorf("the refresh token with hint %q: %v, %v; want active, client_id c1, no access token claims", hint, rt, err)
		}
		for _, tok := range []string{"unknown", "a.b.c", tr.IDToken} {
			if info, err := u.Introspect(ctx, tok, hint, now); info != nil || err != nil {
				t.Errorf("%.12s… with hint %q: %v, %v; want inactive, no error", tok, hint, info, err)
			}
		}
	}
}

// TestRevokeEveryHint: revocation revokes an access token and a refresh
// token whatever token_type_hint says, a wrong or unknown hint included
// (RFC 7009 §2.1): the hint only orders the search. Both kinds can be
// revoked, so no hint and no token is unsupported_token_type (§2.2.1); a
// token of neither kind (unknown, an ID token) is 200 with nothing
// revoked (§2.2), and another client's token is still refused.
func TestRevokeEveryHint(t *testing.T) {
	for _, hint := range hintValues {
		t.Run("hint="+hint, func(t *testing.T) {
			u := upstreamOn(t, memory.New())
			ctx, now := t.Context(), time.Now()
			active := func(tok string) bool {
				info, err := u.Introspect(ctx, tok, "", now)
				if err != nil {
					t.Fatal(err)
				}
				return info != nil
			}
			a, b := mintAlice(t, u, now), mintAlice(t, u, now)
			for _, tok := range []string{"unknown", "a.b.c", a.IDToken} {
				if err := u.Revoke(ctx, "c1", tok, hint, now); err != nil {
					t.Errorf("revoke %.12s…: %v, want no error", tok, err)
				}
			}
			for _, tok := range []string{a.AccessToken, b.RefreshToken} {
				if err := u.Revoke(ctx, "c2", tok, hint, now); ciba.AsError(err).Code != ciba.CodeUnauthorizedClient {
					t.Errorf("another client's revocation: %v, want unauthorized_client", err)
				}
			}
			if !active(a.AccessToken) || !active(b.RefreshToken) {
				t.Fatal("a token is inactive before its revocation")
			}
			if err := u.Revoke(ctx, "c1", a.AccessToken, hint, now); err != nil {
				t.Fatalf("revoke the access token: %v", err)
			}
			if active(a.AccessToken) || !active(a.RefreshToken) {
				t.Error("after revoking an access token it is active, or its refresh token is not")
			}
			if err := u.Revoke(ctx, "c1", b.RefreshToken, hint, now); err != nil {
				t.Fatalf("revoke the refresh token: %v", err)
			}
			if active(b.RefreshToken) || active(b.AccessToken) {
				t.Error("after revoking a refresh token its family is active")
			}
		})
	}
}
