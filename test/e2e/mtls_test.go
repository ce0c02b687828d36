package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// mtlsCert is a test certificate and its key.
type mtlsCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// issueCert makes a certificate for cn, signed by parent (self-signed when
// nil); ca makes it a CA, server a 127.0.0.1 server certificate.
func issueCert(t *testing.T, cn string, parent *mtlsCert, ca, server bool) mtlsCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Example"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	switch {
	case ca:
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	case server:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
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
	return mtlsCert{cert: cert, key: key}
}

func (c mtlsCert) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw}))
}

// mtlsPKI is the certificates of the mTLS tests: a client CA, the
// certificate it issued to mtls-pki (CN=mtls-pki,O=Example), another CA's
// certificate with the same subject, and mtls-self's self-signed one.
type mtlsPKI struct {
	ca, pki, pkiOtherCA, self, selfUnknown mtlsCert
}

func newMTLSPKI(t *testing.T) mtlsPKI {
	var p mtlsPKI
	p.ca = issueCert(t, "client-ca", nil, true, false)
	other := issueCert(t, "other-ca", nil, true, false)
	p.pki = issueCert(t, "mtls-pki", &p.ca, false, false)
	p.pkiOtherCA = issueCert(t, "mtls-pki", &other, false, false)
	p.self = issueCert(t, "mtls-self", nil, false, false)
	p.selfUnknown = issueCert(t, "mtls-self", nil, false, false)
	return p
}

// mtlsConfig writes the quick start configuration with its clients replaced
// by mtls-pki (tls_client_auth) and mtls-self (self_signed_tls_client_auth,
// its certificate in x5c), both poll, plus extra (the tls or mtls_proxy
// section).
func mtlsConfig(t *testing.T, p mtlsPKI, extra string) string {
	t.Helper()
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(base), "\nclients:\n")
	if !ok {
		t.Fatal("quickstart.yaml has no clients: section")
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "client-ca.pem")
	if err := os.WriteFile(caFile, []byte(p.ca.pem()), 0o600); err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &p.self.key.PublicKey, KeyID: "mtls-self-1", Use: "sig", Certificates: []*x509.Certificate{p.self.cert}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := head + "\n" + strings.ReplaceAll(extra, "CA_FILE", caFile) + `
clients:
  - client_id: mtls-pki
    token_endpoint_auth_methods: [tls_client_auth]
    tls_client_auth_subject_dn: CN=mtls-pki,O=Example
    backchannel_token_delivery_mode: poll
  - client_id: mtls-self
    token_endpoint_auth_methods: [self_signed_tls_client_auth]
    jwks: '` + string(jwks) + `'
    backchannel_token_delivery_mode: poll
`
	path := filepath.Join(dir, "mtls.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMTLSBehindProxy: behind a TLS-terminating proxy (mtls_proxy, the
// proxy being 127.0.0.1), clients authenticate by the certificate the proxy
// forwards in X-Client-Cert, with client_id in the form (RFC 8705 §2); a
// whole CIBA poll flow runs on it, and wrong certificates get
// invalid_client.
func TestMTLSBehindProxy(t *testing.T) {
	t.Parallel()
	p := newMTLSPKI(t)
	cfg := mtlsConfig(t, p, "tls:\n  client_ca_file: CA_FILE\nmtls_proxy:\n  header: X-Client-Cert\n  trusted_proxies: [127.0.0.0/8]\n")
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL})

	post := func(path, id string, cert *mtlsCert, form url.Values) *testutil.Response {
		t.Helper()
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if id != "" {
			f.Set("client_id", id)
		}
		h := http.Header{}
		if cert != nil {
			h.Set("X-Client-Cert", url.PathEscape(cert.pem()))
		}
		r, err := testutil.PostRaw(ctx(t), e.url(path), "application/x-www-form-urlencoded", f.Encode(), h)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return r
	}

	r, err := testutil.Get(ctx(t), e.url("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	methods, _ := r.JSON["token_endpoint_auth_methods_supported"].([]any)
	for _, m := range []string{"tls_client_auth", "self_signed_tls_client_auth"} {
		if !slices.Contains(methods, any(m)) {
			t.Errorf("discovery token_endpoint_auth_methods_supported = %v, want %s listed", methods, m)
		}
	}

	for _, c := range []struct {
		id   string
		cert mtlsCert
	}{{"mtls-pki", p.pki}, {"mtls-self", p.self}} {
		t.Run("poll flow as "+c.id, func(t *testing.T) {
			binding := tag(c.id)
			r := post("/bc-authorize", c.id, &c.cert, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}})
			if r.Status != http.StatusOK {
				t.Fatalf("bc-authorize: got %s, want 200", r)
			}
			id := r.Str("auth_req_id")
			e.answer(request{Binding: binding}, "approved")
			r = post("/token", c.id, &c.cert, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {id}})
			checkTokens(t, "token as "+c.id, r)
		})
	}

	refused := []struct {
		name string
		id   string
		cert *mtlsCert
		msg  string
	}{
		{"tls_client_auth without a certificate", "mtls-pki", nil, "client authentication is required"},
		{"tls_client_auth: the registered subject from another CA", "mtls-pki", &p.pkiOtherCA, "does not chain to a trusted client CA"},
		{"self_signed_tls_client_auth: an unregistered certificate", "mtls-self", &p.selfUnknown, "is not one registered"},
		{"the client_id parameter is required (RFC 8705 §2)", "", &p.pki, "client_id is required"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r := post("/bc-authorize", tt.id, tt.cert, url.Values{"scope": {"openid"}, "login_hint": {"alice"}})
			if r.Status != http.StatusUnauthorized || r.Str("error") != "invalid_client" {
				t.Fatalf("got %s, want 401 invalid_client", r)
			}
			if d := r.Str("error_description"); !strings.Contains(d, tt.msg) {
				t.Errorf("error_description %q does not contain %q", d, tt.msg)
			}
		})
	}
}

// TestMTLSDirect: cibaproxy serves HTTPS itself (tls.cert_file) and
// requests client certificates without requiring them: a tls_client_auth
// client and a self_signed_tls_client_auth client run a poll flow
// authenticated by the certificate of their TLS connection, a connection
// without a certificate is still accepted (and gets invalid_client from the
// token endpoint), and an unregistered self-signed certificate passes the
// handshake but not client authentication.
func TestMTLSDirect(t *testing.T) {
	t.Parallel()
	p := newMTLSPKI(t)
	serverCA := issueCert(t, "server-ca", nil, true, false)
	server := issueCert(t, "127.0.0.1", &serverCA, false, true)
	dir := t.TempDir()
	keyDER, err := x509.MarshalECPrivateKey(server.key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, []byte(server.pem()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mtlsConfig(t, p, "tls:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\n  client_ca_file: CA_FILE\n")
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	hook := testutil.NewWebhook(t)
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, WebhookURL: hook.URL, NotifyURL: testutil.NewNotifier(t).URL,
		TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("server URL %s, want https", srv.URL)
	}

	// client returns an HTTPS client presenting cert (none when nil).
	client := func(cert *mtlsCert) *http.Client {
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert != nil {
			tc.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.cert.Raw}, PrivateKey: cert.key, Leaf: cert.cert}}
		}
		c := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{Proxy: nil, TLSClientConfig: tc}}
		t.Cleanup(c.CloseIdleConnections)
		return c
	}
	do := func(c *http.Client, path string, header http.Header, contentType, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range header {
			req.Header[k] = v
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	form := func(c *http.Client, path string, f url.Values) (int, map[string]any) {
		return do(c, path, nil, "application/x-www-form-urlencoded", f.Encode())
	}

	for _, c := range []struct {
		id   string
		cert mtlsCert
	}{{"mtls-pki", p.pki}, {"mtls-self", p.self}} {
		t.Run("poll flow as "+c.id, func(t *testing.T) {
			hc := client(&c.cert)
			binding := tag(c.id)
			st, m := form(hc, "/bc-authorize", url.Values{"client_id": {c.id}, "scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}})
			if st != http.StatusOK {
				t.Fatalf("bc-authorize: HTTP %d %v, want 200", st, m)
			}
			msg, err := hook.WaitBinding(ctx(t), binding)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(msg.CallbackURL, "https://") {
				t.Fatalf("callback URL %s, want https", msg.CallbackURL)
			}
			cb, _ := json.Marshal(map[string]string{"status": "approved"})
			if st, m := do(client(nil), strings.TrimPrefix(msg.CallbackURL, srv.URL), http.Header{"Authorization": {"Bearer " + msg.Token}}, "application/json", string(cb)); st != http.StatusNoContent {
				t.Fatalf("callback: HTTP %d %v, want 204", st, m)
			}
			st, m = form(hc, "/token", url.Values{"client_id": {c.id}, "grant_type": {testutil.GrantCIBA}, "auth_req_id": {m["auth_req_id"].(string)}})
			if st != http.StatusOK || m["access_token"] == nil || m["id_token"] == nil {
				t.Fatalf("token: HTTP %d %v, want 200 with tokens", st, m)
			}
		})
	}

	refused := []struct {
		name string
		id   string
		cert *mtlsCert
		msg  string
	}{
		{"a connection without a certificate is accepted, the client is not", "mtls-pki", nil, "client authentication is required"},
		{"tls_client_auth: the registered subject from another CA", "mtls-pki", &p.pkiOtherCA, "does not chain to a trusted client CA"},
		{"self_signed_tls_client_auth: an unregistered certificate", "mtls-self", &p.selfUnknown, "is not one registered"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			st, m := form(client(tt.cert), "/bc-authorize", url.Values{"client_id": {tt.id}, "scope": {"openid"}, "login_hint": {"alice"}})
			if st != http.StatusUnauthorized || m["error"] != "invalid_client" {
				t.Fatalf("got HTTP %d %v, want 401 invalid_client", st, m)
			}
			if d, _ := m["error_description"].(string); !strings.Contains(d, tt.msg) {
				t.Errorf("error_description %q does not contain %q", d, tt.msg)
			}
		})
	}
}
