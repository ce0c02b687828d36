package ciba

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
)

// Config holds the protocol settings of the service.
type Config struct {
	// DefaultExpiry is the lifetime of a request without requested_expiry.
	DefaultExpiry time.Duration
	// MaxExpiry caps requested_expiry; a longer request is shortened to it
	// and expires_in says so.
	MaxExpiry time.Duration
	// Interval is the minimum poll interval announced to clients (CIBA §7.3).
	Interval time.Duration
	// SlowDownStep is added to a client's interval at each slow_down; CIBA
	// §11 asks for at least 5 seconds.
	SlowDownStep time.Duration
	// PollTolerance forgives a poll arriving this much before its interval
	// has passed (clock and network jitter).
	PollTolerance time.Duration
	// LongPoll holds a pending poll open up to this long until the result
	// lands (CIBA §7.3 allows it); 0 answers at once.
	LongPoll time.Duration
	// ExpiredGrace keeps a request this long after it expired, so a late
	// poll hears expired_token or invalid_grant rather than "unknown".
	ExpiredGrace time.Duration
	// BindingMessageMax is the longest binding_message in characters.
	BindingMessageMax int
	// ApproveURL returns the approval page link for an approval id, or ""
	// when there is no approval page.
	ApproveURL func(approvalID string) string
	// CallbackURL is the URL of POST /ciba/callback, told to channels.
	CallbackURL string
	// Scopes, when set, are the scopes granted to a client without its
	// own list of scopes: others it requests are dropped from the request
	// (the local issuer: the standard OpenID Connect scopes and those the
	// operator lists). Nil grants what is requested, for an upstream that
	// decides itself (oidc, ciba).
	Scopes []string
	// DeliveryTimeout bounds one delivery attempt (the channel's message to
	// the user, a ping or a push): the attempt is cancelled when it runs
	// out. The claim on an attempt (its lease) lasts this plus leaseMargin,
	// so that nobody else starts the same delivery while the attempt may
	// still be sending. Set it to at least the channel's and the notifier's
	// own timeouts; DefaultDeliveryTimeout when zero.
	DeliveryTimeout time.Duration
	// SoleDispatcher says that no other process's dispatcher (Run) works
	// on the store, as with the embedded store, which one process opens at
	// a time: a lease found when Run starts was left by a process that
	// died mid-attempt, and the message is sent again at once rather than
	// when the lease runs out. Leave it false for a store that instances
	// share.
	SoleDispatcher bool
	// AuthzDetails are the authorization_details types (RFC 9396) the
	// server accepts, with their schemas and bounds, as in force now (a
	// reload replaces them): each bc-authorize checks its list against
	// the registry in force when it starts. nil accepts none.
	AuthzDetails *authzdetails.Live
	// Issuer is the issuer identifier: a JSON login_hint of the iss_sub
	// format (target.go) is accepted when its iss is this one.
	Issuer string
	// LoginHintIssuers are the other issuers whose iss_sub login_hints are
	// accepted (the sub is then taken as the user's subject here too).
	LoginHintIssuers []string
}

// DefaultDeliveryTimeout is Config.DeliveryTimeout when zero: the
// notifier's and the webhook's usual timeouts fit in it.
const DefaultDeliveryTimeout = 10 * time.Second

// Deps are the outside parts the service works with.
type Deps struct {
	Store    Store
	Upstream Upstream
	// Minter issues tokens on approval by callback; nil where tokens come
	// from elsewhere (the oidc upstream).
	Minter Minter
	Sealer Sealer
	// Channel reaches the user; nil when no channel is configured.
	Channel Channel
	// Channels, when set, are the channels in the order they are tried
	// (Channel interface); Channel, if also set, goes first.
	Channels []Channel
	Notifier Notifier
	// Clients looks up a registered client by id (for deliveries).
	Clients func(id string) (*Client, bool)
	// CallbackKey is the HMAC key that makes callback tokens; it must stay
	// the same across restarts and instances (keep it in the store).
	CallbackKey []byte
	Logger      *slog.Logger
	// Relay, when set, runs each request at a CIBA upstream instead of
	// resolving the user here (the ciba upstream); Upstream is then unused.
	Relay Relay
	// UserLimit, when set, is asked once per request about to be accepted
	// for a user, keyed by a hash of the verified subject or, where there
	// is none yet, of the normalised name the hint gives (userkey.go):
	// false refuses it with access_denied, so that no client can flood a
	// user's authentication device ("push bombing"). The Allow of a
	// limit.Keyed fits (shared by all instances in Redis, or in memory). An
	// error allows the request (fail open) with a warning: an unreachable
	// store refuses the request anyway when it is stored.
	UserLimit func(ctx context.Context, user string, now time.Time) (ok bool, retryAfter time.Duration, err error)
	// HintSubject, when set, returns the name of the user a signed hint
	// (the id_token_hint, or else the login_hint_token, of a Hint) names,
	// read without verifying it, or "" when it cannot be read
	// (jose.UnverifiedHintName). It keys the per-user
	// limit of relayed requests, whose hints only the upstream verifies,
	// so that a client cannot escape the limit by minting a fresh token
	// for each request.
	HintSubject func(idTokenHint, loginHintToken string) string
	// UserCodeFailures, when set, guards the user_code check against
	// guessing: it is asked before the upstream checks the code the client
	// sent for user (the subject) and reserves one wrong try of that
	// client for that user (limit.ReserveAll on a per-(client, user) and a
	// per-user bucket fits). False answers access_denied without checking
	// the code (the user is locked out for this client, or for all); the
	// code is then checked, and settle is called with whether it was
	// wrong: only wrong codes count. An error allows the check (fail open)
	// with a warning.
	UserCodeFailures func(ctx context.Context, clientID, user string, now time.Time) (ok bool, retryAfter time.Duration, settle func(wrong bool), err error)
	// Observer counts deliveries; nil counts nothing.
	Observer Observer
	// Validator, when set, is the consumption-device validation hook:
	// asked about each request about to be accepted (after every other
	// check, before it is stored), except for clients with SkipValidation.
	Validator Validator
	// ValidationFailOpen accepts a request when the Validator gives no
	// verdict (down, slow, unusable answer); false (fail closed) refuses
	// it with temporarily_unavailable.
	ValidationFailOpen bool
	// Trace, when set, returns the W3C traceparent of the span ctx carries
	// (or ""): kept in each new request as TraceParent. With StartSpan it
	// keeps this package free of any tracing library.
	Trace func(ctx context.Context) string
	// StartSpan, when set, starts a span named name for background work on
	// a request, in the trace of traceParent (a new trace when ""), and
	// returns its context and the function that ends it with the work's
	// outcome.
	StartSpan func(ctx context.Context, name, traceParent string) (context.Context, func(err error))
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Service is the CIBA domain as the HTTP layer and cmd see it: a thin
// facade over its parts, each with one job and its own dependencies, which
// it builds from Deps and to which each exported method delegates:
//
//   - Acceptor (accept.go, validate.go): validates and creates
//     authentication requests;
//   - Poller (poll.go): answers polls (CIBA and the device grant);
//   - Decisions (decisions.go): records approvals and denials, and makes
//     callback tokens;
//   - Dispatcher (dispatch.go): delivers notices, expires and removes
//     requests, takes over deliveries of dead instances;
//   - Relayer (relay.go, device_relay.go): runs requests at a CIBA
//     upstream.
//
// The device grant (Device, device.go) is built on the same parts. What
// the parts share (settings, clock, logger, store, error mapping) is base
// (shared.go); the state machine itself is in request.go.
type Service struct {
	base
	sched      *scheduler
	poller     *Poller
	decisions  *Decisions
	relayer    *Relayer
	dispatcher *Dispatcher
	acceptor   *Acceptor
}

// NewService checks the configuration and returns a service. Call Run to
// start deliveries.
func NewService(cfg Config, d Deps) (*Service, error) {
	switch {
	case d.Store == nil || d.Upstream == nil && d.Relay == nil || d.Sealer == nil || d.Notifier == nil || d.Clients == nil:
		return nil, errors.New("ciba: Store, Upstream or Relay, Sealer, Notifier and Clients are required")
	case len(d.CallbackKey) < 32:
		return nil, errors.New("ciba: CallbackKey must be at least 32 bytes")
	case cfg.DefaultExpiry <= 0 || cfg.MaxExpiry < cfg.DefaultExpiry:
		return nil, fmt.Errorf("ciba: expiry %v must be positive and at most max %v", cfg.DefaultExpiry, cfg.MaxExpiry)
	case cfg.Interval < time.Second:
		return nil, fmt.Errorf("ciba: interval %v is below one second", cfg.Interval)
	case cfg.BindingMessageMax <= 0:
		return nil, errors.New("ciba: BindingMessageMax must be positive")
	case cfg.DeliveryTimeout < 0:
		return nil, fmt.Errorf("ciba: DeliveryTimeout %v is negative", cfg.DeliveryTimeout)
	}
	if cfg.DeliveryTimeout == 0 {
		cfg.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if cfg.SlowDownStep < 5*time.Second {
		cfg.SlowDownStep = 5 * time.Second
	}
	if cfg.ApproveURL == nil {
		cfg.ApproveURL = func(string) string { return "" }
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Trace == nil {
		d.Trace = func(context.Context) string { return "" }
	}
	if d.StartSpan == nil {
		d.StartSpan = func(ctx context.Context, _, _ string) (context.Context, func(error)) { return ctx, func(error) {} }
	}
	b := base{cfg: cfg, now: d.Now, log: d.Logger, store: d.Store}
	s := &Service{base: b, sched: newScheduler(),
		poller: newPoller(b, d.Sealer)}
	s.decisions = &Decisions{base: b, sealer: d.Sealer, minter: d.Minter, clients: d.Clients, callbackKey: d.CallbackKey, sched: s.sched}
	s.relayer = &Relayer{base: b, upstream: d.Relay, sealer: d.Sealer, clients: d.Clients, callbackKey: d.CallbackKey,
		observer: d.Observer, trace: d.Trace, startSpan: d.StartSpan, decisions: s.decisions, sched: s.sched}
	var channels []Channel
	if d.Channel != nil {
		channels = append(channels, d.Channel)
	}
	channels = append(channels, d.Channels...)
	s.dispatcher = &Dispatcher{base: b, channels: channels, notifier: d.Notifier, clients: d.Clients, sealer: d.Sealer,
		observer: d.Observer, startSpan: d.StartSpan, callbackToken: s.decisions.CallbackToken, relayer: s.relayer, sched: s.sched,
		sending: inflight{m: map[inflightKey]struct{}{}}}
	s.acceptor = &Acceptor{base: b, upstream: d.Upstream, hasChannel: len(channels) > 0, userLimitFn: d.UserLimit,
		hintSubject: d.HintSubject, userCodeFailures: d.UserCodeFailures, validator: d.Validator,
		validationFailOpen: d.ValidationFailOpen, observer: d.Observer, trace: d.Trace, sched: s.sched}
	if d.Relay != nil {
		s.acceptor.relayer = s.relayer
	}
	return s, nil
}

// Poller is the part of the service that answers polls.
func (s *Service) Poller() *Poller { return s.poller }

// Poll answers a CIBA token request (Poller.Poll).
func (s *Service) Poll(ctx context.Context, c *Client, authReqID string) ([]byte, error) {
	return s.poller.PollCert(ctx, c, authReqID, "")
}

// PollCert answers a CIBA token request over a connection presenting the
// client certificate cert (Poller.PollCert).
func (s *Service) PollCert(ctx context.Context, c *Client, authReqID, cert string) ([]byte, error) {
	return s.poller.PollCert(ctx, c, authReqID, cert)
}

// PollBound answers a CIBA token request with the keys it proved it holds:
// a client certificate and a DPoP key (Poller.PollBound).
func (s *Service) PollBound(ctx context.Context, c *Client, authReqID string, b Binding) ([]byte, error) {
	return s.poller.PollBound(ctx, c, authReqID, b)
}

// PollBoundHold is PollBound returning a poll to be held as a *Hold for
// the caller to hold (Poller.PollBoundHold).
func (s *Service) PollBoundHold(ctx context.Context, c *Client, authReqID string, b Binding) ([]byte, *Hold, error) {
	return s.poller.PollBoundHold(ctx, c, authReqID, b)
}

// ReleaseHolds answers every held long poll at once and holds no more
// (Poller.ReleaseHolds), for a shutdown.
func (s *Service) ReleaseHolds() { s.poller.ReleaseHolds() }

// Decisions is the part of the service that records the user's decisions.
func (s *Service) Decisions() *Decisions { return s.decisions }

// Approve records the user's approval of request id (Decisions.Approve).
func (s *Service) Approve(ctx context.Context, id string, authTime time.Time, tokens []byte) error {
	return s.decisions.Approve(ctx, id, authTime, tokens)
}

// ApproveBy is Approve recording who approved (Decisions.ApproveBy).
func (s *Service) ApproveBy(ctx context.Context, id string, authTime time.Time, tokens []byte, subject string) error {
	return s.decisions.ApproveBy(ctx, id, authTime, tokens, subject)
}

// ApproveByShown is ApproveBy recording the digest of the
// authorization_details the user was shown (Decisions.ApproveByShown).
func (s *Service) ApproveByShown(ctx context.Context, id string, authTime time.Time, tokens []byte, subject, shown string) error {
	return s.decisions.ApproveByShown(ctx, id, authTime, tokens, subject, shown)
}

// Deny records the refusal of request id (Decisions.Deny).
func (s *Service) Deny(ctx context.Context, id, reason string) error {
	return s.decisions.Deny(ctx, id, reason)
}

// ApproveWithMinter approves request r with tokens from the Minter
// (Decisions.ApproveWithMinter).
func (s *Service) ApproveWithMinter(ctx context.Context, r *AuthRequest) error {
	return s.decisions.ApproveWithMinter(ctx, r)
}

// ApproveShown approves request r with tokens from the Minter, recording
// the digest of the authorization_details the user was shown
// (Decisions.ApproveShown).
func (s *Service) ApproveShown(ctx context.Context, r *AuthRequest, shown string) error {
	return s.decisions.ApproveShown(ctx, r, shown)
}

// ApproveWithRecord approves request r with the Minter's tokens, the user
// having been shown the details of digest shown, keeping a signed approval
// record with the decision (Decisions.ApproveWithRecord).
func (s *Service) ApproveWithRecord(ctx context.Context, r *AuthRequest, shown string, record func(at time.Time) (string, error)) error {
	return s.decisions.ApproveWithRecord(ctx, r, shown, record)
}

// CallbackToken returns the callback bearer for an approval id
// (Decisions.CallbackToken).
func (s *Service) CallbackToken(approvalID string) string {
	return s.decisions.CallbackToken(approvalID)
}

// Callback applies the authentication device's answer (Decisions.Callback).
func (s *Service) Callback(ctx context.Context, token string, approved bool, reason, shown string) error {
	return s.decisions.Callback(ctx, token, approved, reason, shown)
}

// ForApproval returns the request behind an approval link and its client
// (Decisions.ForApproval).
func (s *Service) ForApproval(ctx context.Context, approvalID string) (*AuthRequest, *Client, error) {
	return s.decisions.ForApproval(ctx, approvalID)
}

// Relayer is the part of the service that runs requests at a CIBA upstream.
func (s *Service) Relayer() *Relayer { return s.relayer }

// RelayPingToken is the notification token given to the upstream for an
// approval id (Relayer.RelayPingToken).
func (s *Service) RelayPingToken(approvalID string) string {
	return s.relayer.RelayPingToken(approvalID)
}

// RelayPing handles the upstream's ping for a relayed request
// (Relayer.RelayPing).
func (s *Service) RelayPing(ctx context.Context, bearer, upstreamID string) error {
	return s.relayer.RelayPing(ctx, bearer, upstreamID)
}

// Dispatcher is the part of the service that delivers notices.
func (s *Service) Dispatcher() *Dispatcher { return s.dispatcher }

// Run delivers due messages until ctx is done (Dispatcher.Run).
func (s *Service) Run(ctx context.Context) error { return s.dispatcher.Run(ctx) }

// Acceptor is the part of the service that accepts authentication
// requests.
func (s *Service) Acceptor() *Acceptor { return s.acceptor }

// Authorize validates and stores an authentication request of client c
// (Acceptor.Authorize).
func (s *Service) Authorize(ctx context.Context, c *Client, p AuthParams) (*AuthResponse, error) {
	return s.acceptor.Authorize(ctx, c, p)
}
