package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// passkeyEnv is the quick start served as http://localhost:PORT: WebAuthn
// binds passkeys to a domain name, and browsers take localhost for one
// (and for a secure context over http).
type passkeyEnv struct {
	*env
	issuer string
	// config is the server's configuration file; the quick start's when
	// empty.
	config string
}

func startPasskeys(t *testing.T) *passkeyEnv {
	t.Helper()
	return startPasskeysWith(t, "")
}

// startPasskeysWith is startPasskeys with extra YAML appended to the quick
// start's configuration ("" for none).
func startPasskeysWith(t *testing.T, extra string) *passkeyEnv {
	t.Helper()
	cfg := ""
	if extra != "" {
		base, err := os.ReadFile(testutil.QuickstartConfig())
		if err != nil {
			t.Fatal(err)
		}
		cfg = filepath.Join(t.TempDir(), "cibaproxy.yaml")
		if err := os.WriteFile(cfg, append(base, "\n"+extra...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr, err := testutil.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	issuer := "http://localhost:" + port
	hook := testutil.NewWebhook(t)
	file := cfg
	if file == "" {
		file = testutil.QuickstartConfig()
	}
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: file, WebhookURL: hook.URL,
		Addr: addr, Env: []string{"CIBAPROXY_ISSUER=" + issuer}})
	return &passkeyEnv{env: &env{srv: srv, hook: hook, client: testutil.DemoPoll}, issuer: issuer, config: cfg}
}

// cli runs a cibaproxy command against the running server's store (through
// its admin socket) and returns its stdout.
func (e *passkeyEnv) cli(t *testing.T, args ...string) string {
	t.Helper()
	cfg := e.config
	if cfg == "" {
		cfg = testutil.QuickstartConfig()
	}
	cmd := exec.CommandContext(ctx(t), binary, append(args, "--config", cfg)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CIBAPROXY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "CIBAPROXY_ISSUER="+e.issuer, "CIBAPROXY_DATA="+e.srv.DataDir)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("cibaproxy %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// enrolLink asks `cibaproxy users enroll` for a link for user.
func (e *passkeyEnv) enrolLink(t *testing.T, user string) string {
	t.Helper()
	var en struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal([]byte(e.cli(t, "users", "enroll", user, "--json")), &en); err != nil || !strings.HasPrefix(en.URL, e.issuer+"/passkeys/enroll/") {
		t.Fatalf("users enroll: %+v %v", en, err)
	}
	return en.URL
}

// authenticator adds a virtual authenticator (internal, CTAP2, resident
// keys) with user verification to the tab, and returns its id.
func authenticator(t *testing.T, b *tab, uv bool) webauthn.AuthenticatorID {
	t.Helper()
	id, err := chromedp.Run(b.ctx, func(ctx context.Context, tg *chromedp.Target) (webauthn.AuthenticatorID, error) {
		no := false
		if _, err := cdp.Call(ctx, tg, webauthn.Enable, webauthn.EnableParams{EnableUI: &no}); err != nil {
			return "", err
		}
		res, err := cdp.Call(ctx, tg, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Ctap2version: webauthn.Ctap2versionCtap21, Transport: webauthn.AuthenticatorTransportInternal,
			HasResidentKey: true, HasUserVerification: uv, IsUserVerified: uv, AutomaticPresenceSimulation: true,
		}})
		return res.AuthenticatorID, err
	})
	if err != nil {
		t.Fatalf("browser: add a virtual authenticator: %v", err)
	}
	return id
}

func setUserVerified(t *testing.T, b *tab, id webauthn.AuthenticatorID, uv bool) {
	t.Helper()
	if _, err := chromedp.Run(b.ctx, func(ctx context.Context, tg *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, tg, webauthn.SetUserVerified, webauthn.SetUserVerifiedParams{AuthenticatorID: id, IsUserVerified: uv})
	}); err != nil {
		t.Fatalf("browser: set user verified: %v", err)
	}
}

// captureAssertion runs the approval page's ceremony without submitting
// it (as a script in the page would), with the page's options and
// userVerification as given, and returns the credential's JSON.
func captureAssertion(t *testing.T, b *tab, uv string) string {
	t.Helper()
	js := fmt.Sprintf(`(async () => {
  const o = JSON.parse(document.getElementById("passkey").getAttribute("data-options"));
  o.userVerification = %q;
  const c = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(o)});
  return JSON.stringify(c.toJSON());
})()`, uv)
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil || s == "" {
		t.Fatalf("browser: capture an assertion: %q %v", s, err)
	}
	return s
}

// submitAssertion posts assertion from the approval page open in b, as its
// script does, and returns the HTTP status of the answer.
func submitAssertion(t *testing.T, b *tab, assertion string) int {
	t.Helper()
	js := fmt.Sprintf(`(() => {
  const out = document.getElementById("assertion");
  out.value = %q;
  const a = document.createElement("input");
  a.type = "hidden"; a.name = "action"; a.value = "approve";
  out.form.appendChild(a);
  setTimeout(() => out.form.submit(), 0);
  return true;
})()`, assertion)
	resp, err := chromedp.RunResponse(b.ctx, func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](js)(ctx, tg)
		return chromedp.Void{}, err
	})
	if err != nil {
		t.Fatalf("browser: submit the assertion: %v", err)
	}
	return int(resp.Status)
}

func TestPasskeys(t *testing.T) {
	browser := startChromium(t)
	e := startPasskeys(t)
	// One tab for the user's phone: its virtual authenticator keeps the
	// passkey from the enrolment to the approvals.
	phone := newTab(t, browser)
	authID := authenticator(t, phone, true)

	t.Run("enrol through the one-time link from users enroll; the link used again is refused", func(t *testing.T) {
		link := e.enrolLink(t, "alice")
		if status := phone.open(link); status != http.StatusOK {
			t.Fatalf("enrolment page: %d\n%s", status, phone.textNoFatal())
		}
		phone.mustShow("enrolment page", "Create a passkey for alice")
		if status := phone.click("#passkey"); status != http.StatusOK {
			t.Fatalf("create the passkey: %d\n%s", status, phone.textNoFatal())
		}
		phone.mustShow("after enrolment", "Your passkey is ready")
		if status := phone.open(link); status != http.StatusGone {
			t.Fatalf("the used link: %d, want 410", status)
		}
		phone.mustShow("the used link", "expired or was already used")
		if out := e.cli(t, "users", "list"); !strings.Contains(out, "alice") || !strings.Contains(out, "passkey ") {
			t.Fatalf("users list after the enrolment:\n%s", out)
		}
	})

	t.Run("approve a request with the passkey; requests show has the signed record", func(t *testing.T) {
		req := e.authorize(t, "alice", "openid email", nil)
		if status := phone.open(req.ApproveURL); status != http.StatusOK {
			t.Fatalf("approval page: %d", status)
		}
		showsRequest(phone, "Demo poll client", req)
		if status := phone.click("#passkey"); status != http.StatusOK {
			t.Fatalf("approve with the passkey: %d\n%s", status, phone.textNoFatal())
		}
		phone.mustShow("after the passkey", "You approved the sign-in to Demo poll client with your passkey")
		mustTokens(t, "poll after the passkey approval", e.poll(t, req))
		out := e.cli(t, "requests", "show", req.AuthReqID)
		for _, want := range []string{"approved_with", "approved_by", "approval_record", "signed by key"} {
			if !strings.Contains(out, want) {
				t.Fatalf("requests show lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("an assertion captured for request A is refused on request B", func(t *testing.T) {
		reqA := e.authorize(t, "alice", "openid", nil)
		reqB := e.authorize(t, "alice", "openid", nil)
		phone.open(reqA.ApproveURL)
		assertionA := captureAssertion(t, phone, "required")
		phone.open(reqB.ApproveURL)
		if status := submitAssertion(t, phone, assertionA); status != http.StatusUnauthorized {
			t.Fatalf("A's assertion on B: %d, want 401\n%s", status, phone.textNoFatal())
		}
		phone.mustShow("B after A's assertion", "The passkey did not confirm this request")
		e.mustBePending(t, reqB)
		// A's own assertion still approves A.
		phone.open(reqA.ApproveURL)
		if status := submitAssertion(t, phone, assertionA); status != http.StatusOK {
			t.Fatalf("A's assertion on A: %d\n%s", status, phone.textNoFatal())
		}
		mustTokens(t, "poll A", e.poll(t, reqA))
	})

	t.Run("the device page approves with the passkey too", func(t *testing.T) {
		resp, err := http.PostForm(e.srv.URL+"/device_authorization", url.Values{"client_id": {"demo-device"}, "scope": {"openid"}})
		if err != nil {
			t.Fatal(err)
		}
		var da struct {
			DeviceCode string `json:"device_code"`
			URI        string `json:"verification_uri_complete"`
		}
		err = json.NewDecoder(resp.Body).Decode(&da)
		resp.Body.Close()
		if err != nil || da.URI == "" {
			t.Fatalf("device authorization: %v %+v", err, da)
		}
		if status := phone.open(da.URI); status != http.StatusOK {
			t.Fatalf("device page: %d", status)
		}
		if status := phone.click(`button[value=continue]`); status != http.StatusOK {
			t.Fatalf("continue: %d\n%s", status, phone.textNoFatal())
		}
		if status := phone.click("#passkey"); status != http.StatusOK {
			t.Fatalf("approve with the passkey: %d\n%s", status, phone.textNoFatal())
		}
		phone.mustShow("after the passkey", "You approved the sign-in of Demo device with your passkey")
		resp, err = http.PostForm(e.srv.URL+"/token", url.Values{"client_id": {"demo-device"}, "grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "device_code": {da.DeviceCode}})
		if err != nil {
			t.Fatal(err)
		}
		var tok map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&tok)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || tok["id_token"] == nil {
			t.Fatalf("device token: %d %v", resp.StatusCode, tok)
		}
	})

	t.Run("an assertion without user verification is refused", func(t *testing.T) {
		req := e.authorize(t, "alice", "openid", nil)
		phone.open(req.ApproveURL)
		setUserVerified(t, phone, authID, false)
		defer setUserVerified(t, phone, authID, true)
		// The page asks for user verification, which this authenticator
		// now fails; a page that asks for none gets an assertion without
		// the UV flag, which the server must refuse.
		assertion := captureAssertion(t, phone, "discouraged")
		if status := submitAssertion(t, phone, assertion); status != http.StatusUnauthorized {
			t.Fatalf("assertion without UV: %d, want 401\n%s", status, phone.textNoFatal())
		}
		e.mustBePending(t, req)
	})
}

// mustBePending fails unless req is still pending (asked with requests
// show: a poll would be held open by the quick start's long polling).
func (e *passkeyEnv) mustBePending(t *testing.T, req request) {
	t.Helper()
	if out := e.cli(t, "requests", "show", req.AuthReqID); !strings.Contains(out, "state            pending") && !strings.Contains(out, "pending\n") {
		t.Fatalf("the request is no longer pending:\n%s", out)
	}
}

func TestPasskeyEnrolmentLinkExpires(t *testing.T) {
	browser := startChromium(t)
	base, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "short-links.yaml")
	if err := os.WriteFile(cfg, append(base, "\napproval:\n  passkeys:\n    enrollment_ttl: 10s\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, err := testutil.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	e := &passkeyEnv{issuer: "http://localhost:" + port, config: cfg}
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: cfg, Addr: addr, Env: []string{"CIBAPROXY_ISSUER=" + e.issuer}})
	e.env = &env{srv: srv}
	link := e.enrolLink(t, "alice")
	b := newTab(t, browser)
	authenticator(t, b, true)
	if status := b.open(link); status != http.StatusOK {
		t.Fatalf("the fresh link: %d", status)
	}
	// Wait for the link's 10 s to pass: asked over plain HTTP until it
	// answers 410, within waitTimeout.
	waitGone(t, strings.Replace(link, e.issuer, srv.URL, 1))
	if status := b.open(link); status != http.StatusGone {
		t.Fatalf("the expired link: %d, want 410", status)
	}
	b.mustShow("the expired link", "expired or was already used")
	if out := e.cli(t, "users", "list", "--json"); !strings.Contains(out, `"passkeys": []`) {
		t.Fatalf("a passkey appeared:\n%s", out)
	}
}

// waitGone asks for link until it answers 410 Gone, within waitTimeout.
func waitGone(t *testing.T, link string) {
	t.Helper()
	c := ctx(t)
	for {
		r, err := testutil.Get(c, link)
		if err == nil && r.Status == http.StatusGone {
			return
		}
		select {
		case <-c.Done():
			t.Fatalf("%s did not expire within %v: %v %v", link, waitTimeout, r, err)
		case <-time.After(250 * time.Millisecond): // the poll's period, not a wait for an outcome
		}
	}
}

// TestPasskeySelfEnrolment: with approval.passkeys.self_enrollment on, a
// user who approves with the password is offered a passkey on the
// "Approved" page; the virtual authenticator registers it, and the next
// request is approved with it.
func TestPasskeySelfEnrolment(t *testing.T) {
	browser := startChromium(t)
	e := startPasskeysWith(t, "approval:\n  passkeys:\n    self_enrollment: true\n")
	phone := newTab(t, browser)
	authenticator(t, phone, true)

	req := e.authorize(t, "alice", "openid email", nil)
	if status := phone.open(req.ApproveURL); status != http.StatusOK {
		t.Fatalf("approval page: %d", status)
	}
	phone.mustShow("approval page", "Password for alice")
	if strings.Contains(phone.text(), "Add a passkey") {
		t.Fatal("the approval page offers a passkey before any approval")
	}
	phone.do("type the password", chromedp.SendKeys(chromedp.CSS(passwordInput), "alice-password"))
	if status := phone.click(approveButton); status != http.StatusOK {
		t.Fatalf("Approve: %d\n%s", status, phone.textNoFatal())
	}
	phone.mustShow("after Approve", "You approved the sign-in to Demo poll client", "Add a passkey for next time")
	mustTokens(t, "poll after the password approval", e.poll(t, req))
	if status := phone.click("#passkey"); status != http.StatusOK {
		t.Fatalf("add a passkey: %d\n%s", status, phone.textNoFatal())
	}
	phone.mustShow("after adding the passkey", "Your passkey is ready")
	if out := e.cli(t, "users", "list"); !strings.Contains(out, "passkey ") {
		t.Fatalf("users list after the self-service enrolment:\n%s", out)
	}

	next := e.authorize(t, "alice", "openid", nil)
	if status := phone.open(next.ApproveURL); status != http.StatusOK {
		t.Fatalf("approval page: %d", status)
	}
	phone.mustShow("the next approval page", "Approve with passkey")
	if status := phone.click("#passkey"); status != http.StatusOK {
		t.Fatalf("approve with the passkey: %d\n%s", status, phone.textNoFatal())
	}
	phone.mustShow("after the passkey", "You approved the sign-in to Demo poll client with your passkey")
	if strings.Contains(phone.text(), "Add a passkey") {
		t.Fatal("a passkey approval offers to add a passkey")
	}
	mustTokens(t, "poll after the passkey approval", e.poll(t, next))
}
