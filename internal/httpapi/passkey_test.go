package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	gojose "github.com/go-jose/go-jose/v4"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/keys"
	"github.com/cibaproxy/cibaproxy/internal/limit"
	"github.com/cibaproxy/cibaproxy/internal/passkey"
	"github.com/cibaproxy/cibaproxy/internal/passkey/passkeytest"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// pkOrigin is the origin the passkey tests' relying party and
// authenticators agree on; the HTTP server itself is on 127.0.0.1, which
// the relying party never sees.
const pkOrigin = "https://ciba.test"

var dataOptions = regexp.MustCompile(`id="passkey"[^>]*data-options="([^"]*)"`)

// pkEnv is a server with passkeys on, a clock, and its parts.
type pkEnv struct {
	t       *testing.T
	svc     *ciba.Service
	st      ciba.Store
	srv     *httptest.Server
	pk      *Passkeys
	signer  *keys.Manager
	methods map[string]string
	clock   time.Time
}

func newPKEnv(t *testing.T, l *Limits) *pkEnv {
	t.Helper()
	return newPKEnvWith(t, l, nil, discard())
}

// newPKEnvWith is newPKEnv with the ciba service's per-user request limit
// (nil: none) and the server's logger.
func newPKEnvWith(t *testing.T, l *Limits, userLimit func(context.Context, string, time.Time) (bool, time.Duration, error), log *slog.Logger) *pkEnv {
	t.Helper()
	e := &pkEnv{t: t, methods: map[string]string{}, clock: time.Now()}
	now := func() time.Time { return e.clock }
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	e.st = memory.New()
	svc, err := ciba.NewService(ciba.Config{DefaultExpiry: time.Minute, MaxExpiry: time.Minute, Interval: time.Second, BindingMessageMax: 20},
		ciba.Deps{Store: e.st, Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
			Clients: func(string) (*ciba.Client, bool) { return bank, true }, CallbackKey: key, Now: now, UserLimit: userLimit})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	rp, err := passkey.NewRP(pkOrigin, "", "Test")
	if err != nil {
		t.Fatal(err)
	}
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if e.signer, err = keys.New(sk); err != nil {
		t.Fatal(err)
	}
	e.pk = &Passkeys{RP: rp, Credentials: &passkey.Credentials{Records: e.st}, Enrolments: &passkey.Enrolments{Records: e.st, Now: now},
		Method: func(sub string) string {
			if m, ok := e.methods[sub]; ok {
				return m
			}
			return MethodEither
		},
		Signer: e.signer, Issuer: pkOrigin}
	if l == nil {
		l = &Limits{}
	}
	s := &Server{
		Issuer: pkOrigin, Service: svc, Clients: limAuth{}, Limits: l, Now: now, Logger: log,
		Approval:  &Approval{Service: svc, Passwords: fakeUpstream{}, Key: key, Logger: log, Passkeys: e.pk},
		Discovery: func(context.Context) (map[string]any, error) { return map[string]any{}, nil },
		JWKS:      func() any { return map[string]any{} },
	}
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// pkBrowser is one browser: a cookie jar, from one address.
type pkBrowser struct {
	e *pkEnv
	c *http.Client
}

func (e *pkEnv) browser(addr string) *pkBrowser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	if addr != "" {
		c.Transport = fromAddr{addr}
	}
	return &pkBrowser{e: e, c: c}
}

func (b *pkBrowser) get(path string) (int, string) {
	b.e.t.Helper()
	resp, err := b.c.Get(b.e.srv.URL + path)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (b *pkBrowser) post(path string, form url.Values) (int, string) {
	b.e.t.Helper()
	resp, err := b.c.PostForm(b.e.srv.URL+path, form)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// options returns the passkey options a page holds.
func options(t *testing.T, body string) []byte {
	t.Helper()
	m := dataOptions.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("the page offers no passkey:\n%s", body)
	}
	return []byte(html.UnescapeString(m[1]))
}

// enrol enrols a for alice through a fresh link, as the enrolment page.
func (e *pkEnv) enrol(a *passkeytest.Authenticator) {
	e.t.Helper()
	tok, _, err := e.pk.Enrolments.Issue(e.t.Context(), "sub-alice", "alice", time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	b := e.browser("")
	status, body := b.get(PathEnroll + tok)
	if status != http.StatusOK {
		e.t.Fatalf("enrolment page: %d\n%s", status, body)
	}
	cred, err := a.Create(options(e.t, body))
	if err != nil {
		e.t.Fatal(err)
	}
	if status, body := b.post(PathEnroll+tok, url.Values{"credential": {string(cred)}}); status != http.StatusOK || !strings.Contains(body, "Passkey added") {
		e.t.Fatalf("enrol: %d\n%s", status, body)
	}
}

// request starts a request for alice and returns its auth_req_id and
// approval id.
func (e *pkEnv) request(binding string) (string, string) {
	e.t.Helper()
	resp, err := e.svc.Authorize(e.t.Context(), bank, ciba.AuthParams{Scope: "openid email", Hint: ciba.Hint{LoginHint: "alice"}, BindingMessage: binding})
	if err != nil {
		e.t.Fatal(err)
	}
	r, _ := e.st.GetRequest(e.t.Context(), resp.AuthReqID)
	return resp.AuthReqID, r.ApprovalID
}

// open opens an approval page and returns its CSRF value and body.
func (b *pkBrowser) open(approvalID string) (string, string) {
	b.e.t.Helper()
	status, body := b.get(PathApprove + approvalID)
	m := csrfField.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil {
		b.e.t.Fatalf("approval page: %d\n%s", status, body)
	}
	return m[1], body
}

func (e *pkEnv) pending(authReqID string) bool {
	_, err := e.svc.Poll(e.t.Context(), bank, authReqID)
	return ciba.AsError(err) != nil && ciba.AsError(err).Code == ciba.CodeAuthorizationPending
}

func TestPasskeyEnrolmentAndApproval(t *testing.T) {
	e := newPKEnv(t, nil)
	a := passkeytest.New(pkOrigin)

	t.Run("an enrolment link registers a passkey once; used again it is refused", func(t *testing.T) {
		tok, _, _ := e.pk.Enrolments.Issue(t.Context(), "sub-alice", "alice", time.Hour)
		b := e.browser("")
		_, body := b.get(PathEnroll + tok)
		cred, _ := a.Create(options(t, body))
		if status, _ := b.post(PathEnroll+tok, url.Values{"credential": {string(cred)}}); status != http.StatusOK {
			t.Fatalf("enrol: %d", status)
		}
		if status, body := b.post(PathEnroll+tok, url.Values{"credential": {string(cred)}}); status != http.StatusGone || !strings.Contains(body, "already used") {
			t.Fatalf("the link used again: %d, want 410", status)
		}
		if status, _ := b.get(PathEnroll + tok); status != http.StatusGone {
			t.Fatalf("the used link opened: %d, want 410", status)
		}
		if list, _ := e.pk.Credentials.List(t.Context(), "sub-alice"); len(list) != 1 {
			t.Fatalf("alice has %d passkeys, want 1", len(list))
		}
	})

	t.Run("a 24-hour link's page says it expires in 24 hours, not 23", func(t *testing.T) {
		e.clock = time.Now() // the page reads the real clock a moment later
		tok, _, _ := e.pk.Enrolments.Issue(t.Context(), "sub-alice", "alice", 24*time.Hour)
		status, body := e.browser("").get(PathEnroll + tok)
		if status != http.StatusOK || !strings.Contains(body, ">in 24 hours</span>") {
			t.Fatalf("enrolment page: %d, want 200 saying in 24 hours:\n%s", status, body)
		}
	})

	t.Run("an expired enrolment link is refused", func(t *testing.T) {
		tok, _, _ := e.pk.Enrolments.Issue(t.Context(), "sub-alice", "alice", time.Minute)
		e.clock = e.clock.Add(2 * time.Minute)
		defer func() { e.clock = e.clock.Add(-2 * time.Minute) }()
		if status, _ := e.browser("").get(PathEnroll + tok); status != http.StatusGone {
			t.Fatalf("expired link: %d, want 410", status)
		}
	})

	t.Run("a registration without user verification is refused and leaves the link", func(t *testing.T) {
		tok, _, _ := e.pk.Enrolments.Issue(t.Context(), "sub-alice", "alice", time.Hour)
		b := e.browser("")
		_, body := b.get(PathEnroll + tok)
		noUV := passkeytest.New(pkOrigin)
		noUV.NoUV = true
		cred, _ := noUV.Create(options(t, body))
		if status, _ := b.post(PathEnroll+tok, url.Values{"credential": {string(cred)}}); status != http.StatusBadRequest {
			t.Fatalf("registration without UV: %d, want 400", status)
		}
		if status, _ := b.get(PathEnroll + tok); status != http.StatusOK {
			t.Fatalf("the link after a refused registration: %d, want 200", status)
		}
	})

	t.Run("the passkey approves, and the decision keeps a signed approval record", func(t *testing.T) {
		authReq, id := e.request("Code AAAA")
		b := e.browser("")
		csrf, body := b.open(id)
		if !strings.Contains(body, "Approve with passkey") || !strings.Contains(body, `id="password"`) {
			t.Fatalf("with method either the page offers the passkey and the password:\n%s", body)
		}
		assertion, err := a.Get(options(t, body))
		if err != nil {
			t.Fatal(err)
		}
		status, body := b.post(PathApprove+id, url.Values{"csrf": {csrf}, "action": {"approve"}, "assertion": {string(assertion)}})
		if status != http.StatusOK || !strings.Contains(body, "with your passkey") {
			t.Fatalf("approve with the passkey: %d\n%s", status, body)
		}
		r, _ := e.st.GetRequest(t.Context(), authReq)
		if r.Status != ciba.StatusApproved || r.ApprovalRecord == "" {
			t.Fatalf("request %s, record %q", r.Status, r.ApprovalRecord)
		}
		jws, err := gojose.ParseSignedCompact(r.ApprovalRecord, []gojose.SignatureAlgorithm{gojose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		payload, err := jws.Verify(e.signer.PublicJWKS().Keys[0])
		if err != nil {
			t.Fatalf("the record does not verify with the signing key: %v", err)
		}
		var rec passkey.Record
		_ = json.Unmarshal(payload, &rec)
		if rec.AuthReqID != authReq || rec.Subject != "sub-alice" || rec.CredentialID != a.CredentialID() || rec.BindingMessage != "Code AAAA" ||
			rec.ClientID != "bank" || rec.Scope != "openid email" || !rec.UserVerified || rec.ApprovedAt == 0 {
			t.Fatalf("record %+v", rec)
		}
		list, _ := e.pk.Credentials.List(t.Context(), "sub-alice")
		if list[0].WebAuthn.Authenticator.SignCount != a.SignCount || list[0].LastUsed.IsZero() {
			t.Fatalf("sign count %d (authenticator %d), last used %v", list[0].WebAuthn.Authenticator.SignCount, a.SignCount, list[0].LastUsed)
		}
	})

	t.Run("an assertion made for request A is refused on request B", func(t *testing.T) {
		authA, idA := e.request("Code AAAA")
		authB, idB := e.request("Code AAAA") // the same binding message, client, scope and user
		b := e.browser("")
		_, bodyA := b.open(idA)
		assertionA, _ := a.Get(options(t, bodyA))
		csrfB, _ := b.open(idB)
		if status, body := b.post(PathApprove+idB, url.Values{"csrf": {csrfB}, "action": {"approve"}, "assertion": {string(assertionA)}}); status != http.StatusUnauthorized || !strings.Contains(body, "did not confirm this request") {
			t.Fatalf("A's assertion on B: %d, want 401", status)
		}
		if !e.pending(authB) || !e.pending(authA) {
			t.Fatal("a request was decided by an assertion made for A posted to B")
		}
		csrfA, _ := b.open(idA)
		if status, _ := b.post(PathApprove+idA, url.Values{"csrf": {csrfA}, "action": {"approve"}, "assertion": {string(assertionA)}}); status != http.StatusOK {
			t.Fatalf("A's assertion on A: %d", status)
		}
	})

	t.Run("an assertion without user verification is refused", func(t *testing.T) {
		authReq, id := e.request("Code CCCC")
		b := e.browser("")
		csrf, body := b.open(id)
		a.NoUV = true
		assertion, _ := a.Get(options(t, body))
		a.NoUV = false
		if status, _ := b.post(PathApprove+id, url.Values{"csrf": {csrf}, "action": {"approve"}, "assertion": {string(assertion)}}); status != http.StatusUnauthorized {
			t.Fatalf("assertion without UV: %d, want 401", status)
		}
		if !e.pending(authReq) {
			t.Fatal("the request was decided")
		}
	})

	for _, tc := range []struct {
		name, code      string
		method          string
		absent, present string // on the approval page
		field           string // the proof the method does not take
		value           func() string
		status          int
		what, decided   string // the failure messages
	}{
		{
			name: "method passkey: no password field, and the right password approves nothing", code: "Code DDDD",
			method: MethodPasskey, absent: `id="password"`, present: "Approve with passkey",
			field: "password", value: func() string { return "alice-password" }, status: http.StatusUnauthorized,
			what: "password under method passkey", decided: "the password approved under method passkey",
		},
		{
			name: "method password: the page offers no passkey, and an assertion is refused", code: "Code EEEE",
			method: MethodPassword, absent: "Approve with passkey", present: `id="password"`,
			field: "assertion", value: func() string {
				assertion, _ := a.Assert("ciba.test", "AAAAAAAAAAAAAAAAAAAAAA")
				return string(assertion)
			}, status: http.StatusBadRequest,
			what: "assertion under method password", decided: "decided",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.methods["sub-alice"] = tc.method
			defer delete(e.methods, "sub-alice")
			authReq, id := e.request(tc.code)
			b := e.browser("")
			csrf, body := b.open(id)
			if strings.Contains(body, tc.absent) || !strings.Contains(body, tc.present) {
				t.Fatalf("method %s page:\n%s", tc.method, body)
			}
			if status, _ := b.post(PathApprove+id, url.Values{"csrf": {csrf}, "action": {"approve"}, tc.field: {tc.value()}}); status != tc.status {
				t.Fatalf("%s: %d, want %d", tc.what, status, tc.status)
			}
			if !e.pending(authReq) {
				t.Fatal(tc.decided)
			}
		})
	}

	t.Run("method passkey without a passkey: the page says to enrol, only Deny", func(t *testing.T) {
		e.methods["sub-bob"] = MethodPasskey
		resp, _ := e.svc.Authorize(t.Context(), bank, ciba.AuthParams{Scope: "openid", Hint: ciba.Hint{LoginHint: "bob"}})
		r, _ := e.st.GetRequest(t.Context(), resp.AuthReqID)
		_, body := e.browser("").open(r.ApprovalID)
		if !strings.Contains(body, "enrolment link") || strings.Contains(body, `value="approve"`) || strings.Contains(body, `id="password"`) {
			t.Fatalf("page:\n%s", body)
		}
	})
}

func TestPasskeyFailuresCountAgainstThePasswordLockout(t *testing.T) {
	e := newPKEnv(t, &Limits{
		PasswordFailuresPerUser: limit.New(limit.Rate{Requests: 3, Per: time.Hour}, 0),
		TrustedProxies:          []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		ClientIPHeader:          "X-Forwarded-For",
	})
	a := passkeytest.New(pkOrigin)
	e.enrol(a)
	authReq, id := e.request("Code LOCK")
	_, idOther := e.request("Code OTHR")
	b := e.browser("198.51.100.1")
	_, other := b.open(idOther)
	wrong, _ := a.Get(options(t, other)) // another request's: refused here
	csrf, body := b.open(id)
	// Two refused assertions and a wrong password: alice's three tries.
	for i, form := range []url.Values{
		{"csrf": {csrf}, "action": {"approve"}, "assertion": {string(wrong)}},
		{"csrf": {csrf}, "action": {"approve"}, "password": {"guess"}},
		{"csrf": {csrf}, "action": {"approve"}, "assertion": {"{not json"}},
	} {
		if status, _ := b.post(PathApprove+id, form); status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, status)
		}
	}
	right, _ := a.Get(options(t, body))
	if status, _ := b.post(PathApprove+id, url.Values{"csrf": {csrf}, "action": {"approve"}, "assertion": {string(right)}}); status != http.StatusTooManyRequests {
		t.Fatalf("the right passkey once alice's tries are spent: %d, want 429", status)
	}
	if !e.pending(authReq) {
		t.Fatal("the request was decided under the lockout")
	}
}
