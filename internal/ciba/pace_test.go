package ciba_test

import (
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// TestPaceAfterHeldPoll: a client that waited out a held poll as long as
// the interval may poll again at once (issue #21, item 9: it used to get
// slow_down, as the interval was counted again from the held answer); a
// poll that is really early still gets slow_down.
func TestPaceAfterHeldPoll(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	const interval, tolerance, step = 5 * time.Second, 500 * time.Millisecond, 5 * time.Second
	rule := func(at time.Duration, hold time.Duration) ciba.PaceRule {
		return ciba.PaceRule{Now: t0.Add(at), Tolerance: tolerance, Step: step, Hold: hold, Initial: interval}
	}
	tests := []struct {
		name string
		hold time.Duration // the held poll's hold, from t0
		end  time.Duration // when it was answered pending, from t0
		next time.Duration // the next poll, from t0
		slow bool
	}{
		{"right after a full hold longer than the interval", 20 * time.Second, 20 * time.Second, 20*time.Second + time.Millisecond, false},
		{"right after a full hold as long as the interval", interval, interval, interval, false},
		{"a full hold shorter than the interval: the rest of the interval is still due", 2 * time.Second, 2 * time.Second, 2*time.Second + time.Millisecond, true},
		{"a full hold shorter than the interval, polled again an interval after the held poll", 2 * time.Second, 2 * time.Second, interval, false},
		{"a hold the client cut short, polled again at once", 20 * time.Second, 100 * time.Millisecond, 200 * time.Millisecond, true},
		{"a hold the client cut short, polled again an interval after the held poll", 20 * time.Second, 100 * time.Millisecond, interval - tolerance, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p ciba.Pace
			held := rule(0, tt.hold)
			if held.Apply(&p) {
				t.Fatal("the first poll is slow")
			}
			if p.HoldUntil.IsZero() {
				t.Fatal("the first poll is not held")
			}
			held.Release(&p, t0.Add(tt.end))
			if !p.HoldUntil.IsZero() {
				t.Fatalf("released pace still holds: %+v", p)
			}
			if slow := rule(tt.next, tt.hold).Apply(&p); slow != tt.slow {
				t.Errorf("the poll %v after the held one: slow = %v, want %v", tt.next, slow, tt.slow)
			}
		})
	}
	t.Run("a poll overlapping the hold gets slow_down, and its longer interval stays after the release", func(t *testing.T) {
		var p ciba.Pace
		held := rule(0, 20*time.Second)
		held.Apply(&p)
		if !rule(time.Second, 20*time.Second).Apply(&p) {
			t.Fatal("a poll during the hold is not slow")
		}
		held.Release(&p, t0.Add(20*time.Second))
		// The overlapping poll at 1 s grew the interval to 10 s: due at 11 s,
		// before the held answer, so the next poll is due at the answer.
		if p.Interval != interval+step || !p.NotBefore.Equal(t0.Add(20*time.Second)) {
			t.Errorf("after the release: %+v, want interval %v, due at the answer", p, interval+step)
		}
	})
}
