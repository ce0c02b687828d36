package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// limAuth authenticates the HTTP Basic user as the client of that id.
type limAuth struct{}

func (limAuth) Authenticate(_ context.Context, r *http.Request, _ url.Values, _ string) (*ciba.Client, error) {
	id, _, ok := r.BasicAuth()
	if !ok {
		return nil, ciba.Errorf(ciba.CodeInvalidClient, "no client")
	}
	return &ciba.Client{ID: id, Name: id, Mode: ciba.ModePoll}, nil
}
func (limAuth) RequestObject(context.Context, *ciba.Client, string) (map[string]any, error) {
	return nil, ciba.Errorf(ciba.CodeInvalidRequest, "no request objects here")
}
func (limAuth) RequiresSignedRequest(*ciba.Client) bool { return false }

var limNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// limitServer runs the whole handler with limits l and the per-user limit
// userRate (off when zero), at a fixed clock.
func limitServer(t *testing.T, l *Limits, userRate limit.Rate) (*ciba.Service, ciba.Store, *httptest.Server) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	st := memory.New()
	now := func() time.Time { return limNow }
	deps := ciba.Deps{
		Store: st, Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
		Clients:     func(id string) (*ciba.Client, bool) { return &ciba.Client{ID: id, Mode: ciba.ModePoll}, true },
		CallbackKey: key, Now: now,
	}
	if lim := limit.New(userRate, 0); lim != nil {
		deps.UserLimit = lim.Allow
	}
	svc, err := ciba.NewService(ciba.Config{DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20}, deps)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Issuer: "https://ciba.test", Service: svc, Clients: limAuth{}, Limits: l, Now: now, Logger: discard(),
		Approval:  &Approval{Service: svc, Passwords: fakeUpstream{}, Key: key, Logger: discard()},
		Discovery: func(context.Context) (map[string]any, error) { return map[string]any{}, nil },
		JWKS:      func() any { return map[string]any{} },
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return svc, st, srv
}

type limAnswer struct {
	status     int
	retryAfter string
	ctype      string
	body       map[string]any
	raw        string
}

func limPost(t *testing.T, srv *httptest.Server, path, client string, form url.Values, header http.Header) limAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	if client != "" {
		req.SetBasicAuth(client, "secret")
	}
	return limDo(t, req)
}

func limDo(t *testing.T, req *http.Request) limAnswer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := limAnswer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), ctype: resp.Header.Get("Content-Type"), raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

var aliceForm = url.Values{"scope": {"openid"}, "login_hint": {"alice"}}

func TestBCAuthorizePerClientLimit(t *testing.T) {
	l := &Limits{BCAuthorize: limit.New(limit.Rate{Requests: 2, Per: time.Minute}, 0)}
	_, _, srv := limitServer(t, l, limit.Rate{})
	for i := range 2 {
		if a := limPost(t, srv, PathBCAuthz, "bank", aliceForm, nil); a.status != http.StatusOK {
			t.Fatalf("request %d within the limit: %d %s", i+1, a.status, a.raw)
		}
	}
	a := limPost(t, srv, PathBCAuthz, "bank", aliceForm, nil)
	if a.status != http.StatusTooManyRequests || a.retryAfter != "30" || a.ctype != "application/json" {
		t.Fatalf("over the limit: status %d, Retry-After %q, type %q; want 429, 30, JSON", a.status, a.retryAfter, a.ctype)
	}
	if a.body["error"] != "slow_down" || !strings.Contains(a.body["error_description"].(string), "bank") {
		t.Fatalf("over the limit the body is %s, want an RFC 6749 error slow_down naming the client", a.raw)
	}
	if a := limPost(t, srv, PathBCAuthz, "shop", aliceForm, nil); a.status != http.StatusOK {
		t.Fatalf("another client is held by bank's limit: %d %s", a.status, a.raw)
	}
}

func TestTokenPerClientLimitIsSlowDown(t *testing.T) {
	l := &Limits{Token: limit.New(limit.Rate{Requests: 1, Per: 10 * time.Second}, 0)}
	_, _, srv := limitServer(t, l, limit.Rate{})
	id := limPost(t, srv, PathBCAuthz, "bank", aliceForm, nil).body["auth_req_id"].(string)
	poll := url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {id}}
	if a := limPost(t, srv, PathToken, "bank", poll, nil); a.body["error"] != "authorization_pending" {
		t.Fatalf("first poll: %s", a.raw)
	}
	a := limPost(t, srv, PathToken, "bank", url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {"other"}}, nil)
	if a.status != http.StatusBadRequest || a.body["error"] != "slow_down" || a.retryAfter != "10" {
		t.Fatalf("over the token limit: %d %q %s; want 400 slow_down (CIBA §11) with Retry-After 10", a.status, a.retryAfter, a.raw)
	}
}

func TestPushBombingStoppedPerUser(t *testing.T) {
	_, st, srv := limitServer(t, nil, limit.Rate{Requests: 3, Per: 10 * time.Minute})
	var ids []string
	for i := range 3 {
		a := limPost(t, srv, PathBCAuthz, "bank", aliceForm, nil)
		if a.status != http.StatusOK {
			t.Fatalf("request %d for alice: %d %s", i+1, a.status, a.raw)
		}
		ids = append(ids, a.body["auth_req_id"].(string))
	}
	for _, client := range []string{"bank", "other-client"} {
		a := limPost(t, srv, PathBCAuthz, client, aliceForm, nil)
		if a.status != http.StatusForbidden || a.body["error"] != "access_denied" {
			t.Fatalf("4th request for alice from %s: %d %s; want 403 access_denied", client, a.status, a.raw)
		}
		if d, _ := a.body["error_description"].(string); !strings.Contains(d, "too many authentication requests for this user") || !strings.Contains(d, "200 seconds") {
			t.Fatalf("the description does not say why and when: %q", d)
		}
		if _, ok := a.body["auth_req_id"]; ok {
			t.Fatal("a refused request got an auth_req_id")
		}
	}
	if a := limPost(t, srv, PathBCAuthz, "bank", url.Values{"scope": {"openid"}, "login_hint": {"bob"}}, nil); a.status != http.StatusOK {
		t.Fatalf("bob is held by alice's limit: %d %s", a.status, a.raw)
	}
	// The three accepted requests are untouched.
	for _, id := range ids {
		if r, err := st.GetRequest(context.Background(), id); err != nil || r.Status != ciba.StatusPending {
			t.Fatalf("accepted request %s: %v %+v", id, err, r)
		}
	}
}

func TestAllowedNetworks(t *testing.T) {
	l := &Limits{
		ClientNetworks: map[string][]netip.Prefix{"bank": {netip.MustParsePrefix("203.0.113.0/24")}},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		ClientIPHeader: "X-Forwarded-For",
	}
	_, _, srv := limitServer(t, l, limit.Rate{})
	a := limPost(t, srv, PathBCAuthz, "bank", aliceForm, nil)
	if a.status != http.StatusBadRequest || a.body["error"] != "unauthorized_client" || !strings.Contains(a.raw, "allowed_networks") {
		t.Fatalf("from outside allowed_networks: %d %s; want 400 unauthorized_client", a.status, a.raw)
	}
	if a := limPost(t, srv, PathBCAuthz, "bank", aliceForm, http.Header{"X-Forwarded-For": {"203.0.113.9"}}); a.status != http.StatusOK {
		t.Fatalf("from an allowed network through a trusted proxy: %d %s", a.status, a.raw)
	}
	// A client-supplied X-Forwarded-For entry on the left is not believed.
	if a := limPost(t, srv, PathBCAuthz, "bank", aliceForm, http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.4"}}); a.body["error"] != "unauthorized_client" {
		t.Fatalf("a spoofed leftmost X-Forwarded-For was believed: %d %s", a.status, a.raw)
	}
	if a := limPost(t, srv, PathBCAuthz, "shop", aliceForm, nil); a.status != http.StatusOK {
		t.Fatalf("a client without allowed_networks: %d %s", a.status, a.raw)
	}
}

func TestApprovalPageFailuresPerIP(t *testing.T) {
	l := &Limits{ApprovalFailures: limit.New(limit.Rate{Requests: 3, Per: 10 * time.Minute}, 0)}
	svc, st, srv := limitServer(t, l, limit.Rate{})
	resp, err := svc.Authorize(context.Background(), bank, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := st.GetRequest(context.Background(), resp.AuthReqID)
	get := func(id string) limAnswer {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+PathApprove+id, nil)
		return limDo(t, req)
	}
	// Successes cost nothing.
	for range 10 {
		if a := get(r.ApprovalID); a.status != http.StatusOK {
			t.Fatalf("the valid approval page: %d", a.status)
		}
	}
	for i := range 3 {
		if a := get("guessed-id-" + string(rune('a'+i))); a.status != http.StatusNotFound {
			t.Fatalf("guess %d: %d, want 404", i+1, a.status)
		}
	}
	a := get("guessed-id-z")
	if a.status != http.StatusTooManyRequests || a.retryAfter != "200" || !strings.Contains(a.raw, "Too many attempts") {
		t.Fatalf("after 3 failures: %d Retry-After %q, want 429 with 200 and a page", a.status, a.retryAfter)
	}
	if a := get(r.ApprovalID); a.status != http.StatusTooManyRequests {
		t.Fatalf("the blocked address still reaches a valid page: %d", a.status)
	}
}

func TestCallbackFailuresPerIP(t *testing.T) {
	l := &Limits{CallbackFailures: limit.New(limit.Rate{Requests: 2, Per: time.Minute}, 0)}
	_, _, srv := limitServer(t, l, limit.Rate{})
	call := func() limAnswer {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+PathCallback, strings.NewReader(`{"status":"approved"}`))
		req.Header.Set("Authorization", "Bearer forged-callback-token")
		req.Header.Set("Content-Type", "application/json")
		return limDo(t, req)
	}
	for i := range 2 {
		if a := call(); a.status/100 != 4 || a.status == http.StatusTooManyRequests {
			t.Fatalf("forged callback %d: %d %s, want a 4xx refusal", i+1, a.status, a.raw)
		}
	}
	a := call()
	if a.status != http.StatusTooManyRequests || a.retryAfter != "30" || a.body["error"] != "slow_down" || a.ctype != "application/json" {
		t.Fatalf("after 2 failures: %d Retry-After %q %s; want 429, 30, JSON slow_down", a.status, a.retryAfter, a.raw)
	}
}

func TestClientIP(t *testing.T) {
	trusted := &Limits{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ClientIPHeader: "X-Forwarded-For"}
	realIP := &Limits{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ClientIPHeader: "X-Real-Ip"}
	tests := []struct {
		name   string
		l      *Limits
		remote string
		header http.Header
		want   string
	}{
		{"no proxy configured: the peer", nil, "198.51.100.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.1"}}, "198.51.100.1"},
		{"an untrusted peer's header is ignored", trusted, "198.51.100.1:5000", http.Header{"X-Forwarded-For": {"203.0.113.1"}}, "198.51.100.1"},
		{"a trusted proxy's header is believed", trusted, "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"203.0.113.1"}}, "203.0.113.1"},
		{"the rightmost untrusted hop is the client", trusted, "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"1.2.3.4, 203.0.113.1, 10.0.0.9"}}, "203.0.113.1"},
		{"several header lines are one list", trusted, "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"1.2.3.4", "203.0.113.1"}}, "203.0.113.1"},
		{"garbage stops the walk", trusted, "10.0.0.2:5000", http.Header{"X-Forwarded-For": {"1.2.3.4, nonsense"}}, "10.0.0.2"},
		{"a trusted proxy without the header: the peer", trusted, "10.0.0.2:5000", nil, "10.0.0.2"},
		{"a one-address header", realIP, "10.0.0.2:5000", http.Header{"X-Real-Ip": {"2001:db8::7"}}, "2001:db8::7"},
		{"IPv4-mapped peers are IPv4", nil, "[::ffff:192.0.2.1]:80", nil, "192.0.2.1"},
		{"an unparsable peer is unknown", nil, "@", nil, "invalid IP"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr, r.Header = tt.remote, tt.header
		if r.Header == nil {
			r.Header = http.Header{}
		}
		if got := tt.l.ClientIP(r).String(); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
	if k := addrKey(netip.MustParseAddr("2001:db8:1:2:3:4:5:6")); k != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 key %s, want its /64", k)
	}
}
