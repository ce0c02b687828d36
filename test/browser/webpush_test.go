package browser

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"

	"github.com/cibaproxy/cibaproxy/internal/webpush/webpushtest"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// TestWebPushInChromium: after a password approval the "Approved" page
// offers notifications; in Chromium its manifest parses, the page is
// installable, "Notify me on this device" registers the service worker at
// the origin's root under the pages' CSP, and the page posts a
// subscription with its one-time token, after which the next request
// reaches the (local, allowlisted) push service encrypted for that
// subscription. A push delivered to the worker (DevTools) shows a
// notification whose data is the approval link.
//
// What cannot be tested here: PushManager.subscribe needs Chromium's real
// push service (Firebase Cloud Messaging), which this machine cannot
// reach; the subscription the page posts is therefore one whose keys the
// test holds, with an endpoint at the stand-in. The subscribe call itself
// is made and its outcome logged.
func TestWebPushInChromium(t *testing.T) {
	chrome := startChromium(t)
	stand := webpushtest.New(t) // decrypts what it gets with the subscription's keys

	quick, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(quick), "channels:\n  webhook:\n", "channels:\n  order: [webpush, webhook]\n  webpush:\n    enabled: true\n    subject: mailto:ops@bank.example\n  webhook:\n", 1)
	path := filepath.Join(t.TempDir(), "webpush.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	hook := testutil.NewWebhook(t)
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: path, WebhookURL: hook.URL})
	e := &env{srv: srv, hook: hook, client: testutil.DemoPoll}

	req := e.authorize(t, "alice", "openid", nil) // no subscription yet: the webhook
	// A tab of the browser's own profile: in a new browser context (as
	// newTab makes) Chromium counts the page as incognito, where push is
	// off and nothing is installable.
	tabCtx, cancelTab := context.WithTimeout(chrome, tabTimeout)
	defer cancelTab()
	tabCtx, cancelTarget := chromedp.NewContext(tabCtx)
	defer cancelTarget()
	b := &tab{t: t, ctx: tabCtx}
	for _, perm := range []*browser.PermissionDescriptor{{Name: "notifications"}, {Name: "push", UserVisibleOnly: true}} {
		if _, err := chromedp.CallBrowser(b.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: perm, Setting: browser.PermissionSettingGranted,
			Origin: srv.URL, BrowserContextID: chromedp.FromContext(b.ctx).BrowserContextID,
		}); err != nil {
			t.Fatalf("grant %s: %v", perm.Name, err)
		}
	}
	if status := b.open(req.ApproveURL); status != http.StatusOK {
		t.Fatalf("approval page: %d", status)
	}
	b.do("type the password", chromedp.SendKeys(chromedp.CSS(passwordInput), "alice-password"))
	if status := b.click(approveButton); status != http.StatusOK {
		t.Fatalf("Approve: %d\n%s", status, b.textNoFatal())
	}
	b.mustShow("Approved page", "You approved", "Notify me on this device")

	m, err := chromedp.Call(b.ctx, page.GetAppManifest, page.GetAppManifestParams{})
	if err != nil || len(m.Errors) > 0 || m.URL != srv.URL+"/manifest.webmanifest" {
		t.Fatalf("web app manifest: %+v %v", m, err)
	}

	// Registrations of service workers, as DevTools reports them.
	regs := make(chan serviceworker.RegistrationID, 8)
	if err := chromedp.Listen(b.ctx, func(ev any) {
		if u, ok := ev.(*serviceworker.EventWorkerRegistrationUpdated); ok {
			for _, r := range u.Registrations {
				if r.ScopeURL == srv.URL+"/" && !r.IsDeleted {
					select {
					case regs <- r.RegistrationID:
					default:
					}
				}
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(b.ctx, serviceworker.Enable, cdp.Empty{}); err != nil {
		t.Fatalf("ServiceWorker.enable: %v", err)
	}

	b.do("press Notify me on this device", chromedp.Click(chromedp.CSS("#push-on")))
	// The page's script registers the worker, then asks PushManager to
	// subscribe, which without a reachable push service fails or never
	// ends: wait for the worker to be active at the root.
	script, err := chromedp.Run(b.ctx, chromedp.Poll[string](
		`navigator.serviceWorker.getRegistration("/").then(r => r && r.active ? r.active.scriptURL + " " + r.scope : null)`,
		chromedp.WithPollingTimeout(waitTimeout)))
	if err != nil || script != srv.URL+"/sw.js "+srv.URL+"/" {
		t.Fatalf("service worker registration: %q %v\n%s", script, err, b.textNoFatal())
	}
	if inst, err := chromedp.Call(b.ctx, page.GetInstallabilityErrors, cdp.Empty{}); err != nil {
		t.Fatalf("installability: %v", err)
	} else {
		for _, ie := range inst.InstallabilityErrors {
			t.Errorf("not installable: %s %+v", ie.ErrorID, ie.ErrorArguments)
		}
	}

	// The page posts a subscription with its token (the test's keys).
	phone, _ := stand.Subscribe(t, "/push/phone")
	sub := phone.JSON()
	post := fmt.Sprintf(`fetch("/webpush/subscribe", {method: "POST", headers: {"Content-Type": "application/json"},
		body: JSON.stringify({token: document.getElementById("push").getAttribute("data-token"), subscription: %s})}).then(r => r.status)`, sub)
	code, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](post, chromedp.EvalAwaitPromise))
	status, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.getElementById("push-status").textContent`))
	t.Logf("PushManager.subscribe in headless Chromium, without its push service: %q", status)
	if err != nil || code != http.StatusCreated {
		if strings.HasPrefix(status, "Done") {
			t.Skipf("the browser subscribed at its real push service: the page's token is spent")
		}
		t.Fatalf("the page's subscription post: %d %v", code, err)
	}

	next := e.authorizeNoHook(t, "alice")
	pushed := stand.MustWait(t, waitTimeout)
	plain, err := pushed.Plain, pushed.DecryptErr
	if err != nil || !strings.Contains(string(plain), next) {
		t.Fatalf("notification: %q %v", plain, err)
	}

	// The worker shows a push as a notification that links to the page.
	var reg serviceworker.RegistrationID
	select {
	case reg = <-regs:
	case <-time.After(waitTimeout):
		t.Fatal("DevTools reported no service worker registration")
	}
	// DevTools may hand the push to a worker that is still starting and
	// drop it; each try waits for the notification before the next.
	var shown string
	for try := 1; shown == "" && try <= 4; try++ {
		if _, err := chromedp.Call(b.ctx, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: srv.URL, RegistrationID: reg, Data: string(plain)}); err != nil {
			t.Fatalf("deliver a push to the worker: %v", err)
		}
		shown, err = chromedp.Run(b.ctx, chromedp.Poll[string](`navigator.serviceWorker.getRegistration("/").then(r => r.getNotifications()).then(ns => ns.filter(n => n.data && n.data.url).map(n => n.title + "|" + n.data.url)[0] || null)`,
			chromedp.WithPollingTimeout(5*time.Second)))
		if err != nil {
			t.Logf("try %d: no notification yet: %v", try, err)
		}
	}
	if !strings.Contains(shown, "Demo poll client") || !strings.Contains(shown, "|"+srv.URL+"/approve/") {
		t.Fatalf("the worker's notification: %q", shown)
	}
}

// authorizeNoHook starts a request of the env's client for loginHint and
// returns its binding message, without waiting for a webhook message.
func (e *env) authorizeNoHook(t *testing.T, loginHint string) string {
	t.Helper()
	binding := fmt.Sprintf("Code P%d", time.Now().UnixNano()%100000)
	r, err := testutil.PostForm(ctx(t), e.srv.URL+"/bc-authorize", e.client, map[string][]string{
		"scope": {"openid"}, "login_hint": {loginHint}, "binding_message": {binding}})
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("POST /bc-authorize: %v %v", r, err)
	}
	return binding
}
