package app

import (
	"slices"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/config"
)

// TestLocalScopes checks the scopes the local issuer grants a client
// without its own list: the standard ones and upstream.local.scopes, each
// once; none is imposed on the other upstreams.
func TestLocalScopes(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Upstream: config.Upstream{Type: config.UpstreamLocal, Local: config.LocalUpstream{Scopes: []string{"payments", "email"}}}}
	want := []string{"openid", "profile", "email", "address", "phone", "offline_access", "payments"}
	if got := localScopes(cfg); !slices.Equal(got, want) {
		t.Errorf("localScopes = %q, want %q", got, want)
	}
	// The standard list is not changed by a call.
	if got := localScopes(&config.Config{Upstream: config.Upstream{Type: config.UpstreamLocal}}); !slices.Equal(got, standardScopes) || len(standardScopes) != 6 {
		t.Errorf("localScopes without extra scopes = %q", got)
	}
	for _, typ := range []string{config.UpstreamOIDC, config.UpstreamCIBA} {
		if got := localScopes(&config.Config{Upstream: config.Upstream{Type: typ, Local: config.LocalUpstream{Scopes: []string{"x"}}}}); got != nil {
			t.Errorf("upstream %s: localScopes = %q, want nil (the provider decides)", typ, got)
		}
	}
}
