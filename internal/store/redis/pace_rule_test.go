package redisstore

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/redis/redistest"
)

// paceCase is one generated poll: the pace state before it, the request's
// first interval and the rule. Everything is in whole milliseconds, the
// precision Redis keeps.
type paceCase struct {
	before  ciba.Pace
	initial time.Duration
	rule    ciba.PaceRule
}

func (c paceCase) String() string {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		return fmt.Sprintf("now%+dms", t.Sub(c.rule.Now).Milliseconds())
	}
	return fmt.Sprintf("pace{interval %v, not before %s, hold until %s} initial %v tolerance %v step %v hold %v",
		c.before.Interval, at(c.before.NotBefore), at(c.before.HoldUntil), c.initial, c.rule.Tolerance, c.rule.Step, c.rule.Hold)
}

// genPaceCase generates a case around now: no pace yet or one with its due
// time and hold before, at or after now (within and beyond the tolerance).
func genPaceCase(rng *rand.Rand, now time.Time) paceCase {
	ms := func(max int64) time.Duration { return time.Duration(rng.Int64N(max+1)) * time.Millisecond }
	around := func() time.Time {
		switch rng.IntN(4) {
		case 0:
			return time.Time{}
		case 1:
			return now // exactly at the edge
		}
		return now.Add(ms(60_000) - 30*time.Second)
	}
	c := paceCase{initial: ms(30_000) + time.Millisecond,
		rule: ciba.PaceRule{Now: now, Tolerance: ms(2_000), Step: ms(10_000) + time.Millisecond}}
	if rng.IntN(3) > 0 {
		c.rule.Hold = ms(30_000)
	}
	if rng.IntN(5) > 0 { // else: never polled
		c.before = ciba.Pace{Interval: ms(60_000) + time.Millisecond, NotBefore: around(), HoldUntil: around()}
		if rng.IntN(2) == 0 {
			c.before.HoldUntil = time.Time{}
		}
	}
	if rng.IntN(8) == 0 { // a poll right at the tolerance's edge
		c.before.NotBefore = now.Add(c.rule.Tolerance)
	}
	return c
}

// TestPollScriptFollowsTheRule: the poll script (Lua) paces exactly as
// ciba.PaceRule.Apply, the one definition of the rule, on generated cases:
// the same slow_down answer and the same pace state after the poll. And the
// merge of an interval grown on one instance (paceMergeScript) is
// laterPace.
func TestPollScriptFollowsTheRule(t *testing.T) {
	srv := redistest.Start(t)
	ctx := t.Context()
	st := open(t, srv.Addr(), newPrefix())
	raw := rawClient(t, srv.Addr())
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	t.Logf("seed %d", seed)
	now := time.UnixMilli(time.Now().UnixMilli())
	setPace := func(id string, p ciba.Pace) {
		t.Helper()
		key := st.requestKey(id)
		var err error
		if p == (ciba.Pace{}) {
			err = raw.HDel(ctx, key, "p").Err()
		} else {
			err = raw.HSet(ctx, key, "p", encodePace(p)).Err()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	const cases = 400
	for i := range cases {
		c := genPaceCase(rng, now)
		r := cibaRequest()
		r.Interval = c.initial
		if rng.IntN(2) == 0 {
			r.Kind, r.CertThumbprint = ciba.KindDevice, "" // the script reads the kind of both
		}
		if err := st.CreateRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		setPace(r.ID, c.before)
		want := c.before
		rule := c.rule
		rule.Initial = c.initial
		wantSlow := rule.Apply(&want)

		q := ciba.PollQuery{ClientID: r.ClientID, Kind: r.Kind, Cert: r.CertThumbprint, Rule: c.rule, Current: true}
		res, err := st.Poll(ctx, r.ID, q)
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Outcome == ciba.PollSlow; got != wantSlow {
			t.Errorf("case %d (%v): the script says slow %v, the rule %v", i, c, got, wantSlow)
		}
		if got := storedPace(t, st, r.ID); !got.NotBefore.Equal(want.NotBefore) || !got.HoldUntil.Equal(want.HoldUntil) || got.Interval != want.Interval {
			t.Errorf("case %d (%v): the script leaves pace %+v, the rule %+v", i, c, got, want)
		}

		// The merge of a pace grown elsewhere into what the script left.
		grownAt := now.Add(time.Duration(rng.Int64N(60_000)-30_000) * time.Millisecond)
		grown := ciba.Pace{Interval: time.Duration(rng.Int64N(90_000)+1) * time.Millisecond, NotBefore: grownAt}
		merged, err := paceMergeScript.Run(ctx, raw, []string{st.requestKey(r.ID)}, grown.Interval.Milliseconds(), grown.NotBefore.UnixMilli()).Text()
		if err != nil {
			t.Fatal(err)
		}
		wantMerged := laterPace(want, grown)
		if got := decodePace(merged); got.Interval != wantMerged.Interval || !got.NotBefore.Equal(wantMerged.NotBefore) || !got.HoldUntil.Equal(wantMerged.HoldUntil) {
			t.Errorf("case %d: merging %+v into %+v: the script gives %+v, laterPace %+v", i, grown, want, got, wantMerged)
		}
	}
}
