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
// claimed by a compare-and-set that moves NextAttempt past the end of the
// attempt (a lease: no other worker, here or on another instance, sends it
// meanwhile), then sent under a deadline that ends before the lease does,
// then its outcome recorded: done, or the next attempt after a backoff.
// Within one instance a delivery is also attempted by one worker at a time
// (inflight). So a message goes out twice only when an attempt's outcome
// could not be recorded: the process died or was stopped for longer than
// leaseMargin between the send and the record, or the store stayed
// unreachable (docs/design.md, "Deliveries").

const (
	firstBackoff  = time.Second
	maxBackoff    = time.Minute
	maxInFlight   = 64
	sweepInterval = time.Minute
	// takeoverInterval is how often the dispatcher asks the store (ListDue)
	// for deliveries whose lease ran out; takeoverGrace is how long after
	// the lease ran out it takes them, so that the instance that holds the
	// lease, which looks at exactly that time, goes first.
	takeoverInterval = 2 * time.Second
	takeoverGrace    = time.Second
	// drainTimeout is how long Run, once its context is done, lets the
	// deliveries under way finish before it cancels them.
	drainTimeout = 10 * time.Second
	// leaseMargin is how much longer the claim on an attempt lasts than
	// the attempt may (Config.DeliveryTimeout): the time to record its
	// outcome, with slack for a process short of CPU.
	leaseMargin = 5 * time.Second
	// doneTries bounds the writes that record a delivered message: a
	// record lost to a store blip would have the message sent again once
	// the lease runs out.
	doneTries = 4
)

// Dispatcher delivers notices: the channel's message to the user and the
// ping or push to the client, each recorded in the request before it is
// sent and claimed under a lease (see above); it also expires requests that
// ping and push clients must hear of, removes requests past their grace
// time, takes over deliveries of instances that died, and starts the
// Relayer's upstream polls when they are due. Its dependencies: the store,
// the Channels in their order (none when none), the Notifier, the client registry, the
// Sealer (push bodies), the Observer, the tracing hook, the callback
// tokens, the Relayer and the schedule the other parts add to.
type Dispatcher struct {
	base
	// channels are tried in order for the user's message (Channel); none
	// when no channel is configured.
	channels      []Channel
	notifier      Notifier
	clients       func(id string) (*Client, bool)
	sealer        Sealer
	observer      Observer
	startSpan     func(ctx context.Context, name, traceParent string) (context.Context, func(err error))
	callbackToken func(approvalID string) string
	relayer       *Relayer
	sched         *scheduler
	// sending is the set of deliveries this instance is attempting: it
	// never runs two attempts of one delivery at once.
	sending inflight
}

// Run delivers due messages, records expiries that ping and push clients
// must hear of, and removes requests past their grace time, until ctx is
// done; it then lets the deliveries under way finish, for up to 10 s. It
// first resumes what the store holds from before a restart.
func (dp *Dispatcher) Run(ctx context.Context) error {
	// With no other dispatcher on the store, no lease found at the start
	// is live: an attempt claimed before is one a crash cut short, to be
	// made again now rather than when its lease runs out.
	if err := dp.sweep(ctx, dp.cfg.SoleDispatcher); err != nil {
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
	// A store no other process shares lists nothing due (Store.ListDue);
	// asking it costs nothing, and SoleDispatcher says there is no one
	// to take over from.
	var takeover <-chan time.Time
	if !dp.cfg.SoleDispatcher {
		t := time.NewTicker(takeoverInterval)
		defer t.Stop()
		takeover = t.C
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for _, id := range dp.sched.take(dp.now()) {
			dp.process(work, id, func(f func()) {
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
		if next := dp.sched.next(); !next.IsZero() {
			wait = max(next.Sub(dp.now()), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-dp.sched.kick:
		case <-timer.C:
		case <-sweep.C:
			if err := dp.sweep(ctx, false); err != nil {
				dp.log.Warn("sweep", slog.Any("error", err))
			}
		case <-takeover:
			dp.takeOver(ctx)
		}
	}
}

// sweep schedules every request that has something to deliver or to expire,
// and deletes requests past their grace time. With reclaim (at the start,
// Config.SoleDispatcher) every message still to be sent is due at once,
// whatever lease or backoff its last attempt left.
func (dp *Dispatcher) sweep(ctx context.Context, reclaim bool) error {
	now := dp.now()
	var gone, owed []string
	visit := func(v *SweepView) bool {
		switch act, at := dp.sweepAction(v, now); act {
		case sweepDelete:
			gone = append(gone, strings.Clone(v.ID))
		case sweepLook:
			dp.sched.add(strings.Clone(v.ID), at)
			if reclaim && v.NoticeDue {
				owed = append(owed, strings.Clone(v.ID))
			}
		}
		return true
	}
	err := dp.store.ListSweep(ctx, visit)
	for _, id := range gone {
		if err := dp.store.DeleteRequest(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
			dp.log.Warn("delete expired request", slog.Any("error", err))
		}
	}
	for _, id := range owed {
		if _, err := dp.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
			changed := false
			for _, d := range []*Delivery{&r.UserNotice, &r.ClientNotice} {
				if d.Pending() && d.NextAttempt.After(now) {
					d.NextAttempt, changed = now, true
				}
			}
			if !changed {
				return errNothingToDo
			}
			return nil
		}); err != nil && !errors.Is(err, errNothingToDo) && !errors.Is(err, ErrNotFound) {
			dp.log.Warn("dispatch: resume delivery", slog.Any("error", err))
		}
	}
	dp.sched.wake()
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
func (dp *Dispatcher) sweepAction(v *SweepView, now time.Time) (sweepAct, time.Time) {
	switch {
	case now.After(v.ExpiresAt.Add(dp.cfg.ExpiredGrace)):
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
func (dp *Dispatcher) takeOver(ctx context.Context) {
	now := dp.now()
	err := dp.store.ListDue(ctx, now.Add(-takeoverGrace), func(id string) bool {
		dp.sched.add(id, now)
		return true
	})
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.Is(err, ErrUnavailable):
		dp.log.Debug("dispatch: list due deliveries", slog.Any("error", err))
	default:
		dp.log.Warn("dispatch: list due deliveries", slog.Any("error", err))
	}
}

// process looks at one request: expires it, clears tokens nobody may take
// any more, claims due deliveries and hands them to spawn, and schedules the
// next look.
func (dp *Dispatcher) process(ctx context.Context, id string, spawn func(func())) {
	now := dp.now()
	r, err := dp.store.GetRequest(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return
	}
	if err != nil {
		dp.log.Warn("dispatch: get request", slog.Any("error", err))
		dp.sched.add(id, now.Add(firstBackoff))
		return
	}
	if r.Status == StatusPending && r.Expired(now) || r.Status == StatusApproved && r.Expired(now) && r.Result != nil {
		r, err = dp.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
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
			r, err = dp.store.GetRequest(ctx, id)
		}
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				dp.log.Warn("dispatch: expire", slog.Any("error", err))
				dp.sched.add(id, now.Add(firstBackoff))
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
			dp.finishDelivery(ctx, id, userNotice, "the request is no longer pending")
		} else if len(dp.channels) == 0 {
			// Created by an instance with a channel, on a store shared with
			// this one, which has none: the message is the others' to send.
			// Look again when the request expires, to close the delivery.
			later(r.ExpiresAt)
		} else if at := r.UserNotice.NextAttempt; at.After(now) {
			later(at)
		} else {
			spawn(func() { dp.attempt(ctx, id, userNotice) })
		}
	}
	if r.ClientNotice.Pending() {
		if at := r.ClientNotice.NextAttempt; at.After(now) {
			later(at)
		} else {
			spawn(func() { dp.attempt(ctx, id, clientNotice) })
		}
	}
	if rs := r.Relay; rs.Active() && r.Status == StatusPending && !r.Expired(now) && !rs.NextPoll.IsZero() {
		if rs.NextPoll.After(now) {
			later(rs.NextPoll)
		} else {
			spawn(func() { dp.relayer.pollUpstream(ctx, id, now) })
		}
	}
	if !r.Expired(now) && (r.Status == StatusPending && r.Mode != ModePoll || r.Status == StatusApproved && r.Result != nil) {
		later(r.ExpiresAt) // expire it, or drop its tokens, then
	}
	if !next.IsZero() {
		dp.sched.add(id, next)
	}
}

var errNothingToDo = errors.New("nothing to do")

// attempt claims one attempt of a delivery and makes it. It runs in a
// worker, so that claims (each a durable write) of many requests proceed
// together rather than one at a time in the Run loop; the claim's
// compare-and-set keeps two workers from sending the same message.
func (dp *Dispatcher) attempt(ctx context.Context, id string, k deliveryKind) {
	if k == userNotice && len(dp.channels) == 0 {
		return // not this instance's to send (process)
	}
	if !dp.sending.start(id, k) {
		// Under way here already: that attempt records its outcome and
		// schedules what follows.
		return
	}
	defer dp.sending.end(id, k)
	// The deadline is set before the claim, the lease from the claim's
	// clock reading after it: the lease outlasts the send by leaseMargin
	// however long the claim's write took.
	deadline := time.Now().Add(dp.cfg.DeliveryTimeout)
	claimed, ok := dp.claim(ctx, id, k)
	if !ok {
		return
	}
	dp.sched.schedule(id, k.of(claimed).NextAttempt) // the lease's end: look again should the outcome go unrecorded
	dp.deliver(ctx, claimed, k, deadline)
}

// claim takes the lease on the next attempt of a delivery, if it is due:
// it counts the attempt and moves NextAttempt to the end of the lease,
// Config.DeliveryTimeout plus leaseMargin from now. The clock is read here,
// not when the request was looked at: a worker that waited for CPU or for
// the store must not take a lease that has already run out.
func (dp *Dispatcher) claim(ctx context.Context, id string, k deliveryKind) (*AuthRequest, bool) {
	now := dp.now()
	lease := dp.cfg.DeliveryTimeout + leaseMargin
	r, err := dp.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		d := k.of(r)
		if !d.Pending() || d.NextAttempt.After(now) {
			return errNothingToDo
		}
		d.Attempts++
		d.NextAttempt = now.Add(lease)
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNothingToDo) && !errors.Is(err, ErrNotFound) {
			dp.log.Warn("dispatch: claim", slog.String("delivery", k.String()), slog.Any("error", err))
			dp.sched.add(id, now.Add(firstBackoff))
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

// deliver makes one claimed attempt, cut off at deadline, and records its
// outcome.
func (dp *Dispatcher) deliver(ctx context.Context, r *AuthRequest, k deliveryKind, deadline time.Time) {
	kind := string(r.Mode)
	if k == userNotice {
		kind = "channel"
		if len(dp.channels) == 1 {
			kind = dp.channels[0].Name()
		}
	}
	ctx, end := dp.startSpan(ctx, "deliver "+kind, r.TraceParent)
	var err error
	defer func() { end(err) }()
	attempts := k.of(r).Attempts
	client, ok := dp.clients(r.ClientID)
	if !ok {
		dp.finishDelivery(ctx, r.ID, k, "the client is no longer registered")
		return
	}
	send, cancel := context.WithDeadline(ctx, deadline)
	var tries []Try
	switch {
	case k == userNotice:
		tries, err = dp.sendChannels(send, r, client)
	case r.Mode == ModePing:
		err = dp.notifier.Ping(send, client.NotificationEndpoint, r.NotificationToken, r.ID)
	case r.Mode == ModePush:
		var body []byte
		body, err = dp.pushBody(r)
		if err == nil {
			err = dp.notifier.Push(send, client.NotificationEndpoint, r.NotificationToken, body)
		}
	}
	cancel()
	if dp.observer != nil && k != userNotice {
		dp.observer.ObserveDelivery(kind, err)
	}
	attrs := []slog.Attr{slog.String("delivery", k.String()), slog.String("client_id", r.ClientID), slog.Int("attempt", attempts)}
	if err != nil {
		dp.log.LogAttrs(ctx, slog.LevelWarn, "delivery failed", append(attrs, slog.Any("error", err))...)
		next := dp.now().Add(backoff(attempts))
		if _, uerr := dp.store.UpdateRequest(ctx, r.ID, func(cur *AuthRequest) error {
			d := k.of(cur)
			if d.Done || d.Attempts != attempts {
				// Delivered meanwhile, or claimed again after this
				// attempt's lease ran out: not this attempt's to record.
				return errNothingToDo
			}
			d.LastError = err.Error()
			d.addTries(tries)
			d.NextAttempt = next // the lease ends: retry after the backoff
			deadline := cur.ExpiresAt.Add(dp.cfg.ExpiredGrace)
			if k == clientNotice && cur.Status == StatusApproved || k == userNotice {
				deadline = cur.ExpiresAt
			}
			if !d.NextAttempt.Before(deadline) {
				d.Done = true // give up: the request is over
			}
			return nil
		}); uerr != nil && !errors.Is(uerr, errNothingToDo) && !errors.Is(uerr, ErrNotFound) {
			// The lease stays until it runs out; the look at its end
			// (attempt) retries then.
			dp.log.Warn("dispatch: record failure", slog.Any("error", uerr))
		}
		dp.sched.schedule(r.ID, next)
		return
	}
	dp.log.LogAttrs(ctx, slog.LevelInfo, "delivered", attrs...)
	// The receiver has it: record that even when the shutdown's drain ran
	// out meanwhile, or it would be sent again after the restart. A failed
	// record is tried again (it is idempotent) while the lease has time.
	done := context.WithoutCancel(ctx)
	for try := 1; ; try++ {
		ferr := dp.finishDelivery(done, r.ID, k, "", tries...)
		if ferr == nil || try == doneTries {
			break
		}
		time.Sleep(time.Duration(try) * 100 * time.Millisecond)
	}
}

// sendChannels sends the user's message through the first channel that
// takes it (Channel): a channel that cannot reach the user, or fails for
// good, hands over to the next; any other failure ends the attempt. It
// returns a Try per channel it asked, and nil once one took the message;
// otherwise the error of the last channel asked, or a summary when every
// channel was passed over.
func (dp *Dispatcher) sendChannels(ctx context.Context, r *AuthRequest, client *Client) ([]Try, error) {
	n := Notice{
		ApproveURL:    dp.cfg.ApproveURL(r.ApprovalID),
		CallbackURL:   dp.cfg.CallbackURL,
		CallbackToken: dp.callbackToken(r.ApprovalID),
	}
	tries := make([]Try, 0, len(dp.channels))
	var passed []string
	for _, ch := range dp.channels {
		err := ch.Send(ctx, r, client, n)
		t := Try{At: dp.now(), Channel: ch.Name(), Outcome: "delivered"}
		var perm *PermanentError
		switch {
		case err == nil:
		case errors.Is(err, ErrUnreachable):
			t.Outcome = "unreachable"
		case errors.As(err, &perm):
			t.Outcome = "permanent"
		default:
			t.Outcome = "failed"
		}
		if err != nil {
			t.Error = err.Error()
		}
		tries = append(tries, t)
		if dp.observer != nil && (t.Outcome != "unreachable" || len(dp.channels) == 1) {
			dp.observer.ObserveDelivery(ch.Name(), err)
		}
		if err == nil {
			return tries, nil
		}
		if t.Outcome == "failed" || len(dp.channels) == 1 {
			return tries, err
		}
		passed = append(passed, ch.Name()+": "+err.Error())
		if ctx.Err() != nil {
			return tries, err
		}
	}
	return tries, errors.New("no channel took the message (" + strings.Join(passed, "; ") + ")")
}

// finishDelivery marks a delivery done; for a push of tokens the request is
// redeemed at the same time, so the tokens are handed out exactly once. It
// returns the store's error, nil when the delivery is done (or gone).
func (dp *Dispatcher) finishDelivery(ctx context.Context, id string, k deliveryKind, why string, tries ...Try) error {
	_, err := dp.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		d := k.of(r)
		if d.Done {
			return errNothingToDo
		}
		d.Done, d.LastError = true, why
		d.addTries(tries)
		if k == clientNotice && r.Mode == ModePush && r.Status == StatusApproved && why == "" {
			r.Status = StatusRedeemed
			r.Result = nil
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNothingToDo) && !errors.Is(err, ErrNotFound) {
		dp.log.Warn("dispatch: finish delivery", slog.Any("error", err))
		return err
	}
	return nil
}

// pushBody is the push-mode callback body (CIBA §10.3.1, §12): the token
// response with auth_req_id, or a push error.
func (dp *Dispatcher) pushBody(r *AuthRequest) ([]byte, error) {
	if r.Status == StatusApproved {
		plain, err := dp.sealer.Open(r.Result, []byte(r.ID))
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
