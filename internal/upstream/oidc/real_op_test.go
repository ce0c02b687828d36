package oidc

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	upidp "github.com/cibaproxy/cibaproxy/internal/upstream/idp"
	"github.com/cibaproxy/cibaproxy/test/idp"
)

// TestAgainstNodeOIDCProvider runs the approval page's sign-in against a
// real OpenID Provider (node-oidc-provider, test/idp): AuthCodeURL, the
// user's login, Exchange; then the ID token as an id_token_hint, and a
// refresh grant passed through.
func TestAgainstNodeOIDCProvider(t *testing.T) {
	const redirect = "http://127.0.0.1:9/approve/callback" // never followed
	p := idp.Start(t, idp.Config{
		Clients: []idp.Client{
			{ID: "web-basic", Secret: "basic-secret-do-not-leak", RedirectURIs: []string{redirect}},
			{ID: "web-post", Secret: "post-secret-do-not-leak", RedirectURIs: []string{redirect},
				TokenEndpointAuthMethod: upidp.AuthMethodPost, IDTokenSignedResponseAlg: "ES256"},
		},
		Accounts: []idp.Account{
			{ID: "alice", Password: "alice-pw", Email: "alice@example.com", EmailVerified: true, PreferredUsername: "alice"},
			{ID: "bob", Password: "bob-pw", Email: "bob@example.com", EmailVerified: true, PreferredUsername: "bob"},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, err := New(ctx, Config{
		Issuer:      p.Issuer(),
		RedirectURL: redirect,
		Clients: map[string]upidp.Credentials{
			"basic": {ClientID: "web-basic", ClientSecret: "basic-secret-do-not-leak"},
			"post":  {ClientID: "web-post", ClientSecret: "post-secret-do-not-leak", AuthMethod: upidp.AuthMethodPost},
		},
		MatchClaims: []string{"email", "sub"},
		Prompt:      "login",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	// signIn runs AuthCodeURL and the user's login; it returns the code.
	signIn := func(t *testing.T, client string, l Login, account, password string) string {
		t.Helper()
		authURL, err := u.AuthCodeURL(ctx, client, l, AuthParams{Scopes: []string{"email", "profile"}, LoginHint: "alice@example.com"})
		if err != nil {
			t.Fatalf("AuthCodeURL: %v", err)
		}
		back, err := idp.Login(ctx, &http.Client{Timeout: 30 * time.Second}, authURL, account, password)
		if err != nil {
			t.Fatalf("login at the IdP: %v\n%s", err, p.Logs())
		}
		q := back.Query()
		if q.Get("state") != l.State || q.Get("code") == "" {
			t.Fatalf("the IdP answered %v; want the state and a code", q)
		}
		return q.Get("code")
	}

	for _, client := range []string{"basic", "post"} {
		t.Run("the user the client named approves via "+client, func(t *testing.T) {
			l := NewLogin()
			code := signIn(t, client, l, "alice", "alice-pw")
			tr, authTime, err := u.Exchange(ctx, client, code, l, Expected{LoginHint: "alice@example.com"})
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if tr.AccessToken == "" || tr.IDToken == "" || !strings.EqualFold(tr.TokenType, "bearer") || tr.ExpiresIn <= 0 {
				t.Fatalf("token response = %+v", tr)
			}
			if authTime.IsZero() || time.Since(authTime) > time.Minute {
				t.Fatalf("auth time = %v", authTime)
			}
			// The ID token names the user later, as an id_token_hint.
			user, err := u.ResolveUser(ctx, &ciba.Client{ID: client}, ciba.Hint{IDTokenHint: tr.IDToken})
			if err != nil || user != (ciba.User{Subject: "alice", Display: "alice"}) {
				t.Fatalf("ResolveUser(id_token_hint) = %+v, %v", user, err)
			}
			// An ID token of another IdP client is not this client's hint.
			other := map[string]string{"basic": "post", "post": "basic"}[client]
			var pe *ciba.Error
			if _, err := u.ResolveUser(ctx, &ciba.Client{ID: other}, ciba.Hint{IDTokenHint: tr.IDToken}); !errors.As(err, &pe) || pe.Code != ciba.CodeInvalidRequest {
				t.Fatalf("ResolveUser(another client's ID token) = %v, want invalid_request", err)
			}
		})
	}

	t.Run("another user signing in is refused", func(t *testing.T) {
		l := NewLogin()
		code := signIn(t, "basic", l, "bob", "bob-pw")
		tr, _, err := u.Exchange(ctx, "basic", code, l, Expected{LoginHint: "alice@example.com"})
		if !errors.Is(err, ErrWrongUser) || tr != nil {
			t.Fatalf("Exchange = %+v, %v; want ErrWrongUser", tr, err)
		}
	})

	t.Run("a code is redeemed once", func(t *testing.T) {
		l := NewLogin()
		code := signIn(t, "basic", l, "alice", "alice-pw")
		if _, _, err := u.Exchange(ctx, "basic", code, l, Expected{Subject: "alice"}); err != nil {
			t.Fatalf("Exchange: %v", err)
		}
		_, _, err := u.Exchange(ctx, "basic", code, l, Expected{Subject: "alice"})
		var te *TokenError
		if !errors.As(err, &te) || te.Code != "invalid_grant" || errors.Is(err, ciba.ErrUnavailable) {
			t.Fatalf("second Exchange = %v; want invalid_grant", err)
		}
		if strings.Contains(err.Error(), code) || strings.Contains(err.Error(), "secret-do-not-leak") {
			t.Fatalf("the error quotes the code or the secret: %v", err)
		}
	})

	t.Run("a wrong PKCE verifier is refused", func(t *testing.T) {
		l := NewLogin()
		code := signIn(t, "basic", l, "alice", "alice-pw")
		l.CodeVerifier = NewLogin().CodeVerifier
		var te *TokenError
		if _, _, err := u.Exchange(ctx, "basic", code, l, Expected{Subject: "alice"}); !errors.As(err, &te) || te.Code != "invalid_grant" {
			t.Fatalf("Exchange with another verifier = %v; want invalid_grant", err)
		}
	})

	t.Run("other grants pass through", func(t *testing.T) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"not-a-refresh-token"}}
		h := http.Header{}
		h.Set("Authorization", "Basic "+basicAuth("web-basic", "basic-secret-do-not-leak"))
		status, hdr, body, err := u.ForwardToken(ctx, form, h)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusBadRequest || !strings.Contains(string(body), "invalid_grant") || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Fatalf("ForwardToken = %d %v %s; want the IdP's invalid_grant", status, hdr, body)
		}
		h.Set("Authorization", "Basic "+basicAuth("web-basic", "wrong"))
		status, hdr, _, err = u.ForwardToken(ctx, form, h)
		if err != nil || status != http.StatusUnauthorized {
			t.Fatalf("ForwardToken with a wrong secret = %d %v, %v; want 401", status, hdr, err)
		}
	})
}

func basicAuth(user, pass string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}
