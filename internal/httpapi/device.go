package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/limit"
)

// Paths of the device authorization grant (RFC 8628).
const (
	// PathDeviceAuthorization is the device authorization endpoint
	// (RFC 8628 §3.1), published as device_authorization_endpoint.
	PathDeviceAuthorization = "/device_authorization"
	// PathDevice is the verification page (verification_uri, §3.2).
	PathDevice = "/device"
)

// GrantDeviceCode is the device grant's grant_type (RFC 8628 §3.4).
const GrantDeviceCode = ciba.GrantDeviceCode

// Device serves the device authorization grant: the device authorization
// endpoint, the device_code grant at the token endpoint (server.go) and the
// verification page, where the user enters the code shown on the device,
// sees the client and scopes, signs in and approves or denies. The page is
// the approval page's family: same look, same CSRF scheme (a cookie of its
// own, scoped to PathDevice), the same password check (local upstream) or
// sign-in at the identity provider (Federation).
//
// Guessing user codes is stopped by two limits on wrong codes: per client
// address (an IPv6 /64) and for all addresses together. Both are reserved
// before a code is looked up, so once either is reached even a right code
// gets HTTP 429 until the limit refills: a guesser learns nothing more.
// Passwords typed here count against the same password lockout as on the
// approval page (Approval.checkPassword), and every failed answer against
// the same per-address limit (Limits.ApprovalFailures).
type Device struct {
	// Grant is the domain side of the grant.
	Grant *ciba.Device
	// Approval is the approval page this page shares its look, CSRF key,
	// Passwords and Federation with. Required.
	Approval *Approval
	// Public returns the public client (token_endpoint_auth_method none)
	// with the given client_id; such clients authenticate with their
	// client_id alone, at the device endpoints only. Nil: none.
	Public func(clientID string) (*ciba.Client, bool)
	// PerIP and Global are the wrong user codes allowed per minute, per
	// client address and in all; zero means 5 and 100.
	PerIP, Global int
	// ClientIP returns the address a request comes from, for the per-IP
	// limit; nil uses the TCP peer address.
	ClientIP func(*http.Request) string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// NewLimiter, when set, makes the two limits, named
	// "device_code_per_ip" and "device_code_all" (for instance shared by
	// all instances in Redis); nil keeps them in memory.
	NewLimiter func(name string, rate limit.Rate) limit.Keyed

	perIP, global limit.Keyed
}

const deviceCookie = "cibaproxy_device"

// deviceFormExpired answers a device page form without its cookie or with
// a CSRF value that does not match.
var deviceFormExpired = page{Title: "Expired form", Message: "This form has expired or was not sent from this page. Open " + PathDevice + " again."}

func (d *Device) register(mux *http.ServeMux, s *Server) {
	if d.PerIP <= 0 {
		d.PerIP = 5
	}
	if d.Global <= 0 {
		d.Global = 100
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.NewLimiter != nil {
		d.perIP = d.NewLimiter("device_code_per_ip", limit.Rate{Requests: d.PerIP, Per: time.Minute})
		d.global = d.NewLimiter("device_code_all", limit.Rate{Requests: d.Global, Per: time.Minute})
	} else {
		d.perIP = limit.New(limit.Rate{Requests: d.PerIP, Per: time.Minute}, 0)
		d.global = limit.New(limit.Rate{Requests: d.Global, Per: time.Minute}, 1)
	}
	mux.HandleFunc("POST "+PathDeviceAuthorization, s.deviceAuthorization)
	// Without an approval page (the ciba upstream relays the grant to the
	// IdP) the user verifies at the IdP: there is no page here.
	if d.Approval != nil {
		if d.Approval.Logger == nil {
			d.Approval.Logger = s.Logger
		}
		if d.Approval.limits == nil {
			// The password lockout is the server's, on both pages.
			d.Approval.limits, d.Approval.now = s.Limits, s.Now
		}
		mux.HandleFunc("GET "+PathDevice, d.show)
		mux.HandleFunc("POST "+PathDevice, d.answer)
	}
	mux.HandleFunc(PathDeviceAuthorization, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": r.Method + " is not allowed here; use POST"})
	})
}

// deviceAuthorization is the device authorization endpoint (RFC 8628 §3.1,
// §3.2): the client authenticates as at the token endpoint (or, public,
// sends its client_id) and gets a device_code and a user_code. A DPoP
// proof (for this endpoint's URL) or dpop_jkt binds the request to a DPoP
// key as at bc-authorize (RFC 9449 §10): the tokens are minted at
// approval, before any poll, so the key must be known here.
func (s *Server) deviceAuthorization(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	form, err := parseForm(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	client, public, err := s.deviceClient(ctx, r, form, s.Issuer+PathDeviceAuthorization)
	if err != nil {
		writeError(w, err)
		return
	}
	noteClient(w, client.ID)
	// A client that must sign its authentication requests (CIBA Core §4,
	// FAPI-CIBA) cannot send this unsigned form (RFC 8628 §3.1 has no
	// signed one): the configuration refuses such a client the device
	// grant (internal/clientmeta), and this keeps the rule should one get
	// here all the same.
	if !public && s.Clients.RequiresSignedRequest(client) {
		writeError(w, ciba.Errorf(ciba.CodeInvalidRequest, "client %q must send signed authentication requests (CIBA §7.1.1), and a device authorization request cannot be signed (RFC 8628 §3.1); use another client for the device grant", client.ID))
		return
	}
	// Each device authorization stores a pending request, as a
	// bc-authorize does: both count in the client's one bucket, of which
	// one address may use only its share for a public client.
	if !s.admitDeviceAuthorization(w, r, client, public) {
		return
	}
	cert, err := s.certBinding(r, client)
	if err != nil {
		writeError(w, err)
		return
	}
	jkt, err := s.requestDPoPKey(w, r, client, form.Get("dpop_jkt"), PathDeviceAuthorization)
	if err != nil {
		writeError(w, err)
		return
	}
	// authorization_details (RFC 9396 §3), resource (RFC 8707) and
	// audience are taken as at bc-authorize and checked by the same code;
	// the validation hook judges details as there, told the same origin.
	ctx = ciba.WithOrigin(ctx, ciba.Origin{Addr: s.Limits.ClientIP(r), RequestID: RequestID(ctx)})
	resp, err := s.Device.Grant.AuthorizeParams(ctx, client, ciba.DeviceParams{
		Scope:                form.Get("scope"),
		AuthorizationDetails: form.Get("authorization_details"),
		Resources:            form["resource"],
		Audience:             form.Get("audience"),
	}, ciba.Binding{Cert: cert, JKT: jkt, PublicClient: public})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// deviceClient authenticates the client of a device grant request: a
// public client by its client_id alone when it sends no credentials
// (RFC 8628 §3.1, RFC 6749 §2.3), anyone else as everywhere. public
// reports which.
func (s *Server) deviceClient(ctx context.Context, r *http.Request, form url.Values, endpoint string) (c *ciba.Client, public bool, err error) {
	if s.Device.Public != nil && r.Header.Get("Authorization") == "" &&
		!form.Has("client_secret") && !form.Has("client_assertion") && !form.Has("client_assertion_type") {
		if c, ok := s.Device.Public(form.Get("client_id")); ok {
			return c, true, nil
		}
	}
	c, err = s.Clients.Authenticate(ctx, r, form, endpoint)
	return c, false, err
}

// show is GET /device: the code entry form, prefilled from
// verification_uri_complete's user_code (RFC 8628 §3.3.1: the user still
// confirms it, so a link alone approves nothing).
func (d *Device) show(w http.ResponseWriter, r *http.Request) {
	cookie := d.cookie(w, r)
	code := r.URL.Query().Get("user_code")
	if len(code) > 64 {
		code = ""
	}
	d.Approval.render(w, http.StatusOK, d.entry(cookie, code, ""))
}

func (d *Device) entry(cookie, code, problem string) page {
	return page{Title: "Connect a device", Entry: true, DeviceCode: code, CSRF: d.Approval.csrf(cookie, "device"), Error: problem}
}

// form is the approval form of device request req.
func (d *Device) form(req *ciba.AuthRequest, client *ciba.Client, cookie, code, problem string) page {
	p := d.Approval.form(req, client, cookie, problem)
	p.Title = "Approve device sign-in"
	p.CSRF = d.Approval.csrf(cookie, "device\x00"+req.ApprovalID)
	p.Binding = code // shown for the user to compare with the device's screen
	p.Device, p.DeviceCode = true, code
	return d.Approval.deviceOffer(req, p)
}

// cookie returns the browser's CSRF cookie for the page, setting a new one
// when it has none.
func (d *Device) cookie(w http.ResponseWriter, r *http.Request) string {
	if c := deviceCookieValue(r); c != "" {
		return c
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name: deviceCookie, Value: v, Path: PathDevice, HttpOnly: true,
		Secure: d.Approval.Secure, SameSite: http.SameSiteStrictMode, MaxAge: 3600,
	})
	return v
}

func deviceCookieValue(r *http.Request) string {
	c, err := r.Cookie(deviceCookie)
	if err != nil || len(c.Value) < 32 || len(c.Value) > 64 {
		return ""
	}
	return c.Value
}

// answer is POST /device: with action "continue" it looks the code up and
// shows the approval form; with "approve" or "deny" it decides. Every step
// looks the code up again, under the guessing limits.
func (d *Device) answer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a := d.Approval
	// Room for a passkey assertion (a few kB of JSON).
	r.Body = http.MaxBytesReader(w, r.Body, 32<<10)
	if err := r.ParseForm(); err != nil {
		a.render(w, http.StatusBadRequest, page{Title: "Bad request", Message: "The form could not be read."})
		return
	}
	cookie := deviceCookieValue(r)
	action := r.PostFormValue("action")
	typed := r.PostFormValue("user_code")
	if len(typed) > 64 {
		typed = typed[:64]
	}
	if cookie == "" {
		a.render(w, http.StatusForbidden, deviceFormExpired)
		return
	}
	if action == actionAddPasskey {
		// The "Approved" page's offer to add a passkey (selfenrol.go):
		// it names no user code, the offer's enrolment names the user.
		a.selfEnrolAnswer(w, r, deviceSelfBinding(cookie), PathDevice)
		return
	}
	if action == "continue" && !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(a.csrf(cookie, "device"))) {
		a.render(w, http.StatusForbidden, deviceFormExpired)
		return
	}
	// Reserved before the look-up, so that codes tried in parallel are all
	// counted; the address's bucket first, so that an address that used
	// up its own takes nothing from everyone's. Kept for a wrong code.
	ok, wait, settle, err := limit.ReserveAll(ctx, d.Now,
		limit.Bucket{Limit: d.perIP, Key: d.clientIP(r)}, limit.Bucket{Limit: d.global, Key: ""})
	if err != nil {
		a.Logger.WarnContext(ctx, "device page: user code limit unavailable; attempt allowed", "error", err)
	}
	if !ok {
		retryAfter(w, wait)
		a.Logger.Warn("device page: too many wrong user codes")
		a.render(w, http.StatusTooManyRequests, page{Title: "Too many attempts", Message: "Too many wrong codes were entered. Wait a minute, then try again."})
		return
	}
	req, client, err := d.Grant.ForUserCode(ctx, typed)
	wrong := errors.Is(err, ciba.ErrNotFound)
	settle(wrong)
	if wrong {
		a.Logger.Info("device page: wrong user code")
		p := d.entry(cookie, "", "This code is not valid. Check the code shown on your device and try again.")
		d.Approval.render(w, http.StatusNotFound, p)
		return
	}
	if err != nil {
		d.closed(w, err)
		return
	}
	code := ciba.FormatUserCode(ciba.NormalizeUserCode(typed))
	if action == "continue" {
		a.render(w, http.StatusOK, d.form(req, client, cookie, code, ""))
		return
	}
	if !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(a.csrf(cookie, "device\x00"+req.ApprovalID))) {
		a.render(w, http.StatusForbidden, deviceFormExpired)
		return
	}
	switch action {
	case "deny":
		if err := d.Grant.Deny(ctx, req, "the user denied the request"); err != nil {
			d.closed(w, err)
			return
		}
		a.render(w, http.StatusOK, page{Title: "Denied", Message: "You denied the sign-in of " + client.Name + ". You can close this page."})
	case "approve":
		// The digest of the authorization_details the form showed: the
		// approval records it, and is refused unless it is the request's.
		shown := r.PostFormValue("details_digest")
		if shown != req.DetailsDigest() {
			d.detailsChanged(w, req)
			return
		}
		if a.Federation != nil {
			a.startLogin(w, r, req, shown)
			return
		}
		if r.PostFormValue("assertion") != "" && a.Passkeys != nil && a.Passkeys.Lookup != nil {
			user, cred, ok, wait := a.deviceAssertion(r, req)
			if wait > 0 {
				a.lockedOut(w, wait)
				return
			}
			if !ok {
				a.render(w, http.StatusUnauthorized, d.form(req, client, cookie, code, "The passkey did not confirm this request. Try again."))
				return
			}
			if err := d.Grant.ApproveAsShown(ctx, req, user, shown, a.Passkeys.record(cred)); err != nil {
				d.closed(w, err)
				return
			}
			a.render(w, http.StatusOK, page{Title: "Approved", Message: "You approved the sign-in of " + client.Name + " with your passkey. Return to your device: it continues by itself."})
			return
		}
		username := r.PostFormValue("username")
		sub, ok, wait, err := a.checkPassword(r, username, r.PostFormValue("password"))
		if wait > 0 {
			a.lockedOut(w, wait)
			return
		}
		if err != nil {
			a.busy(w, r, err)
			return
		}
		if !ok {
			a.Logger.Info("device page: wrong username or password", slog.String("client_id", req.ClientID))
			a.render(w, http.StatusUnauthorized, d.form(req, client, cookie, code, "The username or password is not right."))
			return
		}
		if a.Passkeys != nil && a.Passkeys.Method(sub) == MethodPasskey {
			a.Logger.Info("device page: a password for a passkey-only user", slog.String("client_id", req.ClientID), slog.String("subject", sub))
			a.render(w, http.StatusUnauthorized, d.form(req, client, cookie, code, "This account approves with a passkey, not a password."))
			return
		}
		if err := d.Grant.ApproveAsShown(ctx, req, ciba.User{Subject: sub, Display: username}, shown, nil); err != nil {
			d.closed(w, err)
			return
		}
		self := a.selfEnrolOffer(ctx, sub, username, deviceSelfBinding(cookie), PathDevice)
		if self != nil {
			a.keepCookie(w, deviceCookie, cookie, PathDevice)
		}
		a.render(w, http.StatusOK, page{Title: "Approved", Message: "You approved the sign-in of " + client.Name + ". Return to your device: it continues by itself.",
			SelfEnrol: self})
	default:
		a.render(w, http.StatusBadRequest, page{Title: "Bad request", Message: "Choose Approve or Deny."})
	}
}

// detailsChanged answers an approval whose form carried the digest of
// other authorization_details than the request's: nothing is approved.
func (d *Device) detailsChanged(w http.ResponseWriter, req *ciba.AuthRequest) {
	d.Approval.Logger.Warn("device page: the approved authorization_details are not the request's; not approved", slog.String("client_id", req.ClientID))
	d.Approval.render(w, http.StatusConflict, page{Title: "Not approved",
		Message: "The details you approved are not those of this request, so nothing was approved. Enter the code again to see the request."})
}

// closed answers a code whose request can no longer be answered.
func (d *Device) closed(w http.ResponseWriter, err error) { d.Approval.closedAs(w, true, err) }

// closedAs answers a request that can no longer be answered: a device
// request's (device) in terms of its code, a CIBA request's in terms of
// its approval link (closed).
func (a *Approval) closedAs(w http.ResponseWriter, device bool, err error) {
	if !device {
		a.closed(w, err)
		return
	}
	var pe *ciba.Error
	switch {
	case errors.Is(err, ciba.ErrNotFound):
		a.render(w, http.StatusNotFound, page{Title: "Code not valid", Message: "This code is not valid or has expired. Start again on your device to get a new one."})
	case errors.Is(err, ciba.ErrDetailsChanged):
		a.render(w, http.StatusConflict, page{Title: "Not approved",
			Message: "The details you approved are not those of this request, so nothing was approved. Enter the code again to see the request."})
	case errors.As(err, &pe) && pe.Code == ciba.CodeExpiredToken:
		a.render(w, http.StatusGone, page{Title: "Expired", Message: "This code has expired. Start again on your device to get a new one."})
	case errors.As(err, &pe) && (pe.Code == ciba.CodeInvalidRequest || pe.Code == ciba.CodeAccessDenied):
		a.render(w, http.StatusConflict, page{Title: "Already used", Message: "This code was already used. Start again on your device to get a new one."})
	default:
		a.closed(w, err)
	}
}

// clientIP is the key of the per-address limit: the address, or its /64
// for IPv6, where one host commonly holds a whole /64.
func (d *Device) clientIP(r *http.Request) string {
	raw := ""
	if d.ClientIP != nil {
		raw = d.ClientIP(r)
	} else if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		raw = host
	}
	addr, err := netip.ParseAddr(raw)
	if err != nil {
		return raw
	}
	return addrKey(addr.Unmap())
}
