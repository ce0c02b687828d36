package ciba

import (
	"context"
	"errors"
	"time"
)

// Store errors. Backends wrap them with context; callers test with errors.Is.
var (
	// ErrNotFound: no record with that key (never existed, or collected).
	ErrNotFound = errors.New("not found")
	// ErrExists: Create found a record with the same key.
	ErrExists = errors.New("already exists")
	// ErrUnavailable: the backend cannot be reached; the caller answers
	// temporarily_unavailable and changes nothing.
	ErrUnavailable = errors.New("store unavailable")
)

// Store keeps authentication requests and the few other records cibaproxy
// needs. Every change of an existing record is a compare-and-set: Update
// runs the updater on a copy of the current record inside the backend's
// transaction and writes its result only if nobody changed the record in
// between (backends may run the updater more than once). A nil error from
// Create or Update means the change is durable to the backend's promise
// (for the embedded store: on disk, surviving kill -9).
//
// Updaters must not change ID or ApprovalID, must not call the Store, and
// must not keep the request after they return. A write whose context is
// already cancelled changes nothing. An ErrUnavailable from a failed commit
// is in doubt: the write may still appear after a restart. After Close,
// every call fails with ErrUnavailable; Close may be called twice.
//
// Poll pacing (UpdatePace) is soft state: it is shared between instances
// where the backend is shared, but need not survive a crash. It is kept apart
// so the poll hot path never waits for a disk.
type Store interface {
	// CreateRequest stores a new request; ErrExists if its ID or ApprovalID
	// is taken.
	CreateRequest(ctx context.Context, r *AuthRequest) error
	// GetRequest returns a copy of the request with the given auth_req_id.
	GetRequest(ctx context.Context, id string) (*AuthRequest, error)
	// GetRequestByApprovalID returns the request whose ApprovalID is id.
	GetRequestByApprovalID(ctx context.Context, id string) (*AuthRequest, error)
	// UpdateRequest applies fn to a copy of the request and stores the result
	// atomically. If fn returns an error nothing is written and that error is
	// returned. The stored result is returned.
	UpdateRequest(ctx context.Context, id string, fn func(*AuthRequest) error) (*AuthRequest, error)
	// DeleteRequest removes the request and its pace state.
	DeleteRequest(ctx context.Context, id string) error
	// ListRequests calls fn for a copy of every stored request until fn
	// returns false. It may or may not see changes made while it runs, and
	// fn may call the Store. It is for startup recovery, garbage collection
	// and admin tools, not for hot paths.
	ListRequests(ctx context.Context, fn func(*AuthRequest) bool) error

	// UpdatePace applies fn to the pace state of request id atomically. A
	// stored request with no pace state yet gets a zero Pace; an unknown id
	// is ErrNotFound; an error from fn writes nothing. fn must not keep the
	// pointer.
	UpdatePace(ctx context.Context, id string, fn func(*Pace) error) (Pace, error)

	// Subscribe returns a channel that receives a value after the request
	// with the given id is changed by UpdateRequest or DeleteRequest (on any
	// instance sharing the store), and a function to stop listening, which
	// may be called twice. The channel holds one value (changes coalesce) and
	// is never closed. Subscribe before reading the request to never miss a
	// change.
	Subscribe(id string) (<-chan struct{}, func())

	// PutRecord stores an opaque record under a namespaced key with a
	// lifetime (0 = forever; negative is an error); ErrExists if it is
	// present and unexpired. kind is non-empty and has no NUL byte. Expired
	// records behave as absent (ErrNotFound).
	// It backs jti replay checks, refresh tokens and server keys.
	PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
	// GetRecord returns a record stored by PutRecord.
	GetRecord(ctx context.Context, kind, key string) ([]byte, error)
	// TakeRecord returns and deletes a record atomically: two callers never
	// both get it.
	TakeRecord(ctx context.Context, kind, key string) ([]byte, error)

	// Close releases the backend.
	Close() error
}

// Pace is the poll-pacing state of one request: when the client may poll
// next, the interval it was told, and whether a poll is being held open.
// Backends may keep its durations and times to the millisecond.
type Pace struct {
	// Interval is the current minimum interval; it grows on slow_down.
	Interval time.Duration `json:"interval"`
	// NotBefore is the earliest time the next poll is on time.
	NotBefore time.Time `json:"not_before,omitzero"`
	// HoldUntil is set while a long poll for the request is held open: a
	// second poll before it overlaps the first (CIBA §7.3 forbids that). A
	// time rather than a flag, so a crashed holder cannot block the request.
	HoldUntil time.Time `json:"hold_until,omitzero"`
}

// PollView is the part of a request that a poll of a pending request
// reads: who may poll it, whether it is still pending, and its pace.
type PollView struct {
	ClientID  string
	Kind      Kind
	Status    Status
	ExpiresAt time.Time
	// Interval is the poll interval first announced.
	Interval time.Duration
	// CertThumbprint is AuthRequest.CertThumbprint.
	CertThumbprint string
}

// Expired reports whether the request is past its lifetime at now.
func (v *PollView) Expired(now time.Time) bool { return !now.Before(v.ExpiresAt) }

// PollViewer is implemented by stores that can read a request's PollView
// without building the whole request (memory, embedded): the poll of a
// pending request, the path clients load most, then allocates nothing for
// the read. An error wraps ErrNotFound when there is no such request.
type PollViewer interface {
	PeekPoll(ctx context.Context, id string) (PollView, error)
}

// PollCache is implemented by remote stores (Redis) that remember, in each
// instance, the poll view and pace of the pending requests the instance has
// polled, and hear of every change to them: a poll of a request known here
// to be pending is paced here, without a round trip, and the pace is shared
// with the other instances shortly after. What an instance knows lags the
// store by at most the few moments a change message takes, and the store
// says when it cannot vouch for that (the change channel down or late):
// the poll then goes to the store.
type PollCache interface {
	// CachedPoll returns the poll view of request id as this instance last
	// read it; ok is false when it has none. It does no I/O.
	CachedPoll(id string) (v PollView, ok bool)
	// PaceCached applies rule to the pace of pending request id as this
	// instance knows it and reports whether the poll was early
	// (slow_down), if it can answer for the request; answered is false
	// when it cannot (nothing known, knowledge not vouched for, or a poll
	// to hold, rule.Hold > 0, which the store must pace), and nothing is
	// changed. It does no I/O.
	PaceCached(id string, rule PaceRule) (slow, answered bool)
}

// PaceApplier is implemented by stores that apply a PaceRule to a
// request's pace state themselves (memory, embedded), which spares the
// poll path the closure UpdatePace would need. Same contract as UpdatePace
// with rule.Apply as the updater.
type PaceApplier interface {
	ApplyPace(ctx context.Context, id string, rule PaceRule) (slow bool, err error)
}

// SweepView is what the dispatcher's periodic sweep reads of a request to
// decide whether it needs a look (sweepAction).
type SweepView struct {
	ID        string
	Mode      DeliveryMode
	Status    Status
	ExpiresAt time.Time
	// NoticeDue is set while the user's or the client's message is still to
	// be sent (Delivery.Pending).
	NoticeDue bool
	// RelayActive and RelayNextPoll are RelayState.Active and NextPoll.
	RelayActive   bool
	RelayNextPoll time.Time
	// HasResult is set while sealed tokens are kept (Result != nil).
	HasResult bool
}

// SweepViewOf sets v to the SweepView of r: what a SweepLister gives for it.
func SweepViewOf(r *AuthRequest, v *SweepView) {
	*v = SweepView{ID: r.ID, Mode: r.Mode, Status: r.Status, ExpiresAt: r.ExpiresAt,
		NoticeDue:   r.UserNotice.Pending() || r.ClientNotice.Pending(),
		RelayActive: r.Relay.Active(), RelayNextPoll: r.Relay.NextPoll, HasResult: r.Result != nil}
}

// SweepLister is implemented by stores that can list what the sweep reads
// of every request without building each request (memory, embedded): with
// a million pending requests, building them all every minute is seconds of
// CPU and as much garbage. fn must not keep v or its strings.
type SweepLister interface {
	ListSweep(ctx context.Context, fn func(v *SweepView) bool) error
}

// PaceRule is the pacing decision of one poll (CIBA §7.3, §11; RFC 8628
// §3.5) as data, so that a remote store can apply it in the round trip that
// reads the request (PacedReader).
type PaceRule struct {
	// Now is the time of the poll.
	Now time.Time
	// Tolerance forgives a poll this much before its interval has passed.
	Tolerance time.Duration
	// Step is added to the interval at each early poll (slow_down).
	Step time.Duration
	// Hold is how long an on-time poll will be held open (long polling),
	// 0 for none.
	Hold time.Duration
	// Initial is the interval of a request polled for the first time.
	Initial time.Duration
}

// Apply applies the rule to the pace state p and reports whether the poll
// is early (slow_down): before the interval has passed, or while another
// poll is held. An early poll grows the interval; an on-time one starts
// its hold, or the next interval.
func (rule PaceRule) Apply(p *Pace) (slow bool) {
	if p.Interval == 0 {
		p.Interval = rule.Initial
	}
	slow = rule.Now.Before(p.HoldUntil) || rule.Now.Add(rule.Tolerance).Before(p.NotBefore)
	switch {
	case slow:
		p.Interval += rule.Step
		p.NotBefore = rule.Now.Add(p.Interval)
	case rule.Hold > 0:
		p.HoldUntil = rule.Now.Add(rule.Hold)
	default:
		p.NotBefore = rule.Now.Add(p.Interval)
	}
	return slow
}

// Release ends the hold of the poll the rule paced (at rule.Now), answered
// at end still pending: the next poll is due an interval after the held
// poll was made, and never before its answer. A client that waited out a
// hold as long as the interval may poll again at once (the hold was its
// wait); one whose hold was cut short (it went away, the request is about to
// expire, a hold shorter than the interval) still waits out the interval
// from its poll. A due time already later (an overlapping poll's slow_down
// meanwhile) stays.
func (rule PaceRule) Release(p *Pace, end time.Time) {
	p.HoldUntil = time.Time{}
	due := rule.Now.Add(p.Interval)
	if end.After(due) {
		due = end
	}
	if due.After(p.NotBefore) {
		p.NotBefore = due
	}
}

// PacedReader is implemented by stores that can read a request and apply a
// PaceRule to its pace state in one step, where UpdatePace after
// GetRequest would cost round trips to a remote store (Redis). The rule is
// applied whatever the request's state; a caller ignores the pace of a
// request that is not pending. The request may be shared: it must not be
// modified.
type PacedReader interface {
	ReadAndPace(ctx context.Context, id string, rule PaceRule) (r *AuthRequest, slow bool, err error)
}

// behind finds an optional interface T of the store st: st itself, or the
// store a wrapper (metrics) wraps, found through its Unwrap() Store.
func behind[T any](st Store) (T, bool) {
	for range 8 {
		if t, ok := st.(T); ok {
			return t, true
		}
		w, ok := st.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		st = w.Unwrap()
	}
	var zero T
	return zero, false
}
