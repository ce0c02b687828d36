package e2e

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cibaproxy/cibaproxy/test/smtpsink"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestEmailChannel runs the e-mail channel against a local SMTP server with
// STARTTLS and AUTH: the message reaches the user's address with the
// binding message, and the link in it completes the flow on the approval
// page. The first delivery attempt is refused (451), so the message also
// shows the retry.
func TestEmailChannel(t *testing.T) {
	t.Parallel()
	tlsCfg, _ := smtpsink.SelfSigned(t)
	sink := smtpsink.Start(t, smtpsink.Options{TLS: tlsCfg, Users: map[string]string{"cibaproxy": "smtp-secret"}, FailNext: 1})
	dir := t.TempDir()
	caFile := filepath.Join(dir, "smtp-ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsCfg.Certificates[0].Certificate[0]})
	if err := os.WriteFile(caFile, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}
	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	// The quickstart with the e-mail channel in place of the webhook.
	cfg := strings.Replace(string(quick), "channels:\n  webhook:\n    url: ${CIBAPROXY_WEBHOOK_URL}\n", fmt.Sprintf(`channels:
  email:
    host: %s
    port: %d
    tls: starttls
    ca_file: %s
    username: cibaproxy
    password: ${SMTP_PASSWORD}
    from: "Sign-in <signin@bank.example>"
`, sink.Host(), sink.Port(), caFile), 1)
	if cfg == string(quick) {
		t.Fatal("the quickstart's channels section changed; update this test")
	}
	path := filepath.Join(dir, "email.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: path, Env: []string{"SMTP_PASSWORD=smtp-secret"}})
	e := &env{t: t, srv: srv}

	req := e.mustAuthorize(testutil.DemoPoll, "Mail")
	m, err := sink.WaitMessage(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.To) != 1 || m.To[0] != "alice@example.com" {
		t.Errorf("recipients = %v, want alice's e-mail claim", m.To)
	}
	if !strings.Contains(m.Body, req.Binding) || !strings.Contains(m.Header.Get("Subject"), "Demo poll client") {
		t.Errorf("the message lacks the binding message or the client name:\nSubject: %s\n%s", m.Header.Get("Subject"), m.Body)
	}
	link := regexp.MustCompile(`https?://\S+/approve/[A-Za-z0-9_-]+`).FindString(m.Body)
	if link == "" || !strings.HasPrefix(link, srv.URL) {
		t.Fatalf("no approval link to %s in the message:\n%s", srv.URL, m.Body)
	}

	b := newBrowser(t)
	resp, page := b.do("GET", link, nil)
	csrf := csrfInput.FindStringSubmatch(page)
	if resp.StatusCode != 200 || csrf == nil || !strings.Contains(page, req.Binding) {
		t.Fatalf("approval page from the e-mail link: %d\n%s", resp.StatusCode, page)
	}
	if resp, _ := b.do("POST", link, url.Values{"csrf": {csrf[1]}, "action": {"approve"}, "password": {"alice-password"}}); resp.StatusCode != 200 {
		t.Fatalf("approve: %d", resp.StatusCode)
	}
	checkTokens(t, "poll after approving from the e-mail", e.token(testutil.DemoPoll, req.AuthReqID))
	checkError(t, "second poll", e.token(testutil.DemoPoll, req.AuthReqID), http.StatusBadRequest, "invalid_grant")

	logs := srv.Logs()
	for _, secret := range []string{"smtp-secret", strings.TrimPrefix(link, srv.URL+"/approve/")} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains a secret (%.6s…)", secret)
		}
	}
	if !strings.Contains(logs, "attempt=2") {
		t.Errorf("the refused first delivery was not retried (no attempt=2 in the log)")
	}
}
