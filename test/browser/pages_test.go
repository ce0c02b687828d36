package browser

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/security"
	"github.com/chromedp/chromedp"
	"go.yaml.in/yaml/v3"

	"github.com/cibaproxy/cibaproxy/test/idp"
	"github.com/cibaproxy/cibaproxy/test/testutil"
)

// pagesShotsEnv names a directory for the branded pages' screenshots, to
// look at; without it they go to the test's temporary directory.
const pagesShotsEnv = "CIBAPROXY_SCREENSHOTS"

// pagesLogo is the operator's logo the test serves over https.
const pagesLogo = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">` +
	`<rect width="64" height="64" rx="14" fill="#0a5c36"/>` +
	`<path d="M18 46 32 16l14 30h-7l-7-16-7 16z" fill="#fff"/></svg>`

// pagesService is the branded service name.
const pagesService = "Acme Bank"

// pagesConfig is examples/quickstart.yaml with the pages branded, the
// logo at logoURL, and a public device client. The file is edited as
// YAML, so that it does not depend on where sections are written.
func pagesConfig(t *testing.T, logoURL string) string {
	t.Helper()
	raw, err := os.ReadFile(testutil.QuickstartConfig())
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("examples/quickstart.yaml: %v", err)
	}
	cfg["pages"] = map[string]any{
		"service_name": pagesService,
		"logo_url":     logoURL,
		"accent_color": "#0a5c36",
		"scope_descriptions": map[string]any{
			"email": "Your email address, for receipts",
		},
	}
	clients, _ := cfg["clients"].([]any)
	cfg["clients"] = append(clients, map[string]any{
		"client_id": "demo-tv", "client_name": "Living-room TV",
		"token_endpoint_auth_methods": []any{"none"}, "device_authorization": true,
	})
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "branded.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pagesLogoServer serves pagesLogo over https on loopback.
func pagesLogoServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		_, _ = w.Write([]byte(pagesLogo))
	}))
	// Chromium may try a connection before the tab ignores certificate
	// errors; its refused handshake is no failure.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + "/brand/logo.svg"
}

// pagesTrustLogo makes the tab accept the logo server's self-signed
// certificate (and only this tab: it has its own browser context).
func pagesTrustLogo(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
	_, err := cdp.Call(ctx, t, security.SetIgnoreCertificateErrors, security.SetIgnoreCertificateErrorsParams{Ignore: true})
	return chromedp.Void{}, err
}

// pagesLook is what the test measures of a page.
type pagesLook struct {
	ScrollWidth float64 `json:"scrollWidth"`
	InnerWidth  float64 `json:"innerWidth"`
	// Widest is the right edge of the element that reaches furthest.
	Widest     float64 `json:"widest"`
	WidestTag  string  `json:"widestTag"`
	Brand      string  `json:"brand"`
	LogoWidth  float64 `json:"logoWidth"`
	BodyFont   string  `json:"bodyFont"`
	ButtonFont string  `json:"buttonFont"`
	// Localised reports that the page's script ran (the CSP allowed it)
	// and wrote the expiry in local time.
	Localised bool `json:"localised"`
}

// pagesMeasure measures the page the tab shows.
func pagesMeasure(b *tab) pagesLook {
	b.t.Helper()
	l, err := chromedp.Run(b.ctx, chromedp.Evaluate[pagesLook](`(() => {
  const font = e => { const s = getComputedStyle(e); return s.fontFamily + " " + s.fontSize + " " + s.fontStyle; };
  let widest = 0, tag = "";
  for (const e of document.querySelectorAll("body *")) {
    const r = e.getBoundingClientRect();
    if (r.right > widest) { widest = r.right; tag = e.tagName + "." + e.className; }
  }
  const logo = document.querySelector(".brand img");
  const button = document.querySelector("button");
  const time = document.querySelector("time[data-local]");
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    widest: widest, widestTag: tag,
    brand: (document.querySelector(".brand") || {}).innerText || "",
    logoWidth: logo && logo.complete ? logo.naturalWidth : 0,
    bodyFont: font(document.querySelector("main p")),
    buttonFont: button ? font(button) : "",
    localised: !!time && time.title === time.getAttribute("datetime"),
  };
})()`))
	if err != nil {
		b.t.Fatalf("measure the page: %v", err)
	}
	return l
}

// pagesCheck checks the page fits the width, shows the branding with its
// logo, and that its buttons use the text's font; then saves a screenshot.
func pagesCheck(b *tab, name string, width int) pagesLook {
	b.t.Helper()
	l := pagesMeasure(b)
	if l.InnerWidth != float64(width) {
		b.t.Errorf("%s: the layout viewport is %v px wide, want %d", name, l.InnerWidth, width)
	}
	if l.ScrollWidth > float64(width) || l.Widest > float64(width) {
		b.t.Errorf("%s: the page overflows %d px: scroll width %v, %s reaches %v", name, width, l.ScrollWidth, l.WidestTag, l.Widest)
	}
	if l.Brand != pagesService {
		b.t.Errorf("%s: the header shows %q, want %q", name, l.Brand, pagesService)
	}
	if l.LogoWidth <= 0 {
		b.t.Errorf("%s: the logo did not load (blocked by the CSP, or not found)", name)
	}
	if l.ButtonFont != "" && l.ButtonFont != l.BodyFont {
		b.t.Errorf("%s: the button's font %q differs from the text's %q", name, l.ButtonFont, l.BodyFont)
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("%s: screenshot: %v", name, err)
	}
	dir := os.Getenv(pagesShotsEnv)
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	shot := filepath.Join(dir, fmt.Sprintf("%s-%d.png", name, width))
	if err := os.WriteFile(shot, png, 0o600); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", shot)
	return l
}

// pagesExpiry matches the relative expiry the form shows.
var pagesExpiry = regexp.MustCompile(`This request expires in [0-9]+ minutes?, at [^\n]*[0-9]{2}[^\n]*\.`)

// TestBrandedPages loads the approval page, the device pages and an
// error page with branding configured, at phone and desktop width: nothing
// overflows, the service name and logo, the scope descriptions and the
// relative expiry are shown, the buttons use the text's font, and the
// inline script runs under the pages' CSP.
func TestBrandedPages(t *testing.T) {
	browser := startChromium(t)
	logo := pagesLogoServer(t)
	hook := testutil.NewWebhook(t)
	srv := testutil.Start(t, testutil.Options{Binary: binary, Config: pagesConfig(t, logo), WebhookURL: hook.URL})
	e := &env{srv: srv, hook: hook, client: testutil.DemoPoll}

	for _, vp := range []struct {
		name          string
		width, height int64
		mobile        bool
	}{
		{"phone", 390, 844, true},
		{"desktop", 1280, 800, false},
	} {
		t.Run(vp.name, func(t *testing.T) {
			open := func(target string, want int) *tab {
				t.Helper()
				b := newTab(t, browser)
				emulate := chromedp.EmulateViewport(vp.width, vp.height)
				if vp.mobile {
					emulate = chromedp.EmulateViewport(vp.width, vp.height, chromedp.EmulateMobile, chromedp.EmulatePortrait, chromedp.EmulateScale(2))
				}
				b.do("set the viewport", emulate, pagesTrustLogo)
				if status := b.open(target); status != want {
					t.Fatalf("GET %s: %d, want %d\n%s", target, status, want, b.textNoFatal())
				}
				return b
			}

			req := e.authorize(t, "alice", "openid profile email", nil)
			b := open(req.ApproveURL, http.StatusOK)
			b.mustShow("approval page", "Approve sign-in", "Demo poll client", req.Binding,
				"Confirm who you are", "Your name and basic profile", "Your email address, for receipts")
			if text := b.text(); !pagesExpiry.MatchString(text) {
				t.Errorf("approval page: no relative expiry:\n%s", text)
			}
			if l := pagesCheck(b, "approve", int(vp.width)); !l.Localised {
				t.Errorf("approval page: the expiry was not localised: the script did not run (CSP?)")
			}
			b.do("type a wrong password", chromedp.SendKeys(chromedp.CSS(passwordInput), "not-alice-password"))
			if status := b.click(approveButton); status != http.StatusUnauthorized {
				t.Fatalf("Approve with a wrong password: %d, want 401", status)
			}
			b.mustShow("approval page after a wrong password", "The password is not right.", "Your email address, for receipts")
			pagesCheck(b, "approve-wrong-password", int(vp.width))

			r, err := testutil.PostForm(ctx(t), srv.URL+"/device_authorization", testutil.Client{}, url.Values{
				"client_id": {"demo-tv"}, "scope": {"openid profile offline_access"},
			})
			if err != nil || r.Status != http.StatusOK || r.Str("verification_uri_complete") == "" {
				t.Fatalf("POST /device_authorization: %v %v", r, err)
			}
			d := open(r.Str("verification_uri_complete"), http.StatusOK)
			d.mustShow("device page", "Connect a device", "Enter the code shown on your device to connect it to "+pagesService+".")
			pagesCheck(d, "device-entry", int(vp.width))
			if status := d.click(`button[value=continue]`); status != http.StatusOK {
				t.Fatalf("continue: %d\n%s", status, d.textNoFatal())
			}
			d.mustShow("device form", "Living-room TV asks to sign in to your account at "+pagesService+".", r.Str("user_code"),
				"Confirm who you are", "Your name and basic profile", "Stay connected when you are not using it")
			if text := d.text(); !pagesExpiry.MatchString(text) {
				t.Errorf("device form: no relative expiry:\n%s", text)
			}
			if l := pagesCheck(d, "device-form", int(vp.width)); !l.Localised {
				t.Errorf("device form: the expiry was not localised: the script did not run (CSP?)")
			}

			x := open(srv.URL+"/approve/"+strings.Repeat("x", 20), http.StatusNotFound)
			x.mustShow("error page", "Link not valid")
			pagesCheck(x, "error", int(vp.width))
		})
	}
}

// TestBrandedFederatedPage loads the oidc upstream's approval page with
// branding at phone width: it looks like the local one (service name,
// logo, scope descriptions, relative expiry, one font), and Approve still
// leaves for the identity provider under the pages' CSP.
func TestBrandedFederatedPage(t *testing.T) {
	browser := startChromium(t)
	logo := pagesLogoServer(t)
	client := testutil.Client{ID: "fed-poll", Secret: "fed-poll-secret"}
	hook := testutil.NewWebhook(t)
	f := testutil.StartIdPAndProxy(t, testutil.FederationOptions{
		IdP: func(f *testutil.Federation) idp.Config {
			return idp.Config{
				Clients:  []idp.Client{{ID: client.ID, Secret: client.Secret, RedirectURIs: []string{f.Callback}}},
				Accounts: []idp.Account{{ID: "alice", Password: "alice-password", Email: "alice@example.com", EmailVerified: true}},
			}
		},
		Config: func(f *testutil.Federation) string {
			return fmt.Sprintf(`issuer: %s
listen: %s
store:
  type: memory
upstream:
  type: oidc
  oidc:
    issuer: %s
    match_claims: [email]
channels:
  webhook:
    url: ${CIBAPROXY_WEBHOOK_URL}
pages:
  service_name: %s
  logo_url: %s
  accent_color: "#0a5c36"
clients:
  - client_id: %s
    client_name: %s
    client_secret: %s
    backchannel_token_delivery_mode: poll
`, f.Issuer, f.Addr, f.IdP.Issuer(), pagesService, logo, client.ID, fedPollName, client.Secret)
		},
		Options: testutil.Options{Binary: binary, WebhookURL: hook.URL},
	})
	e := &env{srv: f.Server, hook: hook, client: client, idp: f.IdP}

	const width, height = 390, 844
	req := e.authorize(t, "alice@example.com", "openid email", nil)
	b := newTab(t, browser)
	b.do("emulate a phone", chromedp.EmulateViewport(width, height, chromedp.EmulateMobile, chromedp.EmulatePortrait, chromedp.EmulateScale(2)), pagesTrustLogo)
	if status := b.open(req.ApproveURL); status != http.StatusOK {
		t.Fatalf("approval page: %d", status)
	}
	b.mustShow("federated approval page", "Approve sign-in", fedPollName, req.Binding, "Confirm who you are", "Your email address",
		"Approve takes you to your identity provider")
	if text := b.text(); !pagesExpiry.MatchString(text) {
		t.Errorf("federated approval page: no relative expiry:\n%s", text)
	}
	if l := pagesCheck(b, "approve-federated", width); !l.Localised {
		t.Errorf("federated approval page: the expiry was not localised: the script did not run (CSP?)")
	}
	e.approveAtIdP(b)
}
