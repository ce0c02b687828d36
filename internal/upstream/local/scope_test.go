package local_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestRefreshScopeIsBounded checks that a refresh request's scope is
// parsed like a request's: a granted scope repeated thousands of times is
// refused rather than copied into the new tokens, and a repeat within the
// bounds counts once.
func TestRefreshScopeIsBounded(t *testing.T) {
	t.Parallel()
	u, _, _ := newUpstream(t)
	ctx := context.Background()
	now := time.Now()
	tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid", "email"}, AuthTime: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = u.Refresh(ctx, "c1", tr.RefreshToken, strings.Repeat("openid ", 5000), "", now)
	if e := ciba.AsError(err); e.Code != ciba.CodeInvalidRequest || !strings.Contains(e.Description, "scope") {
		t.Fatalf("a 35 kB scope: %v, want invalid_request about the scope", err)
	}
	// The refused request left the refresh token usable.
	next, err := u.Refresh(ctx, "c1", tr.RefreshToken, "openid email openid email", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if next.Scope != "openid email" {
		t.Errorf("scope %q, want each value once", next.Scope)
	}
}
