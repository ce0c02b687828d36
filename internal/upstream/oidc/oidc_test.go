package oidc

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp/idptest"
)

var _ ciba.Upstream = (*Upstream)(nil)

func TestConfigIsValidated(t *testing.T) {
	op := newTestOP(t)
	for name, edit := range map[string]func(*Config){
		"issuer is required":            func(c *Config) { c.Issuer = "" },
		"issuer must be http(s)":        func(c *Config) { c.Issuer = "ftp://idp.example" },
		"redirect URL must be absolute": func(c *Config) { c.RedirectURL = "/approve/callback" },
		"a client is required":          func(c *Config) { c.Clients = nil },
		"a client needs its IdP secret": func(c *Config) { c.Clients[cibaClient] = idp.Credentials{ClientID: idpClient} },
		"a client needs its IdP id":     func(c *Config) { c.Clients[cibaClient] = idp.Credentials{ClientSecret: idpSecret} },
		"auth method must be basic/post": func(c *Config) {
			c.Clients[cibaClient] = idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret, AuthMethod: "private_key_jwt"}
		},
		"prompt must be login or empty":   func(c *Config) { c.Prompt = "consent" },
		"match claims must not be empty ": func(c *Config) { c.MatchClaims = []string{""} },
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

func TestAnIssuerMismatchFailsNew(t *testing.T) {
	op := newTestOP(t)
	op.set(func(op *testOP) { op.issuerOverride = op.issuer() + "/" })
	_, err := New(context.Background(), testConfig(op))
	if want := "oidc: issuer " + strconv.Quote(op.issuer()) + ": the identity provider calls itself"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("New = %v, want an error starting %q", err, want)
	}
}

func TestDiscoveryIsRetriedLazilyWithBackoff(t *testing.T) {
	op := newTestOP(t)
	op.set(func(op *testOP) { op.discoveryDown = true })
	var logs bytes.Buffer
	u, clk := newTestUpstream(t, op, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := context.Background()

	if err := u.Ready(ctx); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Ready with the IdP down = %v, want ErrUnavailable", err)
	}
	if _, err := u.ResolveUser(ctx, &ciba.Client{ID: cibaClient}, ciba.Hint{IDTokenHint: "x.y.z"}); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("ResolveUser(id_token_hint) with the IdP down = %v, want ErrUnavailable", err)
	}
	if _, err := u.AuthCodeURL(ctx, cibaClient, NewLogin(), AuthParams{}); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("AuthCodeURL with the IdP down = %v, want ErrUnavailable", err)
	}
	if _, _, _, err := u.ForwardToken(ctx, url.Values{}, http.Header{}); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("ForwardToken with the IdP down = %v, want ErrUnavailable", err)
	}
	if u.AuthorizationEndpoint() != "" {
		t.Fatal("AuthorizationEndpoint is set before discovery")
	}

	// The backoff itself is tested in package idp.
	op.set(func(op *testOP) { op.discoveryDown = false })
	clk.Advance(idp.RetryMax)
	if err := u.Ready(ctx); err != nil {
		t.Fatalf("Ready after the backoff, IdP up: %v", err)
	}
	if u.AuthorizationEndpoint() != op.issuer()+"/authorize" {
		t.Fatalf("AuthorizationEndpoint = %q", u.AuthorizationEndpoint())
	}
	md, err := u.Metadata(ctx)
	if err != nil || md["issuer"] != op.issuer() || md["code_challenge_methods_supported"] == nil {
		t.Fatalf("Metadata = %v, %v; want the IdP's document", md, err)
	}
	if !strings.Contains(logs.String(), "oidc: identity provider not available") || !strings.Contains(logs.String(), "oidc: identity provider available again") {
		t.Fatalf("the failure and the recovery are not logged:\n%s", logs.String())
	}
}

func TestAnUnreachableJWKSMakesTheUpstreamNotReady(t *testing.T) {
	op := newTestOP(t)
	op.set(func(op *testOP) { op.jwksDown = true })
	u, clk := newTestUpstream(t, op, nil)
	if err := u.Ready(context.Background()); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Ready with the JWKS down = %v, want ErrUnavailable", err)
	}
	op.set(func(op *testOP) { op.jwksDown = false })
	clk.Advance(idp.RetryMax)
	if err := u.Ready(context.Background()); err != nil {
		t.Fatalf("Ready with the JWKS back: %v", err)
	}
}

func TestReadinessTurnsRedWhenTheIdPGoesAway(t *testing.T) {
	op := newTestOP(t)
	u, clk := newTestUpstream(t, op, nil)
	if err := u.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	op.set(func(op *testOP) { op.jwksDown = true })
	// Probes are spaced out: within idp.ReadyProbeEvery the last answer stands.
	if err := u.Ready(context.Background()); err != nil {
		t.Fatalf("Ready right after a good probe: %v", err)
	}
	clk.Advance(idp.ReadyProbeEvery)
	if err := u.Ready(context.Background()); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Ready with the IdP's keys gone = %v, want ErrUnavailable", err)
	}
	op.set(func(op *testOP) { op.jwksDown = false })
	clk.Advance(idp.ReadyProbeEvery)
	if err := u.Ready(context.Background()); err != nil {
		t.Fatalf("Ready with the IdP back: %v", err)
	}
}

func TestResolveUser(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	ctx := context.Background()
	client := &ciba.Client{ID: cibaClient}
	otherKey := newTestOP(t) // a key the IdP never published

	for _, tc := range []struct {
		name    string
		client  *ciba.Client
		hint    ciba.Hint
		want    ciba.User
		code    ciba.ErrorCode
		unavail bool
	}{
		{name: "a login_hint resolves to a user known after sign-in", client: client,
			hint: ciba.Hint{LoginHint: "alice@example.com"}, want: ciba.User{Display: "alice@example.com"}},
		{name: "no hint is invalid_request", client: client, code: ciba.CodeInvalidRequest},
		{name: "login_hint_token is not supported", client: client,
			hint: ciba.Hint{LoginHintToken: "x.y.z"}, code: ciba.CodeInvalidRequest},
		{name: "a client without IdP credentials is unauthorized_client", client: &ciba.Client{ID: "other"},
			hint: ciba.Hint{LoginHint: "alice"}, code: ciba.CodeUnauthorizedClient},
		{name: "an id_token_hint of the IdP for the client names its subject", client: client,
			hint: ciba.Hint{IDTokenHint: op.idToken(map[string]any{"preferred_username": "alice", "email": "alice@example.com"})},
			want: ciba.User{Subject: "user-42", Display: "alice"}},
		{name: "an id_token_hint is shown by email without preferred_username", client: client,
			hint: ciba.Hint{IDTokenHint: op.idToken(map[string]any{"email": "alice@example.com"})},
			want: ciba.User{Subject: "user-42", Display: "alice@example.com"}},
		{name: "an expired id_token_hint is accepted (CIBA 7.1)", client: client,
			hint: ciba.Hint{IDTokenHint: op.idToken(map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})},
			want: ciba.User{Subject: "user-42", Display: "user-42"}},
		{name: "an id_token_hint for another IdP client is refused", client: client,
			hint: ciba.Hint{IDTokenHint: op.idToken(map[string]any{"aud": "someone-else"})}, code: ciba.CodeInvalidRequest},
		{name: "an id_token_hint authorized for another party is refused", client: client,
			hint: ciba.Hint{IDTokenHint: op.idToken(map[string]any{"azp": "someone-else"})}, code: ciba.CodeInvalidRequest},
		{name: "an id_token_hint of another issuer is refused", client: client,
			hint: ciba.Hint{IDTokenHint: op.idToken(map[string]any{"iss": "https://evil.example"})}, code: ciba.CodeInvalidRequest},
		{name: "an id_token_hint not signed by the IdP is refused", client: client,
			hint: ciba.Hint{IDTokenHint: otherKey.idToken(map[string]any{"iss": op.issuer()})}, code: ciba.CodeInvalidRequest},
		{name: "a malformed id_token_hint is refused", client: client,
			hint: ciba.Hint{IDTokenHint: "not-a-jwt"}, code: ciba.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := u.ResolveUser(ctx, tc.client, tc.hint)
			if tc.code == "" {
				if err != nil || got != tc.want {
					t.Fatalf("ResolveUser = %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			t.Log(err)
			var pe *ciba.Error
			if !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("ResolveUser = %+v, %v; want %s", got, err, tc.code)
			}
			if pe.Description == "" {
				t.Fatal("the error has no description")
			}
		})
	}
}

func TestAnIDTokenHintWithTheJWKSDownIsUnavailable(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	op.rotate(false) // a kid the key set has not seen yet
	op.set(func(op *testOP) { op.jwksDown = true })
	_, err := u.ResolveUser(context.Background(), &ciba.Client{ID: cibaClient}, ciba.Hint{IDTokenHint: op.idToken(nil)})
	var pe *ciba.Error
	if !errors.Is(err, ciba.ErrUnavailable) || errors.As(err, &pe) {
		t.Fatalf("ResolveUser = %v; want ErrUnavailable, not a protocol error", err)
	}
}

func TestUserCodesAreNotSupported(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	if u.SupportsUserCode() {
		t.Fatal("SupportsUserCode = true")
	}
	var pe *ciba.Error
	if err := u.CheckUserCode(context.Background(), ciba.User{Subject: "user-42"}, "1234"); !errors.As(err, &pe) || pe.Code != ciba.CodeInvalidUserCode {
		t.Fatalf("CheckUserCode = %v, want invalid_user_code", err)
	}
}

func TestAuthCodeURL(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, func(c *Config) { c.Prompt = "login" })
	l := NewLogin()
	raw, err := u.AuthCodeURL(context.Background(), cibaClient, l, AuthParams{
		Scopes: []string{"email", "profile"}, LoginHint: "alice@example.com", ACRValues: []string{"urn:acr:mfa", "urn:acr:pwd"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if base := got.Scheme + "://" + got.Host + got.Path; base != op.issuer()+"/authorize" {
		t.Fatalf("the URL goes to %s, want the authorization_endpoint", base)
	}
	q := got.Query()
	for param, want := range map[string]string{
		"response_type":         "code",
		"client_id":             idpClient,
		"redirect_uri":          "https://ciba.example/approve/callback",
		"scope":                 "openid email profile",
		"state":                 l.State,
		"nonce":                 l.Nonce,
		"code_challenge":        oauth2.S256ChallengeFromVerifier(l.CodeVerifier),
		"code_challenge_method": "S256",
		"login_hint":            "alice@example.com",
		"acr_values":            "urn:acr:mfa urn:acr:pwd",
		"prompt":                "login",
	} {
		if q.Get(param) != want {
			t.Errorf("%s = %q, want %q", param, q.Get(param), want)
		}
	}
	for _, secret := range []string{"code_verifier", "client_secret"} {
		if q.Has(secret) {
			t.Errorf("the URL carries %s", secret)
		}
	}
	if strings.Contains(raw, l.CodeVerifier) || strings.Contains(raw, idpSecret) {
		t.Error("the URL carries the verifier or the secret")
	}

	// openid is not duplicated; no prompt unless configured.
	u2, _ := newTestUpstream(t, op, nil)
	raw, err = u2.AuthCodeURL(context.Background(), cibaClient, l, AuthParams{Scopes: []string{"openid", "email"}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = url.Parse(raw)
	if q := got.Query(); q.Get("scope") != "openid email" || q.Has("prompt") || q.Has("login_hint") || q.Has("acr_values") {
		t.Errorf("query = %v", q)
	}

	// offline_access asks for consent (OIDC Core §11), besides a configured login.
	for _, tc := range []struct {
		up   *Upstream
		want string
	}{{u2, "consent"}, {u, "login consent"}} {
		raw, err = tc.up.AuthCodeURL(context.Background(), cibaClient, l, AuthParams{Scopes: []string{"openid", "offline_access"}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ = url.Parse(raw)
		if p := got.Query().Get("prompt"); p != tc.want {
			t.Errorf("prompt with offline_access = %q, want %q", p, tc.want)
		}
	}

	if _, err := u.AuthCodeURL(context.Background(), "other", l, AuthParams{}); err == nil {
		t.Error("AuthCodeURL for a client without IdP credentials succeeded")
	}
	if _, err := u.AuthCodeURL(context.Background(), cibaClient, Login{State: "s"}, AuthParams{}); err == nil {
		t.Error("AuthCodeURL without nonce and verifier succeeded")
	}
}

func TestNewLoginIsRandom(t *testing.T) {
	a, b := NewLogin(), NewLogin()
	for _, v := range []string{a.State, a.Nonce, a.CodeVerifier} {
		if len(v) < 43 { // 256 bits in base64url; at least 128 required
			t.Fatalf("value %q is too short", v)
		}
	}
	if a.State == b.State || a.Nonce == b.Nonce || a.CodeVerifier == b.CodeVerifier || a.State == a.Nonce {
		t.Fatal("NewLogin repeats values")
	}
}

// testLogin is the sign-in whose nonce the test OP's ID tokens carry.
func testLogin() Login {
	return Login{State: "state-1", Nonce: testNonce, CodeVerifier: oauth2.GenerateVerifier()}
}

func TestExchangeReturnsTheIdPsTokens(t *testing.T) {
	for _, method := range []string{"", idp.AuthMethodBasic, idp.AuthMethodPost} {
		t.Run("auth method "+method, func(t *testing.T) {
			op := newTestOP(t)
			u, _ := newTestUpstream(t, op, func(c *Config) {
				c.Clients[cibaClient] = idp.Credentials{ClientID: idpClient, ClientSecret: idpSecret, AuthMethod: method}
			})
			authTime := time.Now().Add(-time.Minute).Truncate(time.Second)
			idt := op.idToken(map[string]any{"email": "alice@example.com", "auth_time": authTime.Unix()})
			op.set(func(op *testOP) { op.nextIDToken = idt })
			l := testLogin()

			tr, at, err := u.Exchange(context.Background(), cibaClient, "the-code", l, Expected{LoginHint: "alice@example.com"})
			if err != nil {
				t.Fatal(err)
			}
			want := ciba.TokenResponse{AccessToken: "idp-access-token", TokenType: "Bearer", ExpiresIn: 300,
				RefreshToken: "idp-refresh-token", IDToken: idt, Scope: "openid email"}
			if *tr != want {
				t.Errorf("token response = %+v, want %+v", *tr, want)
			}
			if !at.Equal(authTime) {
				t.Errorf("auth time = %v, want the ID token's auth_time %v", at, authTime)
			}

			req := op.lastTokenRequest()
			for param, v := range map[string]string{
				"grant_type":    "authorization_code",
				"code":          "the-code",
				"code_verifier": l.CodeVerifier,
				"redirect_uri":  "https://ciba.example/approve/callback",
			} {
				if req.Form.Get(param) != v {
					t.Errorf("token request %s = %q, want %q", param, req.Form.Get(param), v)
				}
			}
			user, pass, basic := (&http.Request{Header: req.Header}).BasicAuth()
			if method == idp.AuthMethodPost {
				if basic || req.Form.Get("client_id") != idpClient || req.Form.Get("client_secret") != idpSecret {
					t.Errorf("client_secret_post: basic=%v client_id=%q", basic, req.Form.Get("client_id"))
				}
			} else if !basic || user != idpClient || pass != idpSecret || req.Form.Has("client_secret") {
				t.Errorf("client_secret_basic: basic=%v user=%q, secret in form=%v", basic, user, req.Form.Has("client_secret"))
			}
		})
	}
}

func TestExchangeChecksTheIDTokenAndTheUser(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	foreign := newTestOP(t)
	byHint := Expected{LoginHint: "alice@example.com"}

	for _, tc := range []struct {
		name      string
		claims    map[string]any
		token     func() string // instead of claims
		want      Expected
		wrongUser bool
	}{
		{name: "the nonce must be the sign-in's", claims: map[string]any{"nonce": "other-nonce", "email": "alice@example.com"}, want: byHint},
		{name: "a missing nonce is refused", claims: map[string]any{"nonce": nil, "email": "alice@example.com"}, want: byHint},
		{name: "aud must be the client's IdP client_id", claims: map[string]any{"aud": "other-client", "email": "alice@example.com"}, want: byHint},
		{name: "azp, when present, must be the client's IdP client_id", claims: map[string]any{"aud": []string{idpClient, "other"}, "azp": "other", "email": "alice@example.com"}, want: byHint},
		{name: "an expired ID token is refused", claims: map[string]any{"exp": time.Now().Add(-time.Minute).Unix(), "email": "alice@example.com"}, want: byHint},
		{name: "iss must be the IdP", claims: map[string]any{"iss": "https://evil.example", "email": "alice@example.com"}, want: byHint},
		{name: "the signature must be the IdP's", token: func() string {
			return foreign.idToken(map[string]any{"iss": op.issuer(), "email": "alice@example.com"})
		}, want: byHint},
		{name: "at_hash must match the access token", claims: map[string]any{"at_hash": "AAAAAAAAAAAAAAAAAAAAAA", "email": "alice@example.com"}, want: byHint},
		{name: "sub must be the id_token_hint's", claims: map[string]any{"sub": "user-43"}, want: Expected{Subject: "user-42"}, wrongUser: true},
		{name: "an email other than the login_hint is another user", claims: map[string]any{"email": "mallory@example.com"}, want: byHint, wrongUser: true},
		{name: "an unverified email does not match", claims: map[string]any{"email": "alice@example.com", "email_verified": false}, want: byHint, wrongUser: true},
		{name: "an email_verified of \"false\" does not match", claims: map[string]any{"email": "alice@example.com", "email_verified": "false"}, want: byHint, wrongUser: true},
		{name: "a claim not in MatchClaims does not match", claims: map[string]any{"name": "alice@example.com"}, want: byHint, wrongUser: true},
		{name: "a login_hint equal to the sub of another user does not match", claims: map[string]any{"sub": "user-43"}, want: Expected{LoginHint: "user-42"}, wrongUser: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idt := ""
			if tc.token != nil {
				idt = tc.token()
			} else {
				idt = op.idToken(tc.claims)
			}
			op.set(func(op *testOP) { op.nextIDToken = idt })
			tr, _, err := u.Exchange(context.Background(), cibaClient, "the-code", testLogin(), tc.want)
			if err == nil || tr != nil {
				t.Fatalf("Exchange = %+v, %v; want an error and no tokens", tr, err)
			}
			t.Log(err)
			if errors.Is(err, ErrWrongUser) != tc.wrongUser {
				t.Fatalf("Exchange = %v; wrong user: %v, want %v", err, errors.Is(err, ErrWrongUser), tc.wrongUser)
			}
			assertNoSecret(t, err.Error(), idt)
		})
	}

	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   Expected
	}{
		{name: "the sub of an id_token_hint matches", claims: map[string]any{"email": "other@example.com"}, want: Expected{Subject: "user-42", LoginHint: "ignored"}},
		{name: "email compares case-insensitively", claims: map[string]any{"email": "Alice@Example.COM", "email_verified": true}, want: byHint},
		{name: "a later MatchClaims claim matches", claims: map[string]any{"email": "a@example.com", "preferred_username": "alice"}, want: Expected{LoginHint: "alice"}},
		{name: "sub matches as the last MatchClaims claim", claims: nil, want: Expected{LoginHint: "user-42"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idt := op.idToken(tc.claims)
			op.set(func(op *testOP) { op.nextIDToken = idt })
			if _, _, err := u.Exchange(context.Background(), cibaClient, "the-code", testLogin(), tc.want); err != nil {
				t.Fatalf("Exchange: %v", err)
			}
		})
	}
}

// A device request (RFC 8628) names no user: whoever signs in approves, and
// the ID token's subject becomes the request's. Only the user match is
// skipped; every check of the ID token still runs.
func TestExchangeAnyUser(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	foreign := newTestOP(t)
	anyUser := Expected{AnyUser: true}

	t.Run("whoever signs in is accepted and is the subject", func(t *testing.T) {
		for _, sub := range []string{"user-42", "mallory"} {
			idt := op.idToken(map[string]any{"sub": sub, "email": "someone@example.com"})
			op.set(func(op *testOP) { op.nextIDToken = idt })
			x, err := u.ExchangeUser(context.Background(), cibaClient, "the-code", testLogin(), anyUser)
			if err != nil {
				t.Fatalf("ExchangeUser as %s: %v", sub, err)
			}
			if x.Subject != sub || x.Tokens == nil || x.Tokens.IDToken != idt {
				t.Fatalf("ExchangeUser = subject %q, tokens %+v; want subject %q and the IdP's tokens", x.Subject, x.Tokens, sub)
			}
		}
	})

	for _, tc := range []struct {
		name   string
		claims map[string]any
		token  func() string
	}{
		{name: "the nonce must be the sign-in's", claims: map[string]any{"nonce": "other-nonce"}},
		{name: "a missing nonce is refused", claims: map[string]any{"nonce": nil}},
		{name: "aud must be the client's IdP client_id", claims: map[string]any{"aud": "other-client"}},
		{name: "an expired ID token is refused", claims: map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}},
		{name: "iss must be the IdP", claims: map[string]any{"iss": "https://evil.example"}},
		{name: "at_hash must match the access token", claims: map[string]any{"at_hash": "AAAAAAAAAAAAAAAAAAAAAA"}},
		{name: "an ID token without sub is refused", claims: map[string]any{"sub": nil}},
		{name: "the signature must be the IdP's", token: func() string {
			return foreign.idToken(map[string]any{"iss": op.issuer()})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idt := ""
			if tc.token != nil {
				idt = tc.token()
			} else {
				idt = op.idToken(tc.claims)
			}
			op.set(func(op *testOP) { op.nextIDToken = idt })
			x, err := u.ExchangeUser(context.Background(), cibaClient, "the-code", testLogin(), anyUser)
			if err == nil || x.Tokens != nil || x.Subject != "" {
				t.Fatalf("ExchangeUser = %+v, %v; want an error and no tokens", x, err)
			}
			assertNoSecret(t, err.Error(), idt)
		})
	}

	t.Run("no expected user and no AnyUser is refused before the IdP is called", func(t *testing.T) {
		before := op.tokenRequestCount()
		for _, want := range []Expected{{}, {AnyUser: true, LoginHint: "alice@example.com"}, {AnyUser: true, Subject: "user-42"}} {
			if _, err := u.ExchangeUser(context.Background(), cibaClient, "the-code", testLogin(), want); err == nil {
				t.Errorf("ExchangeUser with %+v succeeded", want)
			}
		}
		if after := op.tokenRequestCount(); after != before {
			t.Errorf("the IdP's token endpoint was called %d times", after-before)
		}
	})
}

func TestMatchClaimsDefaultsToSub(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, func(c *Config) { c.MatchClaims = nil })
	idt := op.idToken(map[string]any{"email": "alice@example.com"})
	op.set(func(op *testOP) { op.nextIDToken = idt })
	if _, _, err := u.Exchange(context.Background(), cibaClient, "c", testLogin(), Expected{LoginHint: "alice@example.com"}); !errors.Is(err, ErrWrongUser) {
		t.Fatalf("Exchange matched by email with the default MatchClaims: %v", err)
	}
	if _, _, err := u.Exchange(context.Background(), cibaClient, "c", testLogin(), Expected{LoginHint: "user-42"}); err != nil {
		t.Fatalf("Exchange by sub: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	want := Expected{Subject: "user-42"}
	idt := op.idToken(nil)
	op.set(func(op *testOP) { op.nextIDToken = idt })
	if _, _, err := u.Exchange(context.Background(), cibaClient, "c", testLogin(), want); err != nil {
		t.Fatalf("Exchange with the first key: %v", err)
	}
	op.rotate(false) // the IdP switches to a new kid and drops the old key
	idt = op.idToken(nil)
	op.set(func(op *testOP) { op.nextIDToken = idt })
	if _, _, err := u.Exchange(context.Background(), cibaClient, "c", testLogin(), want); err != nil {
		t.Fatalf("Exchange after the IdP rotated its key: %v", err)
	}
	if _, err := u.ResolveUser(context.Background(), &ciba.Client{ID: cibaClient}, ciba.Hint{IDTokenHint: op.idToken(nil)}); err != nil {
		t.Fatalf("ResolveUser with the rotated key: %v", err)
	}
}

func TestExchangeErrorsOfTheTokenEndpoint(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		unavail bool
		code    string
	}{
		{name: "invalid_grant says so", handler: func(w http.ResponseWriter, _ *http.Request) {
			idptest.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "grant request is invalid"})
		}, code: "invalid_grant"},
		{name: "invalid_client says so", handler: func(w http.ResponseWriter, _ *http.Request) {
			idptest.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		}, code: "invalid_client"},
		{name: "a 500 is unavailable", handler: func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}, unavail: true},
		{name: "a dropped connection is unavailable", handler: func(w http.ResponseWriter, _ *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}, unavail: true},
		{name: "an answer without access_token is an error", handler: func(w http.ResponseWriter, _ *http.Request) {
			idptest.WriteJSON(w, http.StatusOK, map[string]string{"token_type": "Bearer"})
		}},
		{name: "an answer without id_token is an error", handler: func(w http.ResponseWriter, _ *http.Request) {
			idptest.WriteJSON(w, http.StatusOK, map[string]string{"access_token": "idp-access-token", "token_type": "Bearer"})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op.set(func(op *testOP) { op.token = tc.handler })
			tr, _, err := u.Exchange(context.Background(), cibaClient, "the-code", testLogin(), Expected{Subject: "user-42"})
			if err == nil || tr != nil {
				t.Fatalf("Exchange = %+v, %v; want an error", tr, err)
			}
			t.Log(err)
			if errors.Is(err, ciba.ErrUnavailable) != tc.unavail {
				t.Fatalf("Exchange = %v; unavailable %v, want %v", err, !tc.unavail, tc.unavail)
			}
			var te *TokenError
			if tc.code != "" && (!errors.As(err, &te) || te.Code != tc.code || !strings.Contains(err.Error(), tc.code)) {
				t.Fatalf("Exchange = %v; want a TokenError %s", err, tc.code)
			}
			assertNoSecret(t, err.Error())
		})
	}
}

func TestExchangeWithTheIdPUnreachable(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	op.srv.Close()
	_, _, err := u.Exchange(context.Background(), cibaClient, "the-code", testLogin(), Expected{Subject: "user-42"})
	if !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Exchange = %v, want ErrUnavailable", err)
	}
	assertNoSecret(t, err.Error())
}

func TestForwardToken(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	op.set(func(op *testOP) {
		op.token = func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			w.Header().Set("Pragma", "no-cache")
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
			w.Header().Set("DPoP-Nonce", "n-1")
			w.Header().Set("Set-Cookie", "idp=1")
			idptest.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "use_dpop_nonce"})
		}
	})
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"rt-1"}, "scope": {"openid"}}
	in := http.Header{}
	in.Set("Authorization", "Basic aWRwLWNsaWVudDpzZWNyZXQ=")
	in.Set("DPoP", "proof.jwt.value")
	in.Set("Cookie", "cibaproxy=1")

	status, h, body, err := u.ForwardToken(context.Background(), form, in)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusBadRequest || !strings.Contains(string(body), `"use_dpop_nonce"`) {
		t.Errorf("ForwardToken = %d %s", status, body)
	}
	for name, want := range map[string]string{
		"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache",
		"WWW-Authenticate": `DPoP error="use_dpop_nonce"`, "DPoP-Nonce": "n-1", "Set-Cookie": "",
	} {
		if h.Get(name) != want {
			t.Errorf("answer header %s = %q, want %q", name, h.Get(name), want)
		}
	}
	req := op.lastTokenRequest()
	if req.Form.Encode() != form.Encode() {
		t.Errorf("forwarded form = %v, want %v", req.Form, form)
	}
	for name, want := range map[string]string{
		"Authorization": in.Get("Authorization"), "DPoP": "proof.jwt.value", "Cookie": "",
		"Content-Type": "application/x-www-form-urlencoded",
	} {
		if req.Header.Get(name) != want {
			t.Errorf("forwarded header %s = %q, want %q", name, req.Header.Get(name), want)
		}
	}

	op.srv.Close()
	if _, _, _, err := u.ForwardToken(context.Background(), form, in); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("ForwardToken with the IdP gone = %v, want ErrUnavailable", err)
	}
}

func TestForwardTokenBoundsTheAnswer(t *testing.T) {
	op := newTestOP(t)
	u, _ := newTestUpstream(t, op, nil)
	op.set(func(op *testOP) {
		op.token = func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte("a"), maxBody+10))
		}
	})
	if _, _, _, err := u.ForwardToken(context.Background(), url.Values{"grant_type": {"refresh_token"}}, http.Header{}); err == nil {
		t.Fatal("ForwardToken returned an answer larger than the bound")
	}
}

func TestDiscoveryHonoursTheContext(t *testing.T) {
	// A listener that accepts and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := Config{Issuer: "http://" + ln.Addr().String(), RedirectURL: "https://ciba.example/cb",
		Clients: map[string]idp.Credentials{cibaClient: {ClientID: idpClient, ClientSecret: idpSecret}}}
	u, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New with an unanswering IdP: %v", err)
	}
	if err := u.Ready(ctx); !errors.Is(err, ciba.ErrUnavailable) {
		t.Fatalf("Ready = %v, want ErrUnavailable", err)
	}
}

// assertNoSecret fails when msg quotes the client secret, the code, a
// token of the test OP or one of extra.
func assertNoSecret(t *testing.T, msg string, extra ...string) {
	t.Helper()
	for _, s := range append([]string{idpSecret, "the-code", "idp-access-token", "idp-refresh-token"}, extra...) {
		if s != "" && strings.Contains(msg, s) {
			t.Fatalf("the error %q quotes a secret", msg)
		}
	}
}
