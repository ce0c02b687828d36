package clientauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Authenticator.CertThumbprint gives the x5t#S256 a certificate-bound
// access token is bound to (RFC 8705 §3.1): of the certificate presented
// on TLS, or forwarded by a trusted proxy, whatever the client
// authenticated with.
func TestAuthenticatorCertThumbprint(t *testing.T) {
	f := newMTLSFixture(t)
	a := &Authenticator{Registry: f.reg}
	malformed := httptest.NewRequest(http.MethodPost, tokenEndpoint, nil)
	malformed.RemoteAddr = "10.0.0.1:1"
	malformed.Header.Set("X-Client-Cert", url.PathEscape("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	withBasic := tlsRequest(f.self.cert)
	withBasic.Header.Set("Authorization", basicHeader("plain", plainSecret))
	for _, tt := range []struct {
		name    string
		req     *http.Request
		want    string
		errCode ciba.ErrorCode
	}{
		{"the certificate presented on TLS", tlsRequest(f.pki.cert), CertThumbprint(f.pki.cert), ""},
		{"a certificate the client did not authenticate with (Basic) still counts", withBasic, CertThumbprint(f.self.cert), ""},
		{"no certificate is the empty thumbprint", tlsRequest(nil), "", ""},
		{"the certificate a trusted proxy forwards", proxied("10.1.2.3:5555", f.self.cert), CertThumbprint(f.self.cert), ""},
		{"a forwarded certificate from an untrusted address is ignored", proxied("192.0.2.7:5555", f.self.cert), "", ""},
		{"a malformed forwarded certificate is invalid_client", malformed, "", ciba.CodeInvalidClient},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.CertThumbprint(tt.req)
			if tt.errCode != "" {
				if ciba.AsError(err).Code != tt.errCode {
					t.Fatalf("err = %v, want %s", err, tt.errCode)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("CertThumbprint = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
