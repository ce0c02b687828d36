// Package webpush is the Web Push authentication channel: each new request
// is sent as a push notification to every browser its user subscribed
// from the approval pages (docs/webpush.md). The protocol is package
// internal/webpush's; this package decides what the notification says and
// what a push service's answer means for the channel order.
package webpush

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// Channel sends requests as push notifications.
type Channel struct {
	// Subscriptions are the users' browsers.
	Subscriptions *webpush.Subscriptions
	// Sender posts the notifications.
	Sender *webpush.Sender
	// TTL is how long a push service keeps a notification for an offline
	// browser; never longer than the request lives.
	TTL time.Duration
	// Logger logs the subscriptions removed.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Notification is the JSON the service worker gets (and shows): the
// client's name and binding message, and the approval page a tap opens.
// It travels encrypted end to end (RFC 8291): the push service cannot
// read the link.
type Notification struct {
	Title          string    `json:"title"`
	Body           string    `json:"body"`
	URL            string    `json:"url"`
	ClientName     string    `json:"client_name"`
	BindingMessage string    `json:"binding_message,omitempty"`
	ExpiresAt      time.Time `json:"expires_at"`
	// Tag lets a later notification of the same request replace this one:
	// a hash of the approval id, which is itself a secret.
	Tag string `json:"tag"`
}

// Name implements ciba.Channel.
func (c *Channel) Name() string { return "webpush" }

// Send implements ciba.Channel. A user with no subscription is
// ErrUnreachable (the next channel is tried). Each subscription the push
// service says is gone (404, 410) is removed. Any browser taking the
// notification is success; otherwise a failure worth another try (5xx,
// 429, the network) is returned as it is, and refusals only are Permanent.
func (c *Channel) Send(ctx context.Context, r *ciba.AuthRequest, client *ciba.Client, n ciba.Notice) error {
	subs, err := c.Subscriptions.List(ctx, r.Subject)
	if err != nil {
		return err
	}
	if len(subs) == 0 {
		return fmt.Errorf("webpush: %w: the user has subscribed no browser", ciba.ErrUnreachable)
	}
	payload, err := json.Marshal(c.notification(r, client, n))
	if err != nil {
		return fmt.Errorf("webpush: encode: %w", err)
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	ttl := min(c.TTL, r.ExpiresAt.Sub(now()))
	// Every browser at once, so that one attempt takes one push's time.
	errs := make([]error, len(subs))
	var wg sync.WaitGroup
	for i, sub := range subs {
		wg.Go(func() { errs[i] = c.Sender.Send(ctx, sub, payload, ttl) })
	}
	wg.Wait()
	var retry, refused error
	delivered := 0
	for i, err := range errs {
		switch {
		case err == nil:
			delivered++
		case errors.Is(err, webpush.ErrGone):
			refused = err
			if rerr := c.Subscriptions.Remove(ctx, r.Subject, subs[i].Endpoint); rerr != nil {
				c.Logger.WarnContext(ctx, "webpush: remove a gone subscription", slog.Any("error", rerr))
			} else {
				c.Logger.InfoContext(ctx, "webpush: subscription removed: the push service says it is gone",
					slog.String("subject", r.Subject), slog.Any("error", err))
			}
		case errors.Is(err, webpush.ErrRefused):
			refused = err
		default:
			retry = err
		}
	}
	switch {
	case delivered > 0:
		return nil
	case retry != nil:
		return retry
	default:
		return ciba.Permanent(fmt.Errorf("webpush: no browser of the user took the notification: %w", refused))
	}
}

// maxBinding bounds the binding message in the notification, so that
// the payload fits one record whatever the configuration allows.
const maxBinding = 1024

func (c *Channel) notification(r *ciba.AuthRequest, client *ciba.Client, n ciba.Notice) Notification {
	binding := r.BindingMessage
	if len(binding) > maxBinding {
		binding = binding[:maxBinding]
		for !utf8.ValidString(binding) {
			binding = binding[:len(binding)-1]
		}
	}
	body := "Tap to approve or deny."
	if binding != "" {
		body = binding + " — tap to approve or deny."
	}
	return Notification{
		Title: "Sign in to " + client.Name + "?", Body: body, URL: n.ApproveURL,
		ClientName: client.Name, BindingMessage: binding, ExpiresAt: r.ExpiresAt.UTC(), Tag: tag(r.ApprovalID),
	}
}

func tag(approvalID string) string {
	sum := sha256.Sum256([]byte("cibaproxy webpush tag\x00" + approvalID))
	return hex.EncodeToString(sum[:8])
}
