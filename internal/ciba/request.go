package ciba

import (
	"slices"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
)

// Status is the state of an authentication request. The only transitions are
//
//	pending → approved → redeemed
//	pending → denied
//	pending → expired (recorded only for ping and push clients, which must be told)
//
// and they are made by the methods below, inside a Store compare-and-set.
// Expiry is otherwise derived from ExpiresAt: a request past it answers
// expired_token whatever its status.
type Status string

// The states of an authentication request.
const (
	StatusPending  Status = "pending"
	StatusApproved Status = "approved"
	StatusDenied   Status = "denied"
	StatusExpired  Status = "expired"
	StatusRedeemed Status = "redeemed"
)

// Kind is the grant an AuthRequest belongs to.
type Kind string

// The grants that share the AuthRequest state machine.
const (
	// KindCIBA is a backchannel authentication request (CIBA Core).
	KindCIBA Kind = ""
	// KindDevice is a device authorization request (RFC 8628): its ID is
	// the device_code, and no user is known until one approves it.
	KindDevice Kind = "device"
)

// idParam is the parameter that carries the ID of a request of grant k to
// the token endpoint, as the token endpoint's errors name it: device_code
// for a device request (RFC 8628 §3.4), else auth_req_id (CIBA §10.1).
func (k Kind) idParam() string {
	if k == KindDevice {
		return "device_code"
	}
	return "auth_req_id"
}

// DeliveryMode is how the client receives the result (CIBA §5).
type DeliveryMode string

// The three CIBA token delivery modes.
const (
	ModePoll DeliveryMode = "poll"
	ModePing DeliveryMode = "ping"
	ModePush DeliveryMode = "push"
)

// Valid reports whether m is one of the three modes.
func (m DeliveryMode) Valid() bool {
	return m == ModePoll || m == ModePing || m == ModePush
}

// AuthRequest is one backchannel authentication request, from the client's
// bc-authorize call until its tokens are delivered or it expires. It is the
// unit of storage: the store keeps it as a whole and changes it only by
// compare-and-set.
type AuthRequest struct {
	// ID is the auth_req_id given to the client (CIBA §7.3): 192 bits of
	// randomness, so it cannot be guessed.
	ID string `json:"id"`
	// ApprovalID is the user-facing id used in approval links. It is a
	// separate random value so that the auth_req_id, which a client presents
	// at the token endpoint, never travels to the authentication device.
	ApprovalID string `json:"approval_id"`

	ClientID string       `json:"client_id"`
	Mode     DeliveryMode `json:"mode"`
	// Kind is the grant the request belongs to: KindCIBA (the zero value)
	// or KindDevice (RFC 8628). Each grant's endpoints refuse the other's
	// requests, so a device_code is never accepted as an auth_req_id.
	Kind Kind `json:"kind,omitempty"`
	// Subject is the user the client named, as resolved by the upstream.
	Subject string `json:"subject"`
	// LoginHint is the hint as the client gave it (for display and the
	// upstream), whichever of the three hint parameters it came in.
	LoginHint      string   `json:"login_hint,omitempty"`
	Scopes         []string `json:"scopes"`
	ACRValues      []string `json:"acr_values,omitempty"`
	BindingMessage string   `json:"binding_message,omitempty"`
	// UserCodeHash is the SHA-256 of the user_code, kept where the
	// authentication device should confirm it; never the code itself.
	UserCodeHash string `json:"user_code_hash,omitempty"`
	// NotificationToken is the client_notification_token used as the bearer
	// of ping and push callbacks (CIBA §10.2, §10.3). It must be kept in
	// usable form because it is sent back to the client.
	NotificationToken string `json:"notification_token,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Interval is the minimum poll interval first announced (CIBA §7.3).
	Interval time.Duration `json:"interval"`

	Status Status `json:"status"`
	// DecidedAt is when the request left pending.
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// AuthTime is when the user authenticated, for the ID token's auth_time.
	AuthTime time.Time `json:"auth_time,omitzero"`
	// DenyReason is a human-readable reason for a denial, sent as the
	// error_description of access_denied. No secrets.
	DenyReason string `json:"deny_reason,omitempty"`
	// Result is the sealed (encrypted) token response, present only between
	// approval and delivery.
	Result []byte `json:"result,omitempty"`

	// UserNotice tracks the authentication channel's message to the user.
	UserNotice Delivery `json:"user_notice"`
	// ClientNotice tracks the ping or push callback to the client.
	ClientNotice Delivery `json:"client_notice"`

	// Relay is the request's counterpart at a CIBA upstream (the ciba
	// upstream kind); zero otherwise.
	Relay RelayState `json:"relay,omitzero"`

	// TraceParent is the W3C traceparent of the request that created it
	// (https://www.w3.org/TR/trace-context/#traceparent-header), so that the
	// background work done for it (channel, upstream polls, delivery)
	// joins that trace, also on another instance or after a restart.
	// Empty when tracing is off. Ids only: no secret.
	TraceParent string `json:"trace_parent,omitempty"`

	// CertThumbprint is the x5t#S256 (RFC 8705 §3.1) of the client
	// certificate the request was made with, when the client's access
	// tokens are certificate-bound (Client.CertBoundAccessTokens); ""
	// otherwise. The tokens minted for the request carry it in cnf, and
	// they are handed out only over a connection presenting the same
	// certificate (RFC 8705 §3), so a stolen auth_req_id is of no use
	// without the certificate's private key. Not a secret.
	CertThumbprint string `json:"cert_thumbprint,omitempty"`

	// DPoPJKT is the JWK SHA-256 thumbprint of the DPoP key the request
	// was bound to at bc-authorize or device authorization (RFC 9449 §10);
	// "" otherwise. The tokens
	// minted for the request carry it in cnf.jkt (RFC 9449 §6.1), and they
	// are handed out only to a token request with a DPoP proof of that
	// key, so a stolen auth_req_id is of no use without the private key.
	// Not a secret.
	DPoPJKT string `json:"dpop_jkt,omitempty"`

	// PublicClient is set for a device request of a public client, which
	// authenticated by its client_id alone (RFC 8628 §3.1): with a DPoP
	// key (DPoPJKT), its refresh tokens are bound to the key as well,
	// since no client authentication protects them (RFC 9449 §5).
	PublicClient bool `json:"public_client,omitempty"`

	// AuthzDetails is the request's authorization_details (RFC 9396) as
	// checked at bc-authorize, in canonical JSON
	// (authzdetails.List.Canonical): what the user is asked to approve
	// and the tokens carry. "" when the client sent none. Kept as a string
	// so that a store cannot reformat it (its digest is what the user
	// approved).
	AuthzDetails string `json:"authorization_details,omitempty"`

	// ApprovedDetails is the digest (authzdetails.DigestOf: SHA-256 of the
	// canonical JSON, base64url) of the authorization_details the user
	// approved, recorded with the decision in the same compare-and-set:
	// the approval page posts the digest of the list it showed, and the
	// approval is refused unless it is the digest of AuthzDetails, and the
	// tokens minted for it carry exactly that list. "" when the request
	// has no details or was not approved here (a relayed request is
	// approved at the upstream).
	ApprovedDetails string `json:"approved_details_digest,omitempty"`

	// Actor is the client_id of a delegate client (Client.ActsForUser)
	// acting for the user, recorded at bc-authorize so that what the user
	// is told and what the tokens say come from the same request: the
	// access token names it in act (RFC 8693 §4.1). "" otherwise.
	Actor string `json:"actor,omitempty"`

	// ApprovalRecord is the signed approval record of a request approved
	// with a passkey: a JWS, signed with cibaproxy's signing key, saying
	// who approved what, when and with which credential (package passkey).
	// Written in the same compare-and-set as the approval; "" for other
	// approvals. Not a secret.
	ApprovalRecord string `json:"approval_record,omitempty"`
	// Resources are the resource indicators (RFC 8707) and audience the
	// client asked for, checked against its list: the access token's aud.
	// Nil for none (the token's audience is then the issuer's default).
	Resources []string `json:"resources,omitempty"`
}

// DetailsDigest returns the digest of the request's authorization_details
// (authzdetails.DigestOf of the stored canonical JSON); "" when it has
// none.
func (r *AuthRequest) DetailsDigest() string {
	if r.AuthzDetails == "" {
		return ""
	}
	return authzdetails.DigestOf([]byte(r.AuthzDetails))
}

// RelayState tracks a request relayed to a CIBA upstream: cibaproxy polls the
// upstream at the upstream's pace (or once, when it pings), whatever the
// client does, and keeps the result for the client.
type RelayState struct {
	// ID is the upstream's auth_req_id, sealed: together with the client's
	// credentials at the upstream it fetches the tokens.
	ID []byte `json:"id,omitempty"`
	// Interval is the upstream's poll interval, grown by its slow_down.
	Interval time.Duration `json:"interval,omitempty"`
	// Ping is set when the upstream pings cibaproxy when the result is
	// ready; NextPoll stays zero until it does.
	Ping bool `json:"ping,omitempty"`
	// NextPoll is when the upstream is polled next, zero while none is
	// scheduled. A claimed poll moves it forward first, which is the lease
	// that keeps other workers and instances from polling meanwhile.
	NextPoll time.Time `json:"next_poll,omitzero"`
	// Polls counts the token requests made to the upstream.
	Polls int `json:"polls,omitempty"`
	// Failures counts consecutive polls that got no answer, for backoff.
	Failures int `json:"failures,omitempty"`
	// LastError is the last failure, for operators. No secrets.
	LastError string `json:"last_error,omitempty"`
}

// Active reports whether the request is relayed.
func (r RelayState) Active() bool { return len(r.ID) > 0 }

// Delivery tracks an outbound message that must be sent once, with retries,
// surviving a restart of the server.
type Delivery struct {
	// Due is set when the message must be sent.
	Due bool `json:"due,omitempty"`
	// Done is set once it was accepted by the receiver, or abandoned.
	Done bool `json:"done,omitempty"`
	// Attempts counts the attempts made.
	Attempts int `json:"attempts,omitempty"`
	// NextAttempt is the earliest time of the next attempt.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// LastError is the last failure, for operators. No secrets.
	LastError string `json:"last_error,omitempty"`
	// Tries are the latest sends through each channel, oldest first, at
	// most MaxTries: which channel was tried, when, and how it went. Only
	// the user's message has them (one entry per channel tried in an
	// attempt, so a fallback shows as several entries).
	Tries []Try `json:"tries,omitempty"`
}

// MaxTries bounds Delivery.Tries: older entries are dropped.
const MaxTries = 16

// Try is one send of the user's message through one channel.
type Try struct {
	// At is when the send ended.
	At time.Time `json:"at"`
	// Channel is the channel's name (webpush, email, webhook).
	Channel string `json:"channel"`
	// Error is why it failed; empty when the channel accepted the message.
	// No secrets.
	Error string `json:"error,omitempty"`
	// Outcome is "delivered", "unreachable" (the channel has no way to
	// reach this user: skipped), "permanent" (a failure the same channel
	// will not get over: the next one is tried) or "failed" (retried
	// later).
	Outcome string `json:"outcome"`
}

// addTries appends tries to d.Tries, keeping the last MaxTries.
func (d *Delivery) addTries(tries []Try) {
	d.Tries = append(d.Tries, tries...)
	if n := len(d.Tries); n > MaxTries {
		d.Tries = append([]Try(nil), d.Tries[n-MaxTries:]...)
	}
}

// Pending reports whether the message still has to be sent.
func (d Delivery) Pending() bool { return d.Due && !d.Done }

// Expired reports whether the request is past its lifetime at now.
func (r *AuthRequest) Expired(now time.Time) bool { return !now.Before(r.ExpiresAt) }

// Clone returns a deep copy, so updaters can work on a copy.
func (r *AuthRequest) Clone() *AuthRequest {
	c := *r
	c.Scopes = append([]string(nil), r.Scopes...)
	c.ACRValues = append([]string(nil), r.ACRValues...)
	c.Result = append([]byte(nil), r.Result...)
	if r.Result == nil {
		c.Result = nil
	}
	if r.Relay.ID != nil {
		c.Relay.ID = append([]byte(nil), r.Relay.ID...)
	}
	c.UserNotice.Tries = slices.Clone(r.UserNotice.Tries)
	c.ClientNotice.Tries = slices.Clone(r.ClientNotice.Tries)
	return &c
}

// transition errors: returned by the methods below when the current state
// does not allow the change. They are protocol errors so callers can answer
// them directly.
func notPending(r *AuthRequest) *Error {
	switch r.Status {
	case StatusApproved, StatusRedeemed:
		return Errorf(CodeInvalidRequest, "the request was already approved")
	case StatusDenied:
		return Errorf(CodeAccessDenied, "the request was already denied")
	default:
		return Errorf(CodeExpiredToken, "the request has expired")
	}
}

// Approve moves a pending request to approved with its sealed token response.
func (r *AuthRequest) Approve(now, authTime time.Time, sealed []byte) error {
	if err := r.decide(now, StatusApproved); err != nil {
		return err
	}
	r.AuthTime = authTime
	r.Result = sealed
	return nil
}

// Deny moves a pending request to denied.
func (r *AuthRequest) Deny(now time.Time, reason string) error {
	if err := r.decide(now, StatusDenied); err != nil {
		return err
	}
	r.DenyReason = reason
	return nil
}

// decide moves a pending request that has not expired to the decision
// status at now (settle).
func (r *AuthRequest) decide(now time.Time, status Status) error {
	if r.Status != StatusPending {
		return notPending(r)
	}
	if r.Expired(now) {
		return Errorf(CodeExpiredToken, "the request has expired")
	}
	r.settle(now, status)
	return nil
}

// settle ends a pending request in status at now and makes its client's
// notice due unless it polls.
func (r *AuthRequest) settle(now time.Time, status Status) {
	r.Status = status
	r.DecidedAt = now
	if r.Mode != ModePoll {
		r.ClientNotice = Delivery{Due: true, NextAttempt: now}
	}
}

// Expire records the expiry of a pending request, so that a ping or push
// client can be told (CIBA §10.2, §12). Poll clients learn it by polling.
func (r *AuthRequest) Expire(now time.Time) error {
	if r.Status != StatusPending || !r.Expired(now) {
		return Errorf(CodeInvalidRequest, "the request is not pending past its expiry")
	}
	r.settle(now, StatusExpired)
	return nil
}

// CheckCert answers invalid_grant unless a request bound to a client
// certificate is asked for over a connection presenting the same one:
// presented is that connection's x5t#S256, "" for none (RFC 8705 §3). An
// unbound request accepts any. It changes nothing, so the holder of the
// right certificate can still redeem the request.
// Its error names the request's ID by the parameter of its grant
// (Kind.idParam).
func (r *AuthRequest) CheckCert(presented string) error {
	return checkCertOf(r.Kind, r.CertThumbprint, presented)
}

// checkCertOf is CheckCert for a request of grant k bound to the
// certificate whose thumbprint is bound ("" for none).
func checkCertOf(k Kind, bound, presented string) error {
	if bound == "" || bound == presented {
		return nil
	}
	return certMismatch(k, presented)
}

// certMismatch is the answer to a poll of a request of grant k bound to another
// certificate than the one presented (presented: its thumbprint, "" for
// none).
func certMismatch(k Kind, presented string) error {
	if presented == "" {
		return tokenError(CodeInvalidGrant, "the %s is bound to the client certificate it was requested with; present that certificate on this connection (RFC 8705 §3)", k.idParam())
	}
	return tokenError(CodeInvalidGrant, "the %s is bound to another client certificate than the one presented; present the certificate it was requested with (RFC 8705 §3)", k.idParam())
}

// Redeem takes the sealed token response out of an approved request and marks
// it redeemed, so that it is handed out exactly once. It answers the token
// endpoint's error for every other state (CIBA §11, RFC 8628 §3.5), expiry
// first, naming the ID by the parameter of r's grant (Kind.idParam).
func (r *AuthRequest) Redeem(now time.Time) ([]byte, error) {
	if r.Status == StatusRedeemed {
		return nil, tokenError(CodeInvalidGrant, "the %s was already used", r.Kind.idParam())
	}
	if r.Expired(now) || r.Status == StatusExpired {
		return nil, tokenError(CodeExpiredToken, "the %s has expired", r.Kind.idParam())
	}
	switch r.Status {
	case StatusPending:
		return nil, ErrAuthorizationPending
	case StatusDenied:
		desc := "the user denied the request"
		if r.DenyReason != "" {
			desc = r.DenyReason
		}
		return nil, tokenError(CodeAccessDenied, "%s", desc)
	}
	sealed := r.Result
	r.Status = StatusRedeemed
	r.Result = nil
	return sealed, nil
}

// tokenError is a token endpoint error: every code there is answered with 400
// except invalid_client (RFC 6749 §5.2, CIBA §11).
func tokenError(code ErrorCode, format string, args ...any) *Error {
	e := Errorf(code, format, args...)
	if code != CodeInvalidClient {
		e.Status = 400
	}
	return e
}

// ErrAuthorizationPending is the answer to a poll of a pending request
// (CIBA §11). It is one shared value without a description, because it is
// the answer the poll hot path gives most: {"error":"authorization_pending"}.
var ErrAuthorizationPending = (&Error{Code: CodeAuthorizationPending, Status: 400}).Shared()
