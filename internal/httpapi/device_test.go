package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// deviceAuth authenticates "tv" with Basic tv:tv-secret; anything else is
// invalid_client.
type deviceAuth struct{}

var (
	tv       = &ciba.Client{ID: "tv", Name: "Living-room TV"}
	cli      = &ciba.Client{ID: "cli", Name: "Public CLI"}
	noDevice = &ciba.Client{ID: "bank", Name: "Example Bank", Mode: ciba.ModePoll}
)

func (deviceAuth) Authenticate(_ context.Context, r *http.Request, _ url.Values, _ string) (*ciba.Client, error) {
	id, secret, ok := r.BasicAuth()
	switch {
	case ok && id == "tv" && secret == "tv-secret":
		return tv, nil
	case ok && id == "bank" && secret == "bank-secret":
		return noDevice, nil
	}
	return nil, &ciba.Error{Code: ciba.CodeInvalidClient, Description: "client authentication failed"}
}
func (deviceAuth) RequestObject(context.Context, *ciba.Client, string) (map[string]any, error) {
	return nil, nil
}
func (deviceAuth) RequiresSignedRequest(*ciba.Client) bool { return false }

// testClock is a settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type deviceEnv struct {
	srv   *httptest.Server
	st    ciba.Store
	clock *testClock
	idp   *fakeIdP
	// approval is the pages' Approval, for a test to add Passkeys.
	approval *Approval
}

func newDeviceEnv(t *testing.T, federated bool) *deviceEnv {
	t.Helper()
	return newDeviceEnvWith(t, deviceOpts{federated: federated})
}

// deviceOpts are what newDeviceEnvWith sets up besides newDeviceEnv's.
type deviceOpts struct {
	federated bool
	// upstream replaces fakeUpstream{} as the service's Upstream.
	upstream ciba.Upstream
	// details are the authorization_details types (Config.AuthzDetails).
	details *authzdetails.Registry
	// templates are the operator's templates of the device page.
	templates *authzdetails.Templates
	// clients are more clients, each with the device grant, that
	// authenticate with Basic id:id-secret.
	clients []*ciba.Client
	// validator is the service's validation hook (Deps.Validator).
	validator ciba.Validator
	// limits are the server's abuse limits (Server.Limits); nil: none.
	limits *Limits
	// signed are the ids of clients (of clients) that must send signed
	// authentication requests (Clients.RequiresSignedRequest).
	signed []string
}

// extraAuth authenticates the clients of deviceOpts.clients, and
// otherwise as deviceAuth.
type extraAuth map[string]*ciba.Client

func (x extraAuth) Authenticate(ctx context.Context, r *http.Request, form url.Values, endpoint string) (*ciba.Client, error) {
	if id, secret, ok := r.BasicAuth(); ok && x[id] != nil && secret == id+"-secret" {
		return x[id], nil
	}
	return deviceAuth{}.Authenticate(ctx, r, form, endpoint)
}
func (extraAuth) RequestObject(context.Context, *ciba.Client, string) (map[string]any, error) {
	return nil, nil
}
func (extraAuth) RequiresSignedRequest(*ciba.Client) bool { return false }

// signedAuth is extraAuth whose clients named in signed must send signed
// authentication requests.
type signedAuth struct {
	extraAuth
	signed []string
}

func (s signedAuth) RequiresSignedRequest(c *ciba.Client) bool {
	return slices.Contains(s.signed, c.ID)
}

func newDeviceEnvWith(t *testing.T, o deviceOpts) *deviceEnv {
	t.Helper()
	federated := o.federated
	e := &deviceEnv{st: memory.New(), clock: &testClock{t: time.Now()}}
	key := make([]byte, 32)
	rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	clients := map[string]*ciba.Client{tv.ID: tv, cli.ID: cli, noDevice.ID: noDevice}
	extra := extraAuth{}
	for _, c := range o.clients {
		clients[c.ID], extra[c.ID] = c, c
	}
	var up ciba.Upstream = fakeUpstream{}
	if o.upstream != nil {
		up = o.upstream
	}
	deps := ciba.Deps{
		Store: e.st, Upstream: up, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
		Clients: func(id string) (*ciba.Client, bool) { c, ok := clients[id]; return c, ok }, CallbackKey: key, Now: e.clock.Now,
		Validator: o.validator,
	}
	if federated {
		deps.Minter = nil
	}
	svc, err := ciba.NewService(ciba.Config{
		DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20,
		ExpiredGrace: time.Hour, AuthzDetails: authzdetails.NewLive(authzdetails.Set{Registry: o.details}),
	}, deps)
	if err != nil {
		t.Fatal(err)
	}
	grant, err := ciba.NewDevice(svc, ciba.DeviceConfig{
		VerificationURI: "http://op.test/device",
		Enabled:         func(id string) bool { return id == tv.ID || id == cli.ID || extra[id] != nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	approval := &Approval{Service: svc, Passwords: fakeUpstream{}, Key: key, Logger: discard(), DetailTemplates: authzdetails.NewLive(authzdetails.Set{Templates: o.templates})}
	e.approval = approval
	if federated {
		e.idp = &fakeIdP{logins: map[string]Login{}}
		approval.Passwords, approval.Federation, approval.Logins = nil, e.idp, e.st
	}
	var auth Authenticator = extra
	if len(o.signed) > 0 {
		auth = signedAuth{extra, o.signed}
	}
	s := &Server{
		Issuer: "http://op.test", Service: svc, Clients: auth, Approval: approval, Logger: discard(), Now: e.clock.Now, Limits: o.limits,
		Device: &Device{
			Grant: grant, Approval: approval, PerIP: 5, Global: 8, Now: e.clock.Now,
			ClientIP: func(r *http.Request) string {
				if ip := r.Header.Get("X-Test-IP"); ip != "" {
					return ip
				}
				host, _, _ := strings.Cut(r.RemoteAddr, ":")
				return host
			},
			Public: func(id string) (*ciba.Client, bool) { return cli, id == cli.ID },
		},
	}
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// call POSTs form to path with optional Basic credentials and decodes the JSON answer.
func (e *deviceEnv) call(t *testing.T, path, user string, form url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, user+"-secret")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s: not JSON: %v", path, err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q, want no-store", path, cc)
	}
	return resp.StatusCode, m
}

func (e *deviceEnv) start(t *testing.T, user string, form url.Values) (deviceCode, userCode string) {
	t.Helper()
	status, m := e.call(t, PathDeviceAuthorization, user, form)
	if status != 200 {
		t.Fatalf("device authorization: %d %v", status, m)
	}
	return m["device_code"].(string), m["user_code"].(string)
}

func (e *deviceEnv) poll(t *testing.T, user, deviceCode string, extra url.Values) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {GrantDeviceCode}, "device_code": {deviceCode}}
	for k, v := range extra {
		form[k] = v
	}
	return e.call(t, PathToken, user, form)
}

func TestDeviceAuthorizationEndpoint(t *testing.T) {
	e := newDeviceEnv(t, false)
	status, m := e.call(t, PathDeviceAuthorization, "tv", url.Values{"scope": {"openid profile"}})
	if status != 200 {
		t.Fatalf("%d %v", status, m)
	}
	uc, _ := m["user_code"].(string)
	if m["verification_uri"] != "http://op.test/device" || m["verification_uri_complete"] != "http://op.test/device?user_code="+uc ||
		m["expires_in"] != 600.0 || m["interval"] != 5.0 || len(m["device_code"].(string)) < 32 {
		t.Fatalf("response %v", m)
	}
	for _, tc := range []struct {
		name, user string
		form       url.Values
		status     int
		code       ciba.ErrorCode
	}{
		{"a wrong secret is invalid_client", "nobody", url.Values{}, 401, ciba.CodeInvalidClient},
		{"no credentials and not public is invalid_client", "", url.Values{"client_id": {"tv"}}, 401, ciba.CodeInvalidClient},
		{"a client without the grant is unauthorized_client", "bank", url.Values{}, 400, ciba.CodeUnauthorizedClient},
		{"an unknown scope is invalid_scope", "tv", url.Values{"scope": {"bad\"scope"}}, 400, ciba.CodeInvalidScope},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, m := e.call(t, PathDeviceAuthorization, tc.user, tc.form)
			if status != tc.status || m["error"] != string(tc.code) {
				t.Fatalf("%d %v, want %d %s", status, m, tc.status, tc.code)
			}
		})
	}
	t.Run("a public client authenticates with its client_id alone", func(t *testing.T) {
		status, m := e.call(t, PathDeviceAuthorization, "", url.Values{"client_id": {"cli"}})
		if status != 200 || m["device_code"] == nil {
			t.Fatalf("%d %v", status, m)
		}
	})
}

// browser is a cookie-keeping client that does not follow redirects.
// approveFederated posts the approval form on the device page, which must
// send the browser c to the identity provider, and then completes the
// provider's callback in c, which must say approved.
func (e *deviceEnv) approveFederated(t *testing.T, c *http.Client, form url.Values) {
	t.Helper()
	s, _, resp := e.page(t, c, http.MethodPost, "", form)
	loc := resp.Header.Get("Location")
	if s != http.StatusSeeOther || !strings.HasPrefix(loc, "https://idp.test/authorize?") {
		t.Fatalf("approve: %d to %q", s, loc)
	}
	u, _ := url.Parse(loc)
	cb, err := c.Get(e.srv.URL + PathApproveCallback + "?code=good&state=" + url.QueryEscape(u.Query().Get("state")))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(cb.Body)
	cb.Body.Close()
	if cb.StatusCode != http.StatusOK || !strings.Contains(string(b), "approved") {
		t.Fatalf("callback: %d\n%s", cb.StatusCode, b)
	}
}

func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *deviceEnv) page(t *testing.T, c *http.Client, method, query string, form url.Values) (int, string, *http.Response) {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodGet {
		resp, err = c.Get(e.srv.URL + PathDevice + query)
	} else {
		resp, err = c.PostForm(e.srv.URL+PathDevice+query, form)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

// enter opens the page and submits code; it returns the status, the page and its CSRF field.
func (e *deviceEnv) enter(t *testing.T, c *http.Client, code string) (int, string, string) {
	t.Helper()
	status, body, _ := e.page(t, c, http.MethodGet, "?user_code="+url.QueryEscape(code), nil)
	m := csrfField.FindStringSubmatch(body)
	if status != 200 || m == nil || !strings.Contains(body, `value="`+code+`"`) {
		t.Fatalf("GET /device: %d, prefilled code missing\n%s", status, body)
	}
	status, body, _ = e.page(t, c, http.MethodPost, "", url.Values{"csrf": {m[1]}, "user_code": {code}, "action": {"continue"}})
	csrf := ""
	if m := csrfField.FindStringSubmatch(body); m != nil {
		csrf = m[1]
	}
	return status, body, csrf
}

func TestDeviceFlowOverHTTP(t *testing.T) {
	e := newDeviceEnv(t, false)
	dc, uc := e.start(t, "tv", url.Values{"scope": {"openid email"}})

	if status, m := e.poll(t, "tv", dc, nil); status != 400 || m["error"] != "authorization_pending" {
		t.Fatalf("first poll: %d %v", status, m)
	}
	if status, m := e.poll(t, "tv", dc, nil); status != 400 || m["error"] != "slow_down" {
		t.Fatalf("early poll: %d %v", status, m)
	}
	if status, m := e.poll(t, "bank", dc, nil); status != 400 || m["error"] != "unauthorized_client" {
		t.Fatalf("client without the grant: %d %v", status, m)
	}
	if status, m := e.poll(t, "tv", "", nil); status != 400 || m["error"] != "invalid_request" {
		t.Fatalf("no device_code: %d %v", status, m)
	}

	c := browser()
	status, body, csrf := e.enter(t, c, strings.ToLower(uc))
	for _, want := range []string{"Living-room TV", uc, "Confirm who you are", "Your email address", `name="username"`, `name="password"`} {
		if !strings.Contains(body, want) {
			t.Errorf("approval form lacks %q", want)
		}
	}
	if status != 200 || csrf == "" {
		t.Fatalf("continue: %d\n%s", status, body)
	}
	approve := func(c *http.Client, csrf, user, pw string) (int, string) {
		s, b, _ := e.page(t, c, http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}, "username": {user}, "password": {pw}})
		return s, b
	}
	if s, b := approve(browser(), csrf, "alice", "alice-password"); s != http.StatusForbidden {
		t.Fatalf("approve from a browser without the cookie (CSRF): %d\n%s", s, b)
	}
	if s, _ := approve(c, "forged", "alice", "alice-password"); s != http.StatusForbidden {
		t.Fatalf("forged CSRF token: %d", s)
	}
	if s, b := approve(c, csrf, "alice", "wrong"); s != http.StatusUnauthorized || !strings.Contains(b, "not right") {
		t.Fatalf("wrong password: %d\n%s", s, b)
	}
	if s, b := approve(c, csrf, "alice", "alice-password"); s != 200 || !strings.Contains(b, "approved") {
		t.Fatalf("approve: %d\n%s", s, b)
	}
	stored, _ := e.st.GetRequest(context.Background(), dc)
	if stored.Subject != "sub-alice" || stored.Status != ciba.StatusApproved {
		t.Fatalf("stored %+v", stored)
	}
	if s, b := approve(c, csrf, "bob", "bob-password"); s != http.StatusConflict {
		t.Fatalf("second approval of the same code: %d, want 409\n%s", s, b)
	}
	if s, b, _ := e.enter(t, browser(), uc); s != http.StatusConflict || !strings.Contains(b, "already used") {
		t.Fatalf("entering a used code: %d\n%s", s, b)
	}

	e.clock.Add(time.Minute)
	if status, m := e.poll(t, "nobody", dc, nil); status != 401 || m["error"] != "invalid_client" {
		t.Fatalf("wrong client credentials: %d %v", status, m)
	}
	status, m := e.poll(t, "tv", dc, nil)
	if status != 200 || m["access_token"] != "at" || m["token_type"] != "Bearer" {
		t.Fatalf("tokens: %d %v", status, m)
	}
	if status, m := e.poll(t, "tv", dc, nil); status != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("second redemption: %d %v", status, m)
	}
	// The device code is no auth_req_id.
	if status, m := e.call(t, PathToken, "tv", url.Values{"grant_type": {GrantCIBA}, "auth_req_id": {dc}}); status != 400 || m["error"] != "invalid_grant" {
		t.Fatalf("device_code as auth_req_id: %d %v", status, m)
	}
}

func TestDeviceDeniedExpiredAndPublic(t *testing.T) {
	e := newDeviceEnv(t, false)
	t.Run("deny is access_denied", func(t *testing.T) {
		dc, uc := e.start(t, "tv", nil)
		c := browser()
		_, _, csrf := e.enter(t, c, uc)
		if s, b, _ := e.page(t, c, http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"deny"}}); s != 200 || !strings.Contains(b, "denied") {
			t.Fatalf("deny: %d\n%s", s, b)
		}
		if status, m := e.poll(t, "tv", dc, nil); status != 400 || m["error"] != "access_denied" {
			t.Fatalf("%d %v", status, m)
		}
	})
	t.Run("a public client polls with its client_id", func(t *testing.T) {
		status, m := e.call(t, PathDeviceAuthorization, "", url.Values{"client_id": {"cli"}})
		if status != 200 {
			t.Fatal(m)
		}
		if status, m := e.call(t, PathToken, "", url.Values{"client_id": {"cli"}, "grant_type": {GrantDeviceCode}, "device_code": {m["device_code"].(string)}}); status != 400 || m["error"] != "authorization_pending" {
			t.Fatalf("%d %v", status, m)
		}
		if status, m := e.call(t, PathToken, "", url.Values{"client_id": {"cli"}, "grant_type": {GrantCIBA}, "auth_req_id": {"x"}}); status != 401 || m["error"] != "invalid_client" {
			t.Fatalf("a public client at the CIBA grant: %d %v", status, m)
		}
	})
	t.Run("expired is expired_token and the page says so", func(t *testing.T) {
		dc, uc := e.start(t, "tv", nil)
		e.clock.Add(11 * time.Minute)
		if status, m := e.poll(t, "tv", dc, nil); status != 400 || m["error"] != "expired_token" {
			t.Fatalf("%d %v", status, m)
		}
		if s, b, _ := e.enter(t, browser(), uc); s != http.StatusGone || !strings.Contains(b, "expired") {
			t.Fatalf("entering an expired code: %d\n%s", s, b)
		}
	})
}

func TestDeviceUserCodeGuessingLimited(t *testing.T) {
	e := newDeviceEnv(t, false)
	_, uc := e.start(t, "tv", nil)
	c := browser()
	for i := range 5 {
		s, b, _ := e.enter(t, c, "BBBB-BBB"+string("BCDFG"[i]))
		if s != http.StatusNotFound || !strings.Contains(b, "not valid") {
			t.Fatalf("wrong code %d: %d\n%s", i, s, b)
		}
	}
	s, b, _ := e.enter(t, c, uc)
	if s != http.StatusTooManyRequests || !strings.Contains(b, "Too many") {
		t.Fatalf("the right code after 5 wrong ones from this address: %d, want 429\n%s", s, b)
	}
	_, _, resp := e.page(t, c, http.MethodPost, "", url.Values{"user_code": {uc}, "action": {"approve"}})
	wait, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || err != nil || wait < 1 || wait > 60 {
		t.Fatalf("approve while limited: %d, Retry-After %q; want 429 and 1 to 60 seconds", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Retry-After is enough: the wait it names is rounded up.
	e.clock.Add(time.Duration(wait) * time.Second)
	if s, b, _ := e.enter(t, c, uc); s != 200 || !strings.Contains(b, "Living-room TV") {
		t.Fatalf("after the %d s of Retry-After the right code works: %d\n%s", wait, s, b)
	}
	t.Run("the global limit holds across addresses", func(t *testing.T) {
		e.clock.Add(time.Minute)
		try := func(ip, code string) int {
			c := browser()
			_, body, _ := e.page(t, c, http.MethodGet, "", nil)
			m := csrfField.FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("no CSRF field\n%s", body)
			}
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+PathDevice, strings.NewReader(url.Values{"user_code": {code}, "action": {"continue"}, "csrf": {m[1]}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Test-IP", ip)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		// Global is 8 wrong codes per minute; each address may make 5.
		for i := range 8 {
			if s := try("192.0.2."+string(rune('1'+i)), "ZZZZ-ZZZZ"); s != http.StatusNotFound {
				t.Fatalf("wrong code %d: %d", i, s)
			}
		}
		if s := try("198.51.100.1", uc); s != http.StatusTooManyRequests {
			t.Fatalf("a fresh address after 8 wrong codes in all: %d, want 429", s)
		}
	})
}

func TestDeviceClientIPKey(t *testing.T) {
	d := &Device{}
	for remote, want := range map[string]string{
		"192.0.2.7:1234":             "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.9]:80":      "192.0.2.9",
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if got := d.clientIP(r); got != want {
			t.Errorf("%s: %q, want %q", remote, got, want)
		}
	}
}

func TestDeviceFederatedApproval(t *testing.T) {
	e := newDeviceEnv(t, true)
	dc, uc := e.start(t, "tv", nil)
	c := browser()
	s, body, csrf := e.enter(t, c, uc)
	if s != 200 || !strings.Contains(body, "identity provider") || strings.Contains(body, `name="password"`) {
		t.Fatalf("federated form: %d\n%s", s, body)
	}
	e.approveFederated(t, c, url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}})
	e.clock.Add(time.Minute)
	if status, m := e.poll(t, "tv", dc, nil); status != 200 || m["access_token"] != "idp-at" {
		t.Fatalf("the IdP's tokens: %d %v", status, m)
	}
}

func TestApprovalPageRefusesDeviceRequests(t *testing.T) {
	e := newDeviceEnv(t, false)
	dc, _ := e.start(t, "tv", nil)
	r, _ := e.st.GetRequest(context.Background(), dc)
	resp, err := http.Get(e.srv.URL + PathApprove + r.ApprovalID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /approve/{device request}: %d, want 404", resp.StatusCode)
	}
}
