// Package scale runs several cibaproxy processes on one Redis, the way they
// run behind a load balancer (DESIGN.md, "State": "on one instance or
// many"), and checks that they behave as one server: a request created on
// one instance is answered, approved and redeemed on the others, exactly
// once; poll pacing is shared; a ping is sent once; an instance killed in
// the middle of a flow or a delivery loses nothing; and an outage of Redis
// is answered with temporarily_unavailable and heals without a restart.
//
// Every test starts its own redis-server (append-only file, fsync always)
// and three cibaproxy processes built from this tree, all with one issuer
// and each on its own loopback address. The tests are skipped when no
// redis-server is installed, unless $CI is set (see redistest).
package scale

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

var binary string

func TestMain(m *testing.M) {
	// Every test but TestSlowDownIsShared runs in parallel: each has its
	// own redis-server and instances (own ports, own directories) and
	// mostly waits on them.
	testutil.DefaultParallel(4)
	bin, cleanup := testutil.MustBuild()
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// waitTimeout bounds every wait of a test for something a server sends or
// does.
const waitTimeout = 30 * time.Second

// instances is how many cibaproxy processes share the Redis of a test.
const instances = 3

// configTemplate is the configuration every instance of a cluster runs: the
// local upstream with the users and clients of examples/quickstart.yaml, the
// redis store, the webhook channel to the test's receiver and the
// notification endpoint of demo-ping and demo-push at the test's notifier.
// Poll clients are told interval 1s and are not held (long_poll 0), so that
// pacing is visible at once. Placeholders: issuer, Redis address, key prefix,
// webhook URL, notification URL.
const configTemplate = `issuer: "%[1]s"
listen: 127.0.0.1:0
log:
  level: info
  format: text
store:
  type: redis
  redis:
    addrs: ["%[2]s"]
    key_prefix: "%[3]s"
    timeout: 1s
upstream:
  type: local
  local:
    users:
      - username: alice
        password_hash: "$2a$10$spJ.y58rlNOoHwC/fKk3.OoacF3R0k9OFHXbH8WIIXHS/cr20EHNu"
        claims:
          email: alice@example.com
          name: Alice Example
      - username: bob
        password_hash: "$2a$10$.P16Yabwk7tQnDCMfpaozOs7u2Fr.GvOssqoEjqrUPPP0WiAt6MRi"
        claims:
          email: bob@example.com
ciba:
  interval: 1s
  long_poll: 0s
channels:
  webhook:
    url: "%[4]s"
outbound:
  allow_http: true
  allow_networks: [127.0.0.0/8]
limits:
  requests_per_user:
    requests: 100000
clients:
  - client_id: demo-poll
    client_name: Demo poll client
    client_secret: demo-poll-secret
    token_endpoint_auth_methods: [client_secret_basic, client_secret_post]
    backchannel_token_delivery_mode: poll
  - client_id: demo-ping
    client_name: Demo ping client
    client_secret: demo-ping-secret
    token_endpoint_auth_methods: [client_secret_basic, client_secret_post]
    backchannel_token_delivery_mode: ping
    backchannel_client_notification_endpoint: "%[5]s"
  - client_id: demo-push
    client_name: Demo push client
    client_secret: demo-push-secret
    token_endpoint_auth_methods: [client_secret_basic, client_secret_post]
    backchannel_token_delivery_mode: push
    backchannel_client_notification_endpoint: "%[5]s"
`

// cluster is one Redis (or a Redis Cluster or Sentinel set, then redis is
// nil) and the cibaproxy instances sharing it, with the
// webhook receiver (the user's authentication device) and the notification
// endpoint of the ping and push clients.
type cluster struct {
	t      *testing.T
	redis  *redistest.Server
	nodes  []*testutil.Server
	issuer string
	hook   *testutil.Webhook
	notify *testutil.Notifier
}

// newCluster starts a persistent redis-server and the instances; all of
// them stop when the test ends.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	return newClusterWith(t, configTemplate)
}

// newClusterWith is newCluster with the configuration template given
// (configTemplate's verbs, in its order).
func newClusterWith(t *testing.T, template string) *cluster {
	t.Helper()
	srv := redistest.Start(t, redistest.WithPersistence())
	c := newClusterOn(t, template, srv.Addr())
	c.redis = srv
	return c
}

// newClusterOn is newClusterWith on Redis servers the test started: the
// template's store.redis.addrs are redisAddrs.
func newClusterOn(t *testing.T, template string, redisAddrs ...string) *cluster {
	t.Helper()
	c := &cluster{
		t:      t,
		hook:   testutil.NewWebhook(t),
		notify: testutil.NewNotifier(t),
	}
	addrs := make([]string, instances)
	for i := range addrs {
		a, err := testutil.FreeAddr()
		if err != nil {
			t.Fatalf("free address: %v", err)
		}
		addrs[i] = a
	}
	// One issuer for all: it is the iss of every token and the base of the
	// callback and approval URLs, whichever instance makes them.
	c.issuer = "http://" + addrs[0]
	cfg := filepath.Join(t.TempDir(), "cibaproxy.yaml")
	// Inside the template's ["%[2]s"].
	addrList := strings.Join(redisAddrs, `", "`)
	body := fmt.Sprintf(template, c.issuer, addrList, "scale:", c.hook.URL, c.notify.URL)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		c.nodes = append(c.nodes, testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, Addr: a}))
	}
	return c
}

// url is path on instance i.
func (c *cluster) url(i int, path string) string { return c.nodes[i].URL + path }

// ctx is a context bounded by waitTimeout, cancelled when the test ends.
func ctx(t *testing.T) context.Context {
	cx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return cx
}

// tag returns a binding_message unique in the test run, to find a request's
// webhook message.
func tag(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + " " + base64.RawURLEncoding.EncodeToString(b)
}

// notificationToken returns a fresh client_notification_token.
func notificationToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// request is one created authentication request.
type request struct {
	Client    testutil.Client
	AuthReqID string
	Binding   string
	// NotificationToken is the client_notification_token (ping and push).
	NotificationToken string
}

// authorizeForm is the bc-authorize form of req: alice, scope "openid
// email", its binding_message and notification token.
func authorizeForm(req request) url.Values {
	form := url.Values{
		"scope":           {"openid email"},
		"login_hint":      {"alice"},
		"binding_message": {req.Binding},
	}
	if req.NotificationToken != "" {
		form.Set("client_notification_token", req.NotificationToken)
	}
	return form
}

// newRequest returns an unsent request of client cl with a unique binding
// message and, for ping and push clients, a notification token.
func newRequest(cl testutil.Client, prefix string) request {
	req := request{Client: cl, Binding: tag(prefix)}
	if cl.ID != testutil.DemoPoll.ID {
		req.NotificationToken = notificationToken()
	}
	return req
}

// authorize creates a request of client cl on instance i and expects 200.
func (c *cluster) authorize(i int, cl testutil.Client, prefix string) request {
	c.t.Helper()
	req := newRequest(cl, prefix)
	r, err := testutil.PostForm(ctx(c.t), c.url(i, "/bc-authorize"), cl, authorizeForm(req))
	if err != nil {
		c.t.Fatalf("POST /bc-authorize on instance %d: %v", i+1, err)
	}
	if r.Status != http.StatusOK || r.Str("auth_req_id") == "" {
		c.t.Fatalf("POST /bc-authorize as %s on instance %d: got %s, want 200 with auth_req_id", cl.ID, i+1, r)
	}
	req.AuthReqID = r.Str("auth_req_id")
	return req
}

// token sends one CIBA token request for req to instance i. A transport
// error comes back as a response with Status 0 and the error as body, so
// that goroutines other than the test's can call it.
func (c *cluster) token(cx context.Context, i int, req request) *testutil.Response {
	r, err := testutil.PostForm(cx, c.url(i, "/token"), req.Client, url.Values{
		"grant_type":  {testutil.GrantCIBA},
		"auth_req_id": {req.AuthReqID},
	})
	if err != nil {
		return &testutil.Response{Body: []byte(err.Error())}
	}
	return r
}

// message waits for the accepted webhook message of req.
func (c *cluster) message(req request) testutil.Message {
	c.t.Helper()
	m, err := c.hook.WaitBinding(ctx(c.t), req.Binding)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// answerOn answers the webhook message m at the callback endpoint of
// instance i (callback_url names the issuer; the same path and bearer are
// sent to instance i) and expects 204.
func (c *cluster) answerOn(i int, m testutil.Message, status string) {
	c.t.Helper()
	r := c.callbackOn(ctx(c.t), i, m, status)
	if r.Status != http.StatusNoContent {
		c.t.Fatalf("callback %q on instance %d: got %s, want 204", status, i+1, r)
	}
}

// callbackOn posts the answer status for the webhook message m to instance
// i and returns its response (a transport error as a Response of status 0
// with the error as its body).
func (c *cluster) callbackOn(cx context.Context, i int, m testutil.Message, status string) *testutil.Response {
	c.t.Helper()
	u, err := url.Parse(m.CallbackURL)
	if err != nil || !strings.HasPrefix(m.CallbackURL, c.issuer+"/") {
		c.t.Fatalf("webhook callback_url %q is not a URL under the issuer %s", m.CallbackURL, c.issuer)
	}
	u.Host = strings.TrimPrefix(c.nodes[i].URL, "http://")
	r, err := testutil.CallbackWith(cx, u.String(), m.Token, status)
	if err != nil {
		return &testutil.Response{Body: []byte(err.Error())}
	}
	return r
}

// retryUnavailable calls do again while it answers 503 (the store is
// unavailable), as a client does with temporarily_unavailable, every 200 ms
// for at most 5 s, and returns the last answer.
func retryUnavailable(cx context.Context, do func() *testutil.Response) *testutil.Response {
	cx, cancel := context.WithTimeout(cx, 5*time.Second)
	defer cancel()
	for {
		r := do()
		if r.Status != http.StatusServiceUnavailable {
			return r
		}
		select {
		case <-cx.Done():
			return r
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkJSON checks the answer is JSON and not cacheable (RFC 6749 §5.1).
func checkJSON(t *testing.T, what string, r *testutil.Response) {
	t.Helper()
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" || r.JSON == nil {
		t.Errorf("%s: Content-Type %q, body %s; want a JSON object", what, r.Header.Get("Content-Type"), r.Body)
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: Cache-Control = %q, want no-store", what, cc)
	}
}

// checkTokens checks a successful token response with an ID token.
func checkTokens(t *testing.T, what string, r *testutil.Response) {
	t.Helper()
	if r.Status != http.StatusOK || r.Str("access_token") == "" || r.Str("id_token") == "" {
		t.Fatalf("%s: got %s, want 200 with access_token and id_token", what, r)
	}
	checkJSON(t, what, r)
}

// checkError checks an OAuth error answer: status, error code, JSON.
func checkError(t *testing.T, what string, r *testutil.Response, status int, code string) {
	t.Helper()
	if r.Status != status || r.Str("error") != code {
		t.Errorf("%s: got %s, want HTTP %d with error %q", what, r, status, code)
		return
	}
	checkJSON(t, what, r)
}

// verifyIDToken checks that the ID token raw, whichever instance minted it,
// verifies with the /jwks of instance i and names the shared issuer, so
// every instance signs with the key kept in the store.
func (c *cluster) verifyIDToken(i int, raw, clientID string) {
	c.t.Helper()
	t := c.t
	r, err := testutil.Get(ctx(t), c.url(i, "/jwks"))
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET /jwks on instance %d: %v %v", i+1, r, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(r.Body, &set); err != nil {
		t.Fatalf("/jwks of instance %d is not a JWK set: %v", i+1, err)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256})
	if err != nil {
		t.Fatalf("the ID token is not a compact JWS: %v", err)
	}
	keys := set.Keys
	if kid := jws.Signatures[0].Protected.KeyID; kid != "" {
		keys = set.Key(kid)
	}
	var payload []byte
	for _, k := range keys {
		if payload, err = jws.Verify(k); err == nil {
			break
		}
	}
	if payload == nil {
		t.Fatalf("the ID token does not verify with /jwks of instance %d (%d keys there): %v", i+1, len(set.Keys), err)
	}
	var claims struct {
		Iss string `json:"iss"`
		Aud any    `json:"aud"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("ID token payload: %v", err)
	}
	if claims.Iss != c.issuer {
		t.Errorf("ID token iss = %q, want the shared issuer %q", claims.Iss, c.issuer)
	}
	if claims.Aud != clientID {
		if l, ok := claims.Aud.([]any); !ok || len(l) != 1 || l[0] != clientID {
			t.Errorf("ID token aud = %v, want %q", claims.Aud, clientID)
		}
	}
}

// waitUntil calls cond every tick until it reports true, or fails the test
// with what when cx ends first.
func waitUntil(t *testing.T, cx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-cx.Done():
			t.Fatalf("waiting for %s: %v", what, cx.Err())
		case <-tick.C:
		}
	}
}
