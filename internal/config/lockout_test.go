package config

import (
	"testing"
	"time"
)

// TestLockoutDefaults: the password and user_code lockouts are on by
// default, at the values docs/configuration.md gives and test/abuse holds
// the shipped configurations to, each share below the user's bucket.
func TestLockoutDefaults(t *testing.T) {
	l := mustParse(t, doc(nil), noEnv).Limits
	for name, c := range map[string]struct{ got, want Rate }{
		"password_failures_per_user":         {l.PasswordFailuresPerUser, Rate{Requests: 10, Per: time.Hour}},
		"password_failures_per_user_ip":      {l.PasswordFailuresPerUserIP, Rate{Requests: 5, Per: time.Hour}},
		"user_code_failures_per_user":        {l.UserCodeFailuresPerUser, Rate{Requests: 10, Per: time.Hour}},
		"user_code_failures_per_client_user": {l.UserCodeFailuresPerClientUser, Rate{Requests: 5, Per: time.Hour}},
	} {
		if c.got != c.want {
			t.Errorf("limits.%s = %+v, want %+v", name, c.got, c.want)
		}
	}
}
