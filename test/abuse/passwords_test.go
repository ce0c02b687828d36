package abuse

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Password guessing on the approval page (/approve/{id}) and on the device
// verification page (/device), with the local upstream of the shipped
// configurations. Every password tried counts against one lockout per
// username, whichever page it was typed on: 5 wrong ones per hour from one
// address (password_failures_per_user_ip), 10 per hour from all addresses
// together (password_failures_per_user), both reserved before the bcrypt
// comparison so that a burst costs what it tries; once either is used up
// the password is not checked (HTTP 429, for the right one too). Every
// failed answer also counts against the address's 30 per 10 minutes
// (approval_failures_per_ip), on both pages. See SECURITY.md.

// TestPasswordGuessingApprovalPageBurst: 120 wrong passwords at once on
// one approval link from one address get 5 password checks; the right
// password from that address is then refused too, while the user at
// another address still approves, and a user's own typo costs one try.
func TestPasswordGuessingApprovalPageBurst(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	id, link := pagesCIBARequest(e, "alice", "PW burst")
	attacker := pagesNewBrowser(t, "127.0.0.1")
	csrf := attacker.csrf(link, nil)
	start := time.Now()
	got := pagesParallel(pagesBurst, func(i int) string {
		return pagesKind(attacker.approve(link, csrf, fmt.Sprint(pagesWrongPasswordPrefix, i)))
	})
	t.Logf("%d wrong passwords at once: %v", pagesBurst, got)
	pagesWithin(t, "passwords checked (401) in the burst", got["Unauthorized"], pagesPasswordsPerUserIP, start, pagesPasswordsPerUserIP, time.Hour)
	if n := got["Unauthorized"] + got["locked: passwords"] + got["locked: address"]; n != pagesBurst {
		t.Errorf("answers %v: want only 401 and 429", got)
	}
	// The guesser now has the right password: it is not checked.
	if k := pagesKind(attacker.approve(link, csrf, pagesAlicePassword)); k != "locked: passwords" {
		t.Fatalf("the right password from the guessing address: %s, want the password lockout (429)", k)
	}
	if status, _ := attacker.do(link, nil); status != http.StatusOK {
		t.Fatalf("the approval link after the lockout: HTTP %d, want 200 (the request still pending)", status)
	}

	// Alice, elsewhere, is not locked out by one address.
	alice := pagesNewBrowser(t, "127.0.0.2")
	if status, body := alice.approve(link, alice.csrf(link, nil), pagesAlicePassword); status != http.StatusOK {
		t.Fatalf("alice's right password from her own address: HTTP %d\n%s", status, body)
	}
	pagesCIBATokens(e, id)

	// A typo, then the right password: one try spent, approved.
	_, bobLink := pagesCIBARequest(e, "bob", "PW typo")
	bob := pagesNewBrowser(t, "127.0.0.3")
	bobCSRF := bob.csrf(bobLink, nil)
	if status, _ := bob.approve(bobLink, bobCSRF, "bob-pasword"); status != http.StatusUnauthorized {
		t.Fatalf("bob's typo: HTTP %d, want 401", status)
	}
	if status, body := bob.approve(bobLink, bobCSRF, pagesBobPassword); status != http.StatusOK {
		t.Fatalf("bob's retry after a typo: HTTP %d, want 200\n%s", status, body)
	}
	pagesNoLeak(t, e.srv, pagesAlicePassword, pagesBobPassword, pagesWrongPasswordPrefix)
}

// TestPasswordGuessingDevicePage: the device page, which anyone reaches
// with a user code of their own (the public demo-device client), checks a
// password under the same lockout: a burst of 120 gets 5 checks, the
// right password from that address is refused, and 31 usernames tried from
// one address run into the address's failure limit.
func TestPasswordGuessingDevicePage(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	base := e.srv.URL
	deviceCode, userCode := pagesDeviceStart(e)
	attacker := pagesNewBrowser(t, "127.0.0.1")
	csrf := attacker.deviceForm(base, userCode)
	start := time.Now()
	got := pagesParallel(pagesBurst, func(i int) string {
		return pagesKind(attacker.deviceApprove(base, csrf, userCode, "alice", fmt.Sprint(pagesWrongPasswordPrefix, i)))
	})
	t.Logf("%d wrong passwords for alice at once: %v", pagesBurst, got)
	checked := got["Unauthorized"]
	if checked > pagesPasswordsPerUserIP+pagesRefilled(start, pagesPasswordsPerUserIP, time.Hour) {
		t.Errorf("%d passwords checked in the burst, want at most %d", checked, pagesPasswordsPerUserIP)
	}
	if got["OK"] != 0 || got["429 of no known limit"] != 0 {
		t.Errorf("answers %v: want only 401 and 429", got)
	}
	// Some tries of the burst were refused by the device page's user-code
	// limit while others held its reservations (5 per address at once):
	// one at a time, the rest of alice's share for this address is found.
	checked += pagesUntilRefused(t, "locked: passwords", pagesPasswordsPerUserIP, func(i int) (int, string) {
		return attacker.deviceApprove(base, csrf, userCode, "alice", fmt.Sprint(pagesWrongPasswordPrefix, "tail-", i))
	})
	pagesWithin(t, "passwords checked (401) for alice from one address", checked, pagesPasswordsPerUserIP, start, pagesPasswordsPerUserIP, time.Hour)
	if k := pagesKind(attacker.deviceApprove(base, csrf, userCode, "alice", pagesAlicePassword)); k != "locked: passwords" {
		t.Fatalf("the right password from the guessing address: %s, want the password lockout (429)", k)
	}
	if r := pagesDevicePoll(e, deviceCode); r.Str("error") != "authorization_pending" {
		t.Fatalf("device poll after the lockout: %s, want authorization_pending", r)
	}

	// Alice at another address approves, and the device gets her tokens.
	alice := pagesNewBrowser(t, "127.0.0.2")
	if status, body := alice.deviceApprove(base, alice.deviceForm(base, userCode), userCode, "alice", pagesAlicePassword); status != http.StatusOK {
		t.Fatalf("alice's right password from her own address: HTTP %d\n%s", status, body)
	}
	if r := pagesDevicePoll(e, deviceCode); r.Status != http.StatusOK || r.Str("access_token") == "" {
		t.Fatalf("device tokens after alice approved: %s", r)
	}

	// Spraying usernames from one address: each is a new username, so
	// only the address's failure limit stops it, after 30 failures.
	_, sprayCode := pagesDeviceStart(e)
	sprayer := pagesNewBrowser(t, "127.0.0.3")
	sprayCSRF := sprayer.deviceForm(base, sprayCode) // a 200: costs nothing
	sprayStart := time.Now()
	failed := pagesUntilRefused(t, "locked: address", pagesFailuresPerIP, func(i int) (int, string) {
		return sprayer.deviceApprove(base, sprayCSRF, sprayCode, fmt.Sprint("user-", i), "password")
	})
	pagesWithin(t, "usernames tried from one address", failed, pagesFailuresPerIP, sprayStart, pagesFailuresPerIP, 10*time.Minute)
	// Right after the refusal (a try comes back every 20 s), a right
	// password from that address is not checked either.
	if k := pagesKind(sprayer.deviceApprove(base, sprayCSRF, sprayCode, "bob", pagesBobPassword)); k != "locked: address" {
		t.Fatalf("a right password from the spraying address: %s, want the address's limit (429)", k)
	}
	got = pagesParallel(pagesBurst, func(i int) string {
		return pagesKind(sprayer.deviceApprove(base, sprayCSRF, sprayCode, fmt.Sprint("burst-", i), "password"))
	})
	if failed+got["Unauthorized"] > pagesFailuresPerIP+pagesRefilled(sprayStart, pagesFailuresPerIP, 10*time.Minute) {
		t.Errorf("a burst of %d after the address's limit: %v, want no password checked beyond the tries refilled", pagesBurst, got)
	}

	// A typo on the device page, then the right password: approved.
	_, typoCode := pagesDeviceStart(e)
	bob := pagesNewBrowser(t, "127.0.0.4")
	bobCSRF := bob.deviceForm(base, typoCode)
	if status, _ := bob.deviceApprove(base, bobCSRF, typoCode, "bob", "bob-pasword"); status != http.StatusUnauthorized {
		t.Fatalf("bob's typo: HTTP %d, want 401", status)
	}
	if status, body := bob.deviceApprove(base, bobCSRF, typoCode, "bob", pagesBobPassword); status != http.StatusOK {
		t.Fatalf("bob's retry after a typo: HTTP %d, want 200\n%s", status, body)
	}
	pagesNoLeak(t, e.srv, pagesAlicePassword, pagesBobPassword, pagesWrongPasswordPrefix)
}

// TestPasswordLockoutHoldsAcrossPages: alice's lockout is one, whichever
// page the passwords were typed on. Two addresses spend 5 tries each, one
// on the approval page and one on the device page; then a third address
// gets no check on either page, with the right password, and a fourth
// address's burst gets none either.
func TestPasswordLockoutHoldsAcrossPages(t *testing.T) {
	t.Parallel()
	e := startQuickstart(t)
	base := e.srv.URL
	_, link := pagesCIBARequest(e, "alice", "PW pages")
	deviceCode, userCode := pagesDeviceStart(e)
	start := time.Now()

	first := pagesNewBrowser(t, "127.0.0.2")
	csrf := first.csrf(link, nil)
	got := pagesParallel(pagesBurst, func(i int) string {
		return pagesKind(first.approve(link, csrf, fmt.Sprint(pagesWrongPasswordPrefix, i)))
	})
	t.Logf("approval page, first address: %v", got)
	checked := got["Unauthorized"]

	second := pagesNewBrowser(t, "127.0.0.3")
	dcsrf := second.deviceForm(base, userCode)
	got = pagesParallel(pagesBurst, func(i int) string {
		return pagesKind(second.deviceApprove(base, dcsrf, userCode, "alice", fmt.Sprint(pagesWrongPasswordPrefix, i)))
	})
	t.Logf("device page, second address: %v", got)
	checked += got["Unauthorized"]
	// As in TestPasswordGuessingDevicePage: the rest of the second
	// address's share, one at a time.
	checked += pagesUntilRefused(t, "locked: passwords", pagesPasswordsPerUserIP, func(i int) (int, string) {
		return second.deviceApprove(base, dcsrf, userCode, "alice", fmt.Sprint(pagesWrongPasswordPrefix, "tail-", i))
	})
	pagesWithin(t, "passwords checked for alice from two addresses on two pages", checked, pagesPasswordsPerUser, start, pagesPasswordsPerUser, time.Hour)

	// A third address, on both pages, with the right password.
	third := pagesNewBrowser(t, "127.0.0.4")
	if k := pagesKind(third.approve(link, third.csrf(link, nil), pagesAlicePassword)); k != "locked: passwords" {
		t.Fatalf("the right password on the approval page from a new address: %s, want the lockout (429)", k)
	}
	if k := pagesKind(third.deviceApprove(base, third.deviceForm(base, userCode), userCode, "alice", pagesAlicePassword)); k != "locked: passwords" {
		t.Fatalf("the right password on the device page from a new address: %s, want the lockout (429)", k)
	}
	// A fourth address's burst: nothing is checked.
	fourth := pagesNewBrowser(t, "127.0.0.5")
	fcsrf := fourth.csrf(link, nil)
	got = pagesParallel(pagesBurst, func(i int) string {
		return pagesKind(fourth.approve(link, fcsrf, fmt.Sprint(pagesWrongPasswordPrefix, i)))
	})
	if got["Unauthorized"] > pagesRefilled(start, pagesPasswordsPerUser, time.Hour) || got["OK"] != 0 {
		t.Errorf("a burst from a fourth address after the lockout: %v, want no password checked", got)
	}
	if status, _ := third.do(link, nil); status != http.StatusOK {
		t.Fatalf("the approval link after the lockout: HTTP %d, want 200 (still pending)", status)
	}
	if r := pagesDevicePoll(e, deviceCode); r.Str("error") != "authorization_pending" {
		t.Fatalf("device poll after the lockout: %s, want authorization_pending", r)
	}
	if !strings.Contains(e.srv.Logs(), "password locked out") {
		t.Error("the lockout is not in the log")
	}
}

// TestPasswordLockoutSharedOnRedis: examples/redis.yaml, two instances on
// one Redis: bursts split over both instances get 5 checks per address and
// 10 in all, the lockout then holds on either instance, and a typo retried
// on the other instance passes.
func TestPasswordLockoutSharedOnRedis(t *testing.T) {
	t.Parallel()
	p := startRedisPair(t)
	_, link := pagesCIBARequest(p[0], "alice", "PW redis")
	links := [2]string{pagesOnInstance(p[0], link), pagesOnInstance(p[1], link)}
	start := time.Now()
	checked := 0
	for n, src := range []string{"127.0.0.2", "127.0.0.3"} {
		b := pagesNewBrowser(t, src)
		csrf := b.csrf(links[0], nil) // the CSRF key is in the store: good on both
		got := pagesParallel(pagesBurst, func(i int) string {
			return pagesKind(b.approve(links[i%2], csrf, fmt.Sprint(pagesWrongPasswordPrefix, i)))
		})
		t.Logf("address %d, over both instances: %v", n+1, got)
		pagesWithin(t, fmt.Sprintf("passwords checked from address %d over both instances", n+1), got["Unauthorized"], pagesPasswordsPerUserIP, start, pagesPasswordsPerUserIP, time.Hour)
		checked += got["Unauthorized"]
	}
	pagesWithin(t, "passwords checked for alice in all", checked, pagesPasswordsPerUser, start, pagesPasswordsPerUser, time.Hour)
	for i, l := range links {
		third := pagesNewBrowser(t, "127.0.0.4")
		if k := pagesKind(third.approve(l, third.csrf(l, nil), pagesAlicePassword)); k != "locked: passwords" {
			t.Fatalf("the right password on instance %d from a new address: %s, want the lockout (429)", i, k)
		}
	}

	_, bobLink := pagesCIBARequest(p[0], "bob", "PW redis typo")
	bob := pagesNewBrowser(t, "127.0.0.5")
	bobCSRF := bob.csrf(pagesOnInstance(p[0], bobLink), nil)
	if status, _ := bob.approve(pagesOnInstance(p[0], bobLink), bobCSRF, "bob-pasword"); status != http.StatusUnauthorized {
		t.Fatalf("bob's typo on instance 0: HTTP %d, want 401", status)
	}
	if status, body := bob.approve(pagesOnInstance(p[1], bobLink), bobCSRF, pagesBobPassword); status != http.StatusOK {
		t.Fatalf("bob's retry on instance 1: HTTP %d, want 200\n%s", status, body)
	}
}
