package browser

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Bounds of the waits on the browser.
const (
	// tabTimeout bounds everything one tab does: a subtest's whole
	// conversation with the pages.
	tabTimeout = 60 * time.Second
	// closeTimeout bounds the graceful close of the browser.
	closeTimeout = 10 * time.Second
)

// chromiumPath returns the Chromium executable: /usr/bin/chromium (the
// Debian package) or `chromium` on PATH. Without one the test is skipped,
// except with CI=true, where it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("browser: Chromium is not installed (/usr/bin/chromium, or chromium on PATH)")
	}
	t.Skip("skipping: the browser tests need Chromium (/usr/bin/chromium, or chromium on PATH)")
	return ""
}

// startChromium starts one headless Chromium for the test, with a fresh
// profile, and returns its context; tabs are made from it with newTab. The
// browser is closed, and its output logged if the test failed, when the
// test ends.
//
// The flags keep Chromium from reaching out on its own (updates, sync,
// field trials, QUIC probes): this machine refuses outside connections, and
// a test must not depend on them anyway.
func startChromium(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	// t.TempDir first, so that its removal runs after the browser's
	// cleanup below (cleanups run last in, first out).
	profile := t.TempDir()
	out := &lockedBuffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(ctx, closeTimeout)
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("browser: close Chromium: %v", err)
		}
		cancel()
		cancelBrowser()
		cancelAlloc() // waits for the process to exit
		if t.Failed() {
			t.Logf("Chromium output:\n%s", out.String())
		}
	})
	// The first Run starts the browser; it must not carry a timeout, or
	// the browser would end with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browser: start Chromium (%s): %v\n%s", path, err, out.String())
	}
	return ctx
}

// tab is one page in its own browser context (a fresh profile: no cookies
// of other tabs), failing the test it belongs to.
type tab struct {
	t   *testing.T
	ctx context.Context
}

// newTab opens a tab of browser in a new browser context, closed when t
// ends. Everything the tab does is bounded by tabTimeout.
func newTab(t *testing.T, browser context.Context) *tab {
	t.Helper()
	bounded, cancelBound := context.WithTimeout(browser, tabTimeout)
	ctx, cancel := chromedp.NewContext(bounded, chromedp.WithNewBrowserContext())
	t.Cleanup(func() {
		cancel()
		cancelBound()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browser: open a tab: %v", err)
	}
	return &tab{t: t, ctx: ctx}
}

// do runs actions on the page.
func (b *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %s: %v\npage %s:\n%s", what, err, b.location(), b.textNoFatal())
	}
}

// open navigates to target and returns the HTTP status of the document,
// after any redirects.
func (b *tab) open(target string) int {
	b.t.Helper()
	resp, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(target))
	if err != nil {
		b.t.Fatalf("browser: open %s: %v", target, err)
	}
	return int(resp.Status)
}

// click clicks the element sel, which navigates (a form's submit button),
// and returns the HTTP status of the document it lands on, after any
// redirects.
func (b *tab) click(sel string) int {
	b.t.Helper()
	resp, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("browser: click %s: %v\npage %s:\n%s", sel, err, b.location(), b.textNoFatal())
	}
	return int(resp.Status)
}

// clear empties the input field sel. (chromedp v0.23.0's SetValue with ""
// fails with "could not set value".)
func (b *tab) clear(sel string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = ""; return e.value; })()`, sel)
	if v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js)); err != nil || v != "" {
		b.t.Fatalf("browser: clear %s: %q %v", sel, v, err)
	}
}

// text is what the page shows (the body's innerText).
func (b *tab) text() string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		b.t.Fatalf("browser: read the page: %v", err)
	}
	return s
}

// textNoFatal is text for failure messages.
func (b *tab) textNoFatal() string {
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	return s
}

// location is the page's URL.
func (b *tab) location() string {
	s, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return s
}

// mustShow fails the test unless the page shows every one of want.
func (b *tab) mustShow(what string, want ...string) {
	b.t.Helper()
	page := b.text()
	for _, w := range want {
		if !strings.Contains(page, w) {
			b.t.Fatalf("%s: the page does not show %q\npage %s:\n%s", what, w, b.location(), page)
		}
	}
}

// lockedBuffer collects the browser's output from its goroutine.
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
