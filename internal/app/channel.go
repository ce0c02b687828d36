package app

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"os"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/channel/email"
	"github.com/cibaproxy/cibaproxy/internal/channel/webhook"
	pushchannel "github.com/cibaproxy/cibaproxy/internal/channel/webpush"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/httpapi"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/tracing"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// notifyTimeout bounds one ping or push to a client.
const notifyTimeout = 10 * time.Second

// deliveryTimeout bounds one delivery attempt: the notifier's timeout, or
// the channels' own timeouts added up (an attempt may go through each of
// them in turn), whichever is longer, so the dispatcher's lease on an
// attempt outlasts whatever sends it makes.
func deliveryTimeout(cfg *config.Config) time.Duration {
	var sum time.Duration
	for _, n := range cfg.Channels.Order {
		switch n {
		case config.ChannelWebhook:
			sum += cfg.Channels.Webhook.Timeout
		case config.ChannelEmail:
			sum += cfg.Channels.Email.Timeout
		case config.ChannelWebPush:
			// One POST per subscribed browser, all at once.
			sum += cfg.Channels.WebPush.Timeout
		}
	}
	return max(notifyTimeout, sum)
}

// channels are the configured authentication channels in their order,
// and the Web Push parts the approval pages need (nil when it is off).
type channels struct {
	list    []ciba.Channel
	webPush *httpapi.WebPush
}

// buildChannels returns the configured authentication channels in the
// order of channels.order.
func buildChannels(ctx context.Context, cfg *config.Config, st ciba.Store, tr *tracing.Tracing, log *slog.Logger) (channels, error) {
	var out channels
	for _, n := range cfg.Channels.Order {
		var ch ciba.Channel
		var err error
		switch n {
		case config.ChannelWebhook:
			o := outbound.New(cfg.Channels.Webhook.Timeout)
			o.HTTPClient().Transport = tr.Transport("webhook", o.HTTPClient().Transport)
			ch = webhook.New(cfg.Channels.Webhook.URL, o)
		case config.ChannelEmail:
			ch, err = buildEmail(cfg, log)
		case config.ChannelWebPush:
			ch, out.webPush, err = buildWebPush(ctx, cfg, st, tr, log)
		}
		if err != nil {
			return channels{}, err
		}
		out.list = append(out.list, ch)
	}
	return out, nil
}

// buildWebPush returns the Web Push channel: the VAPID key from the store
// (made on first use), the subscriptions there, push services reached
// under the outbound policy (a browser chose them).
func buildWebPush(ctx context.Context, cfg *config.Config, st ciba.Store, tr *tracing.Tracing, log *slog.Logger) (ciba.Channel, *httpapi.WebPush, error) {
	w := cfg.Channels.WebPush
	vapid, err := webpush.LoadVAPID(ctx, st)
	if err != nil {
		return nil, nil, fmt.Errorf("web push channel: %w", err)
	}
	o := outbound.New(w.Timeout, outbound.Guard(cfg.Outbound.Policy()))
	o.HTTPClient().Transport = tr.Transport("webpush", o.HTTPClient().Transport)
	subs := &webpush.Subscriptions{Records: st, Max: w.MaxSubscriptionsPerUser}
	ch := &pushchannel.Channel{
		Subscriptions: subs,
		Sender:        &webpush.Sender{Client: o, VAPID: vapid, Subject: w.Subject, Urgency: w.Urgency},
		TTL:           w.TTL,
		Logger:        log,
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("web push channel: issuer: %w", err)
	}
	return ch, &httpapi.WebPush{PublicKey: vapid.PublicKey(), Subscriptions: subs, Records: st, Origin: u.Scheme + "://" + u.Host,
		Policy: cfg.Outbound.Policy()}, nil
}

// buildEmail returns the e-mail channel.
func buildEmail(cfg *config.Config, log *slog.Logger) (ciba.Channel, error) {
	e := cfg.Channels.Email
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
			return "", fmt.Errorf("%w: the user has no email claim and the login_hint is not an e-mail address", ciba.ErrUnreachable)
		}
	}
	ch, err := email.New(ec, log)
	if err != nil {
		return nil, fmt.Errorf("e-mail channel: %w", err)
	}
	return ch, nil
}
