package httpapi

import (
	"bytes"
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/passkey"
	"github.com/cibaproxy/cibaproxy/internal/passkey/passkeytest"
)

var (
	selfEnrolForm  = regexp.MustCompile(`<form method="post" action="([^"]+)" id="self-enrol">`)
	selfEnrolToken = regexp.MustCompile(`name="enrolment" value="([^"]+)"`)
)

// exampleLimits are the abuse limits of the shipped example configuration
// (examples/quickstart.yaml, its defaults: no environment), in memory as
// the app makes them without Redis, and its per-user request limit.
func exampleLimits(t *testing.T) (*Limits, func(context.Context, string, time.Time) (bool, time.Duration, error)) {
	t.Helper()
	t.Setenv("CIBAPROXY_REQUESTS_PER_USER", "")
	cfg, err := config.Load("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Limits
	mk := func(r config.Rate) limit.Keyed {
		lr := limit.Rate{Requests: r.Requests, Per: r.Per}
		if lr.Off() {
			return nil
		}
		return limit.New(lr, l.MaxKeys)
	}
	lims := &Limits{
		ApprovalFailures: mk(l.ApprovalFailuresPerIP), CallbackFailures: mk(l.CallbackFailuresPerIP),
		PasswordFailuresPerUser: mk(l.PasswordFailuresPerUser), PasswordFailuresPerUserIP: mk(l.PasswordFailuresPerUserIP),
		TrustedProxies: l.Proxies, ClientIPHeader: l.ClientIPHeader,
	}
	users := mk(l.RequestsPerUser)
	if users == nil {
		return lims, nil
	}
	return lims, users.Allow
}

// lockedBuffer is a log sink the server's goroutines may write at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newSelfEnv is a passkey server with self-service enrolment on, the
// example configuration's limits, and its log (debug) kept.
func newSelfEnv(t *testing.T) (*pkEnv, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	l, users := exampleLimits(t)
	e := newPKEnvWith(t, l, users, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	e.pk.SelfEnroll = true
	return e, logs
}

// requestFor starts a request for user and returns its approval id.
func (e *pkEnv) requestFor(user, binding string) string {
	e.t.Helper()
	resp, err := e.svc.Authorize(e.t.Context(), bank, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: user}, BindingMessage: binding})
	if err != nil {
		e.t.Fatal(err)
	}
	r, _ := e.st.GetRequest(e.t.Context(), resp.AuthReqID)
	return r.ApprovalID
}

// approvePassword opens approval id's page and approves with user's
// password; it returns the answer.
func (b *pkBrowser) approvePassword(id, user string) (int, string) {
	b.e.t.Helper()
	csrf, _ := b.open(id)
	return b.post(PathApprove+id, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {user + "-password"}})
}

// selfOffer is the offer to add a passkey an "Approved" page holds.
type selfOffer struct {
	action, token string
	options       []byte
}

// offerOf returns the page's offer; it fails the test when there is none.
func offerOf(t *testing.T, body string) selfOffer {
	t.Helper()
	f, tok := selfEnrolForm.FindStringSubmatch(body), selfEnrolToken.FindStringSubmatch(body)
	if f == nil || tok == nil || !strings.Contains(body, "Add a passkey for next time") {
		t.Fatalf("the page offers no passkey:\n%s", body)
	}
	return selfOffer{action: html.UnescapeString(f[1]), token: tok[1], options: options(t, body)}
}

// noOffer fails the test when the page offers to add a passkey.
func noOffer(t *testing.T, what, body string) {
	t.Helper()
	if strings.Contains(body, "Add a passkey") || strings.Contains(body, `name="enrolment"`) {
		t.Fatalf("%s offers to add a passkey:\n%s", what, body)
	}
}

// postOffer posts a credential to an offer's form, with token.
func (b *pkBrowser) postOffer(action, token string, cred []byte) (int, string) {
	b.e.t.Helper()
	return b.post(action, url.Values{"action": {actionAddPasskey}, "enrolment": {token}, "credential": {string(cred)}})
}

func (e *pkEnv) passkeys(sub string) int {
	e.t.Helper()
	list, err := e.pk.Credentials.List(e.t.Context(), sub)
	if err != nil {
		e.t.Fatal(err)
	}
	return len(list)
}

// TestPasskeySelfEnrolment: with approval.passkeys.self_enrollment on and
// the example configuration's limits, a password approval offers to add a
// passkey, bound to that user, page and browser, once and for a few
// minutes; nothing else offers one, and every misuse is refused.
func TestPasskeySelfEnrolment(t *testing.T) {
	e, logs := newSelfEnv(t)
	var tokens []string
	alice := passkeytest.New(pkOrigin)

	t.Run("a password approval offers a passkey; it registers once, then approves the next request", func(t *testing.T) {
		b := e.browser("")
		id := e.requestFor("alice", "Code SE01")
		status, body := b.approvePassword(id, "alice")
		if status != http.StatusOK || !strings.Contains(body, "You approved") {
			t.Fatalf("password approval: %d\n%s", status, body)
		}
		o := offerOf(t, body)
		tokens = append(tokens, o.token)
		if o.action != PathApprove+id+pathSelfEnrol || strings.Contains(o.action, o.token) {
			t.Fatalf("the offer posts to %q, want %q (the token never in a URL)", o.action, PathApprove+id+pathSelfEnrol)
		}
		cred, err := alice.Create(o.options)
		if err != nil {
			t.Fatal(err)
		}
		if status, body := b.postOffer(o.action, o.token, cred); status != http.StatusOK || !strings.Contains(body, "Passkey added") {
			t.Fatalf("add the passkey: %d\n%s", status, body)
		}
		if n := e.passkeys("sub-alice"); n != 1 {
			t.Fatalf("alice has %d passkeys, want 1", n)
		}
		if status, body := b.postOffer(o.action, o.token, cred); status != http.StatusGone || !strings.Contains(body, "already used") {
			t.Fatalf("the offer replayed: %d, want 410\n%s", status, body)
		}
		id2 := e.requestFor("alice", "Code SE02")
		csrf, page := b.open(id2)
		assertion, err := alice.Get(options(t, page))
		if err != nil {
			t.Fatal(err)
		}
		status, body = b.post(PathApprove+id2, url.Values{"csrf": {csrf}, "action": {"approve"}, "assertion": {string(assertion)}})
		if status != http.StatusOK || !strings.Contains(body, "with your passkey") {
			t.Fatalf("approve with the new passkey: %d\n%s", status, body)
		}
		noOffer(t, "a passkey approval", body)
	})

	t.Run("no offer on a page opened, a wrong password, a denial, or with method password or passkey", func(t *testing.T) {
		b := e.browser("")
		id := e.requestFor("alice", "Code SE03")
		csrf, page := b.open(id)
		noOffer(t, "the approval page", page)
		status, body := b.post(PathApprove+id, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"guess"}})
		if status != http.StatusUnauthorized {
			t.Fatalf("a wrong password: %d, want 401", status)
		}
		noOffer(t, "a wrong password", body)
		status, body = b.post(PathApprove+id, url.Values{"csrf": {csrf}, "action": {"deny"}})
		if status != http.StatusOK || !strings.Contains(body, "You denied") {
			t.Fatalf("deny: %d", status)
		}
		noOffer(t, "a denial", body)

		e.methods["sub-alice"] = MethodPassword
		status, body = b.approvePassword(e.requestFor("alice", "Code SE04"), "alice")
		if status != http.StatusOK {
			t.Fatalf("password approval under method password: %d", status)
		}
		noOffer(t, "a password approval under method password", body)

		e.methods["sub-alice"] = MethodPasskey
		status, body = b.approvePassword(e.requestFor("alice", "Code SE05"), "alice")
		if status != http.StatusUnauthorized {
			t.Fatalf("a password under method passkey: %d, want 401", status)
		}
		noOffer(t, "a password refused under method passkey", body)
		delete(e.methods, "sub-alice")
	})

	t.Run("an expired offer is refused", func(t *testing.T) {
		b := e.browser("")
		_, body := b.approvePassword(e.requestFor("bob", "Code SE06"), "bob")
		o := offerOf(t, body)
		tokens = append(tokens, o.token)
		cred, _ := passkeytest.New(pkOrigin).Create(o.options)
		e.clock = e.clock.Add(SelfEnrolTTL + time.Second)
		status, body := b.postOffer(o.action, o.token, cred)
		e.clock = e.clock.Add(-SelfEnrolTTL - time.Second)
		if status != http.StatusGone || !strings.Contains(body, "has expired") {
			t.Fatalf("an expired offer: %d, want 410\n%s", status, body)
		}
		if n := e.passkeys("sub-bob"); n != 0 {
			t.Fatalf("bob has %d passkeys, want 0", n)
		}
	})

	t.Run("an offer used for another user, from another browser, or with another offer's passkey is refused", func(t *testing.T) {
		bobs := e.browser("")
		bobID := e.requestFor("bob", "Code SE07")
		_, body := bobs.approvePassword(bobID, "bob")
		bobOffer := offerOf(t, body)
		tokens = append(tokens, bobOffer.token)
		bobKey := passkeytest.New(pkOrigin)
		cred, _ := bobKey.Create(bobOffer.options)

		// Alice's browser, on alice's approval, with bob's offer.
		alices := e.browser("")
		aliceID := e.requestFor("alice", "Code SE08")
		alices.open(aliceID)
		if status, body := alices.postOffer(PathApprove+aliceID+pathSelfEnrol, bobOffer.token, cred); status != http.StatusForbidden || !strings.Contains(body, "belongs to another sign-in") {
			t.Fatalf("bob's offer on alice's approval: %d, want 403\n%s", status, body)
		}
		// Another browser, with an approval page's cookie of its own
		// (bob's request is answered: its page no longer opens).
		other := e.browser("")
		other.open(aliceID)
		if status, _ := other.postOffer(bobOffer.action, bobOffer.token, cred); status != http.StatusForbidden {
			t.Fatalf("bob's offer from another browser: %d, want 403", status)
		}
		// A browser with no cookie at all.
		if status, _ := e.browser("").postOffer(bobOffer.action, bobOffer.token, cred); status != http.StatusForbidden {
			t.Fatalf("bob's offer from a browser without the cookie: %d, want 403", status)
		}
		// Alice's own offer, with the passkey made for bob's.
		_, body = alices.approvePassword(aliceID, "alice")
		aliceOffer := offerOf(t, body)
		tokens = append(tokens, aliceOffer.token)
		if status, _ := alices.postOffer(aliceOffer.action, aliceOffer.token, cred); status != http.StatusBadRequest {
			t.Fatalf("alice's offer with the passkey made for bob's: %d, want 400", status)
		}
		if e.passkeys("sub-bob") != 0 || e.passkeys("sub-alice") != 1 {
			t.Fatalf("bob %d, alice %d passkeys; want 0 and 1", e.passkeys("sub-bob"), e.passkeys("sub-alice"))
		}
		// Bob's offer still works where it was made.
		if status, body := bobs.postOffer(bobOffer.action, bobOffer.token, cred); status != http.StatusOK {
			t.Fatalf("bob's offer in bob's browser: %d\n%s", status, body)
		}
		if e.passkeys("sub-bob") != 1 {
			t.Fatalf("bob has %d passkeys, want 1", e.passkeys("sub-bob"))
		}
	})

	t.Run("a users enroll link is no offer, and an offer is no link", func(t *testing.T) {
		link, _, err := e.pk.Enrolments.Issue(t.Context(), "sub-alice", "alice", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		b := e.browser("")
		id := e.requestFor("alice", "Code SE09")
		_, body := b.approvePassword(id, "alice")
		o := offerOf(t, body)
		tokens = append(tokens, o.token)
		_, linkPage := e.browser("").get(PathEnroll + link)
		cred, _ := passkeytest.New(pkOrigin).Create(options(t, linkPage))
		if status, _ := b.postOffer(o.action, link, cred); status != http.StatusForbidden {
			t.Fatalf("a link's token posted as an offer: %d, want 403", status)
		}
		if status, _ := e.browser("").get(PathEnroll + o.token); status != http.StatusGone {
			t.Fatalf("an offer's token opened as a link: %d, want 410", status)
		}
		if status, _ := b.post(PathEnroll+o.token, url.Values{"credential": {string(cred)}}); status != http.StatusGone {
			t.Fatalf("an offer's token posted as a link: %d, want 410", status)
		}

		// A registration without user verification is refused and leaves
		// the offer, shown again; the right one is then taken.
		noUV := passkeytest.New(pkOrigin)
		noUV.NoUV = true
		bad, _ := noUV.Create(o.options)
		status, body := b.postOffer(o.action, o.token, bad)
		if status != http.StatusBadRequest || !strings.Contains(body, "could not be checked") {
			t.Fatalf("a registration without user verification: %d, want 400\n%s", status, body)
		}
		again := offerOf(t, body)
		second := passkeytest.New(pkOrigin)
		good, _ := second.Create(again.options)
		if status, _ := b.postOffer(again.action, again.token, good); status != http.StatusOK {
			t.Fatalf("the right registration after a refused one: %d", status)
		}
		if n := e.passkeys("sub-alice"); n != 2 {
			t.Fatalf("alice has %d passkeys, want 2", n)
		}
	})

	t.Run("no offer's token in the log", func(t *testing.T) {
		log := logs.String()
		if !strings.Contains(log, "passkey enrolled") {
			t.Fatalf("the log has no enrolment; is it kept?\n%s", log)
		}
		for _, tok := range tokens {
			if strings.Contains(log, tok) {
				t.Fatalf("the log holds an offer's token:\n%s", log)
			}
		}
	})
}

// TestPasskeySelfEnrolmentBurst: one offer posted by 20 browsers at once
// (a copied page and cookie, a replaying attacker) registers exactly one
// passkey; the others are told the offer was used. The example
// configuration's limits hold them (19 failures of one address, within
// its 30 per 10 minutes).
func TestPasskeySelfEnrolmentBurst(t *testing.T) {
	e, _ := newSelfEnv(t)
	b, o, cred := e.offeredPasskey("Code BRST")
	got := burst(t, 20, func() (*http.Response, error) {
		return b.c.PostForm(e.srv.URL+o.action, url.Values{"action": {actionAddPasskey}, "enrolment": {o.token}, "credential": {string(cred)}})
	})
	if got[http.StatusOK] != 1 || got[http.StatusGone] != 19 {
		t.Fatalf("answers %v, want one 200 and nineteen 410", got)
	}
	if n := e.passkeys("sub-alice"); n != 1 {
		t.Fatalf("alice has %d passkeys, want 1", n)
	}
}

// TestEnrolLinkBurstRegistersOnce: one `users enroll` link posted by 20
// browsers at once registers exactly one passkey.
func TestEnrolLinkBurstRegistersOnce(t *testing.T) {
	e, _ := newSelfEnv(t)
	b, tok, cred := e.linkedPasskey()
	got := burst(t, 20, func() (*http.Response, error) {
		return b.c.PostForm(e.srv.URL+PathEnroll+tok, url.Values{"credential": {string(cred)}})
	})
	if got[http.StatusOK] != 1 || got[http.StatusGone] != 19 {
		t.Fatalf("answers %v, want one 200 and nineteen 410", got)
	}
	if n := e.passkeys("sub-alice"); n != 1 {
		t.Fatalf("alice has %d passkeys, want 1", n)
	}
}

// offeredPasskey approves a new request of alice with her password in a
// new browser, whose "Approved" page must offer a passkey (code is the
// request's binding message); it returns the browser, the offer and a
// new passkey's credential for it.
func (e *pkEnv) offeredPasskey(code string) (*pkBrowser, selfOffer, []byte) {
	e.t.Helper()
	b := e.browser("")
	_, body := b.approvePassword(e.requestFor("alice", code), "alice")
	o := offerOf(e.t, body)
	cred, err := passkeytest.New(pkOrigin).Create(o.options)
	if err != nil {
		e.t.Fatal(err)
	}
	return b, o, cred
}

// linkedPasskey issues a `users enroll` link for alice and opens it in a
// new browser; it returns the browser, the link's token and a new
// passkey's credential for it.
func (e *pkEnv) linkedPasskey() (*pkBrowser, string, []byte) {
	e.t.Helper()
	tok, _, err := e.pk.Enrolments.Issue(e.t.Context(), "sub-alice", "alice", time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	b := e.browser("")
	_, page := b.get(PathEnroll + tok)
	cred, err := passkeytest.New(pkOrigin).Create(options(e.t, page))
	if err != nil {
		e.t.Fatal(err)
	}
	return b, tok, cred
}

// burst sends n requests at once (all started before any is sent) and
// counts the answers by status.
func burst(t *testing.T, n int, send func() (*http.Response, error)) map[int]int {
	t.Helper()
	statuses := make(chan int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			resp, err := send()
			if err != nil {
				statuses <- -1
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	got := map[int]int{}
	for s := range statuses {
		got[s]++
	}
	return got
}

// TestPasskeySelfEnrolmentOff: with the setting off (the default) a
// password approval offers nothing, and the endpoint refuses even an
// enrolment bound to the very page and browser.
func TestPasskeySelfEnrolmentOff(t *testing.T) {
	e, _ := newSelfEnv(t)
	e.pk.SelfEnroll = false
	b := e.browser("")
	id := e.requestFor("alice", "Code OFF1")
	status, body := b.approvePassword(id, "alice")
	if status != http.StatusOK {
		t.Fatalf("password approval: %d", status)
	}
	noOffer(t, "a password approval with self-service enrolment off", body)
	u, _ := url.Parse(e.srv.URL + PathApprove)
	var cookie string
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == csrfCookie {
			cookie = c.Value
		}
	}
	tok, _, err := e.pk.Enrolments.IssueBound(t.Context(), "sub-alice", "alice", approvalSelfBinding(cookie, id), SelfEnrolTTL)
	if err != nil {
		t.Fatal(err)
	}
	rp := e.pk.RP
	opts, err := rp.EnrolOptions("sub-alice", "alice", tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := passkeytest.New(pkOrigin).Create(opts)
	status, body = b.postOffer(PathApprove+id+pathSelfEnrol, tok, cred)
	if status != http.StatusForbidden || !strings.Contains(body, "not enabled") {
		t.Fatalf("the endpoint with the setting off: %d, want 403\n%s", status, body)
	}
	if n := e.passkeys("sub-alice"); n != 0 {
		t.Fatalf("alice has %d passkeys, want 0", n)
	}
}

// TestPasskeySelfEnrolmentOnTheDevicePage: a password approval on the
// device page offers a passkey too, posted back to the device page; it
// registers once, and only from the browser that approved.
func TestPasskeySelfEnrolmentOnTheDevicePage(t *testing.T) {
	e := newDeviceEnv(t, false)
	rp, err := passkey.NewRP(pkOrigin, "", "Test")
	if err != nil {
		t.Fatal(err)
	}
	e.approval.Passkeys = &Passkeys{RP: rp, Credentials: &passkey.Credentials{Records: e.st}, Enrolments: &passkey.Enrolments{Records: e.st, Now: e.clock.Now},
		Method: func(string) string { return MethodEither }, SelfEnroll: true}
	_, uc := e.start(t, "tv", url.Values{"scope": {"openid"}})
	c := browser()
	_, _, csrf := e.enter(t, c, uc)
	status, body, _ := e.page(t, c, http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}, "username": {"alice"}, "password": {"alice-password"}})
	if status != http.StatusOK || !strings.Contains(body, "You approved") {
		t.Fatalf("password approval: %d\n%s", status, body)
	}
	o := offerOf(t, body)
	if o.action != PathDevice {
		t.Fatalf("the offer posts to %q, want %q", o.action, PathDevice)
	}
	cred, _ := passkeytest.New(pkOrigin).Create(o.options)
	form := url.Values{"action": {actionAddPasskey}, "enrolment": {o.token}, "credential": {string(cred)}}
	other := browser()
	e.page(t, other, http.MethodGet, "", nil) // a device page cookie of its own
	if status, body, _ := e.page(t, other, http.MethodPost, "", form); status != http.StatusForbidden || !strings.Contains(body, "belongs to another sign-in") {
		t.Fatalf("the offer from another browser: %d, want 403\n%s", status, body)
	}
	if status, body, _ := e.page(t, c, http.MethodPost, "", form); status != http.StatusOK || !strings.Contains(body, "Passkey added") {
		t.Fatalf("add the passkey: %d\n%s", status, body)
	}
	if status, _, _ := e.page(t, c, http.MethodPost, "", form); status != http.StatusGone {
		t.Fatalf("the offer replayed: %d, want 410", status)
	}
	if list, _ := e.approval.Passkeys.Credentials.List(t.Context(), "sub-alice"); len(list) != 1 {
		t.Fatalf("alice has %d passkeys, want 1", len(list))
	}
}

// TestPasskeySelfEnrolmentRenewsThePageCookie: an offer is bound to the
// page's cookie, so the Approved page that makes one sets that cookie
// again for its full hour: a cookie set by an earlier page would otherwise
// expire within the offer's ten minutes, and the offer be refused as
// another browser's. On the approval page and on the device page.
func TestPasskeySelfEnrolmentRenewsThePageCookie(t *testing.T) {
	jarValue := func(t *testing.T, c *http.Client, base, path, name string) string {
		t.Helper()
		u, _ := url.Parse(base + path)
		for _, k := range c.Jar.Cookies(u) {
			if k.Name == name {
				return k.Value
			}
		}
		t.Fatalf("the browser has no %s cookie", name)
		return ""
	}
	renewed := func(t *testing.T, resp *http.Response, body, name, value string) {
		t.Helper()
		offerOf(t, body)
		for _, k := range resp.Cookies() {
			if k.Name == name && k.Value == value && k.MaxAge >= int(SelfEnrolTTL/time.Second) && k.HttpOnly && k.SameSite == http.SameSiteStrictMode {
				return
			}
		}
		t.Fatalf("the Approved page with an offer does not renew the %s cookie: Set-Cookie %q", name, resp.Header.Values("Set-Cookie"))
	}
	t.Run("approval page", func(t *testing.T) {
		e, _ := newSelfEnv(t)
		b := e.browser("")
		id := e.requestFor("alice", "Code RC01")
		csrf, _ := b.open(id)
		cookie := jarValue(t, b.c, e.srv.URL, PathApprove, csrfCookie)
		resp, err := b.c.PostForm(e.srv.URL+PathApprove+id, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {"alice-password"}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		renewed(t, resp, string(body), csrfCookie, cookie)
	})
	t.Run("device page", func(t *testing.T) {
		e := newDeviceEnv(t, false)
		rp, err := passkey.NewRP(pkOrigin, "", "Test")
		if err != nil {
			t.Fatal(err)
		}
		e.approval.Passkeys = &Passkeys{RP: rp, Credentials: &passkey.Credentials{Records: e.st}, Enrolments: &passkey.Enrolments{Records: e.st, Now: e.clock.Now},
			Method: func(string) string { return MethodEither }, SelfEnroll: true}
		_, uc := e.start(t, "tv", url.Values{"scope": {"openid"}})
		c := browser()
		_, _, csrf := e.enter(t, c, uc)
		cookie := jarValue(t, c, e.srv.URL, PathDevice, deviceCookie)
		_, body, resp := e.page(t, c, http.MethodPost, "", url.Values{"csrf": {csrf}, "user_code": {uc}, "action": {"approve"}, "username": {"alice"}, "password": {"alice-password"}})
		renewed(t, resp, body, deviceCookie, cookie)
	})
}

// newFailingSelfEnv is newSelfEnv whose passkeys and enrolments are kept
// in a store that fails on demand.
func newFailingSelfEnv(t *testing.T) (*pkEnv, *failingStore) {
	t.Helper()
	e, _ := newSelfEnv(t)
	fs := newFailingStore(e.st)
	e.pk.Credentials = &passkey.Credentials{Records: fs}
	e.pk.Enrolments.Records = fs
	return e, fs
}

// TestPasskeySelfEnrolmentSurvivesAStoreError: when the store fails to
// keep the new passkey, the offer is not spent: the same offer tried
// again adds it, once, and the offer keeps its first lifetime.
func TestPasskeySelfEnrolmentSurvivesAStoreError(t *testing.T) {
	e, fs := newFailingSelfEnv(t)
	b, o, cred := e.offeredPasskey("Code FAIL")
	fs.Fail(1)
	if status, body := b.postOffer(o.action, o.token, cred); status != http.StatusServiceUnavailable {
		t.Fatalf("with the store failing: %d, want 503\n%s", status, body)
	}
	if n := e.passkeys("sub-alice"); n != 0 {
		t.Fatalf("alice has %d passkeys after a failed write, want 0", n)
	}
	if status, body := b.postOffer(o.action, o.token, cred); status != http.StatusOK || !strings.Contains(body, "Passkey added") {
		t.Fatalf("the same offer tried again: %d, want 200\n%s", status, body)
	}
	if n := e.passkeys("sub-alice"); n != 1 {
		t.Fatalf("alice has %d passkeys, want 1", n)
	}
	if status, _ := b.postOffer(o.action, o.token, cred); status != http.StatusGone {
		t.Fatalf("the offer used a third time: %d, want 410", status)
	}
	puts := fs.puts("passkey-enrolment")
	if len(puts) != 2 || puts[1] <= 0 || puts[1] > puts[0] {
		t.Fatalf("enrolment lifetimes %v: want the offer's, then at most what was left of it", puts)
	}
}

// TestPasskeySelfEnrolmentBurstWithAStoreError: one offer posted by 20
// browsers at once while the store fails the first write, then once more,
// registers exactly one passkey over all.
func TestPasskeySelfEnrolmentBurstWithAStoreError(t *testing.T) {
	e, fs := newFailingSelfEnv(t)
	b, o, cred := e.offeredPasskey("Code BFAIL")
	fs.Fail(1)
	got := burst(t, 20, func() (*http.Response, error) {
		return b.c.PostForm(e.srv.URL+o.action, url.Values{"action": {actionAddPasskey}, "enrolment": {o.token}, "credential": {string(cred)}})
	})
	if got[http.StatusServiceUnavailable] != 1 || got[http.StatusOK] > 1 || got[http.StatusOK]+got[http.StatusGone] != 19 {
		t.Fatalf("answers %v, want one 503, at most one 200, the rest 410", got)
	}
	status, _ := b.postOffer(o.action, o.token, cred)
	if added := got[http.StatusOK]; (added == 1 && status != http.StatusGone) || (added == 0 && status != http.StatusOK) {
		t.Fatalf("after a burst with %d added, the offer again: %d", added, status)
	}
	if n := e.passkeys("sub-alice"); n != 1 {
		t.Fatalf("alice has %d passkeys, want 1", n)
	}
}

// TestEnrolLinkSurvivesAStoreError: a `users enroll` link whose passkey
// the store fails to keep is not spent: the same link adds it on the
// next try, once.
func TestEnrolLinkSurvivesAStoreError(t *testing.T) {
	e, fs := newFailingSelfEnv(t)
	b, tok, cred := e.linkedPasskey()
	fs.Fail(1)
	if status, body := b.post(PathEnroll+tok, url.Values{"credential": {string(cred)}}); status != http.StatusServiceUnavailable {
		t.Fatalf("with the store failing: %d, want 503\n%s", status, body)
	}
	if status, body := b.post(PathEnroll+tok, url.Values{"credential": {string(cred)}}); status != http.StatusOK || !strings.Contains(body, "Passkey added") {
		t.Fatalf("the same link tried again: %d, want 200\n%s", status, body)
	}
	if status, _ := b.post(PathEnroll+tok, url.Values{"credential": {string(cred)}}); status != http.StatusGone {
		t.Fatalf("the link used a third time: %d, want 410", status)
	}
	if n := e.passkeys("sub-alice"); n != 1 {
		t.Fatalf("alice has %d passkeys, want 1", n)
	}
}
