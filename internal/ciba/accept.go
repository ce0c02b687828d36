package ciba

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"time"
)

// Acceptor accepts authentication requests: it validates a client's
// request (CIBA §7.1, §7.2), resolves the user at the upstream and checks
// the user_code, applies the per-user limit and the consumption-device
// validation hook (validate.go), and stores the new request, or hands it
// to the Relayer when a CIBA upstream runs it. Its dependencies: the store,
// the upstream, the Relayer (nil unless relaying), the per-user limits,
// the validation hook, the Observer, the tracing hook and the dispatcher's
// schedule.
type Acceptor struct {
	base
	upstream           Upstream
	relayer            *Relayer
	hasChannel         bool
	userLimitFn        func(ctx context.Context, user string, now time.Time) (ok bool, retryAfter time.Duration, err error)
	hintSubject        func(idTokenHint, loginHintToken string) string
	userCodeFailures   func(ctx context.Context, clientID, user string, now time.Time) (ok bool, retryAfter time.Duration, settle func(wrong bool), err error)
	validator          Validator
	validationFailOpen bool
	observer           Observer
	trace              func(ctx context.Context) string
	sched              *scheduler
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
func (a *Acceptor) Authorize(ctx context.Context, c *Client, p AuthParams) (*AuthResponse, error) {
	now := a.now()
	if !c.Mode.Valid() {
		return nil, Errorf(CodeUnauthorizedClient, "client %q has no CIBA token delivery mode", c.ID)
	}
	if e := checkSizes(p); e != nil {
		return nil, e
	}
	if p.Hint.LoginHint != "" {
		h, e := plainLoginHint(p.Hint.LoginHint, a.cfg.Issuer, a.cfg.LoginHintIssuers)
		if e != nil {
			return nil, e
		}
		p.Hint.LoginHint = h
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
	if scopes, e = a.grantable(c, scopes); e != nil {
		return nil, e
	}
	lifetime := a.cfg.DefaultExpiry
	if p.RequestedExpiry != "" {
		d, e := parseExpiry(p.RequestedExpiry)
		if e != nil {
			return nil, e
		}
		lifetime = min(d, a.cfg.MaxExpiry)
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
		if why := ValidBindingMessage(p.BindingMessage, a.cfg.BindingMessageMax); why != "" {
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
	details, e := authorizationDetails(a.cfg.AuthzDetails.Registry(), c, p.AuthorizationDetails)
	if e != nil {
		return nil, e
	}
	resources, e := targets(c, p.Resources, p.Audience)
	if e != nil {
		return nil, e
	}
	if details != "" {
		if dc, ok := a.upstream.(DetailsChecker); ok {
			if err := dc.CheckAuthzDetails(ctx, c, details); err != nil {
				return nil, a.upstreamError("check authorization_details", err)
			}
		}
	}

	if a.relayer != nil {
		// The upstream gets the details as checked here (canonical), and
		// resource and audience as sent, checked above.
		p.AuthorizationDetails = details
		key, e := a.userKeyFor("", p.Hint)
		if e != nil {
			return nil, e
		}
		if e := a.validate(ctx, c, p, "", scopes, acr, details); e != nil {
			return nil, e
		}
		if e := a.userLimit(ctx, key, now); e != nil {
			return nil, e
		}
		return a.relayer.start(ctx, c, p, relayed{now: now, scopes: scopes, acr: acr, lifetime: lifetime, token: token})
	}

	user, err := a.upstream.ResolveUser(ctx, c, p.Hint)
	if err != nil {
		return nil, a.upstreamError("resolve user", err)
	}
	// An upstream that cannot check user codes (a federated provider)
	// leaves the check to the approval page, which asks the user for the
	// code and compares it with UserCodeHash.
	if p.UserCode != "" && a.upstream.SupportsUserCode() {
		if e := a.checkUserCode(ctx, c, user, p.UserCode, now); e != nil {
			return nil, e
		}
	}

	// A login_hint the upstream cannot verify before the user signs in
	// (the oidc upstream) resolves to no subject: the limit is then the
	// hint's.
	key, e := a.userKeyFor(user.Subject, p.Hint)
	if e != nil {
		return nil, e
	}
	if e := a.validate(ctx, c, p, user.Subject, scopes, acr, details); e != nil {
		return nil, e
	}
	if e := a.userLimit(ctx, key, now); e != nil {
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
		Interval:          a.cfg.Interval,
		Status:            StatusPending,
		TraceParent:       a.trace(ctx),
		CertThumbprint:    p.CertThumbprint,
		DPoPJKT:           p.DPoPJKT,
		AuthzDetails:      details,
		Resources:         resources,
	}
	if c.ActsForUser {
		r.Actor = c.ID
	}
	if p.UserCode != "" {
		sum := sha256.Sum256([]byte(p.UserCode))
		r.UserCodeHash = hex.EncodeToString(sum[:])
	}
	if a.hasChannel {
		r.UserNotice = Delivery{Due: true, NextAttempt: now}
	}
	if err := a.store.CreateRequest(ctx, r); err != nil {
		return nil, a.storeError("create request", err)
	}
	attrs := []slog.Attr{slog.String("client_id", c.ID), slog.String("subject", user.Subject),
		slog.String("mode", string(c.Mode)), slog.Duration("lifetime", lifetime)}
	if !a.hasChannel {
		// Say why nobody will answer: the approval link reaches the user
		// only through a channel.
		attrs = append(attrs, slog.String("user_notice", "none: no channel is configured (channels.webpush, channels.email or channels.webhook), so nobody was told of this request"))
	}
	a.log.LogAttrs(ctx, slog.LevelInfo, "auth request created", attrs...)
	if a.hasChannel || r.Mode != ModePoll {
		a.sched.schedule(r.ID, now)
	}
	return &AuthResponse{
		AuthReqID: r.ID,
		ExpiresIn: int64(lifetime / time.Second),
		Interval:  int64(a.cfg.Interval / time.Second),
	}, nil
}

// checkUserCode checks the user_code client c sent for user at the
// upstream, under Deps.UserCodeFailures: the try is reserved before the
// check (so tries in parallel are all counted) and kept only when the code
// is wrong. A client locked out for the user is answered access_denied
// (CIBA §13: the OP denies the request) without the code being checked, so
// the answer says nothing about the code; invalid_user_code is kept for
// codes that were checked and are wrong.
func (a *Acceptor) checkUserCode(ctx context.Context, c *Client, user User, code string, now time.Time) error {
	settle := func(bool) {}
	if a.userCodeFailures != nil {
		ok, wait, st, err := a.userCodeFailures(ctx, c.ID, user.Subject, now)
		if err != nil {
			a.log.WarnContext(ctx, "user code failure limit unavailable; check allowed", slog.Any("error", err))
		}
		if !ok {
			a.log.WarnContext(ctx, "too many wrong user codes; request refused without a check",
				slog.String("client_id", c.ID), slog.String("subject", user.Subject), slog.Duration("retry_after", wait))
			return Errorf(CodeAccessDenied, "too many wrong user_code values for this user; try again in %d seconds", int64((wait+time.Second-1)/time.Second))
		}
		settle = st
	}
	err := a.upstream.CheckUserCode(ctx, user, code)
	var pe *Error
	wrong := errors.As(err, &pe) && pe.Code == CodeInvalidUserCode
	settle(wrong)
	if err != nil {
		if wrong {
			a.log.InfoContext(ctx, "wrong user code", slog.String("client_id", c.ID), slog.String("subject", user.Subject))
		}
		return a.upstreamError("check user code", err)
	}
	return nil
}

// userKeyFor is the per-user limit key (userKey) of a request for the
// user with verified subject sub, or, when sub is "", for the user hint h
// names. A hint that names no one once normalised is invalid_request: one
// bucket shared by every such request would let one client block
// everyone's.
func (a *Acceptor) userKeyFor(sub string, h Hint) (string, *Error) {
	name := ""
	if sub == "" {
		name = a.hintName(h)
	}
	key := userKey(sub, name)
	if key == "" {
		return "", Errorf(CodeInvalidRequest, "the hint names no user: it is empty once white space and control characters are removed")
	}
	return key, nil
}

// userLimit asks Deps.UserLimit whether one more request for the user of
// key (userKeyFor) may be accepted, and answers access_denied when not.
func (a *Acceptor) userLimit(ctx context.Context, key string, now time.Time) *Error {
	if a.userLimitFn == nil {
		return nil
	}
	ok, wait, err := a.userLimitFn(ctx, key, now)
	if err != nil {
		a.log.WarnContext(ctx, "per-user limit unavailable; request allowed", slog.Any("error", err))
		return nil
	}
	if ok {
		return nil
	}
	a.log.Warn("too many requests for one user", slog.Duration("retry_after", wait))
	return Errorf(CodeAccessDenied, "too many authentication requests for this user; try again in %d seconds", int64((wait+time.Second-1)/time.Second))
}

// hintName is the name of the user a hint names, for the per-user limit of
// a request whose user has no verified subject yet (a relayed request, a
// login_hint with the oidc upstream): the login_hint, or whom the
// id_token_hint or login_hint_token names as Deps.HintSubject reads it
// unverified (the upstream verifies it). A token it cannot read is its own
// name: an upstream that accepts it knows a format this service does not.
func (a *Acceptor) hintName(h Hint) string {
	if h.LoginHint != "" {
		return h.LoginHint
	}
	if a.hintSubject != nil {
		if name := a.hintSubject(h.IDTokenHint, h.LoginHintToken); name != "" {
			return name
		}
	}
	return h.IDTokenHint + h.LoginHintToken
}
