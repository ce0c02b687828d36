// Package webhook is the webhook authentication channel: it tells an
// authentication-device service (an SMS gateway, a mobile app backend) about
// a new request by POSTing JSON, and that service later answers at
// POST /ciba/callback with the per-request bearer it was given. This is the
// shape of Keycloak's HTTP authentication channel.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
)

// Channel posts requests to one URL.
type Channel struct {
	url    string
	client *outbound.Client
}

// New returns a channel posting to url.
func New(url string, client *outbound.Client) *Channel {
	return &Channel{url: url, client: client}
}

// Message is the JSON body posted for each request. Its bearer is the
// callback token, sent in the Authorization header, never in the body.
type Message struct {
	// ID is the request's user-facing approval id (not the auth_req_id).
	ID             string    `json:"id"`
	ClientID       string    `json:"client_id"`
	ClientName     string    `json:"client_name"`
	LoginHint      string    `json:"login_hint"`
	Subject        string    `json:"subject"`
	Scope          string    `json:"scope"`
	BindingMessage string    `json:"binding_message,omitempty"`
	ACRValues      string    `json:"acr_values,omitempty"`
	ExpiresAt      time.Time `json:"expires_at"`
	// ApproveURL is the approval page link, when there is one.
	ApproveURL string `json:"approve_url,omitempty"`
	// CallbackURL is where to POST {"status":"approved"|"denied"}.
	CallbackURL string `json:"callback_url,omitempty"`
}

// Name implements ciba.Channel.
func (c *Channel) Name() string { return "webhook" }

// Send implements ciba.Channel.
func (c *Channel) Send(ctx context.Context, r *ciba.AuthRequest, client *ciba.Client, n ciba.Notice) error {
	body, err := json.Marshal(Message{
		ID:             r.ApprovalID,
		ClientID:       r.ClientID,
		ClientName:     client.Name,
		LoginHint:      r.LoginHint,
		Subject:        r.Subject,
		Scope:          strings.Join(r.Scopes, " "),
		BindingMessage: r.BindingMessage,
		ACRValues:      strings.Join(r.ACRValues, " "),
		ExpiresAt:      r.ExpiresAt.UTC(),
		ApproveURL:     n.ApproveURL,
		CallbackURL:    n.CallbackURL,
	})
	if err != nil {
		return fmt.Errorf("webhook: encode: %w", err)
	}
	return c.client.PostJSON(ctx, c.url, n.CallbackToken, body)
}
