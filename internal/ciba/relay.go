package ciba

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// The relay (the ciba upstream): each request is forwarded to a CIBA-capable
// upstream, which reaches the user itself. The dispatcher polls the upstream
// at its interval, honouring its slow_down, or once when the upstream pings;
// clients' polls are answered from the store and never reach the upstream,
// so upstream calls per request stay at most 1 + lifetime/interval (poll) or
// 2 (ping).

// defaultRelayInterval is the upstream poll interval when the upstream
// announces none (CIBA §7.3).
const defaultRelayInterval = 5 * time.Second

// relayed are the values Authorize computed before it relays.
type relayed struct {
	now      time.Time
	scopes   []string
	acr      []string
	lifetime time.Duration
	token    string
}

// Relayer runs requests at a CIBA upstream (the ciba upstream) instead of
// resolving the user here: it forwards each request once (for Acceptor and
// Device), polls the upstream at its interval under a lease, or once when
// the upstream pings (RelayPing), and records the upstream's answer through
// Decisions. Its dependencies: the store, the upstream (Deps.Relay), the
// Sealer that hides the upstream's ids, the client registry, the callback
// key (for ping tokens), the Observer, the tracing hooks, Decisions and the
// dispatcher's schedule.
type Relayer struct {
	base
	upstream    Relay
	sealer      Sealer
	clients     func(id string) (*Client, bool)
	callbackKey []byte
	observer    Observer
	trace       func(ctx context.Context) string
	startSpan   func(ctx context.Context, name, traceParent string) (context.Context, func(err error))
	decisions   *Decisions
	sched       *scheduler
}

// relayAD binds a sealed upstream id to its request.
func relayAD(id string) []byte { return []byte("relay\x00" + id) }

// start forwards an authentication request to the upstream and stores its
// counterpart here.
func (rl *Relayer) start(ctx context.Context, c *Client, p AuthParams, v relayed) (*AuthResponse, error) {
	r := &AuthRequest{
		ID:                randomID(24),
		ApprovalID:        randomID(16),
		ClientID:          c.ID,
		Mode:              c.Mode,
		LoginHint:         p.Hint.LoginHint,
		Scopes:            v.scopes,
		ACRValues:         v.acr,
		BindingMessage:    p.BindingMessage,
		NotificationToken: v.token,
		CreatedAt:         v.now,
		Interval:          rl.cfg.Interval,
		Status:            StatusPending,
		TraceParent:       rl.trace(ctx),
	}
	ping := rl.upstream.SupportsPing(c.ID)
	var pingToken string
	if ping {
		pingToken = rl.RelayPingToken(r.ApprovalID)
	}
	started, err := rl.upstream.Start(ctx, c, p, pingToken)
	if err != nil {
		return nil, rl.upstreamError("relay request", err)
	}
	// Never outlive the upstream's request: its tokens could not be had.
	lifetime := min(v.lifetime, started.ExpiresIn)
	if lifetime <= 0 {
		rl.log.Error("relay: the upstream answered a non-positive expires_in", slog.String("client_id", c.ID))
		return nil, &Error{Code: CodeServerError, Description: "the identity provider answered an unusable expires_in"}
	}
	r.ExpiresAt = v.now.Add(lifetime)
	interval := started.Interval
	if interval <= 0 {
		interval = defaultRelayInterval
	}
	sealed, err := rl.sealer.Seal([]byte(started.ID), relayAD(r.ID))
	if err != nil {
		return nil, &Error{Code: CodeServerError, Description: "the request could not be stored", Err: err}
	}
	r.Relay = RelayState{ID: sealed, Interval: interval, Ping: ping}
	if !ping {
		r.Relay.NextPoll = v.now.Add(interval)
	}
	if err := rl.store.CreateRequest(ctx, r); err != nil {
		return nil, rl.storeError("create request", err)
	}
	rl.log.LogAttrs(ctx, slog.LevelInfo, "auth request relayed",
		slog.String("client_id", c.ID), slog.String("mode", string(c.Mode)),
		slog.Duration("lifetime", lifetime), slog.Duration("upstream_interval", interval), slog.Bool("upstream_ping", ping))
	if !ping {
		rl.sched.schedule(r.ID, r.Relay.NextPoll)
	}
	return &AuthResponse{AuthReqID: r.ID, ExpiresIn: int64(lifetime / time.Second), Interval: int64(rl.cfg.Interval / time.Second)}, nil
}

// RelayPingToken is the client_notification_token cibaproxy gives the
// upstream for the request with this approval id: the bearer of the
// upstream's ping. Derived (HMAC), like CallbackToken, so it survives
// restarts and is shared by instances without being stored.
func (rl *Relayer) RelayPingToken(approvalID string) string {
	mac := hmac.New(sha256.New, rl.callbackKey)
	mac.Write([]byte("cibaproxy upstream ping\x00"))
	mac.Write([]byte(approvalID))
	return approvalID + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// RelayPing handles the upstream's ping (CIBA §10.2) for a relayed request:
// bearer is the notification token cibaproxy gave it and upstreamID the
// auth_req_id it sent. The request's upstream poll is scheduled at once. A
// wrong token or id answers invalid_token and changes nothing.
func (rl *Relayer) RelayPing(ctx context.Context, bearer, upstreamID string) error {
	approvalID, _, ok := strings.Cut(bearer, ".")
	if !ok || !hmac.Equal([]byte(rl.RelayPingToken(approvalID)), []byte(bearer)) {
		return Errorf(CodeInvalidToken, "the notification token is not valid")
	}
	r, err := rl.store.GetRequestByApprovalID(ctx, approvalID)
	if errors.Is(err, ErrNotFound) {
		return Errorf(CodeInvalidToken, "the notification token is not valid")
	}
	if err != nil {
		return rl.storeError("get request", err)
	}
	if !r.Relay.Active() {
		return Errorf(CodeInvalidToken, "the notification token is not valid")
	}
	id, err := rl.sealer.Open(r.Relay.ID, relayAD(r.ID))
	if err != nil {
		return &Error{Code: CodeServerError, Description: "the request could not be read", Err: err}
	}
	if subtle.ConstantTimeCompare(id, []byte(upstreamID)) != 1 {
		return Errorf(CodeInvalidRequest, "auth_req_id is not the one of this notification token")
	}
	now := rl.now()
	r, err = rl.store.UpdateRequest(ctx, r.ID, func(cur *AuthRequest) error {
		if cur.Status != StatusPending || cur.Expired(now) {
			return errRelayOver
		}
		if cur.Relay.NextPoll.IsZero() || cur.Relay.NextPoll.After(now) {
			cur.Relay.NextPoll = now
		}
		return nil
	})
	switch {
	case errors.Is(err, errRelayOver):
		return nil // a late or repeated ping: nothing left to fetch
	case err != nil:
		return rl.transitionError("upstream ping", err)
	}
	rl.log.LogAttrs(ctx, slog.LevelInfo, "upstream ping", slog.String("client_id", r.ClientID))
	rl.sched.schedule(r.ID, now)
	return nil
}

// errRelayOver stops an update of a relayed request that is no longer
// pending.
var errRelayOver = errors.New("the relayed request is over")

// relayLease is the shortest lease a claimed upstream poll takes, so that
// a slow upstream answer is not polled again by another worker meanwhile.
const relayLease = 30 * time.Second

// maxRelayError bounds the upstream's last error kept in the request for
// operators (Relay.LastError), in bytes.
const maxRelayError = 200

// pollUpstream claims the upstream poll of request id and makes it (the
// CIBA grant, or the device_code grant for a relayed device request): the
// claim (a compare-and-set moving NextPoll forward) is the lease that keeps
// every other worker and instance from polling the upstream meanwhile.
func (rl *Relayer) pollUpstream(ctx context.Context, id string, now time.Time) {
	r, err := rl.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		rs := &r.Relay
		if !rs.Active() || r.Status != StatusPending || r.Expired(now) || rs.NextPoll.IsZero() || rs.NextPoll.After(now) {
			return errNothingToDo
		}
		rs.Polls++
		rs.NextPoll = now.Add(max(rs.Interval, relayLease))
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNothingToDo) && !errors.Is(err, ErrNotFound) {
			rl.log.Warn("relay: claim upstream poll", slog.Any("error", err))
			rl.sched.add(id, now.Add(firstBackoff))
		}
		return
	}
	rl.sched.schedule(id, r.Relay.NextPoll) // look again if this worker dies
	ctx, end := rl.startSpan(ctx, "relay poll upstream", r.TraceParent)
	var failed error // an upstream that did not answer, for the span
	defer func() { end(failed) }()
	client, ok := rl.clients(r.ClientID)
	if !ok {
		rl.relayFailed(ctx, r, now, "the client is no longer registered")
		return
	}
	upstreamID, err := rl.sealer.Open(r.Relay.ID, relayAD(r.ID))
	if err != nil {
		rl.log.Error("relay: open the upstream id", slog.String("client_id", r.ClientID), slog.Any("error", err))
		rl.relayFailed(ctx, r, now, "the upstream request id could not be decrypted")
		return
	}
	res, err := rl.pollRelayed(ctx, r, client, string(upstreamID))
	var pe *Error
	switch {
	case err == nil && res.Tokens != nil:
		rl.observeRelay("tokens", r.Relay.Polls)
		if err := rl.decisions.Approve(ctx, r.ID, rl.now(), res.Tokens); err != nil {
			rl.log.Warn("relay: approve", slog.String("client_id", r.ClientID), slog.Any("error", err))
		}
	case err == nil:
		result := "pending"
		if res.SlowDown {
			result = "slow_down"
		}
		rl.observeRelay(result, 0)
		rl.relayAgain(ctx, r.ID, now, res.SlowDown, "")
	case errors.As(err, &pe) && pe.Code == CodeAccessDenied:
		rl.observeRelay("access_denied", r.Relay.Polls)
		desc := "the user denied the request at the identity provider"
		if pe.Description != "" {
			desc = pe.Description
		}
		if err := rl.decisions.Deny(ctx, r.ID, desc); err != nil {
			rl.log.Warn("relay: deny", slog.String("client_id", r.ClientID), slog.Any("error", err))
		}
	case errors.As(err, &pe) && pe.Code == CodeExpiredToken:
		// The upstream's request expired first (clocks apart): so does
		// this one, and the client hears expired_token.
		rl.observeRelay(string(pe.Code), r.Relay.Polls)
		rl.relayExpired(ctx, r.ID, rl.now())
	case errors.As(err, &pe):
		// invalid_grant and the like: the upstream
		// request is over without tokens. The client hears why.
		rl.observeRelay(string(pe.Code), r.Relay.Polls)
		rl.relayFailed(ctx, r, now, "the identity provider ended the request: "+string(pe.Code))
	case errors.Is(err, errNoDeviceRelay):
		rl.observeRelay("error", r.Relay.Polls)
		rl.relayFailed(ctx, r, now, "the identity provider no longer relays the device grant")
	default:
		// Unreachable, 5xx, timeout: keep the request and try again, so
		// an upstream outage loses nothing.
		rl.observeRelay("error", 0)
		failed = err
		rl.log.Warn("relay: upstream poll failed", slog.String("client_id", r.ClientID), slog.Int("polls", r.Relay.Polls), slog.Any("error", err))
		rl.relayAgain(ctx, r.ID, now, false, err.Error())
	}
}

// relayAgain schedules the next upstream poll after a pending answer
// (slowDown: the upstream asked for 5 s more) or a failure (problem set).
// A ping-mode request waits for the next ping instead, unless the poll
// failed.
func (rl *Relayer) relayAgain(ctx context.Context, id string, now time.Time, slowDown bool, problem string) {
	r, err := rl.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		rs := &r.Relay
		if r.Status != StatusPending {
			return errNothingToDo
		}
		if slowDown {
			rs.Interval += rl.cfg.SlowDownStep
		}
		switch {
		case problem != "":
			rs.Failures++
			rs.LastError = truncate(problem, maxRelayError)
			rs.NextPoll = now.Add(max(rs.Interval, backoff(rs.Failures)))
		case rs.Ping:
			rs.Failures, rs.LastError = 0, ""
			rs.NextPoll = time.Time{}
		default:
			rs.Failures, rs.LastError = 0, ""
			rs.NextPoll = now.Add(rs.Interval)
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNothingToDo) && !errors.Is(err, ErrNotFound) {
			rl.log.Warn("relay: record poll", slog.Any("error", err))
		}
		return
	}
	if !r.Relay.NextPoll.IsZero() {
		rl.sched.schedule(id, r.Relay.NextPoll)
	}
}

// relayExpired ends a relayed request whose upstream request expired:
// its expiry is brought forward to now, and ping and push clients are told.
func (rl *Relayer) relayExpired(ctx context.Context, id string, now time.Time) {
	_, err := rl.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		if r.Status != StatusPending {
			return errNothingToDo
		}
		if r.ExpiresAt.After(now) {
			r.ExpiresAt = now
		}
		r.Relay.NextPoll = time.Time{}
		if r.Mode == ModePoll {
			return nil // a poll client learns it by polling
		}
		return r.Expire(now)
	})
	if err != nil && !errors.Is(err, errNothingToDo) && !errors.Is(err, ErrNotFound) {
		rl.log.Warn("relay: expire", slog.Any("error", err))
		return
	}
	rl.sched.schedule(id, now)
}

// relayFailed ends a relayed request that can no longer get tokens: the
// client is told access_denied with why.
func (rl *Relayer) relayFailed(ctx context.Context, r *AuthRequest, now time.Time, why string) {
	rl.log.Warn("relay: request ended", slog.String("client_id", r.ClientID), slog.String("reason", why))
	if err := rl.decisions.Deny(ctx, r.ID, why); err != nil && !errors.Is(err, ErrNotFound) {
		rl.log.Warn("relay: deny", slog.String("client_id", r.ClientID), slog.Any("error", err))
	}
}

// observeRelay counts an upstream poll's result and, when the request is
// done (polls > 0), its number of upstream polls.
func (rl *Relayer) observeRelay(result string, polls int) {
	if o, ok := rl.observer.(RelayObserver); ok {
		o.ObserveRelayPoll(result, polls)
	}
}

// RelayObserver is an Observer that also counts upstream polls (package
// metrics), so the shield can be seen working.
type RelayObserver interface {
	// ObserveRelayPoll counts one upstream poll and its result; polls is
	// the request's number of upstream polls when the result ends it, 0
	// otherwise.
	ObserveRelayPoll(result string, polls int)
}
