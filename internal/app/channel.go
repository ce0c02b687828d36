package app

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/channel/email"
	"github.com/cibaproxy/cibaproxy/internal/channel/webhook"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
)

// hasCIBAClients reports whether a client of cfg uses CIBA (not only the
// device grant, whose user comes to the verification page by themselves).
func hasCIBAClients(cfg *config.Config) bool {
	for _, c := range cfg.Clients {
		if c.DeliveryMode != "" {
			return true
		}
	}
	return false
}

// notifyTimeout bounds one ping or push to a client.
const notifyTimeout = 10 * time.Second

// deliveryTimeout bounds one delivery attempt: the longest of the
// notifier's and the channel's own timeouts, so the dispatcher's lease on
// an attempt outlasts whichever send it makes.
func deliveryTimeout(cfg *config.Config) time.Duration {
	d := notifyTimeout
	switch {
	case cfg.Channels.Webhook.URL != "":
		d = max(d, cfg.Channels.Webhook.Timeout)
	case cfg.Channels.Email.Host != "":
		d = max(d, cfg.Channels.Email.Timeout)
	}
	return d
}

// buildChannel returns the configured authentication channel, or nil.
func buildChannel(cfg *config.Config, tr *tracing.Tracing, log *slog.Logger) (ciba.Channel, error) {
	if cfg.Channels.Webhook.URL != "" {
		out := outbound.New(cfg.Channels.Webhook.Timeout)
		out.HTTPClient().Transport = tr.Transport("webhook", out.HTTPClient().Transport)
		return webhook.New(cfg.Channels.Webhook.URL, out), nil
	}
	e := cfg.Channels.Email
	if e.Host == "" {
		return nil, nil
	}
	ec := email.Config{
		Host: e.Host, Port: e.Port, TLS: e.TLS, Username: e.Username, Password: e.Password,
		From: e.From, Subject: e.Subject, TemplateFile: e.TemplateFile, Timeout: e.Timeout,
		// The message says what the approval page says (pages:).
		ServiceName: cfg.Pages.ServiceName, ScopeDescriptions: cfg.Pages.ScopeDescriptions,
	}
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return nil, fmt.Errorf("channels.email.ca_file: %w", err)
		}
		ec.RootCAs = x509.NewCertPool()
		if !ec.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("channels.email.ca_file %s: no PEM certificate in it", e.CAFile)
		}
	}
	if cfg.Upstream.Type == config.UpstreamLocal {
		// Local users may have an email claim; otherwise the login_hint
		// must be an address.
		addrs := make(map[string]string)
		for _, u := range cfg.Upstream.Local.Users {
			if a, ok := u.Claims["email"].(string); ok && a != "" {
				addrs[u.Username] = a
			}
		}
		ec.Recipient = func(r *ciba.AuthRequest) (string, error) {
			if a, ok := addrs[r.LoginHint]; ok {
				return a, nil
			}
			if a, err := mail.ParseAddress(r.LoginHint); err == nil && a.Name == "" {
				return a.Address, nil
			}
			return "", errors.New("the user has no email claim and the login_hint is not an e-mail address")
		}
	}
	ch, err := email.New(ec, log)
	if err != nil {
		return nil, fmt.Errorf("e-mail channel: %w", err)
	}
	return ch, nil
}
