package ciba

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
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
	// CertBoundAccessTokens is tls_client_certificate_bound_access_tokens
	// (RFC 8705 §3.4): the client's requests are bound to the client
	// certificate presented with them, redeemed only over a connection
	// presenting the same certificate, and its access tokens carry that
	// certificate's thumbprint (cnf.x5t#S256, RFC 8705 §3.1).
	CertBoundAccessTokens bool
	// DPoPBoundAccessTokens is dpop_bound_access_tokens (RFC 9449 §5.2):
	// every token request of the client must carry a DPoP proof, and its
	// access tokens are bound to the proof's key (cnf.jkt).
	DPoPBoundAccessTokens bool
	// SkipValidation exempts the client's requests from the
	// consumption-device validation hook (Validator), e.g. an internal
	// client the operator already trusts.
	SkipValidation bool
	// AuthzDetailsTypes are the authorization_details types (RFC 9396) the
	// client may send; empty: none.
	AuthzDetailsTypes []string
	// Introspection lets the client call the token introspection endpoint
	// (RFC 7662): a resource server that checks the local issuer's tokens.
	Introspection bool
	// ActsForUser marks a delegate (an agent acting for the user): its
	// requests record it as the actor (AuthRequest.Actor), the user is
	// told "<client> acting on your behalf asks to …", and its access
	// tokens carry act (RFC 8693 §4.1).
	ActsForUser bool
	// Resources are the resource indicators (RFC 8707) and audiences the
	// client may ask for with resource or audience; empty: none.
	Resources []string
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

// DetailsChecker is implemented by an upstream that must itself carry a
// request's authorization_details (RFC 9396) to the provider (the oidc
// upstream): it refuses at bc-authorize details the provider cannot take,
// rather than let them be dropped.
type DetailsChecker interface {
	// CheckAuthzDetails returns an *Error (invalid_authorization_details)
	// when the provider cannot be sent details (canonical JSON) for
	// client c; an error wrapping ErrUnavailable when that cannot be
	// known now.
	CheckAuthzDetails(ctx context.Context, c *Client, details string) error
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
	// AuthorizationDetails are the authorization_details granted (RFC
	// 9396 §7), as JSON; absent when none were requested.
	AuthorizationDetails RawJSON `json:"authorization_details,omitempty"`
}

// RawJSON is a JSON value kept as its text and written as it is, like
// json.RawMessage, but a string, so that the structs holding it stay
// comparable. The empty RawJSON is left out with omitempty.
type RawJSON string

// MarshalJSON returns the text, or null for the empty RawJSON.
func (r RawJSON) MarshalJSON() ([]byte, error) {
	if r == "" {
		return []byte("null"), nil
	}
	return []byte(r), nil
}

// UnmarshalJSON keeps the value's text.
func (r *RawJSON) UnmarshalJSON(b []byte) error {
	if !json.Valid(b) {
		return errors.New("ciba: RawJSON: not valid JSON")
	}
	*r = RawJSON(b)
	return nil
}

// Sealer encrypts token responses at rest between approval and delivery
// (AES-256-GCM in package seal). The additional data binds a sealed value to
// its request, so it cannot be moved to another.
type Sealer interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
	Open(sealed, additionalData []byte) ([]byte, error)
}

// Channel reaches the user's authentication device for a new request
// (Web Push, e-mail, webhook). Send must be idempotent enough to be
// retried: it is called again after a failure or a restart until it
// succeeds or the request expires.
//
// Several channels may be configured, in order: the dispatcher sends
// through the first, and goes on to the next when Send's error wraps
// ErrUnreachable (this channel has no way to reach this user: no push
// subscription, no e-mail address) or is Permanent (sending again through
// this channel will not help: the push service forgot the subscription,
// the mail server refused the address). Any other error ends the attempt,
// which is made again, from the first channel, after a backoff.
type Channel interface {
	// Name is the channel's name in logs and metrics.
	Name() string
	// Send tells the user about request r. approveURL is the approval page
	// link; callbackToken is the per-request bearer for POST /ciba/callback.
	Send(ctx context.Context, r *AuthRequest, client *Client, n Notice) error
}

// ErrUnreachable is wrapped by a Channel's error when the channel has no
// way to reach the request's user: the next channel is tried.
var ErrUnreachable = errors.New("the channel cannot reach this user")

// PermanentError marks a Channel's failure that sending again through the
// same channel will not get over: the next channel is tried.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }

// Unwrap returns the failure.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as a PermanentError; nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Validator is the consumption-device validation hook (the seed's step 3):
// a policy the operator runs, asked about each backchannel authentication
// request that passed every other check, after the client authenticated
// and before anything is stored or the user is reached. It answers allow
// or deny; it need not re-check the request's parameters (the service has
// validated them) and must not change anything the service holds.
type Validator interface {
	// Validate returns the policy's verdict on v. An error means no verdict
	// could be had (the hook is down, too slow, or answered something
	// unusable): the service then applies its failure policy
	// (Deps.ValidationFailOpen). Errors must not carry secrets.
	Validate(ctx context.Context, v Validation) (Verdict, error)
}

// Validation is what the validation hook is told about a request: what a
// policy needs to decide, and no credential (neither login_hint_token nor
// id_token_hint, user_code or client_notification_token).
type Validation struct {
	// RequestID correlates the call with cibaproxy's log lines and the
	// X-Request-Id answered to the client; "" when unknown.
	RequestID string
	// ClientID is the authenticated client.
	ClientID string
	// ClientAddr is the consumption device's address (behind trusted
	// proxies, the one they forward); invalid when unknown.
	ClientAddr netip.Addr
	// HintType names the hint the client used: login_hint,
	// login_hint_token or id_token_hint; "" for a device request.
	HintType string
	// Grant is GrantDevice for a device authorization request (RFC 8628),
	// which names no user; "" for a backchannel authentication request.
	Grant string
	// Subject is the user the hint resolved to; "" when the request is
	// relayed to a CIBA upstream, which resolves it itself.
	Subject string
	// LoginHint is the client's login_hint, sent only when there is no
	// Subject (a relayed request): it may be personal data.
	LoginHint string
	// Scopes, ACRValues and BindingMessage are the request's, validated.
	Scopes, ACRValues []string
	BindingMessage    string
	// RequestedExpiry is the client's requested_expiry; 0 when absent.
	RequestedExpiry time.Duration
	// AuthzDetails are the request's authorization_details (RFC 9396) as
	// checked, canonical JSON; "" for none. The hook sees what the user
	// will be asked to approve.
	AuthzDetails string
	// ActsForUser is set for a delegate client (Client.ActsForUser).
	ActsForUser bool
}

// GrantDevice is Validation.Grant of a device authorization request.
const GrantDevice = "device_authorization"

// Verdict is the validation hook's answer.
type Verdict struct {
	// Allow accepts the request; false refuses it with access_denied.
	Allow bool
	// Reason says why a request is refused; it becomes the client's
	// error_description (sanitised and shortened). May be empty.
	Reason string
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
