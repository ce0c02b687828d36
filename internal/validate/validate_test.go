package validate_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/validate"
)

var secret = []byte("0123456789abcdef0123456789abcdef-test")

// received is one call as the hook saw it.
type received struct {
	header http.Header
	body   []byte
}

// hookServer is a validation hook on 127.0.0.1 that records each call and
// answers with answer.
func hookServer(t *testing.T, answer http.HandlerFunc) (*httptest.Server, chan received) {
	t.Helper()
	got := make(chan received, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- received{header: r.Header.Clone(), body: b}
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func jsonAnswer(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

// newHook is a hook at url built as cmd/cibaproxy builds it: an unguarded
// outbound client, since the URL is the operator's.
func newHook(t *testing.T, url string, timeout time.Duration) *validate.Hook {
	t.Helper()
	h, err := validate.New(validate.Config{URL: url, Secret: secret, Timeout: timeout, Client: outbound.New(timeout)})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

var request = ciba.Validation{
	RequestID: "req-1", ClientID: "teller", ClientAddr: netip.MustParseAddr("198.51.100.7"),
	HintType: "login_hint", Subject: "sub-alice", Scopes: []string{"openid", "email"},
	ACRValues: []string{"urn:acr:2fa"}, BindingMessage: "Code 1234", RequestedExpiry: 120 * time.Second,
}

func TestValidateAllow(t *testing.T) {
	srv, got := hookServer(t, jsonAnswer(`{"allow": true}`))
	v, err := newHook(t, srv.URL+"/hook", 2*time.Second).Validate(context.Background(), request)
	if err != nil || !v.Allow {
		t.Fatalf("Validate = %+v, %v; want allow", v, err)
	}
	call := <-got
	var msg map[string]any
	if err := json.Unmarshal(call.body, &msg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"request_id": "req-1", "client_id": "teller", "client_ip": "198.51.100.7", "hint_type": "login_hint",
		"subject": "sub-alice", "scope": "openid email", "acr_values": "urn:acr:2fa", "binding_message": "Code 1234",
		"requested_expiry": float64(120),
	}
	for k, w := range want {
		if msg[k] != w {
			t.Errorf("message %s = %v, want %v", k, msg[k], w)
		}
	}
	if len(msg) != len(want) {
		t.Errorf("message has members %v, want exactly %d", msg, len(want))
	}
	if _, ok := msg["login_hint"]; ok {
		t.Errorf("the login_hint was sent although the subject is known: %s", call.body)
	}
	if ct := call.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if id := call.header.Get("X-Request-Id"); id != "req-1" {
		t.Errorf("X-Request-Id = %q, want the correlation id", id)
	}
}

func TestValidateDenyWithReason(t *testing.T) {
	srv, _ := hookServer(t, jsonAnswer(`{"allow":false,"reason":"terminal 7 is not registered"}`))
	v, err := newHook(t, srv.URL, 2*time.Second).Validate(context.Background(), request)
	if err != nil {
		t.Fatal(err)
	}
	if v.Allow || v.Reason != "terminal 7 is not registered" {
		t.Fatalf("Validate = %+v, want a refusal with the hook's reason", v)
	}
}

func TestValidateSendsLoginHintOnlyWithoutSubject(t *testing.T) {
	srv, got := hookServer(t, jsonAnswer(`{"allow":true}`))
	relayed := request
	relayed.Subject, relayed.LoginHint = "", "alice"
	if _, err := newHook(t, srv.URL, 2*time.Second).Validate(context.Background(), relayed); err != nil {
		t.Fatal(err)
	}
	var msg validate.Message
	if err := json.Unmarshal((<-got).body, &msg); err != nil {
		t.Fatal(err)
	}
	if msg.LoginHint != "alice" || msg.Subject != "" {
		t.Errorf("message = %+v, want the login_hint and no subject", msg)
	}
}

func TestValidateTimeout(t *testing.T) {
	release := make(chan struct{})
	srv, _ := hookServer(t, func(w http.ResponseWriter, r *http.Request) {
		select { // answers only after the caller gave up
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	_, err := newHook(t, srv.URL, 50*time.Millisecond).Validate(context.Background(), request)
	if err == nil {
		t.Fatal("Validate of a hook that does not answer in time: no error")
	}
	var ne net.Error
	if !errors.Is(err, context.DeadlineExceeded) && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Errorf("error = %v, want a timeout", err)
	}
}

func TestValidateNoVerdict(t *testing.T) {
	tests := []struct {
		name   string
		answer http.HandlerFunc
		want   string
	}{
		{"HTTP 500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }, "HTTP 500"},
		{"HTTP 503 with a verdict", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(503)
			_, _ = io.WriteString(w, `{"allow":true}`)
		}, "HTTP 503"},
		{"HTTP 204", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }, "HTTP 204"},
		{"a redirect is not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}, "HTTP 302"},
		{"not JSON", jsonAnswer(`allow`), "not valid JSON"},
		{"text/plain", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, `{"allow":true}`)
		}, "Content-Type"},
		{"allow as a string", jsonAnswer(`{"allow":"true"}`), "true or false"},
		{"no allow", jsonAnswer(`{"reason":"x"}`), "required"},
		{"a typo", jsonAnswer(`{"allow":false,"reasons":"x"}`), "unknown member"},
		{"allow twice", jsonAnswer(`{"allow":false,"allow":true}`), "twice"},
		{"two objects", jsonAnswer(`{"allow":true}{"allow":false}`), "not valid JSON"},
		{"oversized", jsonAnswer(`{"allow":false,"reason":"` + strings.Repeat("x", validate.MaxAnswer) + `"}`), "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := hookServer(t, tt.answer)
			v, err := newHook(t, srv.URL, 2*time.Second).Validate(context.Background(), request)
			if err == nil {
				t.Fatalf("Validate = %+v, want an error (no verdict)", v)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

// The receiver checks the signature as docs/validation.md describes it,
// without this package's code.
func TestSignatureVerifiableByReceiver(t *testing.T) {
	srv, got := hookServer(t, jsonAnswer(`{"allow":true}`))
	if _, err := newHook(t, srv.URL, 2*time.Second).Validate(context.Background(), request); err != nil {
		t.Fatal(err)
	}
	call := <-got
	header := call.header.Get("Cibaproxy-Signature")
	var ts, sig string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts + "." + string(call.body)))
	if want := hex.EncodeToString(m.Sum(nil)); ts == "" || sig != want {
		t.Fatalf("Cibaproxy-Signature = %q; HMAC-SHA256(secret, t.body) = %s", header, want)
	}
	if err := validate.Verify(secret, call.body, header, time.Now(), time.Minute); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := validate.Verify([]byte("another secret of at least 32 bytes!!"), call.body, header, time.Now(), time.Minute); err == nil {
		t.Error("Verify with another secret: no error")
	}
	tampered := []byte(strings.Replace(string(call.body), "teller", "hacker", 1))
	if err := validate.Verify(secret, tampered, header, time.Now(), time.Minute); err == nil {
		t.Error("Verify of a changed body: no error")
	}
	if err := validate.Verify(secret, call.body, header, time.Now().Add(10*time.Minute), time.Minute); err == nil {
		t.Error("Verify of a replay ten minutes later: no error")
	}
	if strings.Contains(string(call.body), string(secret)) || strings.Contains(header, string(secret)) {
		t.Error("the secret itself was sent")
	}
}

// A redirect is no verdict and is not followed: the body and its signature
// never reach the redirect's target.
func TestRedirectNotFollowed(t *testing.T) {
	target, reached := hookServer(t, jsonAnswer(`{"allow":true}`))
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			srv, got := hookServer(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target.URL+"/validate", code)
			})
			v, err := newHook(t, srv.URL, 2*time.Second).Validate(context.Background(), request)
			var se *outbound.StatusError
			if !errors.As(err, &se) || se.Status != code {
				t.Fatalf("Validate = %+v, %v; want no verdict, HTTP %d", v, err, code)
			}
			if len(got) != 1 {
				t.Errorf("the hook got %d calls, want 1", len(got))
			}
			select {
			case call := <-reached:
				t.Fatalf("the redirect was followed: its target got %s", call.body)
			default:
			}
		})
	}
}

// New takes only an absolute http or https URL.
func TestNewRefusesBadURL(t *testing.T) {
	cfg := validate.Config{Secret: secret, Timeout: time.Second, Client: outbound.New(time.Second)}
	for _, bad := range []string{"", "policy.example/validate", "/validate", "ftp://policy.example/validate", "https:///validate", "https://policy.example/%zz"} {
		cfg.URL = bad
		if _, err := validate.New(cfg); err == nil {
			t.Errorf("New(%q): no error", bad)
		}
	}
	for _, good := range []string{"https://policy.example/validate", "http://10.20.0.5:8080/validate"} {
		cfg.URL = good
		if _, err := validate.New(cfg); err != nil {
			t.Errorf("New(%q): %v", good, err)
		}
	}
}

func TestErrorsHoldNoURLSecret(t *testing.T) {
	srv, _ := hookServer(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) })
	_, err := newHook(t, srv.URL+"/hook?key=url-secret", 2*time.Second).Validate(context.Background(), request)
	if err == nil || strings.Contains(err.Error(), "url-secret") {
		t.Fatalf("error = %v, want one without the URL's query", err)
	}
}

func TestNewRefusesShortSecret(t *testing.T) {
	_, err := validate.New(validate.Config{URL: "https://hook.example", Secret: []byte("short"), Timeout: time.Second, Client: outbound.New(time.Second)})
	if err == nil {
		t.Fatal("New with a 5-byte secret: no error")
	}
}

func TestParseAnswer(t *testing.T) {
	ok := []struct {
		in   string
		want ciba.Verdict
	}{
		{`{"allow":true}`, ciba.Verdict{Allow: true}},
		{` { "allow" : false } `, ciba.Verdict{}},
		{`{"reason":"no","allow":false}`, ciba.Verdict{Reason: "no"}},
		{`{"allow":false,"reason":"caf\u00e9"}`, ciba.Verdict{Reason: "café"}},
	}
	for _, tt := range ok {
		got, err := validate.ParseAnswer([]byte(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("ParseAnswer(%s) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	bad := []string{
		``, `null`, `true`, `[]`, `{}`, `{"allow":null}`, `{"allow":1}`, `{"allow":true,"reason":null}`,
		`{"allow":true,"reason":1}`, `{"allow":{}}`, `{"allow":true,"x":1}`, `{"allow":true,"reason":"a","reason":"b"}`,
		`{"allow":true} x`, `{"allow":true`, "{\"allow\":false,\"reason\":\"\xff\"}", `{"allow":tru}`,
	}
	for _, in := range bad {
		if got, err := validate.ParseAnswer([]byte(in)); err == nil {
			t.Errorf("ParseAnswer(%q) = %+v, want an error", in, got)
		}
	}
}
