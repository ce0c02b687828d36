package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp"
)

// ErrWrongUser is wrapped by Exchange when the user who signed in at the
// IdP is not the user the client named: nobody approves another user's
// request. The tokens are not returned.
var ErrWrongUser = errors.New("oidc: the user who signed in at the identity provider is not the user the request names")

// Login is one sign-in at the IdP in progress: the values that bind the
// IdP's answer to it. Keep it server-side (or sealed) between AuthCodeURL
// and Exchange; the State goes to the IdP and comes back.
type Login struct {
	// State ties the IdP's answer to this sign-in (RFC 6749 §10.12).
	State string
	// Nonce ties the ID token to it (OIDC Core §3.1.2.1, §15.5.2).
	Nonce string
	// CodeVerifier is the PKCE code_verifier (RFC 7636 §4.1); only its
	// S256 challenge goes to the IdP with the authorization request.
	CodeVerifier string
}

// NewLogin returns a Login with fresh random values of 256 bits each.
func NewLogin() Login {
	return Login{State: randomString(), Nonce: randomString(), CodeVerifier: oauth2.GenerateVerifier()}
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (l Login) check() error {
	if l.State == "" || l.Nonce == "" || l.CodeVerifier == "" {
		return errors.New("oidc: the login needs a state, a nonce and a code verifier (use NewLogin)")
	}
	return nil
}

// AuthParams are the parts of the authorization request that come from the
// client's CIBA request.
type AuthParams struct {
	// Scopes requested; "openid" is added when missing.
	Scopes []string
	// LoginHint, sent as login_hint so the IdP can preselect the user.
	LoginHint string
	// ACRValues, sent as acr_values (OIDC Core §3.1.2.1).
	ACRValues []string
	// AuthzDetails, sent as authorization_details (RFC 9396 §2): the
	// request's details in canonical JSON, "" for none. Their types were
	// checked at bc-authorize against the IdP's discovery
	// (CheckAuthzDetails).
	AuthzDetails string
	// Resources, sent as resource parameters (RFC 8707 §2).
	Resources []string
}

// AuthCodeURL returns the IdP's authorization URL for a sign-in approving a
// request of cibaproxy client clientID (OIDC Core §3.1.2.1): response_type
// code with the client's IdP client_id, redirect_uri = Config.RedirectURL,
// l's state and nonce, the S256 PKCE challenge of l's verifier (RFC 7636
// §4.3), login_hint, acr_values and, when configured, prompt=login.
func (u *Upstream) AuthCodeURL(ctx context.Context, clientID string, l Login, p AuthParams) (string, error) {
	creds, err := u.credentials(clientID)
	if err != nil {
		return "", err
	}
	if err := l.check(); err != nil {
		return "", err
	}
	idp, err := u.provider(ctx)
	if err != nil {
		return "", err
	}
	scopes := slices.Clone(p.Scopes)
	if !slices.Contains(scopes, gooidc.ScopeOpenID) {
		scopes = append([]string{gooidc.ScopeOpenID}, scopes...)
	}
	opts := []oauth2.AuthCodeOption{gooidc.Nonce(l.Nonce), oauth2.S256ChallengeOption(l.CodeVerifier)}
	if p.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", p.LoginHint))
	}
	if len(p.ACRValues) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(p.ACRValues, " ")))
	}
	if p.AuthzDetails != "" {
		opts = append(opts, oauth2.SetAuthURLParam("authorization_details", p.AuthzDetails))
	}
	// OIDC Core §11: a request for offline_access must ask for consent,
	// or providers issue no refresh token.
	var prompt []string
	if u.cfg.Prompt != "" {
		prompt = append(prompt, u.cfg.Prompt)
	}
	if slices.Contains(scopes, "offline_access") {
		prompt = append(prompt, "consent")
	}
	if len(prompt) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", strings.Join(prompt, " ")))
	}
	authURL := u.oauth2Config(idp, creds, scopes).AuthCodeURL(l.State, opts...)
	if len(p.Resources) == 0 {
		return authURL, nil
	}
	// resource repeats (RFC 8707 §2), which SetAuthURLParam cannot say.
	parsed, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("oidc: the authorization URL: %w", err)
	}
	q := parsed.Query()
	for _, r := range p.Resources {
		q.Add("resource", r)
	}
	parsed.RawQuery = q.Encode()
	return parsed.String(), nil
}

func (u *Upstream) oauth2Config(p *provider, creds idp.Credentials, scopes []string) *oauth2.Config {
	ep := p.endpoint
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if creds.AuthMethod == idp.AuthMethodPost {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID:     creds.ClientID,
		ClientSecret: creds.ClientSecret,
		Endpoint:     ep,
		RedirectURL:  u.cfg.RedirectURL,
		Scopes:       scopes,
	}
}

// Expected is the user the request named, or AnyUser for a request that
// names none (a device request, RFC 8628: whoever signs in approves).
type Expected struct {
	// Subject is set when the request named the user by id_token_hint:
	// the ID token's sub must equal it.
	Subject string
	// LoginHint is the request's login_hint, compared with the ID token's
	// MatchClaims when Subject is empty.
	LoginHint string
	// AnyUser accepts whoever signed in; Subject and LoginHint must then
	// be empty. It skips only the user match, never the ID token's
	// checks. It is a field of its own, not the zero Expected, so that a
	// CIBA request that lost its user by mistake is refused rather than
	// approved by anyone.
	AnyUser bool
}

func (e Expected) check() error {
	named := e.Subject != "" || e.LoginHint != ""
	switch {
	case e.AnyUser && named:
		return errors.New("oidc: Exchange got both any user and a named user")
	case !e.AnyUser && !named:
		return errors.New("oidc: Exchange needs the expected user (subject or login hint) or any user")
	}
	return nil
}

// Exchanged is the result of a code exchange.
type Exchanged struct {
	// Tokens is the IdP's token response, unchanged.
	Tokens *ciba.TokenResponse
	// AuthTime is when the user authenticated: the ID token's auth_time,
	// or the time of the exchange.
	AuthTime time.Time
	// Subject is the verified ID token's sub: the user who signed in.
	Subject string
}

// TokenError is the IdP's token endpoint refusing a request: its HTTP
// status and RFC 6749 §5.2 error code and description. It wraps
// ciba.ErrUnavailable when the status is 5xx.
type TokenError struct {
	Status      int
	Code        string
	Description string
}

// Error implements error.
func (e *TokenError) Error() string {
	msg := fmt.Sprintf("oidc: the identity provider's token endpoint answered HTTP %d", e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Description != "" {
		msg += fmt.Sprintf(" (%q)", shorten(e.Description))
	}
	return msg
}

// Unwrap returns ciba.ErrUnavailable for a 5xx answer.
func (e *TokenError) Unwrap() error {
	if e.Status >= 500 {
		return ciba.ErrUnavailable
	}
	return nil
}

// Exchange redeems the authorization code the IdP sent back for a sign-in
// approving a request of cibaproxy client clientID; it is ExchangeUser
// without the subject.
func (u *Upstream) Exchange(ctx context.Context, clientID, code string, l Login, want Expected) (*ciba.TokenResponse, time.Time, error) {
	x, err := u.ExchangeUser(ctx, clientID, code, l, want)
	if err != nil {
		return nil, time.Time{}, err
	}
	return x.Tokens, x.AuthTime, nil
}

// ExchangeUser redeems the authorization code the IdP sent back for a
// sign-in approving a request of cibaproxy client clientID (OIDC Core
// §3.1.3): the code and l's PKCE verifier go to the token endpoint with the
// client's IdP credentials. It then validates the ID token (OIDC Core
// §3.1.3.7: signature, iss, aud = the client's IdP client_id, exp; l's
// nonce; at_hash when present) and, unless want.AnyUser, checks that its
// user is want (see Expected and Config.MatchClaims), else the error wraps
// ErrWrongUser.
//
// It returns the IdP's token response unchanged, the time the user
// authenticated (the ID token's auth_time, or now) and the ID token's
// subject. The IdP refusing the code is a *TokenError; an IdP that cannot
// be reached or answers 5xx wraps ciba.ErrUnavailable.
func (u *Upstream) ExchangeUser(ctx context.Context, clientID, code string, l Login, want Expected) (Exchanged, error) {
	creds, err := u.credentials(clientID)
	if err != nil {
		return Exchanged{}, err
	}
	if err := l.check(); err != nil {
		return Exchanged{}, err
	}
	if code == "" {
		return Exchanged{}, errors.New("oidc: the identity provider sent no authorization code")
	}
	if err := want.check(); err != nil {
		return Exchanged{}, err
	}
	idp, err := u.provider(ctx)
	if err != nil {
		return Exchanged{}, err
	}
	tok, err := u.oauth2Config(idp, creds, nil).Exchange(gooidc.ClientContext(ctx, u.http), code, oauth2.VerifierOption(l.CodeVerifier))
	if err != nil {
		return Exchanged{}, tokenEndpointError(ctx, err)
	}
	rawIDToken, _ := tok.Extra("id_token").(string)
	if rawIDToken == "" {
		return Exchanged{}, errors.New("oidc: the identity provider's token response has no id_token")
	}
	idt, err := u.verify(ctx, idp, creds.ClientID, rawIDToken, false)
	if err != nil {
		return Exchanged{}, fmt.Errorf("oidc: the ID token from the identity provider is not valid: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(l.Nonce)) != 1 {
		return Exchanged{}, errors.New("oidc: the ID token's nonce is not the sign-in's")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Exchanged{}, fmt.Errorf("oidc: the ID token's at_hash does not match the access token: %w", err)
		}
	}
	if idt.Subject == "" {
		return Exchanged{}, errors.New("oidc: the ID token has no sub")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Exchanged{}, fmt.Errorf("oidc: decode the ID token's claims: %w", err)
	}
	if !want.AnyUser {
		if err := u.checkUser(idt.Subject, claims, want); err != nil {
			return Exchanged{}, err
		}
	}
	authTime := u.now()
	if at, ok := claims["auth_time"].(float64); ok && at > 0 {
		authTime = time.Unix(int64(at), 0)
	}
	return Exchanged{
		Tokens: &ciba.TokenResponse{
			AccessToken:  tok.AccessToken,
			TokenType:    tok.TokenType,
			ExpiresIn:    expiresIn(tok),
			RefreshToken: tok.RefreshToken,
			IDToken:      rawIDToken,
			Scope:        extraString(tok, "scope"),
			// RFC 9396 §7: what the IdP granted, passed on as it said.
			AuthorizationDetails: extraJSON(tok, "authorization_details"),
		},
		AuthTime: authTime,
		Subject:  idt.Subject,
	}, nil
}

// checkUser checks that the ID token's user is the one the request named.
// The error names the claims compared, never their values.
func (u *Upstream) checkUser(sub string, claims map[string]any, want Expected) error {
	if want.Subject != "" {
		if sub != want.Subject {
			return fmt.Errorf("%w: the ID token's sub is not the id_token_hint's", ErrWrongUser)
		}
		return nil
	}
	unverified := ""
	for _, name := range u.cfg.MatchClaims {
		v, ok := claims[name].(string)
		if !ok || v == "" {
			continue
		}
		if name == "email" {
			if !strings.EqualFold(v, want.LoginHint) {
				continue
			}
			if emailUnverified(claims["email_verified"]) {
				unverified = " (the email is equal but not verified)"
				continue
			}
			return nil
		}
		if v == want.LoginHint {
			return nil
		}
	}
	return fmt.Errorf("%w: the login_hint equals none of the ID token's claims %s%s", ErrWrongUser, strings.Join(u.cfg.MatchClaims, ", "), unverified)
}

// emailUnverified reports whether email_verified says false; some IdPs
// send it as a string.
func emailUnverified(v any) bool {
	switch v := v.(type) {
	case bool:
		return !v
	case string:
		return strings.EqualFold(v, "false")
	}
	return false
}

// tokenEndpointError turns an oauth2 exchange error into a *TokenError, an
// unavailable error, or a plain error that does not quote the answer.
func tokenEndpointError(ctx context.Context, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		te := &TokenError{Code: re.ErrorCode, Description: re.ErrorDescription}
		if re.Response != nil {
			te.Status = re.Response.StatusCode
		}
		return te
	}
	var ue *url.Error
	var ne net.Error
	if errors.As(err, &ue) || errors.As(err, &ne) || ctx.Err() != nil {
		return unavailable(fmt.Errorf("oidc: the identity provider's token endpoint: %w", err))
	}
	return fmt.Errorf("oidc: the identity provider's token response is not usable: %w", err)
}

func expiresIn(tok *oauth2.Token) int64 {
	if tok.ExpiresIn != 0 {
		return tok.ExpiresIn
	}
	// A form-encoded answer: x/oauth2 keeps expires_in only among the extras.
	n, _ := strconv.ParseInt(extraString(tok, "expires_in"), 10, 64)
	return n
}

func extraString(tok *oauth2.Token, name string) string {
	s, _ := tok.Extra(name).(string)
	return s
}

// extraJSON is the token response member name as JSON text when it is an
// array (authorization_details, RFC 9396 §7), "" otherwise.
func extraJSON(tok *oauth2.Token, name string) ciba.RawJSON {
	v, ok := tok.Extra(name).([]any)
	if !ok {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return ciba.RawJSON(b)
}
