package clientauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// testCert is a certificate and its key.
type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCert makes a certificate for subject cn, signed by parent (self-signed
// when parent is nil); ca makes it a CA.
func newCert(t *testing.T, cn string, parent *testCert, ca bool) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{cn + ".example"},
	}
	if ca {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{cert: cert, key: key}
}

func pemOf(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// mtlsFixture is a registry with a tls_client_auth client "pki" (subject
// CN=pki,O=Example, issued by ca), a self_signed_tls_client_auth client
// "self" (its certificate in x5c) and "selfkey" (its public key only), and
// a secret client "plain".
type mtlsFixture struct {
	reg                          *Registry
	ca, otherCA                  testCert
	pki, pkiOtherCA, pkiWrongDN  testCert
	self, selfByKey, selfUnknown testCert
}

func newMTLSFixture(t *testing.T) *mtlsFixture {
	f := &mtlsFixture{}
	f.ca = newCert(t, "ca", nil, true)
	f.otherCA = newCert(t, "other-ca", nil, true)
	f.pki = newCert(t, "pki", &f.ca, false)
	f.pkiOtherCA = newCert(t, "pki", &f.otherCA, false)
	f.pkiWrongDN = newCert(t, "mallory", &f.ca, false)
	f.self = newCert(t, "self", nil, false)
	f.selfByKey = newCert(t, "selfkey", nil, false)
	f.selfUnknown = newCert(t, "self", nil, false)
	poll := func(id string) ciba.Client { return ciba.Client{ID: id, Mode: ciba.ModePoll} }
	regs := []*Registration{
		newReg(t, testOpts{Client: poll("pki"), Methods: []string{MethodTLSClientAuth}, TLSClientAuth: TLSClientAuth{SubjectDN: "CN=pki,O=Example"}}),
		newReg(t, testOpts{Client: poll("self"), Methods: []string{MethodSelfSignedTLSClientAuth},
			JWKS: gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{{Key: &f.self.key.PublicKey, KeyID: "c1", Certificates: []*x509.Certificate{f.self.cert}}}}}),
		newReg(t, testOpts{Client: poll("selfkey"), Methods: []string{MethodSelfSignedTLSClientAuth},
			JWKS: gojose.JSONWebKeySet{Keys: []gojose.JSONWebKey{{Key: &f.selfByKey.key.PublicKey, KeyID: "c2"}}}}),
		newReg(t, testOpts{Client: poll("plain"), Secret: plainSecret}),
	}
	r, err := NewRegistry(regs...)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.cert)
	r.MTLS = MTLS{ClientCAs: pool, ProxyHeader: "X-Client-Cert", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	f.reg = r
	return f
}

// tlsRequest is a token request from 127.0.0.1 on a TLS connection that
// presented cert (none when nil).
func tlsRequest(cert *x509.Certificate) *http.Request {
	req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.TLS = &tls.ConnectionState{}
	if cert != nil {
		req.TLS.PeerCertificates = []*x509.Certificate{cert}
	}
	return req
}

// proxied is a request from addr carrying cert in X-Client-Cert.
func proxied(addr string, cert *x509.Certificate) *http.Request {
	req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
	req.RemoteAddr = addr
	req.Header.Set("X-Client-Cert", url.PathEscape(pemOf(cert)))
	return req
}

func TestMTLSAuthenticate(t *testing.T) {
	f := newMTLSFixture(t)
	form := func(id string) url.Values { return url.Values{"client_id": {id}} }
	tests := []struct {
		name    string
		req     *http.Request
		form    url.Values
		want    string // client_id, or "" for invalid_client
		wantMsg string
	}{
		{"tls_client_auth: a certificate from the client CA with the registered subject DN authenticates", tlsRequest(f.pki.cert), form("pki"), "pki", ""},
		{"tls_client_auth: the wrong subject DN is refused", tlsRequest(f.pkiWrongDN.cert), form("pki"), "", "does not carry the registered subject name"},
		{"tls_client_auth: the right DN from another CA is refused", tlsRequest(f.pkiOtherCA.cert), form("pki"), "", "does not chain to a trusted client CA"},
		{"tls_client_auth: no certificate is refused", tlsRequest(nil), form("pki"), "", "client authentication is required"},
		{"self_signed_tls_client_auth: the certificate of the jwks x5c authenticates", tlsRequest(f.self.cert), form("self"), "self", ""},
		{"self_signed_tls_client_auth: a certificate with the jwks public key authenticates", tlsRequest(f.selfByKey.cert), form("selfkey"), "selfkey", ""},
		{"self_signed_tls_client_auth: an unknown key is refused", tlsRequest(f.selfUnknown.cert), form("self"), "", "is not one registered in the client's jwks"},
		{"self_signed_tls_client_auth: a CA-issued certificate of another client is refused", tlsRequest(f.pki.cert), form("self"), "", "is not one registered"},
		{"the client_id parameter is REQUIRED (RFC 8705 §2)", tlsRequest(f.pki.cert), url.Values{}, "", "client_id is required with a client certificate"},
		{"an unknown client_id gets the generic description", tlsRequest(f.pki.cert), form("nobody"), "", genericFailure},
		{"a client without a mutual-TLS method gets the generic description", tlsRequest(f.pki.cert), form("plain"), "", genericFailure},
		{"proxy: the forwarded certificate is believed from a trusted proxy", proxied("10.1.2.3:5555", f.pki.cert), form("pki"), "pki", ""},
		{"proxy: the forwarded self-signed certificate is believed from a trusted proxy", proxied("10.1.2.3:5555", f.self.cert), form("self"), "self", ""},
		{"proxy: the header is ignored from an untrusted address", proxied("192.0.2.7:5555", f.pki.cert), form("pki"), "", "client authentication is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, err := f.reg.Authenticate(t.Context(), tt.req, tt.form, tokenEndpoint)
			if tt.want != "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if reg.ID() != tt.want {
					t.Fatalf("authenticated %q, want %q", reg.ID(), tt.want)
				}
				return
			}
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v, want an invalid_client AuthError", err)
			}
			if ae.Err.Code != ciba.CodeInvalidClient || ae.Err.Status != http.StatusUnauthorized {
				t.Errorf("got %s %d, want invalid_client 401", ae.Err.Code, ae.Err.Status)
			}
			if !strings.Contains(ae.Err.Description, tt.wantMsg) {
				t.Errorf("description %q does not contain %q", ae.Err.Description, tt.wantMsg)
			}
		})
	}
}

func TestMTLSProxyHeaderMalformed(t *testing.T) {
	f := newMTLSFixture(t)
	req := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
	req.RemoteAddr = "10.0.0.1:1"
	req.Header.Set("X-Client-Cert", url.PathEscape("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	_, err := f.reg.Authenticate(t.Context(), req, url.Values{"client_id": {"pki"}}, tokenEndpoint)
	var ae *AuthError
	if !errors.As(err, &ae) || !strings.Contains(ae.Err.Description, "malformed") {
		t.Fatalf("err = %v, want invalid_client: malformed", err)
	}
}

func TestMTLSWithOtherMethodUsesThatMethod(t *testing.T) {
	f := newMTLSFixture(t)
	req := tlsRequest(f.pki.cert)
	req.Header.Set("Authorization", basicHeader("plain", plainSecret))
	reg, err := f.reg.Authenticate(t.Context(), req, url.Values{}, tokenEndpoint)
	if err != nil || reg.ID() != "plain" {
		t.Fatalf("Authenticate = %v, %v; want the Basic client", reg, err)
	}
}

func TestCertThumbprint(t *testing.T) {
	c := newCert(t, "x", nil, false)
	sum := sha256.Sum256(c.cert.Raw)
	if got, want := CertThumbprint(c.cert), base64.RawURLEncoding.EncodeToString(sum[:]); got != want {
		t.Fatalf("CertThumbprint = %q, want %q", got, want)
	}
	if len(CertThumbprint(c.cert)) != 43 {
		t.Fatalf("x5t#S256 is 43 base64url characters")
	}
}

func TestMTLSRegistration(t *testing.T) {
	poll := ciba.Client{ID: "m", Mode: ciba.ModePoll}
	tests := []struct {
		name string
		opts testOpts
		msg  string
	}{
		{"tls_client_auth MUST use exactly one subject metadata value: none", testOpts{Client: poll, Methods: []string{MethodTLSClientAuth}}, "tls_client_auth needs one of"},
		{"tls_client_auth MUST use exactly one subject metadata value: two", testOpts{Client: poll, Methods: []string{MethodTLSClientAuth}, TLSClientAuth: TLSClientAuth{SubjectDN: "CN=m", SANDNS: "m.example"}}, "exactly one"},
		{"self_signed_tls_client_auth needs jwks", testOpts{Client: poll, Methods: []string{MethodSelfSignedTLSClientAuth}}, "needs the client's certificate in jwks or at jwks_uri"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := register(t.Context(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %q", err, tt.msg)
			}
		})
	}
}

func TestTLSClientAuthSANs(t *testing.T) {
	ca := newCert(t, "ca", nil, true)
	c := newCert(t, "svc", &ca, false)
	for _, tt := range []struct {
		name string
		a    TLSClientAuth
		want bool
	}{
		{"san_dns matches without regard to case", TLSClientAuth{SANDNS: "SVC.example"}, true},
		{"san_dns other name", TLSClientAuth{SANDNS: "other.example"}, false},
		{"san_uri absent", TLSClientAuth{SANURI: "https://svc.example"}, false},
		{"san_email absent", TLSClientAuth{SANEmail: "svc@example"}, false},
		{"subject_dn in RFC 4514 form", TLSClientAuth{SubjectDN: "CN=svc,O=Example"}, true},
	} {
		if got := tt.a.matches(c.cert); got != tt.want {
			t.Errorf("%s: matches = %v, want %v", tt.name, got, tt.want)
		}
	}
}
