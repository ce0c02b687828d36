package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/consent"
	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// PathApprove is the approval page; the request's approval id follows it.
const PathApprove = "/approve/"

// Passwords checks a user's password (the local upstream).
type Passwords interface {
	// CheckPassword returns the subject of username when password is
	// right. An error means the password was not checked (no bcrypt slot
	// came free in time, limit.ErrBusy, or ctx ended): the page answers
	// busy, and the try is not counted as a wrong one.
	CheckPassword(ctx context.Context, username, password string) (subject string, ok bool, err error)
}

// Approval serves the approval page: the user sees who asks, the binding
// message and the scopes, and approves or denies. With the local upstream
// the user approves with their password (Passwords); with a federated one
// (Federation) Approve sends the browser to the identity provider to sign
// in, and the provider's answer on PathApproveCallback approves the
// request. It works without JavaScript. Forms are protected against CSRF by
// a double-submit token: a random cookie, and a hidden field that is an
// HMAC of it and the approval id.
type Approval struct {
	Service *ciba.Service
	// Passwords checks passwords (local upstream); nil with Federation.
	Passwords Passwords
	// Federation signs the user in at the upstream provider (oidc
	// upstream); nil for the local upstream.
	Federation Federation
	// Logins keeps the state of sign-ins in progress at the provider
	// (the store's records); required with Federation.
	Logins Records
	// Key signs the CSRF tokens; at least 32 bytes, stable across restarts.
	Key    []byte
	Secure bool // set the cookie's Secure flag (an https issuer)
	Logger *slog.Logger
	// Pages brands the pages (service name, logo, accent colour) and
	// describes scopes; the zero value is a plain page.
	Pages Pages
	// Push, when set, offers notifications on this device after an
	// approval (the Web Push channel, webapp.go).
	Push *WebPush
	// DetailTemplates holds the operator's templates of some
	// authorization_details types (authorization_details.types[].template)
	// as in force now (a reload replaces them): a page is rendered with
	// the templates in force when it starts. nil, or no templates: every
	// element gets the default rendering.
	DetailTemplates *authzdetails.Live
	// Passkeys, with the local upstream, lets users enrol passkeys and
	// approve with them (passkey.go); nil: passwords only.
	Passkeys *Passkeys

	// limits are the server's, for the password lockout (checkPassword);
	// now is its clock. Set by Server.Handler.
	limits *Limits
	now    func() time.Time
}

const csrfCookie = "cibaproxy_csrf"

func (a *Approval) register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathApprove+"{id}", a.show)
	mux.HandleFunc("POST "+PathApprove+"{id}", a.answer)
	if a.Federation != nil {
		mux.HandleFunc("GET "+PathApproveCallback, a.loginCallback)
	}
	a.registerApp(mux)
	if a.Passkeys != nil {
		mux.HandleFunc("GET "+PathEnroll+"{token}", a.enrolShow)
		mux.HandleFunc("POST "+PathEnroll+"{token}", a.enrolAnswer)
		mux.HandleFunc("POST "+PathApprove+"{id}"+pathSelfEnrol, a.selfEnrolApproval)
	}
}

// page is what the template shows.
type page struct {
	Title, Message string
	Client         string
	User           string
	Binding        string
	Scopes         []consent.Scope
	// Details are the request's authorization_details (RFC 9396), shown
	// in full so that the user approves exactly them; DetailsDigest is
	// their digest, which the form posts back so that the approval
	// records what was shown (ciba.Decisions.ApproveShown).
	Details       []detailBlock
	DetailsDigest string
	// ActsFor says the client is a delegate acting for the user
	// (acts_for_user): "<client> acting on your behalf asks to …".
	ActsFor bool
	Expires expiry
	CSRF    string
	Error   string
	Form    bool
	// Federated: Approve continues to the identity provider, no password.
	Federated bool
	// UserCode asks for the user_code the client sent, to confirm it.
	UserCode bool
	// Device is the verification page of the device grant (device.go):
	// DeviceCode is the user code the form carries on, and the user types
	// a username too, since no user is named.
	Device     bool
	DeviceCode string
	// Entry asks for a user code (the device grant's first step).
	Entry bool
	// Passkey offers approval with a passkey, whose request options
	// (JSON) are PasskeyOptions; NoPassword leaves the password out.
	// Note explains why neither is offered.
	Passkey        bool
	PasskeyOptions string
	NoPassword     bool
	Note           string
	// Enrol is the passkey enrolment page (creation options in
	// PasskeyOptions).
	Enrol bool
	// Brand is the operator's branding (render sets it).
	Brand brand
	// Push offers notifications on this device (after an approval).
	Push *pushOffer
	// SelfEnrol offers to add a passkey (after a password approval,
	// selfenrol.go).
	SelfEnrol *selfEnrolOffer
}

func (a *Approval) show(w http.ResponseWriter, r *http.Request) {
	req, client, err := a.Service.ForApproval(r.Context(), r.PathValue("id"))
	if err == nil && req.Kind != ciba.KindCIBA {
		err = ciba.ErrNotFound // a device request is answered on its own page
	}
	if err != nil {
		a.closed(w, err)
		return
	}
	cookie := csrfValue(r)
	if cookie == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		cookie = base64.RawURLEncoding.EncodeToString(b)
		http.SetCookie(w, &http.Cookie{
			Name: csrfCookie, Value: cookie, Path: PathApprove, HttpOnly: true,
			Secure: a.Secure, SameSite: http.SameSiteStrictMode, MaxAge: 3600,
		})
	}
	o, err := a.offerFor(r.Context(), req)
	if err != nil {
		a.closed(w, err)
		return
	}
	a.render(w, http.StatusOK, o.apply(a.form(req, client, cookie, "")))
}

func (a *Approval) form(req *ciba.AuthRequest, client *ciba.Client, cookie, problem string) page {
	return page{
		Title: "Approve sign-in", Client: client.Name, User: req.LoginHint, Binding: req.BindingMessage,
		Scopes: a.Pages.scopes(req.Scopes), Expires: expiresAt(req.ExpiresAt, time.Now()),
		CSRF: a.csrf(cookie, req.ApprovalID), Error: problem, Form: true,
		Federated: a.Federation != nil, UserCode: a.confirmsUserCode(req),
		Details: a.detailBlocks(req.AuthzDetails), DetailsDigest: req.DetailsDigest(),
		ActsFor: req.Actor != "",
	}
}

// detailBlock is one authorization_details element as the page shows it:
// the default rendering (View), and HTML when the operator's template of
// its type rendered it, in which case the default rendering follows
// under "All details".
type detailBlock struct {
	authzdetails.View
	HTML template.HTML
}

// detailBlocks returns the stored authorization_details as the page shows
// them; nil for none. The list was checked at bc-authorize, so it decodes;
// if it did not, the page shows one element saying so rather than nothing,
// and approving stays possible only for what is shown. An operator
// template that fails on an element leaves it the default rendering.
func (a *Approval) detailBlocks(stored string) []detailBlock {
	if stored == "" {
		return nil
	}
	l, err := authzdetails.FromJSON([]byte(stored))
	if err != nil {
		return []detailBlock{{View: authzdetails.View{Type: "(details that cannot be shown)"}}}
	}
	tpls := a.DetailTemplates.Templates() // one set for the whole page
	out := make([]detailBlock, 0, len(l))
	for _, d := range l {
		b := detailBlock{View: d.View()}
		html, ok, err := tpls.Render(d)
		switch {
		case err != nil:
			a.Logger.Warn("approval page: authorization_details template failed; the default rendering is shown", slog.String("type", d.Type()), slog.Any("error", err))
		case ok:
			b.HTML = html
		}
		out = append(out, b)
	}
	return out
}

// confirmsUserCode reports whether the page asks the user to confirm the
// request's user_code: the client sent one and the upstream could not check
// it (a federated provider has no user codes).
func (a *Approval) confirmsUserCode(req *ciba.AuthRequest) bool {
	return a.Federation != nil && req.UserCodeHash != ""
}

// userCodeMatches compares a typed user_code with the request's hash in
// constant time.
func userCodeMatches(req *ciba.AuthRequest, code string) bool {
	sum := sha256.Sum256([]byte(code))
	return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(req.UserCodeHash)) == 1
}

func (a *Approval) answer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	req, client, err := a.Service.ForApproval(r.Context(), id)
	if err == nil && req.Kind != ciba.KindCIBA {
		err = ciba.ErrNotFound // a device request is answered on its own page
	}
	if err != nil {
		a.closed(w, err)
		return
	}
	// Room for a passkey assertion (a few kB of JSON).
	r.Body = http.MaxBytesReader(w, r.Body, 32<<10)
	if err := r.ParseForm(); err != nil {
		a.render(w, http.StatusBadRequest, page{Title: "Bad request", Message: "The form could not be read."})
		return
	}
	cookie := csrfValue(r)
	if cookie == "" || !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(a.csrf(cookie, id))) {
		a.render(w, http.StatusForbidden, page{Title: "Expired form", Message: "This form has expired or was not sent from the approval page. Open the link again."})
		return
	}
	switch r.PostFormValue("action") {
	case "deny":
		err = a.Service.Deny(r.Context(), req.ID, "the user denied the request")
		if err == nil {
			a.render(w, http.StatusOK, page{Title: "Denied", Message: "You denied the sign-in. You can close this page."})
			return
		}
	case "approve":
		if a.confirmsUserCode(req) && !userCodeMatches(req, r.PostFormValue("user_code")) {
			a.Logger.Info("approval page: wrong user code", slog.String("client_id", req.ClientID))
			a.render(w, http.StatusUnauthorized, a.form(req, client, cookie, "The code is not the one given to "+client.Name+"."))
			return
		}
		if r.PostFormValue("details_digest") != req.DetailsDigest() {
			a.detailsChanged(w, req)
			return
		}
		if a.Federation != nil {
			a.startLogin(w, r, req, r.PostFormValue("details_digest"))
			return
		}
		o, err := a.offerFor(r.Context(), req)
		if err != nil {
			a.closed(w, err)
			return
		}
		if r.PostFormValue("assertion") != "" {
			if !o.passkey {
				a.render(w, http.StatusBadRequest, o.apply(a.form(req, client, cookie, "This account does not approve with a passkey here.")))
				return
			}
			a.approveWithPasskey(w, r, req, client, cookie, o)
			return
		}
		if !o.password {
			a.render(w, http.StatusUnauthorized, o.apply(a.form(req, client, cookie, "This account approves with a passkey, not a password.")))
			return
		}
		sub, ok, wait, err := a.checkPassword(r, req.LoginHint, r.PostFormValue("password"))
		if wait > 0 {
			a.lockedOut(w, wait)
			return
		}
		if err != nil {
			a.busy(w, r, err)
			return
		}
		if !ok || sub != req.Subject {
			a.Logger.Info("approval page: wrong password", slog.String("client_id", req.ClientID), slog.String("subject", req.Subject))
			a.render(w, http.StatusUnauthorized, o.apply(a.form(req, client, cookie, "The password is not right.")))
			return
		}
		err = a.Service.ApproveShown(r.Context(), req, r.PostFormValue("details_digest"))
		if errors.Is(err, ciba.ErrDetailsChanged) {
			a.detailsChanged(w, req)
			return
		}
		if err == nil {
			self := a.selfEnrolOffer(r.Context(), req.Subject, req.LoginHint, approvalSelfBinding(cookie, id), PathApprove+id+pathSelfEnrol)
			if self != nil {
				a.keepCookie(w, csrfCookie, cookie, PathApprove)
			}
			a.render(w, http.StatusOK, page{Title: "Approved", Message: "You approved the sign-in to " + client.Name + ". You can close this page.",
				Push: a.Push.offer(r.Context(), req.Subject, a.Logger), SelfEnrol: self})
			return
		}
	default:
		a.render(w, http.StatusBadRequest, page{Title: "Bad request", Message: "Choose Approve or Deny."})
		return
	}
	a.closed(w, err)
}

// checkPassword checks username's password (Passwords), on either page,
// under the password lockout: one wrong try is reserved for the username
// from this address (Limits.PasswordFailuresPerUserIP), then for the
// username from everywhere (PasswordFailuresPerUser), before the bcrypt
// comparison, and kept only when the password is wrong, so that tries in
// parallel are all counted. When either bucket is empty the password is
// not checked and wait (> 0) is how long until a try is back: the page
// answers lockedOut, the same for the right password and a wrong one.
// When the password could not be checked (err: every bcrypt slot stayed
// busy, see local.Config.Slots) the reserved tries are given back and the
// page answers busy: a refusal of ours is no wrong try.
//
// The key is the username as given to CheckPassword (a hash of it: any
// string a form carries), so a username that does not exist is locked out
// the same way and the answer tells nothing about which ones do.
func (a *Approval) checkPassword(r *http.Request, username, password string) (sub string, ok bool, wait time.Duration, err error) {
	ok, wait, err = a.underLockoutErr(r, username, func() (bool, error) {
		var err error
		sub, ok, err = a.Passwords.CheckPassword(r.Context(), username, password)
		return ok, err
	})
	return sub, ok, wait, err
}

// underLockout runs check, a password or passkey check for username, under
// the lockout that checkPassword describes: a failed check (false) counts
// as a wrong try for the username, whichever way the user tried. When
// the lockout holds, check is not run and wait (> 0) is how long until a
// try is back.
func (a *Approval) underLockout(r *http.Request, username string, check func() bool) (ok bool, wait time.Duration) {
	ok, wait, _ = a.underLockoutErr(r, username, func() (bool, error) { return check(), nil })
	return ok, wait
}

// underLockoutErr is underLockout with a check that may fail to be made
// (an error: no bcrypt slot came free in time): such a check counts
// nothing (its reserved tries are given back) and its error is returned.
func (a *Approval) underLockoutErr(r *http.Request, username string, check func() (bool, error)) (ok bool, wait time.Duration, err error) {
	settle := func(bool) {}
	if l := a.limits; l != nil && (l.PasswordFailuresPerUser != nil || l.PasswordFailuresPerUserIP != nil) {
		user := userKey(username)
		var err error
		var allowed bool
		allowed, wait, settle, err = limit.ReserveAll(r.Context(), a.now,
			limit.Bucket{Limit: l.PasswordFailuresPerUserIP, Key: user + " " + addrKey(l.ClientIP(r))},
			limit.Bucket{Limit: l.PasswordFailuresPerUser, Key: user})
		if err != nil {
			a.Logger.WarnContext(r.Context(), "abuse limit unavailable; request allowed", "limit", "password_failures", "error", err)
		}
		if !allowed {
			a.Logger.WarnContext(r.Context(), "password locked out after too many wrong tries; not checked", slog.Duration("retry_after", wait))
			return false, max(wait, time.Second), nil
		}
	}
	ok, err = check()
	settle(err == nil && !ok)
	return ok, 0, err
}

// userKey is the limiter key of a username: a hash, so that a key is
// short whatever a form sends, and the same on every page.
func userKey(username string) string {
	sum := sha256.Sum256([]byte("cibaproxy username\x00" + username))
	return hex.EncodeToString(sum[:16])
}

// lockedOut answers a password that was not checked: too many wrong ones
// were typed for the username (checkPassword).
func (a *Approval) lockedOut(w http.ResponseWriter, wait time.Duration) {
	retryAfter(w, wait)
	a.render(w, http.StatusTooManyRequests, page{Title: "Too many attempts",
		Message: "Too many wrong passwords (or passkey attempts that failed) were tried for this account, so it cannot approve sign-ins for now. Wait " +
			waitText(wait) + ", then try again."})
}

// busyWait is the Retry-After of the busy page, as the client-secret and
// user-code checks answer when their bcrypt slots are busy.
const busyWait = time.Second

// busy answers a password that was not checked because no bcrypt slot came
// free in time (err from Passwords.CheckPassword): HTTP 503, which neither
// the lockout nor the failures per address count, so the same password
// typed again is checked as if this try had not been.
func (a *Approval) busy(w http.ResponseWriter, r *http.Request, err error) {
	a.Logger.WarnContext(r.Context(), "password not checked: the service is busy", slog.Any("error", err))
	retryAfter(w, busyWait)
	a.render(w, http.StatusServiceUnavailable, page{Title: "Busy",
		Message: "The service is busy right now, so your password was not checked (this did not count as a wrong try). Wait a moment, then try again."})
}

// detailsChanged answers an approval whose form carried the digest of
// other authorization_details than the request's: what the user saw is not
// what the tokens would carry, so nothing is approved. A device request
// (answered here at the federated sign-in's callback) has no link to open
// again: its user enters the code again.
func (a *Approval) detailsChanged(w http.ResponseWriter, req *ciba.AuthRequest) {
	a.Logger.Warn("approval page: the approved authorization_details are not the request's; not approved", slog.String("client_id", req.ClientID))
	again := "Open the link again to see the request."
	if req.Kind == ciba.KindDevice {
		again = "Enter the code again to see the request."
	}
	a.render(w, http.StatusConflict, page{Title: "Not approved",
		Message: "The details you approved are not those of this request, so nothing was approved. " + again})
}

// waitText says d for a person: "a minute", "12 minutes".
func waitText(d time.Duration) string {
	m := int64((d + time.Minute - 1) / time.Minute)
	if m <= 1 {
		return "a minute"
	}
	return strconv.FormatInt(m, 10) + " minutes"
}

// closed answers a link that can no longer be used.
func (a *Approval) closed(w http.ResponseWriter, err error) {
	var pe *ciba.Error
	switch {
	case errors.Is(err, ciba.ErrNotFound):
		a.render(w, http.StatusNotFound, page{Title: "Link not valid", Message: "This approval link is not valid or has expired."})
	case errors.As(err, &pe) && pe.Code == ciba.CodeExpiredToken:
		a.render(w, http.StatusGone, page{Title: "Expired", Message: "This sign-in request has expired."})
	case errors.As(err, &pe) && (pe.Code == ciba.CodeInvalidRequest || pe.Code == ciba.CodeAccessDenied):
		a.render(w, http.StatusConflict, page{Title: "Already answered", Message: "This sign-in request was already answered."})
	default:
		a.Logger.Error("approval page", slog.Any("error", err))
		a.render(w, http.StatusServiceUnavailable, page{Title: "Try again", Message: "Something went wrong on our side. Try again in a moment."})
	}
}

func (a *Approval) csrf(cookie, approvalID string) string {
	mac := hmac.New(sha256.New, a.Key)
	mac.Write([]byte("cibaproxy csrf\x00" + cookie + "\x00" + approvalID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func csrfValue(r *http.Request) string {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 32 || strings.ContainsAny(c.Value, " ;") {
		return ""
	}
	return c.Value
}

func (a *Approval) render(w http.ResponseWriter, status int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	formAction := "'self'"
	if a.Federation != nil {
		// The Approve form answers with a redirect to the provider, which
		// browsers check against form-action too.
		if o := a.Federation.Origin(); o != "" {
			formAction += " " + o
		}
	}
	p.Brand = a.Pages.brand()
	h.Set("Content-Security-Policy", p.Brand.csp(formAction, p.Push != nil))
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	if err := pageTemplate.Execute(w, p); err != nil {
		a.Logger.Warn("approval page: render", slog.Any("error", err))
	}
}
