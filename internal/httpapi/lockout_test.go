package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// fromAddr sends every request as forwarded for addr by a trusted proxy.
type fromAddr struct{ addr string }

func (f fromAddr) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return http.DefaultTransport.RoundTrip(r)
}

// TestPasswordLockout: on the approval page, wrong passwords count per
// username and address (2 per hour here) and per username (3 per hour);
// past either the password is not checked, the right one neither, with a
// Retry-After; those 429s are not failures of the address; another
// address still approves until the username's own bucket is spent.
func TestPasswordLockout(t *testing.T) {
	l := &Limits{
		ApprovalFailures:          limit.New(limit.Rate{Requests: 5, Per: 10 * time.Minute}, 0),
		PasswordFailuresPerUser:   limit.New(limit.Rate{Requests: 3, Per: time.Hour}, 0),
		PasswordFailuresPerUserIP: limit.New(limit.Rate{Requests: 2, Per: time.Hour}, 0),
		TrustedProxies:            []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		ClientIPHeader:            "X-Forwarded-For",
	}
	svc, st, srv := limitServer(t, l, limit.Rate{})
	ctx := context.Background()
	link := func(user string) string {
		resp, err := svc.Authorize(ctx, bank, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: user}})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := st.GetRequest(ctx, resp.AuthReqID)
		return srv.URL + PathApprove + r.ApprovalID
	}
	type browser struct {
		c    *http.Client
		csrf string
	}
	open := func(addr, link string) browser {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar, Transport: fromAddr{addr}}
		resp, err := c.Get(link)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		m := csrfField.FindStringSubmatch(string(body))
		if resp.StatusCode != http.StatusOK || m == nil {
			t.Fatalf("GET %s from %s: %d", link, addr, resp.StatusCode)
		}
		return browser{c, m[1]}
	}
	try := func(b browser, link, password string) limAnswer {
		req, _ := http.NewRequest(http.MethodPost, link, strings.NewReader(url.Values{"csrf": {b.csrf}, "action": {"approve"}, "password": {password}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return limAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), raw: string(raw)}
	}

	alice := link("alice")
	a := open("198.51.100.1", alice)
	for i := range 2 {
		if got := try(a, alice, "guess"); got.status != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d, want 401", i+1, got.status)
		}
	}
	for range 5 { // more than the address's 5 failures: these are not failures
		got := try(a, alice, "alice-password")
		if got.status != http.StatusTooManyRequests || got.retryAfter != "1800" || !strings.Contains(got.raw, "wrong passwords") {
			t.Fatalf("the right password past the address's share: %d Retry-After %q, want 429, 1800 (a try per 30m) and the lockout page", got.status, got.retryAfter)
		}
	}
	open("198.51.100.1", alice) // the address is not blocked: 2 failures of 5

	b := open("198.51.100.2", alice)
	if got := try(b, alice, "guess"); got.status != http.StatusUnauthorized {
		t.Fatalf("another address's wrong password: %d, want 401", got.status)
	}
	// alice's 3 tries are spent: no address gets a check.
	c := open("198.51.100.3", alice)
	if got := try(c, alice, "alice-password"); got.status != http.StatusTooManyRequests || got.retryAfter != "1200" {
		t.Fatalf("the right password once the username's tries are spent: %d Retry-After %q, want 429, 1200 (a try per 20m)", got.status, got.retryAfter)
	}
	// Another username is not held back.
	bob := link("bob")
	if got := try(open("198.51.100.1", bob), bob, "bob-password"); got.status != http.StatusOK {
		t.Fatalf("bob from the first address: %d, want 200", got.status)
	}
}
