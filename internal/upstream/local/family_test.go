package local_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// wantInvalidGrant fails t unless err is invalid_grant with HTTP 400.
func wantInvalidGrant(t *testing.T, what string, err error) {
	t.Helper()
	if e := ciba.AsError(err); err == nil || e.Code != ciba.CodeInvalidGrant || e.HTTPStatus() != 400 {
		t.Fatalf("%s: err = %v, want invalid_grant", what, err)
	}
}

// TestRefreshReuseRevokesTheFamily: RFC 9700 §4.14.2, "If a refresh token
// is compromised and subsequently used by both the attacker and the
// legitimate client, one of them will present an invalidated refresh
// token, which will inform the authorization server of the breach. The
// authorization server cannot determine which party submitted the invalid
// refresh token, but it will revoke the active refresh token."
func TestRefreshReuseRevokesTheFamily(t *testing.T) {
	for _, b := range stores {
		t.Run(b.name, func(t *testing.T) {
			u := upstreamOn(t, b.open(t))
			ctx := t.Context()
			now := time.Now()
			mint := func() *ciba.TokenResponse { return mintAlice(t, u, now) }
			first := mint()
			other := mint() // another grant of the same client and user: another family
			second, err := u.Refresh(ctx, "c1", first.RefreshToken, "", "", now)
			if err != nil {
				t.Fatal(err)
			}
			third, err := u.Refresh(ctx, "c1", second.RefreshToken, "", "", now)
			if err != nil {
				t.Fatal(err)
			}

			// The thief (or the client) presents the first, rotated token.
			_, err = u.Refresh(ctx, "c1", first.RefreshToken, "", "", now)
			wantInvalidGrant(t, "the reused refresh token", err)
			if !strings.Contains(ciba.AsError(err).Description, "revoked") {
				t.Errorf("the reuse's description %q does not say the family is revoked", ciba.AsError(err).Description)
			}
			// The current token of the family no longer works.
			_, err = u.Refresh(ctx, "c1", third.RefreshToken, "", "", now)
			wantInvalidGrant(t, "the family's current refresh token after the reuse", err)
			// Nor does any other of the family.
			_, err = u.Refresh(ctx, "c1", second.RefreshToken, "", "", now)
			wantInvalidGrant(t, "an older refresh token of the family", err)
			// Another family is not touched.
			if _, err := u.Refresh(ctx, "c1", other.RefreshToken, "", "", now); err != nil {
				t.Fatalf("a refresh token of another grant after the revocation: %v", err)
			}
		})
	}
}

// TestRefreshRefusalsRevokeNothing: a refusal that is not a reuse
// (another client's token, a wider scope, an unknown token) neither marks
// the token used nor revokes its family.
func TestRefreshRefusalsRevokeNothing(t *testing.T) {
	u := upstreamOn(t, memory.New())
	ctx := t.Context()
	now := time.Now()
	tr := mintAlice(t, u, now)
	_, err := u.Refresh(ctx, "c2", tr.RefreshToken, "", "", now)
	wantInvalidGrant(t, "another client's refresh token", err)
	if _, err := u.Refresh(ctx, "c1", tr.RefreshToken, "openid email", "", now); ciba.AsError(err).Code != ciba.CodeInvalidScope {
		t.Fatalf("wider scope: err = %v", err)
	}
	if _, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now); err != nil {
		t.Fatalf("the refresh token after refusals: %v", err)
	}
}

// TestRefreshConcurrentReuse: of concurrent uses of one refresh token one
// gets tokens and the others are reuses; the family is then revoked, so
// the refresh token the winner got does not work either (RFC 9700
// §4.14.2 cannot tell a racing client from a thief). On every backend.
func TestRefreshConcurrentReuse(t *testing.T) {
	for _, b := range stores {
		t.Run(b.name, func(t *testing.T) {
			u := upstreamOn(t, b.open(t))
			ctx := t.Context()
			now := time.Now()
			tr := mintAlice(t, u, now)
			const n = 8
			var wg sync.WaitGroup
			var mu sync.Mutex
			var won []*ciba.TokenResponse
			for range n {
				wg.Go(func() {
					next, err := u.Refresh(context.Background(), "c1", tr.RefreshToken, "", "", now)
					mu.Lock()
					defer mu.Unlock()
					var e *ciba.Error
					switch {
					case err == nil:
						won = append(won, next)
					case !errors.As(err, &e) || e.Code != ciba.CodeInvalidGrant:
						t.Errorf("a losing refresh: %v, want invalid_grant", err)
					}
				})
			}
			wg.Wait()
			if len(won) != 1 {
				t.Fatalf("%d of %d concurrent refreshes got tokens, want 1", len(won), n)
			}
			_, err := u.Refresh(ctx, "c1", won[0].RefreshToken, "", "", now)
			wantInvalidGrant(t, "the winner's refresh token after the reuses", err)
		})
	}
}
