package ciba

import (
	"slices"
	"testing"
	"time"
)

// TestSlowDownAnswers: a slow_down says the interval it is given in
// Retry-After, rounded up to whole seconds and at most maxRetryAfter; the
// answer of an interval is built once and shared, so that answering it
// again allocates nothing.
func TestSlowDownAnswers(t *testing.T) {
	s := &slowDowns{description: "slow down"}
	for _, tc := range []struct {
		interval time.Duration
		want     string
	}{
		{10 * time.Second, "10"},
		{15 * time.Second, "15"},
		{1500 * time.Millisecond, "2"},
		{0, "1"},
		{48 * time.Hour, "3600"},
	} {
		e := s.get(tc.interval)
		if e.Code != CodeSlowDown || !slices.Equal(e.RetryAfterHeader(), []string{tc.want}) {
			t.Errorf("interval %v: %s, Retry-After %v; want slow_down, %s", tc.interval, e.Code, e.RetryAfterHeader(), tc.want)
		}
		if again := s.get(tc.interval); again != e {
			t.Errorf("interval %v: a second answer is built", tc.interval)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		e := s.get(15 * time.Second)
		_, _ = e.JSON(), e.RetryAfterHeader()
	}); n != 0 {
		t.Errorf("a slow_down answered again allocates %v times", n)
	}
	if v := (&Error{Code: CodeInvalidGrant}).RetryAfterHeader(); v != nil {
		t.Errorf("an error without RetryAfter has Retry-After %v", v)
	}
}
