package local_test

import (
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// BenchmarkIntrospectAccessToken: one introspection of an active access
// token issued with a refresh token (signature check, then the revocation
// and family reads) on the memory store, ES256.
func BenchmarkIntrospectAccessToken(b *testing.B) {
	u := upstreamOn(b, memory.New())
	now := time.Now()
	tr, err := u.Mint(b.Context(), &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now}, now)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if info, err := u.Introspect(b.Context(), tr.AccessToken, "", now); err != nil || info == nil {
			b.Fatal("inactive", err)
		}
	}
}
