package smtpsink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
)

// dial connects a net/smtp client to the sink; implicit says whether to speak
// TLS from the start.
func dial(t *testing.T, s *Sink, client *tls.Config, implicit bool) *smtp.Client {
	t.Helper()
	var conn net.Conn
	var err error
	if implicit {
		conn, err = tls.Dial("tcp", s.Addr(), client)
	} else {
		conn, err = net.Dial("tcp", s.Addr())
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, s.Host())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func code(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func send(c *smtp.Client, from, to, msg string) error {
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("mail: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("rcpt: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return fmt.Errorf("data write: %w", err)
	}
	return w.Close()
}

const testMessage = "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n\r\n" +
	".leading dot\r\ncaf=C3=A9 and a soft=\r\n break\r\n"

func TestSTARTTLSAuthAndDelivery(t *testing.T) {
	srv, pool := SelfSigned(t)
	s := Start(t, Options{TLS: srv, Users: map[string]string{"u": "p"}})
	c := dial(t, s, nil, false)

	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH is offered before STARTTLS")
	}
	if err := c.Mail("a@example.com"); code(err) != 530 {
		t.Errorf("MAIL before AUTH: %v, want 530", err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS is not offered")
	}
	if err := c.StartTLS(&tls.Config{ServerName: s.Host(), RootCAs: pool}); err != nil {
		t.Fatal(err)
	}
	if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN" {
		t.Errorf("AUTH after STARTTLS = %v %q, want PLAIN", ok, mechs)
	}
	if err := c.Auth(smtp.PlainAuth("", "u", "wrong", s.Host())); code(err) != 535 {
		t.Errorf("wrong password: %v, want 535", err)
	}
	c = dial(t, s, nil, false)
	if err := c.StartTLS(&tls.Config{ServerName: s.Host(), RootCAs: pool}); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(smtp.PlainAuth("", "u", "p", s.Host())); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(); err != nil {
		t.Error(err)
	}
	if err := c.Mail("x@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "a@example.com", "b@example.com", testMessage); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}

	m, err := s.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if m.From != "a@example.com" || len(m.To) != 1 || m.To[0] != "b@example.com" {
		t.Errorf("envelope = %q %q, want a@example.com [b@example.com] (RSET discards the first MAIL)", m.From, m.To)
	}
	if string(m.Data) != testMessage {
		t.Errorf("data = %q, want %q (dot-unstuffed)", m.Data, testMessage)
	}
	if got := m.Header.Get("Subject"); got != "hi" {
		t.Errorf("Subject = %q", got)
	}
	if want := ".leading dot\r\ncafé and a soft break\r\n"; m.Body != want {
		t.Errorf("body = %q, want %q (quoted-printable decoded)", m.Body, want)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestImplicitTLS(t *testing.T) {
	srv, pool := SelfSigned(t)
	s := Start(t, Options{TLS: srv, ImplicitTLS: true, Users: map[string]string{"u": "p"}})
	c := dial(t, s, &tls.Config{ServerName: s.Host(), RootCAs: pool}, true)
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered on a TLS connection")
	}
	if err := c.Auth(smtp.PlainAuth("", "u", "p", s.Host())); err != nil {
		t.Fatal(err)
	}
	if err := send(c, "a@example.com", "b@example.com", "Subject: x\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	m, err := s.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if m.Body != "body\r\n" {
		t.Errorf("body = %q", m.Body)
	}
}

func TestFailNextAnswers451ThenAccepts(t *testing.T) {
	s := Start(t, Options{FailNext: 1})
	c := dial(t, s, nil, false)
	if err := send(c, "a@example.com", "b@example.com", "Subject: 1\r\n\r\none\r\n"); code(err) != 451 {
		t.Errorf("first DATA: %v, want 451", err)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages kept after a 451, want 0", n)
	}
	if err := send(c, "a@example.com", "b@example.com", "Subject: 2\r\n\r\ntwo\r\n"); err != nil {
		t.Fatalf("second DATA: %v", err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 || msgs[0].Body != "two\r\n" {
		t.Errorf("messages = %+v, want the second only", msgs)
	}
}

func TestCommandOrderAndLimits(t *testing.T) {
	s := Start(t, Options{})
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tc := textproto.NewConn(conn)
	if _, _, err := tc.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		cmd  string
		code int
	}{
		{"MAIL FROM:<a@example.com>", 503}, // before EHLO
		{"HELO client", 250},
		{"RCPT TO:<b@example.com>", 503}, // before MAIL
		{"DATA", 503},
		{"STARTTLS", 502}, // no TLS configured
		{"AUTH PLAIN", 503},
		{"MAIL FROM:a@example.com", 501},
		{"BOGUS", 500},
		{"MAIL FROM:<a@example.com>", 250},
		{"MAIL FROM:<a@example.com>", 503}, // nested
		{"NOOP", 250},
		{strings.Repeat("x", MaxLine+1), 500},
	} {
		id, err := tc.Cmd("%s", step.cmd)
		if err != nil {
			t.Fatal(err)
		}
		tc.StartResponse(id)
		got, _, err := tc.ReadResponse(0)
		tc.EndResponse(id)
		if err != nil && code(err) == 0 {
			t.Fatalf("%.20s: %v", step.cmd, err)
		}
		if got != step.code {
			t.Errorf("%.20s: code %d, want %d", step.cmd, got, step.code)
		}
	}
	// After a too-long line the sink hangs up.
	if _, err := bufio.NewReader(conn).ReadByte(); err == nil {
		t.Error("connection still open after a too-long line")
	}
}

func TestWaitMessageRespectsContext(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.WaitMessage(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitMessage on a cancelled context = %v, want context.Canceled", err)
	}
}
