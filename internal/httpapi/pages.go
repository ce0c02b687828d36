package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/consent"
)

// Pages brands the approval and device pages and every message page that
// follows them (approved, denied, expired, errors): the operator's service
// name and logo at the top, an accent colour, and descriptions of the
// scopes a client asks for. The zero value is a plain page in a neutral
// blue, with the built-in scope descriptions.
//
// The values come from the configuration (config.Pages), which validates
// them; the pages check them again and leave out a value that is not
// valid rather than write it into a style or a header.
type Pages struct {
	// ServiceName is the operator's service ("Acme Bank").
	ServiceName string
	// LogoURL is an https image shown next to the service name; the
	// Content-Security-Policy allows images from its origin.
	LogoURL string
	// AccentColor is "#rrggbb"; the text on it is white or black,
	// whichever has more contrast.
	AccentColor string
	// ScopeDescriptions add to and override the descriptions of the
	// standard scopes (openid, profile, email, address, phone,
	// offline_access).
	ScopeDescriptions map[string]string
}

// defaultAccent is the accent colour without configuration: a blue with
// 7:1 contrast to white text.
const defaultAccent = "#2557a7"

// Colours of the page the accent is judged against.
const (
	pageText  = "#1f2328" // body text, and lines on a light accent
	pageWhite = "#ffffff" // the card, and text on a dark accent
	pageBlack = "#000000" // text on a light accent: 4.5:1 or more on any colour
)

// scopes describes the scopes of a request, in the order asked: the
// operator's descriptions, else the built-in ones of the standard scopes
// (package consent, which the e-mail channel shares).
func (p *Pages) scopes(names []string) []consent.Scope {
	return consent.Describe(names, p.ScopeDescriptions)
}

// expiry is when a request expires, as the page shows it: relative to now
// ("in 4 minutes"), and the time itself in UTC, which the page's script
// turns into the browser's local time.
type expiry struct {
	// In is "in 4 minutes": rounded down, so the user never has less
	// time than the page says (hours from the minute above, so that a
	// 24-hour link reads "in 24 hours"; consent.Relative).
	In string
	// At is the time in UTC ("14:05 UTC"; with the date when it is not
	// within the next 12 hours).
	At string
	// ISO is the time for <time datetime> (RFC 3339, UTC).
	ISO string
}

// expiresAt describes expiry time at as seen at now. The page's script
// (pageScript) says the same as consent.Relative, and keeps it current.
func expiresAt(at, now time.Time) expiry {
	at = at.UTC()
	return expiry{In: consent.Relative(at.Sub(now)), At: consent.At(at, now), ISO: at.Format(time.RFC3339)}
}

// brand is what the template needs of Pages.
type brand struct {
	Name string
	// Logo is the logo's URL, "" for none.
	Logo string
	// Accent and OnAccent are the accent and the text colour on it; Line
	// is the accent where it must stand out against white (borders,
	// focus rings), or the text colour when the accent is too light.
	Accent, OnAccent, Line string
	// Style is the page's style sheet, with these colours; the CSP allows
	// it by its hash.
	Style template.CSS
	// logoOrigin is the logo's origin, the CSP's img-src.
	logoOrigin string
}

// brand returns the page's branding, leaving out invalid values.
func (p *Pages) brand() brand {
	accent := strings.ToLower(p.AccentColor)
	if _, ok := parseHex(accent); !ok {
		accent = defaultAccent
	}
	b := brand{Name: p.ServiceName, Accent: accent, OnAccent: pageWhite, Line: accent}
	// White or black text, whichever contrasts more, has at least 4.5:1
	// on any colour (WCAG 2.1 §1.4.3).
	if contrast(accent, pageBlack) > contrast(accent, pageWhite) {
		b.OnAccent = pageBlack
	}
	// WCAG 2.1 §1.4.11: 3:1 for the boundary of a control.
	if contrast(accent, pageWhite) < 3 {
		b.Line = pageText
	}
	if o := logoOrigin(p.LogoURL); o != "" {
		b.Logo, b.logoOrigin = p.LogoURL, o
	}
	// The colours are #rrggbb, checked above: nothing else reaches the
	// style sheet.
	b.Style = template.CSS(":root{--accent:" + b.Accent + ";--on-accent:" + b.OnAccent + ";--line:" + b.Line + "}" + pageStyle)
	return b
}

// logoOrigin returns the origin of an https logo URL ("https://cdn.example.com"),
// or "" when u is not one that may be written into the CSP header.
func logoOrigin(u string) string {
	if u == "" {
		return ""
	}
	parsed, err := url.Parse(u)
	if err != nil || parsed.Scheme != "https" || parsed.User != nil || parsed.Host == "" {
		return ""
	}
	for _, r := range parsed.Host {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-:[]", r)) {
			return ""
		}
	}
	return "https://" + parsed.Host
}

// csp is the pages' Content-Security-Policy: nothing but the page's own
// style sheet and script (by their hashes), images from the origin (the
// web app's icons) and the logo's origin, the web app's manifest, and
// forms posted to formAction.
//
// With push, it also allows the "Approved" page's script that registers
// the service worker and posts the subscription: its hash, worker-src and
// connect-src 'self'.
func (b *brand) csp(formAction string, push bool) string {
	// The origin's own images are the web app's icons, which the browser
	// loads under the page's CSP.
	img := "; img-src 'self'"
	if b.logoOrigin != "" {
		img += " " + b.logoOrigin
	}
	script := "'" + pageScriptHash + "' '" + passkeyScriptHash + "'"
	extra := ""
	if push {
		script += " '" + pushScriptHash + "'"
		extra = "; worker-src 'self'; connect-src 'self'"
	}
	return "default-src 'none'; style-src '" + hashSource(string(b.Style)) + "'; script-src " + script + img +
		"; manifest-src 'self'" + extra + "; form-action " + formAction + "; frame-ancestors 'none'; base-uri 'none'"
}

// hashSource is the CSP hash source of an inline script or style.
func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// parseHex parses "#rrggbb" into its three channels, 0 to 1.
func parseHex(s string) ([3]float64, bool) {
	var c [3]float64
	if len(s) != 7 || s[0] != '#' {
		return c, false
	}
	for i := range c {
		v, err := strconv.ParseUint(s[1+2*i:3+2*i], 16, 8)
		if err != nil {
			return c, false
		}
		c[i] = float64(v) / 255
	}
	return c, true
}

// luminance is the relative luminance of a colour (WCAG 2.1).
func luminance(s string) float64 {
	c, _ := parseHex(s)
	var l [3]float64
	for i, v := range c {
		if v <= 0.04045 {
			l[i] = v / 12.92
		} else {
			l[i] = math.Pow((v+0.055)/1.055, 2.4)
		}
	}
	return 0.2126*l[0] + 0.7152*l[1] + 0.0722*l[2]
}

// contrast is the WCAG 2.1 contrast ratio of two colours, 1 to 21.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

// pageScript localises the expiry: it writes the <time data-local>
// elements in the browser's time zone and keeps the "in 4 minutes" of
// [data-until] elements current, as relative does. The page works without
// it. It is inline, allowed by its hash in the CSP, so it must stay byte
// for byte what the template holds.
const pageScript = `(function () {
  function rel(ms) {
    var m = Math.floor(ms / 60000);
    if (ms <= 0) return "now";
    if (m < 1) return "in less than a minute";
    if (m === 1) return "in 1 minute";
    if (m < 120) return "in " + m + " minutes";
    var h = Math.floor(Math.ceil(ms / 60000) / 60);
    if (h < 48) return "in " + h + " hours";
    return "in " + Math.floor(h / 24) + " days";
  }
  function tick() {
    document.querySelectorAll("[data-until]").forEach(function (e) {
      var t = Date.parse(e.getAttribute("data-until"));
      if (!isNaN(t)) e.textContent = rel(t - Date.now());
    });
  }
  document.querySelectorAll("time[data-local]").forEach(function (e) {
    var d = new Date(e.getAttribute("datetime"));
    if (isNaN(d)) return;
    var o = {hour: "2-digit", minute: "2-digit"};
    if (d - Date.now() >= 12 * 3600000) { o.weekday = "short"; o.day = "numeric"; o.month = "short"; }
    e.textContent = d.toLocaleString([], o);
    e.title = e.getAttribute("datetime");
  });
  tick();
  setInterval(tick, 15000);
})();`

// pageScriptHash is pageScript's CSP hash source.
var pageScriptHash = hashSource(pageScript)

// passkeyScript runs the WebAuthn ceremony of the page's #passkey button:
// with data-mode "get" an assertion (approval page), with "create" a
// registration (enrolment page), over the options in data-options (the
// server's JSON). It puts the credential's JSON in the form's hidden
// field (#assertion or #credential) and submits the form; the server
// verifies it. Inline, allowed by its hash in the CSP: it must stay byte
// for byte what the template holds.
const passkeyScript = `(function () {
  var b = document.getElementById("passkey");
  if (!b) return;
  var status = document.getElementById("passkey-status");
  var create = b.getAttribute("data-mode") === "create";
  var out = document.getElementById(create ? "credential" : "assertion");
  b.addEventListener("click", function () {
    var P = window.PublicKeyCredential;
    if (!P || !P.parseRequestOptionsFromJSON) {
      status.textContent = "This browser cannot use passkeys.";
      return;
    }
    var opts = JSON.parse(b.getAttribute("data-options"));
    var p = create ? navigator.credentials.create({publicKey: P.parseCreationOptionsFromJSON(opts)})
      : navigator.credentials.get({publicKey: P.parseRequestOptionsFromJSON(opts)});
    b.disabled = true;
    status.textContent = create ? "Follow your device to create the passkey…" : "Follow your device to use your passkey…";
    p.then(function (cred) {
      out.value = JSON.stringify(cred.toJSON());
      if (!create) {
        var a = document.createElement("input");
        a.type = "hidden"; a.name = "action"; a.value = "approve";
        out.form.appendChild(a);
      }
      out.form.submit();
    }).catch(function (e) {
      b.disabled = false;
      status.textContent = "The passkey was not used (" + e.name + "). Try again.";
    });
  });
})();`

// passkeyScriptHash is passkeyScript's CSP hash source.
var passkeyScriptHash = hashSource(passkeyScript)

// pageStyle is the pages' style sheet. The accent colours are custom
// properties, set on :root in front of it (brand.Style).
const pageStyle = `
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{font:1rem/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;padding:1rem;background:#eef0f3;color:` + pageText + `}
button,input{font:inherit;color:inherit}
main{max-width:30rem;margin:0 auto;background:linear-gradient(var(--accent),var(--accent)) top/100% .35rem no-repeat #fff;border-radius:.75rem;padding:1.75rem 1.25rem 1.5rem;box-shadow:0 1px 2px rgb(0 0 0/.08),0 4px 16px rgb(0 0 0/.06)}
@media (min-width:40rem){body{padding:3rem 1rem}main{padding:2rem}}
.brand{display:flex;align-items:center;gap:.6rem;margin:0 0 1.25rem;font-weight:600;font-size:1.05rem;color:#3d444d;overflow-wrap:anywhere}
.brand img{height:2rem;width:auto;max-width:9rem;object-fit:contain;flex:none}
h1{font-size:1.4rem;line-height:1.25;margin:0 0 1rem}
p{margin:0 0 1rem}
main>p:last-child{margin-bottom:0}
.binding{font:700 1.5rem/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;letter-spacing:.06em;padding:.6rem;border:2px dashed #6e7781;border-radius:.5rem;text-align:center;overflow-wrap:anywhere}
h2{font-size:1rem;margin:1.25rem 0 .5rem}
.scopes{list-style:none;padding:0;margin:0 0 1rem;border:1px solid #d8dee4;border-radius:.5rem}
.scopes li{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:.1rem .75rem;padding:.55rem .75rem;border-top:1px solid #d8dee4}
.scopes li:first-child{border-top:0}
.scopes code{margin-left:auto;font:.8rem/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#59636e;overflow-wrap:anywhere}
.scopes li.raw code{margin-left:0;font-size:.95rem;color:inherit}
.detail{border:1px solid #d8dee4;border-radius:.5rem;padding:.55rem .75rem;margin:0 0 .75rem}
.detail-type{margin:0 0 .4rem}
.detail-type code{font:.85rem/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#59636e;overflow-wrap:anywhere}
.detail dl{display:grid;grid-template-columns:minmax(6rem,auto) 1fr;gap:.25rem .75rem;margin:0}
.detail dt{color:#59636e;overflow-wrap:anywhere}
.detail dd{margin:0;overflow-wrap:anywhere}
.detail .amount{font-size:1.15rem}
.detail details{margin-top:.5rem}
.detail summary{cursor:pointer;color:#59636e}
.expiry{color:#59636e;font-size:.9rem}
.expiry time{white-space:nowrap}
label{display:block;margin:1rem 0 .3rem;font-weight:600}
input[type=password],input[type=text]{display:block;width:100%;font-size:1.1rem;padding:.6rem .7rem;border:1px solid #8c959f;border-radius:.4rem;background:#fff}
input[name=user_code]{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;letter-spacing:.08em;text-transform:uppercase}
:focus-visible{outline:3px solid var(--line);outline-offset:2px}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}
button{flex:1;font-weight:600;padding:.7rem 1rem;min-height:2.75rem;border-radius:.5rem;border:1px solid #8c959f;background:#f6f8fa;cursor:pointer}
button:hover{background:#eef1f4}
button.primary{background:var(--accent);color:var(--on-accent);border-color:var(--line)}
button.primary:hover{filter:brightness(1.08)}
.note{color:#3d444d}
.error{color:#a40e26;background:#ffebe9;border:1px solid #ffcecb;border-radius:.4rem;padding:.5rem .75rem;font-weight:600}
`

// pageTemplate is the approval and device pages, and the messages that
// follow them. It works without JavaScript.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}{{with .Brand.Name}} · {{.}}{{end}}</title>
<link rel="manifest" href="/manifest.webmanifest">
<style>{{.Brand.Style}}</style>
</head>
<body>
<main>
{{if or .Brand.Name .Brand.Logo}}<header class="brand">{{with .Brand.Logo}}<img src="{{.}}" alt=""{{if not $.Brand.Name}} aria-hidden="true"{{end}}>{{end}}{{with .Brand.Name}}<span>{{.}}</span>{{end}}</header>
{{end}}<h1>{{.Title}}</h1>
{{if .Form}}
{{if .Device}}{{if .ActsFor}}<p><strong>{{.Client}}</strong> acting on your behalf asks to {{if .Details}}do what is listed below{{else}}use your account{{end}}{{with .Brand.Name}} at {{.}}{{end}}.</p>
{{else}}<p><strong>{{.Client}}</strong> asks to sign in to your account{{with .Brand.Name}} at {{.}}{{end}}.</p>{{end}}
{{if .Binding}}<p>Check that this code matches the one shown on your device:</p>
<p class="binding" aria-label="The code shown on your device">{{.Binding}}</p>{{end}}
{{else if .ActsFor}}<p><strong>{{.Client}}</strong> acting on your behalf asks to {{if .Details}}do what is listed below{{else}}use your account{{end}}{{if .User}} as <strong>{{.User}}</strong>{{end}}.</p>
{{if .Binding}}<p>Check that this code matches the one shown on the other device:</p>
<p class="binding" aria-label="Binding message">{{.Binding}}</p>{{end}}
{{else}}<p><strong>{{.Client}}</strong> asks to sign you in{{if .User}} as <strong>{{.User}}</strong>{{end}}.</p>
{{if .Binding}}<p>Check that this code matches the one shown on the other device:</p>
<p class="binding" aria-label="Binding message">{{.Binding}}</p>{{end}}
{{end}}{{if .Details}}<h2 id="details-heading">To approve</h2>
{{range .Details}}<section class="detail" aria-labelledby="details-heading" data-type="{{.Type}}">
<p class="detail-type"><code>{{.Type}}</code></p>
{{if .HTML}}<div class="detail-custom">{{.HTML}}</div>
<details><summary>All details</summary>
{{template "detail-list" .View}}</details>
{{else}}{{template "detail-list" .View}}{{end}}</section>
{{end}}{{end}}<h2 id="scopes-heading">It asks for</h2>
<ul class="scopes" aria-labelledby="scopes-heading">
{{range .Scopes}}{{if .Description}}<li><span>{{.Description}}</span> <code>{{.Name}}</code></li>
{{else}}<li class="raw"><code>{{.Name}}</code></li>
{{end}}{{end}}</ul>
<p class="expiry">This request expires <span data-until="{{.Expires.ISO}}">{{.Expires.In}}</span>, at <time datetime="{{.Expires.ISO}}" data-local>{{.Expires.At}}</time>.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{with .DetailsDigest}}<input type="hidden" name="details_digest" value="{{.}}">
{{end}}{{if .Device}}<input type="hidden" name="user_code" value="{{.DeviceCode}}">
{{end}}{{if .UserCode}}<label for="user_code">The code you gave {{.Client}} (needed to approve)</label>
<input type="text" id="user_code" name="user_code" autocomplete="one-time-code" spellcheck="false">
{{end}}{{if .Federated}}<p class="note">Approve takes you to your identity provider to sign in{{if .User}} as <strong>{{.User}}</strong>{{end}}.</p>
{{else if .Device}}<label for="username">Your username (needed to approve)</label>
<input type="text" id="username" name="username" autocomplete="username" spellcheck="false" autocapitalize="none">
<label for="password">Your password</label>
<input type="password" id="password" name="password" autocomplete="current-password">
{{else if not .NoPassword}}<label for="password">Password for {{.User}} (needed to approve)</label>
<input type="password" id="password" name="password" autocomplete="current-password">
{{end}}{{if .Passkey}}<input type="hidden" id="assertion" name="assertion" value="">
<p class="note" id="passkey-status" role="status">{{if .NoPassword}}Approve with the passkey of {{.User}}: your device asks you to unlock it.{{else}}Or approve with your passkey instead of the password.{{end}}</p>
{{end}}{{with .Note}}<p class="note">{{.}}</p>
{{end}}<div class="actions">
{{if .Passkey}}<button type="button" id="passkey" class="primary" data-mode="get" data-options="{{.PasskeyOptions}}">Approve with passkey</button>
{{end}}{{if not .NoPassword}}<button type="submit" name="action" value="approve" class="primary">Approve</button>
{{end}}<button type="submit" name="action" value="deny">Deny</button>
</div>
</form>
<script>` + pageScript + `</script>
{{if .Passkey}}<script>` + passkeyScript + `</script>
{{end}}
{{else if .Enrol}}
<p>Create a passkey for <strong>{{.User}}</strong>{{with .Brand.Name}} at {{.}}{{end}}, to approve sign-ins with it. Your device asks you to unlock it with your fingerprint, face or PIN.</p>
<p class="expiry">This link works once and expires <span data-until="{{.Expires.ISO}}">{{.Expires.In}}</span>, at <time datetime="{{.Expires.ISO}}" data-local>{{.Expires.At}}</time>.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post">
<input type="hidden" id="credential" name="credential" value="">
<p class="note" id="passkey-status" role="status"></p>
<div class="actions"><button type="button" id="passkey" class="primary" data-mode="create" data-options="{{.PasskeyOptions}}">Create a passkey</button></div>
</form>
<script>` + pageScript + `</script>
<script>` + passkeyScript + `</script>
{{else if .Entry}}
<p>Enter the code shown on your device{{with .Brand.Name}} to connect it to {{.}}{{end}}.</p>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="user_code">Code</label>
<input type="text" id="user_code" name="user_code" value="{{.DeviceCode}}" autocomplete="off" spellcheck="false" autocapitalize="characters">
<div class="actions"><button type="submit" name="action" value="continue" class="primary">Continue</button></div>
</form>
{{else}}
<p>{{.Message}}</p>
{{with .Push}}<div id="push" data-token="{{.Token}}" data-key="{{.Key}}" hidden>
<p class="note">Get the next sign-in requests as notifications on this device.</p>
<div class="actions"><button type="button" id="push-on" class="primary">Notify me on this device</button></div>
<p id="push-status" role="status"></p>
</div>
<script>` + pushScript + `</script>
{{end}}{{with .SelfEnrol}}<form method="post" action="{{.Action}}" id="self-enrol">
<input type="hidden" name="action" value="add-passkey">
<input type="hidden" name="enrolment" value="{{.Token}}">
<input type="hidden" id="credential" name="credential" value="">
<p class="note">Next time, approve with a passkey instead of your password: your device unlocks it with your fingerprint, face or PIN. This offer works once, in the next few minutes, in this browser.</p>
{{with $.Error}}<p class="error" role="alert">{{.}}</p>
{{end}}<p class="note" id="passkey-status" role="status"></p>
<div class="actions"><button type="button" id="passkey" class="primary" data-mode="create" data-options="{{.Options}}">Add a passkey for next time</button></div>
</form>
<script>` + passkeyScript + `</script>
{{end}}{{end}}
</main>
</body>
</html>
{{define "detail-list"}}<dl>
{{range .Amounts}}<dt>{{.Name}}</dt><dd class="amount"><strong>{{.Amount}} {{.Currency}}</strong></dd>
{{end}}{{with .Actions}}<dt>actions</dt><dd>{{.}}</dd>
{{end}}{{with .Locations}}<dt>locations</dt><dd>{{.}}</dd>
{{end}}{{range .Fields}}<dt>{{.Name}}</dt><dd>{{.Value}}</dd>
{{end}}</dl>
{{end}}`))
