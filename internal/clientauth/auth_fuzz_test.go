package clientauth

import (
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/jose"
)

// FuzzAuthenticate: client authentication, from everything a client sends
// (the Authorization header, the form, and a client certificate a trusted
// proxy forwards), never panics; it authenticates a client only on proof
// (the client's own secret, a client assertion, a client certificate); a
// client_id in the form is the authenticated one; and every failure is
// invalid_request, invalid_client (401) or temporarily_unavailable, whose
// description carries no secret the input did not.
func FuzzAuthenticate(f *testing.F) {
	leaf, ca := fuzzChain(f)
	secrets := map[string]string{"basic": plainSecret, "post": plainSecret, "keys-but-basic": plainSecret, "hashed": hashedSecret, "svc:reports": oddSecret}
	reg, err := NewRegistry(
		newReg(f, testOpts{Client: ciba.Client{ID: "basic"}, Secret: plainSecret, Methods: []string{MethodSecretBasic}}),
		newReg(f, testOpts{Client: ciba.Client{ID: "post"}, Secret: plainSecret, Methods: []string{MethodSecretPost}}),
		newReg(f, testOpts{Client: ciba.Client{ID: "hashed"}, SecretHash: secretHash(), Methods: []string{MethodSecretBasic, MethodSecretPost}}),
		newReg(f, testOpts{Client: ciba.Client{ID: "svc:reports"}, Secret: oddSecret}),
		newReg(f, testOpts{Client: ciba.Client{ID: "jwt"}, JWKS: clientJWKS(), Methods: []string{MethodPrivateKeyJWT}}),
		newReg(f, testOpts{Client: ciba.Client{ID: "keys-but-basic"}, Secret: plainSecret, JWKS: clientJWKS(), Methods: []string{MethodSecretBasic}}),
		newReg(f, testOpts{Client: ciba.Client{ID: "pki"}, Methods: []string{MethodTLSClientAuth}, TLSClientAuth: TLSClientAuth{SubjectDN: "CN=client"}}),
	)
	if err != nil {
		f.Fatal(err)
	}
	reg.AssertionPolicy = jose.AssertionPolicy{Issuer: issuer, Replay: &memReplay{seen: map[string]bool{}}}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	reg.MTLS = MTLS{ClientCAs: pool, ProxyHeader: "X-Client-Cert", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}

	cert := url.PathEscape(pemOf(leaf))
	for _, s := range [][3]string{
		{basicHeader("basic", plainSecret), "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=x", ""},
		{basicHeader("hashed", hashedSecret), "", ""},
		{basicHeader("svc:reports", oddSecret), "client_id=svc%3Areports", ""},
		{basicHeader("basic", "wrong"), "", ""},
		{rawBasic("no-colon"), "", ""},
		{"Basic !!!", "", ""},
		{"", "client_id=post&client_secret=" + url.QueryEscape(plainSecret), ""},
		{"", "client_id=post&client_secret=x&client_secret=y", ""},
		{"", url.Values{"client_id": {"jwt"}, "client_assertion_type": {jose.ClientAssertionType},
			"client_assertion": {assertion(f, clientKey(), "jwt", tokenEndpoint, nil)}}.Encode(), ""},
		{"", "client_assertion_type=" + url.QueryEscape(jose.ClientAssertionType) + "&client_assertion=a.b.c", ""},
		{"", "client_id=pki", cert},
		{"", "client_id=pki", "%zz"},
		{basicHeader("basic", plainSecret), "client_id=other", ""},
		{"", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, authz, body, certHeader string) {
		form, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
		req.RemoteAddr = "10.0.0.1:1"
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		if certHeader != "" {
			req.Header.Set("X-Client-Cert", certHeader)
		}
		input := authz + body + certHeader
		if id, _, ok := basicCredentials(req); ok {
			input += id
		}
		for _, v := range form {
			input += strings.Join(v, "")
		}
		got, err := reg.Authenticate(t.Context(), req, form, tokenEndpoint)
		if err != nil {
			if got != nil {
				t.Fatalf("a client (%s) with an error (%v)", got.Client().ID, err)
			}
			e := ciba.AsError(err)
			switch e.Code {
			case ciba.CodeInvalidRequest, ciba.CodeTemporarilyUnavailable:
			case ciba.CodeInvalidClient:
				var ae *AuthError
				if !errors.As(err, &ae) || e.HTTPStatus() != http.StatusUnauthorized {
					t.Fatalf("invalid_client not answered 401: %v", err)
				}
			default:
				t.Fatalf("failure with the code %s: %v", e.Code, err)
			}
			for _, s := range []string{plainSecret, hashedSecret, oddSecret} {
				if strings.Contains(e.Description, s) && !strings.Contains(input, s) {
					t.Fatalf("description %q carries a secret", e.Description)
				}
			}
			return
		}
		id := got.Client().ID
		if form.Has("client_id") && form.Get("client_id") != id {
			t.Fatalf("authenticated %q with client_id %q in the form", id, form.Get("client_id"))
		}
		switch id {
		case "jwt":
			if form.Get("client_assertion") == "" {
				t.Fatal("authenticated jwt without a client assertion")
			}
		case "pki":
			if certHeader == "" {
				t.Fatal("authenticated pki without a certificate")
			}
		default:
			presented := form.Get("client_secret")
			if _, s, ok := basicCredentials(req); ok {
				presented = s
			}
			if want, ok := secrets[id]; !ok || presented != want {
				t.Fatalf("authenticated %q without its secret", id)
			}
		}
	})
}
