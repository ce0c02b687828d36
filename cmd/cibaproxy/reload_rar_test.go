package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/app"
	"github.com/cibaproxy/cibaproxy/internal/config"
)

// Schemas and templates of the type "payment" the reload tests swap.
const (
	// payAny accepts any amount of digits.
	payAny = `{"type":"object","properties":{"amount":{"type":"string","pattern":"^[0-9]+$"}}}`
	// payTwoDigits accepts at most two digits.
	payTwoDigits = `{"type":"object","properties":{"amount":{"type":"string","pattern":"^[0-9]{1,2}$"}}}`
	// payNothing accepts no amount at all.
	payNothing = `{"type":"object","properties":{"amount":false}}`
	// payBroken is JSON but not a schema that compiles.
	payBroken = `{"type":"object","properties":{"amount":{"type":12}}}`

	tplOne    = `<p class="tpl-one">{{.Value.amount}}</p>`
	tplTwo    = `<p class="tpl-two">{{.Value.amount}}</p>`
	tplBroken = `<p>{{.Value.amount</p>`
)

// safeBuffer is a log sink the server's goroutines write to while the
// test reads it.
type safeBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rarReloadEnv is an instance served in process from a configuration file
// with one authorization_details type, "payment", whose schema and
// template files the test rewrites before calling reloadClients.
type rarReloadEnv struct {
	t                      *testing.T
	path, schema, template string
	app                    *app.App
	running                *config.Config
	srv                    *httptest.Server
	logs                   *safeBuffer
	log                    *slog.Logger
}

func newRARReloadEnv(t *testing.T) *rarReloadEnv {
	t.Helper()
	dir := t.TempDir()
	e := &rarReloadEnv{t: t, path: filepath.Join(dir, "cibaproxy.yaml"), schema: filepath.Join(dir, "payment.json"),
		template: filepath.Join(dir, "payment.html"), logs: &safeBuffer{}}
	e.log = slog.New(slog.NewTextHandler(e.logs, nil))
	e.write(e.schema, payAny)
	e.write(e.template, tplOne)
	e.srv = httptest.NewUnstartedServer(nil)
	t.Cleanup(e.srv.Close)
	e.write(e.path, fmt.Sprintf(`issuer: http://%s
listen: 127.0.0.1:0
store:
  type: memory
upstream:
  type: local
  local:
    users:
      - username: alice
        password_hash: "$2a$10$spJ.y58rlNOoHwC/fKk3.OoacF3R0k9OFHXbH8WIIXHS/cr20EHNu"
limits:
  requests_per_user: {requests: 100000, per: 1m}
  bc_authorize_per_client: {requests: 100000, per: 1m}
authorization_details:
  types:
    payment:
      schema_file: %s
      template: %s
clients:
  - client_id: agent
    client_secret: agent-secret-5d1c
    token_endpoint_auth_methods: [client_secret_basic]
    backchannel_token_delivery_mode: poll
    authorization_details_types: [payment]
`, e.srv.Listener.Addr(), e.schema, e.template))
	cfg, err := config.Load(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.running = cfg
	if e.app, err = app.New(t.Context(), cfg, app.Options{Logger: e.log}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.app.Close() })
	e.srv.Config.Handler = e.app.Handler
	e.srv.Start()
	return e
}

// write replaces the file at path with text.
func (e *rarReloadEnv) write(path, text string) {
	e.t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// reload is what SIGHUP does.
func (e *rarReloadEnv) reload() error {
	cfg, err := reloadClients(context.Background(), e.app, nil, e.running, e.path, "", e.log)
	if err == nil {
		e.running = cfg
	}
	return err
}

// authorize posts a bc-authorize with one payment of amount and returns
// the status, the error code ("" on success) and the auth_req_id.
func (e *rarReloadEnv) authorize(amount string) (int, string, string) {
	e.t.Helper()
	form := url.Values{"scope": {"openid"}, "login_hint": {"alice"},
		"authorization_details": {`[{"type":"payment","amount":"` + amount + `"}]`}}
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+"/bc-authorize", strings.NewReader(form.Encode()))
	if err != nil {
		e.t.Error(err)
		return 0, "", ""
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("agent", "agent-secret-5d1c")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Error(err)
		return 0, "", ""
	}
	defer resp.Body.Close()
	var body struct {
		Error     string `json:"error"`
		AuthReqID string `json:"auth_req_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Errorf("bc-authorize answer: %v", err)
	}
	return resp.StatusCode, body.Error, body.AuthReqID
}

// want checks that a payment of amount is accepted (ok) or refused with
// invalid_authorization_details.
func (e *rarReloadEnv) want(amount string, ok bool) string {
	e.t.Helper()
	status, code, id := e.authorize(amount)
	switch {
	case ok && status != http.StatusOK:
		e.t.Errorf("amount %s: %d %s, want 200", amount, status, code)
	case !ok && (status != http.StatusBadRequest || code != "invalid_authorization_details"):
		e.t.Errorf("amount %s: %d %q, want 400 invalid_authorization_details", amount, status, code)
	}
	return id
}

// page returns the approval page of the request auth_req_id.
func (e *rarReloadEnv) page(id string) string {
	e.t.Helper()
	r, err := e.app.Store.GetRequest(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.srv.Client().Get(e.srv.URL + "/approve/" + r.ApprovalID)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("approval page: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// TestReloadAuthzDetailsSchema: SIGHUP compiles the types' schemas again
// and bc-authorize validates with the new one; a request pending from
// before renders with the templates now in force.
func TestReloadAuthzDetailsSchema(t *testing.T) {
	e := newRARReloadEnv(t)
	pending := e.want("123", true)
	if p := e.page(pending); !strings.Contains(p, `class="tpl-one">123<`) {
		t.Fatalf("the approval page before the reload lacks the template's rendering:\n%s", p)
	}

	e.write(e.schema, payTwoDigits)
	e.write(e.template, tplTwo)
	if err := e.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, e.logs)
	}
	e.want("123", false)
	e.want("12", true)
	if p := e.page(pending); !strings.Contains(p, `class="tpl-two">123<`) || strings.Contains(p, "tpl-one") {
		t.Errorf("the pending request's page after the reload is not rendered with the new template:\n%s", p)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "authorization_details types reloaded") || strings.Contains(logs, "restart to apply") {
		t.Errorf("the reload's log does not say the types were reloaded, or asks for a restart:\n%s", logs)
	}
}

// TestReloadAuthzDetailsBroken: a schema that does not compile, or a
// template that does not parse, keeps the whole set in force (the other,
// valid file changed with it is not applied either), and one log line
// names the file.
func TestReloadAuthzDetailsBroken(t *testing.T) {
	e := newRARReloadEnv(t)
	for _, tt := range []struct {
		name             string
		schema, template string
		file             string
	}{
		{"a schema that does not compile", payBroken, tplTwo, "payment.json"},
		{"a template that does not parse", payNothing, tplBroken, "payment.html"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.t = t
			before := strings.Count(e.logs.String(), "configuration problem")
			e.write(e.schema, tt.schema)
			e.write(e.template, tt.template)
			if err := e.reload(); err == nil {
				t.Fatal("the reload was applied")
			}
			var lines []string
			for _, l := range strings.Split(e.logs.String(), "\n") {
				if strings.Contains(l, "configuration problem") {
					lines = append(lines, l)
				}
			}
			if len(lines) != before+1 || !strings.Contains(lines[len(lines)-1], filepath.Join(filepath.Dir(e.path), tt.file)) {
				t.Errorf("want one new problem line naming %s, got:\n%s", tt.file, strings.Join(lines[before:], "\n"))
			}
			// The schema in force is still payAny, the template tplOne.
			id := e.want("123", true)
			if p := e.page(id); !strings.Contains(p, `class="tpl-one">123<`) {
				t.Errorf("the template in force changed:\n%s", p)
			}
		})
	}
}

// TestReloadAuthzDetailsUnderLoad: reloads alternating two schemas while
// bc-authorize requests run in parallel; every answer is the verdict of
// one schema or the other (run with -race).
func TestReloadAuthzDetailsUnderLoad(t *testing.T) {
	e := newRARReloadEnv(t)
	const workers, each, minReloads, maxReloads = 4, 15, 4, 40
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				status, code, _ := e.authorize("123")
				if status != http.StatusOK && (status != http.StatusBadRequest || code != "invalid_authorization_details") {
					t.Errorf("bc-authorize during a reload: %d %q", status, code)
				}
			}
		})
	}
	go func() { wg.Wait(); close(done) }()
	accepts := true // payAny is in force
	for i := 0; i < maxReloads; i++ {
		if i >= minReloads {
			select {
			case <-done:
				i = maxReloads
				continue
			default:
			}
		}
		schema, tpl := payTwoDigits, tplTwo
		if !accepts {
			schema, tpl = payAny, tplOne
		}
		e.write(e.schema, schema)
		e.write(e.template, tpl)
		if err := e.reload(); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		accepts = !accepts
	}
	<-done
	e.want("123", accepts)
}
