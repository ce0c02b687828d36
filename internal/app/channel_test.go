package app

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/test/smtpsink"
)

// TestEmailSaysWhatThePagesSay: the e-mail channel built from
// examples/email.yaml (with the built-in message) names the operator's
// service and describes the scopes as pages: configures them, as the
// approval page does, and sends the message to the local user's address.
func TestEmailSaysWhatThePagesSay(t *testing.T) {
	sink := smtpsink.Start(t, smtpsink.Options{})
	t.Setenv("CIBAPROXY_DATA", t.TempDir())
	t.Setenv("SMTP_HOST", sink.Host())
	t.Setenv("SMTP_PORT", strings.TrimPrefix(sink.Addr(), sink.Host()+":"))
	cfg, err := config.Load("../../examples/email.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Channels.Email.TemplateFile = "" // the built-in message
	cfg.Pages.ServiceName = "Acme Bank"
	cfg.Pages.ScopeDescriptions = map[string]string{"payments": "Make payments from your account"}
	ch, err := buildEmail(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r := &ciba.AuthRequest{ID: "rid", ApprovalID: "aid", ClientID: "demo-poll", Subject: "alice", LoginHint: "alice",
		Scopes: []string{"openid", "payments"}, BindingMessage: "Code 7Q4X", ExpiresAt: time.Now().Add(10 * time.Minute)}
	n := ciba.Notice{ApproveURL: "http://127.0.0.1:8080/approve/aid", CallbackURL: "http://127.0.0.1:8080/ciba/callback", CallbackToken: "t"}
	if err := ch.Send(t.Context(), r, &ciba.Client{ID: "demo-poll", Name: "Demo poll client"}, n); err != nil {
		t.Fatal(err)
	}
	m, err := sink.WaitMessage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.To) != 1 || m.To[0] != "alice@example.com" {
		t.Errorf("To = %v, want alice's email claim", m.To)
	}
	for _, want := range []string{"Acme Bank", "Make payments from your account (payments)", "Code 7Q4X"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("the message lacks %q:\n%s", want, m.Body)
		}
	}
}
