package clientauth

import (
	"context"
	"errors"
	"net"
	"net/http"
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
	maxBlocked = 10_000
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
	// (httpapi.Limits.AddrKey). Nil: the TCP peer's host.
	Key func(*http.Request) string
	// HashSlots bounds the bcrypt checks run at once; 0 means
	// DefaultHashSlots.
	HashSlots int
	// HashWait bounds how long a check waits for a slot; 0 means
	// DefaultHashWait.
	HashWait time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Guard bounds what failed client authentication may cost, whoever sends
// it: the failures of each client address are limited (Failures), and the
// bcrypt checks of secrets run at most HashSlots at a time, so wrong
// secrets cannot take the processors from everyone else. A Registry uses
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
// for the address's next token. Successes cost nothing and never touch the limit's store:
// the poll path pays no round trip for it.
type Guard struct {
	failures limit.Keyed
	key      func(*http.Request) string
	now      func() time.Time
	slots    chan struct{}
	wait     time.Duration

	mu      sync.Mutex
	blocked map[string]time.Time // address key → refused until
	nblock  atomic.Int32         // len(blocked), read without mu
	hashes  atomic.Int64         // bcrypt checks run, dummy ones included
}

// NewGuard returns a Guard of o.
func NewGuard(o GuardOptions) *Guard {
	g := &Guard{failures: o.Failures, key: o.Key, now: o.Now, wait: o.HashWait, blocked: map[string]time.Time{}}
	if g.key == nil {
		g.key = peerKey
	}
	if g.now == nil {
		g.now = time.Now
	}
	if g.wait <= 0 {
		g.wait = DefaultHashWait
	}
	n := o.HashSlots
	if n <= 0 {
		n = DefaultHashSlots()
	}
	g.slots = make(chan struct{}, n)
	return g
}

// peerKey is the TCP peer's host.
func peerKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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

// attempt is one client authentication as the Guard sees it: the
// failure-limit key of its address, and the client_id it names ("" until
// known, or when it names none).
type attempt struct{ addr, id string }

// named sets the client_id of a and returns a.
func (a *attempt) named(id string) *attempt {
	a.id = id
	return a
}

// blockKey is the key of a in the Guard's memory of refusals: a refusal
// holds back the client_id it named from its address, not every client on
// that address.
func (a *attempt) blockKey() string { return a.addr + "\x00" + a.id }

// addr returns the failure-limit key of r; "" for a nil Guard.
func (g *Guard) addr(r *http.Request) string {
	if g == nil {
		return ""
	}
	return g.key(r)
}

// admit refuses, before anything is checked, the client_id of an attempt
// from an address whose failures were found used up by a failure naming
// it. It reads only this instance's memory of refusals: the shared limit
// is asked (by reserve and charge) only on the way to a failure.
func (g *Guard) admit(at *attempt) error {
	if g == nil || g.nblock.Load() == 0 {
		return nil
	}
	key := at.blockKey()
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	until, ok := g.blocked[key]
	switch {
	case !ok:
		return nil
	case !now.Before(until):
		delete(g.blocked, key)
		g.nblock.Store(int32(len(g.blocked)))
		return nil
	}
	return tooManyFailures(until.Sub(now))
}

// block remembers that key is refused for wait.
func (g *Guard) block(key string, wait time.Duration) {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.blocked) >= maxBlocked {
		for k, until := range g.blocked {
			if !now.Before(until) {
				delete(g.blocked, k)
			}
		}
	}
	// Full of live refusals: this one is still refused by the limit
	// itself at its next failure, only not before its next check.
	if len(g.blocked) < maxBlocked {
		g.blocked[key] = now.Add(wait)
	}
	g.nblock.Store(int32(len(g.blocked)))
}

// reserve takes a failure token of key before a bcrypt check; settle(true)
// keeps it (the check failed), settle(false) gives it back. An empty
// bucket is a *LimitError.
func (g *Guard) reserve(ctx context.Context, at *attempt) (settle func(failed bool), err error) {
	if g == nil || g.failures == nil {
		return func(bool) {}, nil
	}
	ok, wait, settle, err := limit.Reserve(ctx, g.failures, at.addr, g.now)
	if err != nil {
		// limit.FailOpen reports and hides these; a bare Keyed that fails
		// is allowed the same way.
		return settle, nil
	}
	if !ok {
		g.block(at.blockKey(), wait)
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
	ok, wait, err := g.failures.Allow(ctx, at.addr, g.now())
	if err != nil || ok {
		return failure
	}
	g.block(at.blockKey(), wait)
	return tooManyFailures(wait)
}

// hash runs check, a bcrypt comparison, in one of the slots, waiting at
// most the Guard's wait for one; errBusy when none came free, ctx's error
// when it ends first. A nil Guard runs check at once.
func (g *Guard) hash(ctx context.Context, check func()) error {
	if g == nil {
		check()
		return nil
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
	case <-t.C:
		return errBusy
	case <-ctx.Done():
		return &ciba.Error{Code: ciba.CodeTemporarilyUnavailable, Description: "the request was cancelled", Err: ctx.Err()}
	}
	defer func() { <-g.slots }()
	g.hashes.Add(1)
	check()
	return nil
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
