package abuse

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// Guessing a user's CIBA user_code (CIBA §7.1) through bc-authorize, with
// the local upstream of the shipped configurations, where alice's code has
// 4 digits. Wrong codes count per client and user (5 per hour,
// user_code_failures_per_client_user) and per user from all clients (10
// per hour, user_code_failures_per_user), reserved before the bcrypt
// check; a client past either is answered access_denied without the code
// being checked. One client alone cannot empty the user's bucket: its
// share refills at half the rate. See SECURITY.md.

// pagesCodeTry sends one bc-authorize for alice with code as client c and
// names the answer: "accepted", or the error code.
func pagesCodeTry(e *env, c testutil.Client, code string) string {
	e.t.Helper()
	form := url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "user_code": {code}}
	if c.ID != demoPoll.ID {
		form.Set("client_notification_token", "pages-notification-token") // ping and push need one
	}
	// A burst's request: it may wait for its bcrypt check (burstTimeout).
	// A code the server did not check because every bcrypt slot stayed
	// busy (503 temporarily_unavailable, Retry-After: it counts as no
	// try) is sent again, as a client would, so that every try ends
	// checked or refused by the lockout however loaded the machine; each
	// new try waits at most the server's slot wait (1 s) for its answer.
	var r *testutil.Response
	for range pagesBusyTries {
		var err error
		r, err = testutil.PostForm(burstCtx(e.t), e.url("/bc-authorize"), c, form)
		if err != nil {
			e.t.Errorf("bc-authorize: %v", err)
			return "no answer"
		}
		if r.Status != http.StatusServiceUnavailable || r.Str("error") != "temporarily_unavailable" || !strings.Contains(r.Str("error_description"), "busy") {
			break
		}
	}
	switch {
	case r.Status == http.StatusOK && r.Str("auth_req_id") != "":
		return "accepted"
	case r.Str("error") == "invalid_user_code" && r.Status == http.StatusBadRequest:
		return "invalid_user_code"
	case r.Str("error") == "access_denied" && r.Status == http.StatusForbidden && strings.Contains(r.Str("error_description"), "user_code"):
		return "locked"
	default:
		return r.String()
	}
}

// pagesWrongCode is the i-th 4-digit code that is not alice's.
func pagesWrongCode(i int) string {
	c := fmt.Sprintf("%04d", i%10000)
	if c == pagesAliceCode {
		return "9999"
	}
	return c
}

// TestUserCodeGuessingAtBCAuthorize: a client's burst of 120 codes gets 5
// checked, then not even the right code is; another client is not locked
// out by it and sends the right code; two clients together spend alice's
// 10 tries and the third is refused. A typo costs one try.
func TestUserCodeGuessingAtBCAuthorize(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	start := time.Now()
	checked := 0

	// demo-push: the user typed the code wrong in the app, then right.
	if k := pagesCodeTry(e, testutil.DemoPush, "1243"); k != "invalid_user_code" {
		t.Fatalf("a typo: %s, want invalid_user_code", k)
	}
	checked++
	if k := pagesCodeTry(e, testutil.DemoPush, pagesAliceCode); k != "accepted" {
		t.Fatalf("the right code after a typo: %s, want accepted", k)
	}

	// demo-poll guesses, 120 at once.
	got := pagesParallel(pagesBurst, func(i int) string { return pagesCodeTry(e, testutil.DemoPoll, pagesWrongCode(i)) })
	t.Logf("demo-poll, %d codes at once: %v", pagesBurst, got)
	pagesWithin(t, "codes checked for demo-poll", got["invalid_user_code"], pagesCodesPerClientUser, start, pagesCodesPerClientUser, time.Hour)
	if got["invalid_user_code"]+got["locked"] != pagesBurst {
		t.Errorf("answers %v: want only invalid_user_code and access_denied", got)
	}
	checked += got["invalid_user_code"]
	if k := pagesCodeTry(e, testutil.DemoPoll, pagesAliceCode); k != "locked" {
		t.Fatalf("the right code from the guessing client: %s, want access_denied (not checked)", k)
	}

	// One client's guessing leaves the others alice's remaining tries.
	if k := pagesCodeTry(e, testutil.DemoPing, pagesAliceCode); k != "accepted" {
		t.Fatalf("the right code from another client: %s, want accepted", k)
	}
	got = pagesParallel(pagesBurst, func(i int) string { return pagesCodeTry(e, testutil.DemoPing, pagesWrongCode(1000+i)) })
	t.Logf("demo-ping, %d codes at once: %v", pagesBurst, got)
	checked += got["invalid_user_code"]
	pagesWithin(t, "codes checked for alice from three clients", checked, pagesCodesPerUser, start, pagesCodesPerUser, time.Hour)

	// Two clients spent alice's tries: the third, with tries of its own
	// left, gets no check either, until they come back.
	if k := pagesCodeTry(e, testutil.DemoPush, pagesAliceCode); k != "locked" {
		t.Fatalf("the right code from a third client once alice's tries are spent: %s, want access_denied", k)
	}
	// Requests without a user_code, and for other users, are not held back.
	e.mustAuthorize(testutil.DemoPoll, url.Values{"scope": {"openid"}, "login_hint": {"bob"}})
	// (A 4-digit code cannot be looked for in the log: durations hold digits.)
	if !strings.Contains(e.srv.Logs(), "too many wrong user codes") {
		t.Error("the lockout is not in the log")
	}
}

// TestUserCodeGuessingSharedOnRedis: examples/redis.yaml, two instances:
// a client's burst split over both gets 5 codes checked, the right code is
// then refused on either, and the other client still gets through.
func TestUserCodeGuessingSharedOnRedis(t *testing.T) {
	t.Parallel()
	p := startRedisPair(t)
	start := time.Now()
	got := pagesParallel(pagesBurst, func(i int) string { return pagesCodeTry(p[i%2], testutil.DemoPoll, pagesWrongCode(i)) })
	t.Logf("demo-poll, %d codes at once over both instances: %v", pagesBurst, got)
	pagesWithin(t, "codes checked over both instances", got["invalid_user_code"], pagesCodesPerClientUser, start, pagesCodesPerClientUser, time.Hour)
	for i, e := range p {
		if k := pagesCodeTry(e, testutil.DemoPoll, pagesAliceCode); k != "locked" {
			t.Fatalf("the right code from the guessing client on instance %d: %s, want access_denied", i, k)
		}
	}
	if k := pagesCodeTry(p[1], testutil.DemoPing, pagesAliceCode); k != "accepted" {
		t.Fatalf("the right code from the other client: %s, want accepted", k)
	}
}
