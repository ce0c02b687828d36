package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// reloadClient is the client the test adds to the configuration.
var reloadClient = testutil.Client{ID: "reload-poll", Secret: "reload-poll-secret-3f9a"}

const reloadClientYAML = `
  - client_id: reload-poll
    client_name: Added by a reload
    client_secret: reload-poll-secret-3f9a
    token_endpoint_auth_methods: [client_secret_basic]
    backchannel_token_delivery_mode: poll
`

// A client added to the file works after SIGHUP; a broken file keeps the
// clients in force, and the log says why.
func TestReloadClientsOnSIGHUP(t *testing.T) {
	t.Parallel()
	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cibaproxy.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(string(quick))
	e := &env{t: t, hook: testutil.NewWebhook(t), notify: testutil.NewNotifier(t)}
	e.srv = testutil.Start(t, testutil.Options{Binary: binary, Config: path, WebhookURL: e.hook.URL, NotifyURL: e.notify.URL})

	form := func(prefix string) (url.Values, string) {
		b := tag(prefix)
		return url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {b}}, b
	}
	f, _ := form("before")
	if r := e.authorize(reloadClient, f); r.Status != http.StatusUnauthorized {
		t.Fatalf("bc-authorize as the client not yet in the file: got %s, want 401", r)
	}

	// Add the client and change a setting that needs a restart.
	added := strings.Replace(string(quick)+reloadClientYAML, "long_poll: 20s", "long_poll: 19s", 1)
	if !strings.Contains(added, "long_poll: 19s") {
		t.Fatal("the quick start config has no long_poll: 20s to change")
	}
	write(added)
	hup(t, e.srv, "clients reloaded", 1)

	f, binding := form("reloaded")
	r := e.authorize(reloadClient, f)
	if r.Status != http.StatusOK {
		t.Fatalf("bc-authorize as the added client after SIGHUP: got %s, want 200", r)
	}
	req := request{Client: reloadClient, AuthReqID: r.Str("auth_req_id"), Binding: binding}
	e.answer(req, "approved")
	checkTokens(t, "token of the added client", e.token(reloadClient, req.AuthReqID))
	logs := e.srv.Logs()
	if !strings.Contains(logs, "added=reload-poll") {
		t.Errorf("the reload log does not name the added client:\n%s", logs)
	}
	if !strings.Contains(logs, "settings=ciba") {
		t.Errorf("the log does not say the changed ciba.long_poll needs a restart:\n%s", logs)
	}

	// Break the file: an unknown delivery mode and the added client twice.
	write(added + strings.Replace(reloadClientYAML, "backchannel_token_delivery_mode: poll", "backchannel_token_delivery_mode: carrier-pigeon", 1))
	hup(t, e.srv, "the clients in force are kept", 1)
	logs = e.srv.Logs()
	for _, want := range []string{"configuration problem", "clients[4]", "carrier-pigeon"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log of the refused reload lacks %q:\n%s", want, logs)
		}
	}
	for _, c := range []testutil.Client{testutil.DemoPoll, reloadClient} {
		f, _ := form("after broken")
		if r := e.authorize(c, f); r.Status != http.StatusOK {
			t.Errorf("bc-authorize as %s after a refused reload: got %s, want 200", c.ID, r)
		}
	}

	// Removing the client again takes it away.
	write(string(quick))
	hup(t, e.srv, "clients reloaded", 2)
	f, _ = form("removed")
	if r := e.authorize(reloadClient, f); r.Status != http.StatusUnauthorized {
		t.Errorf("bc-authorize as the removed client: got %s, want 401", r)
	}
	if logs := e.srv.Logs(); strings.Contains(logs, reloadClient.Secret) {
		t.Errorf("the log holds the client secret")
	}
}

// hup sends SIGHUP to srv and waits until its log holds want n times.
func hup(t *testing.T, srv *testutil.Server, want string, n int) {
	t.Helper()
	if err := srv.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for strings.Count(srv.Logs(), want) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log %v after SIGHUP:\n%s", want, waitTimeout, srv.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestReloadTLSCertificateOnSIGHUP: with tls.cert_file, the server
// certificate is read again on SIGHUP: a connection made after the reload
// gets the new certificate; a file that no longer loads keeps the
// certificate in force, and the log says why.
func TestReloadTLSCertificateOnSIGHUP(t *testing.T) {
	t.Parallel()
	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	serverCA := issueCert(t, "server-ca", nil, true, false)
	certA := issueCert(t, "127.0.0.1", &serverCA, false, true)
	certB := issueCert(t, "127.0.0.1", &serverCA, false, true)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	install := func(c mtlsCert) {
		t.Helper()
		der, err := x509.MarshalECPrivateKey(c.key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile, []byte(c.pem()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	install(certA)
	path := filepath.Join(dir, "cibaproxy.yaml")
	cfg := string(quick) + "\ntls:\n  cert_file: " + certFile + "\n  key_file: " + keyFile + "\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: path, WebhookURL: testutil.NewWebhook(t).URL,
		NotifyURL: testutil.NewNotifier(t).URL, TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	u, err := url.Parse(srv.URL)
	if err != nil || u.Scheme != "https" {
		t.Fatalf("server URL %s, want https (%v)", srv.URL, err)
	}
	// served returns the certificate a new TLS connection is served.
	served := func() *x509.Certificate {
		t.Helper()
		d := tls.Dialer{Config: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
		conn, err := d.DialContext(ctx(t), "tcp", u.Host)
		if err != nil {
			t.Fatalf("TLS dial %s: %v", u.Host, err)
		}
		defer conn.Close()
		return conn.(*tls.Conn).ConnectionState().PeerCertificates[0]
	}
	if got := served(); !got.Equal(certA.cert) {
		t.Fatalf("served serial %v at start, want A's %v", got.SerialNumber, certA.cert.SerialNumber)
	}

	install(certB)
	hup(t, srv, "server certificate replaced", 1)
	if got := served(); !got.Equal(certB.cert) {
		t.Fatalf("served serial %v after SIGHUP, want B's %v", got.SerialNumber, certB.cert.SerialNumber)
	}

	// A certificate file that does not go with the key: the reload is
	// refused, B stays.
	if err := os.WriteFile(certFile, []byte(certA.pem()), 0o600); err != nil {
		t.Fatal(err)
	}
	hup(t, srv, "the clients in force are kept", 1)
	if got := served(); !got.Equal(certB.cert) {
		t.Errorf("served serial %v after a broken reload, want B's %v", got.SerialNumber, certB.cert.SerialNumber)
	}
	if logs := srv.Logs(); !strings.Contains(logs, "tls.cert_file") || strings.Contains(logs, "PRIVATE KEY") {
		t.Errorf("the log of the refused reload does not name tls.cert_file, or holds key material:\n%s", logs)
	}
}

// TestReloadClientCAOnSIGHUP: tls.client_ca_file is read again on SIGHUP:
// a tls_client_auth certificate from a CA added to the file authenticates
// after the reload, and the change is not reported as needing a restart.
func TestReloadClientCAOnSIGHUP(t *testing.T) {
	t.Parallel()
	p := newMTLSPKI(t)
	newCA := issueCert(t, "client-ca-2", nil, true, false)
	renewed := issueCert(t, "mtls-pki", &newCA, false, false)
	cfg := mtlsConfig(t, p, "tls:\n  client_ca_file: CA_FILE\nmtls_proxy:\n  header: X-Client-Cert\n  trusted_proxies: [127.0.0.0/8]\n")
	caFile := filepath.Join(filepath.Dir(cfg), "client-ca.pem")
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, WebhookURL: testutil.NewWebhook(t).URL, NotifyURL: testutil.NewNotifier(t).URL})
	authorize := func() *testutil.Response {
		t.Helper()
		f := url.Values{"client_id": {"mtls-pki"}, "scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {tag("ca")}}
		r, err := testutil.PostRaw(ctx(t), srv.URL+"/bc-authorize", "application/x-www-form-urlencoded", f.Encode(),
			http.Header{"X-Client-Cert": {url.PathEscape(renewed.pem())}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := authorize(); r.Status != http.StatusUnauthorized || !strings.Contains(r.Str("error_description"), "does not chain to a trusted client CA") {
		t.Fatalf("a certificate from a CA not yet in the file: got %s, want 401 invalid_client", r)
	}
	if err := os.WriteFile(caFile, []byte(p.ca.pem()+newCA.pem()), 0o600); err != nil {
		t.Fatal(err)
	}
	hup(t, srv, "clients reloaded", 1)
	if r := authorize(); r.Status != http.StatusOK {
		t.Fatalf("a certificate from the CA added to the file, after SIGHUP: got %s, want 200", r)
	}
	if logs := srv.Logs(); strings.Contains(logs, "settings=tls") {
		t.Errorf("the reload says the changed client CAs need a restart:\n%s", logs)
	}
}
