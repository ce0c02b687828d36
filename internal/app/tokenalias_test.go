package app

import (
	"slices"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// TestTokenAliasAssertionAudience: the token endpoint's aliases are
// acceptable aud values of a client assertion at the token endpoint
// (clientauth), named by their URL under the issuer.
func TestTokenAliasAssertionAudience(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Issuer: "https://ciba.example.com"}
	if got := tokenAliasURLs(cfg); got != nil {
		t.Errorf("without aliases: %v", got)
	}
	cfg.HTTP.TokenAliases = []string{"/oauth/token"}
	r, err := newRegistry(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := r.AssertionPolicy.EndpointAliases["https://ciba.example.com/token"]
	if !slices.Equal(got, []string{"https://ciba.example.com/oauth/token"}) {
		t.Errorf("aliases of the token endpoint %v", got)
	}
}
