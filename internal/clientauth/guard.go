package clientauth

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// Defaults of a Guard.
const (
	// DefaultHashWait is how long a bcrypt check waits for a slot before
	// the request is answered temporarily_unavailable: long enough for a
	// legitimate client's first check to get through a queue of attackers'
	// (a cost-10 check takes about 60 ms of one core), short enough that
	// requests do not pile up behind a flood.
	DefaultHashWait = time.Second
	// maxBlocked bounds the addresses a Guard remembers as refused.
	maxBlocked = 100_000
	// maxBlockedIDs is how many client_ids of one address are remembered
	// as refused one by one; past it the whole address is (an address
	// that fails with that many client_ids sprays them).
	maxBlockedIDs = 8
)

// DefaultHashSlots is the number of bcrypt checks a Guard runs at once
// when given none: half the processors, at least one, so that a flood of
// wrong secrets leaves the other half to the requests that need no bcrypt
// (polls, and clients whose secret was verified already).
func DefaultHashSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// GuardOptions configure a Guard.
type GuardOptions struct {
	// Failures counts the failed client authentications of each client
	// address (limit.Keyed: in memory, or shared by every instance in
	// Redis; wrap it in limit.FailOpen). Nil: no limit.
	Failures limit.Keyed
	// Key returns the Failures key of the address a request comes from:
	// the TCP peer or, behind a trusted proxy, the address it forwards
	// (httpapi.Limits.AddrKey). Nil: the TCP peer's IPv4 address, or its
	// IPv6 /64 (see peerKey).
	Key func(*http.Request) string
	// Slots are the slots the bcrypt checks run in, when they are shared
	// with other bcrypt checks (the app shares one pool with the password
	// and user-code checks of the local upstream). Nil: the Guard's own,
	// of HashSlots and HashWait.
	Slots *limit.Slots
	// HashSlots bounds the bcrypt checks run at once, without Slots; 0
	// means DefaultHashSlots.
	HashSlots int
	// HashWait bounds how long a check waits for a slot, without Slots; 0
	// means DefaultHashWait.
	HashWait time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Guard bounds what failed client authentication may cost, whoever sends
// it: the failures of each client address are limited (Failures), and the
// bcrypt checks of secrets run in a bounded number of slots (Slots, which
// the app shares with the password and user-code checks; or HashSlots), so
// wrong secrets cannot take the processors from everyone else. A Registry uses
// it when its Guard field is set; one Guard serves every registry the
// clients are reloaded into, so its counts survive a reload. A Guard is
// safe for concurrent use.
//
// The failure limit is charged so that N requests in flight at once cost
// N: a request that will run a bcrypt check reserves its token before the
// check (limit.Reserve) and gives it back on success; a failure found
// without one (an assertion, a certificate, a plain secret) is charged
// when it is found. A failure that finds its address's bucket empty is
// answered 429 with Retry-After ({"error":"slow_down"}), and from then on
// the client_id it named is refused from that address by this instance
// before any check — even with its correct secret — until a token is back,
// so guessing a client's secret is bounded too (at most one check more
// than the limit per refill). Other client_ids on the address (clients
// behind one NAT) are still checked: with a plain secret, or a hashed one
// verified already, they are served; one that needs a bcrypt check waits
// for the address's next token, and an address refused with more than
// maxBlockedIDs client_ids is refused whole. Successes cost nothing and
// never touch the limit's store: the poll path pays no round trip for it.
type Guard struct {
	failures limit.Keyed
	key      func(*http.Request) string
	now      func() time.Time
	slots    *limit.Slots

	blocked refusals
	hashes  atomic.Int64 // bcrypt checks run, dummy ones included
}

// refusals is a Guard's memory of the attempts it refused: by address,
// the client_ids refused and until when, or the whole address once it was
// refused with more than maxBlockedIDs of them. It holds at most
// maxBlocked addresses, so that no sequence of requests makes it grow
// without bound; a live refusal is never dropped to make room, a new one
// is not remembered while it is full (the limit itself still refuses that
// address's next failure).
type refusals struct {
	mu     sync.RWMutex
	addrs  map[string]*refused
	n      atomic.Int32 // len(addrs), read without mu
	purged time.Time    // when a full memory was last swept
}

type refused struct {
	all time.Time            // the whole address is refused until all
	ids map[string]time.Time // client_id → refused until
}

// until is when the refusal of id from r ends; the zero time if none.
func (r *refused) until(id string) time.Time {
	u := r.ids[id]
	if r.all.After(u) {
		return r.all
	}
	return u
}

// sweep forgets what has ended by now, and reports whether r is empty.
func (r *refused) sweep(now time.Time) bool {
	for id, u := range r.ids {
		if !now.Before(u) {
			delete(r.ids, id)
		}
	}
	return len(r.ids) == 0 && !now.Before(r.all)
}

// check returns how long attempt at remains refused; 0 when it is not.
// While a refusal lives, every authentication comes here: the address key
// is worked out outside the lock, and the look-up takes only the read
// lock; the write lock is for forgetting refusals that have ended.
func (m *refusals) check(at *attempt, now time.Time) time.Duration {
	if m.n.Load() == 0 {
		return 0
	}
	key := at.addr()
	m.mu.RLock()
	r := m.addrs[key]
	var u time.Time
	if r != nil {
		u = r.until(at.id)
	}
	m.mu.RUnlock()
	switch {
	case r == nil:
		return 0
	case now.Before(u):
		return u.Sub(now)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.addrs[key]; r != nil && r.sweep(now) {
		delete(m.addrs, key)
		m.n.Store(int32(len(m.addrs)))
	}
	return 0
}

// add refuses attempt at until now+wait.
func (m *refusals) add(at *attempt, now time.Time, wait time.Duration) {
	key := at.addr()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.addrs == nil {
		m.addrs = map[string]*refused{}
	}
	r := m.addrs[key]
	if r == nil {
		if len(m.addrs) >= maxBlocked && now.Sub(m.purged) >= time.Second {
			// A sweep of a full memory at most once a second: refusals
			// last seconds, and a sweep reads every address.
			m.purged = now
			for a, r := range m.addrs {
				if r.sweep(now) {
					delete(m.addrs, a)
				}
			}
		}
		if len(m.addrs) >= maxBlocked {
			// Still full of live refusals: this attempt is refused by the
			// limit itself at its next failure, only not before it.
			m.n.Store(int32(len(m.addrs)))
			return
		}
		r = &refused{ids: map[string]time.Time{}}
		m.addrs[key] = r
	}
	until := now.Add(wait)
	r.sweep(now)
	switch {
	case r.ids[at.id].After(until):
	case len(r.ids) < maxBlockedIDs || r.ids[at.id] != (time.Time{}):
		r.ids[at.id] = until
	case until.After(r.all):
		r.all = until
	}
	m.n.Store(int32(len(m.addrs)))
}

// NewGuard returns a Guard of o.
func NewGuard(o GuardOptions) *Guard {
	g := &Guard{failures: o.Failures, key: o.Key, now: o.Now, slots: o.Slots}
	if g.key == nil {
		g.key = peerKey
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.slots == nil {
		n, wait := o.HashSlots, o.HashWait
		if n <= 0 {
			n = DefaultHashSlots()
		}
		if wait <= 0 {
			wait = DefaultHashWait
		}
		g.slots = limit.NewSlots(n, wait)
	}
	return g
}

// peerKey is the failure-limit key of the TCP peer: its IPv4 address, or
// its IPv6 /64. One subscriber usually holds a whole /64 and can send from
// any address in it, so a key of the full IPv6 address would give it a
// fresh failure budget for every address it picks. It is the key
// httpapi.Limits.AddrKey gives behind no proxy.
func peerKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if a = a.Unmap().WithZone(""); a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// LimitError is a client authentication refused without being checked:
// the address used up its failures (429, slow_down), or no bcrypt slot
// came free in time (503, temporarily_unavailable). Wait is the
// Retry-After to answer with.
type LimitError struct {
	Err  *ciba.Error
	Wait time.Duration
}

// Error implements error.
func (e *LimitError) Error() string { return e.Err.Error() }

// Unwrap returns the protocol error.
func (e *LimitError) Unwrap() error { return e.Err }

// RetryAfter is how long the client should wait, at least a second.
func (e *LimitError) RetryAfter() time.Duration { return max(e.Wait, time.Second) }

func tooManyFailures(wait time.Duration) *LimitError {
	return &LimitError{Wait: wait, Err: &ciba.Error{Code: ciba.CodeSlowDown, Status: http.StatusTooManyRequests,
		Description: "too many failed client authentications from this address; retry after the time in Retry-After"}}
}

// errBusy: every bcrypt slot stayed taken for the whole wait.
var errBusy = &LimitError{Wait: time.Second, Err: &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Status: http.StatusServiceUnavailable,
	Description: "client authentication is busy; retry after the time in Retry-After"}}

// attempt is one client authentication as the Guard sees it: the request
// and the client_id it names ("" until known, or when it names none). The
// failure-limit key of its address is worked out only when needed, so a
// success with nothing refused costs nothing.
type attempt struct {
	g   *Guard
	req *http.Request
	id  string
	key string // the address key, once worked out
}

// named sets the client_id of a and returns a.
func (a *attempt) named(id string) *attempt {
	a.id = id
	return a
}

// addr is the failure-limit key of the address of a.
func (a *attempt) addr() string {
	if a.key == "" {
		a.key = a.g.key(a.req)
	}
	return a.key
}

// admit refuses, before anything is checked, the client_id of an attempt
// from an address whose failures were found used up by a failure naming
// it. It reads only this instance's memory of refusals: the shared limit
// is asked (by reserve and charge) only on the way to a failure.
func (g *Guard) admit(at *attempt) error {
	if g == nil {
		return nil
	}
	if wait := g.blocked.check(at, g.now()); wait > 0 {
		return tooManyFailures(wait)
	}
	return nil
}

// reserve takes a failure token of key before a bcrypt check; settle(true)
// keeps it (the check failed), settle(false) gives it back. An empty
// bucket is a *LimitError.
func (g *Guard) reserve(ctx context.Context, at *attempt) (settle func(failed bool), err error) {
	if g == nil || g.failures == nil {
		return func(bool) {}, nil
	}
	ok, wait, settle, err := limit.Reserve(ctx, g.failures, at.addr(), g.now)
	if err != nil {
		// limit.FailOpen reports and hides these; a bare Keyed that fails
		// is allowed the same way.
		return settle, nil
	}
	if !ok {
		g.blocked.add(at, g.now(), wait)
		return nil, tooManyFailures(wait)
	}
	return settle, nil
}

// charge counts a failure found without a bcrypt check: it returns failure
// itself, or a *LimitError when the address has no failure left.
func (g *Guard) charge(ctx context.Context, at *attempt, failure error) error {
	if g == nil || g.failures == nil {
		return failure
	}
	ok, wait, err := g.failures.Allow(ctx, at.addr(), g.now())
	if err != nil || ok {
		return failure
	}
	g.blocked.add(at, g.now(), wait)
	return tooManyFailures(wait)
}

// hash runs check, a bcrypt comparison, in one of the slots (limit.Slots),
// waiting at most their wait for one; errBusy when none came free, ctx's error
// when it ends first. A nil Guard runs check at once.
func (g *Guard) hash(ctx context.Context, check func()) error {
	if g == nil {
		check()
		return nil
	}
	err := g.slots.Run(ctx, func() {
		g.hashes.Add(1)
		check()
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, limit.ErrBusy):
		return errBusy
	default:
		return &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: "the request was cancelled", Err: err}
	}
}

// Hashes is the number of bcrypt checks run so far, those of unknown
// clients (the decoy) included.
func (g *Guard) Hashes() int64 {
	if g == nil {
		return 0
	}
	return g.hashes.Load()
}

// isFailure reports whether err is a failed client authentication the
// limit counts: invalid_client, not a refusal of the limit itself.
func isFailure(err error) bool {
	var a *AuthError
	var l *LimitError
	return errors.As(err, &a) && !errors.As(err, &l)
}
