package redisstore

import (
	"testing"
	"time"
)

// TestPaceInterval: the interval is read from the poll script's pace
// text, and text that does not parse is no interval.
func TestPaceInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"15000 1700000000000 0": 15 * time.Second,
		"5000":                  5 * time.Second,
		"":                      0,
		"x5 1 2":                0,
		"99999999999999999999":  0,
	} {
		if got := paceInterval(in); got != want {
			t.Errorf("paceInterval(%q) = %v, want %v", in, got, want)
		}
	}
	var sink time.Duration
	if n := testing.AllocsPerRun(100, func() { sink += paceInterval("15000 1700000000000 0") }); n != 0 || sink == 0 {
		t.Errorf("paceInterval allocates %v times", n)
	}
}
