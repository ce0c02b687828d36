package ciba

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Delivery scheduling. Every outbound message (the channel's message to the
// user, the ping or push to the client) is recorded in the request as a
// Delivery before it is sent, so a restart resumes it. Each attempt is first
// claimed by a compare-and-set that moves NextAttempt forward (a lease: no
// other worker sends it meanwhile), then sent, then its outcome recorded.

const (
	firstBackoff  = time.Second
	maxBackoff    = time.Minute
	maxInFlight   = 64
	sweepInterval = time.Minute
	// takeoverInterval is how often the dispatcher asks a DueLister store
	// for deliveries whose lease ran out; takeoverGrace is how long after
	// the lease ran out it takes them, so that the instance that holds the
	// lease, which looks at exactly that time, goes first.
	takeoverInterval = 2 * time.Second
	takeoverGrace    = time.Second
	// drainTimeout is how long Run, once its context is done, lets the
	// deliveries under way finish before it cancels them.
	drainTimeout = 10 * time.Second
)

// DueLister is implemented by stores shared between instances that index the
// requests with a pending delivery by their next attempt. An instance that
// claimed an attempt and died leaves a lease that runs out with nobody to
// look at it again but the other instances: with a DueLister they find it
// within seconds (takeoverInterval) rather than at the next full sweep.
type DueLister interface {
	// ListDue calls fn, until it returns false, with the ids of requests
	// that have a pending delivery whose NextAttempt is at or before t. It
	// may list a bounded number per call, and a request that changed
	// since; the dispatcher claims each attempt by compare-and-set anyway.
	ListDue(ctx context.Context, t time.Time, fn func(id string) bool) error
}

// scheduler is the set of requests the dispatcher must look at, with the
// earliest time each needs a look.
type scheduler struct {
	mu  sync.Mutex
	due map[string]time.Time
}

func (q *scheduler) add(id string, at time.Time) {
	q.mu.Lock()
	if cur, ok := q.due[id]; !ok || at.Before(cur) {
		q.due[id] = at
	}
	q.mu.Unlock()
}

// take removes and returns the ids due at now.
func (q *scheduler) take(now time.Time) (ids []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for id, at := range q.due {
		if !at.After(now) {
			ids = append(ids, id)
			delete(q.due, id)
		}
	}
	return ids
}

// next returns the earliest scheduled time, zero when nothing is scheduled.
func (q *scheduler) next() (next time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, at := range q.due {
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// wake asks the dispatcher to look at its schedule now.
func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// schedule asks the dispatcher to look at request id at time at.
func (s *Service) schedule(id string, at time.Time) {
	s.sched.add(id, at)
	s.wake()
}

// Run delivers due messages, records expiries that ping and push clients
// must hear of, and removes requests past their grace time, until ctx is
// done; it then lets the deliveries under way finish, for up to 10 s. It
// first resumes what the store holds from before a restart.
func (s *Service) Run(ctx context.Context) error {
	if err := s.sweep(ctx); err != nil {
		return err
	}
	// The work runs under a context that outlives ctx by up to
	// drainTimeout: at shutdown the deliveries under way finish and their
	// outcome is recorded, so that a receiver sees a message twice only if
	// the process dies (a cut attempt is sent again after the restart).
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	defer func() {
		drained := make(chan struct{})
		go func() { wg.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(drainTimeout):
			cancelWork()
			<-drained
		}
	}()
	sem := make(chan struct{}, maxInFlight)
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	var takeover <-chan time.Time
	due, shared := behind[DueLister](s.d.Store)
	if shared {
		t := time.NewTicker(takeoverInterval)
		defer t.Stop()
		takeover = t.C
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for _, id := range s.sched.take(s.now()) {
			s.process(work, id, func(f func()) {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					f()
				}()
			})
		}
		// Processing schedules the next looks, so ask only now.
		wait := time.Hour
		if next := s.sched.next(); !next.IsZero() {
			wait = max(next.Sub(s.now()), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-timer.C:
		case <-sweep.C:
			if err := s.sweep(ctx); err != nil {
				s.log.Warn("sweep", slog.Any("error", err))
			}
		case <-takeover:
			s.takeOver(ctx, due)
		}
	}
}

// sweep schedules every request that has something to deliver or to expire,
// and deletes requests past their grace time.
func (s *Service) sweep(ctx context.Context) error {
	now := s.now()
	var gone []string
	visit := func(v *SweepView) bool {
		switch act, at := s.sweepAction(v, now); act {
		case sweepDelete:
			gone = append(gone, strings.Clone(v.ID))
		case sweepLook:
			s.sched.add(strings.Clone(v.ID), at)
		}
		return true
	}
	var err error
	if sl, ok := behind[SweepLister](s.d.Store); ok {
		err = sl.ListSweep(ctx, visit)
	} else {
		var v SweepView
		err = s.d.Store.ListRequests(ctx, func(r *AuthRequest) bool {
			SweepViewOf(r, &v)
			return visit(&v)
		})
	}
	for _, id := range gone {
		if err := s.d.Store.DeleteRequest(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			s.log.Warn("delete expired request", slog.Any("error", err))
		}
	}
	s.wake()
	return err
}

// sweepAct is what the sweep does with a request.
type sweepAct int

const (
	sweepNone   sweepAct = iota
	sweepDelete          // past its grace time
	sweepLook            // schedule a look
)

// sweepAction is what the sweep does with a request at now, and for
// sweepLook when: a message to send, an upstream poll, an expiry to
// announce, tokens nobody took to drop.
func (s *Service) sweepAction(v *SweepView, now time.Time) (sweepAct, time.Time) {
	switch {
	case now.After(v.ExpiresAt.Add(s.cfg.ExpiredGrace)):
		return sweepDelete, time.Time{}
	case v.NoticeDue:
		return sweepLook, now
	case v.Status == StatusPending && v.RelayActive && !v.RelayNextPoll.IsZero():
		return sweepLook, v.RelayNextPoll
	case v.Status == StatusPending && v.Mode != ModePoll:
		return sweepLook, v.ExpiresAt
	case v.Status == StatusApproved && v.HasResult:
		return sweepLook, v.ExpiresAt // drop tokens nobody took
	}
	return sweepNone, time.Time{}
}

// takeOver schedules the deliveries that due lists as past their lease by
// more than takeoverGrace: their instance died or is stuck. A store outage
// is logged at debug level only, as the next tick tries again and /readyz
// reports it.
func (s *Service) takeOver(ctx context.Context, due DueLister) {
	now := s.now()
	err := due.ListDue(ctx, now.Add(-takeoverGrace), func(id string) bool {
		s.sched.add(id, now)
		return true
	})
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.Is(err, ErrUnavailable):
		s.log.Debug("dispatch: list due deliveries", slog.Any("error", err))
	default:
		s.log.Warn("dispatch: list due deliveries", slog.Any("error", err))
	}
}

// process looks at one request: expires it, clears tokens nobody may take
// any more, claims due deliveries and hands them to spawn, and schedules the
// next look.
func (s *Service) process(ctx context.Context, id string, spawn func(func())) {
	now := s.now()
	r, err := s.d.Store.GetRequest(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return
	}
	if err != nil {
		s.log.Warn("dispatch: get request", slog.Any("error", err))
		s.sched.add(id, now.Add(firstBackoff))
		return
	}
	if r.Status == StatusPending && r.Expired(now) || r.Status == StatusApproved && r.Expired(now) && r.Result != nil {
		r, err = s.d.Store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
			if r.Status == StatusApproved && r.Expired(now) {
				// Tokens never taken: drop them (they must not outlive the request).
				r.Result = nil
				if r.ClientNotice.Pending() {
					r.ClientNotice.Done, r.ClientNotice.LastError = true, "the request expired before delivery"
				}
				return nil
			}
			if r.Mode == ModePoll {
				return errNothingToDo
			}
			return r.Expire(now)
		})
		if errors.Is(err, errNothingToDo) {
			r, err = s.d.Store.GetRequest(ctx, id)
		}
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				s.log.Warn("dispatch: expire", slog.Any("error", err))
				s.sched.add(id, now.Add(firstBackoff))
			}
			return
		}
	}
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	if r.UserNotice.Pending() {
		if r.Status != StatusPending || r.Expired(now) {
			s.finishDelivery(ctx, id, userNotice, "the request is no longer pending")
		} else if s.d.Channel == nil {
			// Created by an instance with a channel, on a store shared with
			// this one, which has none: the message is the others' to send.
			// Look again when the request expires, to close the delivery.
			later(r.ExpiresAt)
		} else if at := r.UserNotice.NextAttempt; at.After(now) {
			later(at)
		} else {
			spawn(func() { s.attempt(ctx, id, userNotice, now) })
		}
	}
	if r.ClientNotice.Pending() {
		if at := r.ClientNotice.NextAttempt; at.After(now) {
			later(at)
		} else {
			spawn(func() { s.attempt(ctx, id, clientNotice, now) })
		}
	}
	if rs := r.Relay; rs.Active() && r.Status == StatusPending && !r.Expired(now) && !rs.NextPoll.IsZero() {
		if rs.NextPoll.After(now) {
			later(rs.NextPoll)
		} else {
			spawn(func() { s.pollUpstream(ctx, id, now) })
		}
	}
	if !r.Expired(now) && (r.Status == StatusPending && r.Mode != ModePoll || r.Status == StatusApproved && r.Result != nil) {
		later(r.ExpiresAt) // expire it, or drop its tokens, then
	}
	if !next.IsZero() {
		s.sched.add(id, next)
	}
}

var errNothingToDo = errors.New("nothing to do")

type deliveryKind int

const (
	userNotice deliveryKind = iota
	clientNotice
)

func (k deliveryKind) of(r *AuthRequest) *Delivery {
	if k == userNotice {
		return &r.UserNotice
	}
	return &r.ClientNotice
}

func (k deliveryKind) String() string {
	if k == userNotice {
		return "channel"
	}
	return "client notification"
}

// attempt claims one attempt of a delivery and makes it. It runs in a
// worker, so that claims (each a durable write) of many requests proceed
// together rather than one at a time in the Run loop; the claim's
// compare-and-set keeps two workers from sending the same message.
func (s *Service) attempt(ctx context.Context, id string, k deliveryKind, now time.Time) {
	if k == userNotice && s.d.Channel == nil {
		return // not this instance's to send (process)
	}
	claimed, ok := s.claim(ctx, id, k, now)
	if !ok {
		return
	}
	s.schedule(id, k.of(claimed).NextAttempt) // look again when a retry would be due
	s.deliver(ctx, claimed, k)
}

// claim takes the lease on the next attempt of a delivery: it counts the
// attempt and moves NextAttempt to when a retry would be due.
func (s *Service) claim(ctx context.Context, id string, k deliveryKind, now time.Time) (*AuthRequest, bool) {
	r, err := s.d.Store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		d := k.of(r)
		if !d.Pending() || d.NextAttempt.After(now) {
			return errNothingToDo
		}
		d.Attempts++
		d.NextAttempt = now.Add(backoff(d.Attempts))
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNothingToDo) && !errors.Is(err, ErrNotFound) {
			s.log.Warn("dispatch: claim", slog.String("delivery", k.String()), slog.Any("error", err))
			s.sched.add(id, now.Add(firstBackoff))
		}
		return nil, false
	}
	return r, true
}

// backoff is the wait after the n-th failed attempt: 1 s, 2 s, 4 s … 1 min.
func backoff(n int) time.Duration {
	d := firstBackoff
	for i := 1; i < n && d < maxBackoff; i++ {
		d *= 2
	}
	return min(d, maxBackoff)
}

// deliver makes one claimed attempt and records its outcome.
func (s *Service) deliver(ctx context.Context, r *AuthRequest, k deliveryKind) {
	kind := string(r.Mode)
	if k == userNotice {
		kind = s.d.Channel.Name()
	}
	ctx, end := s.d.StartSpan(ctx, "deliver "+kind, r.TraceParent)
	var err error
	defer func() { end(err) }()
	client, ok := s.d.Clients(r.ClientID)
	switch {
	case !ok:
		s.finishDelivery(ctx, r.ID, k, "the client is no longer registered")
		return
	case k == userNotice:
		err = s.d.Channel.Send(ctx, r, client, Notice{
			ApproveURL:    s.cfg.ApproveURL(r.ApprovalID),
			CallbackURL:   s.cfg.CallbackURL,
			CallbackToken: s.CallbackToken(r.ApprovalID),
		})
	case r.Mode == ModePing:
		err = s.d.Notifier.Ping(ctx, client.NotificationEndpoint, r.NotificationToken, r.ID)
	case r.Mode == ModePush:
		var body []byte
		body, err = s.pushBody(r)
		if err == nil {
			err = s.d.Notifier.Push(ctx, client.NotificationEndpoint, r.NotificationToken, body)
		}
	}
	if s.d.Observer != nil {
		s.d.Observer.ObserveDelivery(kind, err)
	}
	attrs := []slog.Attr{slog.String("delivery", k.String()), slog.String("client_id", r.ClientID), slog.Int("attempt", k.of(r).Attempts)}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "delivery failed", append(attrs, slog.Any("error", err))...)
		if _, uerr := s.d.Store.UpdateRequest(ctx, r.ID, func(cur *AuthRequest) error {
			d := k.of(cur)
			d.LastError = err.Error()
			deadline := cur.ExpiresAt.Add(s.cfg.ExpiredGrace)
			if k == clientNotice && cur.Status == StatusApproved || k == userNotice {
				deadline = cur.ExpiresAt
			}
			if !d.NextAttempt.Before(deadline) {
				d.Done = true // give up: the request is over
			}
			return nil
		}); uerr != nil && !errors.Is(uerr, ErrNotFound) {
			s.log.Warn("dispatch: record failure", slog.Any("error", uerr))
		}
		s.schedule(r.ID, k.of(r).NextAttempt)
		return
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "delivered", attrs...)
	// The receiver has it: record that even when the shutdown's drain ran
	// out meanwhile, or it would be sent again after the restart.
	s.finishDelivery(context.WithoutCancel(ctx), r.ID, k, "")
}

// finishDelivery marks a delivery done; for a push of tokens the request is
// redeemed at the same time, so the tokens are handed out exactly once.
func (s *Service) finishDelivery(ctx context.Context, id string, k deliveryKind, why string) {
	_, err := s.d.Store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		d := k.of(r)
		if d.Done {
			return errNothingToDo
		}
		d.Done, d.LastError = true, why
		if k == clientNotice && r.Mode == ModePush && r.Status == StatusApproved && why == "" {
			r.Status = StatusRedeemed
			r.Result = nil
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNothingToDo) && !errors.Is(err, ErrNotFound) {
		s.log.Warn("dispatch: finish delivery", slog.Any("error", err))
	}
}

// pushBody is the push-mode callback body (CIBA §10.3.1, §12): the token
// response with auth_req_id, or a push error.
func (s *Service) pushBody(r *AuthRequest) ([]byte, error) {
	if r.Status == StatusApproved {
		plain, err := s.d.Sealer.Open(r.Result, []byte(r.ID))
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := json.Unmarshal(plain, &m); err != nil {
			return nil, err
		}
		m["auth_req_id"] = r.ID
		return json.Marshal(m)
	}
	e := map[string]string{"auth_req_id": r.ID}
	switch r.Status {
	case StatusDenied:
		e["error"], e["error_description"] = string(CodeAccessDenied), "the user denied the request"
		if r.DenyReason != "" {
			e["error_description"] = SafeDescription(r.DenyReason)
		}
	case StatusExpired:
		e["error"], e["error_description"] = string(CodeExpiredToken), "the request expired before the user answered"
	default:
		e["error"], e["error_description"] = string(CodeTransactionFailed), "the request could not be completed"
	}
	return json.Marshal(e)
}
