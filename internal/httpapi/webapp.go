package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// The installable web app around the approval pages (docs/webpush.md): a
// manifest, icons, a start page and a service worker, all from cibaproxy's
// own origin; and, with the Web Push channel on, the endpoint a browser
// posts its push subscription to.
const (
	PathManifest      = "/manifest.webmanifest"
	PathServiceWorker = "/sw.js"
	PathApp           = "/app"
	PathIcon          = "/app-icon-"
	PathSubscribe     = "/webpush/subscribe"
)

// WebPush lets a user who has just approved a request on the approval page
// have the next ones sent to this browser as push notifications. The
// "Approved" page carries a one-time subscription token bound to the
// user's subject (kept in Records for SubscribeTokenTTL, by its hash);
// the page's script subscribes with the VAPID public key and posts the
// subscription with the token to PathSubscribe, which takes the token
// (once) and keeps the subscription for that user, putting the token back
// if that write fails (useToken). Nobody can subscribe
// a browser for a user without having approved as that user moments ago.
type WebPush struct {
	// PublicKey is the VAPID public key (webpush.VAPID.PublicKey).
	PublicKey string
	// Subscriptions keeps the subscriptions.
	Subscriptions interface {
		Add(ctx context.Context, user string, sub webpush.Subscription) error
	}
	// Records keeps the one-time tokens.
	Records Records
	// Origin is the issuer's origin: a subscription posted from another
	// origin is refused.
	Origin string
	// Policy is the outbound policy pushes are sent under: an endpoint it
	// would refuse (plain http, a special-use IP literal) is refused when
	// posted, rather than on every push. Host names are checked when
	// connecting.
	Policy outbound.Policy
}

// checkEndpoint refuses what Policy would refuse of endpoint by its URL
// alone.
func (wp *WebPush) checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	if u.Scheme != "https" && !wp.Policy.AllowHTTP {
		return errors.New("endpoint: must be https")
	}
	if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil {
		if err := wp.Policy.Check(a); err != nil {
			return errors.New("endpoint: a special-use address push services do not have")
		}
	}
	return nil
}

// SubscribeTokenTTL is how long the "Approved" page's subscription token
// lasts.
const SubscribeTokenTTL = 10 * time.Minute

const subscribeKind = "webpush-subscribe"

// pushOffer is what the "Approved" page needs to offer notifications.
type pushOffer struct {
	Token, Key string
}

// offer makes a one-time subscription token for subject, or nil when it
// cannot (the page then simply does not offer notifications).
func (wp *WebPush) offer(ctx context.Context, subject string, log *slog.Logger) *pushOffer {
	if wp == nil || subject == "" {
		return nil
	}
	tok := random(32)
	v, err := json.Marshal(subscribeToken{Subject: subject, Expires: time.Now().Add(SubscribeTokenTTL).UTC()})
	if err == nil {
		err = wp.Records.PutRecord(ctx, subscribeKind, tokenKey(tok), v, SubscribeTokenTTL)
	}
	if err != nil {
		log.WarnContext(ctx, "webpush: subscription token not stored; notifications not offered", slog.Any("error", err))
		return nil
	}
	return &pushOffer{Token: tok, Key: wp.PublicKey}
}

// subscribeToken is the record of a subscription token: whose it is and
// until when, so that a token put back after a failed write (takeToken)
// keeps the rest of its lifetime only.
type subscribeToken struct {
	Subject string    `json:"sub"`
	Expires time.Time `json:"exp"`
}

// parseSubscribeToken reads a token's record. A record that is no such
// JSON (one made before records carried their expiry: the bare subject)
// is that subject, expiring at most SubscribeTokenTTL from now.
func parseSubscribeToken(v []byte, now time.Time) subscribeToken {
	var t subscribeToken
	if err := json.Unmarshal(v, &t); err != nil || t.Subject == "" || t.Expires.IsZero() {
		return subscribeToken{Subject: string(v), Expires: now.Add(SubscribeTokenTTL)}
	}
	return t
}

// useToken spends the one-time token tok on use, which gets the token's
// subject and keeps the subscription. It takes the token first (of
// concurrent posts of one token exactly one gets it, the others
// ciba.ErrNotFound) and, when use fails, puts it back for the rest of its
// lifetime (ciba.UseTaken says why this order keeps one subscription per
// token), so that a store error leaves the user a token to try again with.
// A write that failed in doubt and landed is replaced by a retry of the
// same browser (Add keys by endpoint).
func (wp *WebPush) useToken(ctx context.Context, tok string, use func(subject string) error) error {
	v, err := wp.Records.TakeRecord(ctx, subscribeKind, tokenKey(tok))
	if err != nil {
		return err
	}
	now := time.Now()
	t := parseSubscribeToken(v, now)
	if !now.Before(t.Expires) {
		return ciba.ErrNotFound // a backend keeping it a little longer
	}
	return ciba.UseTaken(ctx, wp.Records, subscribeKind, tokenKey(tok), v, t.Expires, now, func() error { return use(t.Subject) })
}

// tokenKey is the record key of a token: its hash, so that the store holds
// nothing a reader could post.
func tokenKey(tok string) string {
	sum := sha256.Sum256([]byte("cibaproxy webpush subscribe\x00" + tok))
	return hex.EncodeToString(sum[:])
}

// subscribe takes {"token": "…", "subscription": PushSubscription.toJSON()}
// and keeps the subscription for the token's user. Errors are RFC 6749
// style JSON.
func (wp *WebPush) subscribe(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && o != wp.Origin {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "the subscription must be posted from the approval pages' origin"))
		return
	}
	if mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(mt) != "application/json" {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "the body must be application/json"))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<10))
	if err != nil {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "the body is over 8 KiB or could not be read"))
		return
	}
	var in struct {
		Token        string          `json:"token"`
		Subscription json.RawMessage `json:"subscription"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Token == "" {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "the body must be JSON with token and subscription"))
		return
	}
	sub, err := webpush.ParseSubscription(in.Subscription)
	if err == nil {
		err = wp.checkEndpoint(sub.Endpoint)
	}
	if err != nil {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "subscription: %s", err.Error()))
		return
	}
	sub.Created = time.Now().UTC()
	tried := false
	err = wp.useToken(r.Context(), in.Token, func(user string) error {
		tried = true
		return wp.Subscriptions.Add(r.Context(), user, sub)
	})
	switch {
	case err == nil:
	case errors.Is(err, ciba.ErrNotFound) && !tried:
		writeError(w, ciba.Errorf(ciba.CodeInvalidGrant, "the token is not valid, was used already or has expired: approve a request again to get a new one"))
		return
	case !tried:
		writeError(w, ciba.Errorf(ciba.CodeTemporarilyUnavailable, "the store is unavailable"))
		return
	default:
		writeError(w, ciba.Errorf(ciba.CodeTemporarilyUnavailable, "the subscription could not be stored"))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"status": "subscribed"})
}

// registerApp serves the web app's files, and the subscription endpoint
// when Web Push is on.
func (a *Approval) registerApp(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathManifest, a.manifest)
	mux.HandleFunc("GET "+PathServiceWorker, serviceWorker)
	mux.HandleFunc("GET "+PathApp, func(w http.ResponseWriter, r *http.Request) {
		a.render(w, http.StatusOK, page{Title: "Sign-in approvals",
			Message: "Sign-in requests for you open here, from a link in a notification or a message. There is nothing to do until one comes."})
	})
	for _, n := range []string{"192", "512"} {
		mux.HandleFunc("GET "+PathIcon+n+".png", a.icon)
	}
	if a.Push != nil {
		mux.HandleFunc("POST "+PathSubscribe, a.Push.subscribe)
	}
}

func (a *Approval) manifest(w http.ResponseWriter, _ *http.Request) {
	b := a.Pages.brand()
	name := b.Name
	if name == "" {
		name = "Sign-in approvals"
	}
	m := map[string]any{
		"name": name, "short_name": name, "start_url": PathApp, "scope": "/", "display": "standalone",
		"theme_color": b.Accent, "background_color": "#eef0f3",
		"icons": []map[string]string{
			{"src": PathIcon + "192.png", "sizes": "192x192", "type": "image/png"},
			{"src": PathIcon + "512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
		},
	}
	body, _ := json.Marshal(m)
	h := w.Header()
	h.Set("Content-Type", "application/manifest+json")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(body)
}

// icon draws the app icon: a square of the accent colour with a white
// check mark, 192 or 512 pixels.
func (a *Approval) icon(w http.ResponseWriter, r *http.Request) {
	n := 192
	if strings.HasSuffix(r.URL.Path, "512.png") {
		n = 512
	}
	acc, _ := parseHex(a.Pages.brand().Accent)
	bg := color.RGBA{uint8(acc[0] * 255), uint8(acc[1] * 255), uint8(acc[2] * 255), 255}
	img := image.NewRGBA(image.Rect(0, 0, n, n))
	for y := range n {
		for x := range n {
			img.Set(x, y, bg)
		}
	}
	// A check mark: two thick strokes.
	t := n / 16
	stroke := func(x0, y0, x1, y1 int) {
		steps := max(abs(x1-x0), abs(y1-y0))
		for i := 0; i <= steps; i++ {
			cx, cy := x0+(x1-x0)*i/steps, y0+(y1-y0)*i/steps
			for dy := -t; dy <= t; dy++ {
				for dx := -t; dx <= t; dx++ {
					img.Set(cx+dx, cy+dy, color.White)
				}
			}
		}
	}
	stroke(n*28/100, n*52/100, n*43/100, n*67/100)
	stroke(n*43/100, n*67/100, n*74/100, n*34/100)
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "max-age=86400")
	_, _ = w.Write(buf.Bytes())
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// serviceWorkerScript shows each push as a notification and opens the
// approval page it links to (cibaproxy's own origin only) when tapped.
const serviceWorkerScript = `"use strict";
self.addEventListener("install", function () { self.skipWaiting(); });
self.addEventListener("activate", function (e) { e.waitUntil(self.clients.claim()); });
self.addEventListener("push", function (e) {
  var n = {};
  try { n = e.data ? e.data.json() : {}; } catch (err) { n = {}; }
  var url = typeof n.url === "string" && n.url.indexOf(self.location.origin + "/approve/") === 0 ? n.url : "/app";
  e.waitUntil(self.registration.showNotification(n.title || "Sign-in request", {
    body: n.body || "", tag: n.tag || undefined, renotify: !!n.tag, requireInteraction: true, data: {url: url}
  }));
});
self.addEventListener("notificationclick", function (e) {
  e.notification.close();
  var url = (e.notification.data && e.notification.data.url) || "/app";
  e.waitUntil(self.clients.openWindow(url));
});
`

func serviceWorker(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/javascript; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'none'")
	h.Set("Service-Worker-Allowed", "/")
	_, _ = io.WriteString(w, serviceWorkerScript)
}

// pushScript is the "Approved" page's script: with the user's consent it
// registers the service worker, subscribes with the VAPID key and posts
// the subscription with the page's one-time token. Inline, allowed by its
// hash.
const pushScript = `(function () {
  var box = document.getElementById("push");
  if (!box || !("serviceWorker" in navigator) || !("PushManager" in window)) return;
  box.hidden = false;
  var button = document.getElementById("push-on"), status = document.getElementById("push-status");
  function bytes(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var b = atob(s), a = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) a[i] = b.charCodeAt(i);
    return a;
  }
  button.addEventListener("click", function () {
    button.disabled = true;
    status.textContent = "Turning notifications on…";
    Notification.requestPermission().then(function (p) {
      if (p !== "granted") throw new Error("this browser does not allow notifications from this site");
      return navigator.serviceWorker.register("` + PathServiceWorker + `", {scope: "/"});
    }).then(function () {
      return navigator.serviceWorker.ready;
    }).then(function (reg) {
      return reg.pushManager.getSubscription().then(function (s) {
        return s || reg.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: bytes(box.getAttribute("data-key"))});
      });
    }).then(function (sub) {
      return fetch("` + PathSubscribe + `", {method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({token: box.getAttribute("data-token"), subscription: sub.toJSON()})});
    }).then(function (r) {
      if (!r.ok) return r.json().then(function (e) { throw new Error(e.error_description || "HTTP " + r.status); });
      status.textContent = "Done: sign-in requests will come to this device as notifications.";
    }).catch(function (e) {
      button.disabled = false;
      status.textContent = "Notifications could not be turned on: " + e.message;
    });
  });
})();`

// pushScriptHash is pushScript's CSP hash source.
var pushScriptHash = hashSource(pushScript)
