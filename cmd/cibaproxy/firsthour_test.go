package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/cibaproxy/cibaproxy/internal/channel/webhook"
	"github.com/cibaproxy/cibaproxy/internal/testport"
)

// syncBuffer is a buffer one command writes while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitMatch waits until out matches re and returns the first submatch.
func waitMatch(t *testing.T, out *syncBuffer, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("the output never matched %s:\n%s", re, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startCommand runs the command args in-process until the test ends, and
// returns its standard output and error.
func startCommand(t *testing.T, args ...string) (stdout, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = new(syncBuffer), new(syncBuffer)
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, strings.NewReader(""), stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("cibaproxy %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("cibaproxy %s did not stop", strings.Join(args, " "))
		}
	})
	return stdout, stderr
}

// TestServeWithoutAChannelSaysSo: the shipped quick start without
// CIBAPROXY_WEBHOOK_URL has no channel: serve warns at start that nobody
// can approve, and each accepted request's log line says nobody was told.
func TestServeWithoutAChannelSaysSo(t *testing.T) {
	t.Setenv("CIBAPROXY_WEBHOOK_URL", "")
	t.Setenv("CIBAPROXY_DATA", t.TempDir())
	for _, v := range []string{"CIBAPROXY_LISTEN", "CIBAPROXY_METRICS_LISTEN"} {
		port, err := testport.Free()
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(v, "127.0.0.1:"+strconv.Itoa(port))
	}
	_, logs := startCommand(t, "serve", "--config", "../../examples/quickstart.yaml")
	addr := waitMatch(t, logs, regexp.MustCompile(`msg="cibaproxy listening" addr=(127\.0\.0\.1:\d+)`))[1]
	if !regexp.MustCompile(`level=WARN msg="no channel configured \(channels\.webpush, channels\.email or channels\.webhook\.url\)[^\n]*nobody can approve`).MatchString(logs.String()) {
		t.Errorf("no warning at start that nobody can approve:\n%s", logs)
	}
	form := url.Values{"scope": {"openid"}, "login_hint": {"alice"}}
	req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+addr+"/bc-authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-poll", "demo-poll-secret")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("bc-authorize: %s", res.Status)
	}
	waitMatch(t, logs, regexp.MustCompile(`msg="auth request created"[^\n]*user_notice="none: no channel is configured`))
}

// TestDemoDeviceShows: the demo device leaves out an absent binding
// message, shows a delegate's request and its authorization_details as the
// webhook's text words them, and shows the claims of pushed tokens, never
// the tokens.
func TestDemoDeviceShows(t *testing.T) {
	out, _ := startCommand(t, "demo-device", "--listen", "127.0.0.1:0")
	base := waitMatch(t, out, regexp.MustCompile(`listening on (http://127\.0\.0\.1:\d+)`))[1]
	post := func(path string, body []byte) {
		t.Helper()
		res, err := http.Post(base+path, "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNoContent {
			t.Fatalf("%s: %s", path, res.Status)
		}
	}

	msg, _ := json.Marshal(webhook.Message{ClientName: "Demo poll client", LoginHint: "alice", Scope: "openid",
		ExpiresAt: time.Now().Add(time.Minute), CallbackURL: "http://127.0.0.1:1/ciba/callback"})
	post("/webhook", msg)
	line := waitMatch(t, out, regexp.MustCompile(`\[device\] Demo poll client asks alice to approve \(([^\n]*)\)`))[1]
	if strings.Contains(line, "binding message") && !strings.Contains(line, "no binding message") {
		t.Errorf("the device shows an absent binding message: %q", line)
	}

	// A delegate's request with authorization_details: the device shows
	// what the user is asked, every member, as the webhook's text says it.
	msg, _ = json.Marshal(webhook.Message{ClientName: "Travel Agent", LoginHint: "bob", Scope: "openid",
		ExpiresAt: time.Now().Add(time.Minute), CallbackURL: "http://127.0.0.1:1/ciba/callback", ActsForUser: true,
		AuthorizationDetails: json.RawMessage(`[{"creditorName":"ACME Flights","type":"payment_initiation"}]`),
		Text:                 "Travel Agent acting on your behalf asks to do what is listed below.\n1. payment_initiation\n   creditorName: ACME Flights\n"})
	post("/webhook", msg)
	waitMatch(t, out, regexp.MustCompile(`\[device\] it shows the user:\n    Travel Agent acting on your behalf asks to do what is listed below\.\n    1\. payment_initiation\n       creditorName: ACME Flights\n`))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	idToken, err := jwt.Signed(signer).Claims(map[string]any{"iss": "http://127.0.0.1:8080", "sub": "alice", "aud": "demo-push", "email": "alice@example.com"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	accessToken, err := jwt.Signed(signer).Claims(map[string]any{"sub": "alice", "scope": "openid email", "client_id": "demo-push"}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	const refresh = "an-opaque-refresh-token-value"
	push, _ := json.Marshal(map[string]any{"auth_req_id": "req-1", "access_token": accessToken, "token_type": "Bearer",
		"expires_in": 600, "refresh_token": refresh, "id_token": idToken})
	post("/notify", push)
	waitMatch(t, out, regexp.MustCompile(`access_token claims`))
	shown := out.String()
	for _, want := range []string{"tokens for auth_req_id req-1", "id_token claims", `"email": "alice@example.com"`, `"aud": "demo-push"`, `"scope": "openid email"`, "refresh_token (not shown)"} {
		if !strings.Contains(shown, want) {
			t.Errorf("the demo device does not show %q:\n%s", want, shown)
		}
	}
	for _, secret := range []string{idToken, accessToken, refresh, strings.Split(idToken, ".")[2]} {
		if strings.Contains(shown, secret) {
			t.Errorf("the demo device printed a token:\n%s", shown)
		}
	}
}
