package ciba

import (
	"context"
	"time"
)

// Client is what the domain needs to know of a registered client. How it
// authenticates and which keys it has are the business of the clientauth
// package; by the time the service sees a Client, it has been authenticated.
type Client struct {
	// ID is the client_id.
	ID string
	// Name is shown to the user on the authentication device.
	Name string
	// Mode is the registered backchannel_token_delivery_mode (CIBA §4).
	Mode DeliveryMode
	// NotificationEndpoint is the backchannel_client_notification_endpoint
	// for ping and push (CIBA §4); empty for poll.
	NotificationEndpoint string
	// RequireUserCode is backchannel_user_code_parameter (CIBA §4): the
	// client must send the user's user_code.
	RequireUserCode bool
	// Scopes the client may request; empty means any scope.
	Scopes []string
	// RequireBindingMessage refuses requests without a binding_message
	// (the FAPI-CIBA profile: the user must be able to tell the consumption
	// device's request from any other).
	RequireBindingMessage bool
}

// Hint is the user identification hint of a request (CIBA §7.1): exactly one
// of the three fields is set.
type Hint struct {
	LoginHint      string
	LoginHintToken string
	IDTokenHint    string
}

// User is a user as the upstream resolved it from a hint.
type User struct {
	// Subject is the stable subject identifier ("sub").
	Subject string
	// Display is how the user is shown in logs and on pages (a username,
	// never a secret).
	Display string
}

// Upstream resolves the user a client names and checks user codes. Each
// upstream kind (local, oidc, ciba) implements it. Errors it returns should be
// *Error values with the CIBA §13 code (unknown_user_id,
// expired_login_hint_token, invalid_request, invalid_user_code); anything
// else is answered as server_error.
type Upstream interface {
	// ResolveUser maps the hint to a user; client is the requesting client,
	// for hints that must have been issued to it.
	ResolveUser(ctx context.Context, client *Client, hint Hint) (User, error)
	// CheckUserCode verifies the user_code the client sent for user
	// (CIBA §7.1). It is called only when a code is present.
	CheckUserCode(ctx context.Context, user User, code string) error
	// SupportsUserCode reports whether CheckUserCode can verify codes; it is
	// published as backchannel_user_code_parameter_supported.
	SupportsUserCode() bool
}

// Minter issues tokens for an approved request; the local upstream has one.
type Minter interface {
	// Mint returns the token response for the approved request r, issued at now.
	Mint(ctx context.Context, r *AuthRequest, now time.Time) (*TokenResponse, error)
}

// TokenResponse is a successful token response (RFC 6749 §5.1, OIDC Core §3.1.3.3).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
}

// Sealer encrypts token responses at rest between approval and delivery
// (AES-256-GCM in package seal). The additional data binds a sealed value to
// its request, so it cannot be moved to another.
type Sealer interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
	Open(sealed, additionalData []byte) ([]byte, error)
}

// Channel reaches the user's authentication device for a new request
// (webhook, e-mail). Send must be idempotent enough to be retried: it is
// called again after a failure or a restart until it succeeds or the request
// expires.
type Channel interface {
	// Name is the channel's name in logs and metrics.
	Name() string
	// Send tells the user about request r. approveURL is the approval page
	// link; callbackToken is the per-request bearer for POST /ciba/callback.
	Send(ctx context.Context, r *AuthRequest, client *Client, n Notice) error
}

// Notice is what a Channel sends besides the request itself.
type Notice struct {
	// ApproveURL opens the approval page for the request.
	ApproveURL string
	// CallbackURL is where the authentication-device service answers.
	CallbackURL string
	// CallbackToken is the bearer the authentication-device service presents
	// at POST /ciba/callback. Secret: never log it.
	CallbackToken string
}

// Notifier delivers results to ping and push clients (CIBA §10.2, §10.3).
type Notifier interface {
	// Ping POSTs {"auth_req_id"} with the bearer token to endpoint.
	Ping(ctx context.Context, endpoint, bearer, authReqID string) error
	// Push POSTs body (a token response or push error with auth_req_id).
	Push(ctx context.Context, endpoint, bearer string, body []byte) error
}

// Observer is told about deliveries (package metrics).
type Observer interface {
	// ObserveDelivery counts one delivery attempt of kind (ping, push, or
	// the channel's name) and its outcome.
	ObserveDelivery(kind string, err error)
}

// Relay is an upstream that runs the CIBA flow itself (the ciba upstream):
// cibaproxy forwards each request to it and polls it for the result, so the
// clients' polls never reach it. Errors are *Error values with the code the
// client should see, or wrap ErrUnavailable when the upstream cannot be
// reached (anything else is answered as server_error).
type Relay interface {
	// Start forwards the request of client c. notificationToken is set
	// when the upstream will ping cibaproxy (SupportsPing).
	Start(ctx context.Context, c *Client, p AuthParams, notificationToken string) (RelayStarted, error)
	// Poll makes one token request at the upstream for its request id.
	Poll(ctx context.Context, c *Client, id string) (RelayResult, error)
	// SupportsPing reports whether the upstream pings cibaproxy for
	// client c's requests.
	SupportsPing(clientID string) bool
}

// RelayStarted is the upstream's answer to a relayed request.
type RelayStarted struct {
	// ID is the upstream's auth_req_id. Secret: never log it.
	ID string
	// ExpiresIn is the upstream request's lifetime.
	ExpiresIn time.Duration
	// Interval is the upstream's poll interval; zero means 5 s (CIBA §7.3).
	Interval time.Duration
}

// RelayResult is the upstream's answer to one poll: tokens, or pending.
type RelayResult struct {
	// Tokens is the upstream's token response (JSON) once issued.
	Tokens []byte
	// Pending: authorization_pending.
	Pending bool
	// SlowDown: slow_down, the interval must grow by 5 s.
	SlowDown bool
}

// DeviceRelay is a Relay whose upstream also serves the device
// authorization grant (RFC 8628): the device request is forwarded to the
// upstream's device_authorization_endpoint, the user verifies there, and
// cibaproxy polls the upstream's token endpoint with the device_code grant
// at the upstream's pace, exactly as it polls a relayed CIBA request. Errors
// are as for Relay.
type DeviceRelay interface {
	Relay
	// StartDevice forwards a device authorization request (RFC 8628 §3.1)
	// of client c with scope (space-separated, as the client sent it).
	StartDevice(ctx context.Context, c *Client, scope string) (DeviceRelayStarted, error)
	// PollDevice makes one device access token request (RFC 8628 §3.4) at
	// the upstream for its device_code. authorization_pending and
	// slow_down are results, not errors.
	PollDevice(ctx context.Context, c *Client, deviceCode string) (RelayResult, error)
}

// DeviceRelayStarted is the upstream's device authorization response
// (RFC 8628 §3.2).
type DeviceRelayStarted struct {
	// DeviceCode is the upstream's device_code. Secret: never log it.
	DeviceCode string
	// UserCode, VerificationURI and VerificationURIComplete are passed to
	// the client unchanged: the user verifies at the upstream.
	// VerificationURIComplete may be empty (it is optional).
	UserCode, VerificationURI, VerificationURIComplete string
	// ExpiresIn is the lifetime of the upstream's device_code.
	ExpiresIn time.Duration
	// Interval is the upstream's poll interval; zero means 5 s
	// (RFC 8628 §3.2).
	Interval time.Duration
}
