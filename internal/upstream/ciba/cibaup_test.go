package cibaup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
)

func TestConfigIsValidated(t *testing.T) {
	op := newTestIdP(t)
	for name, edit := range map[string]func(*Config){
		"issuer is required":     func(c *Config) { c.Issuer = "" },
		"issuer must be http(s)": func(c *Config) { c.Issuer = "ftp://idp.example" },
		"issuer has no query":    func(c *Config) { c.Issuer += "?x=1" },
		"a client is required":   func(c *Config) { c.Clients = nil },
		"a client needs its IdP secret": func(c *Config) {
			c.Clients[cibaClient] = Credentials{Credentials: idp.Credentials{ClientID: idpClient}}
		},
		"a client needs its IdP client_id": func(c *Config) {
			c.Clients[cibaClient] = Credentials{Credentials: idp.Credentials{ClientSecret: idpSecret}}
		},
		"auth method is basic, post or none": func(c *Config) {
			c.Clients[cibaClient] = Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret, AuthMethod: "private_key_jwt"}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(op)
			edit(&cfg)
			if _, err := New(context.Background(), cfg); err == nil {
				t.Fatal("New accepted the configuration")
			} else if strings.Contains(err.Error(), idpSecret) {
				t.Fatalf("the error quotes the secret: %v", err)
			}
		})
	}
}

func TestNewRefusesAMisconfiguredIdP(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(op *testIdP)
		want string
	}{
		{"an issuer mismatch fails New", func(op *testIdP) { op.issuerOverride = op.issuer() + "/" }, "cibaup: issuer %q: the identity provider calls itself"},
		{"an IdP without CIBA fails New", func(op *testIdP) { op.noBackchannel = true }, "cibaup: issuer %q: the identity provider does not publish CIBA endpoints (backchannel_authentication_endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newTestIdP(t)
			op.set(tc.edit)
			_, err := New(context.Background(), testConfig(op))
			if want := fmt.Sprintf(tc.want, op.issuer()); err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("New = %v, want an error starting %q", err, want)
			}
		})
	}
}

func TestDiscoveryIsRetriedLazilyWithBackoff(t *testing.T) {
	op := newTestIdP(t)
	op.set(func(op *testIdP) { op.discoveryDown = true })
	var logs bytes.Buffer
	u, clk := newTestUpstream(t, op, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := context.Background()

	if err := u.Ready(ctx); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Ready with the IdP down = %v, want ErrUnavailable", err)
	}
	if _, err := u.Metadata(ctx); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Metadata with the IdP down = %v, want ErrUnavailable", err)
	}
	if _, err := u.Start(ctx, clientOf(cibaClient), ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, ""); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Start with the IdP down = %v, want ErrUnavailable", err)
	}
	if _, err := u.Poll(ctx, clientOf(cibaClient), upstreamID); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Poll with the IdP down = %v, want ErrUnavailable", err)
	}
	if len(op.sent()) != 0 {
		t.Fatal("a CIBA endpoint was called before discovery")
	}

	// The backoff itself is tested in package idp.
	op.set(func(op *testIdP) { op.discoveryDown = false })
	clk.Advance(idp.RetryMax)
	if err := u.Ready(ctx); err != nil {
		t.Fatalf("Ready after the backoff, IdP up: %v", err)
	}
	md, err := u.Metadata(ctx)
	if err != nil || md["issuer"] != op.issuer() || md["backchannel_authentication_endpoint"] != op.issuer()+"/bc-authorize" {
		t.Fatalf("Metadata = %v, %v; want the IdP's document", md, err)
	}
	md["issuer"] = "changed"
	if md, _ := u.Metadata(ctx); md["issuer"] != op.issuer() {
		t.Fatal("Metadata returned a shared map")
	}
	if _, err := u.Start(ctx, clientOf(cibaClient), ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, ""); err != nil {
		t.Fatalf("Start after discovery: %v", err)
	}
	if !strings.Contains(logs.String(), "cibaup: identity provider not available") || !strings.Contains(logs.String(), "cibaup: identity provider available again") {
		t.Fatalf("the failure and the recovery are not logged:\n%s", logs.String())
	}
}

func TestReadyTurnsRedWhenTheIdPGoesAway(t *testing.T) {
	op := newTestIdP(t)
	u, clk := newTestUpstream(t, op, nil)
	ctx := context.Background()
	if err := u.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	op.set(func(op *testIdP) { op.discoveryDown = true })
	hits := op.hits()
	if err := u.Ready(ctx); err != nil {
		t.Fatalf("Ready within the probe period = %v, want the last result", err)
	}
	if op.hits() != hits {
		t.Fatal("Ready called the IdP within the probe period")
	}
	clk.Advance(idp.ReadyProbeEvery)
	if err := u.Ready(ctx); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Ready with the IdP gone = %v, want ErrUnavailable", err)
	}
	op.set(func(op *testIdP) { op.discoveryDown = false })
	clk.Advance(idp.ReadyProbeEvery)
	if err := u.Ready(ctx); err != nil {
		t.Fatalf("Ready with the IdP back: %v", err)
	}
}

// allParams sets every parameter, with characters that need encoding.
// The client's own client_notification_token is not cibaproxy's for the
// IdP's pings (notifyToken): it must never go upstream.
var allParams = ciba.AuthParams{
	Scope: "openid email profile",
	Hint: ciba.Hint{
		LoginHint:      "alice+tag@example.com",
		LoginHintToken: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.",
		IDTokenHint:    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
	},
	BindingMessage:          "Code 1234 & café = ok?",
	UserCode:                "12 34/+",
	ACRValues:               "urn:mace:incommon:iap:silver urn:acr:2",
	RequestedExpiry:         "120",
	ClientNotificationToken: "the-clients-own-bearer-do-not-forward",
}

// notifyToken is cibaproxy's client_notification_token for the IdP's pings.
const notifyToken = "notify-token-do-not-leak"

// clientOf is the cibaproxy client id.
func clientOf(id string) *ciba.Client { return &ciba.Client{ID: id} }

func TestStartSendsTheClientsParametersUnchanged(t *testing.T) {
	want := url.Values{
		"scope":            {allParams.Scope},
		"login_hint":       {allParams.Hint.LoginHint},
		"login_hint_token": {allParams.Hint.LoginHintToken},
		"id_token_hint":    {allParams.Hint.IDTokenHint},
		"binding_message":  {allParams.BindingMessage},
		"user_code":        {allParams.UserCode},
		"acr_values":       {allParams.ACRValues},
		"requested_expiry": {allParams.RequestedExpiry},
	}
	with := func(extra url.Values) url.Values {
		out := url.Values{}
		for k, v := range want {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		creds     Credentials
		params    ciba.AuthParams
		token     string
		wantForm  url.Values
		wantBasic bool
	}{
		{"client_secret_basic (the default): credentials in the Authorization header, form-encoded",
			Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret}}, allParams, notifyToken, want, true},
		{"client_secret_basic, named",
			Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret, AuthMethod: idp.AuthMethodBasic}}, allParams, notifyToken, want, true},
		{"client_secret_post: credentials in the form",
			Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret, AuthMethod: idp.AuthMethodPost}}, allParams, notifyToken,
			with(url.Values{"client_id": {idpClient}, "client_secret": {idpSecret}}), false},
		{"a ping client sends client_notification_token",
			Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret}, Ping: true}, allParams, notifyToken,
			with(url.Values{"client_notification_token": {notifyToken}}), true},
		{"parameters the client did not send are not sent",
			Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret}}, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, "",
			url.Values{"scope": {"openid"}, "login_hint": {"alice"}}, true},
		{"a ping client without a token sends none",
			Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret}, Ping: true}, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, "",
			url.Values{"scope": {"openid"}, "login_hint": {"alice"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newTestIdP(t)
			u, _ := newTestUpstream(t, op, func(c *Config) { c.Clients[cibaClient] = tc.creds })
			s, err := u.Start(context.Background(), clientOf(cibaClient), tc.params, tc.token)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if s != (ciba.RelayStarted{ID: upstreamID, ExpiresIn: 120 * time.Second, Interval: 2 * time.Second}) {
				t.Fatalf("Start = %+v", s)
			}
			got := op.last()
			if got.Path != "/bc-authorize" {
				t.Fatalf("Start called %s", got.Path)
			}
			if !reflect.DeepEqual(got.Form, tc.wantForm) {
				t.Fatalf("form sent:\n%v\nwant:\n%v", got.Form, tc.wantForm)
			}
			checkClientAuth(t, got, tc.wantBasic)
		})
	}
}

// checkClientAuth checks the client authentication of a request: HTTP
// Basic with the form-encoded credentials (RFC 6749 §2.3.1), or none.
func checkClientAuth(t *testing.T, got received, basic bool) {
	t.Helper()
	r := &http.Request{Header: got.Header}
	user, pass, ok := r.BasicAuth()
	if !basic {
		if got.Header.Get("Authorization") != "" {
			t.Fatal("client_secret_post also sent an Authorization header")
		}
		return
	}
	if !ok {
		t.Fatalf("no Basic Authorization header: %q", got.Header.Get("Authorization"))
	}
	if user != url.QueryEscape(idpClient) || pass != url.QueryEscape(idpSecret) {
		t.Fatalf("Basic credentials %q:%q are not the form-encoded client_id and secret", user, pass)
	}
	if got.Form.Has("client_secret") {
		t.Fatal("client_secret_basic also sent the secret in the form")
	}
}

func TestStartValidatesTheIdPsAnswer(t *testing.T) {
	op := newTestIdP(t)
	u, _ := newTestUpstream(t, op, nil)
	for _, tc := range []struct {
		name string
		body string
		want ciba.RelayStarted // zero: an error wrapping ErrUnavailable
	}{
		{"interval is optional", `{"auth_req_id":"r1","expires_in":120}`, ciba.RelayStarted{ID: "r1", ExpiresIn: 120 * time.Second}},
		{"interval may be null", `{"auth_req_id":"r1","expires_in":120,"interval":null}`, ciba.RelayStarted{ID: "r1", ExpiresIn: 120 * time.Second}},
		{"interval may be 0", `{"auth_req_id":"r1","expires_in":120,"interval":0}`, ciba.RelayStarted{ID: "r1", ExpiresIn: 120 * time.Second}},
		{"fractions of seconds", `{"auth_req_id":"r1","expires_in":1.5,"interval":0.5}`, ciba.RelayStarted{ID: "r1", ExpiresIn: 1500 * time.Millisecond, Interval: 500 * time.Millisecond}},
		{"not JSON", `<html>ok</html>`, ciba.RelayStarted{}},
		{"not an object", `["r1",120]`, ciba.RelayStarted{}},
		{"no auth_req_id", `{"expires_in":120}`, ciba.RelayStarted{}},
		{"an empty auth_req_id", `{"auth_req_id":"","expires_in":120}`, ciba.RelayStarted{}},
		{"a numeric auth_req_id", `{"auth_req_id":42,"expires_in":120}`, ciba.RelayStarted{}},
		{"no expires_in", `{"auth_req_id":"r1"}`, ciba.RelayStarted{}},
		{"expires_in 0", `{"auth_req_id":"r1","expires_in":0}`, ciba.RelayStarted{}},
		{"a negative expires_in", `{"auth_req_id":"r1","expires_in":-5}`, ciba.RelayStarted{}},
		{"expires_in as a string", `{"auth_req_id":"r1","expires_in":"120"}`, ciba.RelayStarted{}},
		{"an absurd expires_in", `{"auth_req_id":"r1","expires_in":1e300}`, ciba.RelayStarted{}},
		{"a negative interval", `{"auth_req_id":"r1","expires_in":120,"interval":-1}`, ciba.RelayStarted{}},
		{"interval as a string", `{"auth_req_id":"r1","expires_in":120,"interval":"5"}`, ciba.RelayStarted{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op.set(func(op *testIdP) { op.backchannel = answer(http.StatusOK, tc.body) })
			s, err := u.Start(context.Background(), clientOf(cibaClient), ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "alice"}}, "")
			if tc.want != (ciba.RelayStarted{}) {
				if err != nil || s != tc.want {
					t.Fatalf("Start = %+v, %v; want %+v", s, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ciba.ErrUnavailable) || s != (ciba.RelayStarted{}) {
				t.Fatalf("Start = %+v, %v; want an error wrapping ErrUnavailable", s, err)
			}
			if strings.Contains(err.Error(), "r1") {
				t.Fatalf("the error quotes the auth_req_id: %v", err)
			}
		})
	}
}

func TestPollSendsTheCIBAGrant(t *testing.T) {
	for _, method := range []string{idp.AuthMethodBasic, idp.AuthMethodPost} {
		t.Run(method, func(t *testing.T) {
			op := newTestIdP(t)
			u, _ := newTestUpstream(t, op, func(c *Config) {
				c.Clients[cibaClient] = Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret, AuthMethod: method}}
			})
			res, err := u.Poll(context.Background(), clientOf(cibaClient), upstreamID)
			if err != nil {
				t.Fatalf("Poll: %v", err)
			}
			if string(res.Tokens) != tokensJSON || res.Pending || res.SlowDown {
				t.Fatalf("Poll = %+v; want the IdP's token response unchanged", res)
			}
			got := op.last()
			want := url.Values{"grant_type": {"urn:openid:params:grant-type:ciba"}, "auth_req_id": {upstreamID}}
			if method == idp.AuthMethodPost {
				want.Set("client_id", idpClient)
				want.Set("client_secret", idpSecret)
			}
			if got.Path != "/token" || !reflect.DeepEqual(got.Form, want) {
				t.Fatalf("Poll sent %s %v; want /token %v", got.Path, got.Form, want)
			}
			checkClientAuth(t, got, method == idp.AuthMethodBasic)
		})
	}
}

func TestPollResults(t *testing.T) {
	op := newTestIdP(t)
	u, _ := newTestUpstream(t, op, nil)
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   ciba.RelayResult // zero: an error wrapping ErrUnavailable
	}{
		{"authorization_pending is pending, not an error (CIBA §11)", 400, `{"error":"authorization_pending","error_description":"wait"}`, ciba.RelayResult{Pending: true}},
		{"slow_down is slow down, not an error (CIBA §11)", 400, `{"error":"slow_down"}`, ciba.RelayResult{SlowDown: true}},
		{"tokens come back unchanged", 200, tokensJSON, ciba.RelayResult{Tokens: []byte(tokensJSON)}},
		{"a token response that is not JSON", 200, `access_token=x&token_type=bearer`, ciba.RelayResult{}},
		{"a token response without access_token", 200, `{"token_type":"Bearer"}`, ciba.RelayResult{}},
		{"a token response with an empty access_token", 200, `{"access_token":"","token_type":"Bearer"}`, ciba.RelayResult{}},
		{"a token response without token_type", 200, `{"access_token":"at"}`, ciba.RelayResult{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op.set(func(op *testIdP) { op.token = answer(tc.status, tc.body) })
			res, err := u.Poll(context.Background(), clientOf(cibaClient), upstreamID)
			if !reflect.DeepEqual(tc.want, ciba.RelayResult{}) {
				if err != nil || !reflect.DeepEqual(res, tc.want) {
					t.Fatalf("Poll = %+v, %v; want %+v", res, err, tc.want)
				}
				return
			}
			if !errors.Is(err, ciba.ErrUnavailable) || !reflect.DeepEqual(res, ciba.RelayResult{}) {
				t.Fatalf("Poll = %+v, %v; want an error wrapping ErrUnavailable", res, err)
			}
			if strings.Contains(err.Error(), upstreamID) || strings.Contains(err.Error(), "idp-at") {
				t.Fatalf("the error quotes the auth_req_id or a token: %v", err)
			}
		})
	}
}

// errKind is how an IdP's answer must come back.
type errKind int

const (
	protocol    errKind = iota // a *ciba.Error with the IdP's code
	unreachable                // wraps ciba.ErrUnavailable, not a *ciba.Error
	misconfig                  // a plain error: neither
)

// nastyDescription quotes the secrets and the auth_req_id, and has
// characters RFC 6749 §5.2 does not allow.
// "{{id}}" is replaced by the auth_req_id for Poll, "{{token}}" by the
// client_notification_token for Start.
const nastyDescription = "He said \"no\"\\ to {{id}} with " + idpSecret + " and {{token}}\nél§"

func TestErrorsOfTheIdP(t *testing.T) {
	type row struct {
		name   string
		status int
		body   string
		kind   errKind
		code   ciba.ErrorCode // for protocol
	}
	var rows []row
	for _, code := range []ciba.ErrorCode{
		ciba.CodeInvalidRequest, ciba.CodeInvalidScope, ciba.CodeExpiredLoginHintToken, ciba.CodeUnknownUserID,
		ciba.CodeUnauthorizedClient, ciba.CodeMissingUserCode, ciba.CodeInvalidUserCode, ciba.CodeInvalidBindingMessage,
		ciba.CodeAccessDenied, ciba.CodeExpiredToken, ciba.CodeInvalidGrant, ciba.CodeTransactionFailed,
	} {
		status := http.StatusBadRequest
		if code == ciba.CodeAccessDenied {
			status = http.StatusForbidden
		}
		rows = append(rows, row{"the client hears the IdP's " + string(code), status,
			`{"error":"` + string(code) + `","error_description":` + jsonString(nastyDescription) + `}`, protocol, code})
	}
	rows = append(rows,
		row{"a code without description", 400, `{"error":"unknown_user_id"}`, protocol, ciba.CodeUnknownUserID},
		row{"a long description is cut", 400, `{"error":"invalid_request","error_description":"` + strings.Repeat("x", 5000) + `"}`, protocol, ciba.CodeInvalidRequest},
		row{"invalid_client (401) is cibaproxy's misconfiguration", 401, `{"error":"invalid_client","error_description":` + jsonString(nastyDescription) + `}`, misconfig, ""},
		row{"invalid_client (400) is cibaproxy's misconfiguration", 400, `{"error":"invalid_client"}`, misconfig, ""},
		row{"a bare 401 is cibaproxy's misconfiguration", 401, ``, misconfig, ""},
		row{"unsupported_grant_type is a misconfiguration", 400, `{"error":"unsupported_grant_type"}`, misconfig, ""},
		row{"a code of no specification is not passed on", 400, `{"error":"vendor_specific\"x"}`, misconfig, ""},
		row{"503 is unavailable", 503, `<html>maintenance</html>`, unreachable, ""},
		row{"502 is unavailable", 502, ``, unreachable, ""},
		row{"500 with an OAuth error is unavailable", 500, `{"error":"invalid_request"}`, unreachable, ""},
		row{"429 is unavailable, whatever it says", 429, `{"error":"slow_down"}`, unreachable, ""},
		row{"server_error is unavailable", 400, `{"error":"server_error"}`, unreachable, ""},
		row{"temporarily_unavailable is unavailable", 400, `{"error":"temporarily_unavailable"}`, unreachable, ""},
		row{"a 400 that is not an OAuth error is unusable", 400, `<html>bad request</html>`, unreachable, ""},
		row{"an error that is not a string is unusable", 400, `{"error":42}`, unreachable, ""},
		row{"404 is unusable", 404, `not found`, unreachable, ""},
		row{"a redirect is not followed", 302, ``, unreachable, ""},
		row{"an answer larger than 1 MiB is unusable", 400, `{"error":"invalid_request","error_description":"` + strings.Repeat("x", maxBody) + `"}`, unreachable, ""},
	)

	op := newTestIdP(t)
	u, _ := newTestUpstream(t, op, func(c *Config) {
		c.Clients[cibaClient] = Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret}, Ping: true}
	})
	calls := map[string]struct {
		id, token string // quoted in descriptions
		call      func(t *testing.T) error
	}{
		"Start": {"an-auth-req-id-start-cannot-know", notifyToken, func(t *testing.T) error {
			s, err := u.Start(context.Background(), clientOf(cibaClient), allParams, notifyToken)
			if err == nil {
				t.Errorf("Start = %+v, want an error", s)
			}
			return err
		}},
		"Poll": {upstreamID, "a-token-poll-cannot-know", func(t *testing.T) error {
			res, err := u.Poll(context.Background(), clientOf(cibaClient), upstreamID)
			if err == nil {
				t.Errorf("Poll = %+v, want an error", res)
			}
			return err
		}},
	}
	for _, r := range rows {
		for name, c := range calls {
			t.Run(name+"/"+r.name, func(t *testing.T) {
				h := answer(r.status, strings.NewReplacer("{{id}}", c.id, "{{token}}", c.token).Replace(r.body))
				if r.status == http.StatusFound {
					h = func(w http.ResponseWriter, req *http.Request) { http.Redirect(w, req, "/elsewhere", http.StatusFound) }
				}
				op.set(func(op *testIdP) { op.backchannel, op.token = h, h })
				err := c.call(t)
				checkErr(t, err, r.kind, r.code)
				if r.kind == protocol {
					pe := ciba.AsError(err)
					if !strings.HasPrefix(pe.Description, "the identity provider answered: ") {
						t.Fatalf("description %q does not say the IdP answered it", pe.Description)
					}
					if len(pe.Description) > len("the identity provider answered: ")+maxDescription {
						t.Fatalf("description of %d bytes is not bounded", len(pe.Description))
					}
					if pe.Description != ciba.SafeDescription(pe.Description) {
						t.Fatalf("description %q has characters RFC 6749 section 5.2 does not allow", pe.Description)
					}
				}
			})
		}
	}
}

// checkErr checks err's kind and that it quotes no secret, token or
// auth_req_id.
func checkErr(t *testing.T, err error, kind errKind, code ciba.ErrorCode) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	var pe *ciba.Error
	isProtocol, isUnavailable := errors.As(err, &pe), errors.Is(err, ciba.ErrUnavailable)
	switch kind {
	case protocol:
		if !isProtocol || pe.Code != code || isUnavailable {
			t.Fatalf("error %v; want a *ciba.Error %s", err, code)
		}
	case unreachable:
		if isProtocol || !isUnavailable {
			t.Fatalf("error %v; want one wrapping ErrUnavailable, not a protocol error", err)
		}
	case misconfig:
		if isProtocol || isUnavailable {
			t.Fatalf("error %v; want a plain error (protocol %v, unavailable %v)", err, isProtocol, isUnavailable)
		}
	}
	for _, secret := range []string{idpSecret, upstreamID, notifyToken} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("the error quotes %q: %v", secret, err)
		}
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func TestAnIdPThatDoesNotAnswerIsUnavailable(t *testing.T) {
	t.Run("a hanging IdP and the HTTP client's timeout", func(t *testing.T) {
		op := newTestIdP(t)
		// The timeout also bounds the discovery Ready makes first, which a
		// machine short of CPU can take more than 50 ms to answer; the
		// hanging calls below only wait it out.
		u, _ := newTestUpstream(t, op, func(c *Config) { c.HTTPClient = &http.Client{Timeout: 500 * time.Millisecond} })
		if err := u.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		op.set(func(op *testIdP) { op.backchannel, op.token = op.hang, op.hang })
		_, err := u.Start(context.Background(), clientOf(cibaClient), allParams, notifyToken)
		checkErr(t, err, unreachable, "")
		_, err = u.Poll(context.Background(), clientOf(cibaClient), upstreamID)
		checkErr(t, err, unreachable, "")
	})
	t.Run("a hanging IdP and the caller's context", func(t *testing.T) {
		op := newTestIdP(t)
		u, _ := newTestUpstream(t, op, nil)
		entered := make(chan context.CancelFunc, 1)
		hang := func(w http.ResponseWriter, r *http.Request) {
			(<-entered)() // cancel the caller's context once the request is here
			op.hang(w, r)
		}
		op.set(func(op *testIdP) { op.backchannel, op.token = hang, hang })
		ctx, cancel := context.WithCancel(context.Background())
		entered <- cancel
		_, err := u.Start(ctx, clientOf(cibaClient), allParams, notifyToken)
		checkErr(t, err, unreachable, "")
		ctx, cancel = context.WithCancel(context.Background())
		entered <- cancel
		_, err = u.Poll(ctx, clientOf(cibaClient), upstreamID)
		checkErr(t, err, unreachable, "")
	})
	t.Run("connection refused", func(t *testing.T) {
		op := newTestIdP(t)
		u, _ := newTestUpstream(t, op, nil)
		if err := u.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		op.srv.Close()
		_, err := u.Start(context.Background(), clientOf(cibaClient), allParams, notifyToken)
		checkErr(t, err, unreachable, "")
		_, err = u.Poll(context.Background(), clientOf(cibaClient), upstreamID)
		checkErr(t, err, unreachable, "")
	})
}

func TestAClientWithoutCredentialsIsUnauthorized(t *testing.T) {
	op := newTestIdP(t)
	u, _ := newTestUpstream(t, op, nil)
	_, err := u.Start(context.Background(), clientOf("stranger"), allParams, notifyToken)
	checkErr(t, err, protocol, ciba.CodeUnauthorizedClient)
	_, err = u.Poll(context.Background(), clientOf("stranger"), upstreamID)
	checkErr(t, err, protocol, ciba.CodeUnauthorizedClient)
	if len(op.sent()) != 0 {
		t.Fatal("the IdP was called for a client without credentials")
	}
	if u.SupportsPing("stranger") {
		t.Fatal("SupportsPing(a client without credentials) = true")
	}
}

func TestPollNeedsAnID(t *testing.T) {
	op := newTestIdP(t)
	u, _ := newTestUpstream(t, op, nil)
	if _, err := u.Poll(context.Background(), clientOf(cibaClient), ""); err == nil {
		t.Fatal("Poll with no auth_req_id succeeded")
	}
	if len(op.sent()) != 0 {
		t.Fatal("the IdP was called without an auth_req_id")
	}
}

func TestSupportsPing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		modes []string // nil: the document lists none
		down  bool     // discovery has not succeeded
		ping  bool     // the client's credentials
		want  bool
	}{
		{"a ping client at an IdP that lists ping", []string{"poll", "ping"}, false, true, true},
		{"a poll client", []string{"poll", "ping"}, false, false, false},
		{"a ping client at an IdP that lists only poll", []string{"poll"}, false, true, false},
		{"a ping client at an IdP that lists no modes", nil, false, true, true},
		{"a ping client before discovery", []string{"poll"}, true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newTestIdP(t)
			op.set(func(op *testIdP) { op.modes, op.discoveryDown = tc.modes, tc.down })
			var logs bytes.Buffer
			u, _ := newTestUpstream(t, op, func(c *Config) {
				c.Clients[cibaClient] = Credentials{Credentials: idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret}, Ping: tc.ping}
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			if got := u.SupportsPing(cibaClient); got != tc.want {
				t.Fatalf("SupportsPing = %v, want %v", got, tc.want)
			}
			warned := strings.Contains(logs.String(), "does not list the client's delivery mode")
			if wantWarn := tc.ping && !tc.down && tc.modes != nil && !tc.want; warned != wantWarn {
				t.Fatalf("warning logged %v, want %v:\n%s", warned, wantWarn, logs.String())
			}
		})
	}
}
