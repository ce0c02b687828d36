// Package email is the e-mail authentication channel: it sends the user a
// plain-text message naming the client, the binding message, the scopes and
// the expiry, with the link to the approval page. It tells the user what
// the approval page tells them, in the same words (package consent): the
// operator's service name, what each scope gives, and when the request
// expires, relative to when the message is sent and in UTC.
//
// Messages go to one SMTP submission server (RFC 5321, RFC 6409) over
// STARTTLS (RFC 3207) or implicit TLS (RFC 8314), authenticated with
// AUTH PLAIN (RFC 4616) when a user name is configured. The message is
// RFC 5322 with a MIME (RFC 2045) quoted-printable UTF-8 body; header values
// are checked for CR and LF, so nothing a client or user sends can add a
// header, and the binding message travels in the body only.
//
// The approval link carries the request's secret approval id: it is written
// to the message body and nowhere else, never to an error or a log line.
package email

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/netip"
	"net/smtp"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/consent"
)

// The values of Config.TLS.
const (
	// TLSStartTLS upgrades a plain connection with STARTTLS and refuses to
	// send when the server does not offer it. It is the default.
	TLSStartTLS = "starttls"
	// TLSImplicit speaks TLS from the first byte (port 465).
	TLSImplicit = "tls"
	// TLSNone sends in the clear; it is allowed only to a loopback relay.
	TLSNone = "none"
)

// DefaultSubject is the subject template used when Config.Subject is empty.
const DefaultSubject = "Approve sign-in to {{.ClientName}}"

// DefaultTimeout bounds one SMTP session when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// defaultBody is the body template used when Config.TemplateFile is empty.
const defaultBody = `{{with .ServiceName}}{{.}}

{{end}}{{.Asks}}
{{if .BindingMessage}}
Check that {{.ClientName}} shows you this message:

    {{.BindingMessage}}
{{end}}{{if .Details}}
To approve:

{{.DetailsText}}{{end}}
It asks for:
{{range .Access}}  - {{if .Description}}{{.Description}} ({{.Name}}){{else}}{{.Name}}{{end}}
{{end}}
This request expires {{.ExpiresIn}} (at {{.ExpiresAtUTC}}).

To approve or deny it, open:

{{.ApproveURL}}

If you did not try to sign in to {{.ClientName}}, deny the request or ignore
this message.
`

// Config configures the e-mail channel.
type Config struct {
	// Host is the SMTP submission server's name or IP address. Its TLS
	// certificate is verified against it.
	Host string
	// Port is the server's port; 0 means 587 for "starttls", 465 for "tls"
	// and 25 for "none".
	Port int
	// TLS is how the connection is protected: "starttls" (the default;
	// sending is refused when the server does not offer STARTTLS), "tls"
	// (implicit TLS) or "none". "none" sends everything in the clear and is
	// allowed only when Host is a loopback address or "localhost", and then
	// only connections to a loopback address are made.
	TLS string
	// Username and Password authenticate with AUTH PLAIN. They are sent
	// only over TLS, so they cannot be used with TLS "none". Empty Username
	// means no authentication.
	Username, Password string
	// From is the sender, an RFC 5322 address ("Sign-in <auth@example.com>"
	// or "auth@example.com"). Its address is also the envelope sender.
	From string
	// Subject is a text/template for the subject, executed with
	// TemplateData; DefaultSubject when empty. A subject containing CR or
	// LF after execution is refused.
	Subject string
	// TemplateFile is an optional text/template file replacing the built-in
	// body. It is executed with TemplateData and the function join
	// (strings.Join), and is checked at New by a trial execution.
	TemplateFile string
	// RootCAs verifies the server's certificate; nil means the system pool.
	RootCAs *x509.CertPool
	// Timeout bounds one whole SMTP session, from dial to the server's
	// answer to the message; DefaultTimeout when zero. A context deadline
	// that comes earlier wins.
	Timeout time.Duration
	// ServiceName is the operator's service ("Acme Bank"), the
	// configuration's pages.service_name; "" for none.
	ServiceName string
	// ScopeDescriptions add to and override the descriptions of the
	// standard scopes, as on the approval page: the configuration's
	// pages.scope_descriptions.
	ScopeDescriptions map[string]string
	// Recipient returns the bare e-mail address to write to for a request.
	// When nil, it is the request's login_hint if that is a bare address
	// ("alice@example.com", no display name), and otherwise an error saying
	// the request names no e-mail address.
	Recipient func(r *ciba.AuthRequest) (string, error)
}

// TemplateData is what the subject and body templates are executed with.
type TemplateData struct {
	// ClientName is the client's registered name, or its client_id when it
	// has none.
	ClientName string
	// ClientID is the client's client_id.
	ClientID string
	// BindingMessage is the binding_message the client shows the user
	// (CIBA §7.1), so the user can tell the request is theirs; empty when
	// the client sent none.
	BindingMessage string
	// ServiceName is the operator's service (Config.ServiceName); may be
	// empty.
	ServiceName string
	// Scopes are the requested scopes; {{join .Scopes " "}} prints them.
	Scopes []string
	// Access describes the requested scopes, in the order asked, as the
	// approval page does: each has the .Name the client sent and the
	// .Description the user reads ("Your email address"), which is ""
	// for a scope that has none.
	Access []consent.Scope
	// ExpiresAt is when the request expires, in UTC.
	ExpiresAt time.Time
	// ExpiresIn is how long the request has left when the message is sent,
	// rounded down: "in 5 minutes".
	ExpiresIn string
	// ExpiresAtUTC is ExpiresAt as the user reads it: "08:05 UTC", with
	// the day when it is 12 hours or more away. An e-mail cannot know its
	// reader's time zone, so it says UTC.
	ExpiresAtUTC string
	// ApproveURL is the approval page link. It carries the request's
	// secret approval id: put it in the body only.
	ApproveURL string
	// LoginHint is the hint the client named the user with.
	LoginHint string
	// ActsForUser says the client is a delegate acting on the user's
	// behalf (acts_for_user).
	ActsForUser bool
	// Asks is the opening sentence, as the approval page says it:
	// "Example Client asks you to sign in.", or for a delegate "Example
	// Client acting on your behalf asks to …" (consent.Asks).
	Asks string
	// Details are the request's authorization_details (RFC 9396) as the
	// approval page shows them: each with .Type, .Actions, .Locations,
	// .Amounts (.Name, .Amount, .Currency) and .Fields (.Name, .Value);
	// nil for none. DetailsText is all of them as readable plain text,
	// one member per line (authzdetails.List.Text), and DetailsDigest
	// their digest, which the approval records.
	Details       []authzdetails.View
	DetailsText   string
	DetailsDigest string
}

// Channel sends authentication requests by e-mail. It is safe for
// concurrent use.
type Channel struct {
	host      string
	addr      string // host:port
	mode      string
	username  string
	password  string
	from      *mail.Address
	subject   *template.Template
	body      *template.Template
	rootCAs   *x509.CertPool
	timeout   time.Duration
	recipient func(r *ciba.AuthRequest) (string, error)
	logger    *slog.Logger

	service string            // Config.ServiceName
	scopes  map[string]string // Config.ScopeDescriptions
	now     func() time.Time  // the clock; time.Now
}

// New checks cfg and returns the channel. logger may be nil; the channel logs
// successful sends at debug level, never a secret.
func New(cfg Config, logger *slog.Logger) (*Channel, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Host == "" {
		return nil, errors.New("email: host is required")
	}
	if strings.ContainsFunc(cfg.Host, func(r rune) bool { return r <= ' ' || r == '/' || r == 0x7f }) {
		return nil, fmt.Errorf("email: host %q is not a host name or IP address", cfg.Host)
	}
	mode := cfg.TLS
	if mode == "" {
		mode = TLSStartTLS
	}
	defaultPort := 0
	switch mode {
	case TLSStartTLS:
		defaultPort = 587
	case TLSImplicit:
		defaultPort = 465
	case TLSNone:
		defaultPort = 25
		if !loopbackHost(cfg.Host) {
			return nil, fmt.Errorf("email: tls %q sends mail in the clear and is allowed only for a loopback host (localhost, 127.0.0.0/8, ::1), not %q; use %q or %q",
				TLSNone, cfg.Host, TLSStartTLS, TLSImplicit)
		}
	default:
		return nil, fmt.Errorf("email: tls %q is not one of %q, %q, %q", cfg.TLS, TLSStartTLS, TLSImplicit, TLSNone)
	}
	port := cfg.Port
	if port == 0 {
		port = defaultPort
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("email: port %d is out of range", cfg.Port)
	}
	if cfg.Password != "" && cfg.Username == "" {
		return nil, errors.New("email: a password is set but no username")
	}
	if cfg.Username != "" && mode == TLSNone {
		return nil, fmt.Errorf("email: AUTH PLAIN sends the password in the clear: a username needs tls %q or %q", TLSStartTLS, TLSImplicit)
	}
	if strings.ContainsAny(cfg.Username, "\x00\r\n") || strings.ContainsAny(cfg.Password, "\x00\r\n") {
		return nil, errors.New("email: username and password must not contain NUL, CR or LF")
	}
	if cfg.From == "" {
		return nil, errors.New("email: from is required")
	}
	if err := checkHeader("From", cfg.From); err != nil {
		return nil, fmt.Errorf("email: from: %w", err)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("email: from %q is not an e-mail address: %w", cfg.From, err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	if timeout < 0 {
		return nil, fmt.Errorf("email: timeout %v is negative", cfg.Timeout)
	}

	funcs := template.FuncMap{"join": strings.Join}
	subjectText := cfg.Subject
	if subjectText == "" {
		subjectText = DefaultSubject
	}
	subject, err := template.New("subject").Funcs(funcs).Parse(subjectText)
	if err == nil {
		err = subject.Execute(new(bytes.Buffer), sampleData())
	}
	if err != nil {
		return nil, fmt.Errorf("email: subject template: %w", err)
	}
	bodyName, bodyText := "body", defaultBody
	if cfg.TemplateFile != "" {
		b, err := os.ReadFile(cfg.TemplateFile)
		if err != nil {
			return nil, fmt.Errorf("email: template file: %w", err)
		}
		bodyName, bodyText = cfg.TemplateFile, string(b)
	}
	body, err := template.New(bodyName).Funcs(funcs).Parse(bodyText)
	if err == nil {
		err = body.Execute(new(bytes.Buffer), sampleData())
	}
	if err != nil {
		if cfg.TemplateFile != "" {
			return nil, fmt.Errorf("email: template file %s: %w", cfg.TemplateFile, err)
		}
		return nil, fmt.Errorf("email: built-in body template: %w", err)
	}

	recipient := cfg.Recipient
	if recipient == nil {
		recipient = loginHintAddress
	}
	return &Channel{
		host:      cfg.Host,
		addr:      net.JoinHostPort(cfg.Host, strconv.Itoa(port)),
		mode:      mode,
		username:  cfg.Username,
		password:  cfg.Password,
		from:      from,
		subject:   subject,
		body:      body,
		rootCAs:   cfg.RootCAs,
		timeout:   timeout,
		recipient: recipient,
		logger:    logger,
		service:   cfg.ServiceName,
		scopes:    maps.Clone(cfg.ScopeDescriptions),
		now:       time.Now,
	}, nil
}

// sampleData is what templates are tried with at New, so that a template
// naming an unknown field fails there rather than at the first Send.
func sampleData() TemplateData {
	return TemplateData{
		ClientName:     "Example Client",
		ClientID:       "client-id",
		BindingMessage: "A1B2",
		ServiceName:    "Example Service",
		Scopes:         []string{"openid", "email"},
		Access:         consent.Describe([]string{"openid", "email"}, nil),
		ExpiresAt:      time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		ExpiresIn:      "in 5 minutes",
		ExpiresAtUTC:   "03:04 UTC",
		ApproveURL:     "https://example.com/approve/id",
		LoginHint:      "user@example.com",
		ActsForUser:    true,
		Asks:           consent.Asks("Example Client", true, true),
		Details:        []authzdetails.View{{Type: "payment_initiation", Amounts: []authzdetails.Amount{{Name: "instructedAmount", Amount: "50.00", Currency: "EUR"}}, Fields: []authzdetails.Field{{Name: "creditorName", Value: "ACME"}}}},
		DetailsText:    "1. payment_initiation\n   instructedAmount: 50.00 EUR\n   creditorName: ACME\n",
		DetailsDigest:  "v6sfxhNUSO1lXf0AkBf4rfh6IRNJfXW9LSoR6lHqcx8",
	}
}

// loopbackHost reports whether host is "localhost" or a loopback IP address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// loopbackOnly is a dialer control that refuses non-loopback addresses, so
// that "localhost" resolving elsewhere cannot carry clear-text mail off the
// machine.
func loopbackOnly(_ context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("tls %q: %s is not a loopback address", TLSNone, address)
	}
	return nil
}

// loginHintAddress is the default Config.Recipient.
func loginHintAddress(r *ciba.AuthRequest) (string, error) {
	if a, err := mail.ParseAddress(r.LoginHint); err == nil && a.Name == "" && a.Address == r.LoginHint {
		return a.Address, nil
	}
	return "", fmt.Errorf("%w: the request names no e-mail address: its login_hint is not a bare e-mail address", ciba.ErrUnreachable)
}

// Name implements ciba.Channel.
func (c *Channel) Name() string { return "email" }

// Send implements ciba.Channel: it e-mails the user about r. It may be called
// again for the same request after a failure; the user then gets the message
// again. Errors name the SMTP step that failed (dial, greeting, ehlo,
// starttls, auth, mail, rcpt, data) with the server's reply; they never
// contain the approval link or the password.
func (c *Channel) Send(ctx context.Context, r *ciba.AuthRequest, client *ciba.Client, n ciba.Notice) error {
	if err := c.send(ctx, r, client, n); err != nil {
		return c.redact(err, r, n)
	}
	c.logger.DebugContext(ctx, "email sent", "client_id", r.ClientID, "server", c.addr)
	return nil
}

func (c *Channel) send(ctx context.Context, r *ciba.AuthRequest, client *ciba.Client, n ciba.Notice) error {
	to, err := c.recipient(r)
	if err != nil {
		return fmt.Errorf("email: recipient: %w", err)
	}
	if err := checkHeader("To", to); err != nil {
		return fmt.Errorf("email: recipient: %w", err)
	}
	if a, err := mail.ParseAddress(to); err != nil || a.Name != "" || a.Address != to {
		return errors.New("email: recipient: not a bare e-mail address")
	}
	msg, err := c.compose(r, client, n, to)
	if err != nil {
		return err
	}
	return c.deliver(ctx, to, msg)
}

// compose renders the message (RFC 5322, MIME quoted-printable body).
func (c *Channel) compose(r *ciba.AuthRequest, client *ciba.Client, n ciba.Notice, to string) ([]byte, error) {
	name := client.Name
	if name == "" {
		name = client.ID
	}
	now := c.now()
	data := TemplateData{
		ClientName:     name,
		ClientID:       r.ClientID,
		BindingMessage: r.BindingMessage,
		ServiceName:    c.service,
		Scopes:         append([]string(nil), r.Scopes...),
		Access:         consent.Describe(r.Scopes, c.scopes),
		ExpiresAt:      r.ExpiresAt.UTC(),
		ExpiresIn:      consent.Relative(r.ExpiresAt.Sub(now)),
		ExpiresAtUTC:   consent.At(r.ExpiresAt, now),
		ApproveURL:     n.ApproveURL,
		LoginHint:      r.LoginHint,
		ActsForUser:    r.Actor != "",
	}
	if r.AuthzDetails != "" {
		l, err := authzdetails.FromJSON([]byte(r.AuthzDetails))
		if err != nil {
			return nil, fmt.Errorf("email: authorization_details: %w", err)
		}
		data.Details, data.DetailsText, data.DetailsDigest = l.Views(), l.Text(), r.DetailsDigest()
	}
	data.Asks = consent.Asks(name, data.ActsForUser, data.Details != nil)
	var subject strings.Builder
	if err := c.subject.Execute(&subject, data); err != nil {
		return nil, fmt.Errorf("email: subject template: %w", err)
	}
	// Checked before encoding: the encoded form would hide a CR or LF.
	if err := checkHeader("Subject", subject.String()); err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	var body bytes.Buffer
	if err := c.body.Execute(&body, data); err != nil {
		return nil, fmt.Errorf("email: body template: %w", err)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("email: message id: %w", err)
	}
	domain := c.from.Address[strings.LastIndexByte(c.from.Address, '@')+1:]

	var b bytes.Buffer
	for _, h := range [][2]string{
		{"From", c.from.String()},
		{"To", (&mail.Address{Address: to}).String()},
		{"Subject", mime.QEncoding.Encode("utf-8", subject.String())},
		{"Date", now.Format(time.RFC1123Z)},
		{"Message-ID", "<" + hex.EncodeToString(id[:]) + "@" + domain + ">"},
		{"MIME-Version", "1.0"},
		{"Content-Type", "text/plain; charset=utf-8"},
		{"Content-Transfer-Encoding", "quoted-printable"},
		{"Auto-Submitted", "auto-generated"}, // RFC 3834: no auto-replies
	} {
		if err := checkHeader(h[0], h[1]); err != nil {
			return nil, fmt.Errorf("email: %w", err)
		}
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write(body.Bytes()); err != nil {
		return nil, fmt.Errorf("email: encode body: %w", err)
	}
	if err := qp.Close(); err != nil {
		return nil, fmt.Errorf("email: encode body: %w", err)
	}
	return b.Bytes(), nil
}

// checkHeader refuses a header value that could end the header or start
// another one.
func checkHeader(name, value string) error {
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Errorf("%s header value contains CR, LF or NUL", name)
	}
	return nil
}

// deliver runs one SMTP session that submits msg to rcpt.
func (c *Channel) deliver(ctx context.Context, rcpt string, msg []byte) error {
	deadline := time.Now().Add(c.timeout)
	ctxDeadline, hasCtxDeadline := ctx.Deadline()
	if hasCtxDeadline && ctxDeadline.Before(deadline) {
		deadline = ctxDeadline
	} else {
		hasCtxDeadline = false
	}
	fail := func(step string, err error) error {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("email: %s %s: %w", step, c.addr, ctxErr)
		}
		if hasCtxDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("email: %s %s: %w", step, c.addr, context.DeadlineExceeded)
		}
		var reply *textproto.Error
		if errors.As(err, &reply) && reply.Code >= 500 && (step == "mail" || step == "rcpt" || step == "data") {
			// A permanent refusal of this message (RFC 5321 §4.2.1):
			// sending it again will not help; the next channel may.
			return ciba.Permanent(fmt.Errorf("email: %s %s: %w", step, c.addr, err))
		}
		return fmt.Errorf("email: %s %s: %w", step, c.addr, err)
	}

	dialer := &net.Dialer{Deadline: deadline}
	if c.mode == TLSNone {
		dialer.ControlContext = loopbackOnly
	}
	tlsConfig := &tls.Config{ServerName: c.host, RootCAs: c.rootCAs, MinVersion: tls.VersionTLS12}
	var conn net.Conn
	var err error
	if c.mode == TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: tlsConfig}).DialContext(ctx, "tcp", c.addr)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", c.addr)
	}
	if err != nil {
		return fail("dial", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return fail("dial", err)
	}
	// net/smtp takes no context: a cancelled context ends the session by
	// moving the connection's deadline to the past.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	sc, err := smtp.NewClient(conn, c.host)
	if err != nil {
		return fail("greeting", err)
	}
	defer sc.Close()
	if err := sc.Hello("localhost"); err != nil {
		return fail("ehlo", err)
	}
	if c.mode == TLSStartTLS {
		if ok, _ := sc.Extension("STARTTLS"); !ok {
			return fail("starttls", errors.New("the server does not offer STARTTLS; refusing to send in the clear"))
		}
		if err := sc.StartTLS(tlsConfig); err != nil {
			return fail("starttls", err)
		}
	}
	if c.username != "" {
		if ok, mechs := sc.Extension("AUTH"); !ok || !hasField(mechs, "PLAIN") {
			return fail("auth", errors.New("the server does not offer AUTH PLAIN"))
		}
		if err := sc.Auth(smtp.PlainAuth("", c.username, c.password, c.host)); err != nil {
			return fail("auth", err)
		}
	}
	if err := sc.Mail(c.from.Address); err != nil {
		return fail("mail", err)
	}
	if err := sc.Rcpt(rcpt); err != nil {
		return fail("rcpt", err)
	}
	w, err := sc.Data()
	if err != nil {
		return fail("data", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fail("data", err)
	}
	if err := w.Close(); err != nil {
		return fail("data", err)
	}
	// The server has accepted the message: a failed QUIT does not un-send it.
	_ = sc.Quit()
	return nil
}

// hasField reports whether the space-separated list s contains f, ignoring case.
func hasField(s, f string) bool {
	for _, x := range strings.Fields(s) {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// redactedError is an error whose message had the request's secrets removed;
// it still unwraps to the original, for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact removes the password, the approval link and the approval id from
// err's message, should a server or a template have echoed one.
func (c *Channel) redact(err error, r *ciba.AuthRequest, n ciba.Notice) error {
	secrets := []string{n.ApproveURL, r.ApprovalID, n.CallbackToken, c.password}
	if c.username != "" {
		secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte("\x00"+c.username+"\x00"+c.password)))
	}
	msg := err.Error()
	clean := msg
	for _, s := range secrets {
		if s != "" {
			clean = strings.ReplaceAll(clean, s, "[redacted]")
		}
	}
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}
