package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/validate"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// The consumption-device validation hook end to end: examples/quickstart.yaml
// plus a validation section whose URL, fail policy and secret come from the
// environment. The hook is on 127.0.0.1 with no allow list: its URL is the
// operator's and is not restricted by address (SECURITY.md).
const validationSection = `
validation:
  url: ${HOOK_URL}
  secret: ${HOOK_SECRET}
  timeout: 2s
  fail: ${HOOK_FAIL:-closed}
  allow_http: true
`

const hookSecret = "e2e-hook-secret-0123456789abcdefghij"

// validationConfig writes the quick start configuration with the hook.
func validationConfig(t *testing.T) string {
	t.Helper()
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "validation.yaml")
	if err := os.WriteFile(p, append(base, validationSection...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// policy is a validation hook: it refuses every request for bob, allows the
// others, and keeps the calls whose signature it verified.
type policy struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []policyCall
	bad   int // calls with a wrong signature
}

type policyCall struct {
	msg       validate.Message
	requestID string
}

func newPolicy(t *testing.T) *policy {
	p := &policy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		p.mu.Lock()
		defer p.mu.Unlock()
		if err := validate.Verify([]byte(hookSecret), body, r.Header.Get(validate.HeaderSignature), time.Now(), time.Minute); err != nil {
			p.bad++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m validate.Message
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		p.calls = append(p.calls, policyCall{msg: m, requestID: r.Header.Get("X-Request-Id")})
		w.Header().Set("Content-Type", "application/json")
		if m.Subject == "bob" {
			_, _ = io.WriteString(w, `{"allow":false,"reason":"bob may not be asked from this terminal"}`)
			return
		}
		_, _ = io.WriteString(w, `{"allow":true}`)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *policy) seen() ([]policyCall, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]policyCall(nil), p.calls...), p.bad
}

// startValidated runs cibaproxy with the hook at hookURL and the fail
// policy fail.
func startValidated(t *testing.T, hookURL, fail string) *env {
	t.Helper()
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{
		Binary: binary, Config: validationConfig(t), WebhookURL: e.hook.URL, NotifyURL: e.notify.URL,
		Env: []string{"HOOK_URL=" + hookURL, "HOOK_SECRET=" + hookSecret, "HOOK_FAIL=" + fail},
	})
	return e
}

// deadURL is an http URL on 127.0.0.1 where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL + "/validate"
	srv.Close()
	return u
}

func TestValidationHook(t *testing.T) {
	t.Parallel()
	t.Run("allow and deny", func(t *testing.T) {
		t.Parallel()
		p := newPolicy(t)
		e := startValidated(t, p.srv.URL+"/validate", "closed")

		// Allowed: the flow completes, and the hook was told who asks for whom.
		req := e.mustAuthorize(testutil.DemoPoll, "Allowed")
		e.answer(req, "approved")
		checkTokens(t, "token after an allowed request", e.token(testutil.DemoPoll, req.AuthReqID))
		calls, bad := p.seen()
		if bad != 0 || len(calls) != 1 {
			t.Fatalf("the hook got %d signed calls and %d badly signed ones, want 1 and 0", len(calls), bad)
		}
		m := calls[0].msg
		if m.ClientID != "demo-poll" || m.Subject != "alice" || m.ClientIP != "127.0.0.1" || m.Scope != "openid email" ||
			m.BindingMessage != req.Binding || m.HintType != "login_hint" || m.LoginHint != "" {
			t.Errorf("the hook was told %+v", m)
		}
		if m.RequestID == "" || calls[0].requestID != m.RequestID {
			t.Errorf("request_id %q, X-Request-Id %q: want the same correlation id", m.RequestID, calls[0].requestID)
		}

		// Refused: access_denied with the hook's reason, and the user's
		// device hears nothing of it.
		denied := tag("Denied")
		r := e.authorize(testutil.DemoPoll, url.Values{"scope": {"openid"}, "login_hint": {"bob"}, "binding_message": {denied}})
		checkError(t, "bc-authorize refused by the hook", r, http.StatusForbidden, "access_denied")
		if d := r.Str("error_description"); !strings.Contains(d, "bob may not be asked from this terminal") {
			t.Errorf("error_description = %q, want the hook's reason", d)
		}
		if r.Str("auth_req_id") != "" {
			t.Errorf("a refused request got an auth_req_id: %s", r.Body)
		}
		later := e.mustAuthorize(testutil.DemoPoll, "After")
		e.message(later) // the channel has caught up with every accepted request
		for _, msg := range e.hook.Messages() {
			if msg.BindingMessage == denied {
				t.Errorf("the refused request reached the authentication device: %+v", msg)
			}
		}

		mr, err := testutil.Get(ctx(t), e.srv.MetricsURL+"/metrics")
		if err != nil || mr.Status != 200 {
			t.Fatalf("GET /metrics: %v %v", mr, err)
		}
		for _, want := range []string{`cibaproxy_validation_total{result="allow"} 2`, `cibaproxy_validation_total{result="deny"} 1`} {
			if !strings.Contains(string(mr.Body), want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		e.srv.Stop()
		logs := e.srv.Logs()
		if !strings.Contains(logs, "refused by the validation hook") {
			t.Errorf("no log line for the refusal:\n%s", logs)
		}
		if strings.Contains(logs, hookSecret) {
			t.Error("the hook's secret is in the logs")
		}
	})

	t.Run("hook down, fail closed: temporarily_unavailable", func(t *testing.T) {
		t.Parallel()
		e := startValidated(t, deadURL(t), "closed")
		r := e.authorize(testutil.DemoPoll, url.Values{"scope": {"openid"}, "login_hint": {"alice"}})
		checkError(t, "bc-authorize with the hook down", r, http.StatusServiceUnavailable, "temporarily_unavailable")
		e.srv.Stop()
		if logs := e.srv.Logs(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "validation hook failed") {
			t.Errorf("no warning about the hook:\n%s", logs)
		}
	})

	t.Run("hook down, fail open: accepted", func(t *testing.T) {
		t.Parallel()
		e := startValidated(t, deadURL(t), "open")
		req := e.mustAuthorize(testutil.DemoPoll, "Open")
		e.answer(req, "approved")
		checkTokens(t, "token with the hook down and fail open", e.token(testutil.DemoPoll, req.AuthReqID))
	})
}
