// Package consent is what a user is told about an authentication request,
// in the same words wherever it is shown (the approval and device pages,
// the e-mail channel): what each requested scope gives, and when the
// request expires. It imports nothing of cibaproxy.
package consent

import (
	"strconv"
	"time"
)

// DefaultDescription describes a standard scope (OIDC Core §5.4, §11) to
// users; "" for any other scope.
//
// https://openid.net/specs/openid-connect-core-1_0.html#ScopeClaims
func DefaultDescription(scope string) string {
	switch scope {
	case "openid":
		return "Confirm who you are"
	case "profile":
		return "Your name and basic profile"
	case "email":
		return "Your email address"
	case "address":
		return "Your postal address"
	case "phone":
		return "Your phone number"
	case "offline_access":
		return "Stay connected when you are not using it"
	}
	return ""
}

// Scope is one requested scope as a user is shown it.
type Scope struct {
	// Name is the scope as the client sent it.
	Name string
	// Description says what the scope gives, or "" when there is none.
	Description string
}

// Describe describes the scopes names, in the order asked: by the
// operator's description of a scope in custom (the configuration's
// pages.scope_descriptions) when there is one, else by
// DefaultDescription.
func Describe(names []string, custom map[string]string) []Scope {
	out := make([]Scope, 0, len(names))
	for _, s := range names {
		d, ok := custom[s]
		if !ok {
			d = DefaultDescription(s)
		}
		out = append(out, Scope{Name: s, Description: d})
	}
	return out
}

// Relative says how long d is from now, rounded down so that the user
// never has less time than they are told: "in 4 minutes", "in less than a
// minute", "in 3 hours", or "now" once it is past. Hours are counted from
// d rounded up to the minute: a lifetime a few seconds short of whole
// hours (a 24-hour enrolment link shown a moment after it was made) reads
// "in 24 hours", not "in 23 hours", and the user is never promised more
// than a minute too much.
func Relative(d time.Duration) string {
	switch m := int(d / time.Minute); {
	case d <= 0:
		return "now"
	case m < 1:
		return "in less than a minute"
	case m == 1:
		return "in 1 minute"
	case m < 120:
		return "in " + strconv.Itoa(m) + " minutes"
	default:
		h := int((d+time.Minute-1)/time.Minute) / 60
		if h < 48 {
			return "in " + strconv.Itoa(h) + " hours"
		}
		// Whole days, rounded down: a 30-day link is "in 30 days", not
		// "in 720 hours".
		return "in " + strconv.Itoa(h/24) + " days"
	}
}

// At is expiry time at in UTC as seen at now: "14:05 UTC", with the day
// ("Mon 7 Dec 14:05 UTC") when it is 12 hours or more away. UTC is named,
// as the reader's time zone is not known.
func At(at, now time.Time) string {
	at = at.UTC()
	if at.Sub(now) >= 12*time.Hour {
		return at.Format("Mon 2 Jan 15:04 UTC")
	}
	return at.Format("15:04 UTC")
}

// Asks is the sentence that opens what a user is told: who asks, and for
// what. A delegate client (acts_for_user) is named as acting on the
// user's behalf: "Shopping Agent acting on your behalf asks to do what is
// listed below."; details says the request lists authorization_details.
func Asks(client string, actsFor, details bool) string {
	switch {
	case actsFor && details:
		return client + " acting on your behalf asks to do what is listed below."
	case actsFor:
		return client + " acting on your behalf asks to use your account."
	case details:
		return client + " asks you to sign in and approve what is listed below."
	}
	return client + " asks you to sign in."
}
