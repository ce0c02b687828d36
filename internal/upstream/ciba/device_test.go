package cibaup

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	upidp "github.com/cibaproxy/cibaproxy/internal/upstream/idp"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp/idptest"
	"github.com/cibaproxy/cibaproxy/test/idp"
)

const upstreamDeviceCode = "upstream-device-code-do-not-leak"

// deviceIdP is a CIBA IdP that also has the device grant: discovery lists
// device_authorization_endpoint; the device endpoint and the token
// endpoint answer as scripted and record what they received.
type deviceIdP struct {
	srv *httptest.Server

	mu       sync.Mutex
	device   http.HandlerFunc // nil: a fixed device authorization response
	token    http.HandlerFunc // nil: a fixed token response
	received []received
}

func newDeviceIdP(t *testing.T) *deviceIdP {
	t.Helper()
	op := &deviceIdP{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		iss := op.srv.URL
		idptest.WriteJSON(w, http.StatusOK, map[string]any{
			"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token", "jwks_uri": iss + "/jwks",
			"backchannel_authentication_endpoint": iss + "/bc-authorize", "device_authorization_endpoint": iss + "/device/auth",
		})
	})
	handle := func(path string, h func() http.HandlerFunc, def http.HandlerFunc) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			op.mu.Lock()
			op.received = append(op.received, received{Path: r.URL.Path, Form: r.PostForm, Header: r.Header.Clone()})
			f := h()
			op.mu.Unlock()
			if f == nil {
				f = def
			}
			f(w, r)
		})
	}
	handle("/device/auth", func() http.HandlerFunc { return op.device }, func(w http.ResponseWriter, _ *http.Request) {
		idptest.WriteJSON(w, http.StatusOK, map[string]any{
			"device_code": upstreamDeviceCode, "user_code": "WDJB-MJHT", "verification_uri": "https://idp.example/device",
			"verification_uri_complete": "https://idp.example/device?user_code=WDJB-MJHT", "expires_in": 600, "interval": 7,
		})
	})
	handle("/token", func() http.HandlerFunc { return op.token }, answer(http.StatusOK, tokensJSON))
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func (op *deviceIdP) set(f func(*deviceIdP)) { op.mu.Lock(); defer op.mu.Unlock(); f(op) }

func (op *deviceIdP) last() received {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.received[len(op.received)-1]
}

func newDeviceUpstream(t *testing.T, op *deviceIdP) *Upstream {
	t.Helper()
	u, err := New(context.Background(), Config{
		Issuer:  op.srv.URL,
		Clients: map[string]Credentials{cibaClient: {Credentials: upidp.Credentials{ClientID: idpClient, ClientSecret: idpSecret}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestStartDeviceForwardsAndPassesTheIdPsCodes(t *testing.T) {
	op := newDeviceIdP(t)
	u := newDeviceUpstream(t, op)
	st, err := u.StartDevice(context.Background(), clientOf(cibaClient), "openid email")
	if err != nil {
		t.Fatal(err)
	}
	want := ciba.DeviceRelayStarted{
		DeviceCode: upstreamDeviceCode, UserCode: "WDJB-MJHT", VerificationURI: "https://idp.example/device",
		VerificationURIComplete: "https://idp.example/device?user_code=WDJB-MJHT", ExpiresIn: 600 * time.Second, Interval: 7 * time.Second,
	}
	if st != want {
		t.Errorf("started = %+v, want %+v", st, want)
	}
	got := op.last()
	if got.Path != "/device/auth" || got.Form.Get("scope") != "openid email" {
		t.Errorf("IdP received %s %v", got.Path, got.Form)
	}
	checkClientAuth(t, got, true)
}

func TestStartDeviceValidatesTheIdPsAnswer(t *testing.T) {
	for name, body := range map[string]string{
		"no device_code":        `{"user_code":"A","verification_uri":"https://i/d","expires_in":60}`,
		"no user_code":          `{"device_code":"d","verification_uri":"https://i/d","expires_in":60}`,
		"no verification_uri":   `{"device_code":"d","user_code":"A","expires_in":60}`,
		"zero expires_in":       `{"device_code":"d","user_code":"A","verification_uri":"https://i/d","expires_in":0}`,
		"negative interval":     `{"device_code":"d","user_code":"A","verification_uri":"https://i/d","expires_in":60,"interval":-1}`,
		"uri_complete a number": `{"device_code":"d","user_code":"A","verification_uri":"https://i/d","verification_uri_complete":1,"expires_in":60}`,
		"not JSON":              `<html>`,
	} {
		t.Run(name, func(t *testing.T) {
			op := newDeviceIdP(t)
			op.set(func(op *deviceIdP) { op.device = answer(http.StatusOK, body) })
			_, err := newDeviceUpstream(t, op).StartDevice(context.Background(), clientOf(cibaClient), "openid")
			if !errors.Is(err, ciba.ErrUnavailable) {
				t.Errorf("err = %v, want ErrUnavailable", err)
			}
		})
	}
}

func TestStartDeviceRefusalsMapAsForCIBA(t *testing.T) {
	op := newDeviceIdP(t)
	op.set(func(op *deviceIdP) {
		op.device = answer(http.StatusBadRequest, `{"error":"invalid_scope","error_description":"no such scope"}`)
	})
	u := newDeviceUpstream(t, op)
	_, err := u.StartDevice(context.Background(), clientOf(cibaClient), "nope")
	var ce *ciba.Error
	if !errors.As(err, &ce) || ce.Code != ciba.CodeInvalidScope || !strings.HasPrefix(ce.Description, "the identity provider answered:") {
		t.Errorf("err = %v, want invalid_scope from the identity provider", err)
	}
	op.set(func(op *deviceIdP) { op.device = answer(http.StatusBadGateway, `oops`) })
	if _, err := u.StartDevice(context.Background(), clientOf(cibaClient), "openid"); !errors.Is(err, ciba.ErrUnavailable) {
		t.Errorf("502: err = %v, want ErrUnavailable", err)
	}
}

func TestAnIdPWithoutTheDeviceEndpoint(t *testing.T) {
	op := newTestIdP(t) // discovery without device_authorization_endpoint
	u, _ := newTestUpstream(t, op, nil)
	if _, err := u.DeviceAuthorizationEndpoint(context.Background()); !errors.Is(err, ErrNoDeviceEndpoint) {
		t.Errorf("DeviceAuthorizationEndpoint: %v, want ErrNoDeviceEndpoint", err)
	}
	if _, err := u.StartDevice(context.Background(), clientOf(cibaClient), "openid"); !errors.Is(err, ErrNoDeviceEndpoint) {
		t.Errorf("StartDevice: %v, want ErrNoDeviceEndpoint", err)
	}
}

func TestPollDeviceSendsTheDeviceCodeGrant(t *testing.T) {
	op := newDeviceIdP(t)
	u := newDeviceUpstream(t, op)
	res, err := u.PollDevice(context.Background(), clientOf(cibaClient), upstreamDeviceCode)
	if err != nil || string(res.Tokens) != tokensJSON {
		t.Fatalf("PollDevice: %+v %v", res, err)
	}
	got := op.last()
	if got.Path != "/token" || got.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" || got.Form.Get("device_code") != upstreamDeviceCode {
		t.Errorf("IdP received %s %v", got.Path, got.Form)
	}
	checkClientAuth(t, got, true)
}

func TestPollDeviceResults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		pending bool
		slow    bool
		code    ciba.ErrorCode
		down    bool
	}{
		{name: "authorization_pending is a result", status: 400, body: `{"error":"authorization_pending"}`, pending: true},
		{name: "slow_down is a result", status: 400, body: `{"error":"slow_down"}`, slow: true},
		{name: "access_denied is access_denied", status: 400, body: `{"error":"access_denied"}`, code: ciba.CodeAccessDenied},
		{name: "expired_token is expired_token", status: 400, body: `{"error":"expired_token"}`, code: ciba.CodeExpiredToken},
		{name: "invalid_grant quoting the device_code does not leak it", status: 400, body: `{"error":"invalid_grant","error_description":"` + upstreamDeviceCode + ` unknown"}`, code: ciba.CodeInvalidGrant},
		{name: "5xx is unavailable", status: 503, body: `{}`, down: true},
		{name: "429 is unavailable", status: 429, body: `{"error":"slow_down"}`, down: true},
		{name: "a 200 without tokens is unavailable", status: 200, body: `{"token_type":"Bearer"}`, down: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newDeviceIdP(t)
			op.set(func(op *deviceIdP) { op.token = answer(tc.status, tc.body) })
			res, err := newDeviceUpstream(t, op).PollDevice(context.Background(), clientOf(cibaClient), upstreamDeviceCode)
			if err != nil && strings.Contains(err.Error(), upstreamDeviceCode) {
				t.Errorf("the error quotes the device_code: %v", err)
			}
			switch {
			case tc.down:
				if !errors.Is(err, ciba.ErrUnavailable) {
					t.Errorf("err = %v, want ErrUnavailable", err)
				}
			case tc.code != "":
				var ce *ciba.Error
				if !errors.As(err, &ce) || ce.Code != tc.code {
					t.Errorf("err = %v, want %s", err, tc.code)
				}
			default:
				if err != nil || res.Pending != tc.pending || res.SlowDown != tc.slow {
					t.Errorf("res, err = %+v, %v", res, err)
				}
			}
		})
	}
}

// TestDeviceAgainstNodeOIDCProvider relays a device request to a real IdP
// with the device grant (node-oidc-provider, test/idp): the IdP's codes come
// back, the device_code grant is pending until the user confirms the code
// and signs in on the IdP's own verification page, then it gives the IdP's
// tokens.
func TestDeviceAgainstNodeOIDCProvider(t *testing.T) {
	const secret = "device-secret-do-not-leak"
	p := idp.Start(t, idp.Config{
		Clients:  []idp.Client{{ID: "relay-device", Secret: secret, GrantTypes: []string{idp.GrantDeviceCode, idp.GrantCIBA}}},
		Accounts: []idp.Account{{ID: "alice", Password: "alice-pw", Email: "alice@example.com", EmailVerified: true}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, err := New(ctx, Config{Issuer: p.Issuer(), Clients: map[string]Credentials{"tv": {Credentials: upidp.Credentials{ClientID: "relay-device", ClientSecret: secret}}}})
	if err != nil {
		t.Fatal(err)
	}
	if ep, err := u.DeviceAuthorizationEndpoint(ctx); err != nil || !strings.HasPrefix(ep, p.Issuer()) {
		t.Fatalf("DeviceAuthorizationEndpoint: %q %v", ep, err)
	}
	st, err := u.StartDevice(ctx, clientOf("tv"), "openid email")
	if err != nil {
		t.Fatal(err)
	}
	if st.DeviceCode == "" || st.UserCode == "" || !strings.HasPrefix(st.VerificationURI, p.Issuer()) ||
		!strings.HasPrefix(st.VerificationURIComplete, st.VerificationURI) || st.ExpiresIn <= 0 {
		t.Fatalf("started: %+v", st)
	}
	res, err := u.PollDevice(ctx, clientOf("tv"), st.DeviceCode)
	if err != nil || !res.Pending {
		t.Fatalf("before approval: %+v %v, want authorization_pending", res, err)
	}
	approveDevice(t, ctx, st.VerificationURIComplete, "alice", "alice-pw")
	res, err = u.PollDevice(ctx, clientOf("tv"), st.DeviceCode)
	if err != nil || res.Tokens == nil {
		t.Fatalf("after approval: %+v %v, want tokens", res, err)
	}
	if _, err := u.PollDevice(ctx, clientOf("tv"), st.DeviceCode); err == nil {
		t.Error("the IdP gave the tokens of a device_code twice")
	}
}

// approveDevice plays the user at the IdP: it opens verification_uri_complete,
// confirms the code, signs in and ends on the IdP's success page (which has
// no form, so idp.Login reports it as an error naming the page).
func approveDevice(t *testing.T, ctx context.Context, uri, account, password string) {
	t.Helper()
	_, err := idp.Login(ctx, &http.Client{Timeout: 10 * time.Second}, uri, account, password)
	if err == nil || !strings.Contains(err.Error(), "Sign-in Success") {
		t.Fatalf("device verification at the IdP did not end on its success page: %v", err)
	}
}
