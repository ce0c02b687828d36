package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/limit/limittest"
)

// The bcrypt checks of passwords (approval page) and user codes
// (bc-authorize) run in the instance's hash slots, shared with the client
// secrets' (hashSlots), with the quick start's defaults: at most
// clientauth.DefaultHashSlots at once, a check that gets no slot within
// clientauth.DefaultHashWait answered busy (503, Retry-After) and counted
// as no wrong try. Each test holds every slot for a while (limittest),
// which stands for a burst that keeps them all busy; without the bound the
// checks would run at once, answer 401 or invalid_user_code, and use up
// the lockout.

// startApp serves the instance of cfg (examples/quickstart.yaml, loaded
// with the environment startInstance sets) and returns its URL and the App.
func startApp(t *testing.T, edit func(*config.Config)) (string, *App) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	issuer := "http://" + srv.Listener.Addr().String()
	t.Setenv("CIBAPROXY_DATA", t.TempDir())
	t.Setenv("CIBAPROXY_ISSUER", issuer)
	t.Setenv("CIBAPROXY_WEBHOOK_URL", "http://127.0.0.1:9/hook")
	cfg := quickstart(t)
	if edit != nil {
		edit(cfg)
	}
	a, err := New(t.Context(), cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	srv.Config.Handler = a.Handler
	srv.Start()
	return issuer, a
}

// answer is one HTTP answer of the tests.
type answer struct {
	status     int
	retryAfter string
	body       string
}

func (a answer) jsonError() string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(a.body), &e)
	return e.Error
}

// waitFor waits until cond holds, at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// parallel runs n calls of f at once and returns their answers.
func parallel(n int, f func(i int) answer) []answer {
	out := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i] = f(i) })
	}
	wg.Wait()
	return out
}

// approvalPage is the approval page of one request for user, opened in a
// browser of its own (its CSRF cookie and field).
type approvalPage struct {
	t    *testing.T
	link string
	c    *http.Client
	csrf string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func openApproval(t *testing.T, issuer string, a *App, user string) *approvalPage {
	t.Helper()
	form := url.Values{"scope": {"openid"}, "login_hint": {user}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, issuer+"/bc-authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-poll", "demo-poll-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ack struct {
		AuthReqID string `json:"auth_req_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ack)
	resp.Body.Close()
	if err != nil || ack.AuthReqID == "" {
		t.Fatalf("bc-authorize for %s: %d %v", user, resp.StatusCode, err)
	}
	r, err := a.Store.GetRequest(t.Context(), ack.AuthReqID)
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	p := &approvalPage{t: t, link: issuer + "/approve/" + r.ApprovalID, c: &http.Client{Jar: jar, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}
	t.Cleanup(p.c.CloseIdleConnections)
	resp, err = p.c.Get(p.link)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindStringSubmatch(string(body))
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("GET %s: %d", p.link, resp.StatusCode)
	}
	p.csrf = m[1]
	return p
}

// approve posts password to the page.
func (p *approvalPage) approve(password string) answer {
	form := url.Values{"csrf": {p.csrf}, "action": {"approve"}, "password": {password}}
	req, _ := http.NewRequestWithContext(p.t.Context(), http.MethodPost, p.link, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.c.Do(req)
	if err != nil {
		return answer{body: err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(raw)}
}

// busyPage reports whether a is the approval page's busy answer.
func busyPage(a answer) bool {
	return a.status == http.StatusServiceUnavailable && a.retryAfter == "1" && strings.Contains(a.body, "busy")
}

// countWrongUntilLocked posts wrong passwords one by one until the page
// answers 429 (at most limit+1 of them), and returns how many were
// checked (401) before it.
func countWrongUntilLocked(t *testing.T, p *approvalPage, limit int) int {
	t.Helper()
	for n := 0; n <= limit; n++ {
		switch a := p.approve("wrong"); a.status {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			return n
		default:
			t.Fatalf("wrong password %d: %d %s", n+1, a.status, a.body)
		}
	}
	t.Fatalf("more than %d wrong passwords checked", limit)
	return 0
}

// TestPasswordBurstBoundedBcrypt: a parallel burst of wrong passwords at
// the approval pages of two users, with the quick start's defaults, while
// every bcrypt slot is busy until the first check is refused: at most the
// slots' number of checks ran at once, the checks that got no slot in
// time were answered the busy page (503, Retry-After: 1), the others 401
// or, past the 5 tries of password_failures_per_user_ip reserved in
// flight, 429; and the lockout counted exactly the passwords checked (no
// busy one): each page then checks 5 minus those before it locks.
func TestPasswordBurstBoundedBcrypt(t *testing.T) {
	issuer, a := startApp(t, nil)
	const perUserIP, burst = 5, 8 // password_failures_per_user_ip's default; a burst over it
	pages := []*approvalPage{openApproval(t, issuer, a, "alice"), openApproval(t, issuer, a, "bob")}
	slots := a.HashSlots
	runs := slots.Runs()
	release := limittest.HoldSlots(t, slots)
	done := make(chan []answer)
	go func() {
		done <- parallel(len(pages)*burst, func(i int) answer { return pages[i%len(pages)].approve("wrong") })
	}()
	waitFor(t, "no password check refused busy", func() bool { return slots.Busy() > 0 })
	release()
	answers := <-done

	if peak, n := slots.Peak(), int64(slots.Cap()); peak > n {
		t.Errorf("%d bcrypt checks ran at once, the bound is %d", peak, n)
	}
	checked := slots.Runs() - runs - int64(slots.Cap()) // less the holders
	wrong := make([]int, len(pages))
	var busy, locked int
	for i, an := range answers {
		switch {
		case an.status == http.StatusUnauthorized:
			wrong[i%len(pages)]++
		case busyPage(an):
			busy++
		case an.status == http.StatusTooManyRequests:
			locked++
		default:
			t.Errorf("answer %d: %d (Retry-After %q) %.200s", i, an.status, an.retryAfter, an.body)
		}
	}
	t.Logf("%d slots; %d wrong, %d busy, %d locked out", slots.Cap(), wrong, busy, locked)
	if busy == 0 || int64(busy) != slots.Busy() {
		t.Errorf("%d busy pages, %d checks refused busy; want the same, at least one", busy, slots.Busy())
	}
	if locked != len(pages)*(burst-perUserIP) {
		t.Errorf("%d locked out, want %d: %d tries per user reserved in flight", locked, len(pages)*(burst-perUserIP), perUserIP)
	}
	if int64(wrong[0]+wrong[1]) != checked {
		t.Errorf("%d wrong-password answers, %d bcrypt checks of the burst", wrong[0]+wrong[1], checked)
	}
	for i, p := range pages {
		if left := countWrongUntilLocked(t, p, perUserIP); left != perUserIP-wrong[i] {
			t.Errorf("page %d: %d wrong passwords after the burst's %d before the lockout, want %d: busy answers counted", i, left, wrong[i], perUserIP-wrong[i])
		}
	}
}

// TestPasswordBusyConsumesNothing: wrong passwords and the right one,
// answered busy while every bcrypt slot is held, leave the lockout and the
// request as they were: the right password typed again approves.
func TestPasswordBusyConsumesNothing(t *testing.T) {
	issuer, a := startApp(t, nil)
	const perUserIP = 5
	p := openApproval(t, issuer, a, "alice")
	release := limittest.HoldSlots(t, a.HashSlots)
	// As many tries as the lockout allows from one address: wrong
	// passwords, and the right one.
	answers := parallel(perUserIP, func(i int) answer {
		if i == 0 {
			return p.approve("alice-password")
		}
		return p.approve("wrong")
	})
	release()
	for i, an := range answers {
		if !busyPage(an) {
			t.Errorf("answer %d with every slot held: %d (Retry-After %q) %.200s", i, an.status, an.retryAfter, an.body)
		}
	}
	if an := p.approve("alice-password"); an.status != http.StatusOK {
		t.Fatalf("the right password after the busy answers: %d %.300s", an.status, an.body)
	}
}

// bcAuthorize sends a bc-authorize for alice with code as user_code, as
// the poll client.
func bcAuthorize(t *testing.T, c *http.Client, issuer, code string) answer {
	form := url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "user_code": {code}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, issuer+"/bc-authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-poll", "demo-poll-secret")
	resp, err := c.Do(req)
	if err != nil {
		return answer{body: err.Error()}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(raw)}
}

// userCodeClient is the quick start with the poll client sending user
// codes (backchannel_user_code_parameter), the one change to it.
func userCodeClient(cfg *config.Config) {
	for i := range cfg.Clients {
		if cfg.Clients[i].ID == "demo-poll" {
			cfg.Clients[i].UserCodeParameter = true
		}
	}
}

// busyJSON reports whether a is bc-authorize's busy answer.
func busyJSON(a answer) bool {
	return a.status == http.StatusServiceUnavailable && a.retryAfter == "1" && a.jsonError() == "temporarily_unavailable"
}

// TestUserCodeBurstBoundedBcrypt: the same for user codes at bc-authorize:
// a parallel burst of wrong codes for alice while every bcrypt slot is
// busy until the first check is refused; at most the slots' number of
// checks at once, the excess 503 temporarily_unavailable with Retry-After,
// access_denied past the 5 tries of user_code_failures_per_client_user
// reserved in flight, and the lockout counted only the codes checked.
// Then, the slots held again, the right code is answered busy and counts
// nothing: sent again it is accepted.
func TestUserCodeBurstBoundedBcrypt(t *testing.T) {
	issuer, a := startApp(t, userCodeClient)
	const perClientUser, burst = 5, 8
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: burst}}
	t.Cleanup(c.CloseIdleConnections)
	slots := a.HashSlots
	runs := slots.Runs()
	release := limittest.HoldSlots(t, slots)
	done := make(chan []answer)
	go func() { done <- parallel(burst, func(int) answer { return bcAuthorize(t, c, issuer, "0000") }) }()
	waitFor(t, "no user code check refused busy", func() bool { return slots.Busy() > 0 })
	release()
	answers := <-done

	if peak, n := slots.Peak(), int64(slots.Cap()); peak > n {
		t.Errorf("%d bcrypt checks ran at once, the bound is %d", peak, n)
	}
	checked := slots.Runs() - runs - int64(slots.Cap())
	var wrong, busy, denied int
	for i, an := range answers {
		switch {
		case an.jsonError() == "invalid_user_code":
			wrong++
		case busyJSON(an):
			busy++
		case an.jsonError() == "access_denied":
			denied++
		default:
			t.Errorf("answer %d: %d (Retry-After %q) %s", i, an.status, an.retryAfter, an.body)
		}
	}
	t.Logf("%d slots; %d wrong, %d busy, %d denied", slots.Cap(), wrong, busy, denied)
	if busy == 0 || int64(busy) != slots.Busy() {
		t.Errorf("%d busy answers, %d checks refused busy; want the same, at least one", busy, slots.Busy())
	}
	if denied != burst-perClientUser || int64(wrong) != checked {
		t.Errorf("%d denied (want %d), %d wrong for %d checks", denied, burst-perClientUser, wrong, checked)
	}

	// Busy, the right code counts nothing.
	release = limittest.HoldSlots(t, slots)
	if an := bcAuthorize(t, c, issuer, "1234"); !busyJSON(an) {
		t.Errorf("the right code with every slot held: %d (Retry-After %q) %s", an.status, an.retryAfter, an.body)
	}
	release()
	if an := bcAuthorize(t, c, issuer, "1234"); an.status != http.StatusOK {
		t.Fatalf("the right code after the busy answer: %d %s", an.status, an.body)
	}
	// Exactly the codes checked were counted: the rest of the client's
	// share is still there.
	for n := wrong; n < perClientUser; n++ {
		if an := bcAuthorize(t, c, issuer, "0000"); an.jsonError() != "invalid_user_code" {
			t.Fatalf("wrong code %d after the burst's %d: %d %s, want invalid_user_code", n+1, wrong, an.status, an.body)
		}
	}
	if an := bcAuthorize(t, c, issuer, "0000"); an.jsonError() != "access_denied" {
		t.Fatalf("wrong code past the share: %d %s, want access_denied", an.status, an.body)
	}
}
