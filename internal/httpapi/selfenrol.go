package httpapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/passkey"
)

// Self-service passkey enrolment (approval.passkeys.self_enrollment): a
// user who has just approved a request with their password is offered, on
// the "Approved" page, to add a passkey for next time. The offer is an
// enrolment of the same kind as a link of `cibaproxy users enroll` (single
// use, expiring, kept by its hash on every backend, taken atomically) but
// short-lived (SelfEnrolTTL) and bound (passkey.Enrolment.Binding) to the
// page that offered it: the approval (or the device page) and the browser's
// CSRF cookie there. Its token travels in the page's form only, never in a
// URL, and is issued only when a password approval has just succeeded —
// never on a GET, a passkey approval or a denial, and only for a user whose
// approval method is "either".

// SelfEnrolTTL is how long the "Approved" page's offer to add a passkey
// lasts.
const SelfEnrolTTL = 10 * time.Minute

// pathSelfEnrol follows an approval page's path (PathApprove + id) to make
// the path its "Approved" page posts the new passkey to; under PathApprove,
// so the page's CSRF cookie comes along and failures count against
// Limits.ApprovalFailures like the page's.
const pathSelfEnrol = "/passkey"

// actionAddPasskey is the form's action value: on the device page, which
// answers every form at PathDevice, it says the form is the offer's.
const actionAddPasskey = "add-passkey"

// selfEnrolOffer is what the "Approved" page needs to offer a passkey.
type selfEnrolOffer struct {
	// Action is the path the form posts to.
	Action string
	// Token is the enrolment's one-time token (a hidden field).
	Token string
	// Options are the WebAuthn creation options (JSON).
	Options string
}

// selfBinding is the digest a self-service enrolment is bound to: the page
// (scope: "approve" and the approval id, or "device") and the browser's
// CSRF cookie on it. The cookie is a secret of the browser; the store
// keeps only this digest.
func selfBinding(cookie string, scope ...string) string {
	sum := sha256.Sum256([]byte("cibaproxy passkey self-enrolment\x00" + strings.Join(scope, "\x00") + "\x00" + cookie))
	return hex.EncodeToString(sum[:])
}

// approvalSelfBinding is selfBinding of the approval page of approval id.
func approvalSelfBinding(cookie, id string) string { return selfBinding(cookie, "approve", id) }

// deviceSelfBinding is selfBinding of the device page.
func deviceSelfBinding(cookie string) string { return selfBinding(cookie, "device") }

// selfEnrolOffer issues, right after subject (username) approved a request
// with their password, the offer to add a passkey, bound to binding and
// posted to action; nil when none is due (self-service enrolment off, a
// method other than "either", the most passkeys already) or it cannot be
// made (logged; the approval stands).
func (a *Approval) selfEnrolOffer(ctx context.Context, subject, username, binding, action string) *selfEnrolOffer {
	pk := a.Passkeys
	if pk == nil || !pk.SelfEnroll || subject == "" || pk.Method(subject) != MethodEither {
		return nil
	}
	have, err := pk.Credentials.List(ctx, subject)
	if err != nil {
		a.Logger.WarnContext(ctx, "passkey self-enrolment not offered", slog.String("subject", subject), slog.Any("error", err))
		return nil
	}
	if len(have) >= passkey.MaxCredentials {
		return nil
	}
	token, _, err := pk.Enrolments.IssueBound(ctx, subject, username, binding, SelfEnrolTTL)
	if err != nil {
		a.Logger.WarnContext(ctx, "passkey self-enrolment not offered", slog.String("subject", subject), slog.Any("error", err))
		return nil
	}
	opts, err := pk.RP.EnrolOptions(subject, username, token, have)
	if err != nil {
		a.Logger.WarnContext(ctx, "passkey self-enrolment not offered", slog.String("subject", subject), slog.Any("error", err))
		return nil
	}
	return &selfEnrolOffer{Action: action, Token: token, Options: string(opts)}
}

// keepCookie sets the page's CSRF cookie (name, value, path) again with
// its full lifetime when an offer is made: the offer is bound to it, and
// a cookie set up to an hour earlier (by an earlier page) would otherwise
// expire while the offer still runs, which would then be refused as
// another browser's.
func (a *Approval) keepCookie(w http.ResponseWriter, name, value, path string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: path, HttpOnly: true,
		Secure: a.Secure, SameSite: http.SameSiteStrictMode, MaxAge: 3600,
	})
}

// selfEnrolApproval is POST PathApprove{id}/passkey: the new passkey from
// the approval page's "Approved" page.
func (a *Approval) selfEnrolApproval(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		a.render(w, http.StatusBadRequest, page{Title: "Bad request", Message: "The form could not be read."})
		return
	}
	id := r.PathValue("id")
	cookie := csrfValue(r)
	if cookie == "" {
		a.selfEnrolNotHere(w)
		return
	}
	a.selfEnrolAnswer(w, r, approvalSelfBinding(cookie, id), PathApprove+id+pathSelfEnrol)
}

// selfEnrolAnswer verifies the new passkey an offer's form carries (its
// form parsed) against the offer's enrolment, which must be bound to
// binding, and keeps it. The passkey is verified before the enrolment is
// used up, so a failed try leaves the offer for the next; of concurrent
// answers exactly one takes it (the store's TakeRecord), and a failed
// write of the passkey puts it back (Enrolments.Redeem). action is the
// form's path, for showing the offer again.
func (a *Approval) selfEnrolAnswer(w http.ResponseWriter, r *http.Request, binding, action string) {
	ctx := r.Context()
	pk := a.Passkeys
	if pk == nil || !pk.SelfEnroll {
		a.render(w, http.StatusForbidden, page{Title: "Not available",
			Message: "Adding a passkey yourself is not enabled here. Ask your administrator for a passkey enrolment link."})
		return
	}
	token := r.PostFormValue("enrolment")
	if token == "" {
		a.selfEnrolGone(w)
		return
	}
	en, err := pk.Enrolments.Peek(ctx, token)
	if err != nil {
		a.selfEnrolClosed(w, err)
		return
	}
	if en.Binding == "" || !hmac.Equal([]byte(en.Binding), []byte(binding)) {
		a.Logger.InfoContext(ctx, "passkey self-enrolment refused: not posted from the page and browser it was offered to", slog.String("subject", en.Subject))
		a.selfEnrolNotHere(w)
		return
	}
	if pk.Method(en.Subject) != MethodEither {
		a.render(w, http.StatusForbidden, page{Title: "Not available", Message: "This account cannot add a passkey here. Ask your administrator."})
		return
	}
	have, err := pk.Credentials.List(ctx, en.Subject)
	if err != nil {
		a.selfEnrolClosed(w, err)
		return
	}
	c, err := pk.RP.FinishEnrol(en.Subject, en.Username, token, have, []byte(r.PostFormValue("credential")))
	if err != nil {
		a.Logger.InfoContext(ctx, "passkey self-enrolment refused", slog.String("subject", en.Subject), slog.Any("error", err))
		p := page{Title: "Add a passkey", Message: "Add a passkey for " + en.Username + ", to approve the next sign-ins with it.",
			Error: "The passkey could not be checked (it must be unlocked with your fingerprint, face or PIN). Try again."}
		if opts, err := pk.RP.EnrolOptions(en.Subject, en.Username, token, have); err == nil {
			p.SelfEnrol = &selfEnrolOffer{Action: action, Token: token, Options: string(opts)}
		}
		a.render(w, http.StatusBadRequest, p)
		return
	}
	// Redeem takes the offer, keeps the passkey and puts the offer back if
	// that write fails: exactly one of concurrent answers takes it, and a
	// store error leaves it for a retry.
	if _, err := pk.Enrolments.Redeem(ctx, token, func(passkey.Enrolment) error {
		return pk.Credentials.Add(ctx, en.Subject, passkey.Credential{WebAuthn: *c, Created: time.Now().UTC()})
	}); err != nil {
		a.selfEnrolClosed(w, err)
		return
	}
	a.Logger.InfoContext(ctx, "passkey enrolled", slog.String("subject", en.Subject), slog.String("credential_id", (&passkey.Credential{WebAuthn: *c}).ID()),
		slog.Bool("self_service", true))
	a.render(w, http.StatusOK, page{Title: "Passkey added", Message: "Your passkey is ready: use it to approve the next sign-ins as " + en.Username + ". You can close this page."})
}

// selfEnrolNotHere answers an offer posted from another page or browser
// than the one it was made to (or another user's offer).
func (a *Approval) selfEnrolNotHere(w http.ResponseWriter) {
	a.render(w, http.StatusForbidden, page{Title: "Not your offer",
		Message: "This offer to add a passkey belongs to another sign-in or another browser. Approve a sign-in with your password on this device to get one."})
}

// selfEnrolGone answers an offer that is unknown, expired or used.
func (a *Approval) selfEnrolGone(w http.ResponseWriter) {
	a.render(w, http.StatusGone, page{Title: "Offer not valid",
		Message: "This offer to add a passkey has expired or was already used. Approve a sign-in with your password again to get a new one."})
}

// selfEnrolClosed answers an offer that cannot be used.
func (a *Approval) selfEnrolClosed(w http.ResponseWriter, err error) {
	if errors.Is(err, passkey.ErrNotFound) {
		a.selfEnrolGone(w)
		return
	}
	a.enrolClosed(w, err)
}
