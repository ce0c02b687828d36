package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/clientauth"
	"github.com/cibaproxy/cibaproxy/internal/clientmeta"
	"github.com/cibaproxy/cibaproxy/internal/dpop"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/upstream/local"
)

const tokIssuer = "https://op.test"

// tokEnv is a server with the local issuer's token services on a memory
// store: client "rs" may introspect (and has no delivery mode), "app" and
// "other" are poll clients; all with secret "secret".
type tokEnv struct {
	up  *local.Upstream
	srv *httptest.Server
	key *ecdsa.PrivateKey // the client's DPoP key
}

func newTokEnv(t *testing.T, dcfg func(ciba.Store) *dpop.Verifier) *tokEnv {
	t.Helper()
	return newTokEnvWith(t, dcfg, func(*Server) {})
}

// newTokEnvWith is newTokEnv with the Server changed by set before it
// serves (limits, a clock).
func newTokEnvWith(t *testing.T, dcfg func(ciba.Store) *dpop.Verifier, set func(*Server)) *tokEnv {
	t.Helper()
	st := memory.New()
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, err := keys.New(sk)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	up, err := local.New(local.Config{
		Issuer: tokIssuer,
		Users: []local.User{{Username: "alice", Subject: "sub-alice", PasswordHash: pw, Claims: map[string]any{
			"email": "alice@example.com", "email_verified": true, "name": "Alice", "phone_number": "+4912345", "address": map[string]any{"country": "DE"},
		}}},
		AccessTokenTTL: 10 * time.Minute, IDTokenTTL: 5 * time.Minute, RefreshTokenTTL: time.Hour,
		Signer: signer, Hints: noHints{}, LeftHash: keys.LeftHash, Store: st,
	})
	if err != nil {
		t.Fatal(err)
	}
	var regs []*clientauth.Registration
	for _, m := range []clientmeta.Metadata{
		{ID: "rs", Secret: "secret", Introspection: true},
		{ID: "app", DeliveryMode: clientmeta.ModePoll, Secret: "secret"},
		{ID: "other", DeliveryMode: clientmeta.ModePoll, Secret: "secret"},
	} {
		v, problems := clientmeta.Check(m)
		if problems != nil {
			t.Fatal(problems)
		}
		reg, err := clientauth.NewRegistration(context.Background(), v)
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, reg)
	}
	registry, err := clientauth.NewRegistry(regs...)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Issuer: tokIssuer, Clients: &clientauth.Authenticator{Registry: registry}, Refresher: up, Tokens: up, Logger: discard(),
		Discovery: func(context.Context) (map[string]any, error) { return map[string]any{}, nil },
		JWKS:      func() any { return map[string]any{} },
	}
	if dcfg == nil {
		dcfg = storeVerifier
	}
	s.DPoP = dcfg(st)
	set(s)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &tokEnv{up: up, srv: srv, key: k}
}

type noHints struct{}

func (noHints) IDTokenHint(context.Context, string, string) (string, error) {
	return "", ciba.Errorf(ciba.CodeInvalidRequest, "no")
}
func (noHints) LoginHintToken(context.Context, string, string) (string, string, error) {
	return "", "", ciba.Errorf(ciba.CodeInvalidRequest, "no")
}

// mint issues tokens of client "app" for alice with scope, bound to jkt
// when set, as if issued at `at`.
func (e *tokEnv) mint(t *testing.T, scope, jkt string, at time.Time) *ciba.TokenResponse {
	t.Helper()
	tr, err := e.up.Mint(t.Context(), &ciba.AuthRequest{ID: rand.Text(), ClientID: "app", Subject: "sub-alice",
		Scopes: strings.Fields(scope), AuthTime: at, DPoPJKT: jkt, AuthzDetails: `[{"type":"payment","amount":"5"}]`}, at)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// jkt is the thumbprint of e's DPoP key.
func (e *tokEnv) jkt(t *testing.T) string { return keyJKT(t, e.key) }

// answer is one HTTP answer.
type answer struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

// do sends a request with an optional form body, basic auth as client
// (none if ""), and extra headers.
func (e *tokEnv) do(t *testing.T, method, path, client string, form url.Values, header map[string][]string) answer {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if client != "" {
		req.SetBasicAuth(client, "secret")
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func (e *tokEnv) introspect(t *testing.T, token string) answer {
	t.Helper()
	return e.do(t, http.MethodPost, PathIntrospect, "rs", url.Values{"token": {token}}, nil)
}

func wantStatus(t *testing.T, what string, a answer, status int, code string) {
	t.Helper()
	if a.status != status || (code != "" && a.body["error"] != code) {
		t.Fatalf("%s: got %d %s, want %d %s", what, a.status, a.raw, status, code)
	}
	if cc := a.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("%s: Cache-Control %q, want no-store", what, cc)
	}
}

func wantInactive(t *testing.T, what string, a answer) {
	t.Helper()
	if a.status != 200 || strings.TrimSpace(a.raw) != `{"active":false}` {
		t.Fatalf("%s: introspection got %d %s, want exactly {\"active\":false}", what, a.status, a.raw)
	}
}

// TestIntrospectionErrors: the introspection endpoint's refusals at the
// HTTP level (RFC 7662 §2.3, RFC 6749 §5.2).
func TestIntrospectionErrors(t *testing.T) {
	e := newTokEnv(t, nil)
	tr := e.mint(t, "openid", "", time.Now())
	form := url.Values{"token": {tr.AccessToken}}
	wantStatus(t, "no client authentication", e.do(t, "POST", PathIntrospect, "", form, nil), 401, "invalid_client")
	bad := e.do(t, "POST", PathIntrospect, "", form, map[string][]string{"Authorization": {"Basic " + b64([]byte("rs:wrong"))}})
	wantStatus(t, "wrong secret", bad, 401, "invalid_client")
	wantStatus(t, "a client without the introspection permission", e.do(t, "POST", PathIntrospect, "app", form, nil), 403, "unauthorized_client")
	wantStatus(t, "no token", e.do(t, "POST", PathIntrospect, "rs", url.Values{}, nil), 400, "invalid_request")
	wantStatus(t, "token twice", e.do(t, "POST", PathIntrospect, "rs", url.Values{"token": {"a", "b"}}, nil), 400, "invalid_request")
	if a := e.do(t, "GET", PathIntrospect, "rs", nil, nil); a.status != 405 || a.header.Get("Allow") != "POST" {
		t.Fatalf("GET /introspect: %d %v", a.status, a.header)
	}
	if a := e.do(t, "POST", PathIntrospect, "rs", nil, map[string][]string{"Content-Type": {"application/json"}}); a.status != 400 || a.body["error"] != "invalid_request" {
		t.Fatalf("a JSON body: %d %s", a.status, a.raw)
	}
}

// TestIntrospectionActive: an active access token is answered with its
// claims, cnf and authorization_details included; a refresh token with
// its grant.
func TestIntrospectionActive(t *testing.T) {
	e := newTokEnv(t, nil)
	now := time.Now()
	tr := e.mint(t, "openid email", "", now)
	a := e.introspect(t, tr.AccessToken)
	wantStatus(t, "introspect", a, 200, "")
	for k, want := range map[string]any{"active": true, "client_id": "app", "sub": "sub-alice", "scope": "openid email", "token_type": "Bearer", "iss": tokIssuer, "aud": tokIssuer, "username": "alice"} {
		if a.body[k] != want {
			t.Errorf("introspection %s = %v, want %v (%s)", k, a.body[k], want, a.raw)
		}
	}
	for _, k := range []string{"exp", "iat", "jti", "auth_time", "authorization_details"} {
		if a.body[k] == nil {
			t.Errorf("introspection lacks %s: %s", k, a.raw)
		}
	}
	bound := e.mint(t, "openid", e.jkt(t), now)
	a = e.introspect(t, bound.AccessToken)
	if cnf, _ := a.body["cnf"].(map[string]any); a.body["token_type"] != "DPoP" || cnf["jkt"] != e.jkt(t) {
		t.Fatalf("a DPoP-bound token: %s, want token_type DPoP and cnf.jkt", a.raw)
	}
	a = e.introspect(t, tr.RefreshToken)
	if a.body["active"] != true || a.body["client_id"] != "app" || a.body["scope"] != "openid email" || a.body["exp"] == nil {
		t.Fatalf("a refresh token: %s", a.raw)
	}
}

// TestIntrospectionInactive: a token that is malformed, unknown, of
// another role, tampered with, expired or revoked is {"active":false}
// and nothing more.
func TestIntrospectionInactive(t *testing.T) {
	e := newTokEnv(t, nil)
	tr := e.mint(t, "openid", "", time.Now())
	old := e.mint(t, "openid", "", time.Now().Add(-time.Hour))
	parts := strings.Split(tr.AccessToken, ".")
	tampered := parts[0] + "." + b64([]byte(`{"sub":"sub-alice","client_id":"app"}`)) + "." + parts[2]
	for what, tok := range map[string]string{
		"garbage": "not-a-token", "a JWT-shaped string": "a.b.c", "an ID token": tr.IDToken,
		"a tampered access token": tampered, "an expired access token": old.AccessToken,
		"an unknown refresh token": rand.Text(),
	} {
		wantInactive(t, what, e.introspect(t, tok))
	}
	// Revoked by its client.
	wantStatus(t, "revoke", e.do(t, "POST", PathRevoke, "app", url.Values{"token": {tr.AccessToken}}, nil), 200, "")
	wantInactive(t, "a revoked access token", e.introspect(t, tr.AccessToken))
}

// TestRevocation: the revocation endpoint (RFC 7009): errors, the
// ownership check, unknown tokens, and a refresh token revoking its family
// with its access tokens.
func TestRevocation(t *testing.T) {
	e := newTokEnv(t, nil)
	tr := e.mint(t, "openid", "", time.Now())
	wantStatus(t, "no client authentication", e.do(t, "POST", PathRevoke, "", url.Values{"token": {tr.AccessToken}}, nil), 401, "invalid_client")
	wantStatus(t, "no token", e.do(t, "POST", PathRevoke, "app", url.Values{"token_type_hint": {"access_token"}}, nil), 400, "invalid_request")
	if a := e.do(t, "GET", PathRevoke, "app", nil, nil); a.status != 405 {
		t.Fatalf("GET /revoke: %d", a.status)
	}
	for what, tok := range map[string]string{"an unknown token": "nope", "an unknown JWT": "a.b.c", "an ID token": tr.IDToken} {
		if a := e.do(t, "POST", PathRevoke, "app", url.Values{"token": {tok}}, nil); a.status != 200 || a.raw != "" {
			t.Fatalf("%s: %d %q, want 200 with no body (RFC 7009 §2.2)", what, a.status, a.raw)
		}
	}
	// Another client's tokens are refused, and stay active.
	for _, tok := range []string{tr.AccessToken, tr.RefreshToken} {
		wantStatus(t, "another client's token", e.do(t, "POST", PathRevoke, "other", url.Values{"token": {tok}}, nil), 400, "unauthorized_client")
		if a := e.introspect(t, tok); a.body["active"] != true {
			t.Fatalf("after another client's revocation: %s", a.raw)
		}
	}
	// The refresh token revokes its family: the refresh token, its
	// rotated successor and every access token issued with them.
	second, err := e.up.RefreshBound(t.Context(), "app", tr.RefreshToken, "", ciba.Binding{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "revoke the refresh token", e.do(t, "POST", PathRevoke, "app", url.Values{"token": {second.RefreshToken}, "token_type_hint": {"refresh_token"}}, nil), 200, "")
	for what, tok := range map[string]string{"refresh token": second.RefreshToken, "its access token": second.AccessToken, "the first access token": tr.AccessToken} {
		wantInactive(t, "the revoked family's "+what, e.introspect(t, tok))
	}
	if _, err := e.up.RefreshBound(t.Context(), "app", second.RefreshToken, "", ciba.Binding{}, time.Now()); err == nil {
		t.Fatal("the revoked refresh token still refreshes")
	}
	if a := e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {"Bearer " + second.AccessToken}}); a.status != 401 {
		t.Fatalf("userinfo with a revoked family's access token: %d %s", a.status, a.raw)
	}
	// Revoking again is no error.
	wantStatus(t, "revoke again", e.do(t, "POST", PathRevoke, "app", url.Values{"token": {second.RefreshToken}}, nil), 200, "")
}

// TestRefreshReuseRevokesAccessTokens: a rotated refresh token that comes
// back revokes its family, the access tokens issued with it too (RFC 9700
// §4.14.2).
func TestRefreshReuseRevokesAccessTokens(t *testing.T) {
	e := newTokEnv(t, nil)
	tr := e.mint(t, "openid", "", time.Now())
	second, err := e.up.RefreshBound(t.Context(), "app", tr.RefreshToken, "", ciba.Binding{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.up.RefreshBound(t.Context(), "app", tr.RefreshToken, "", ciba.Binding{}, time.Now()); err == nil {
		t.Fatal("a reused refresh token refreshed")
	}
	for _, tok := range []string{tr.AccessToken, second.AccessToken, second.RefreshToken} {
		wantInactive(t, "after the reuse", e.introspect(t, tok))
	}
}

// TestUserinfoBearer: userinfo with bearer tokens (OIDC Core §5.3, RFC
// 6750): claims by scope, GET and POST, and every refusal with its
// WWW-Authenticate challenge.
func TestUserinfoBearer(t *testing.T) {
	e := newTokEnv(t, nil)
	tr := e.mint(t, "openid email profile", "", time.Now())
	bearer := map[string][]string{"Authorization": {"Bearer " + tr.AccessToken}}
	a := e.do(t, "GET", PathUserinfo, "", nil, bearer)
	wantStatus(t, "GET userinfo", a, 200, "")
	want := map[string]any{"sub": "sub-alice", "email": "alice@example.com", "email_verified": true, "name": "Alice", "preferred_username": "alice"}
	for k, v := range want {
		if a.body[k] != v {
			t.Errorf("userinfo %s = %v, want %v", k, a.body[k], v)
		}
	}
	if a.body["phone_number"] != nil || a.body["address"] != nil {
		t.Errorf("userinfo released claims of scopes not granted: %s", a.raw)
	}
	if a := e.do(t, "POST", PathUserinfo, "", url.Values{"access_token": {tr.AccessToken}}, nil); a.status != 200 || a.body["sub"] != "sub-alice" {
		t.Fatalf("POST userinfo with the token in the body: %d %s", a.status, a.raw)
	}
	if a := e.do(t, "POST", PathUserinfo, "", nil, bearer); a.status != 200 {
		t.Fatalf("POST userinfo with the header: %d %s", a.status, a.raw)
	}
	phone := e.mint(t, "openid phone address", "", time.Now())
	a = e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {"Bearer " + phone.AccessToken}})
	if a.body["phone_number"] != "+4912345" || a.body["address"] == nil || a.body["email"] != nil {
		t.Fatalf("phone and address scopes: %s", a.raw)
	}

	// No token: a challenge with no error code (RFC 6750 §3.1).
	a = e.do(t, "GET", PathUserinfo, "", nil, nil)
	if ch := a.header.Get("WWW-Authenticate"); a.status != 401 || !strings.HasPrefix(ch, "Bearer") || strings.Contains(ch, "error=") || !strings.Contains(ch, `DPoP algs="`) {
		t.Fatalf("no token: %d, WWW-Authenticate %q", a.status, ch)
	}
	challenge := func(what string, a answer, status int, want string) {
		t.Helper()
		if ch := a.header.Get("WWW-Authenticate"); a.status != status || !strings.Contains(ch, want) {
			t.Fatalf("%s: %d %s, WWW-Authenticate %q; want %d with %s", what, a.status, a.raw, ch, status, want)
		}
	}
	challenge("an invalid token", e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {"Bearer x.y.z"}}), 401, `Bearer error="invalid_token"`)
	challenge("an ID token", e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {"Bearer " + tr.IDToken}}), 401, `Bearer error="invalid_token"`)
	noOpenID := e.mint(t, "email", "", time.Now())
	challenge("no openid scope", e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {"Bearer " + noOpenID.AccessToken}}), 403, `Bearer error="insufficient_scope"`)
	challenge("an unbound token with the DPoP scheme", e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {"DPoP " + tr.AccessToken}}), 401, `DPoP algs="`)
	wantStatus(t, "the token in the query", e.do(t, "GET", PathUserinfo+"?access_token="+tr.AccessToken, "", nil, nil), 400, "invalid_request")
	wantStatus(t, "the token in the header and the body", e.do(t, "POST", PathUserinfo, "", url.Values{"access_token": {tr.AccessToken}}, bearer), 400, "invalid_request")
	wantStatus(t, "two Authorization headers", e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {"Bearer a", "Bearer b"}}), 400, "invalid_request")
	if a := e.do(t, "PUT", PathUserinfo, "", nil, bearer); a.status != 405 {
		t.Fatalf("PUT userinfo: %d", a.status)
	}
	// Revoked: invalid_token.
	wantStatus(t, "revoke", e.do(t, "POST", PathRevoke, "app", url.Values{"token": {tr.AccessToken}}, nil), 200, "")
	challenge("a revoked token", e.do(t, "GET", PathUserinfo, "", nil, bearer), 401, `Bearer error="invalid_token"`)
}

// TestUserinfoDPoP: userinfo with a DPoP-bound token (RFC 9449 §7): the
// DPoP scheme, a proof of the bound key with ath, and each refusal.
func TestUserinfoDPoP(t *testing.T) {
	e := newTokEnv(t, nil)
	tr := e.mint(t, "openid email", e.jkt(t), time.Now())
	if tr.TokenType != "DPoP" {
		t.Fatalf("token_type %q", tr.TokenType)
	}
	htu := tokIssuer + PathUserinfo
	ath := dpop.AccessTokenHash(tr.AccessToken)
	call := func(scheme string, proofs ...string) answer {
		return e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {scheme + " " + tr.AccessToken}, "DPoP": proofs})
	}
	good := dpopProof(t, e.key, "GET", htu, map[string]any{"ath": ath})
	if a := call("DPoP", good); a.status != 200 || a.body["email"] != "alice@example.com" {
		t.Fatalf("a good proof: %d %s", a.status, a.raw)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, c := range []struct {
		what, scheme string
		proofs       []string
		want         string
	}{
		{"the DPoP-bound token as a bearer token", "Bearer", []string{dpopProof(t, e.key, "GET", htu, map[string]any{"ath": ath})}, `Bearer error="invalid_token"`},
		{"no proof", "DPoP", nil, `error="invalid_dpop_proof"`},
		{"two proofs", "DPoP", []string{dpopProof(t, e.key, "GET", htu, map[string]any{"ath": ath}), dpopProof(t, e.key, "GET", htu, map[string]any{"ath": ath})}, `error="invalid_dpop_proof"`},
		{"a replayed proof", "DPoP", []string{good}, `error="invalid_dpop_proof"`},
		{"no ath", "DPoP", []string{dpopProof(t, e.key, "GET", htu, nil)}, `error="invalid_dpop_proof"`},
		{"the ath of another token", "DPoP", []string{dpopProof(t, e.key, "GET", htu, map[string]any{"ath": dpop.AccessTokenHash("x")})}, `error="invalid_dpop_proof"`},
		{"the wrong htm", "DPoP", []string{dpopProof(t, e.key, "POST", htu, map[string]any{"ath": ath})}, `error="invalid_dpop_proof"`},
		{"the wrong htu", "DPoP", []string{dpopProof(t, e.key, "GET", tokIssuer+PathToken, map[string]any{"ath": ath})}, `error="invalid_dpop_proof"`},
		{"a stale iat", "DPoP", []string{dpopProof(t, e.key, "GET", htu, map[string]any{"ath": ath, "iat": time.Now().Add(-time.Hour).Unix()})}, `error="invalid_dpop_proof"`},
		{"a proof of another key", "DPoP", []string{dpopProof(t, other, "GET", htu, map[string]any{"ath": ath})}, `DPoP algs="ES256`},
	} {
		a := call(c.scheme, c.proofs...)
		if ch := a.header.Get("WWW-Authenticate"); a.status != 401 || !strings.Contains(ch, c.want) {
			t.Errorf("%s: %d %s, WWW-Authenticate %q; want 401 with %s", c.what, a.status, a.raw, ch, c.want)
		}
	}
	a := call("DPoP", dpopProof(t, other, "GET", htu, map[string]any{"ath": ath}))
	if a.body["error"] != "invalid_token" {
		t.Errorf("a proof of another key: %s, want invalid_token", a.raw)
	}
}

// TestUserinfoDPoPNonce: with server nonces, a proof without one is
// answered 401 use_dpop_nonce with a DPoP-Nonce, and the retry with it
// succeeds (RFC 9449 §9).
func TestUserinfoDPoPNonce(t *testing.T) {
	nonceKey := make([]byte, 32)
	_, _ = rand.Read(nonceKey)
	e := newTokEnv(t, nonceVerifier(t, nonceKey))
	tr := e.mint(t, "openid", e.jkt(t), time.Now())
	htu, ath := tokIssuer+PathUserinfo, dpop.AccessTokenHash(tr.AccessToken)
	call := func(proof string) answer {
		return e.do(t, "GET", PathUserinfo, "", nil, map[string][]string{"Authorization": {"DPoP " + tr.AccessToken}, "DPoP": {proof}})
	}
	a := call(dpopProof(t, e.key, "GET", htu, map[string]any{"ath": ath}))
	nonce := a.header.Get("DPoP-Nonce")
	if ch := a.header.Get("WWW-Authenticate"); a.status != 401 || !strings.Contains(ch, `DPoP `) || !strings.Contains(ch, `error="use_dpop_nonce"`) || nonce == "" {
		t.Fatalf("no nonce: %d %s, WWW-Authenticate %q, DPoP-Nonce %q", a.status, a.raw, ch, nonce)
	}
	if a := call(dpopProof(t, e.key, "GET", htu, map[string]any{"ath": ath, "nonce": nonce})); a.status != 200 || a.body["sub"] != "sub-alice" {
		t.Fatalf("with the nonce: %d %s", a.status, a.raw)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestTokenTypeHintAtTheEndpoints: at /introspect and /revoke every
// token_type_hint, the right one, the wrong one and one of no type this
// server knows, finds the token (RFC 7662 §2.1, RFC 7009 §2.1): an unknown
// hint is no error at either, and revocation never answers
// unsupported_token_type, as both kinds of token can be revoked
// (RFC 7009 §2.2.1).
func TestTokenTypeHintAtTheEndpoints(t *testing.T) {
	e := newTokEnv(t, nil)
	for _, hint := range []string{"access_token", "refresh_token", "id_token", "bogus"} {
		tr := e.mint(t, "openid", "", time.Now())
		for what, tok := range map[string]string{"access": tr.AccessToken, "refresh": tr.RefreshToken} {
			a := e.do(t, "POST", PathIntrospect, "rs", url.Values{"token": {tok}, "token_type_hint": {hint}}, nil)
			wantStatus(t, "introspect the "+what+" token with hint "+hint, a, 200, "")
			if a.body["active"] != true || a.body["client_id"] != "app" {
				t.Errorf("introspect the %s token with hint %s: %s, want active", what, hint, a.raw)
			}
		}
		for what, tok := range map[string]string{"access": tr.AccessToken, "refresh": tr.RefreshToken} {
			wantStatus(t, "revoke the "+what+" token with hint "+hint,
				e.do(t, "POST", PathRevoke, "app", url.Values{"token": {tok}, "token_type_hint": {hint}}, nil), 200, "")
			wantInactive(t, "the "+what+" token revoked with hint "+hint, e.introspect(t, tok))
		}
		wantStatus(t, "revoke an ID token with hint "+hint,
			e.do(t, "POST", PathRevoke, "app", url.Values{"token": {tr.IDToken}, "token_type_hint": {hint}}, nil), 200, "")
	}
}

// TestRevokeBurstOverTokenPerClientIsSlowDown: /revoke with a
// token_type_hint counts in limits.token_per_client at its shipped default
// (12000 per minute, examples/quickstart.yaml leaves it so): a burst of
// 12050 from one client on a stopped clock gets exactly 12000 answers and
// 50 RFC 6749 JSON slow_down refusals (400, as at /token: CIBA Core §11)
// with Retry-After; another client is not held by it.
func TestRevokeBurstOverTokenPerClientIsSlowDown(t *testing.T) {
	if testing.Short() {
		t.Skip("12050 requests")
	}
	def := limit.Rate{Requests: 12000, Per: time.Minute} // config's defaultTokenPerClient
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e := newTokEnvWith(t, nil, func(s *Server) {
		s.Limits = &Limits{Token: limit.New(def, 0)}
		s.Now = func() time.Time { return now }
	})
	const extra = 50
	var ok, slow, other atomic.Int64
	var firstOther atomic.Value
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				hint := []string{"access_token", "refresh_token", "bogus"}[i%3]
				a := e.do(t, "POST", PathRevoke, "app", url.Values{"token": {"not-a-token"}, "token_type_hint": {hint}}, nil)
				switch {
				case a.status == http.StatusOK:
					ok.Add(1)
				case a.status == http.StatusBadRequest && a.body["error"] == "slow_down" && a.header.Get("Retry-After") != "" &&
					strings.HasPrefix(a.header.Get("Content-Type"), "application/json"):
					slow.Add(1)
				default:
					other.Add(1)
					firstOther.CompareAndSwap(nil, fmt.Sprintf("%d %v %s", a.status, a.header, a.raw))
				}
			}
		})
	}
	for i := range def.Requests + extra {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if ok.Load() != int64(def.Requests) || slow.Load() != extra || other.Load() != 0 {
		t.Fatalf("%d revoked, %d slow_down, %d other (first: %v); want %d, %d, 0", ok.Load(), slow.Load(), other.Load(), firstOther.Load(), def.Requests, extra)
	}
	if a := e.do(t, "POST", PathRevoke, "other", url.Values{"token": {"not-a-token"}, "token_type_hint": {"refresh_token"}}, nil); a.status != http.StatusOK {
		t.Fatalf("another client is held by app's limit: %d %s", a.status, a.raw)
	}
}
