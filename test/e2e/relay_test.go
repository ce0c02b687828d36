package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// Clients of the relay tests, registered at the IdP with the same
// credentials: relay-ping is in ping mode there, pinging cibaproxy.
var (
	relayPoll = testutil.Client{ID: "relay-poll", Secret: "relay-poll-secret"}
	relayPing = testutil.Client{ID: "relay-ping", Secret: "relay-ping-secret"}
	// relayTV uses the device grant, relayed to the IdP's device endpoint.
	relayTV = testutil.Client{ID: "relay-tv", Secret: "relay-tv-secret"}
)

// relayInterval is the IdP's poll interval (seconds).
const relayInterval = 2

type relayEnv struct {
	*env
	idp *idp.IdP
}

// startRelay starts node-oidc-provider with CIBA and cibaproxy relaying to
// it (upstream: ciba), with a file store so a restart keeps requests.
func startRelay(t *testing.T) *relayEnv {
	t.Helper()
	e := &env{t: t, notify: testutil.NewNotifier(t)}
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(f *testutil.Federation) idp.Config {
			return idp.Config{
				Clients: []idp.Client{
					{ID: relayPoll.ID, Secret: relayPoll.Secret, GrantTypes: []string{idp.GrantCIBA, idp.GrantRefreshToken}, BackchannelTokenDeliveryMode: "poll"},
					{ID: relayPing.ID, Secret: relayPing.Secret, GrantTypes: []string{idp.GrantCIBA}, BackchannelTokenDeliveryMode: "ping",
						BackchannelClientNotificationEndpoint: f.Issuer + "/ciba/upstream-ping"},
					{ID: relayTV.ID, Secret: relayTV.Secret, GrantTypes: []string{idp.GrantDeviceCode}},
				},
				Accounts:     []idp.Account{{ID: "alice", Email: "alice@example.com", EmailVerified: true}},
				CIBAInterval: relayInterval,
			}
		},
		Config: func(f *testutil.Federation) string {
			return fmt.Sprintf(`issuer: %s
listen: %s
store:
  type: embedded
  path: ${CIBAPROXY_DATA}/cibaproxy.db
upstream:
  type: ciba
  ciba:
    issuer: %s
ciba:
  interval: 1s
outbound:
  allow_http: true
  allow_networks: [127.0.0.0/8]
limits:
  requests_per_user:
    requests: 100000
clients:
  - client_id: %s
    client_secret: %s
    backchannel_token_delivery_mode: poll
  - client_id: %s
    client_secret: %s
    backchannel_token_delivery_mode: ping
    backchannel_client_notification_endpoint: ${CIBAPROXY_DEMO_NOTIFY_URL}
    upstream_credentials:
      ping: true
  - client_id: %s
    client_secret: %s
    device_authorization: true
`, f.Issuer, f.Addr, f.IdP.Issuer(), relayPoll.ID, relayPoll.Secret, relayPing.ID, relayPing.Secret, relayTV.ID, relayTV.Secret)
		},
		Options: testutil.Options{Binary: binary, NotifyURL: e.notify.URL},
	})
	e.srv = f.Server
	return &relayEnv{env: e, idp: f.IdP}
}

// relayAuthorize starts a request for alice with a unique binding message.
func (r *relayEnv) relayAuthorize(c testutil.Client) request {
	r.t.Helper()
	// node-oidc-provider allows [a-zA-Z0-9-._+/!?#] only: no spaces.
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	req := request{Client: c, Binding: "R-" + hex.EncodeToString(b)}
	form := url.Values{"scope": {"openid email"}, "login_hint": {"alice"}, "binding_message": {req.Binding}}
	if c.ID == relayPing.ID {
		req.NotificationToken = notificationToken()
		form.Set("client_notification_token", req.NotificationToken)
	}
	resp := r.authorize(c, form)
	if resp.Status != http.StatusOK {
		r.t.Fatalf("bc-authorize: %s", resp)
	}
	req.AuthReqID = resp.Str("auth_req_id")
	return req
}

// upstreamID finds the IdP's id of the request with req's binding message.
func (r *relayEnv) upstreamID(req request) string {
	r.t.Helper()
	pending, err := r.idp.Pending(ctx(r.t))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range pending {
		if p.BindingMessage == req.Binding {
			return p.AuthReqID
		}
	}
	r.t.Fatalf("the IdP has no pending request %q: the request was not relayed", req.Binding)
	return ""
}

// counts returns the IdP's CIBA token requests and backchannel requests.
func (r *relayEnv) counts() (polls, starts int) {
	r.t.Helper()
	c, err := r.idp.Counts(ctx(r.t))
	if err != nil {
		r.t.Fatal(err)
	}
	return c.GrantTypes[idp.GrantCIBA], c.Paths["/backchannel"]
}

// pollHard polls as a misbehaving client would, every 20 ms, for d, and
// returns the final answers' codes it saw.
func (r *relayEnv) pollHard(c testutil.Client, authReqID string, d time.Duration) map[string]int {
	seen := map[string]int{}
	var mu sync.Mutex
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond) // 50 a second
	defer tick.Stop()
	for i := 0; i < int(d/(20*time.Millisecond))+1 && time.Now().Before(deadline); i++ {
		<-tick.C
		resp := r.tokenNoFatal(c, authReqID)
		mu.Lock()
		seen[resp.Str("error")]++
		mu.Unlock()
	}
	return seen
}

func TestRelay(t *testing.T) {
	t.Parallel()
	r := startRelay(t)

	t.Run("discovery is the IdP's with cibaproxy's endpoints", func(t *testing.T) {
		d, err := testutil.Get(ctx(t), r.url("/.well-known/openid-configuration"))
		if err != nil || d.Status != 200 {
			t.Fatalf("discovery: %v %v", d, err)
		}
		if d.Str("issuer") != r.idp.Issuer() || d.Str("backchannel_authentication_endpoint") != r.url("/bc-authorize") || d.Str("token_endpoint") != r.url("/token") {
			t.Errorf("discovery: %s", d.Body)
		}
	})

	t.Run("a client polling 50 times a second does not reach the IdP more than once per its interval", func(t *testing.T) {
		r := &relayEnv{env: r.in(t), idp: r.idp}
		if err := r.idp.ResetCounts(ctx(t)); err != nil {
			t.Fatal(err)
		}
		req := r.relayAuthorize(relayPoll)
		up := r.upstreamID(req)
		start := time.Now()
		seen := r.pollHard(relayPoll, req.AuthReqID, 10*time.Second)
		elapsed := time.Since(start)
		polls, starts := r.counts()
		bound := 1 + int(elapsed/(relayInterval*time.Second))
		t.Logf("client polls: %v; IdP: %d backchannel, %d token requests in %v (bound %d)", seen, starts, polls, elapsed.Round(time.Millisecond), bound)
		if starts != 1 {
			t.Errorf("backchannel requests at the IdP = %d, want 1", starts)
		}
		if polls > bound {
			t.Errorf("token requests at the IdP = %d, want at most 1 + elapsed/interval = %d", polls, bound)
		}
		if polls == 0 {
			t.Error("cibaproxy never polled the IdP")
		}
		if seen[""] != 0 || seen["authorization_pending"]+seen["slow_down"] == 0 {
			t.Errorf("the client's answers before approval: %v", seen)
		}
		if _, err := r.idp.ApproveCIBA(ctx(t), up); err != nil {
			t.Fatal(err)
		}
		tok := r.waitTokens(relayPoll, req.AuthReqID)
		verifyIDToken(t, r.idp.Issuer(), relayPoll.ID, tok.Str("id_token"), "alice")
		checkError(t, "second redemption", r.token(relayPoll, req.AuthReqID), http.StatusBadRequest, "invalid_grant")
	})

	t.Run("ping: the IdP pings cibaproxy, which polls it once and pings the client", func(t *testing.T) {
		r := &relayEnv{env: r.in(t), idp: r.idp}
		if err := r.idp.ResetCounts(ctx(t)); err != nil {
			t.Fatal(err)
		}
		req := r.relayAuthorize(relayPing)
		up := r.upstreamID(req)
		time.Sleep(2 * relayInterval * time.Second) // two intervals: a poll-mode relay would have polled
		if polls, _ := r.counts(); polls != 0 {
			t.Errorf("%d IdP token requests before the IdP pinged", polls)
		}
		res, err := r.idp.ApproveCIBA(ctx(t), up)
		if err != nil || len(res.PingErrors) > 0 {
			t.Fatalf("approve at the IdP: %+v %v", res, err)
		}
		n, err := r.notify.WaitFor(ctx(t), req.AuthReqID)
		if err != nil {
			t.Fatal(err)
		}
		if n.Bearer != req.NotificationToken {
			t.Error("the client's ping does not carry its client_notification_token")
		}
		tok := checkTokens(t, "token after ping", r.token(relayPing, req.AuthReqID))
		verifyIDToken(t, r.idp.Issuer(), relayPing.ID, tok.Str("id_token"), "alice")
		if polls, starts := r.counts(); polls != 1 || starts != 1 {
			t.Errorf("IdP calls: %d backchannel, %d token; want 1 and 1", starts, polls)
		}
	})

	t.Run("denied at the IdP: access_denied", func(t *testing.T) {
		r := &relayEnv{env: r.in(t), idp: r.idp}
		req := r.relayAuthorize(relayPoll)
		if _, err := r.idp.DenyCIBA(ctx(t), r.upstreamID(req)); err != nil {
			t.Fatal(err)
		}
		resp := r.waitDone(relayPoll, req.AuthReqID)
		checkError(t, "poll after denial", resp, http.StatusBadRequest, "access_denied")
	})

	t.Run("an unknown user is the IdP's unknown_user_id", func(t *testing.T) {
		resp := r.in(t).authorize(relayPoll, url.Values{"scope": {"openid"}, "login_hint": {"nobody"}})
		checkError(t, "bc-authorize for an unknown user", resp, http.StatusBadRequest, "unknown_user_id")
	})

	t.Run("IdP killed and restarted mid-request: the request completes when it returns", func(t *testing.T) {
		r := &relayEnv{env: r.in(t), idp: r.idp}
		req := r.relayAuthorize(relayPoll)
		up := r.upstreamID(req)
		r.idp.Kill()
		// cibaproxy keeps answering its client meanwhile.
		time.Sleep(relayInterval * time.Second)
		if resp := r.token(relayPoll, req.AuthReqID); resp.Str("error") != "authorization_pending" && resp.Str("error") != "slow_down" {
			t.Fatalf("poll with the IdP down: %s", resp)
		}
		r.idp.Restart()
		if _, err := r.idp.ApproveCIBA(ctx(t), up); err != nil {
			t.Fatal(err)
		}
		r.waitTokens(relayPoll, req.AuthReqID)
	})

	t.Run("the device grant is relayed to the IdP's device endpoint, polls bounded", func(t *testing.T) {
		r := &relayEnv{env: r.in(t), idp: r.idp}
		// The IdP's own device interval, read the way cibaproxy reads it.
		direct, err := testutil.PostForm(ctx(t), r.idp.Issuer()+"/device/auth", relayTV, url.Values{"scope": {"openid"}})
		if err != nil || direct.Status != 200 {
			t.Fatalf("the IdP's device endpoint: %v %v", direct, err)
		}
		// Without an interval the client polls every 5 s (RFC 8628 §3.2).
		upInterval := 5 * time.Second
		if n, ok := direct.JSON["interval"].(float64); ok && n > 0 {
			upInterval = time.Duration(n) * time.Second
		}
		if err := r.idp.ResetCounts(ctx(t)); err != nil {
			t.Fatal(err)
		}
		start, err := testutil.PostForm(ctx(t), r.url("/device_authorization"), relayTV, url.Values{"scope": {"openid email"}})
		if err != nil || start.Status != 200 {
			t.Fatalf("POST /device_authorization: %v %v", start, err)
		}
		dc, uri := start.Str("device_code"), start.Str("verification_uri_complete")
		if !strings.HasPrefix(start.Str("verification_uri"), r.idp.Issuer()) || !strings.HasPrefix(uri, r.idp.Issuer()) || start.Str("user_code") == "" {
			t.Fatalf("the IdP's verification URIs and user code are not passed through: %s", start.Body)
		}
		if strings.Contains(string(start.Body), direct.Str("device_code")) {
			t.Fatal("the IdP's device_code reached the client")
		}
		poll := func() *testutil.Response {
			p, err := testutil.PostForm(ctx(t), r.url("/token"), relayTV, url.Values{"grant_type": {idp.GrantDeviceCode}, "device_code": {dc}})
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		began := time.Now()
		for i := 0; i < 300 && time.Since(began) < 6*time.Second; i++ { // 50 a second
			if e := poll().Str("error"); e != "authorization_pending" && e != "slow_down" {
				t.Fatalf("poll before approval answered %q", e)
			}
			time.Sleep(20 * time.Millisecond)
		}
		c, err := r.idp.Counts(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		bound := 1 + int(time.Since(began)/upInterval)
		if got := c.GrantTypes[idp.GrantDeviceCode]; got > bound {
			t.Errorf("device_code token requests at the IdP = %d, want at most %d", got, bound)
		}
		// The user confirms the code at the IdP and signs in there.
		if _, err := idp.Login(ctx(t), &http.Client{Timeout: 10 * time.Second}, uri, "alice", "alice-password"); err == nil || !strings.Contains(err.Error(), "Sign-in Success") {
			t.Fatalf("verification at the IdP did not succeed: %v", err)
		}
		var tok *testutil.Response
		for range 60 {
			if tok = poll(); tok.Status == http.StatusOK {
				break
			}
			time.Sleep(time.Second)
		}
		checkTokens(t, "device poll after approval at the IdP", tok)
		verifyIDToken(t, r.idp.Issuer(), relayTV.ID, tok.Str("id_token"), "alice")
		checkError(t, "second redemption", poll(), http.StatusBadRequest, "invalid_grant")
	})

	t.Run("cibaproxy restarted mid-request: the upstream polls resume from the store", func(t *testing.T) {
		r := &relayEnv{env: r.in(t), idp: r.idp}
		req := r.relayAuthorize(relayPoll)
		up := r.upstreamID(req)
		r.srv.Kill()
		if _, err := r.idp.ApproveCIBA(ctx(t), up); err != nil {
			t.Fatal(err)
		}
		r.srv.Restart()
		r.waitTokens(relayPoll, req.AuthReqID)
	})
}

// waitDone polls at the announced pace until the answer is no longer
// pending, and returns it.
func (r *relayEnv) waitDone(c testutil.Client, authReqID string) *testutil.Response {
	r.t.Helper()
	c2, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		resp := r.tokenNoFatal(c, authReqID)
		if e := resp.Str("error"); e != "authorization_pending" && e != "slow_down" {
			return resp
		}
		select {
		case <-c2.Done():
			r.t.Fatalf("the request did not finish: last answer %s", resp)
		case <-time.After(time.Second):
		}
	}
}

// waitTokens is waitDone expecting tokens.
func (r *relayEnv) waitTokens(c testutil.Client, authReqID string) *testutil.Response {
	r.t.Helper()
	return checkTokens(r.t, "poll after approval at the IdP", r.waitDone(c, authReqID))
}
