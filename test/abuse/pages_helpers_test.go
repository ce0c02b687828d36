package abuse

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// Helpers of passwords_test.go and usercode_test.go (prefix "pages").

// The shipped limits these tests hold the server to (docs/configuration.md,
// "limits"; none is changed).
const (
	pagesFailuresPerIP       = 30 // approval_failures_per_ip: 30 per 10m
	pagesPasswordsPerUserIP  = 5  // password_failures_per_user_ip: 5 per 1h
	pagesPasswordsPerUser    = 10 // password_failures_per_user: 10 per 1h
	pagesCodesPerClientUser  = 5  // user_code_failures_per_client_user: 5 per 1h
	pagesCodesPerUser        = 10 // user_code_failures_per_user: 10 per 1h
	pagesBurst               = 120
	pagesAliceCode           = "1234" // alice's user code in the shipped configs
	pagesAlicePassword       = "alice-password"
	pagesBobPassword         = "bob-password"
	pagesDeviceClientID      = "demo-device"
	pagesGrantDeviceCode     = "urn:ietf:params:oauth:grant-type:device_code"
	pagesWrongPasswordPrefix = "not-the-password-"
)

var pagesCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// pagesBrowser is a browser at one loopback source address (127.0.0.N: the
// server sees a distinct client address), with its own cookies and
// connections.
type pagesBrowser struct {
	t *testing.T
	c *http.Client
}

func pagesNewBrowser(t *testing.T, src string) *pagesBrowser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := testutil.TransportFrom(src, pagesBurst)
	tr.IdleConnTimeout = 30 * time.Second
	t.Cleanup(tr.CloseIdleConnections)
	return &pagesBrowser{t: t, c: &http.Client{
		Jar: jar, Transport: tr, Timeout: burstTimeout, // bursts of bcrypt checks under -race on a loaded machine are slow
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// pagesBusyTries bounds the tries of one password that the server
// answers busy (pagesBrowser.do).
const pagesBusyTries = 100

// do sends a GET (form nil) or a form POST and returns the status and body.
// A password the server did not check because every bcrypt slot stayed
// busy (503, the busy page: it counts as no try) is sent again, as a user
// told to try again would, so that every try of a burst ends checked or
// refused by a limit however loaded the machine; each new try waits at
// most the server's slot wait (1 s) before its answer, so this is no busy
// loop.
func (b *pagesBrowser) do(target string, form url.Values) (int, string) {
	b.t.Helper()
	for range pagesBusyTries - 1 {
		status, body := b.doOnce(target, form)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "is busy right now") {
			return status, body
		}
	}
	return b.doOnce(target, form)
}

// doOnce is one request of do.
func (b *pagesBrowser) doOnce(target string, form url.Values) (int, string) {
	b.t.Helper()
	method, body := http.MethodGet, io.Reader(nil)
	if form != nil {
		method, body = http.MethodPost, strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(burstCtx(b.t), method, target, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Errorf("%s %s: %v", method, target, err)
		return 0, ""
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		b.t.Errorf("%s %s: read: %v", method, target, err)
	}
	return resp.StatusCode, string(raw)
}

// csrf opens a page with a form and returns its CSRF field.
func (b *pagesBrowser) csrf(target string, form url.Values) string {
	b.t.Helper()
	status, body := b.do(target, form)
	m := pagesCSRF.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		b.t.Fatalf("%s: HTTP %d, want 200 with a form:\n%s", target, status, body)
	}
	return m[1]
}

// approve answers the approval page at link with password, with the CSRF
// field of the form the browser opened there.
func (b *pagesBrowser) approve(link, csrf, password string) (int, string) {
	return b.do(link, url.Values{"csrf": {csrf}, "action": {"approve"}, "password": {password}})
}

// deviceForm enters userCode on the device page of base and returns the
// CSRF field of the approval form it shows.
func (b *pagesBrowser) deviceForm(base, userCode string) string {
	b.t.Helper()
	entry := b.csrf(base+"/device", nil)
	return b.csrf(base+"/device", url.Values{"csrf": {entry}, "action": {"continue"}, "user_code": {userCode}})
}

// deviceApprove approves the device request of userCode on base's page as
// username.
func (b *pagesBrowser) deviceApprove(base, csrf, userCode, username, password string) (int, string) {
	return b.do(base+"/device", url.Values{"csrf": {csrf}, "action": {"approve"}, "user_code": {userCode},
		"username": {username}, "password": {password}})
}

// pagesKind names an answer of the pages: its status, and for a 429 which
// limit refused (the page says it).
func pagesKind(status int, body string) string {
	switch {
	case status != http.StatusTooManyRequests:
		return http.StatusText(status)
	case strings.Contains(body, "wrong passwords"):
		return "locked: passwords"
	case strings.Contains(body, "failed attempts from your network"):
		return "locked: address"
	case strings.Contains(body, "wrong codes"):
		return "locked: device codes"
	default:
		return "429 of no known limit"
	}
}

// pagesParallel runs n tries at once (all released together, from as
// many goroutines) and counts their answers by kind.
func pagesParallel(n int, try func(i int) string) map[string]int {
	var mu sync.Mutex
	count := map[string]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			k := try(i)
			mu.Lock()
			count[k]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return count
}

// pagesUntilRefused makes failing tries one at a time until one is
// refused by the limit named want (a pagesKind), and returns how many
// were checked (401) before. A limit of n is refused after at most n
// tries, more only where tries came back meanwhile: it gives up after 3n.
func pagesUntilRefused(t *testing.T, want string, n int, try func(i int) (int, string)) int {
	t.Helper()
	for i := range 3 * n {
		status, body := try(i)
		if status == http.StatusUnauthorized {
			continue
		}
		if k := pagesKind(status, body); k != want {
			t.Fatalf("try %d: %s, want 401 or %s", i, k, want)
		}
		return i
	}
	t.Fatalf("%d failing tries, none refused (%s)", 3*n, want)
	return 0
}

// pagesRefilled is how many tries a bucket of n per period can have got
// back since start: the slack of an exact count in a test that takes
// time on a loaded machine (0 for any run shorter than period/n).
func pagesRefilled(start time.Time, n int, period time.Duration) int {
	return int(time.Since(start) / (period / time.Duration(n)))
}

// pagesWithin fails the test unless got is want, give or take the tries
// the bucket of n per period may have got back since start.
func pagesWithin(t *testing.T, what string, got, want int, start time.Time, n int, period time.Duration) {
	t.Helper()
	if slack := pagesRefilled(start, n, period); got < want || got > want+slack {
		t.Errorf("%s: %d, want %d (+%d refilled)", what, got, want, slack)
	}
}

// pagesCIBARequest starts a CIBA request for user on e as demo-poll and
// returns its auth_req_id and approval link.
func pagesCIBARequest(e *env, user, binding string) (authReqID, link string) {
	e.t.Helper()
	id := e.mustAuthorize(demoPoll, url.Values{"scope": {"openid"}, "login_hint": {user}, "binding_message": {binding}})
	m, err := e.hook.WaitBinding(ctx(e.t), binding)
	if err != nil {
		e.t.Fatal(err)
	}
	return id, m.ApproveURL
}

// pagesOnInstance is link on the instance e (the same path).
func pagesOnInstance(e *env, link string) string {
	e.t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.url(u.Path)
}

// pagesCIBATokens polls for the tokens of an approved request.
func pagesCIBATokens(e *env, authReqID string) {
	e.t.Helper()
	r, err := testutil.PostForm(ctx(e.t), e.url("/token"), demoPoll, url.Values{"grant_type": {testutil.GrantCIBA}, "auth_req_id": {authReqID}})
	if err != nil {
		e.t.Fatal(err)
	}
	if r.Status != http.StatusOK || r.Str("access_token") == "" {
		e.t.Fatalf("token after approval: %s", r)
	}
}

// pagesDeviceStart starts a device request as the shipped public client.
func pagesDeviceStart(e *env) (deviceCode, userCode string) {
	e.t.Helper()
	r, err := testutil.PostForm(ctx(e.t), e.url("/device_authorization"), testutil.Client{},
		url.Values{"client_id": {pagesDeviceClientID}, "scope": {"openid"}})
	if err != nil {
		e.t.Fatal(err)
	}
	if r.Status != http.StatusOK || r.Str("device_code") == "" || r.Str("user_code") == "" {
		e.t.Fatalf("device authorization as %s: %s", pagesDeviceClientID, r)
	}
	return r.Str("device_code"), r.Str("user_code")
}

// pagesDevicePoll asks for the tokens of a device request.
func pagesDevicePoll(e *env, deviceCode string) *testutil.Response {
	e.t.Helper()
	r, err := testutil.PostForm(ctx(e.t), e.url("/token"), testutil.Client{},
		url.Values{"client_id": {pagesDeviceClientID}, "grant_type": {pagesGrantDeviceCode}, "device_code": {deviceCode}})
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// pagesNoLeak fails the test if a password reached a server's log.
func pagesNoLeak(t *testing.T, s *testutil.Server, secrets ...string) {
	t.Helper()
	logs := s.Logs()
	for _, sec := range secrets {
		if strings.Contains(logs, sec) {
			t.Errorf("the log holds %q", sec)
		}
	}
}
