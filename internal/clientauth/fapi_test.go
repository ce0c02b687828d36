package clientauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

var fapiKey = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// fapiOptions is a client FAPI-CIBA accepts. Its keys include an RSA key,
// so that an RS256 signature would verify if the alg were allowed.
func fapiOptions() testOpts {
	return testOpts{
		Client: ciba.Client{ID: "fapi", Mode: ciba.ModePoll},
		JWKS: gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{
			{Key: fapiKey().Public(), KeyID: "e1", Use: "sig"},
			{Key: clientKey().Public(), KeyID: "k1", Use: "sig"},
		}},
		Methods:          []string{MethodPrivateKeyJWT},
		RequestObjectAlg: "ES256",
		FAPI:             true,
	}
}

func TestFAPIRegistration(t *testing.T) {
	tests := []struct {
		name   string
		change func(*testOpts)
		msg    string // "" accepted
	}{
		{"a private_key_jwt, ES256, poll client is accepted", func(*testOpts) {}, ""},
		{"PS256 request objects are accepted", func(o *testOpts) { o.RequestObjectAlg = "PS256" }, ""},
		{"ping mode is accepted", func(o *testOpts) {
			o.Client.Mode, o.Client.NotificationEndpoint = ciba.ModePing, "https://client.example/cb"
		}, ""},
		{"shall require signed requests: no alg is refused", func(o *testOpts) { o.RequestObjectAlg = "" }, "required by the FAPI-CIBA profile"},
		{"PS256 or ES256 only: RS256 is refused", func(o *testOpts) { o.RequestObjectAlg = "RS256" }, `must be PS256 or ES256 under the FAPI-CIBA profile (FAPI 1.0 Advanced §8.6), got "RS256"`},
		{"no HS256 switch", func(o *testOpts) {
			o.RequestObjectAlg, o.AllowHS256RequestObject, o.Secret = "HS256", true, plainSecret
		}, "must be PS256 or ES256 under the FAPI-CIBA profile"},
		{"no client secret", func(o *testOpts) { o.Secret = plainSecret }, "client_secret: not allowed"},
		{"confidential clients with private_key_jwt or mTLS only", func(o *testOpts) {
			o.Methods, o.Secret = []string{MethodSecretBasic}, plainSecret
		}, `"client_secret_basic" is not allowed under the FAPI-CIBA profile`},
		{"shall not support CIBA push mode", func(o *testOpts) {
			o.Client.Mode, o.Client.NotificationEndpoint = ciba.ModePush, "https://client.example/cb"
		}, "push is not allowed under the FAPI-CIBA profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := fapiOptions()
			tt.change(&o)
			r, err := register(t.Context(), o)
			if tt.msg == "" {
				if err != nil || !r.FAPI() {
					t.Fatalf("NewRegistration = %v, %v; want a FAPI registration", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("NewRegistration error = %v, want one containing %q", err, tt.msg)
			}
		})
	}
}

func TestFAPIRequestObject(t *testing.T) {
	reg, err := NewRegistry(
		newReg(t, fapiOptions()),
		newReg(t, testOpts{Client: ciba.Client{ID: "plain"}, JWKS: clientJWKS(), RequestObjectAlg: "RS256"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	// A two-minute skew lets "nbf 61 minutes old" be tested on its own: with
	// exp - nbf within 60 minutes, exp is then a minute past, inside the skew.
	a := &Authenticator{Registry: reg, RequestObjects: jose.RequestObjectPolicy{
		Issuer: issuer, Replay: &memReplay{seen: map[string]bool{}}, ClockSkew: 2 * time.Minute,
	}}
	now := time.Now()
	ro := func(iss string, nbf, exp time.Time, change func(map[string]any)) map[string]any {
		c := requestObject(iss)
		c["nbf"], c["exp"], c["iat"] = nbf.Unix(), exp.Unix(), nbf.Unix()
		if change != nil {
			change(c)
		}
		return c
	}
	es256 := func(c map[string]any) string { return signClaims(t, gojose.ES256, fapiKey(), "e1", c) }

	tests := []struct {
		name   string
		client string
		raw    string
		msg    string // "" accepted
	}{
		{"a compliant request object (ES256, nbf now, exp in 10 minutes) is accepted", "fapi",
			es256(ro("fapi", now, now.Add(10*time.Minute), nil)), ""},
		{"exp exactly 60 minutes after nbf is accepted", "fapi",
			es256(ro("fapi", now, now.Add(60*time.Minute), nil)), ""},
		{"shall require nbf: a request object without nbf is refused", "fapi",
			es256(ro("fapi", now, now.Add(10*time.Minute), func(c map[string]any) { delete(c, "nbf") })), "nbf"},
		{"exp no longer than 60 minutes after nbf: 61 minutes is refused", "fapi",
			es256(ro("fapi", now, now.Add(61*time.Minute), nil)), "exp is 1h1m0s after nbf, over the limit of 1h0m0s"},
		{"nbf not more than 60 minutes in the past: 61 minutes is refused", "fapi",
			es256(ro("fapi", now.Add(-61*time.Minute), now.Add(-time.Minute), nil)), "more than 1h0m0s old"},
		{"nbf 61 minutes old with exp in the future is refused", "fapi",
			es256(ro("fapi", now.Add(-61*time.Minute), now.Add(time.Minute), nil)), "over the limit of 1h0m0s"},
		{"PS256 or ES256 only: RS256 with a registered RSA key is refused", "fapi",
			signClaims(t, gojose.RS256, clientKey(), "k1", ro("fapi", now, now.Add(10*time.Minute), nil)), "RS256"},
		{"a client outside the profile may use RS256 and exp 60 minutes after nbf", "plain",
			signClaims(t, gojose.RS256, clientKey(), "k1", ro("plain", now, now.Add(60*time.Minute), nil)), ""},
		{"a client outside the profile is held to the default 60 minutes too (jose.DefaultRequestObjectMaxLifetime)", "plain",
			signClaims(t, gojose.RS256, clientKey(), "k1", ro("plain", now, now.Add(61*time.Minute), nil)), "exp is 1h1m0s after nbf, over the limit of 1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := reg.Lookup(tt.client)
			claims, err := a.RequestObject(t.Context(), r.Client(), tt.raw)
			if tt.msg == "" {
				if err != nil || claims["login_hint"] != "alice" {
					t.Fatalf("RequestObject = %v, %v", claims, err)
				}
				return
			}
			e := ciba.AsError(err)
			if e.Code != ciba.CodeInvalidRequest || !strings.Contains(e.Description, tt.msg) {
				t.Fatalf("err = %v, want invalid_request containing %q", err, tt.msg)
			}
		})
	}
	if !a.RequiresSignedRequest(&ciba.Client{ID: "fapi"}) {
		t.Error("a FAPI client must send signed requests: plain form requests are refused")
	}
}

func TestFAPIClientAssertion(t *testing.T) {
	reg, err := NewRegistry(newReg(t, fapiOptions()))
	if err != nil {
		t.Fatal(err)
	}
	reg.AssertionPolicy = jose.AssertionPolicy{Issuer: issuer, Replay: &memReplay{seen: map[string]bool{}}}
	claims := func() map[string]any {
		return map[string]any{
			"iss": "fapi", "sub": "fapi", "aud": issuer, "jti": rand.Text(),
			"exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix(),
		}
	}
	tests := []struct {
		name string
		raw  string
		ok   bool
	}{
		{"an ES256 client assertion is accepted", signClaims(t, gojose.ES256, fapiKey(), "e1", claims()), true},
		{"PS256 or ES256 only: an RS256 client assertion is refused", signClaims(t, gojose.RS256, clientKey(), "k1", claims()), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
			r, err := reg.Authenticate(t.Context(), req, assertionForm(tt.raw), tokenEndpoint)
			if tt.ok {
				if err != nil || r.ID() != "fapi" {
					t.Fatalf("Authenticate = %v, %v", r, err)
				}
				return
			}
			if e := ciba.AsError(err); e.Code != ciba.CodeInvalidClient || !strings.Contains(e.Description, "RS256") {
				t.Fatalf("err = %v, want invalid_client naming RS256", err)
			}
		})
	}
}
