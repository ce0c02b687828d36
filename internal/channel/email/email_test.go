package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/test/smtpsink"
)

const (
	user     = "mailer"
	password = "pw-S3cret-9f2c"
	// approveURL is longer than a quoted-printable line, so it is sent
	// split by soft line breaks and must come back whole.
	approvalID = "Zx9aQ4mK2vT7bN1cR8dF3gH6jL0pW5sY-uE_iO2kA7q"
	approveURL = "https://proxy.example.com/approve/" + approvalID
)

func request(loginHint string) *ciba.AuthRequest {
	return &ciba.AuthRequest{
		ID: "auth-req-id-not-for-mail", ApprovalID: approvalID, ClientID: "bank-app",
		Subject: "sub-alice", LoginHint: loginHint, Scopes: []string{"openid", "email"},
		BindingMessage: "Code 7Q4X", ExpiresAt: time.Date(2027, 1, 15, 8, 0, 0, 0, time.UTC),
	}
}

// bankClient is the requesting client of most tests.
func bankClient() *ciba.Client { return &ciba.Client{ID: "bank-app", Name: "Example Bank"} }

func notice() ciba.Notice {
	return ciba.Notice{ApproveURL: approveURL, CallbackURL: "https://proxy.example.com/ciba/callback", CallbackToken: "cb-token-secret"}
}

// assertClean fails when err's message carries a secret.
func assertClean(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, s := range []string{password, approveURL, approvalID, "cb-token-secret"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains the secret %q", err, s)
		}
	}
}

// tlsSink starts a sink offering STARTTLS (or implicit TLS) with AUTH PLAIN.
func tlsSink(t *testing.T, implicit bool, failNext int) (*smtpsink.Sink, *x509.CertPool) {
	srv, pool := smtpsink.SelfSigned(t)
	s := smtpsink.Start(t, smtpsink.Options{TLS: srv, ImplicitTLS: implicit, Users: map[string]string{user: password}, FailNext: failNext})
	return s, pool
}

func config(s *smtpsink.Sink, pool *x509.CertPool, mode string) Config {
	return Config{
		Host: s.Host(), Port: s.Port(), TLS: mode, Username: user, Password: password,
		From: "Sign-in <signin@proxy.example.com>", RootCAs: pool,
	}
}

func newChannel(t *testing.T, cfg Config) (*Channel, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	ch, err := New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	return ch, &logs
}

func TestSendOverSTARTTLSWithAuth(t *testing.T) {
	s, pool := tlsSink(t, false, 0)
	ch, logs := newChannel(t, config(s, pool, ""))
	if ch.Name() != "email" {
		t.Errorf("Name() = %q", ch.Name())
	}
	if err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice()); err != nil {
		t.Fatal(err)
	}
	m, err := s.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "signin@proxy.example.com" || len(m.To) != 1 || m.To[0] != "alice@example.com" {
		t.Errorf("envelope = %q → %q, want signin@proxy.example.com → [alice@example.com]", m.From, m.To)
	}
	for name, want := range map[string]string{
		"From":                      `"Sign-in" <signin@proxy.example.com>`,
		"To":                        "<alice@example.com>",
		"Subject":                   "Approve sign-in to Example Bank",
		"MIME-Version":              "1.0",
		"Content-Type":              "text/plain; charset=utf-8",
		"Content-Transfer-Encoding": "quoted-printable",
	} {
		if got := m.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if id := m.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@proxy.example.com>") {
		t.Errorf("Message-ID = %q", id)
	}
	for _, want := range []string{"Example Bank", "Code 7Q4X", "Your email address (email)", "(at Fri 15 Jan 08:00 UTC)"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, m.Body)
		}
	}
	if !hasLine(m.Body, approveURL) {
		t.Errorf("body has no line equal to the approve URL:\n%s", m.Body)
	}
	if !strings.Contains(string(m.Data), "=\r\n") {
		t.Error("the long approve URL was not split by a soft line break; the test does not test decoding")
	}
	for _, s := range []string{"auth-req-id-not-for-mail", "cb-token-secret", password} {
		if strings.Contains(string(m.Data), s) {
			t.Errorf("the message contains %q", s)
		}
	}
	if strings.Contains(logs.String(), approvalID) || strings.Contains(logs.String(), password) {
		t.Errorf("a secret was logged: %s", logs)
	}
}

func hasLine(body, want string) bool {
	for _, l := range strings.Split(body, "\n") {
		if strings.TrimSuffix(l, "\r") == want {
			return true
		}
	}
	return false
}

// TestMessageSaysWhatTheApprovalPageSays: the built-in message (subject
// and plain-text body) names the operator's service (pages.service_name),
// describes each scope as the approval page does, the operator's own
// descriptions first (pages.scope_descriptions) and the scope name alone
// when it has none, and gives the expiry relative to when it is sent,
// with the time in UTC beside it (the reader's zone is unknown).
func TestMessageSaysWhatTheApprovalPageSays(t *testing.T) {
	s, pool := tlsSink(t, false, 0)
	cfg := config(s, pool, TLSStartTLS)
	cfg.ServiceName = "Acme Bank"
	cfg.ScopeDescriptions = map[string]string{"payments": "Make payments from your account", "email": "Your work email address"}
	ch, _ := newChannel(t, cfg)
	r := request("alice@example.com")
	r.Scopes = []string{"openid", "email", "payments", "x-custom"}
	ch.now = func() time.Time { return r.ExpiresAt.Add(-12*time.Minute - 30*time.Second) }
	if err := ch.Send(t.Context(), r, bankClient(), notice()); err != nil {
		t.Fatal(err)
	}
	m, err := s.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Header.Get("Subject"), "Approve sign-in to Example Bank"; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	want := strings.ReplaceAll(`Acme Bank

Example Bank asks you to sign in.

Check that Example Bank shows you this message:

    Code 7Q4X

It asks for:
  - Confirm who you are (openid)
  - Your work email address (email)
  - Make payments from your account (payments)
  - x-custom

This request expires in 12 minutes (at 08:00 UTC).

To approve or deny it, open:

`+approveURL+`

If you did not try to sign in to Example Bank, deny the request or ignore
this message.
`, "\n", "\r\n")
	if m.Body != want {
		t.Errorf("body:\n%s\nwant:\n%s", m.Body, want)
	}

	// Without pages settings: no service name, the built-in descriptions.
	s2, pool2 := tlsSink(t, false, 0)
	plain, _ := newChannel(t, config(s2, pool2, TLSStartTLS))
	plain.now = func() time.Time { return r.ExpiresAt.Add(-30 * time.Second) }
	if err := plain.Send(t.Context(), request("alice@example.com"), bankClient(), notice()); err != nil {
		t.Fatal(err)
	}
	m, err = s2.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Body, "Example Bank asks you to sign in.\r\n") {
		t.Errorf("body without a service name starts %q", m.Body[:min(len(m.Body), 60)])
	}
	for _, line := range []string{"  - Your email address (email)", "This request expires in less than a minute (at 08:00 UTC)."} {
		if !hasLine(m.Body, line) {
			t.Errorf("body lacks the line %q:\n%s", line, m.Body)
		}
	}
}

func TestSendOverImplicitTLS(t *testing.T) {
	s, pool := tlsSink(t, true, 0)
	ch, _ := newChannel(t, config(s, pool, TLSImplicit))
	if err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice()); err != nil {
		t.Fatal(err)
	}
	if m, err := s.WaitMessage(t.Context()); err != nil || !hasLine(m.Body, approveURL) {
		t.Errorf("message = %+v, %v; want one with the approve URL", m, err)
	}
}

func TestSendInTheClearToLoopback(t *testing.T) {
	s := smtpsink.Start(t, smtpsink.Options{})
	ch, _ := newChannel(t, Config{Host: s.Host(), Port: s.Port(), TLS: TLSNone, From: "signin@proxy.example.com"})
	if err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice()); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestNewRefuses(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.tmpl")
	if err := os.WriteFile(bad, []byte("Hello {{.ClientName"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknownField := filepath.Join(t.TempDir(), "field.tmpl")
	if err := os.WriteFile(unknownField, []byte("Open {{.ApprovalLink}}"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.tmpl")
	ok := Config{Host: "smtp.example.com", From: "signin@example.com"}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   []string
	}{
		{"tls none for a non-loopback host", func(c *Config) { c.TLS = TLSNone }, []string{`"none"`, "loopback", "smtp.example.com"}},
		{"unknown tls mode", func(c *Config) { c.TLS = "ssl" }, []string{`"ssl"`}},
		{"no host", func(c *Config) { c.Host = "" }, []string{"host is required"}},
		{"host with a space", func(c *Config) { c.Host = "smtp example" }, []string{"host"}},
		{"port out of range", func(c *Config) { c.Port = 70000 }, []string{"port 70000"}},
		{"no from", func(c *Config) { c.From = "" }, []string{"from is required"}},
		{"from not an address", func(c *Config) { c.From = "signin" }, []string{"from"}},
		{"from with CRLF", func(c *Config) { c.From = "a@example.com\r\nBcc: b@example.com" }, []string{"CR"}},
		{"password without username", func(c *Config) { c.Password = password }, []string{"no username"}},
		{"auth in the clear", func(c *Config) { c.Host, c.TLS, c.Username, c.Password = "127.0.0.1", TLSNone, user, password }, []string{"in the clear"}},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, []string{"timeout"}},
		{"bad subject template", func(c *Config) { c.Subject = "{{.ClientName" }, []string{"subject template"}},
		{"body template syntax error", func(c *Config) { c.TemplateFile = bad }, []string{bad, "unclosed action"}},
		{"body template unknown field", func(c *Config) { c.TemplateFile = unknownField }, []string{unknownField, "ApprovalLink"}},
		{"body template missing", func(c *Config) { c.TemplateFile = missing }, []string{missing}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.change(&cfg)
			_, err := New(cfg, nil)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := New(Config{Host: host, TLS: TLSNone, From: "signin@example.com"}, nil); err != nil {
			t.Errorf("tls none for %s: %v", host, err)
		}
	}
}

func TestSTARTTLSNotOfferedSendsNothing(t *testing.T) {
	s := smtpsink.Start(t, smtpsink.Options{Users: map[string]string{user: password}})
	ch, _ := newChannel(t, config(s, nil, TLSStartTLS))
	err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice())
	if err == nil || !strings.Contains(err.Error(), "starttls") || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("Send = %v, want a starttls error", err)
	}
	assertClean(t, err)
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages sent without TLS", n)
	}
}

func TestUntrustedCertificateSendsNothing(t *testing.T) {
	s, _ := tlsSink(t, false, 0)
	ch, _ := newChannel(t, config(s, x509.NewCertPool(), TLSStartTLS))
	err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice())
	if err == nil || !strings.Contains(err.Error(), "starttls") {
		t.Errorf("Send = %v, want a starttls certificate error", err)
	}
	assertClean(t, err)
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages sent to an untrusted server", n)
	}
}

func TestWrongPassword(t *testing.T) {
	s, pool := tlsSink(t, false, 0)
	cfg := config(s, pool, TLSStartTLS)
	cfg.Password = "wrong-" + password
	ch, _ := newChannel(t, cfg)
	err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice())
	if err == nil || !strings.Contains(err.Error(), "auth") || !strings.Contains(err.Error(), "535") {
		t.Errorf("Send = %v, want an auth error with the server's 535", err)
	}
	if strings.Contains(err.Error(), cfg.Password) {
		t.Errorf("error %q contains the password", err)
	}
	assertClean(t, err)
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages sent", n)
	}
}

func TestTemporaryFailureThenRetry(t *testing.T) {
	s, pool := tlsSink(t, false, 1)
	ch, _ := newChannel(t, config(s, pool, TLSStartTLS))
	err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice())
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 451 || !strings.Contains(err.Error(), "data") || !strings.Contains(err.Error(), "451") {
		t.Fatalf("Send = %v, want a data error with the server's 451", err)
	}
	assertClean(t, err)
	if err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice()); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestOperatorTemplate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "body.tmpl")
	tmpl := "Hello {{.LoginHint}},\n{{.ClientName}} ({{.ClientID}}) wants {{join .Scopes \" \"}} until {{.ExpiresAt.Format \"2006-01-02\"}}.\n" +
		"{{with .BindingMessage}}Code: {{.}}\n{{end}}{{.ApproveURL}}\n"
	if err := os.WriteFile(file, []byte(tmpl), 0o600); err != nil {
		t.Fatal(err)
	}
	s, pool := tlsSink(t, false, 0)
	cfg := config(s, pool, TLSStartTLS)
	cfg.TemplateFile = file
	cfg.Subject = "{{.ClientName}}: sign-in request"
	ch, _ := newChannel(t, cfg)
	if err := ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice()); err != nil {
		t.Fatal(err)
	}
	m, err := s.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := "Hello alice@example.com,\r\nExample Bank (bank-app) wants openid email until 2027-01-15.\r\nCode: Code 7Q4X\r\n" + approveURL + "\r\n"
	if m.Body != want {
		t.Errorf("body = %q, want %q", m.Body, want)
	}
	if got := m.Header.Get("Subject"); got != "Example Bank: sign-in request" {
		t.Errorf("Subject = %q", got)
	}
}

func TestNonASCIISubjectIsEncoded(t *testing.T) {
	s, pool := tlsSink(t, false, 0)
	ch, _ := newChannel(t, config(s, pool, TLSStartTLS))
	if err := ch.Send(t.Context(), request("alice@example.com"), &ciba.Client{ID: "x", Name: "Bänk Ünïon"}, notice()); err != nil {
		t.Fatal(err)
	}
	m, err := s.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	raw := m.Header.Get("Subject")
	if !strings.HasPrefix(raw, "=?utf-8?q?") {
		t.Errorf("Subject = %q, want a Q-encoded word", raw)
	}
	if got, err := new(mime.WordDecoder).DecodeHeader(raw); err != nil || got != "Approve sign-in to Bänk Ünïon" {
		t.Errorf("decoded Subject = %q, %v", got, err)
	}
	if !strings.Contains(m.Body, "Bänk Ünïon asks you") {
		t.Errorf("body lacks the client name:\n%s", m.Body)
	}
}

func TestRecipient(t *testing.T) {
	s, pool := tlsSink(t, false, 0)
	ch, _ := newChannel(t, config(s, pool, TLSStartTLS))
	for _, hint := range []string{"alice", "Alice <alice@example.com>", "+4915112345678", ""} {
		err := ch.Send(t.Context(), request(hint), bankClient(), notice())
		if err == nil || !strings.Contains(err.Error(), "names no e-mail address") {
			t.Errorf("login_hint %q: Send = %v, want a no-address error", hint, err)
		}
	}
	cfg := config(s, pool, TLSStartTLS)
	cfg.Recipient = func(r *ciba.AuthRequest) (string, error) {
		return strings.TrimPrefix(r.Subject, "sub-") + "@corp.example.com", nil
	}
	ch, _ = newChannel(t, cfg)
	if err := ch.Send(t.Context(), request("alice"), bankClient(), notice()); err != nil {
		t.Fatal(err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 || msgs[0].To[0] != "alice@corp.example.com" || msgs[0].Header.Get("To") != "<alice@corp.example.com>" {
		t.Errorf("messages = %+v, want one to alice@corp.example.com", msgs)
	}
}

func TestHeaderInjectionRefused(t *testing.T) {
	s, pool := tlsSink(t, false, 0)
	injected := "alice@example.com\r\nBcc: eve@example.com"
	for _, tc := range []struct {
		name      string
		hint      string
		client    *ciba.Client
		recipient func(*ciba.AuthRequest) (string, error)
		want      string
	}{
		{name: "login_hint with CRLF", hint: injected, client: bankClient(), want: "names no e-mail address"},
		{name: "login_hint with LF", hint: "alice@example.com\nBcc: eve@example.com", client: bankClient(), want: "names no e-mail address"},
		{name: "recipient with CRLF", hint: "alice@example.com", client: bankClient(),
			recipient: func(*ciba.AuthRequest) (string, error) { return injected, nil }, want: "To header value contains CR"},
		{name: "client name with CRLF in the subject", hint: "alice@example.com",
			client: &ciba.Client{ID: "x", Name: "Bank\r\nBcc: eve@example.com"}, want: "Subject header value contains CR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(s, pool, TLSStartTLS)
			cfg.Recipient = tc.recipient
			ch, _ := newChannel(t, cfg)
			err := ch.Send(t.Context(), request(tc.hint), tc.client, notice())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Send = %v, want an error saying %q", err, tc.want)
			}
			assertClean(t, err)
		})
	}
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("%d messages sent", n)
	}

	// A binding message is in the body only: CR and LF in it add no header.
	ch, _ := newChannel(t, config(s, pool, TLSStartTLS))
	r := request("alice@example.com")
	r.BindingMessage = "7Q4X\r\nBcc: eve@example.com"
	if err := ch.Send(t.Context(), r, bankClient(), notice()); err != nil {
		t.Fatal(err)
	}
	m, err := s.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.To) != 1 || m.Header.Get("Bcc") != "" {
		t.Errorf("recipients %q, Bcc %q: the binding message reached the header", m.To, m.Header.Get("Bcc"))
	}
}

// silentServer accepts connections and never answers; accepted receives each
// one.
func silentServer(t *testing.T) (net.Listener, <-chan net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln, accepted
}

func TestContextCancelled(t *testing.T) {
	ln, accepted := silentServer(t)
	addr := ln.Addr().(*net.TCPAddr)
	ch, _ := newChannel(t, Config{Host: "127.0.0.1", Port: addr.Port, TLS: TLSNone, From: "signin@example.com", Timeout: time.Hour})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ch.Send(ctx, request("alice@example.com"), bankClient(), notice()) }()
	conn := <-accepted // Send now waits for a greeting that never comes
	defer conn.Close()
	cancel()
	err := <-done
	// The server has accepted, but the dial may not have returned on the
	// client's side yet when the cancel lands: either step is right.
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "greeting") && !strings.Contains(err.Error(), "dial") {
		t.Errorf("Send = %v, want context.Canceled while dialling or waiting for the greeting", err)
	}
	assertClean(t, err)

	if err := ch.Send(ctx, request("alice@example.com"), bankClient(), notice()); !errors.Is(err, context.Canceled) {
		t.Errorf("Send with a cancelled context = %v, want context.Canceled", err)
	}
}

// TestServerRepliesAreRedacted runs against a server that echoes the
// credentials and the approve URL in its replies: the error must not carry
// them.
func TestServerRepliesAreRedacted(t *testing.T) {
	srv, pool := smtpsink.SelfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := textproto.NewConn(c)
		tc.PrintfLine("220 echo")
		for range 20 {
			line, err := tc.ReadLine()
			if err != nil {
				return
			}
			switch verb, _, _ := strings.Cut(line, " "); verb {
			case "EHLO":
				tc.PrintfLine("250-echo\r\n250 AUTH PLAIN")
			case "AUTH":
				tc.PrintfLine("235 ok")
			case "DATA":
				tc.PrintfLine("354 go on")
				tc.ReadDotBytes()
				tc.PrintfLine("554 rejected: %s %s", password, approveURL)
			default:
				tc.PrintfLine("250 %s", line)
			}
		}
	}()
	ch, _ := newChannel(t, Config{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TLS: TLSImplicit,
		Username: user, Password: password, From: "signin@example.com", RootCAs: pool})
	err = ch.Send(t.Context(), request("alice@example.com"), bankClient(), notice())
	if err == nil || !strings.Contains(err.Error(), "554") || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("Send = %v, want a 554 data error with the secrets redacted", err)
	}
	assertClean(t, err)
}

// TestAddressesParse keeps the default recipient's notion of a bare address
// aligned with net/mail.
func TestAddressesParse(t *testing.T) {
	for _, a := range []string{"alice@example.com", "a.b+c@sub.example.org"} {
		if got, err := loginHintAddress(&ciba.AuthRequest{LoginHint: a}); err != nil || got != a {
			t.Errorf("%q → %q, %v", a, got, err)
		}
		if _, err := mail.ParseAddress(a); err != nil {
			t.Error(err)
		}
	}
}
