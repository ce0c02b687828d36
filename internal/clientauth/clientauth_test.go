package clientauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
	"github.com/cibaproxy/cibaproxy/internal/jose/josetest"
)

const (
	issuer        = "https://ciba.example.com"
	tokenEndpoint = "https://ciba.example.com/token"
	bcEndpoint    = "https://ciba.example.com/bc-authorize"
	plainSecret   = "s3cr3t-with-enough-bytes-for-hs256!!" // ≥ 32 bytes
	hashedSecret  = "another secret: 100% encoded+"
	oddSecret     = "a+b:c d%e/f"
)

var (
	clientKey = sync.OnceValue(func() *rsa.PrivateKey { return genRSA() })
	otherKey  = sync.OnceValue(func() *rsa.PrivateKey { return genRSA() })
	// secretHash is bcrypt(hashedSecret) at the minimum cost, for speed.
	secretHash = sync.OnceValue(func() string {
		h, err := bcrypt.GenerateFromPassword([]byte(hashedSecret), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		return string(h)
	})
)

func genRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func clientJWKS() gojose.JSONWebKeySet {
	return gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{{Key: clientKey().Public(), KeyID: "k1", Use: "sig"}}}
}

// memReplay is an in-test jose.Replay.
type memReplay struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (m *memReplay) Seen(_ context.Context, key string, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen[key] {
		return jose.ErrReplay
	}
	m.seen[key] = true
	return nil
}

func newReg(t testing.TB, o testOpts) *Registration {
	t.Helper()
	r, err := register(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// testRegistry registers:
//   - "basic": plain secret, client_secret_basic
//   - "post": plain secret, client_secret_post
//   - "hashed": bcrypt secret, client_secret_basic and client_secret_post
//   - "svc:reports": plain oddSecret, client_secret_basic (an id that needs encoding)
//   - "jwt": keys, private_key_jwt
//   - "keys-but-basic": keys and secret, client_secret_basic only
func testRegistry(t testing.TB) *Registry {
	t.Helper()
	reg, err := NewRegistry(
		newReg(t, testOpts{Client: ciba.Client{ID: "basic"}, Secret: plainSecret, Methods: []string{MethodSecretBasic}}),
		newReg(t, testOpts{Client: ciba.Client{ID: "post"}, Secret: plainSecret, Methods: []string{MethodSecretPost}}),
		newReg(t, testOpts{Client: ciba.Client{ID: "hashed"}, SecretHash: secretHash(), Methods: []string{MethodSecretBasic, MethodSecretPost}}),
		newReg(t, testOpts{Client: ciba.Client{ID: "svc:reports"}, Secret: oddSecret}),
		newReg(t, testOpts{Client: ciba.Client{ID: "jwt"}, JWKS: clientJWKS(), Methods: []string{MethodPrivateKeyJWT}}),
		newReg(t, testOpts{Client: ciba.Client{ID: "keys-but-basic"}, Secret: plainSecret, JWKS: clientJWKS(), Methods: []string{MethodSecretBasic}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	reg.AssertionPolicy = jose.AssertionPolicy{Issuer: issuer, Replay: &memReplay{seen: map[string]bool{}}}
	return reg
}

// basicHeader encodes credentials as RFC 6749 §2.3.1 asks: each part
// form-urlencoded, then Basic.
func basicHeader(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func rawBasic(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }

// assertion returns a client assertion of client id signed by key with kid k1.
func assertion(t testing.TB, key *rsa.PrivateKey, id, aud string, change func(map[string]any)) string {
	t.Helper()
	c := map[string]any{
		"iss": id, "sub": id, "aud": aud,
		"exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix(),
		"jti": rand.Text(),
	}
	if change != nil {
		change(c)
	}
	return josetest.SignClaims(t, gojose.SigningKey{Algorithm: gojose.RS256, Key: gojose.JSONWebKey{Key: key, KeyID: "k1"}}, nil, c)
}

func assertionForm(raw string) url.Values {
	return url.Values{"client_assertion_type": {jose.ClientAssertionType}, "client_assertion": {raw}}
}

func TestAuthenticate(t *testing.T) {
	type want struct {
		client    string         // authenticated client, or
		code      ciba.ErrorCode // the error code
		desc      string         // part of the description
		challenge bool           // a Basic challenge is asked for
	}
	tests := []struct {
		name     string
		headers  []string   // Authorization header values
		form     url.Values // form body
		endpoint string     // default tokenEndpoint
		want     want
	}{
		// client_secret_basic
		{name: "client_secret_basic with the right secret authenticates (RFC 6749 §2.3.1)",
			headers: []string{basicHeader("basic", plainSecret)}, want: want{client: "basic"}},
		{name: "a secret in Basic is form-url-decoded (RFC 6749 §2.3.1)",
			headers: []string{basicHeader("svc:reports", oddSecret)}, want: want{client: "svc:reports"}},
		{name: "a client_id in Basic is form-url-decoded, so it may hold a colon (RFC 6749 §2.3.1)",
			headers: []string{rawBasic("svc%3Areports:" + url.QueryEscape(oddSecret))}, want: want{client: "svc:reports"}},
		{name: "a secret sent raw where it needed encoding does not authenticate",
			headers: []string{rawBasic("svc%3Areports:" + oddSecret)}, want: want{code: ciba.CodeInvalidClient, desc: "malformed Basic credentials", challenge: true}},
		{name: "a raw + in a Basic secret decodes to a space (RFC 6749 §2.3.1)",
			headers: []string{rawBasic("svc%3Areports:a%2Bb%3Ac+d%25e%2Ff")}, want: want{client: "svc:reports"}},
		{name: "the Basic scheme name is case-insensitive (RFC 9110 §11.1)",
			headers: []string{"basic " + strings.TrimPrefix(basicHeader("basic", plainSecret), "Basic ")}, want: want{client: "basic"}},
		{name: "a bcrypt secret hash authenticates",
			headers: []string{basicHeader("hashed", hashedSecret)}, want: want{client: "hashed"}},
		{name: "a client_id in the form equal to the Basic one is accepted",
			headers: []string{basicHeader("basic", plainSecret)}, form: url.Values{"client_id": {"basic"}}, want: want{client: "basic"}},
		{name: "a client_id in the form that disagrees with Basic is invalid_request",
			headers: []string{basicHeader("basic", plainSecret)}, form: url.Values{"client_id": {"post"}},
			want: want{code: ciba.CodeInvalidRequest, desc: `client_id "post" in the form is not the authenticated client`}},
		{name: "a wrong secret is invalid_client with the generic description and a Basic challenge",
			headers: []string{basicHeader("basic", "wrong")}, want: want{code: ciba.CodeInvalidClient, desc: genericFailure, challenge: true}},
		{name: "an unknown client gets the same answer as a wrong secret",
			headers: []string{basicHeader("nobody", plainSecret)}, want: want{code: ciba.CodeInvalidClient, desc: genericFailure, challenge: true}},
		{name: "a wrong bcrypt secret is invalid_client",
			headers: []string{basicHeader("hashed", "wrong")}, want: want{code: ciba.CodeInvalidClient, desc: genericFailure, challenge: true}},
		{name: "malformed Basic credentials are invalid_client with a challenge",
			headers: []string{"Basic !!!not-base64"}, want: want{code: ciba.CodeInvalidClient, desc: "malformed Basic credentials", challenge: true}},
		{name: "Basic credentials without a colon are malformed",
			headers: []string{rawBasic("basic")}, want: want{code: ciba.CodeInvalidClient, desc: "malformed Basic credentials", challenge: true}},
		{name: "a bad percent-encoding in Basic is malformed",
			headers: []string{rawBasic("basic:%zz")}, want: want{code: ciba.CodeInvalidClient, desc: "malformed Basic credentials", challenge: true}},
		{name: "an empty client_id in Basic is malformed",
			headers: []string{rawBasic(":" + plainSecret)}, want: want{code: ciba.CodeInvalidClient, desc: "malformed Basic credentials", challenge: true}},
		{name: "a repeated Authorization header is invalid_request",
			headers: []string{basicHeader("basic", plainSecret), basicHeader("basic", plainSecret)}, want: want{code: ciba.CodeInvalidRequest, desc: "repeated"}},

		// client_secret_post
		{name: "client_secret_post authenticates",
			form: url.Values{"client_id": {"post"}, "client_secret": {plainSecret}}, want: want{client: "post"}},
		{name: "client_secret_post with a bcrypt hash authenticates",
			form: url.Values{"client_id": {"hashed"}, "client_secret": {hashedSecret}}, want: want{client: "hashed"}},
		{name: "client_secret without client_id is invalid_request",
			form: url.Values{"client_secret": {plainSecret}}, want: want{code: ciba.CodeInvalidRequest, desc: "client_id is required"}},
		{name: "a wrong client_secret is invalid_client without a Basic challenge",
			form: url.Values{"client_id": {"post"}, "client_secret": {"wrong"}}, want: want{code: ciba.CodeInvalidClient, desc: genericFailure}},
		{name: "a Bearer Authorization header is not a client authentication method",
			headers: []string{"Bearer abc"}, form: url.Values{"client_id": {"post"}, "client_secret": {plainSecret}}, want: want{client: "post"}},

		// methods
		{name: "a method the client did not register is invalid_client, told once the secret is proven",
			form: url.Values{"client_id": {"basic"}, "client_secret": {plainSecret}},
			want: want{code: ciba.CodeInvalidClient, desc: `client "basic" is not registered for client_secret_post`}},
		{name: "an unregistered method with a wrong secret gets the generic answer",
			form: url.Values{"client_id": {"basic"}, "client_secret": {"wrong"}}, want: want{code: ciba.CodeInvalidClient, desc: genericFailure}},
		{name: "Basic for a client registered for client_secret_post only is refused",
			headers: []string{basicHeader("post", plainSecret)},
			want:    want{code: ciba.CodeInvalidClient, desc: `client "post" is not registered for client_secret_basic`, challenge: true}},
		{name: "two methods at once are invalid_request (RFC 6749 §2.3, §5.2)",
			headers: []string{basicHeader("basic", plainSecret)}, form: url.Values{"client_id": {"basic"}, "client_secret": {plainSecret}},
			want: want{code: ciba.CodeInvalidRequest, desc: "multiple client authentication methods"}},
		{name: "Basic and a client assertion at once are invalid_request",
			headers: []string{basicHeader("basic", plainSecret)}, form: assertionForm("x.y.z"),
			want: want{code: ciba.CodeInvalidRequest, desc: "multiple client authentication methods"}},
		{name: "no client authentication is invalid_client with a Basic challenge",
			form: url.Values{"client_id": {"basic"}}, want: want{code: ciba.CodeInvalidClient, desc: "client authentication is required", challenge: true}},

		// private_key_jwt
		{name: "private_key_jwt with aud = the token endpoint authenticates (RFC 7523 §3)",
			form: assertionForm(assertion(t, clientKey(), "jwt", tokenEndpoint, nil)), want: want{client: "jwt"}},
		{name: "private_key_jwt with aud = the issuer authenticates at bc-authorize (CIBA §7.1)",
			form: assertionForm(assertion(t, clientKey(), "jwt", issuer, nil)), endpoint: bcEndpoint, want: want{client: "jwt"}},
		{name: "private_key_jwt with aud = the bc-authorize URL authenticates there",
			form: assertionForm(assertion(t, clientKey(), "jwt", bcEndpoint, nil)), endpoint: bcEndpoint, want: want{client: "jwt"}},
		{name: "an assertion for another endpoint is refused",
			form: assertionForm(assertion(t, clientKey(), "jwt", bcEndpoint, nil)),
			want: want{code: ciba.CodeInvalidClient, desc: "client assertion: aud"}},
		{name: "an expired assertion is refused",
			form: assertionForm(assertion(t, clientKey(), "jwt", tokenEndpoint, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
			want: want{code: ciba.CodeInvalidClient, desc: "client assertion: expired"}},
		{name: "an assertion whose iss is not its sub is refused",
			form: assertionForm(assertion(t, clientKey(), "jwt", tokenEndpoint, func(c map[string]any) { c["iss"] = "basic" })),
			want: want{code: ciba.CodeInvalidClient, desc: `iss "basic" is not the client_id "jwt"`}},
		{name: "an assertion signed by another key is refused",
			form: assertionForm(assertion(t, otherKey(), "jwt", tokenEndpoint, nil)),
			want: want{code: ciba.CodeInvalidClient, desc: `client assertion: the signature does not verify with the keys of client "jwt"`}},
		{name: "an assertion of an unknown client is answered like a bad signature",
			form: assertionForm(assertion(t, otherKey(), "nobody", tokenEndpoint, nil)),
			want: want{code: ciba.CodeInvalidClient, desc: `client assertion: the signature does not verify with the keys of client "nobody"`}},
		{name: "an assertion of a client without keys is answered like a bad signature",
			form: assertionForm(assertion(t, clientKey(), "basic", tokenEndpoint, nil)),
			want: want{code: ciba.CodeInvalidClient, desc: `the signature does not verify with the keys of client "basic"`}},
		{name: "private_key_jwt for a client not registered for it is refused once the assertion is proven",
			form: assertionForm(assertion(t, clientKey(), "keys-but-basic", tokenEndpoint, nil)),
			want: want{code: ciba.CodeInvalidClient, desc: `client "keys-but-basic" is not registered for private_key_jwt`}},
		{name: "a client_id in the form that disagrees with the assertion is invalid_request",
			form: func() url.Values {
				f := assertionForm(assertion(t, clientKey(), "jwt", tokenEndpoint, nil))
				f.Set("client_id", "basic")
				return f
			}(), want: want{code: ciba.CodeInvalidRequest, desc: `client_id "basic" in the form`}},
		{name: "an unsupported client_assertion_type is invalid_client",
			form: url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}, "client_assertion": {"x"}},
			want: want{code: ciba.CodeInvalidClient, desc: "is not supported"}},
		{name: "a client_assertion without its type is invalid_request",
			form: url.Values{"client_assertion": {"x.y.z"}}, want: want{code: ciba.CodeInvalidRequest, desc: "client_assertion_type is missing"}},
		{name: "a client_assertion_type without assertion is invalid_request",
			form: url.Values{"client_assertion_type": {jose.ClientAssertionType}}, want: want{code: ciba.CodeInvalidRequest, desc: "client_assertion is missing"}},
		{name: "an unsigned assertion is refused",
			form: assertionForm(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"jwt","iss":"jwt"}`)) + "."),
			want: want{code: ciba.CodeInvalidClient, desc: "client assertion"}},
	}
	reg := testRegistry(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
			for _, h := range tt.headers {
				req.Header.Add("Authorization", h)
			}
			form := tt.form
			if form == nil {
				form = url.Values{}
			}
			endpoint := tt.endpoint
			if endpoint == "" {
				endpoint = tokenEndpoint
			}
			got, err := reg.Authenticate(t.Context(), req, form, endpoint)
			for _, s := range []string{plainSecret, hashedSecret, oddSecret} {
				if err != nil && strings.Contains(err.Error(), s) {
					t.Fatalf("the error %q carries a secret", err)
				}
			}
			if tt.want.client != "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if got.ID() != tt.want.client || got.Client().ID != tt.want.client {
					t.Fatalf("authenticated %q, want %q", got.ID(), tt.want.client)
				}
				return
			}
			var e *ciba.Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want a *ciba.Error", err)
			}
			if e.Code != tt.want.code || !strings.Contains(e.Description, tt.want.desc) {
				t.Fatalf("err = %v; want %s containing %q", e, tt.want.code, tt.want.desc)
			}
			if e.Code == ciba.CodeInvalidClient {
				var ae *AuthError
				if !errors.As(err, &ae) {
					t.Fatalf("invalid_client is not an *AuthError: %T", err)
				}
				if e.HTTPStatus() != http.StatusUnauthorized || e.Status != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401 (RFC 6749 §5.2)", e.HTTPStatus())
				}
			}
			challenge := WWWAuthenticate(err)
			if tt.want.challenge != (challenge == `Basic realm="cibaproxy"`) || (!tt.want.challenge && challenge != "") {
				t.Fatalf("WWW-Authenticate = %q, want challenge=%v", challenge, tt.want.challenge)
			}
		})
	}
}

func TestAuthenticateAssertionReplay(t *testing.T) {
	reg := testRegistry(t)
	form := assertionForm(assertion(t, clientKey(), "jwt", tokenEndpoint, nil))
	req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
	if _, err := reg.Authenticate(t.Context(), req, form, tokenEndpoint); err != nil {
		t.Fatal(err)
	}
	_, err := reg.Authenticate(t.Context(), req, form, tokenEndpoint)
	var ae *AuthError
	if !errors.As(err, &ae) || !strings.Contains(ae.Err.Description, "was already used") {
		t.Fatalf("a replayed client assertion: err = %v", err)
	}
}

func TestAuthenticateUnknownAndWrongSecretAlike(t *testing.T) {
	reg := testRegistry(t)
	answer := func(h string) string {
		req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
		req.Header.Set("Authorization", h)
		_, err := reg.Authenticate(t.Context(), req, url.Values{}, tokenEndpoint)
		e := ciba.AsError(err)
		return string(e.Code) + "|" + e.Description + "|" + WWWAuthenticate(err)
	}
	if a, b := answer(basicHeader("nobody", "x")), answer(basicHeader("basic", "x")); a != b {
		t.Fatalf("unknown client answered %q, wrong secret %q", a, b)
	}
	if a, b := answer(basicHeader("nobody", "x")), answer(basicHeader("hashed", "x")); a != b {
		t.Fatalf("unknown client answered %q, wrong bcrypt secret %q", a, b)
	}
}

// countBcrypt replaces the bcrypt comparison of reg and counts its calls.
func countBcrypt(reg *Registration) *atomic.Int32 {
	var n atomic.Int32
	reg.secret.compare = func(hash, pw []byte) error {
		n.Add(1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	return &n
}

func TestBcryptOnlyOnce(t *testing.T) {
	r := newReg(t, testOpts{Client: ciba.Client{ID: "hashed"}, SecretHash: secretHash()})
	calls := countBcrypt(r)
	reg, err := NewRegistry(r)
	if err != nil {
		t.Fatal(err)
	}
	auth := func(secret string) error {
		req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
		req.Header.Set("Authorization", basicHeader("hashed", secret))
		_, err := reg.Authenticate(t.Context(), req, url.Values{}, tokenEndpoint)
		return err
	}
	t.Run("the first success runs bcrypt, later ones compare digests", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				if err := auth(hashedSecret); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		first := calls.Load()
		for range 100 {
			if err := auth(hashedSecret); err != nil {
				t.Fatal(err)
			}
		}
		if calls.Load() != first || first < 1 {
			t.Fatalf("bcrypt ran %d times for 120 authentications (%d after the first wave)", calls.Load(), first)
		}
	})
	t.Run("a failed attempt always gets the full bcrypt check", func(t *testing.T) {
		before := calls.Load()
		for range 3 {
			if auth("wrong") == nil {
				t.Fatal("wrong secret accepted")
			}
		}
		if got := calls.Load() - before; got != 3 {
			t.Fatalf("bcrypt ran %d times for 3 failures, want 3", got)
		}
	})
	t.Run("a plain secret never runs bcrypt", func(t *testing.T) {
		p := newReg(t, testOpts{Client: ciba.Client{ID: "plain"}, Secret: plainSecret})
		n := countBcrypt(p)
		for _, s := range []string{plainSecret, "wrong"} {
			if ok, final := p.quickCheck(s); !final || ok != (s == plainSecret) {
				t.Fatalf("quickCheck(%q) = %v, %v", s, ok, final)
			}
		}
		if n.Load() != 0 {
			t.Fatal("bcrypt ran for a plain secret")
		}
	})
}

func TestNewRegistration(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	tests := []struct {
		name string
		o    testOpts
		ok   bool
	}{
		{"a plain secret with the default method", testOpts{Client: ciba.Client{ID: "a"}, Secret: "x"}, true},
		{"a client without an id is refused", testOpts{Secret: "x"}, false},
		{"a client id with a control character is refused", testOpts{Client: ciba.Client{ID: "a\nb"}, Secret: "x"}, false},
		{"secret and secret hash at once are refused", testOpts{Client: ciba.Client{ID: "a"}, Secret: "x", SecretHash: secretHash()}, false},
		{"a secret hash that is not bcrypt is refused", testOpts{Client: ciba.Client{ID: "a"}, SecretHash: "sha256:abcd"}, false},
		{"jwks and jwks_uri at once are refused (RFC 7591 §2)", testOpts{Client: ciba.Client{ID: "a"}, JWKS: clientJWKS(), JWKSURI: "https://a.example/jwks"}, false},
		{"a jwks_uri on 127.0.0.1 over http is accepted", testOpts{Client: ciba.Client{ID: "a"}, JWKSURI: srv.URL}, true},
		{"a relative jwks_uri is refused", testOpts{Client: ciba.Client{ID: "a"}, JWKSURI: "/jwks"}, false},
		{"a jwks with a private key is refused", testOpts{Client: ciba.Client{ID: "a"}, JWKS: gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{{Key: clientKey()}}}}, false},
		{"an unknown method is refused", testOpts{Client: ciba.Client{ID: "a"}, Secret: "x", Methods: []string{"tls_client_auth"}}, false},
		{"a secret method without a secret is refused", testOpts{Client: ciba.Client{ID: "a"}, JWKS: clientJWKS(), Methods: []string{MethodSecretPost}}, false},
		{"private_key_jwt without keys is refused", testOpts{Client: ciba.Client{ID: "a"}, Secret: "x", Methods: []string{MethodPrivateKeyJWT}}, false},
		{"a client with neither secret nor keys is refused", testOpts{Client: ciba.Client{ID: "a"}}, false},
		{"the HS256 switch needs the plain secret, not a hash", testOpts{Client: ciba.Client{ID: "a"}, SecretHash: secretHash(), AllowHS256RequestObject: true}, false},
		{"the HS256 switch needs a secret of 32 bytes (RFC 7518 §3.2)", testOpts{Client: ciba.Client{ID: "a"}, Secret: "short", AllowHS256RequestObject: true}, false},
		{"the HS256 switch with a long secret is accepted", testOpts{Client: ciba.Client{ID: "a"}, Secret: plainSecret, AllowHS256RequestObject: true}, true},
		{"request object alg HS256 without the switch is refused", testOpts{Client: ciba.Client{ID: "a"}, Secret: plainSecret, RequestObjectAlg: "HS256"}, false},
		{"request object alg PS256 without keys is refused", testOpts{Client: ciba.Client{ID: "a"}, Secret: plainSecret, RequestObjectAlg: "PS256"}, false},
		{"an unsupported request object alg is refused", testOpts{Client: ciba.Client{ID: "a"}, JWKS: clientJWKS(), RequestObjectAlg: "none"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := register(t.Context(), tt.o)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && tt.o.Secret != "" && strings.Contains(err.Error(), tt.o.Secret) && len(tt.o.Secret) > 1 {
				t.Fatalf("the error %q carries the secret", err)
			}
		})
	}
}

func TestRegistrationRequestObjects(t *testing.T) {
	tests := []struct {
		name     string
		o        testOpts
		algs     string
		required bool
		methods  string
	}{
		{"a client without a registered alg may sign with the defaults, or not sign",
			testOpts{Client: ciba.Client{ID: "a"}, Secret: "x", JWKS: clientJWKS()}, "RS256 PS256 ES256", false, "client_secret_basic private_key_jwt"},
		{"a registered alg is the only one, and signing is required (CIBA §4)",
			testOpts{Client: ciba.Client{ID: "a"}, JWKS: clientJWKS(), RequestObjectAlg: "PS256"}, "PS256", true, "private_key_jwt"},
		{"the legacy switch adds HS256 to the defaults",
			testOpts{Client: ciba.Client{ID: "a"}, Secret: plainSecret, AllowHS256RequestObject: true}, "RS256 PS256 ES256 HS256", false, "client_secret_basic"},
		{"a registered HS256 with the switch is the only alg",
			testOpts{Client: ciba.Client{ID: "a"}, Secret: plainSecret, AllowHS256RequestObject: true, RequestObjectAlg: "HS256"}, "HS256", true, "client_secret_basic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReg(t, tt.o)
			if got := strings.Join(r.RequestObjectAlgs(), " "); got != tt.algs {
				t.Fatalf("algs = %s, want %s", got, tt.algs)
			}
			if r.RequiresSignedRequest() != tt.required {
				t.Fatalf("required = %v", r.RequiresSignedRequest())
			}
			if got := strings.Join(r.Methods(), " "); got != tt.methods {
				t.Fatalf("methods = %s, want %s", got, tt.methods)
			}
			p := r.RequestObjectPolicy(jose.RequestObjectPolicy{Issuer: issuer})
			if p.ClientID != "a" || p.Issuer != issuer || (p.Secret != "") != tt.o.AllowHS256RequestObject {
				t.Fatalf("policy = %+v", p)
			}
			if (r.KeySet() == nil) != (len(tt.o.JWKS.Keys) == 0) {
				t.Fatalf("KeySet = %v", r.KeySet())
			}
		})
	}
}

func TestNewRegistry(t *testing.T) {
	a := newReg(t, testOpts{Client: ciba.Client{ID: "b"}, Secret: "x"})
	b := newReg(t, testOpts{Client: ciba.Client{ID: "a"}, Secret: "x"})
	if _, err := NewRegistry(a, newReg(t, testOpts{Client: ciba.Client{ID: "b"}, Secret: "y"})); err == nil {
		t.Fatal("a duplicate client_id was accepted")
	}
	reg, err := NewRegistry(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reg.IDs(), ","); got != "a,b" {
		t.Fatalf("IDs = %s", got)
	}
	if r, ok := reg.Lookup("a"); !ok || r != b {
		t.Fatal("Lookup(a)")
	}
	if _, ok := reg.Lookup("c"); ok {
		t.Fatal("Lookup(c)")
	}
}

func BenchmarkAuthenticateBasic(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    testOpts
	}{
		{"bcrypt-cached", testOpts{Client: ciba.Client{ID: "c"}, SecretHash: func() string {
			h, err := bcrypt.GenerateFromPassword([]byte(hashedSecret), bcrypt.DefaultCost)
			if err != nil {
				b.Fatal(err)
			}
			return string(h)
		}()}},
		{"plain", testOpts{Client: ciba.Client{ID: "c"}, Secret: hashedSecret}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := newReg(b, bc.o)
			calls := countBcrypt(r)
			reg, err := NewRegistry(r)
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
			req.Header.Set("Authorization", basicHeader("c", hashedSecret))
			form := url.Values{"grant_type": {"urn:openid:params:grant-type:ciba"}, "auth_req_id": {"x"}}
			ctx := context.Background()
			if _, err := reg.Authenticate(ctx, req, form, tokenEndpoint); err != nil { // warms the cache
				b.Fatal(err)
			}
			warm := calls.Load()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Authenticate(ctx, req, form, tokenEndpoint); err != nil {
					b.Fatal(err)
				}
			}
			if n := calls.Load() - warm; n != 0 {
				b.Fatalf("bcrypt ran %d times on the hot path", n)
			}
			b.ReportMetric(0, "bcrypt/op")
		})
	}
}
