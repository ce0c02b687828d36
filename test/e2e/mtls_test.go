package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
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
// certificate with the same subject, and mtls-self's self-signed one; and
// two certificates the CA issued to mtls-bound (CN=mtls-bound,O=Example,
// as after a renewal: both authenticate it, their thumbprints differ).
type mtlsPKI struct {
	ca, pki, pkiOtherCA, self, selfUnknown mtlsCert
	boundA, boundB                         mtlsCert
}

func newMTLSPKI(t *testing.T) mtlsPKI {
	var p mtlsPKI
	p.ca = issueCert(t, "client-ca", nil, true, false)
	other := issueCert(t, "other-ca", nil, true, false)
	p.pki = issueCert(t, "mtls-pki", &p.ca, false, false)
	p.pkiOtherCA = issueCert(t, "mtls-pki", &other, false, false)
	p.self = issueCert(t, "mtls-self", nil, false, false)
	p.selfUnknown = issueCert(t, "mtls-self", nil, false, false)
	p.boundA = issueCert(t, "mtls-bound", &p.ca, false, false)
	p.boundB = issueCert(t, "mtls-bound", &p.ca, false, false)
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

// mtlsDirect is a cibaproxy serving HTTPS itself (tls.cert_file, with a
// server certificate for 127.0.0.1 from its own CA) to the clients of
// mtlsConfig, requesting client certificates without requiring them.
type mtlsDirect struct {
	srv   *testutil.Server
	hook  *testutil.Webhook
	roots *x509.CertPool
}

// startMTLSDirect starts it with config (mtlsConfig or certBoundConfig).
func startMTLSDirect(t *testing.T, p mtlsPKI, config func(t *testing.T, p mtlsPKI, extra string) string) *mtlsDirect {
	t.Helper()
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
	cfg := config(t, p, "tls:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\n  client_ca_file: CA_FILE\n")
	d := &mtlsDirect{hook: testutil.NewWebhook(t), roots: x509.NewCertPool()}
	d.roots.AddCert(serverCA.cert)
	d.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, WebhookURL: d.hook.URL, NotifyURL: testutil.NewNotifier(t).URL,
		TLS: &tls.Config{RootCAs: d.roots, MinVersion: tls.VersionTLS12}})
	if !strings.HasPrefix(d.srv.URL, "https://") {
		t.Fatalf("server URL %s, want https", d.srv.URL)
	}
	return d
}

// client returns an HTTPS client presenting cert (none when nil).
func (d *mtlsDirect) client(t *testing.T, cert *mtlsCert) *http.Client {
	tc := &tls.Config{RootCAs: d.roots, MinVersion: tls.VersionTLS12}
	if cert != nil {
		tc.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.cert.Raw}, PrivateKey: cert.key, Leaf: cert.cert}}
	}
	c := &http.Client{Timeout: waitTimeout, Transport: &http.Transport{Proxy: nil, TLSClientConfig: tc}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// do sends a request with body (none when "") and returns the status and
// the raw body.
func (d *mtlsDirect) do(t *testing.T, c *http.Client, method, path string, header http.Header, contentType, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, d.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, raw
}

// approve answers the webhook message of the request with binding
// "approved", over HTTPS without a client certificate.
func (d *mtlsDirect) approve(t *testing.T, binding string) {
	t.Helper()
	msg, err := d.hook.WaitBinding(ctx(t), binding)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(msg.CallbackURL, "https://") {
		t.Fatalf("callback URL %s, want https", msg.CallbackURL)
	}
	cb, _ := json.Marshal(map[string]string{"status": "approved"})
	if st, raw := d.do(t, d.client(t, nil), http.MethodPost, strings.TrimPrefix(msg.CallbackURL, d.srv.URL), http.Header{"Authorization": {"Bearer " + msg.Token}}, "application/json", string(cb)); st != http.StatusNoContent {
		t.Fatalf("callback: HTTP %d %s, want 204", st, raw)
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
	d := startMTLSDirect(t, p, mtlsConfig)
	client := func(cert *mtlsCert) *http.Client { return d.client(t, cert) }
	form := func(c *http.Client, path string, f url.Values) (int, map[string]any) {
		st, raw := d.do(t, c, http.MethodPost, path, nil, "application/x-www-form-urlencoded", f.Encode())
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return st, m
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
			d.approve(t, binding)
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

// TestMTLSSelfSignedJWKSURI: a self_signed_tls_client_auth client whose
// certificate is published at its jwks_uri (RFC 8705 §2.2), served on
// 127.0.0.1, runs a poll flow behind a TLS-terminating proxy; a certificate
// the jwks_uri does not publish gets invalid_client.
func TestMTLSSelfSignedJWKSURI(t *testing.T) {
	t.Parallel()
	p := newMTLSPKI(t)
	published := issueCert(t, "mtls-self-uri", nil, false, false)
	unpublished := issueCert(t, "mtls-self-uri", nil, false, false)
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &published.key.PublicKey, KeyID: "uri-1", Use: "sig", Certificates: []*x509.Certificate{published.cert}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(set)
	}))
	t.Cleanup(jwks.Close)
	cfg := mtlsConfig(t, p, "tls:\n  client_ca_file: CA_FILE\nmtls_proxy:\n  header: X-Client-Cert\n  trusted_proxies: [127.0.0.0/8]\n")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("  - client_id: mtls-self-uri\n    token_endpoint_auth_methods: [self_signed_tls_client_auth]\n    jwks_uri: " + jwks.URL + "\n    backchannel_token_delivery_mode: poll\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL})
	post := func(path string, cert mtlsCert, form url.Values) *testutil.Response {
		t.Helper()
		form.Set("client_id", "mtls-self-uri")
		h := http.Header{"X-Client-Cert": {url.PathEscape(cert.pem())}}
		r, err := testutil.PostRaw(ctx(t), e.url(path), "application/x-www-form-urlencoded", form.Encode(), h)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return r
	}

	t.Run("the certificate published at the jwks_uri authenticates a poll flow", func(t *testing.T) {
		binding := tag("mtls-self-uri")
		r := post("/bc-authorize", published, url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}})
		if r.Status != http.StatusOK {
			t.Fatalf("bc-authorize: got %s, want 200", r)
		}
		id := r.Str("auth_req_id")
		e.answer(request{Binding: binding}, "approved")
		checkTokens(t, "token as mtls-self-uri", post("/token", published, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {id}}))
	})
	t.Run("a certificate the jwks_uri does not publish is refused", func(t *testing.T) {
		r := post("/bc-authorize", unpublished, url.Values{"scope": {"openid"}, "login_hint": {"alice"}})
		if r.Status != http.StatusUnauthorized || r.Str("error") != "invalid_client" {
			t.Fatalf("got %s, want 401 invalid_client", r)
		}
		if d := r.Str("error_description"); !strings.Contains(d, "is not one published at the client's jwks_uri") {
			t.Errorf("error_description %q", d)
		}
	})
}

// secretBoundSecret is secret-bound's client_secret.
const secretBoundSecret = "secret-bound-0123456789abcdef"

// certBoundConfig is mtlsConfig (which must set tls.client_ca_file) with
// two more poll clients that have certificate-bound access tokens (RFC 8705
// §3): mtls-bound (tls_client_auth, CN=mtls-bound,O=Example) and
// secret-bound (client_secret_post: its tokens are bound to whatever
// certificate it presents).
func certBoundConfig(t *testing.T, p mtlsPKI, extra string) string {
	t.Helper()
	path := mtlsConfig(t, p, extra)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(`  - client_id: mtls-bound
    token_endpoint_auth_methods: [tls_client_auth]
    tls_client_auth_subject_dn: CN=mtls-bound,O=Example
    tls_client_certificate_bound_access_tokens: true
    backchannel_token_delivery_mode: poll
  - client_id: secret-bound
    client_secret: ` + secretBoundSecret + `
    token_endpoint_auth_methods: [client_secret_post]
    tls_client_certificate_bound_access_tokens: true
    backchannel_token_delivery_mode: poll
`)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// mtlsSide is how a test reaches cibaproxy with a client certificate:
// directly over TLS, or through the trusted proxy's header.
type mtlsSide struct {
	// post sends form to path over a connection presenting cert (none
	// when nil) and returns the status and the JSON answer.
	post func(t *testing.T, path string, cert *mtlsCert, form url.Values) (int, map[string]any)
	// get returns the body of a 200 answer to GET path.
	get func(t *testing.T, path string) []byte
	// approve approves the request with binding on the webhook channel.
	approve func(t *testing.T, binding string)
}

// thumbprint is the x5t#S256 of c (RFC 8705 §3.1), computed here rather
// than by the code under test.
func thumbprint(c mtlsCert) string {
	sum := sha256.Sum256(c.cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// verifyAccessToken verifies the JWT access token raw with the server's
// /jwks (by kid) and returns its claims.
func verifyAccessToken(t *testing.T, side mtlsSide, raw string) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(side.get(t, "/jwks"), &set); err != nil {
		t.Fatalf("/jwks is not a JWK set: %v", err)
	}
	jws, err := jose.ParseSignedCompact(raw, asymmetric)
	if err != nil {
		t.Fatalf("the access token is not a compact JWS with an asymmetric alg: %v", err)
	}
	keys := set.Key(jws.Signatures[0].Protected.KeyID)
	if len(keys) == 0 {
		t.Fatalf("the access token's kid %q is not in /jwks", jws.Signatures[0].Protected.KeyID)
	}
	var payload []byte
	for _, k := range keys {
		if payload, err = jws.Verify(k); err == nil {
			break
		}
	}
	if payload == nil {
		t.Fatalf("the access token's signature does not verify with /jwks: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("access token payload: %v", err)
	}
	return claims
}

// cnfOf returns the access token's cnf.x5t#S256 and whether it has a cnf.
func cnfOf(claims map[string]any) (string, bool) {
	cnf, ok := claims["cnf"].(map[string]any)
	if !ok {
		return "", claims["cnf"] != nil
	}
	tp, _ := cnf["x5t#S256"].(string)
	return tp, true
}

// certBoundFlows runs the certificate-bound access token checks (RFC 8705
// §3) on one side.
func certBoundFlows(t *testing.T, p mtlsPKI, side mtlsSide) {
	var doc map[string]any
	if err := json.Unmarshal(side.get(t, "/.well-known/openid-configuration"), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["tls_client_certificate_bound_access_tokens"] != true {
		t.Errorf("discovery tls_client_certificate_bound_access_tokens = %v, want true (RFC 8705 §3.3)", doc["tls_client_certificate_bound_access_tokens"])
	}

	// authorize creates an approved request of client id (its form
	// credentials in creds) over a connection presenting cert.
	authorize := func(t *testing.T, id string, creds url.Values, cert *mtlsCert) string {
		t.Helper()
		binding := tag(id)
		f := url.Values{"client_id": {id}, "scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}}
		for k, v := range creds {
			f[k] = v
		}
		st, m := side.post(t, "/bc-authorize", cert, f)
		if st != http.StatusOK {
			t.Fatalf("bc-authorize as %s: HTTP %d %v, want 200", id, st, m)
		}
		side.approve(t, binding)
		return m["auth_req_id"].(string)
	}
	token := func(id string, creds url.Values, grant url.Values) url.Values {
		f := url.Values{"client_id": {id}}
		for _, src := range []url.Values{creds, grant} {
			for k, v := range src {
				f[k] = v
			}
		}
		return f
	}
	wantError := func(t *testing.T, what string, st int, m map[string]any, code, msg string) {
		t.Helper()
		if st != http.StatusBadRequest || m["error"] != code {
			t.Fatalf("%s: HTTP %d %v, want 400 %s", what, st, m, code)
		}
		if d, _ := m["error_description"].(string); !strings.Contains(d, msg) {
			t.Errorf("%s: error_description %q does not contain %q", what, d, msg)
		}
	}
	wantBound := func(t *testing.T, what string, st int, m map[string]any, want string) {
		t.Helper()
		if st != http.StatusOK {
			t.Fatalf("%s: HTTP %d %v, want 200 with tokens", what, st, m)
		}
		// RFC 8705 defines no token type: a bound token is used as a
		// bearer token over mutual TLS.
		if m["token_type"] != "Bearer" {
			t.Errorf("%s: token_type = %v, want Bearer", what, m["token_type"])
		}
		at, _ := m["access_token"].(string)
		got, has := cnfOf(verifyAccessToken(t, side, at))
		switch {
		case want == "" && has:
			t.Fatalf("%s: an unbound client's access token has a cnf claim", what)
		case want != "" && got != want:
			t.Fatalf("%s: access token cnf.x5t#S256 = %q, want the certificate's SHA-256 thumbprint %q", what, got, want)
		}
	}
	ciba := func(id string) url.Values { return url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {id}} }

	t.Run("a tls_client_auth client's tokens are bound to its certificate, redeemed only with it, and refreshed onto the certificate presented", func(t *testing.T) {
		id := authorize(t, "mtls-bound", nil, &p.boundA)
		// boundB authenticates mtls-bound too (same CA, same subject), but
		// it is not the certificate the request was made with.
		st, m := side.post(t, "/token", &p.boundB, token("mtls-bound", nil, ciba(id)))
		wantError(t, "another certificate of the client", st, m, "invalid_grant", "RFC 8705")
		st, m = side.post(t, "/token", &p.boundA, token("mtls-bound", nil, ciba(id)))
		wantBound(t, "the same certificate after a refusal", st, m, thumbprint(p.boundA))
		rt, _ := m["refresh_token"].(string)
		if rt == "" {
			t.Fatalf("no refresh_token in %v", m)
		}
		refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		st, m = side.post(t, "/token", &p.boundB, token("mtls-bound", nil, refresh))
		wantBound(t, "refresh with the renewed certificate", st, m, thumbprint(p.boundB))
	})

	creds := url.Values{"client_secret": {secretBoundSecret}}
	t.Run("a client_secret_post client's tokens are bound to the certificate it presents", func(t *testing.T) {
		st, m := side.post(t, "/bc-authorize", nil, token("secret-bound", creds, url.Values{"scope": {"openid"}, "login_hint": {"alice"}}))
		wantError(t, "bc-authorize without a certificate", st, m, "invalid_request", "tls_client_certificate_bound_access_tokens")
		id := authorize(t, "secret-bound", creds, &p.selfUnknown)
		st, m = side.post(t, "/token", nil, token("secret-bound", creds, ciba(id)))
		wantError(t, "token without a certificate", st, m, "invalid_request", "mutual TLS")
		st, m = side.post(t, "/token", &p.self, token("secret-bound", creds, ciba(id)))
		wantError(t, "token with another certificate", st, m, "invalid_grant", "RFC 8705")
		st, m = side.post(t, "/token", &p.selfUnknown, token("secret-bound", creds, ciba(id)))
		wantBound(t, "token with the same certificate", st, m, thumbprint(p.selfUnknown))
		refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}}
		st, m = side.post(t, "/token", nil, token("secret-bound", creds, refresh))
		wantError(t, "refresh without a certificate", st, m, "invalid_request", "mutual TLS")
		st, m = side.post(t, "/token", &p.self, token("secret-bound", creds, refresh))
		wantBound(t, "refresh with a certificate (the refused one left the refresh token usable)", st, m, thumbprint(p.self))
	})

	t.Run("an unbound client's tokens have no cnf", func(t *testing.T) {
		id := authorize(t, "mtls-pki", nil, &p.pki)
		st, m := side.post(t, "/token", &p.pki, token("mtls-pki", nil, ciba(id)))
		wantBound(t, "token", st, m, "")
	})
}

// TestMTLSCertBoundTokens: certificate-bound access tokens (RFC 8705 §3)
// from the local issuer, with the certificate presented on TLS and with
// the one a trusted proxy forwards. A bound client's access token carries
// the SHA-256 thumbprint of its certificate in cnf.x5t#S256 (verified with
// the server's /jwks); its auth_req_id is redeemed only with the
// certificate it was requested with, a refusal leaving it redeemable; a
// refresh binds the new token to the certificate then presented; discovery
// says so (§3.3); an unbound client's tokens have no cnf.
func TestMTLSCertBoundTokens(t *testing.T) {
	t.Parallel()
	p := newMTLSPKI(t)

	t.Run("direct TLS", func(t *testing.T) {
		t.Parallel()
		d := startMTLSDirect(t, p, certBoundConfig)
		certBoundFlows(t, p, mtlsSide{
			post: func(t *testing.T, path string, cert *mtlsCert, form url.Values) (int, map[string]any) {
				st, raw := d.do(t, d.client(t, cert), http.MethodPost, path, nil, "application/x-www-form-urlencoded", form.Encode())
				var m map[string]any
				_ = json.Unmarshal(raw, &m)
				return st, m
			},
			get: func(t *testing.T, path string) []byte {
				st, raw := d.do(t, d.client(t, nil), http.MethodGet, path, nil, "", "")
				if st != http.StatusOK {
					t.Fatalf("GET %s: HTTP %d %s", path, st, raw)
				}
				return raw
			},
			approve: d.approve,
		})
	})

	t.Run("behind a proxy", func(t *testing.T) {
		t.Parallel()
		cfg := certBoundConfig(t, p, "tls:\n  client_ca_file: CA_FILE\nmtls_proxy:\n  header: X-Client-Cert\n  trusted_proxies: [127.0.0.0/8]\n")
		e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
		e.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL})
		certBoundFlows(t, p, mtlsSide{
			post: func(t *testing.T, path string, cert *mtlsCert, form url.Values) (int, map[string]any) {
				h := http.Header{}
				if cert != nil {
					h.Set("X-Client-Cert", url.PathEscape(cert.pem()))
				}
				r, err := testutil.PostRaw(ctx(t), e.url(path), "application/x-www-form-urlencoded", form.Encode(), h)
				if err != nil {
					t.Fatalf("POST %s: %v", path, err)
				}
				return r.Status, r.JSON
			},
			get: func(t *testing.T, path string) []byte {
				r, err := testutil.Get(ctx(t), e.url(path))
				if err != nil || r.Status != http.StatusOK {
					t.Fatalf("GET %s: %v %v", path, r, err)
				}
				return r.Body
			},
			approve: func(t *testing.T, binding string) {
				// e.answer reports to e.t; this subtest's t is the one to fail.
				m, err := e.hook.WaitBinding(ctx(t), binding)
				if err != nil {
					t.Fatal(err)
				}
				r, err := testutil.Callback(ctx(t), m, "approved")
				if err != nil || r.Status != http.StatusNoContent {
					t.Fatalf("callback: %v %v, want 204", r, err)
				}
			},
		})
	})
}
