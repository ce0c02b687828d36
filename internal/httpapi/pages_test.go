package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/consent"
)

// branded is an operator's branding with a description of its own scope
// and one that overrides a default.
var branded = Pages{
	ServiceName: "Acme Bank",
	LogoURL:     "https://cdn.example.com:8443/brand/logo.svg?v=2",
	AccentColor: "#0A5C36",
	ScopeDescriptions: map[string]string{
		"accounts:read": "See your accounts & balances",
		"email":         "Your e-mail address, for receipts",
	},
}

// renderPage renders p as a's pages do and returns the response.
func renderPage(t *testing.T, a *Approval, status int, p page) *httptest.ResponseRecorder {
	t.Helper()
	if a.Logger == nil {
		a.Logger = discard()
	}
	rec := httptest.NewRecorder()
	a.render(rec, status, p)
	if rec.Code != status {
		t.Fatalf("status %d, want %d", rec.Code, status)
	}
	return rec
}

// cibaForm is the approval form of a CIBA request expiring in 4½ minutes.
func cibaForm(a *Approval, scopes ...string) page {
	req := &ciba.AuthRequest{
		ApprovalID: "ap1", LoginHint: "alice", BindingMessage: "Code 1234", Scopes: scopes,
		ExpiresAt: time.Now().Add(4*time.Minute + 30*time.Second),
	}
	return a.form(req, &ciba.Client{ID: "till", Name: "Corner Shop Till"}, "cookie-value-that-is-long-enough-000", "")
}

// mustContain fails the test for each of want that body lacks.
func mustContain(t *testing.T, what, body string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

// mustNotContain fails the test for each of bad that body holds.
func mustNotContain(t *testing.T, what, body string, bad ...string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(body, b) {
			t.Errorf("%s holds %q", what, b)
		}
	}
}

var (
	inlineScript = regexp.MustCompile(`(?s)<script>(.*?)</script>`)
	inlineStyle  = regexp.MustCompile(`(?s)<style>(.*?)</style>`)
)

func TestPagesBranding(t *testing.T) {
	t.Run("the form shows the service, logo, scope descriptions and a relative expiry", func(t *testing.T) {
		a := &Approval{Pages: branded}
		p := cibaForm(a, "openid", "email", "accounts:read", "x-unknown")
		rec := renderPage(t, a, http.StatusOK, p)
		body := rec.Body.String()
		mustContain(t, "branded form", body,
			"<title>Approve sign-in · Acme Bank</title>",
			`<img src="https://cdn.example.com:8443/brand/logo.svg?v=2" alt="">`, "<span>Acme Bank</span>",
			"<strong>Corner Shop Till</strong> asks to sign you in as <strong>alice</strong>",
			// A default, an override, the operator's own, and a scope
			// without a description shown by its name alone.
			"<span>Confirm who you are</span> <code>openid</code>",
			"<span>Your e-mail address, for receipts</span> <code>email</code>",
			"<span>See your accounts &amp; balances</span> <code>accounts:read</code>",
			`<li class="raw"><code>x-unknown</code></li>`,
			">in 4 minutes</span>",
			`<time datetime="`+p.Expires.ISO+`" data-local>`+p.Expires.At+`</time>`,
			"--accent:#0a5c36;--on-accent:#ffffff;--line:#0a5c36",
			`value="approve" class="primary"`,
		)
		mustNotContain(t, "branded form", body, "Your email address")
		csp := rec.Header().Get("Content-Security-Policy")
		mustContain(t, "CSP", csp, "default-src 'none'", "; img-src 'self' https://cdn.example.com:8443;", "form-action 'self'", "frame-ancestors 'none'")
	})

	t.Run("the inline script and style sheet are the ones the CSP allows by hash", func(t *testing.T) {
		for _, pages := range []Pages{{}, branded, {AccentColor: "#ffd400"}} {
			a := &Approval{Pages: pages}
			for _, p := range []page{cibaForm(a, "openid"), {Title: "Expired", Message: "This sign-in request has expired."}} {
				rec := renderPage(t, a, http.StatusOK, p)
				csp := rec.Header().Get("Content-Security-Policy")
				if strings.Contains(csp, "unsafe") {
					t.Errorf("CSP %q allows unsafe sources", csp)
				}
				for _, el := range []struct {
					re        *regexp.Regexp
					directive string
					n         int
				}{{inlineStyle, "style-src", 1}, {inlineScript, "script-src", 1}} {
					m := el.re.FindAllStringSubmatch(rec.Body.String(), -1)
					if !p.Form && el.directive == "script-src" {
						if len(m) != 0 {
							t.Errorf("%s page: %d scripts, want none", p.Title, len(m))
						}
						continue
					}
					if len(m) != el.n {
						t.Fatalf("%s page: %d inline %s elements, want %d", p.Title, len(m), el.directive, el.n)
					}
					sum := sha256.Sum256([]byte(m[0][1]))
					want := el.directive + " 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
					if !strings.Contains(csp, want) {
						t.Errorf("%s page with %+v: CSP %q lacks %q", p.Title, pages, csp, want)
					}
				}
			}
		}
	})

	t.Run("without branding: no header, no logo source, the default accent", func(t *testing.T) {
		a := &Approval{}
		rec := renderPage(t, a, http.StatusOK, cibaForm(a, "openid", "email"))
		body := rec.Body.String()
		mustContain(t, "plain form", body, "<title>Approve sign-in</title>", "--accent:"+defaultAccent+";", "<span>Your email address</span> <code>email</code>")
		mustNotContain(t, "plain form", body, `class="brand"`, "<img")
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "; img-src 'self';") {
			t.Errorf("CSP %q allows images from elsewhere than the origin (the web app's icons) without a logo", csp)
		}
	})

	t.Run("everything the operator and the client wrote is escaped", func(t *testing.T) {
		a := &Approval{Pages: Pages{
			ServiceName:       `<script>alert("name")</script>`,
			ScopeDescriptions: map[string]string{"a<b>": `<img src=x onerror=alert(1)>`},
		}}
		p := cibaForm(a, "openid", "a<b>")
		p.Client = `Till <b>"x"</b>`
		body := renderPage(t, a, http.StatusOK, p).Body.String()
		mustContain(t, "escaped form", body, "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;", "<code>a&lt;b&gt;</code>", "Till &lt;b&gt;&#34;x&#34;&lt;/b&gt;")
		mustNotContain(t, "escaped form", body, `<script>alert`, "<img src=x", "<b>")
	})

	t.Run("invalid values are left out, not written into the style or the CSP", func(t *testing.T) {
		for _, bad := range []Pages{
			{AccentColor: "red;}body{display:none", LogoURL: "http://cdn.example.com/logo.png"},
			{AccentColor: "#12345", LogoURL: "https://cdn.example.com;script-src *"},
			{AccentColor: "#0a6", LogoURL: "javascript:alert(1)"},
		} {
			a := &Approval{Pages: bad}
			rec := renderPage(t, a, http.StatusOK, cibaForm(a, "openid"))
			body := rec.Body.String()
			mustContain(t, "form with bad branding", body, "--accent:"+defaultAccent+";")
			mustNotContain(t, "form with bad branding", body, "<img", "display:none", "javascript:")
			if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "; img-src 'self';") || strings.Contains(csp, "*") {
				t.Errorf("CSP %q with logo %q", csp, bad.LogoURL)
			}
		}
	})

	t.Run("a light accent gets black text and a dark outline", func(t *testing.T) {
		a := &Approval{Pages: Pages{AccentColor: "#FFD400"}}
		body := renderPage(t, a, http.StatusOK, cibaForm(a, "openid")).Body.String()
		mustContain(t, "yellow form", body, "--accent:#ffd400;--on-accent:#000000;--line:"+pageText)
	})

	t.Run("the message pages carry the branding too", func(t *testing.T) {
		a := &Approval{Pages: branded}
		for _, p := range []page{
			{Title: "Expired", Message: "This sign-in request has expired."},
			{Title: "Sign-in failed", Message: "Your identity provider could not sign you in."},
		} {
			rec := renderPage(t, a, http.StatusGone, p)
			mustContain(t, p.Title+" page", rec.Body.String(), "<span>Acme Bank</span>", `<img src="https://cdn.example.com:8443/`, "<h1>"+p.Title+"</h1>", p.Message, "--accent:#0a5c36")
			mustNotContain(t, p.Title+" page", rec.Body.String(), "<form", "<script")
		}
	})

	t.Run("the federated form and the device pages carry the branding", func(t *testing.T) {
		a := &Approval{Pages: branded}
		fed := cibaForm(a, "openid")
		fed.Federated = true
		body := renderPage(t, a, http.StatusOK, fed).Body.String()
		mustContain(t, "federated form", body, "<span>Acme Bank</span>", "Approve takes you to your identity provider", "<span>Confirm who you are</span>")
		mustNotContain(t, "federated form", body, `name="password"`)

		d := &Device{Approval: a}
		entry := d.entry("cookie-value-that-is-long-enough-000", "", "")
		body = renderPage(t, a, http.StatusOK, entry).Body.String()
		mustContain(t, "device entry", body, "<span>Acme Bank</span>", "Enter the code shown on your device to connect it to Acme Bank.", `value="continue" class="primary"`)

		req := &ciba.AuthRequest{ApprovalID: "ap2", Scopes: []string{"openid", "offline_access"}, ExpiresAt: time.Now().Add(9*time.Minute + 50*time.Second)}
		form := d.form(req, &ciba.Client{ID: "tv", Name: "Living-room TV"}, "cookie-value-that-is-long-enough-000", "BCDF-GHJK", "")
		body = renderPage(t, a, http.StatusOK, form).Body.String()
		mustContain(t, "device form", body,
			"<strong>Living-room TV</strong> asks to sign in to your account at Acme Bank.",
			"BCDF-GHJK", "<span>Stay connected when you are not using it</span>", ">in 9 minutes</span>", `name="username"`)
	})
}

func TestRelativeExpiry(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.FixedZone("CET", 3600))
	e := expiresAt(now.Add(5*time.Minute), now)
	if e != (expiry{In: "in 5 minutes", At: "00:05 UTC", ISO: "2026-12-07T00:05:00Z"}) {
		t.Errorf("expiresAt = %+v", e)
	}
	if e := expiresAt(now.Add(13*time.Hour), now); e.At != "Mon 7 Dec 13:00 UTC" {
		t.Errorf("a day away: %q, want the date too", e.At)
	}
}

// TestAccentContrast checks the foreground chosen for every accent on a
// grid over the colour cube: the text on it has at least 4.5:1 (WCAG AA),
// and the outline of the button at least 3:1 against the white card.
func TestAccentContrast(t *testing.T) {
	if c := contrast("#ffffff", "#000000"); c < 20.99 || c > 21.01 {
		t.Fatalf("contrast(white, black) = %v, want 21", c)
	}
	for r := 0; r <= 255; r += 15 {
		for g := 0; g <= 255; g += 15 {
			for b := 0; b <= 255; b += 15 {
				accent := fmt.Sprintf("#%02x%02x%02x", r, g, b)
				br := (&Pages{AccentColor: accent}).brand()
				if string(br.Accent) != accent {
					t.Fatalf("accent %s became %s", accent, br.Accent)
				}
				if c := contrast(accent, string(br.OnAccent)); c < 4.5 {
					t.Errorf("accent %s: text %s has contrast %.2f, want 4.5 or more", accent, br.OnAccent, c)
				}
				if c := contrast(pageWhite, string(br.Line)); c < 3 {
					t.Errorf("accent %s: outline %s has contrast %.2f on white, want 3 or more", accent, br.Line, c)
				}
			}
		}
	}
	if c := contrast(defaultAccent, pageWhite); c < 4.5 {
		t.Errorf("the default accent has contrast %.2f with white text", c)
	}
}

// TestPageScriptSaysWhatRelativeSays: the page script's rel (which keeps
// "in 4 minutes" current in the browser) and consent.Relative (which
// writes it first) say the same at each boundary. It runs the script's
// function under Node.js, and is skipped without it.
func TestPageScriptSaysWhatRelativeSays(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	start := strings.Index(pageScript, "function rel(ms) {")
	end := strings.Index(pageScript[start:], "\n  }\n")
	if start < 0 || end < 0 {
		t.Fatal("function rel not found in pageScript")
	}
	durations := []time.Duration{0, 59 * time.Second, time.Minute, 119 * time.Minute, 119*time.Minute + 59*time.Second, 2 * time.Hour,
		3*time.Hour - time.Minute, 3*time.Hour - time.Minute + time.Millisecond, 24*time.Hour - time.Millisecond,
		24*time.Hour - 59*time.Second, 24*time.Hour - time.Minute, 24 * time.Hour, 48*time.Hour - time.Minute, 48 * time.Hour,
		72*time.Hour - time.Minute, 72 * time.Hour, 720 * time.Hour}
	ms := make([]string, len(durations))
	for i, d := range durations {
		ms[i] = strconv.FormatInt(d.Milliseconds(), 10)
	}
	src := pageScript[start:start+end+len("\n  }")] + "\nconsole.log(JSON.stringify([" + strings.Join(ms, ",") + "].map(rel)));\n"
	out, err := exec.CommandContext(t.Context(), node, "-e", src).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(durations) {
		t.Fatalf("node said %q (%v)", out, err)
	}
	for i, d := range durations {
		if want := consent.Relative(d); got[i] != want {
			t.Errorf("%v: the page script says %q, consent.Relative %q", d, got[i], want)
		}
	}
}
