package ciba

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
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
	Channel  Channel
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

// Service is the CIBA domain: it validates and creates requests, answers
// polls, records the user's decision and delivers results. Handlers call it;
// the state machine itself is in request.go.
type Service struct {
	base
	d          Deps
	sched      *scheduler
	poller     *Poller
	decisions  *Decisions
	relayer    *Relayer
	dispatcher *Dispatcher
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
	s := &Service{base: b, d: d, sched: newScheduler(),
		poller: newPoller(b, d.Sealer)}
	s.decisions = &Decisions{base: b, sealer: d.Sealer, minter: d.Minter, clients: d.Clients, callbackKey: d.CallbackKey, sched: s.sched}
	s.relayer = &Relayer{base: b, upstream: d.Relay, sealer: d.Sealer, clients: d.Clients, callbackKey: d.CallbackKey,
		observer: d.Observer, trace: d.Trace, startSpan: d.StartSpan, decisions: s.decisions, sched: s.sched}
	s.dispatcher = &Dispatcher{base: b, channel: d.Channel, notifier: d.Notifier, clients: d.Clients, sealer: d.Sealer,
		observer: d.Observer, startSpan: d.StartSpan, callbackToken: s.decisions.CallbackToken, relayer: s.relayer, sched: s.sched,
		sending: inflight{m: map[inflightKey]struct{}{}}}
	return s, nil
}

// AuthResponse is the successful authentication response (CIBA §7.3).
type AuthResponse struct {
	AuthReqID string `json:"auth_req_id"`
	ExpiresIn int64  `json:"expires_in"`
	Interval  int64  `json:"interval,omitempty"`
}

// Authorize validates an authentication request of the authenticated client
// c (CIBA §7.1, §7.2), stores it durably and starts reaching the user.
// Errors are *Error values with the codes of CIBA §13.
func (s *Service) Authorize(ctx context.Context, c *Client, p AuthParams) (*AuthResponse, error) {
	now := s.now()
	if !c.Mode.Valid() {
		return nil, Errorf(CodeUnauthorizedClient, "client %q has no CIBA token delivery mode", c.ID)
	}
	if e := checkSizes(p); e != nil {
		return nil, e
	}
	hints := 0
	for _, h := range []string{p.Hint.LoginHint, p.Hint.LoginHintToken, p.Hint.IDTokenHint} {
		if h != "" {
			hints++
		}
	}
	if hints != 1 {
		return nil, Errorf(CodeInvalidRequest, "exactly one of login_hint, login_hint_token and id_token_hint is required, got %d", hints)
	}
	if p.Scope == "" {
		return nil, Errorf(CodeInvalidRequest, "scope is required")
	}
	scopes, e := ParseScope(p.Scope)
	if e != nil {
		return nil, e
	}
	if !slices.Contains(scopes, "openid") {
		return nil, Errorf(CodeInvalidScope, "scope must include openid (CIBA §7.1)")
	}
	if scopes, e = s.grantable(c, scopes); e != nil {
		return nil, e
	}
	lifetime := s.cfg.DefaultExpiry
	if p.RequestedExpiry != "" {
		d, e := parseExpiry(p.RequestedExpiry)
		if e != nil {
			return nil, e
		}
		lifetime = min(d, s.cfg.MaxExpiry)
	}
	var token string
	if c.Mode != ModePoll {
		token = p.ClientNotificationToken
		switch {
		case token == "":
			return nil, Errorf(CodeInvalidRequest, "client_notification_token is required for %s clients (CIBA §7.1)", c.Mode)
		case len(token) > MaxNotificationToken:
			return nil, Errorf(CodeInvalidRequest, "client_notification_token is longer than %d characters", MaxNotificationToken)
		case !validBearer(token):
			return nil, Errorf(CodeInvalidRequest, "client_notification_token does not have the bearer token syntax of RFC 6750 §2.1")
		}
	}
	if p.BindingMessage == "" && c.RequireBindingMessage {
		return nil, Errorf(CodeInvalidRequest, "client %q must send a binding_message (FAPI-CIBA profile)", c.ID)
	}
	if p.BindingMessage != "" {
		if why := ValidBindingMessage(p.BindingMessage, s.cfg.BindingMessageMax); why != "" {
			return nil, Errorf(CodeInvalidBindingMessage, "%s", why)
		}
	}
	if c.RequireUserCode && p.UserCode == "" {
		return nil, Errorf(CodeMissingUserCode, "client %q requires a user_code", c.ID)
	}
	acr, e := parseACR(p.ACRValues)
	if e != nil {
		return nil, e
	}

	if s.d.Relay != nil {
		key, e := s.userKeyFor("", p.Hint)
		if e != nil {
			return nil, e
		}
		if e := s.validate(ctx, c, p, "", scopes, acr); e != nil {
			return nil, e
		}
		if e := s.userLimit(ctx, key, now); e != nil {
			return nil, e
		}
		return s.relayer.start(ctx, c, p, relayed{now: now, scopes: scopes, acr: acr, lifetime: lifetime, token: token})
	}

	user, err := s.d.Upstream.ResolveUser(ctx, c, p.Hint)
	if err != nil {
		return nil, s.upstreamError("resolve user", err)
	}
	// An upstream that cannot check user codes (a federated provider)
	// leaves the check to the approval page, which asks the user for the
	// code and compares it with UserCodeHash.
	if p.UserCode != "" && s.d.Upstream.SupportsUserCode() {
		if e := s.checkUserCode(ctx, c, user, p.UserCode, now); e != nil {
			return nil, e
		}
	}

	// A login_hint the upstream cannot verify before the user signs in
	// (the oidc upstream) resolves to no subject: the limit is then the
	// hint's.
	key, e := s.userKeyFor(user.Subject, p.Hint)
	if e != nil {
		return nil, e
	}
	if e := s.validate(ctx, c, p, user.Subject, scopes, acr); e != nil {
		return nil, e
	}
	if e := s.userLimit(ctx, key, now); e != nil {
		return nil, e
	}
	r := &AuthRequest{
		ID:                randomID(24),
		ApprovalID:        randomID(16),
		ClientID:          c.ID,
		Mode:              c.Mode,
		Subject:           user.Subject,
		LoginHint:         user.Display,
		Scopes:            scopes,
		ACRValues:         acr,
		BindingMessage:    p.BindingMessage,
		NotificationToken: token,
		CreatedAt:         now,
		ExpiresAt:         now.Add(lifetime),
		Interval:          s.cfg.Interval,
		Status:            StatusPending,
		TraceParent:       s.d.Trace(ctx),
		CertThumbprint:    p.CertThumbprint,
	}
	if p.UserCode != "" {
		sum := sha256.Sum256([]byte(p.UserCode))
		r.UserCodeHash = hex.EncodeToString(sum[:])
	}
	if s.d.Channel != nil {
		r.UserNotice = Delivery{Due: true, NextAttempt: now}
	}
	if err := s.d.Store.CreateRequest(ctx, r); err != nil {
		return nil, s.storeError("create request", err)
	}
	attrs := []slog.Attr{slog.String("client_id", c.ID), slog.String("subject", user.Subject),
		slog.String("mode", string(c.Mode)), slog.Duration("lifetime", lifetime)}
	if s.d.Channel == nil {
		// Say why nobody will answer: the approval link reaches the user
		// only through a channel.
		attrs = append(attrs, slog.String("user_notice", "none: no channel is configured (channels.webhook or channels.email), so nobody was told of this request"))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "auth request created", attrs...)
	if s.d.Channel != nil || r.Mode != ModePoll {
		s.sched.schedule(r.ID, now)
	}
	return &AuthResponse{
		AuthReqID: r.ID,
		ExpiresIn: int64(lifetime / time.Second),
		Interval:  int64(s.cfg.Interval / time.Second),
	}, nil
}

// checkUserCode checks the user_code client c sent for user at the
// upstream, under Deps.UserCodeFailures: the try is reserved before the
// check (so tries in parallel are all counted) and kept only when the code
// is wrong. A client locked out for the user is answered access_denied
// (CIBA §13: the OP denies the request) without the code being checked, so
// the answer says nothing about the code; invalid_user_code is kept for
// codes that were checked and are wrong.
func (s *Service) checkUserCode(ctx context.Context, c *Client, user User, code string, now time.Time) error {
	settle := func(bool) {}
	if s.d.UserCodeFailures != nil {
		ok, wait, st, err := s.d.UserCodeFailures(ctx, c.ID, user.Subject, now)
		if err != nil {
			s.log.WarnContext(ctx, "user code failure limit unavailable; check allowed", slog.Any("error", err))
		}
		if !ok {
			s.log.WarnContext(ctx, "too many wrong user codes; request refused without a check",
				slog.String("client_id", c.ID), slog.String("subject", user.Subject), slog.Duration("retry_after", wait))
			return Errorf(CodeAccessDenied, "too many wrong user_code values for this user; try again in %d seconds", int64((wait+time.Second-1)/time.Second))
		}
		settle = st
	}
	err := s.d.Upstream.CheckUserCode(ctx, user, code)
	var pe *Error
	wrong := errors.As(err, &pe) && pe.Code == CodeInvalidUserCode
	settle(wrong)
	if err != nil {
		if wrong {
			s.log.InfoContext(ctx, "wrong user code", slog.String("client_id", c.ID), slog.String("subject", user.Subject))
		}
		return s.upstreamError("check user code", err)
	}
	return nil
}

// userKeyFor is the per-user limit key (userKey) of a request for the
// user with verified subject sub, or, when sub is "", for the user hint h
// names. A hint that names no one once normalised is invalid_request: one
// bucket shared by every such request would let one client block
// everyone's.
func (s *Service) userKeyFor(sub string, h Hint) (string, *Error) {
	name := ""
	if sub == "" {
		name = s.hintName(h)
	}
	key := userKey(sub, name)
	if key == "" {
		return "", Errorf(CodeInvalidRequest, "the hint names no user: it is empty once white space and control characters are removed")
	}
	return key, nil
}

// userLimit asks Deps.UserLimit whether one more request for the user of
// key (userKeyFor) may be accepted, and answers access_denied when not.
func (s *Service) userLimit(ctx context.Context, key string, now time.Time) *Error {
	if s.d.UserLimit == nil {
		return nil
	}
	ok, wait, err := s.d.UserLimit(ctx, key, now)
	if err != nil {
		s.log.WarnContext(ctx, "per-user limit unavailable; request allowed", slog.Any("error", err))
		return nil
	}
	if ok {
		return nil
	}
	s.log.Warn("too many requests for one user", slog.Duration("retry_after", wait))
	return Errorf(CodeAccessDenied, "too many authentication requests for this user; try again in %d seconds", int64((wait+time.Second-1)/time.Second))
}

// hintName is the name of the user a hint names, for the per-user limit of
// a request whose user has no verified subject yet (a relayed request, a
// login_hint with the oidc upstream): the login_hint, or whom the
// id_token_hint or login_hint_token names as Deps.HintSubject reads it
// unverified (the upstream verifies it). A token it cannot read is its own
// name: an upstream that accepts it knows a format this service does not.
func (s *Service) hintName(h Hint) string {
	if h.LoginHint != "" {
		return h.LoginHint
	}
	if s.d.HintSubject != nil {
		if name := s.d.HintSubject(h.IDTokenHint, h.LoginHintToken); name != "" {
			return name
		}
	}
	return h.IDTokenHint + h.LoginHintToken
}

// grantable is what client c may be granted of the requested scopes: with
// the client's own list (clients[].scopes) every scope must be on it, else
// invalid_scope; without one, the service's Config.Scopes, when set, are
// kept and the others dropped (OIDC Core §3.1.2.1: scope values that are
// not understood SHOULD be ignored; RFC 6749 §3.3 lets the issuer grant a
// narrower scope, which the token response's scope then states).
func (s *Service) grantable(c *Client, scopes []string) ([]string, *Error) {
	if len(c.Scopes) > 0 {
		for _, sc := range scopes {
			if !slices.Contains(c.Scopes, sc) {
				return nil, Errorf(CodeInvalidScope, "client %q may not request scope %q", c.ID, sc)
			}
		}
		return scopes, nil
	}
	if s.cfg.Scopes == nil {
		return scopes, nil
	}
	return slices.DeleteFunc(scopes, func(sc string) bool { return !slices.Contains(s.cfg.Scopes, sc) }), nil
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

// Deny records the refusal of request id (Decisions.Deny).
func (s *Service) Deny(ctx context.Context, id, reason string) error {
	return s.decisions.Deny(ctx, id, reason)
}

// ApproveWithMinter approves request r with tokens from the Minter
// (Decisions.ApproveWithMinter).
func (s *Service) ApproveWithMinter(ctx context.Context, r *AuthRequest) error {
	return s.decisions.ApproveWithMinter(ctx, r)
}

// CallbackToken returns the callback bearer for an approval id
// (Decisions.CallbackToken).
func (s *Service) CallbackToken(approvalID string) string {
	return s.decisions.CallbackToken(approvalID)
}

// Callback applies the authentication device's answer (Decisions.Callback).
func (s *Service) Callback(ctx context.Context, token string, approved bool, reason string) error {
	return s.decisions.Callback(ctx, token, approved, reason)
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
