package config

import (
	"net/url"
	"slices"
	"strings"
	"time"
)

// The channel names of channels.order.
const (
	ChannelWebPush = "webpush"
	ChannelEmail   = "email"
	ChannelWebhook = "webhook"
)

// WebPush configures the Web Push channel (docs/webpush.md): a browser in
// which the user allowed notifications from the approval pages gets each
// new request as a push notification (RFC 8030 delivery, RFC 8291
// encryption, RFC 8292 VAPID). The VAPID key pair is made on first use and
// kept in the store; subscriptions are kept there per user. Push services
// are outbound URLs a browser chose, so they are under outbound: (https
// only, no special-use address unless allowed).
type WebPush struct {
	// Enabled turns the channel on. Default off.
	Enabled bool `yaml:"enabled"`

	// Subject is the contact the push services see in each VAPID token
	// (RFC 8292 §2.1): a mailto: or https: URL. Required when enabled.
	Subject string `yaml:"subject"`

	// TTL is how long a push service keeps a notification for a device
	// that is offline (RFC 8030 §5.2). Default 5m; at most the request's
	// lifetime is asked for.
	TTL time.Duration `yaml:"ttl"`

	// Urgency is the RFC 8030 §5.3 urgency: very-low, low, normal or
	// high. Default high (a sign-in waits for the user).
	Urgency string `yaml:"urgency"`

	// Timeout bounds each POST to a push service. Default 10s.
	Timeout time.Duration `yaml:"timeout"`

	// MaxSubscriptionsPerUser bounds the browsers one user may subscribe;
	// the oldest subscription makes room for a new one. Default 5.
	MaxSubscriptionsPerUser int `yaml:"max_subscriptions_per_user"`
}

func (v *validator) webPushDefaults(w *WebPush) {
	if !w.Enabled {
		return
	}
	if w.TTL == 0 {
		w.TTL = 5 * time.Minute
	}
	if w.Urgency == "" {
		w.Urgency = "high"
	}
	if w.Timeout == 0 {
		w.Timeout = 10 * time.Second
	}
	if w.MaxSubscriptionsPerUser == 0 {
		w.MaxSubscriptionsPerUser = 5
	}
}

func (v *validator) checkWebPush(c *Config) {
	w := &c.Channels.WebPush
	if !w.Enabled {
		return
	}
	if u, err := url.Parse(w.Subject); w.Subject == "" || err != nil || (u.Scheme != "mailto" && u.Scheme != "https") || (u.Opaque == "" && u.Host == "") {
		v.fail("channels.webpush.subject", "required: a mailto: or https: URL push services can reach the operator at (RFC 8292 §2.1), e.g. mailto:ops@example.com")
	}
	if w.TTL <= 0 {
		v.fail("channels.webpush.ttl", "must be positive, got %s", w.TTL)
	}
	v.oneOf("channels.webpush.urgency", w.Urgency, "very-low", "low", "normal", "high")
	if w.Timeout <= 0 {
		v.fail("channels.webpush.timeout", "must be positive, got %s", w.Timeout)
	}
	if w.MaxSubscriptionsPerUser < 1 || w.MaxSubscriptionsPerUser > 100 {
		v.fail("channels.webpush.max_subscriptions_per_user", "must be from 1 to 100, got %d", w.MaxSubscriptionsPerUser)
	}
	if c.Upstream.Type != UpstreamLocal {
		v.fail("channels.webpush.enabled", "the Web Push channel needs the local upstream: a browser subscribes from the approval page after a password approval")
	}
}

// configured reports whether the channel named name is on.
func (ch *Channels) configured(name string) bool {
	switch name {
	case ChannelWebPush:
		return ch.WebPush.Enabled
	case ChannelEmail:
		return ch.Email.Host != ""
	case ChannelWebhook:
		return ch.Webhook.URL != ""
	}
	return false
}

// channelsDefaults sets Order, when empty, to the configured channels in
// the order webpush, email, webhook.
func (v *validator) channelsDefaults(ch *Channels) {
	if len(ch.Order) > 0 {
		return
	}
	for _, n := range []string{ChannelWebPush, ChannelEmail, ChannelWebhook} {
		if ch.configured(n) {
			ch.Order = append(ch.Order, n)
		}
	}
}

// checkOrder checks channels.order: known names, each once, each
// configured, and every configured channel listed.
func (v *validator) checkOrder(ch *Channels) {
	for i, n := range ch.Order {
		at := joinIndex("channels.order", i)
		switch {
		case n != ChannelWebPush && n != ChannelEmail && n != ChannelWebhook:
			v.fail(at, "must be webpush, email or webhook, got %q", n)
		case slices.Index(ch.Order, n) != i:
			v.fail(at, "%s is listed twice", n)
		case !ch.configured(n):
			v.fail(at, "%s is not configured (%s)", n, channelKey(n))
		}
	}
	for _, n := range []string{ChannelWebPush, ChannelEmail, ChannelWebhook} {
		if ch.configured(n) && !slices.Contains(ch.Order, n) {
			v.fail("channels.order", "%s is configured (%s) but not listed: add it, or remove its settings", n, channelKey(n))
		}
	}
}

func channelKey(n string) string {
	return map[string]string{ChannelWebPush: "channels.webpush.enabled", ChannelEmail: "channels.email.host", ChannelWebhook: "channels.webhook.url"}[n]
}

// ChannelNames is Order joined, for logs.
func (ch *Channels) ChannelNames() string { return strings.Join(ch.Order, ", ") }
