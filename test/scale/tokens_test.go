package scale

import (
	"net/http"
	"net/url"
	"sync"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// tokensTemplate is configTemplate with a resource server that may
// introspect tokens (RFC 7662).
const tokensTemplate = configTemplate + `  - client_id: rs
    client_secret: rs-secret
    introspection: true
`

// resourceServer is the introspecting client of tokensTemplate.
var resourceServer = testutil.Client{ID: "rs", Secret: "rs-secret"}

// tokensOf runs a poll flow of demo-poll across the instances (created on
// 0, answered on 1, redeemed on 2) and returns the token response.
func (c *cluster) tokensOf(t *testing.T) *testutil.Response {
	t.Helper()
	req := c.authorize(0, testutil.DemoPoll, "Tokens")
	c.answerOn(1, c.message(req), "approved")
	r := c.token(ctx(t), 2, req)
	checkTokens(t, "tokens", r)
	if r.Str("refresh_token") == "" {
		t.Fatalf("no refresh token: %s", r)
	}
	return r
}

// post POSTs form to path on instance i as client cl.
func (c *cluster) post(t *testing.T, i int, path string, cl testutil.Client, form url.Values) *testutil.Response {
	t.Helper()
	r, err := testutil.PostForm(ctx(t), c.url(i, path), cl, form)
	if err != nil {
		t.Fatalf("POST %s on instance %d: %v", path, i+1, err)
	}
	return r
}

// active introspects token on instance i.
func (c *cluster) active(t *testing.T, i int, token string) bool {
	t.Helper()
	r := c.post(t, i, "/introspect", resourceServer, url.Values{"token": {token}})
	if r.Status != http.StatusOK {
		t.Fatalf("introspect on instance %d: %s", i+1, r)
	}
	return r.JSON["active"] == true
}

func (c *cluster) refresh(t *testing.T, i int, rt string) *testutil.Response {
	t.Helper()
	return c.post(t, i, "/token", testutil.DemoPoll, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
}

// TestTokenServicesAcrossInstances: introspection, revocation and the
// revocation of a refresh token family are one state across instances
// sharing Redis: a token revoked on one instance is inactive on the
// others, at introspection and at userinfo.
func TestTokenServicesAcrossInstances(t *testing.T) {
	t.Parallel()
	c := newClusterWith(t, tokensTemplate)
	first := c.tokensOf(t)
	at, rt := first.Str("access_token"), first.Str("refresh_token")
	for i := range instances {
		if !c.active(t, i, at) || !c.active(t, i, rt) {
			t.Fatalf("fresh tokens are not active on instance %d", i+1)
		}
	}

	// An access token revoked on instance 1 is inactive everywhere.
	if r := c.post(t, 0, "/revoke", testutil.DemoPoll, url.Values{"token": {at}, "token_type_hint": {"access_token"}}); r.Status != http.StatusOK {
		t.Fatalf("revoke the access token: %s", r)
	}
	for i := range instances {
		if c.active(t, i, at) {
			t.Fatalf("the revoked access token is active on instance %d", i+1)
		}
	}
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, c.url(2, "/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+at)
	if r, err := testutil.Do(req); err != nil || r.Status != http.StatusUnauthorized {
		t.Fatalf("userinfo with the revoked access token on instance 3: %v %v", r, err)
	}

	// The refresh token is rotated on instance 2, and its successor
	// revoked on instance 3: the whole family is, everywhere.
	second := c.refresh(t, 1, rt)
	checkTokens(t, "refresh", second)
	if r := c.post(t, 2, "/revoke", testutil.DemoPoll, url.Values{"token": {second.Str("refresh_token")}}); r.Status != http.StatusOK {
		t.Fatalf("revoke the refresh token: %s", r)
	}
	for i := range instances {
		for what, tok := range map[string]string{"refresh token": second.Str("refresh_token"), "access token": second.Str("access_token")} {
			if c.active(t, i, tok) {
				t.Fatalf("the revoked family's %s is active on instance %d", what, i+1)
			}
		}
	}
	checkError(t, "refresh with the revoked family's token", c.refresh(t, 0, second.Str("refresh_token")), 400, "invalid_grant")

	// A rotated refresh token that comes back on another instance revokes
	// its family there too.
	third := c.tokensOf(t)
	next := c.refresh(t, 0, third.Str("refresh_token"))
	checkTokens(t, "refresh", next)
	checkError(t, "the rotated refresh token again", c.refresh(t, 1, third.Str("refresh_token")), 400, "invalid_grant")
	for i := range instances {
		if c.active(t, i, next.Str("refresh_token")) || c.active(t, i, next.Str("access_token")) {
			t.Fatalf("after the reuse the family's tokens are active on instance %d", i+1)
		}
	}
}

// TestConcurrentRefreshAcrossInstances: one refresh token redeemed by a
// burst of concurrent requests spread over the instances: exactly one
// succeeds, and the others, being reuses, revoke the family, the winner's
// new tokens included (RFC 9700 §4.14.2). Bounded: burst requests.
func TestConcurrentRefreshAcrossInstances(t *testing.T) {
	t.Parallel()
	const burst = 12
	c := newClusterWith(t, tokensTemplate)
	rt := c.tokensOf(t).Str("refresh_token")
	results := make([]*testutil.Response, burst)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := testutil.PostForm(ctx(t), c.url(i%instances, "/token"), testutil.DemoPoll, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
			if err != nil {
				r = &testutil.Response{Body: []byte(err.Error())}
			}
			results[i] = r
		}()
	}
	close(start)
	wg.Wait()
	var won *testutil.Response
	for _, r := range results {
		switch {
		case r.Status == http.StatusOK:
			if won != nil {
				t.Fatalf("two concurrent refreshes succeeded: %s and %s", won, r)
			}
			won = r
		case r.Status != http.StatusBadRequest || r.Str("error") != "invalid_grant":
			t.Errorf("a losing refresh: %s, want invalid_grant", r)
		}
	}
	if won == nil {
		t.Fatal("no concurrent refresh succeeded")
	}
	for i := range instances {
		if c.active(t, i, won.Str("refresh_token")) || c.active(t, i, won.Str("access_token")) {
			t.Fatalf("the family is not revoked on instance %d after the concurrent reuse", i+1)
		}
	}
}
