package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cibaproxy/cibaproxy/internal/webpush/webpushtest"
	"github.com/cibaproxy/cibaproxy/test/smtpsink"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// pushConfig is the quick start with the three channels in the order
// webpush, email, webhook, the push service on loopback allowed by the
// quick start's outbound section, and a user carol with no e-mail
// address.
func pushConfig(t *testing.T, sink *smtpsink.Sink) string {
	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(quick), "channels:\n  webhook:\n    url: ${CIBAPROXY_WEBHOOK_URL}\n", fmt.Sprintf(`channels:
  order: [webpush, email, webhook]
  webpush:
    enabled: true
    subject: mailto:ops@bank.example
  email:
    host: %s
    port: %d
    tls: none
    from: "Sign-in <signin@bank.example>"
  webhook:
    url: ${CIBAPROXY_WEBHOOK_URL}
`, sink.Host(), sink.Port()), 1)
	bob := "          email: bob@example.com\n"
	cfg = strings.Replace(cfg, bob, bob+"      - username: carol\n        password_hash: \"$2a$10$.P16Yabwk7tQnDCMfpaozOs7u2Fr.GvOssqoEjqrUPPP0WiAt6MRi\"\n", 1)
	if !strings.Contains(cfg, "webpush:") || !strings.Contains(cfg, "username: carol") {
		t.Fatal("the quickstart's channels or users changed; update this test")
	}
	path := filepath.Join(t.TempDir(), "webpush.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tries is channel_notice.tries of `requests show --json`.
func tries(t *testing.T, op operator, authReqID string) string {
	t.Helper()
	var v struct {
		ChannelNotice struct {
			Tries []struct {
				Channel, Outcome string
			} `json:"tries"`
		} `json:"channel_notice"`
	}
	if err := json.Unmarshal([]byte(op.mustCLI(t, "requests", "show", authReqID, "--json")), &v); err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, x := range v.ChannelNotice.Tries {
		s = append(s, x.Channel+":"+x.Outcome)
	}
	return strings.Join(s, " ")
}

// TestChannelOrderAndWebPush runs the channels in the order webpush,
// email, webhook end to end: a user with no subscription gets the e-mail,
// one with no address either the webhook; after approving on the page a
// browser subscribes with the page's one-time token, and the next request
// goes to the push service, encrypted for the browser's keys and signed
// with the server's VAPID key; a 410 removes the subscription and the
// e-mail takes over in the same attempt. Each send is in `requests show`,
// and the subscription in `users webpush list`.
func TestChannelOrderAndWebPush(t *testing.T) {
	t.Parallel()
	sink := smtpsink.Start(t, smtpsink.Options{})
	push := webpushtest.New(t)
	hook := testutil.NewWebhook(t)
	path := pushConfig(t, sink)
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: path, WebhookURL: hook.URL})
	e := &env{t: t, srv: srv, hook: hook, notify: testutil.NewNotifier(t)}
	op := operator{e: e, config: path}

	ask := func(user, prefix string) request {
		t.Helper()
		req := request{Client: testutil.DemoPoll, Binding: tag(prefix)}
		r := e.authorize(testutil.DemoPoll, url.Values{"scope": {"openid"}, "login_hint": {user}, "binding_message": {req.Binding}})
		if r.Status != http.StatusOK {
			t.Fatalf("bc-authorize for %s: %s", user, r)
		}
		req.AuthReqID = r.Str("auth_req_id")
		return req
	}
	waitTries := func(id, want string) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for {
			got := tries(t, op, id)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("channel tries = %q, want %q", got, want)
			}
			time.Sleep(100 * time.Millisecond) // polls the CLI; the condition is the record
		}
	}
	mail := func(to, binding string) smtpsink.Message {
		t.Helper()
		m, err := sink.WaitMessage(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(m.To) != 1 || m.To[0] != to || !strings.Contains(m.Body, binding) {
			t.Fatalf("e-mail to %v, want %s with %q:\n%s", m.To, to, binding, m.Body)
		}
		return m
	}

	// bob: no subscription, an address: e-mail.
	bob := ask("bob", "Bob")
	mail("bob@example.com", bob.Binding)
	waitTries(bob.AuthReqID, "webpush:unreachable email:delivered")

	// carol: neither: the webhook.
	carol := ask("carol", "Carol")
	if _, err := hook.WaitBinding(ctx(t), carol.Binding); err != nil {
		t.Fatal(err)
	}
	waitTries(carol.AuthReqID, "webpush:unreachable email:unreachable webhook:delivered")

	// alice approves from the e-mail; the "Approved" page offers
	// notifications with a one-time token and the VAPID key.
	first := ask("alice", "First")
	link := regexp.MustCompile(`https?://\S+/approve/[A-Za-z0-9_-]+`).FindString(mail("alice@example.com", first.Binding).Body)
	b := newBrowser(t)
	_, page := b.do("GET", link, nil)
	csrf := csrfInput.FindStringSubmatch(page)
	if csrf == nil {
		t.Fatalf("no form on the approval page:\n%s", page)
	}
	resp, page := b.do("POST", link, url.Values{"csrf": {csrf[1]}, "action": {"approve"}, "password": {"alice-password"}})
	offer := regexp.MustCompile(`id="push" data-token="([^"]+)" data-key="([^"]+)"`).FindStringSubmatch(page)
	if resp.StatusCode != 200 || offer == nil {
		t.Fatalf("the Approved page offers no notifications: %d\n%s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "worker-src 'self'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("the Approved page's CSP does not let its script register the worker and post: %s", csp)
	}

	// The browser's subscription (its keys are the push service
	// stand-in's, which decrypts what it gets).
	phone, _ := push.Subscribe(t, "/push/alice-phone")
	subscription := phone.Object()
	post := func(token, origin string) *http.Response {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"token": token, "subscription": subscription})
		req, _ := http.NewRequestWithContext(ctx(t), "POST", srv.URL+"/webpush/subscribe", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post(offer[1], "https://evil.example"); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("a subscription from another origin: %d, want 400", r.StatusCode)
	}
	if r := post("not-the-token", srv.URL); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("a subscription with a made-up token: %d, want 400", r.StatusCode)
	}
	if r := post(offer[1], srv.URL); r.StatusCode != http.StatusCreated {
		t.Fatalf("subscribe: %d, want 201", r.StatusCode)
	}
	if r := post(offer[1], srv.URL); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("the token used again: %d, want 400", r.StatusCode)
	}
	// The operator sees the browser through the running server's admin
	// socket, by its push service's host, never by its endpoint's path.
	host := strings.TrimPrefix(push.URL, "http://")
	if out := op.mustCLI(t, "users", "webpush", "list", "alice"); !strings.Contains(out, host) || strings.Contains(out, "alice-phone") {
		t.Fatalf("users webpush list alice, want the push service %s and no endpoint path:\n%s", host, out)
	}

	// The next request for alice is a push notification.
	second := ask("alice", "Second")
	m, err := push.Wait(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != "/push/alice-phone" || m.Header.Get("Content-Encoding") != "aes128gcm" || m.Header.Get("Ttl") == "" || m.Header.Get("Urgency") != "high" {
		t.Fatalf("push message: %s %v", m.Path, m.Header)
	}
	checkVAPID(t, m.Header.Get("Authorization"), push.URL, offer[2])
	plain, err := m.Plain, m.DecryptErr
	if err != nil {
		t.Fatalf("the browser cannot decrypt the notification: %v", err)
	}
	var n struct {
		Title, Body, URL string
		ClientName       string `json:"client_name"`
		BindingMessage   string `json:"binding_message"`
	}
	if err := json.Unmarshal(plain, &n); err != nil {
		t.Fatal(err)
	}
	if n.ClientName != "Demo poll client" || n.BindingMessage != second.Binding || !strings.HasPrefix(n.URL, srv.URL+"/approve/") ||
		!strings.Contains(n.Title, "Demo poll client") {
		t.Fatalf("notification: %s", plain)
	}
	if resp, page := newBrowser(t).do("GET", n.URL, nil); resp.StatusCode != 200 || !strings.Contains(page, second.Binding) {
		t.Fatalf("the notification's link does not open the approval page: %d", resp.StatusCode)
	}
	waitTries(second.AuthReqID, "webpush:delivered")

	// The push service says the subscription is gone: it is removed and
	// the e-mail goes out in the same attempt.
	push.SetStatus(http.StatusGone)
	third := ask("alice", "Third")
	if _, err := push.Wait(ctx(t)); err != nil {
		t.Fatal(err)
	}
	mail("alice@example.com", third.Binding)
	waitTries(third.AuthReqID, "webpush:permanent email:delivered")
	fourth := ask("alice", "Fourth")
	mail("alice@example.com", fourth.Binding)
	waitTries(fourth.AuthReqID, "webpush:unreachable email:delivered")
	if m, ok := push.Pending(); ok {
		t.Fatalf("a removed subscription got a message: %s", m.Path)
	}

	logs := srv.Logs()
	for _, secret := range []string{offer[1], "/push/alice-phone", strings.TrimPrefix(n.URL, srv.URL+"/approve/")} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains a secret (%.12s…)", secret)
		}
	}
}

// checkVAPID checks an RFC 8292 Authorization header: k is the server's
// public key (the one the page subscribed with), and t an ES256 JWT it
// verifies, for the push service's origin, expiring within 24 hours.
func checkVAPID(t *testing.T, header, origin, pageKey string) {
	t.Helper()
	rest, ok := strings.CutPrefix(header, "vapid t=")
	tok, k, ok2 := strings.Cut(rest, ", k=")
	if !ok || !ok2 || k != pageKey {
		t.Fatalf("Authorization %q: want vapid t=…, k=<the page's key>", header)
	}
	raw, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tok, []gojose.SignatureAlgorithm{gojose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	var c jwt.Claims
	if err := parsed.Claims(pub, &c); err != nil {
		t.Fatalf("the VAPID token does not verify with k: %v", err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{origin}, Time: time.Now()}, time.Minute); err != nil {
		t.Fatalf("VAPID claims: %v", err)
	}
	if c.Subject != "mailto:ops@bank.example" || c.Expiry.Time().After(time.Now().Add(24*time.Hour)) {
		t.Fatalf("VAPID claims: %+v", c)
	}
}
