package e2e

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// The device grant (RFC 8628) end to end: examples/quickstart.yaml plus two
// device clients, a public one and a confidential one.
const deviceClients = `
  - client_id: demo-tv
    client_name: Demo TV
    token_endpoint_auth_methods: [none]
    device_authorization: true
  - client_id: demo-cli
    client_name: Demo CLI client
    client_secret: demo-cli-secret
    device_authorization: true

device:
  interval: 1s
  expiry: ${CIBAPROXY_DEVICE_EXPIRY:-10m}
`

const grantDevice = "urn:ietf:params:oauth:grant-type:device_code"

var (
	demoDevice = testutil.Client{ID: "demo-cli", Secret: "demo-cli-secret"}
	csrfRE     = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// deviceConfig writes the quick start configuration with the device clients.
func deviceConfig(t *testing.T) string {
	t.Helper()
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "device.yaml")
	if err := os.WriteFile(p, append(base, deviceClients...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func startDevice(t *testing.T, env ...string) *testutil.Server {
	t.Helper()
	return testutil.Start(t, testutil.Options{Binary: binary, Config: deviceConfig(t), Env: env})
}

func post(t *testing.T, srv *testutil.Server, path string, c testutil.Client, form url.Values) *testutil.Response {
	t.Helper()
	r, err := testutil.PostForm(ctx(t), srv.URL+path, c, form)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

// deviceStart asks for a device code as c (public when c has no secret).
func deviceStart(t *testing.T, srv *testutil.Server, c testutil.Client, scope string) (deviceCode, userCode string) {
	t.Helper()
	form := url.Values{"scope": {scope}}
	if c.Secret == "" {
		form.Set("client_id", c.ID)
		c = testutil.Client{}
	}
	r := post(t, srv, "/device_authorization", c, form)
	if r.Status != 200 {
		t.Fatalf("device authorization: %s", r)
	}
	checkNoStore(t, "/device_authorization", r)
	return r.Str("device_code"), r.Str("user_code")
}

func devicePoll(t *testing.T, srv *testutil.Server, c testutil.Client, code string) *testutil.Response {
	t.Helper()
	form := url.Values{"grant_type": {grantDevice}, "device_code": {code}}
	if c.Secret == "" {
		form.Set("client_id", c.ID)
		c = testutil.Client{}
	}
	return post(t, srv, "/token", c, form)
}

// pollUntil polls once per interval (bounded) until the answer is not
// authorization_pending.
func pollUntil(t *testing.T, srv *testutil.Server, c testutil.Client, code string) *testutil.Response {
	t.Helper()
	for range 60 {
		time.Sleep(1100 * time.Millisecond)
		r := devicePoll(t, srv, c, code)
		if r.Str("error") != "authorization_pending" {
			return r
		}
	}
	t.Fatal("still pending after 60 polls")
	return nil
}

// page is a browser on the verification page: cookies kept, no redirects.
type page struct {
	t   *testing.T
	srv *testutil.Server
	c   *http.Client
}

func newPage(t *testing.T, srv *testutil.Server) *page {
	jar, _ := cookiejar.New(nil)
	return &page{t: t, srv: srv, c: &http.Client{Jar: jar, Timeout: testutil.CallTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (p *page) do(method, query string, form url.Values) (int, string) {
	p.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequestWithContext(ctx(p.t), method, p.srv.URL+"/device"+query, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := p.c.Do(req)
	if err != nil {
		p.t.Fatalf("%s /device: %v", method, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// enter opens verification_uri_complete and confirms the code; it returns
// the answer and the CSRF token of the approval form.
func (p *page) enter(code string) (int, string, string) {
	p.t.Helper()
	status, body := p.do(http.MethodGet, "?user_code="+url.QueryEscape(code), nil)
	m := csrfRE.FindStringSubmatch(body)
	if status != 200 || m == nil {
		p.t.Fatalf("GET /device: %d\n%s", status, body)
	}
	status, body = p.do(http.MethodPost, "", url.Values{"csrf": {m[1]}, "user_code": {code}, "action": {"continue"}})
	csrf := ""
	if m := csrfRE.FindStringSubmatch(body); m != nil {
		csrf = m[1]
	}
	return status, body, csrf
}

func (p *page) decide(code, csrf, action, user, password string) (int, string) {
	p.t.Helper()
	return p.do(http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {code}, "action": {action}, "username": {user}, "password": {password}})
}

func TestDeviceFlow(t *testing.T) {
	t.Parallel()
	srv := startDevice(t)

	t.Run("discovery lists the endpoint and the grant (RFC 8628 §4)", func(t *testing.T) {
		r, err := testutil.Get(ctx(t), srv.URL+"/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		if r.Str("device_authorization_endpoint") != srv.URL+"/device_authorization" {
			t.Errorf("device_authorization_endpoint = %q", r.Str("device_authorization_endpoint"))
		}
		var doc struct {
			Grants  []string `json:"grant_types_supported"`
			Methods []string `json:"token_endpoint_auth_methods_supported"`
		}
		_ = json.Unmarshal(r.Body, &doc)
		if !slices.Contains(doc.Grants, grantDevice) || !slices.Contains(doc.Methods, "none") {
			t.Errorf("grant_types_supported %v, token_endpoint_auth_methods_supported %v", doc.Grants, doc.Methods)
		}
	})

	t.Run("device authorization errors", func(t *testing.T) {
		checkError(t, "no client authentication", post(t, srv, "/device_authorization", testutil.Client{}, url.Values{"scope": {"openid"}}), 401, "invalid_client")
		checkError(t, "wrong secret", post(t, srv, "/device_authorization", testutil.Client{ID: "demo-cli", Secret: "wrong"}, url.Values{}), 401, "invalid_client")
		checkError(t, "a CIBA-only client", post(t, srv, "/device_authorization", testutil.DemoPoll, url.Values{}), 400, "unauthorized_client")
		checkError(t, "a malformed scope", post(t, srv, "/device_authorization", demoDevice, url.Values{"scope": {"open\"id"}}), 400, "invalid_scope")
		checkError(t, "a public client at bc-authorize", post(t, srv, "/bc-authorize", testutil.Client{}, url.Values{"client_id": {"demo-tv"}, "scope": {"openid"}, "login_hint": {"alice"}}), 401, "invalid_client")
	})

	t.Run("token errors: pending, slow_down, invalid_grant, invalid_request, unauthorized_client", func(t *testing.T) {
		dc, _ := deviceStart(t, srv, demoDevice, "openid")
		checkError(t, "first poll", devicePoll(t, srv, demoDevice, dc), 400, "authorization_pending")
		checkError(t, "a poll at once", devicePoll(t, srv, demoDevice, dc), 400, "slow_down")
		checkError(t, "unknown device_code", devicePoll(t, srv, demoDevice, "no-such-code"), 400, "invalid_grant")
		checkError(t, "another client's device_code", devicePoll(t, srv, testutil.Client{ID: "demo-tv"}, dc), 400, "invalid_grant")
		checkError(t, "missing device_code", devicePoll(t, srv, demoDevice, ""), 400, "invalid_request")
		checkError(t, "a CIBA-only client", devicePoll(t, srv, testutil.DemoPoll, dc), 400, "unauthorized_client")
		checkError(t, "the device_code as auth_req_id", post(t, srv, "/token", demoDevice, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {dc}}), 400, "invalid_grant")
	})

	t.Run("approved on the page: tokens once, the code used once", func(t *testing.T) {
		dc, uc := deviceStart(t, srv, testutil.Client{ID: "demo-tv"}, "openid email")
		if !regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`).MatchString(uc) {
			t.Errorf("user_code %q, want XXXX-XXXX of consonants", uc)
		}
		p := newPage(t, srv)
		status, body, csrf := p.enter(strings.ToLower(strings.ReplaceAll(uc, "-", "")))
		if status != 200 || !strings.Contains(body, "Demo TV") || !strings.Contains(body, "Your email address") || !strings.Contains(body, uc) {
			t.Fatalf("approval form: %d\n%s", status, body)
		}
		if s, _ := p.decide(uc, csrf, "approve", "alice", "bob-password"); s != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", s)
		}
		if s, _ := p.decide(uc, "forged", "approve", "alice", "alice-password"); s != http.StatusForbidden {
			t.Fatalf("forged CSRF token: %d", s)
		}
		if s, b := p.decide(uc, csrf, "approve", "alice", "alice-password"); s != 200 || !strings.Contains(b, "approved") {
			t.Fatalf("approve: %d\n%s", s, b)
		}
		if s, _ := p.decide(uc, csrf, "approve", "bob", "bob-password"); s != http.StatusConflict {
			t.Fatalf("second approval of the same user code: %d, want 409", s)
		}
		if s, _, _ := newPage(t, srv).enter(uc); s != http.StatusConflict {
			t.Fatalf("the used code entered again: %d, want 409", s)
		}
		r := pollUntil(t, srv, testutil.Client{ID: "demo-tv"}, dc)
		checkTokens(t, "device tokens", r)
		if sub := jwtClaim(t, r.Str("id_token"), "sub"); sub != "alice" {
			t.Errorf("id_token sub %q, want alice (who approved)", sub)
		}
		if aud := jwtClaim(t, r.Str("id_token"), "aud"); aud != "demo-tv" {
			t.Errorf("id_token aud %q", aud)
		}
		if strings.Contains(string(r.Body), dc) {
			t.Error("the token response carries the device_code")
		}
		time.Sleep(1100 * time.Millisecond)
		checkError(t, "second redemption", devicePoll(t, srv, testutil.Client{ID: "demo-tv"}, dc), 400, "invalid_grant")
	})

	t.Run("denied is access_denied", func(t *testing.T) {
		dc, uc := deviceStart(t, srv, demoDevice, "openid")
		p := newPage(t, srv)
		_, _, csrf := p.enter(uc)
		if s, b := p.decide(uc, csrf, "deny", "", ""); s != 200 || !strings.Contains(b, "denied") {
			t.Fatalf("deny: %d\n%s", s, b)
		}
		checkError(t, "denied", pollUntil(t, srv, demoDevice, dc), 400, "access_denied")
	})

	if strings.Contains(srv.Logs(), "demo-cli-secret") || strings.Contains(srv.Logs(), "alice-password") {
		t.Error("a secret reached the log")
	}
}

func TestDeviceExpiredAndGuessing(t *testing.T) {
	t.Parallel()
	srv := startDevice(t, "CIBAPROXY_DEVICE_EXPIRY=2s")

	t.Run("an expired code is expired_token, and the page says so", func(t *testing.T) {
		dc, uc := deviceStart(t, srv, demoDevice, "openid")
		checkError(t, "expired", pollUntil(t, srv, demoDevice, dc), 400, "expired_token")
		if s, b, _ := newPage(t, srv).enter(uc); s != http.StatusGone || !strings.Contains(b, "expired") {
			t.Fatalf("page: %d\n%s", s, b)
		}
	})

	t.Run("user-code guessing is stopped after 5 wrong codes", func(t *testing.T) {
		_, uc := deviceStart(t, srv, demoDevice, "openid")
		p := newPage(t, srv)
		for i := range 5 {
			s, b, _ := p.enter("BBBB-BBB" + string("BCDFG"[i]))
			if s != http.StatusNotFound || !strings.Contains(b, "not valid") {
				t.Fatalf("wrong code %d: %d\n%s", i, s, b)
			}
		}
		// The right code too, from any browser at this address: the guesser learns nothing.
		if s, b, _ := newPage(t, srv).enter(uc); s != http.StatusTooManyRequests || !strings.Contains(b, "Too many") {
			t.Fatalf("after 5 wrong codes: %d, want 429\n%s", s, b)
		}
	})
}

// jwtClaim returns a string (or first-of-array) claim of a JWT, unverified
// (test/interop verifies signatures).
func jwtClaim(t *testing.T, jwt, name string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	switch v := m[name].(type) {
	case string:
		return v
	case []any:
		if len(v) > 0 {
			s, _ := v[0].(string)
			return s
		}
	}
	return ""
}
