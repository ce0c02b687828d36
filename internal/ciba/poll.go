package ciba

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Poller answers polls: the token requests of CIBA's poll and ping modes
// (Service.PollCert) and of the device grant (Device.PollCert), each with
// one store call (Store.Poll), a pending poll held for the result under
// long polling, and the tokens of an approved request handed out once.
// Its dependencies: the store and the Sealer that opens the tokens.
type Poller struct {
	base
	sealer Sealer
	// slowDowns are the answers to early polls, one per interval.
	slowDowns slowDowns
	// released is closed by ReleaseHolds: long polls are then answered at
	// once and no longer held.
	released    chan struct{}
	releaseOnce sync.Once
}

// newPoller returns the Poller of the service's settings in b.
func newPoller(b base, sealer Sealer) *Poller {
	return &Poller{base: b, sealer: sealer, released: make(chan struct{}),
		slowDowns: slowDowns{description: fmt.Sprintf("poll at most once every interval; the interval has been increased by %d seconds", b.cfg.SlowDownStep/time.Second)}}
}

// maxRetryAfter is the longest wait a slow_down's RetryAfter says, in
// seconds: a longer interval (a client that ignored hundreds of slow_downs)
// is said as this, and the client that comes back early then is slowed
// down again. It bounds the answers slowDowns keeps.
const maxRetryAfter = 3600

// slowDowns are the slow_down answers, one shared value per interval in
// whole seconds, each built at its first use and read only after: the
// answer to an early poll allocates nothing, its Retry-After included.
type slowDowns struct {
	description string
	byInterval  [maxRetryAfter + 1]atomic.Pointer[Error]
}

// get returns the slow_down answer of a client whose interval is now
// interval.
func (s *slowDowns) get(interval time.Duration) *Error {
	secs := min(max(int64((interval+time.Second-1)/time.Second), 1), maxRetryAfter)
	if e := s.byInterval[secs].Load(); e != nil {
		return e
	}
	e := tokenError(CodeSlowDown, "%s", s.description)
	e.RetryAfter = time.Duration(secs) * time.Second
	// Two first uses at once build equal values: either may stay.
	s.byInterval[secs].Store(e.Shared())
	return e
}

// ReleaseHolds answers every held long poll at once (authorization_pending,
// or the result if it just landed) and makes later polls answer without
// being held, for a shutdown: the other requests in flight finish as usual,
// with their contexts intact.
func (p *Poller) ReleaseHolds() {
	p.releaseOnce.Do(func() { close(p.released) })
}

// Poll answers a token request with grant_type
// urn:openid:params:grant-type:ciba (CIBA §10.1, §11) from the authenticated
// client c. It returns the token response JSON exactly once, or an *Error:
// authorization_pending, slow_down, access_denied, expired_token or
// invalid_grant. With long polling on, a pending poll is held until the
// result lands or the hold ends. It is PollCert for a connection without a
// client certificate.
func (p *Poller) Poll(ctx context.Context, c *Client, authReqID string) ([]byte, error) {
	return p.PollCert(ctx, c, authReqID, "")
}

// PollCert is Poll over a connection presenting the client certificate
// whose x5t#S256 is cert ("" for none): a request bound to a certificate
// (AuthRequest.CertThumbprint) answers invalid_grant, whatever its state,
// unless it is the same one (RFC 8705 §3), and stays as it was.
func (p *Poller) PollCert(ctx context.Context, c *Client, authReqID, cert string) ([]byte, error) {
	return p.PollBound(ctx, c, authReqID, Binding{Cert: cert})
}

// PollBound is Poll with the keys the token request proved it holds: the
// client certificate as PollCert's cert, and the DPoP proof's key (b.JKT,
// "" for none). A request bound to a DPoP key (AuthRequest.DPoPJKT) is
// redeemed only with a proof of that key, and a proof is refused for a
// request that is not bound (its tokens are not), each answered with the
// request left as it was (checkDPoP).
func (p *Poller) PollBound(ctx context.Context, c *Client, authReqID string, b Binding) ([]byte, error) {
	body, h, err := p.PollBoundHold(ctx, c, authReqID, b)
	if h != nil {
		return h.Wait(ctx)
	}
	return body, err
}

// PollBoundHold is PollBound for a caller that holds the poll itself: a
// poll to be held is returned as a *Hold (with no body and no error) which
// the caller must end, with Wait, Answer or Abandon; any other poll is
// answered as PollBound answers it.
func (p *Poller) PollBoundHold(ctx context.Context, c *Client, authReqID string, b Binding) ([]byte, *Hold, error) {
	if authReqID == "" {
		return nil, nil, tokenError(CodeInvalidRequest, "auth_req_id is required")
	}
	q := PollQuery{ClientID: c.ID, Kind: KindCIBA, Cert: b.Cert, JKT: b.JKT, Rule: p.paceRule(p.now(), p.cfg.LongPoll),
		// A push client may not poll: it is told so once the request is
		// known to be its own, and its polls are not paced.
		CheckOnly: c.Mode == ModePush,
		// Not from an instance's knowledge for ping clients: the token
		// request that follows a ping must see the result the ping
		// announced, which an instance may hear of a moment after the
		// ping was sent.
		Current: c.Mode != ModePoll}
	return p.pollHold(ctx, c, authReqID, q)
}

// paceRule is the service's pace rule for a poll at now, held up to hold
// when on time (the store sets Initial, PollQuery.RuleFor).
func (p *Poller) paceRule(now time.Time, hold time.Duration) PaceRule {
	return PaceRule{Now: now, Tolerance: p.cfg.PollTolerance, Step: p.cfg.SlowDownStep, Hold: hold}
}

// poll answers a poll of request id by client c for every grant that polls
// (CIBA §11, RFC 8628 §3.5), in one store call (Store.Poll): invalid_grant
// for an unknown request or one of another client or grant (the same
// answer for all, so that ids of other clients and device codes cannot be
// probed) or bound to another certificate (RFC 8705 §3);
// unauthorized_client for a push client (q.CheckOnly); slow_down when it
// came before the interval passed or while another poll is held (the
// interval has grown); the tokens or the error of a request no longer
// pending; else authorization_pending, after holding the poll up to its
// hold for the result.
func (p *Poller) poll(ctx context.Context, c *Client, id string, q PollQuery) ([]byte, error) {
	body, h, err := p.pollHold(ctx, c, id, q)
	if h != nil {
		return h.Wait(ctx)
	}
	return body, err
}

// pollHold is poll, returning the poll to hold as a *Hold instead of
// holding it.
func (p *Poller) pollHold(ctx context.Context, c *Client, id string, q PollQuery) ([]byte, *Hold, error) {
	res, err := p.store.Poll(ctx, id, q)
	switch {
	case errors.Is(err, ErrNotFound):
		res.Outcome = PollUnknown
	case err != nil:
		return nil, nil, p.storeError("poll", err)
	}
	switch res.Outcome {
	case PollUnknown:
		return nil, nil, tokenError(CodeInvalidGrant, "unknown %s", q.Kind.idParam())
	case PollWrongCert:
		return nil, nil, certMismatch(q.Kind, q.Cert)
	case PollWrongKey, PollUnboundKey:
		return nil, nil, keyMismatch(q.Kind, res.Outcome, q.JKT)
	}
	if q.CheckOnly {
		return nil, nil, tokenError(CodeUnauthorizedClient, "client %q uses push mode; its tokens are delivered to its notification endpoint", c.ID)
	}
	switch res.Outcome {
	case PollDone:
		if err := checkDPoP(res.Request, q.JKT); err != nil {
			return nil, nil, err
		}
		body, err := p.finish(ctx, res.Request, q.Rule.Now)
		return body, nil, err
	case PollSlow:
		return nil, nil, p.slowDowns.get(res.Interval)
	}
	if res.Hold <= 0 {
		return nil, nil, ErrAuthorizationPending
	}
	return nil, &Hold{p: p, id: id, jkt: q.JKT, now: q.Rule.Now, d: res.Hold}, nil
}

// Hold is an on-time poll of a pending request, to be held up to its
// hold time for the result (long polling). Its owner ends it once: with
// Wait, which holds it on the calling goroutine, or, holding it by other
// means (Watch, a timer), with Answer, or with Abandon when its client
// has gone. Until then the request's pace counts the poll as held.
type Hold struct {
	p       *Poller
	id, jkt string
	now     time.Time
	d       time.Duration
}

// RequestID is the id of the request polled.
func (h *Hold) RequestID() string { return h.id }

// Duration is how long the poll may be held.
func (h *Hold) Duration() time.Duration { return h.d }

// Wait holds the poll on the calling goroutine until the result lands, the
// hold time ends, ctx is done or the holds are released, and answers it.
func (h *Hold) Wait(ctx context.Context) ([]byte, error) {
	return h.p.held(ctx, h.id, h.jkt, h.now, h.d)
}

// FuncSubscriber is a Store that can call a function on each change of a
// request instead of sending on a channel (wakeup.Hub.SubscribeFunc): what
// Hold.Watch needs. f must return at once.
type FuncSubscriber interface {
	SubscribeFunc(id string, f func()) (stop func())
}

// Watch calls wake after each change of the request until stop is
// called; wake runs on the store's goroutine and must return at once. ok
// is false when the store cannot call back (the caller then uses Wait).
// Watch before reading the request with Pending, so no change is missed.
func (h *Hold) Watch(wake func()) (stop func(), ok bool) {
	fs, ok := h.p.store.(FuncSubscriber)
	if !ok {
		return nil, false
	}
	return fs.SubscribeFunc(h.id, wake), true
}

// CanWatch reports whether Watch works with the store.
func (h *Hold) CanWatch() bool {
	_, ok := h.p.store.(FuncSubscriber)
	return ok
}

// Released is closed when the holds are released (Poller.ReleaseHolds):
// a held poll is then answered at once.
func (h *Hold) Released() <-chan struct{} { return h.p.released }

// Pending reports whether the request is still pending, so the poll
// stays held; false (or an error) means it is to be answered now.
func (h *Hold) Pending(ctx context.Context) (bool, error) {
	r, err := h.p.store.GetRequest(ctx, h.id)
	if err != nil {
		return false, err
	}
	return r.Status == StatusPending, nil
}

// Answer ends the hold and answers the poll with the request as it now is,
// as Wait does once its hold ends: the tokens, once, for an approved
// request; else its error (authorization_pending while pending).
func (h *Hold) Answer(ctx context.Context) ([]byte, error) {
	r, err := h.p.current(ctx, h.id)
	return h.p.endHold(ctx, h.id, h.jkt, h.now, r, err)
}

// Abandon ends the hold of a poll whose client has gone: the pace is
// released and nothing is handed out, so the tokens of an approved request
// stay for the client's next poll.
func (h *Hold) Abandon(ctx context.Context) { h.p.releaseHold(ctx, h.id, h.now) }

// releaseHold releases the hold of a poll made at now in request id's pace
// (PaceRule.Release) and returns the time it ended.
func (p *Poller) releaseHold(ctx context.Context, id string, now time.Time) time.Time {
	end := p.now()
	if _, perr := p.store.UpdatePace(context.WithoutCancel(ctx), id, func(pace *Pace) error {
		PaceRule{Now: now}.Release(pace, end)
		return nil
	}); perr != nil && !errors.Is(perr, ErrNotFound) {
		p.log.WarnContext(ctx, "release long poll", slog.Any("error", perr))
	}
	return end
}

// endHold ends the hold of a poll made at now with key jkt, whose request
// was read as r (or err), and answers it: the tokens, once, for an
// approved request; else the error of its state.
func (p *Poller) endHold(ctx context.Context, id, jkt string, now time.Time, r *AuthRequest, err error) ([]byte, error) {
	end := p.releaseHold(ctx, id, now)
	if err != nil {
		return nil, err
	}
	// The store checked the key before the hold, and a request's key
	// never changes; checked again all the same, as the tokens are handed
	// out next.
	if err := checkDPoP(r, jkt); err != nil {
		return nil, err
	}
	return p.finish(ctx, r, end)
}

// current reads request id as a held poll answers it: an unknown one is
// invalid_grant.
func (p *Poller) current(ctx context.Context, id string) (*AuthRequest, error) {
	r, err := p.store.GetRequest(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, tokenError(CodeInvalidGrant, "unknown auth_req_id")
	}
	if err != nil {
		return nil, p.storeError("get request", err)
	}
	return r, nil
}

// held holds the on-time poll made at now with a proof of DPoP key jkt
// ("" for none) of the pending request id up to hold for its result,
// releases the hold (PaceRule.Release) and answers the request as it then
// is.
func (p *Poller) held(ctx context.Context, id, jkt string, now time.Time, hold time.Duration) ([]byte, error) {
	r, err := p.hold(ctx, id, hold)
	return p.endHold(ctx, id, jkt, now, r, err)
}

// hold waits until request id leaves pending, the hold time ends or ctx is
// done, and returns the request as it then is.
func (p *Poller) hold(ctx context.Context, id string, d time.Duration) (*AuthRequest, error) {
	changed, stop := p.store.Subscribe(id)
	defer stop()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		// Read after subscribing, so no change is missed.
		r, err := p.current(ctx, id)
		if err != nil {
			return nil, err
		}
		if r.Status != StatusPending {
			return r, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return r, nil
		case <-ctx.Done():
			return r, nil
		case <-p.released:
			return r, nil
		}
	}
}

// finish answers a poll of a request that is not (or no longer) waiting: the
// tokens, once, for an approved request, else the error of its state.
func (p *Poller) finish(ctx context.Context, r *AuthRequest, now time.Time) ([]byte, error) {
	if r.Status != StatusApproved || r.Expired(now) {
		_, err := r.Clone().Redeem(now)
		return nil, err
	}
	var sealed []byte
	_, err := p.store.UpdateRequest(ctx, r.ID, func(cur *AuthRequest) error {
		var err error
		sealed, err = cur.Redeem(now)
		return err
	})
	if err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return nil, pe
		}
		if errors.Is(err, ErrNotFound) {
			return nil, tokenError(CodeInvalidGrant, "unknown %s", r.Kind.idParam())
		}
		return nil, p.storeError("redeem request", err)
	}
	plain, err := p.sealer.Open(sealed, []byte(r.ID))
	if err != nil {
		return nil, &Error{Code: CodeServerError, Description: "the stored tokens could not be decrypted", Err: err}
	}
	p.log.LogAttrs(ctx, slog.LevelInfo, "tokens delivered", slog.String("client_id", r.ClientID), slog.String("mode", string(r.Mode)), slog.String("by", "token endpoint"))
	return plain, nil
}
