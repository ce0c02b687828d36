package ciba

import (
	"context"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/fault"
)

// Store errors. Backends wrap them with context; callers test with errors.Is.
// They are the failures of internal/fault, which leaves that must not import
// this package (keys, upstream/idp) share.
var (
	// ErrNotFound: no record with that key (never existed, or collected).
	ErrNotFound = fault.ErrNotFound
	// ErrExists: Create found a record with the same key.
	ErrExists = fault.ErrExists
	// ErrUnavailable: the backend cannot be reached; the caller answers
	// temporarily_unavailable and changes nothing.
	ErrUnavailable = fault.ErrUnavailable
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
// Poll pacing (Poll, UpdatePace) is soft state: it is shared between
// instances where the backend is shared, but need not survive a crash. It
// is kept apart so the poll hot path never waits for a disk.
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

	// Poll answers one poll of request id (CIBA §11, RFC 8628 §3.5) in one
	// step: it reads the request, checks that q's client may poll it
	// (PollQuery.Check: client, kind, certificate) and only then paces it
	// by q.Rule (PollQuery.RuleFor), so that a poll of another client's
	// request, of another grant's or over another certificate changes
	// nothing. An unknown id is PollUnknown, not an error; an error is the
	// backend's failure (ErrUnavailable).
	Poll(ctx context.Context, id string, q PollQuery) (PollResult, error)

	// ListSweep calls fn with what the dispatcher's sweep reads of every
	// stored request until fn returns false; fn must not keep v or its
	// strings. Like ListRequests it may or may not see changes made while
	// it runs, and fn may call the Store.
	ListSweep(ctx context.Context, fn func(v *SweepView) bool) error
	// ListDue calls fn, until it returns false, with the ids of requests
	// that have a pending delivery whose NextAttempt is at or before t, as
	// far as the backend indexes them for other instances: an instance
	// that claimed an attempt and died leaves a lease that runs out with
	// nobody to look at it again but the other instances, which find it
	// here within seconds rather than at the next full sweep. It may list
	// a bounded number per call, and a request that changed since (the
	// dispatcher claims each attempt by compare-and-set anyway). A backend
	// no other process shares (memory, embedded) lists nothing.
	ListDue(ctx context.Context, t time.Time, fn func(id string) bool) error

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
	// SwapRecord replaces the record under kind and key by new if it holds
	// old, atomically: the compare-and-set of records (two callers that
	// read the same old value never both swap). A nil old means absent
	// (or expired); a nil new deletes the record. What SwapRecord writes
	// has no lifetime. It reports whether it swapped: a record that holds
	// another value is (false, nil), and nothing changed.
	// It backs records that change in place (passkey credentials).
	SwapRecord(ctx context.Context, kind, key string, old, new []byte) (bool, error)

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

// PollView is the part of a request that a poll reads: who may poll it,
// whether it is still pending, and its first interval. Backends that can
// read it without building the whole request (memory, embedded, the Redis
// poll cache) answer a poll of a pending request without allocating.
type PollView struct {
	ClientID  string
	Kind      Kind
	Status    Status
	ExpiresAt time.Time
	// Interval is the poll interval first announced.
	Interval time.Duration
	// CertThumbprint is AuthRequest.CertThumbprint.
	CertThumbprint string
	// DPoPJKT is AuthRequest.DPoPJKT.
	DPoPJKT string
}

// Expired reports whether the request is past its lifetime at now.
func (v *PollView) Expired(now time.Time) bool { return !now.Before(v.ExpiresAt) }

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

// SweepViewOf sets v to the SweepView of r: what ListSweep gives for it.
func SweepViewOf(r *AuthRequest, v *SweepView) {
	*v = SweepView{ID: r.ID, Mode: r.Mode, Status: r.Status, ExpiresAt: r.ExpiresAt,
		NoticeDue:   r.UserNotice.Pending() || r.ClientNotice.Pending(),
		RelayActive: r.Relay.Active(), RelayNextPoll: r.Relay.NextPoll, HasResult: r.Result != nil}
}

// PaceRule is the pacing decision of one poll (CIBA §7.3, §11; RFC 8628
// §3.5) as data, so that a remote store can apply it in the round trip that
// reads the request (Store.Poll). It is the one definition of the rule: the
// Redis backend's Lua is tested against it on generated cases.
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

// PollQuery is what a poll asks of Store.Poll: who polls, for which grant,
// over which certificate, and the pace rule to apply if it may.
type PollQuery struct {
	// ClientID is the authenticated client that polls.
	ClientID string
	// Kind is the grant polled with: a request of another kind is
	// PollUnknown.
	Kind Kind
	// Cert is the x5t#S256 of the client certificate the connection
	// presents ("" for none): a request bound to another certificate is
	// PollWrongCert.
	Cert string
	// JKT is the thumbprint of the token request's DPoP proof key ("" for
	// none): a request bound to another key, or to none when a proof was
	// sent, is PollWrongKey or PollUnboundKey, whatever its state (RFC 9449
	// §10).
	JKT string
	// Rule paces the poll; the backend completes it with PollQuery.RuleFor.
	Rule PaceRule
	// CheckOnly asks for the checks and the state only: nothing is paced
	// and a pending request is PollPending with no hold (a push client's
	// poll, which is refused whatever the pace).
	CheckOnly bool
	// Current asks for the request as the store holds it now, not as this
	// instance last knew it (a ping client's poll after the ping, which
	// must see the result the ping announced). Backends without such
	// knowledge ignore it.
	Current bool
}

// PollOutcome is what a poll found.
type PollOutcome uint8

// The outcomes of Store.Poll.
const (
	// PollUnknown: no such request, or one of another client or another
	// grant: one outcome, so that ids cannot be probed. Nothing changed.
	PollUnknown PollOutcome = iota
	// PollWrongCert: the request is bound to another client certificate
	// than PollQuery.Cert (RFC 8705 §3). Nothing changed.
	PollWrongCert
	// PollWrongKey: the request is bound to a DPoP key (RFC 9449 §10) and
	// the poll carried no proof or a proof of another key. Nothing changed.
	PollWrongKey
	// PollUnboundKey: the poll carried a DPoP proof but the request is not
	// bound to a DPoP key, so its tokens are not. Nothing changed.
	PollUnboundKey
	// PollSlow: the request is pending and the poll was early (slow_down);
	// its interval has grown by the rule's step.
	PollSlow
	// PollPending: the request is pending and the poll on time; Hold is
	// how long to hold it open (0: answer at once).
	PollPending
	// PollDone: the request is not pending (decided, redeemed, expired or
	// past its lifetime); Request is it, to finish or redeem.
	PollDone
)

// PollResult is the answer of Store.Poll.
type PollResult struct {
	Outcome PollOutcome
	// Hold is, for PollPending, how long the poll may be held open: the
	// rule's Hold, cut at the request's expiry.
	Hold time.Duration
	// Request is, for PollDone, the request as read. It may be shared:
	// it must not be modified.
	Request *AuthRequest
	// Interval is, for PollSlow, the request's interval once grown
	// (Pace.Interval after PaceRule.Apply): how long the client must now
	// wait before it polls again.
	Interval time.Duration
}

// Check is what a backend decides about a poll from the poll view v of the
// request, before any pacing: PollUnknown for another client's or kind's
// request, PollWrongCert for a request bound to another certificate,
// PollWrongKey or PollUnboundKey for a poll whose DPoP key is not the
// request's (q.JKT, AuthRequest.DPoPJKT), PollDone for a request that is not pending or is past its lifetime at
// q.Rule.Now, else PollPending: the poll is to be paced (unless CheckOnly).
func (q *PollQuery) Check(v *PollView) PollOutcome {
	switch {
	case v.ClientID != q.ClientID || v.Kind != q.Kind:
		return PollUnknown
	case v.CertThumbprint != "" && v.CertThumbprint != q.Cert:
		return PollWrongCert
	case v.DPoPJKT != q.JKT && v.DPoPJKT != "":
		return PollWrongKey
	case v.DPoPJKT != q.JKT:
		return PollUnboundKey
	case v.Status != StatusPending || v.Expired(q.Rule.Now):
		return PollDone
	}
	return PollPending
}

// RuleFor is q.Rule completed for the pending request of view v: a request
// polled for the first time starts at the interval it announced. (The
// hold in the pace state is the rule's, even past the request's expiry:
// a poll after the expiry is answered expired_token whatever its pace, and
// the hold's release clears it; PollResult.Hold is cut at the expiry.)
func (q *PollQuery) RuleFor(v *PollView) PaceRule {
	r := q.Rule
	r.Initial = v.Interval
	return r
}

// HoldFor is how long an on-time poll of a request expiring at expires may
// be held: the rule's Hold, cut at the expiry.
func (q *PollQuery) HoldFor(expires time.Time) time.Duration {
	return max(min(q.Rule.Hold, expires.Sub(q.Rule.Now)), 0)
}

// PollViewOf is the poll view of request r.
func PollViewOf(r *AuthRequest) PollView {
	return PollView{ClientID: r.ClientID, Kind: r.Kind, Status: r.Status, ExpiresAt: r.ExpiresAt,
		Interval: r.Interval, CertThumbprint: r.CertThumbprint, DPoPJKT: r.DPoPJKT}
}
