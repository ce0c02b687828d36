package local_test

import (
	"context"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

// RFC 9449 §5: a refresh with a DPoP proof gets an access token bound to
// its key (cnf.jkt, token_type DPoP); a DPoP-bound grant is never turned
// into bearer tokens; a public client's refresh tokens are bound to its key.
func TestRefreshDPoPBound(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	const (
		key1 = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
		key2 = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	)
	code := func(err error) ciba.ErrorCode { return ciba.AsError(err).Code }
	mint := func(t *testing.T) (*local.Upstream, *keys.Manager, *ciba.TokenResponse) {
		t.Helper()
		u, m, _ := newUpstream(t)
		tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid", "email"}, AuthTime: now}, now)
		if err != nil {
			t.Fatal(err)
		}
		return u, m, tr
	}
	jkt := func(t *testing.T, m *keys.Manager, at string) string {
		t.Helper()
		c, _ := claims(t, m, at)["cnf"].(map[string]any)
		s, _ := c["jkt"].(string)
		return s
	}

	t.Run("a refresh with a proof gets a DPoP access token bound to its key", func(t *testing.T) {
		u, m, tr := mint(t)
		next, err := u.RefreshBound(ctx, "c1", tr.RefreshToken, "", ciba.Binding{JKT: key1}, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := jkt(t, m, next.AccessToken); got != key1 || next.TokenType != "DPoP" {
			t.Fatalf("cnf.jkt = %q, token_type %q; want %q, DPoP", got, next.TokenType, key1)
		}
		if _, ok := claims(t, m, next.IDToken)["cnf"]; ok {
			t.Error("the ID token carries cnf; only the access token is bound")
		}
		t.Run("and its refresh token is not refreshed into bearer tokens", func(t *testing.T) {
			if _, err := u.RefreshBound(ctx, "c1", next.RefreshToken, "", ciba.Binding{}, now); code(err) != ciba.CodeInvalidGrant {
				t.Fatalf("err = %v, want invalid_grant", err)
			}
		})
		t.Run("a confidential client may refresh with another key", func(t *testing.T) {
			again, err := u.RefreshBound(ctx, "c1", next.RefreshToken, "", ciba.Binding{JKT: key2}, now)
			if err != nil {
				t.Fatalf("the refused request consumed the refresh token, or rotation refused: %v", err)
			}
			if got := jkt(t, m, again.AccessToken); got != key2 {
				t.Fatalf("cnf.jkt = %q, want %q", got, key2)
			}
		})
	})
	t.Run("a public client's refresh token is bound to its key", func(t *testing.T) {
		u, m, tr := mint(t)
		next, err := u.RefreshBound(ctx, "c1", tr.RefreshToken, "", ciba.Binding{JKT: key1, PublicClient: true}, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := u.RefreshBound(ctx, "c1", next.RefreshToken, "", ciba.Binding{JKT: key2, PublicClient: true}, now); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("another key: err = %v, want invalid_grant", err)
		}
		if _, err := u.RefreshBound(ctx, "c1", next.RefreshToken, "", ciba.Binding{PublicClient: true}, now); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("no proof: err = %v, want invalid_grant", err)
		}
		again, err := u.RefreshBound(ctx, "c1", next.RefreshToken, "", ciba.Binding{JKT: key1, PublicClient: true}, now)
		if err != nil {
			t.Fatalf("the same key after refusals: %v", err)
		}
		if got := jkt(t, m, again.AccessToken); got != key1 {
			t.Fatalf("cnf.jkt = %q, want %q", got, key1)
		}
	})
	t.Run("without a proof the tokens stay bearer tokens", func(t *testing.T) {
		u, m, tr := mint(t)
		next, err := u.RefreshBound(ctx, "c1", tr.RefreshToken, "", ciba.Binding{PublicClient: true}, now)
		if err != nil {
			t.Fatal(err)
		}
		if next.TokenType != "Bearer" || jkt(t, m, next.AccessToken) != "" {
			t.Fatalf("token_type %q", next.TokenType)
		}
	})
}

// A request bound to a DPoP key at bc-authorize gets a DPoP access token
// bound to it (RFC 9449 §6.1, §10).
func TestMintDPoPBound(t *testing.T) {
	const key1 = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
	ctx, now := context.Background(), time.Now()
	u, m, _ := newUpstream(t)
	tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now, DPoPJKT: key1}, now)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := claims(t, m, tr.AccessToken)["cnf"].(map[string]any)
	if c["jkt"] != key1 || tr.TokenType != "DPoP" {
		t.Fatalf("cnf %v, token_type %q; want jkt %q, DPoP", c, tr.TokenType, key1)
	}
	// Its refresh token is not refreshed into bearer tokens.
	if _, err := u.RefreshBound(ctx, "c1", tr.RefreshToken, "", ciba.Binding{}, now); ciba.AsError(err).Code != ciba.CodeInvalidGrant {
		t.Fatalf("refresh without a proof: err = %v, want invalid_grant", err)
	}
}

// TestDPoPRefreshOnEveryStore: the DPoP rules of refresh (RFC 9449 §5)
// live on the Store's records, so they hold on every backend, Redis
// included: a public client's refresh token minted for a DPoP-bound device
// request is bound to the key from the first, a refresh with another key
// or no proof is refused and leaves it usable, and a DPoP-bound grant is
// never refreshed into bearer tokens.
func TestDPoPRefreshOnEveryStore(t *testing.T) {
	const (
		key1 = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
		key2 = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
	)
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			ctx, now := t.Context(), time.Now()
			u := upstreamOn(t, s.open(t))
			pub := ciba.Binding{JKT: key1, PublicClient: true}
			tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "d", Kind: ciba.KindDevice, ClientID: "cli", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now, DPoPJKT: key1, PublicClient: true}, now)
			if err != nil {
				t.Fatal(err)
			}
			if tr.TokenType != "DPoP" {
				t.Fatalf("token_type %q, want DPoP", tr.TokenType)
			}
			wantInvalidGrant(t, "the first refresh token with another key", func() error {
				_, err := u.RefreshBound(ctx, "cli", tr.RefreshToken, "", ciba.Binding{JKT: key2, PublicClient: true}, now)
				return err
			}())
			wantInvalidGrant(t, "the first refresh token without a proof", func() error {
				_, err := u.RefreshBound(ctx, "cli", tr.RefreshToken, "", ciba.Binding{PublicClient: true}, now)
				return err
			}())
			next, err := u.RefreshBound(ctx, "cli", tr.RefreshToken, "", pub, now)
			if err != nil {
				t.Fatalf("the key after refusals: %v", err)
			}
			if next.TokenType != "DPoP" {
				t.Fatalf("refreshed token_type %q, want DPoP", next.TokenType)
			}
			wantInvalidGrant(t, "the rotated refresh token with another key", func() error {
				_, err := u.RefreshBound(ctx, "cli", next.RefreshToken, "", ciba.Binding{JKT: key2, PublicClient: true}, now)
				return err
			}())
			if _, err := u.RefreshBound(ctx, "cli", next.RefreshToken, "", pub, now); err != nil {
				t.Fatalf("the rotated refresh token with the key: %v", err)
			}
			// A confidential client's DPoP-bound grant: no bearer tokens.
			c, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now, DPoPJKT: key1}, now)
			if err != nil {
				t.Fatal(err)
			}
			wantInvalidGrant(t, "a DPoP-bound grant refreshed without a proof", func() error {
				_, err := u.RefreshBound(ctx, "c1", c.RefreshToken, "", ciba.Binding{}, now)
				return err
			}())
		})
	}
}
