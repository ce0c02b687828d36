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

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/consent"
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
	// ActsForUser is set when the client is a delegate acting on the
	// user's behalf (acts_for_user); the device should say so.
	ActsForUser bool `json:"acts_for_user,omitempty"`
	// AuthorizationDetails are the request's authorization_details (RFC
	// 9396) as checked and stored, canonical JSON: what the user must be
	// shown in full before approving. Absent when none.
	AuthorizationDetails json.RawMessage `json:"authorization_details,omitempty"`
	// AuthorizationDetailsDigest is their digest. The callback may send
	// it back as authorization_details_digest to state what the device
	// showed; an approval with another digest is refused.
	AuthorizationDetailsDigest string `json:"authorization_details_digest,omitempty"`
	// Text is what to tell the user, as plain text in the approval page's
	// words: who asks ("<client> acting on your behalf asks to …" for a
	// delegate), the binding message and every detail, one member per
	// line, amounts with their currency.
	Text string `json:"text"`
}

// Name implements ciba.Channel.
func (c *Channel) Name() string { return "webhook" }

// Send implements ciba.Channel.
func (c *Channel) Send(ctx context.Context, r *ciba.AuthRequest, client *ciba.Client, n ciba.Notice) error {
	name := client.Name
	if name == "" {
		name = client.ID
	}
	var details authzdetails.List
	if r.AuthzDetails != "" {
		var err error
		if details, err = authzdetails.FromJSON([]byte(r.AuthzDetails)); err != nil {
			return fmt.Errorf("webhook: authorization_details: %w", err)
		}
	}
	text := consent.Asks(name, r.Actor != "", len(details) > 0) + "\n"
	if r.BindingMessage != "" {
		text += "Check that " + name + " shows: " + r.BindingMessage + "\n"
	}
	if len(details) > 0 {
		text += "\n" + details.Text()
	}
	msg := Message{
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
		ActsForUser:    r.Actor != "",
		Text:           text,
	}
	if len(details) > 0 {
		msg.AuthorizationDetails = json.RawMessage(r.AuthzDetails)
		msg.AuthorizationDetailsDigest = r.DetailsDigest()
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("webhook: encode: %w", err)
	}
	return c.client.PostJSON(ctx, c.url, n.CallbackToken, body)
}
