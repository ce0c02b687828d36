package e2e

import (
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// userinfo GETs /userinfo with access token at as a bearer token.
func (e *env) userinfo(at string) *testutil.Response {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(ctx(e.t), http.MethodGet, e.url("/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+at)
	r, err := testutil.Do(req)
	if err != nil {
		e.t.Fatalf("GET /userinfo: %v", err)
	}
	return r
}

// TestConcurrentRefreshBurst: with the shipped quickstart configuration
// unchanged, one refresh token redeemed by a burst of concurrent requests:
// exactly one succeeds, every other is invalid_grant (not a limit's
// refusal), and the family is revoked, the winner's new tokens included
// (RFC 9700 §4.14.2). Then revocation (RFC 7009) and userinfo: a revoked
// access token is refused. Bounded: burst requests.
func TestConcurrentRefreshBurst(t *testing.T) {
	t.Parallel()
	const burst = 16
	e := start(t)
	req := e.mustAuthorize(testutil.DemoPoll, "Burst")
	e.answer(req, "approved")
	tokens := checkTokens(t, "tokens", e.token(testutil.DemoPoll, req.AuthReqID))
	rt := tokens.Str("refresh_token")
	if r := e.userinfo(tokens.Str("access_token")); r.Status != http.StatusOK || r.Str("email") != "alice@example.com" {
		t.Fatalf("userinfo: %s", r)
	}
	refresh := func(rt string) *testutil.Response {
		r, err := testutil.PostForm(ctx(t), e.url("/token"), testutil.DemoPoll, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
		if err != nil {
			return &testutil.Response{Body: []byte(err.Error())}
		}
		return r
	}
	results := make([]*testutil.Response, burst)
	var wg sync.WaitGroup
	go1 := make(chan struct{})
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-go1
			results[i] = refresh(rt)
		}()
	}
	close(go1)
	wg.Wait()
	var won *testutil.Response
	for _, r := range results {
		switch {
		case r.Status == http.StatusOK:
			if won != nil {
				t.Fatalf("two concurrent refreshes succeeded:\n%s\n%s", won, r)
			}
			won = r
		case r.Status != http.StatusBadRequest || r.Str("error") != "invalid_grant":
			t.Errorf("a losing refresh: %s, want invalid_grant", r)
		}
	}
	if won == nil {
		t.Fatal("no concurrent refresh succeeded")
	}
	checkError(t, "the winner's refresh token after the reuse", refresh(won.Str("refresh_token")), 400, "invalid_grant")
	if r := e.userinfo(won.Str("access_token")); r.Status != http.StatusUnauthorized {
		t.Fatalf("userinfo with the revoked family's access token: %s, want 401", r)
	}

	// Revocation of an access token by its client.
	req = e.mustAuthorize(testutil.DemoPoll, "Revoke")
	e.answer(req, "approved")
	at := checkTokens(t, "tokens", e.token(testutil.DemoPoll, req.AuthReqID)).Str("access_token")
	r, err := testutil.PostForm(ctx(t), e.url("/revoke"), testutil.DemoPing, url.Values{"token": {at}})
	if err != nil || r.Status != http.StatusBadRequest {
		t.Fatalf("another client's revocation: %v %v, want 400", r, err)
	}
	if r, err := testutil.PostForm(ctx(t), e.url("/revoke"), testutil.DemoPoll, url.Values{"token": {at}}); err != nil || r.Status != http.StatusOK {
		t.Fatalf("revoke: %v %v", r, err)
	}
	if r := e.userinfo(at); r.Status != http.StatusUnauthorized || r.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("userinfo with a revoked access token: %s, want 401 with a challenge", r)
	}
}

// TestPublicDeviceClientRevokes: a public device client revokes its
// refresh token by its client_id alone, as it refreshes (RFC 7009 §2.1),
// and the token no longer refreshes; discovery says "none" is accepted at
// the revocation endpoint.
func TestPublicDeviceClientRevokes(t *testing.T) {
	t.Parallel()
	srv := startDevice(t)
	tv := testutil.Client{ID: "demo-tv"}
	dc, uc := deviceStart(t, srv, tv, "openid")
	p := newPage(t, srv)
	_, _, csrf := p.enter(uc)
	if s, b := p.decide(uc, csrf, "approve", "alice", "alice-password"); s != 200 {
		t.Fatalf("approve: %d\n%s", s, b)
	}
	rt := checkTokens(t, "device tokens", pollUntil(t, srv, tv, dc)).Str("refresh_token")
	if r := post(t, srv, "/revoke", testutil.Client{}, url.Values{"token": {rt}, "client_id": {"demo-tv"}}); r.Status != http.StatusOK {
		t.Fatalf("revoke by client_id: %s", r)
	}
	checkError(t, "the revoked refresh token", post(t, srv, "/token", testutil.Client{}, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"demo-tv"}}), 400, "invalid_grant")
	r, err := testutil.Get(ctx(t), srv.URL+"/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := r.JSON["revocation_endpoint_auth_methods_supported"].([]any); len(m) == 0 || m[len(m)-1] != "none" {
		t.Errorf("revocation_endpoint_auth_methods_supported = %v, want none among them", r.JSON["revocation_endpoint_auth_methods_supported"])
	}
}
