package e2e

import (
	"net/url"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestPublicDeviceClientRefreshes: a public device client (token endpoint
// auth method none) is given a refresh token with its tokens, and it can
// use it with its client_id alone, as it polls: rotated, and a reused one
// revokes the family (RFC 9700 §4.14.2, what a public client's refresh
// tokens need). Before, the refresh_token grant knew only confidential
// clients, so the token it was given could never be used.
func TestPublicDeviceClientRefreshes(t *testing.T) {
	t.Parallel()
	srv := startDevice(t)
	tv := testutil.Client{ID: "demo-tv"}
	dc, uc := deviceStart(t, srv, tv, "openid")
	p := newPage(t, srv)
	_, _, csrf := p.enter(uc)
	if s, b := p.decide(uc, csrf, "approve", "alice", "alice-password"); s != 200 {
		t.Fatalf("approve: %d\n%s", s, b)
	}
	first := checkTokens(t, "device tokens", pollUntil(t, srv, tv, dc)).Str("refresh_token")
	if first == "" {
		t.Fatal("the public device client got no refresh token")
	}
	refresh := func(rt string) *testutil.Response {
		return post(t, srv, "/token", testutil.Client{}, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"demo-tv"}})
	}
	second := checkTokens(t, "refresh by client_id alone", refresh(first))
	if jwtClaim(t, second.Str("id_token"), "aud") != "demo-tv" || second.Str("refresh_token") == "" || second.Str("refresh_token") == first {
		t.Fatalf("refreshed tokens: %s", second)
	}
	checkError(t, "another client's refresh token", post(t, srv, "/token", demoDevice, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second.Str("refresh_token")}}), 400, "invalid_grant")
	checkError(t, "the rotated refresh token again", refresh(first), 400, "invalid_grant")
	checkError(t, "the current refresh token after the reuse", refresh(second.Str("refresh_token")), 400, "invalid_grant")
}
