package consent

import (
	"reflect"
	"testing"
	"time"
)

func TestRelative(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "now"},
		{0, "now"},
		{59 * time.Second, "in less than a minute"},
		{time.Minute, "in 1 minute"},
		{119 * time.Second, "in 1 minute"},
		{4*time.Minute + 59*time.Second, "in 4 minutes"},
		{119 * time.Minute, "in 119 minutes"},
		{2 * time.Hour, "in 2 hours"},
		{5*time.Hour + 59*time.Minute, "in 5 hours"},
		// Hours count from d rounded up to the minute: a 24-hour link
		// shown a moment after it was made is "in 24 hours".
		{119*time.Minute + 59*time.Second, "in 119 minutes"},
		{3*time.Hour - time.Minute, "in 2 hours"},
		{3*time.Hour - time.Minute + time.Nanosecond, "in 3 hours"},
		{24*time.Hour - time.Millisecond, "in 24 hours"},
		{24*time.Hour - 59*time.Second, "in 24 hours"},
		{24 * time.Hour, "in 24 hours"},
		{24*time.Hour - time.Minute, "in 23 hours"},
		{24*time.Hour + 59*time.Minute, "in 24 hours"},
		{48*time.Hour - time.Minute, "in 47 hours"},
		{48 * time.Hour, "in 2 days"},
		{72*time.Hour - time.Minute, "in 2 days"},
		{72 * time.Hour, "in 3 days"},
		{720 * time.Hour, "in 30 days"},
	} {
		if got := Relative(tt.d); got != tt.want {
			t.Errorf("Relative(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestAtIsUTC(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.FixedZone("CET", 3600))
	if got := At(now.Add(5*time.Minute), now); got != "00:05 UTC" {
		t.Errorf("5 minutes away: %q, want 00:05 UTC", got)
	}
	if got := At(now.Add(13*time.Hour), now); got != "Mon 7 Dec 13:00 UTC" {
		t.Errorf("a day away: %q, want the date too", got)
	}
}

// TestDescribe: the operator's description of a scope wins, adds one for
// a scope without a built-in one, and may blank a built-in one; order is
// kept.
func TestDescribe(t *testing.T) {
	got := Describe([]string{"openid", "email", "payments", "profile", "other"},
		map[string]string{"payments": "Make payments from your account", "profile": ""})
	want := []Scope{
		{"openid", "Confirm who you are"},
		{"email", "Your email address"},
		{"payments", "Make payments from your account"},
		{"profile", ""},
		{"other", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Describe = %+v, want %+v", got, want)
	}
}
