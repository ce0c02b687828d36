package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// ownQuery is the query of a poll of r by its own client, for its own
// grant, over the certificate it is bound to, paced by rule. It asks for
// the store's current state (Current), so that the pace the test reads
// back is the one the poll left: an instance's own knowledge of a shared
// store (the Redis poll cache) shares a grown interval later.
func ownQuery(r *ciba.AuthRequest, rule ciba.PaceRule) ciba.PollQuery {
	return ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, JKT: r.DPoPJKT, Rule: rule, Current: true}
}

// pollRule is a pace rule at now with a 5 s step, no tolerance and no hold.
func pollRule(now time.Time) ciba.PaceRule {
	return ciba.PaceRule{Now: now, Step: 5 * time.Second}
}

// mustPoll polls or fails the test.
func mustPoll(t *testing.T, s ciba.Store, id string, q ciba.PollQuery) ciba.PollResult {
	t.Helper()
	res, err := s.Poll(t.Context(), id, q)
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	return res
}

// wantOutcome fails the test unless res has outcome want.
func wantOutcome(t *testing.T, what string, res ciba.PollResult, want ciba.PollOutcome) {
	t.Helper()
	if res.Outcome != want {
		t.Fatalf("%s: outcome %d (%+v), want %d", what, res.Outcome, res, want)
	}
}

// paceOf returns r's pace state as the store holds it.
func paceOf(t *testing.T, s ciba.Store, id string) ciba.Pace {
	t.Helper()
	p, err := s.UpdatePace(t.Context(), id, func(*ciba.Pace) error { return nil })
	if err != nil {
		t.Fatalf("UpdatePace: %v", err)
	}
	return p
}

// newPollable returns a stored pending CIBA request bound to no
// certificate, which a store may remember for its polls.
func newPollable(t *testing.T, s ciba.Store) *ciba.AuthRequest {
	r := NewRequest()
	r.Kind, r.CertThumbprint = ciba.KindCIBA, ""
	mustCreate(t, s, r)
	return r
}

func testPollUnknown(t *testing.T, s ciba.Store) {
	res := mustPoll(t, s, randomID(), ciba.PollQuery{ClientID: "client-1", Rule: pollRule(time.Now())})
	wantOutcome(t, "Poll of an unknown id", res, ciba.PollUnknown)
	if res.Request != nil {
		t.Errorf("Poll of an unknown id returned a request")
	}
}

func testPollPace(t *testing.T, s ciba.Store) {
	t0 := time.Now().Truncate(time.Millisecond)
	for _, current := range []bool{true, false} {
		for _, r := range []*ciba.AuthRequest{NewRequest(), newPollable(t, s)} {
			if r.Kind == ciba.KindDevice {
				mustCreate(t, s, r)
			}
			var local ciba.Pace
			v := ciba.PollViewOf(r)
			// On time, early, early within the tolerance, on time, on
			// time within the tolerance, on time again.
			for i, at := range []time.Duration{0, time.Second, 9 * time.Second, 10 * time.Second, 26 * time.Second, 40 * time.Second, time.Minute} {
				q := ownQuery(r, ciba.PaceRule{Now: t0.Add(at), Step: 5 * time.Second, Tolerance: 500 * time.Millisecond})
				q.Current = current
				want := q.RuleFor(&v).Apply(&local)
				res := mustPoll(t, s, r.ID, q)
				if got := res.Outcome == ciba.PollSlow; got != want || res.Outcome != ciba.PollSlow && res.Outcome != ciba.PollPending {
					t.Errorf("kind %q, current %v: poll %d at +%v: %+v, the rule says slow %v", r.Kind, current, i, at, res, want)
				}
			}
			// Without Current, what the store holds may lag what the
			// poll's instance knows (ownQuery).
			if got := paceOf(t, s, r.ID); current && !samePace(got, local) {
				t.Errorf("kind %q: pace %+v, the rule's %+v", r.Kind, got, local)
			}
		}
	}
}

func testPollSlowGrows(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	now := time.Now()
	wantOutcome(t, "first poll", mustPoll(t, s, r.ID, ownQuery(r, pollRule(now))), ciba.PollPending)
	if p := paceOf(t, s, r.ID); p.Interval != r.Interval {
		t.Fatalf("interval after the first poll %v, want the request's %v", p.Interval, r.Interval)
	}
	res := mustPoll(t, s, r.ID, ownQuery(r, pollRule(now.Add(time.Second))))
	wantOutcome(t, "early poll", res, ciba.PollSlow)
	if p := paceOf(t, s, r.ID); p.Interval != r.Interval+5*time.Second {
		t.Fatalf("interval after slow_down %v, want %v", p.Interval, r.Interval+5*time.Second)
	}
	// The result says the interval now (the slow_down's Retry-After),
	// grown again by a second early poll.
	if res.Interval != r.Interval+5*time.Second {
		t.Errorf("PollResult.Interval after slow_down %v, want %v", res.Interval, r.Interval+5*time.Second)
	}
	res = mustPoll(t, s, r.ID, ownQuery(r, pollRule(now.Add(2*time.Second))))
	wantOutcome(t, "second early poll", res, ciba.PollSlow)
	if res.Interval != r.Interval+10*time.Second {
		t.Errorf("PollResult.Interval after a second slow_down %v, want %v", res.Interval, r.Interval+10*time.Second)
	}
}

func testPollHeld(t *testing.T, s ciba.Store) {
	r := newPollable(t, s)
	now := time.Now()
	rule := pollRule(now)
	rule.Hold = time.Hour // longer than the request lives
	res := mustPoll(t, s, r.ID, ownQuery(r, rule))
	wantOutcome(t, "on-time held poll", res, ciba.PollPending)
	if want := r.ExpiresAt.Sub(now); res.Hold <= 0 || res.Hold > want {
		t.Errorf("hold %v, want it cut at the expiry, %v", res.Hold, want)
	}
	// Another poll, on time by the interval, while the first is held.
	rule.Now = now.Add(r.Interval + time.Second)
	wantOutcome(t, "poll during the hold", mustPoll(t, s, r.ID, ownQuery(r, rule)), ciba.PollSlow)
	// Without a hold, the answer is not held.
	r2 := newPollable(t, s)
	if res := mustPoll(t, s, r2.ID, ownQuery(r2, pollRule(now))); res.Outcome != ciba.PollPending || res.Hold != 0 {
		t.Errorf("poll without a hold: %+v, want pending with no hold", res)
	}
}

// testForeign polls r with q, which must be refused as want, and checks
// that the pace of r is unchanged: an early poll by its own client right
// after is still the first, on time.
func testForeign(t *testing.T, s ciba.Store, r *ciba.AuthRequest, q ciba.PollQuery, want ciba.PollOutcome) {
	t.Helper()
	now := time.Now()
	wantOutcome(t, "own first poll", mustPoll(t, s, r.ID, ownQuery(r, pollRule(now))), ciba.PollPending)
	before := paceOf(t, s, r.ID)
	for range 3 {
		q.Rule = pollRule(now.Add(time.Millisecond))
		res := mustPoll(t, s, r.ID, q)
		wantOutcome(t, "foreign poll", res, want)
		if res.Request != nil {
			t.Fatal("a foreign poll returned the request")
		}
	}
	if after := paceOf(t, s, r.ID); !samePace(after, before) {
		t.Fatalf("a foreign poll changed the pace from %+v to %+v", before, after)
	}
}

func testPollForeign(t *testing.T, s ciba.Store) {
	for _, r := range []*ciba.AuthRequest{newPollable(t, s), NewRequest()} {
		if r.Kind == ciba.KindDevice {
			mustCreate(t, s, r)
		}
		q := ownQuery(r, ciba.PaceRule{})
		q.ClientID = "client-2"
		testForeign(t, s, r, q, ciba.PollUnknown)
	}
}

func testPollKind(t *testing.T, s ciba.Store) {
	r := newPollable(t, s)
	q := ownQuery(r, ciba.PaceRule{})
	q.Kind = ciba.KindDevice
	testForeign(t, s, r, q, ciba.PollUnknown)
	d := NewRequest() // a device request
	mustCreate(t, s, d)
	q = ownQuery(d, ciba.PaceRule{})
	q.Kind = ciba.KindCIBA
	testForeign(t, s, d, q, ciba.PollUnknown)
}

func testPollCert(t *testing.T, s ciba.Store) {
	for _, cert := range []string{"", "another-thumbprint"} {
		r := NewRequest()
		r.Kind = ciba.KindCIBA
		mustCreate(t, s, r)
		q := ownQuery(r, ciba.PaceRule{})
		q.Cert = cert
		testForeign(t, s, r, q, ciba.PollWrongCert)
	}
	// An unbound request may be polled over any certificate.
	u := newPollable(t, s)
	q := ownQuery(u, pollRule(time.Now()))
	q.Cert = "any"
	wantOutcome(t, "poll of an unbound request over a certificate", mustPoll(t, s, u.ID, q), ciba.PollPending)
}

func testPollKey(t *testing.T, s ciba.Store) {
	const key = "dpop-key-thumbprint"
	for _, kind := range []ciba.Kind{ciba.KindCIBA, ciba.KindDevice} {
		for _, presented := range []string{"", "another-key"} {
			r := NewRequest()
			r.Kind, r.CertThumbprint, r.DPoPJKT = kind, "", key
			mustCreate(t, s, r)
			q := ownQuery(r, ciba.PaceRule{})
			q.JKT = presented
			testForeign(t, s, r, q, ciba.PollWrongKey)
			// Decided, it is still refused, and not handed out.
			if _, err := s.UpdateRequest(t.Context(), r.ID, func(r *ciba.AuthRequest) error {
				now := time.Now()
				return r.Approve(now, now, []byte("sealed"))
			}); err != nil {
				t.Fatal(err)
			}
			q.Rule = pollRule(time.Now())
			res := mustPoll(t, s, r.ID, q)
			wantOutcome(t, "poll of the approved request with the wrong key", res, ciba.PollWrongKey)
			if res.Request != nil {
				t.Fatal("a poll with the wrong key returned the request")
			}
			res = mustPoll(t, s, r.ID, ownQuery(r, pollRule(time.Now())))
			wantOutcome(t, "poll of the approved request with its key", res, ciba.PollDone)
		}
		// An unbound request polled with a proof: its tokens are not bound.
		u := NewRequest()
		u.Kind, u.CertThumbprint, u.DPoPJKT = kind, "", ""
		mustCreate(t, s, u)
		q := ownQuery(u, ciba.PaceRule{})
		q.JKT = key
		testForeign(t, s, u, q, ciba.PollUnboundKey)
	}
}

func testPollCheckOnly(t *testing.T, s ciba.Store) {
	r := newPollable(t, s)
	now := time.Now()
	wantOutcome(t, "first poll", mustPoll(t, s, r.ID, ownQuery(r, pollRule(now))), ciba.PollPending)
	before := paceOf(t, s, r.ID)
	q := ownQuery(r, pollRule(now.Add(time.Millisecond)))
	q.CheckOnly = true
	if res := mustPoll(t, s, r.ID, q); res.Outcome != ciba.PollPending || res.Hold != 0 {
		t.Fatalf("CheckOnly poll: %+v, want pending, not held", res)
	}
	if after := paceOf(t, s, r.ID); !samePace(after, before) {
		t.Fatalf("a CheckOnly poll changed the pace from %+v to %+v", before, after)
	}
	q.ClientID = "client-2"
	wantOutcome(t, "CheckOnly poll by another client", mustPoll(t, s, r.ID, q), ciba.PollUnknown)
}

func testPollDone(t *testing.T, s ciba.Store) {
	now := time.Now()
	// Past its lifetime, still pending.
	r := newPollable(t, s)
	res := mustPoll(t, s, r.ID, ownQuery(r, pollRule(r.ExpiresAt.Add(time.Second))))
	wantOutcome(t, "poll after the expiry", res, ciba.PollDone)
	if res.Request == nil || !SameRequest(res.Request, r) {
		t.Fatalf("poll after the expiry returned %+v, want the request", res.Request)
	}
	// Approved: the request comes back, with its result, for the service
	// to redeem.
	a := newPollable(t, s)
	if _, err := s.UpdateRequest(t.Context(), a.ID, func(r *ciba.AuthRequest) error {
		return r.Approve(now, now, []byte("sealed"))
	}); err != nil {
		t.Fatal(err)
	}
	res = mustPoll(t, s, a.ID, ownQuery(a, pollRule(now)))
	wantOutcome(t, "poll of an approved request", res, ciba.PollDone)
	if res.Request == nil || res.Request.ID != a.ID || res.Request.Status != ciba.StatusApproved || string(res.Request.Result) != "sealed" {
		t.Fatalf("poll of an approved request returned %+v", res.Request)
	}
	// Denied, polled by another client: unknown all the same.
	d := newPollable(t, s)
	if _, err := s.UpdateRequest(t.Context(), d.ID, func(r *ciba.AuthRequest) error { return r.Deny(now, "no") }); err != nil {
		t.Fatal(err)
	}
	q := ownQuery(d, pollRule(now))
	q.ClientID = "client-2"
	wantOutcome(t, "poll of another client's denied request", mustPoll(t, s, d.ID, q), ciba.PollUnknown)
	wantOutcome(t, "poll of a denied request", mustPoll(t, s, d.ID, ownQuery(d, pollRule(now))), ciba.PollDone)
}

func testPollConcurrent(t *testing.T, s ciba.Store) {
	for _, r := range []*ciba.AuthRequest{newPollable(t, s), NewRequest()} {
		if r.Kind == ciba.KindDevice {
			mustCreate(t, s, r)
		}
		now := time.Now()
		const n = 20
		var wg sync.WaitGroup
		results := make(chan ciba.PollOutcome, n)
		for range n {
			wg.Go(func() {
				res, err := s.Poll(t.Context(), r.ID, ownQuery(r, pollRule(now)))
				if err != nil {
					t.Errorf("Poll: %v", err)
				}
				results <- res.Outcome
			})
		}
		wg.Wait()
		close(results)
		var pending, slow int
		for o := range results {
			switch o {
			case ciba.PollPending:
				pending++
			case ciba.PollSlow:
				slow++
			default:
				t.Errorf("outcome %d", o)
			}
		}
		if pending != 1 || slow != n-1 {
			t.Errorf("kind %q: %d on time and %d slow of %d concurrent polls, want 1 and %d", r.Kind, pending, slow, n, n-1)
		}
		if p := paceOf(t, s, r.ID); p.Interval != r.Interval+(n-1)*5*time.Second {
			t.Errorf("kind %q: interval after %d slow polls %v, want %v", r.Kind, n-1, p.Interval, r.Interval+(n-1)*5*time.Second)
		}
	}
}

func testPollDeleted(t *testing.T, s ciba.Store) {
	r := newPollable(t, s)
	now := time.Now()
	wantOutcome(t, "first poll", mustPoll(t, s, r.ID, ownQuery(r, pollRule(now))), ciba.PollPending)
	if err := s.DeleteRequest(t.Context(), r.ID); err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, "poll of the deleted request", mustPoll(t, s, r.ID, ownQuery(r, pollRule(now.Add(time.Millisecond)))), ciba.PollUnknown)
}

func testListSweep(t *testing.T, s ciba.Store) {
	want := map[string]ciba.SweepView{}
	for range 5 {
		r := NewRequest()
		mustCreate(t, s, r)
		var v ciba.SweepView
		ciba.SweepViewOf(r, &v)
		want[r.ID] = v
	}
	got := map[string]ciba.SweepView{}
	if err := s.ListSweep(t.Context(), func(v *ciba.SweepView) bool {
		c := *v
		c.ID = string([]byte(v.ID)) // fn must not keep v's strings
		c.ExpiresAt, c.RelayNextPoll = c.ExpiresAt.UTC().Round(0), c.RelayNextPoll.UTC().Round(0)
		got[c.ID] = c
		return true
	}); err != nil {
		t.Fatalf("ListSweep: %v", err)
	}
	for id, w := range want {
		w.ExpiresAt, w.RelayNextPoll = w.ExpiresAt.UTC().Round(0), w.RelayNextPoll.UTC().Round(0)
		if g, ok := got[id]; !ok || g != w {
			t.Errorf("ListSweep view of %s: %+v, %v; want %+v", id, g, ok, w)
		}
	}
}

func testListDue(t *testing.T, s ciba.Store) {
	r := NewRequest()
	mustCreate(t, s, r)
	if err := s.ListDue(t.Context(), time.Now().Add(time.Hour), func(id string) bool {
		if id != r.ID {
			t.Errorf("ListDue listed %q, which is no stored request", id)
		}
		return true
	}); err != nil {
		t.Fatalf("ListDue: %v", err)
	}
}
