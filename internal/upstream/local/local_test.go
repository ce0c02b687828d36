package local_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

const issuer = "https://proxy.example"

// hints is a fake HintVerifier: "good-id-token" names sub-alice.
type hints struct{}

func (hints) IDTokenHint(_ context.Context, raw, clientID string) (string, error) {
	if raw == "good-id-token" && clientID == "c1" {
		return "sub-alice", nil
	}
	return "", ciba.Errorf(ciba.CodeInvalidRequest, "bad id_token_hint")
}

func (hints) LoginHintToken(_ context.Context, raw, _ string) (string, string, error) {
	kind, value, _ := strings.Cut(raw, ":")
	return kind, value, nil
}

func hash(t testing.TB, s string) []byte {
	h, err := bcrypt.GenerateFromPassword([]byte(s), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newUpstream(t *testing.T) (*local.Upstream, *keys.Manager, ciba.Store) {
	t.Helper()
	m := newSigner(t)
	st := memory.New()
	u, err := local.New(local.Config{
		Issuer: issuer,
		Users: []local.User{
			{Username: "alice", Subject: "sub-alice", PasswordHash: hash(t, "pw"), UserCodeHash: hash(t, "1234"),
				Claims: map[string]any{"email": "Alice@Example.com", "name": "Alice", "phone_number": "+1"}},
			{Username: "bob", PasswordHash: hash(t, "pw2")},
		},
		AccessTokenTTL: 10 * time.Minute, IDTokenTTL: 5 * time.Minute, RefreshTokenTTL: time.Hour,
		Signer: m, Hints: hints{}, LeftHash: keys.LeftHash, Store: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	return u, m, st
}

func TestResolveUser(t *testing.T) {
	u, _, _ := newUpstream(t)
	c := &ciba.Client{ID: "c1"}
	for _, tt := range []struct {
		name string
		hint ciba.Hint
		want string
		code ciba.ErrorCode
	}{
		{"login_hint by username", ciba.Hint{LoginHint: "alice"}, "sub-alice", ""},
		{"login_hint by subject", ciba.Hint{LoginHint: "sub-alice"}, "sub-alice", ""},
		{"login_hint by e-mail, case-insensitive", ciba.Hint{LoginHint: "alice@EXAMPLE.com"}, "sub-alice", ""},
		{"subject defaults to the username", ciba.Hint{LoginHint: "bob"}, "bob", ""},
		{"an unknown login_hint is unknown_user_id", ciba.Hint{LoginHint: "mallory"}, "", ciba.CodeUnknownUserID},
		{"a verified id_token_hint names its subject", ciba.Hint{IDTokenHint: "good-id-token"}, "sub-alice", ""},
		{"a bad id_token_hint passes the verifier's error on", ciba.Hint{IDTokenHint: "forged"}, "", ciba.CodeInvalidRequest},
		{"a login_hint_token naming an e-mail", ciba.Hint{LoginHintToken: "email:alice@example.com"}, "sub-alice", ""},
		{"a login_hint_token naming an unknown sub", ciba.Hint{LoginHintToken: "sub:nobody"}, "", ciba.CodeUnknownUserID},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := u.ResolveUser(context.Background(), c, tt.hint)
			if tt.code != "" {
				if ciba.AsError(err).Code != tt.code {
					t.Fatalf("err = %v, want %s", err, tt.code)
				}
				return
			}
			if err != nil || got.Subject != tt.want {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestCheckUserCodeAndPassword(t *testing.T) {
	u, _, _ := newUpstream(t)
	ctx := context.Background()
	if err := u.CheckUserCode(ctx, ciba.User{Subject: "sub-alice"}, "1234"); err != nil {
		t.Fatalf("right code refused: %v", err)
	}
	for name, tc := range map[string]struct{ sub, code string }{
		"a wrong code":               {"sub-alice", "9999"},
		"a user without a code":      {"bob", "1234"},
		"a user that does not exist": {"ghost", "1234"},
	} {
		if err := u.CheckUserCode(ctx, ciba.User{Subject: tc.sub}, tc.code); ciba.AsError(err).Code != ciba.CodeInvalidUserCode {
			t.Errorf("%s: err = %v, want invalid_user_code", name, err)
		}
	}
	if sub, ok, _ := u.CheckPassword(t.Context(), "alice", "pw"); !ok || sub != "sub-alice" {
		t.Errorf("right password refused")
	}
	if _, ok, _ := u.CheckPassword(t.Context(), "alice", "nope"); ok {
		t.Errorf("wrong password accepted")
	}
	if _, ok, _ := u.CheckPassword(t.Context(), "ghost", "pw"); ok {
		t.Errorf("unknown user accepted")
	}
}

func claims(t *testing.T, m *keys.Manager, tok string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(m.PublicJWKS().Keys[0])
	if err != nil {
		t.Fatalf("signature: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMint(t *testing.T) {
	u, m, _ := newUpstream(t)
	now := time.Now()
	r := &ciba.AuthRequest{ID: "req-1", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid", "email"}, AuthTime: now}
	tr, err := u.Mint(context.Background(), r, now)
	if err != nil {
		t.Fatal(err)
	}
	idt := claims(t, m, tr.IDToken)
	want := map[string]any{
		"iss": issuer, "sub": "sub-alice", "aud": "c1",
		"urn:openid:params:jwt:claim:auth_req_id": "req-1", // CIBA §10.3.1
		"at_hash":                             keys.LeftHash(m.Alg(), tr.AccessToken),
		"urn:openid:params:jwt:claim:rt_hash": keys.LeftHash(m.Alg(), tr.RefreshToken),
		"email":                               "Alice@Example.com",
		"auth_time":                           float64(now.Unix()),
	}
	for k, v := range want {
		if idt[k] != v {
			t.Errorf("ID token %s = %v, want %v", k, idt[k], v)
		}
	}
	if _, ok := idt["phone_number"]; ok {
		t.Error("phone_number released without the phone scope")
	}
	at := claims(t, m, tr.AccessToken)
	if at["client_id"] != "c1" || at["scope"] != "openid email" || at["sub"] != "sub-alice" {
		t.Errorf("access token claims %v", at)
	}
	if tr.TokenType != "Bearer" || tr.ExpiresIn != 600 || tr.RefreshToken == "" {
		t.Errorf("token response %+v", tr)
	}
}

func TestRefresh(t *testing.T) {
	u, m, _ := newUpstream(t)
	ctx := context.Background()
	now := time.Now()
	tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid", "email"}, AuthTime: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	code := func(err error) ciba.ErrorCode { return ciba.AsError(err).Code }
	t.Run("another client cannot use the refresh token", func(t *testing.T) {
		u2, _, _ := newUpstream(t)
		tr2, _ := u2.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now}, now)
		if _, err := u2.Refresh(ctx, "c2", tr2.RefreshToken, "", "", now); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a wider scope is invalid_scope", func(t *testing.T) {
		u3, _, _ := newUpstream(t)
		tr3, _ := u3.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now}, now)
		if _, err := u3.Refresh(ctx, "c1", tr3.RefreshToken, "openid phone", "", now); code(err) != ciba.CodeInvalidScope {
			t.Fatalf("err = %v", err)
		}
	})
	next, err := u.Refresh(ctx, "c1", tr.RefreshToken, "openid", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if next.RefreshToken == "" || next.RefreshToken == tr.RefreshToken || next.Scope != "openid" {
		t.Fatalf("refreshed %+v", next)
	}
	if idt := claims(t, m, next.IDToken); idt["email"] != nil || idt["urn:openid:params:jwt:claim:auth_req_id"] != nil {
		t.Errorf("refreshed ID token: narrowed scope or auth_req_id not respected: %v", idt)
	}
	t.Run("a refresh token is single use (rotation)", func(t *testing.T) {
		if _, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("an unknown refresh token is invalid_grant", func(t *testing.T) {
		if _, err := u.Refresh(ctx, "c1", "nope", "", "", now); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a missing refresh token is invalid_request", func(t *testing.T) {
		if _, err := u.Refresh(ctx, "c1", "", "", "", now); code(err) != ciba.CodeInvalidRequest {
			t.Fatalf("err = %v", err)
		}
	})
}

// RFC 8705 §3.1: a certificate-bound access token carries the
// certificate's x5t#S256 in its cnf claim; an unbound one has no cnf.
func TestMintCertBound(t *testing.T) {
	u, m, _ := newUpstream(t)
	now := time.Now()
	const tp = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"
	for _, tt := range []struct {
		name, cert string
	}{
		{"a request bound to a certificate gets cnf.x5t#S256", tp},
		{"an unbound request gets no cnf", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &ciba.AuthRequest{ID: "req-1", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now, CertThumbprint: tt.cert}
			tr, err := u.Mint(context.Background(), r, now)
			if err != nil {
				t.Fatal(err)
			}
			at := claims(t, m, tr.AccessToken)
			cnf, has := at["cnf"]
			if tt.cert == "" {
				if has {
					t.Fatalf("unbound access token has cnf %v", cnf)
				}
			} else if got, _ := cnf.(map[string]any)["x5t#S256"].(string); got != tt.cert {
				t.Fatalf("cnf = %v, want x5t#S256 %q", cnf, tt.cert)
			}
			// RFC 8705 defines no token type: the token is used as a bearer
			// token over mutual TLS.
			if tr.TokenType != "Bearer" {
				t.Errorf("token_type = %q, want Bearer", tr.TokenType)
			}
			if _, ok := claims(t, m, tr.IDToken)["cnf"]; ok {
				t.Error("the ID token carries cnf; only the access token is bound")
			}
		})
	}
}

// RFC 8705 §3, §7.1: a refreshed access token is bound to the certificate
// of the refresh request; a refusal leaves the refresh token usable.
func TestRefreshCertBound(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	const (
		oldTP = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"
		newTP = "A4DtL2JmUMhAsvJj5tKyn64SqzmuXbMrJa0n761y5v0"
	)
	code := func(err error) ciba.ErrorCode { return ciba.AsError(err).Code }
	mint := func(t *testing.T, cert string) (*local.Upstream, *keys.Manager, *ciba.TokenResponse) {
		t.Helper()
		u, m, _ := newUpstream(t)
		tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid", "email"}, AuthTime: now, CertThumbprint: cert}, now)
		if err != nil {
			t.Fatal(err)
		}
		return u, m, tr
	}
	cnf := func(t *testing.T, m *keys.Manager, at string) string {
		t.Helper()
		c, _ := claims(t, m, at)["cnf"].(map[string]any)
		s, _ := c["x5t#S256"].(string)
		return s
	}

	t.Run("the new access token is bound to the certificate presented on the refresh request", func(t *testing.T) {
		u, m, tr := mint(t, oldTP)
		next, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", newTP, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := cnf(t, m, next.AccessToken); got != newTP {
			t.Fatalf("cnf.x5t#S256 = %q, want the refresh request's %q", got, newTP)
		}
		// And the rotated refresh token keeps the binding requirement.
		if _, err := u.Refresh(ctx, "c1", next.RefreshToken, "", "", now); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("rotated bound refresh token without a certificate: err = %v, want invalid_grant", err)
		}
	})
	t.Run("a bound refresh token without a certificate is invalid_grant and stays usable", func(t *testing.T) {
		u, m, tr := mint(t, oldTP)
		_, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now)
		if code(err) != ciba.CodeInvalidGrant || !strings.Contains(ciba.AsError(err).Description, "certificate") {
			t.Fatalf("err = %v, want invalid_grant naming the certificate", err)
		}
		next, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", oldTP, now)
		if err != nil {
			t.Fatalf("the refresh token was consumed by the refused request: %v", err)
		}
		if got := cnf(t, m, next.AccessToken); got != oldTP {
			t.Fatalf("cnf.x5t#S256 = %q, want %q", got, oldTP)
		}
	})
	t.Run("an unbound refresh token refreshed with a certificate is bound to it", func(t *testing.T) {
		u, m, tr := mint(t, "")
		next, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", newTP, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := cnf(t, m, next.AccessToken); got != newTP {
			t.Fatalf("cnf.x5t#S256 = %q, want %q", got, newTP)
		}
	})
	t.Run("an unbound refresh without a certificate stays unbound", func(t *testing.T) {
		u, m, tr := mint(t, "")
		next, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := claims(t, m, next.AccessToken)["cnf"]; ok {
			t.Fatal("an unbound refresh produced a bound access token")
		}
	})
	t.Run("a refusal for another client or a wider scope does not use up the refresh token", func(t *testing.T) {
		u, _, tr := mint(t, oldTP)
		if _, err := u.Refresh(ctx, "c2", tr.RefreshToken, "", oldTP, now); code(err) != ciba.CodeInvalidGrant {
			t.Fatalf("another client: err = %v, want invalid_grant", err)
		}
		if _, err := u.Refresh(ctx, "c1", tr.RefreshToken, "openid phone", oldTP, now); code(err) != ciba.CodeInvalidScope {
			t.Fatalf("wider scope: err = %v, want invalid_scope", err)
		}
		if _, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", oldTP, now); err != nil {
			t.Fatalf("the refresh token was used up by a refused request: %v", err)
		}
	})
}

// The refresh token is read before it is taken, so that a refusal leaves it
// usable; taking it stays atomic: of concurrent uses exactly one wins.
func TestRefreshConcurrentOnce(t *testing.T) {
	u, _, _ := newUpstream(t)
	ctx := context.Background()
	now := time.Now()
	tr := mintAlice(t, u, now)
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now)
			errs <- err
		}()
	}
	ok := 0
	for range n {
		err := <-errs
		switch {
		case err == nil:
			ok++
		case ciba.AsError(err).Code != ciba.CodeInvalidGrant:
			t.Errorf("a losing refresh: err = %v, want invalid_grant", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent refreshes succeeded, want exactly 1", ok, n)
	}
}

// TestMintAuthorizationDetails: the details the user approved are in the
// token response (RFC 9396 §7) and the JWT access token (§9.1), byte for
// byte, and stay on the tokens of a refresh; a request without details
// gets none.
func TestMintAuthorizationDetails(t *testing.T) {
	u, m, _ := newUpstream(t)
	ctx := context.Background()
	now := time.Now()
	details := `[{"instructedAmount":{"amount":"123.50","currency":"EUR"},"type":"payment_initiation"}]`
	tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now, AuthzDetails: details}, now)
	if err != nil {
		t.Fatal(err)
	}
	if string(tr.AuthorizationDetails) != details {
		t.Errorf("token response authorization_details = %s", tr.AuthorizationDetails)
	}
	body, _ := json.Marshal(tr)
	if !strings.Contains(string(body), `"authorization_details":`+details) {
		t.Errorf("token response JSON %s", body)
	}
	atDetails := func(tok string) string {
		c := claims(t, m, tok)
		b, _ := json.Marshal(c["authorization_details"])
		return string(b)
	}
	if got := atDetails(tr.AccessToken); got != details {
		t.Errorf("access token authorization_details = %s", got)
	}
	next, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if string(next.AuthorizationDetails) != details || atDetails(next.AccessToken) != details {
		t.Errorf("refreshed: %s / %s", next.AuthorizationDetails, atDetails(next.AccessToken))
	}
	plain, err := u.Mint(ctx, &ciba.AuthRequest{ID: "p", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = json.Marshal(plain)
	if plain.AuthorizationDetails != "" || strings.Contains(string(body), "authorization_details") {
		t.Errorf("a request without details: %s", body)
	}
	if _, ok := claims(t, m, plain.AccessToken)["authorization_details"]; ok {
		t.Error("access token without details carries the claim")
	}
}

// TestMintActor: a request of a delegate client (AuthRequest.Actor) gets
// an access token whose act claim names the client (RFC 8693 §4.1), kept
// on refresh; the ID token has none (its audience is the actor itself);
// a request of an ordinary client has no act claim.
func TestMintActor(t *testing.T) {
	u, m, _ := newUpstream(t)
	ctx := context.Background()
	now := time.Now()
	tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "agent", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now, Actor: "agent"}, now)
	if err != nil {
		t.Fatal(err)
	}
	act := func(tok string) any { return claims(t, m, tok)["act"] }
	want := map[string]any{"sub": "agent"}
	if got := act(tr.AccessToken); !reflect.DeepEqual(got, want) {
		t.Errorf("access token act = %#v, want %#v", got, want)
	}
	if got, ok := claims(t, m, tr.IDToken)["act"]; ok {
		t.Errorf("ID token act = %#v, want none", got)
	}
	next, err := u.Refresh(ctx, "agent", tr.RefreshToken, "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	if got := act(next.AccessToken); !reflect.DeepEqual(got, want) {
		t.Errorf("refreshed access token act = %#v, want %#v", got, want)
	}
	// Introspection (RFC 8693 §4.1 allows act there) of both kinds.
	for name, tok := range map[string]string{"access": next.AccessToken, "refresh": next.RefreshToken} {
		info, err := u.Introspect(ctx, tok, "", now)
		if err != nil || info == nil {
			t.Fatalf("introspect the %s token: %v, %v", name, info, err)
		}
		b, _ := json.Marshal(info["act"])
		if string(b) != `{"sub":"agent"}` {
			t.Errorf("introspection of the %s token: act = %s", name, b)
		}
	}
	plain, err := u.Mint(ctx, &ciba.AuthRequest{ID: "p", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now}, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := claims(t, m, plain.AccessToken)["act"]; ok {
		t.Errorf("an ordinary client's access token has act %#v", got)
	}
}

// TestMintAudience: the resources a request asked for are the access
// token's aud, followed by the issuer (whose userinfo and introspection
// take the token too), refreshed tokens' too; without any, aud is the
// issuer alone.
func TestMintAudience(t *testing.T) {
	u, m, _ := newUpstream(t)
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name      string
		resources []string
		want      string
	}{
		{"none", nil, `"` + issuer + `"`},
		{"one", []string{"https://api.example/"}, `["https://api.example/","` + issuer + `"]`},
		{"several", []string{"https://api.example/", "my-api"}, `["https://api.example/","my-api","` + issuer + `"]`},
		{"the issuer among them", []string{issuer, "my-api"}, `["` + issuer + `","my-api"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := u.Mint(ctx, &ciba.AuthRequest{ID: "r", ClientID: "c1", Subject: "sub-alice", Scopes: []string{"openid"}, AuthTime: now, Resources: tc.resources}, now)
			if err != nil {
				t.Fatal(err)
			}
			aud := func(tok string) string {
				b, _ := json.Marshal(claims(t, m, tok)["aud"])
				return string(b)
			}
			if got := aud(tr.AccessToken); got != tc.want {
				t.Errorf("access token aud = %s, want %s", got, tc.want)
			}
			if info, err := u.Introspect(ctx, tr.AccessToken, "", now); err != nil || info == nil || info["active"] != true {
				t.Errorf("introspection = %v, %v; want the token active", info, err)
			}
			if _, _, err := u.UserInfo(ctx, tr.AccessToken, now); err != nil {
				t.Errorf("userinfo refused the token: %v", err)
			}
			next, err := u.Refresh(ctx, "c1", tr.RefreshToken, "", "", now)
			if err != nil {
				t.Fatal(err)
			}
			if got := aud(next.AccessToken); got != tc.want {
				t.Errorf("refreshed access token aud = %s, want %s", got, tc.want)
			}
		})
	}
}
