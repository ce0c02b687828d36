package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/passkey"
)

// PathEnroll is the passkey enrolment page; the one-time token of a link
// from `cibaproxy users enroll` follows it.
const PathEnroll = passkey.EnrolPath

// Approval methods of a user (Passkeys.Method).
const (
	MethodEither   = "either"
	MethodPasskey  = "passkey"
	MethodPassword = "password"
)

// Passkeys lets the users of the local upstream enrol passkeys through
// one-time links and approve requests with them on the approval page.
// The assertion's challenge is passkey.Challenge of the request, so an
// assertion made for one request approves no other. Wrong assertions count
// against the same lockout as wrong passwords (Approval.underLockout).
type Passkeys struct {
	RP          *passkey.RP
	Credentials *passkey.Credentials
	Enrolments  *passkey.Enrolments
	// Method returns the approval method of the user with the given
	// subject: MethodEither, MethodPasskey or MethodPassword.
	Method func(subject string) string
	// Signer signs the approval record (cibaproxy's signing keys);
	// Issuer is its iss.
	Signer passkey.Signer
	Issuer string
	// Lookup returns the user whose user handle (passkey.UserHandle) a
	// discoverable assertion returned, for the device page, where the
	// user is not named before they approve; nil: the device page offers
	// no passkey.
	Lookup func(handle []byte) (subject, username string, ok bool)
	// SelfEnroll lets a user add a passkey right after approving with
	// their password (approval.passkeys.self_enrollment, selfenrol.go).
	SelfEnroll bool
}

// errNoAccount is a user handle that names no user who may use a passkey.
var errNoAccount = errors.New("no user with this passkey may approve with one")

// deviceOffer sets the passkey parts of the device page's approval form
// p for device request req: a discoverable assertion, since the user is
// known only once they answer. The password stays offered; which one a
// user may use is checked when they answer.
func (a *Approval) deviceOffer(req *ciba.AuthRequest, p page) page {
	pk := a.Passkeys
	if pk == nil || pk.Lookup == nil {
		return p
	}
	opts, err := pk.RP.DiscoverOptions(passkey.Challenge(req))
	if err != nil {
		a.Logger.Warn("device page: passkey options", slog.Any("error", err))
		return p
	}
	p.Passkey, p.PasskeyOptions = true, string(opts)
	return p
}

// deviceAssertion checks the discoverable assertion the device form
// carries for request req, under the lockout of the username its user
// handle names, and returns that user. ok false with wait 0 is a refusal.
func (a *Approval) deviceAssertion(r *http.Request, req *ciba.AuthRequest) (user ciba.User, cred []byte, ok bool, wait time.Duration) {
	ctx := r.Context()
	pk := a.Passkeys
	body := []byte(r.PostFormValue("assertion"))
	// The lockout's key: the username the user handle names, or the
	// handle itself, so that guesses at unknown handles are limited too.
	key := "passkey handle " + passkeyHandle(body)
	if sub, name, found := pk.Lookup(userHandleOf(body)); found && pk.Method(sub) != MethodPassword {
		key = name
	}
	ok, wait = a.underLockout(r, key, func() bool {
		acct, c, err := pk.RP.FinishDiscover(func(handle []byte) (passkey.Account, error) {
			sub, name, found := pk.Lookup(handle)
			if !found || pk.Method(sub) == MethodPassword {
				return passkey.Account{}, errNoAccount
			}
			creds, err := pk.Credentials.List(ctx, sub)
			if err != nil {
				return passkey.Account{}, err
			}
			return passkey.Account{Subject: sub, Name: name, Creds: creds}, nil
		}, passkey.Challenge(req), body)
		if err != nil {
			a.Logger.InfoContext(ctx, "device page: passkey assertion refused", slog.String("client_id", req.ClientID), slog.Any("error", err))
			return false
		}
		if err := pk.Credentials.Used(ctx, acct.Subject, c, time.Now()); err != nil {
			a.Logger.InfoContext(ctx, "device page: passkey not usable", slog.String("subject", acct.Subject), slog.Any("error", err))
			return false
		}
		user, cred = ciba.User{Subject: acct.Subject, Display: acct.Name}, c.ID
		return true
	})
	return user, cred, ok, wait
}

// record returns the signer of the approval record of a request approved
// with credential cred.
func (pk *Passkeys) record(cred []byte) func(r *ciba.AuthRequest, at time.Time) (string, error) {
	return func(r *ciba.AuthRequest, at time.Time) (string, error) {
		return pk.Signer.Sign(passkey.NewRecord(pk.Issuer, r, cred, at), passkey.RecordType)
	}
}

// offer is what the approval page offers a user: a passkey (with the
// request options), a password, or neither (passkey required, none
// enrolled).
type offer struct {
	passkey, password bool
	options           string
	creds             []passkey.Credential
}

// offerFor decides what the page offers for request req. A store failure
// is an error: the page must not fall back to the password silently.
func (a *Approval) offerFor(ctx context.Context, req *ciba.AuthRequest) (offer, error) {
	pk := a.Passkeys
	if pk == nil {
		return offer{password: true}, nil
	}
	method := pk.Method(req.Subject)
	if method == MethodPassword {
		return offer{password: true}, nil
	}
	creds, err := pk.Credentials.List(ctx, req.Subject)
	if err != nil {
		return offer{}, err
	}
	if len(creds) == 0 {
		return offer{password: method == MethodEither}, nil
	}
	opts, err := pk.RP.AssertOptions(req.Subject, req.LoginHint, creds, passkey.Challenge(req))
	if err != nil {
		return offer{}, err
	}
	return offer{passkey: true, password: method == MethodEither, options: string(opts), creds: creds}, nil
}

// apply sets the passkey parts of the approval form p.
func (o offer) apply(p page) page {
	p.Passkey, p.PasskeyOptions, p.NoPassword = o.passkey, o.options, !o.password
	if !o.passkey && !o.password {
		p.Note = "This account approves with a passkey only, and has none yet. Ask your administrator for a passkey enrolment link."
	}
	return p
}

// approveWithPasskey checks the assertion the form carries for request
// req, under the lockout, and approves the request with a signed approval
// record. It answers the page itself.
func (a *Approval) approveWithPasskey(w http.ResponseWriter, r *http.Request, req *ciba.AuthRequest, client *ciba.Client, cookie string, o offer) {
	ctx := r.Context()
	pk := a.Passkeys
	var cred []byte
	ok, wait := a.underLockout(r, req.LoginHint, func() bool {
		c, err := pk.RP.FinishAssert(req.Subject, req.LoginHint, o.creds, passkey.Challenge(req), []byte(r.PostFormValue("assertion")))
		if err != nil {
			a.Logger.InfoContext(ctx, "approval page: passkey assertion refused", slog.String("client_id", req.ClientID),
				slog.String("subject", req.Subject), slog.Any("error", err))
			return false
		}
		now := time.Now()
		if err := pk.Credentials.Used(ctx, req.Subject, c, now); err != nil {
			a.Logger.InfoContext(ctx, "approval page: passkey not usable", slog.String("subject", req.Subject), slog.Any("error", err))
			return false
		}
		cred = c.ID
		return true
	})
	if wait > 0 {
		a.lockedOut(w, wait)
		return
	}
	if !ok {
		a.render(w, http.StatusUnauthorized, o.apply(a.form(req, client, cookie, "The passkey did not confirm this request. Try again.")))
		return
	}
	err := a.Service.ApproveWithRecord(ctx, req, r.PostFormValue("details_digest"), func(at time.Time) (string, error) {
		return pk.Signer.Sign(passkey.NewRecord(pk.Issuer, req, cred, at), passkey.RecordType)
	})
	if errors.Is(err, ciba.ErrDetailsChanged) {
		a.detailsChanged(w, req)
		return
	}
	if err != nil {
		a.closed(w, err)
		return
	}
	a.render(w, http.StatusOK, page{Title: "Approved", Message: "You approved the sign-in to " + client.Name + " with your passkey. You can close this page.",
		Push: a.Push.offer(ctx, req.Subject, a.Logger)})
}

// enrolShow is GET PathEnroll{token}: the page that creates a passkey.
func (a *Approval) enrolShow(w http.ResponseWriter, r *http.Request) {
	a.enrolPage(w, r, http.StatusOK, "")
}

// enrolPage renders the enrolment form of the link in r, or the page
// saying it is not valid.
func (a *Approval) enrolPage(w http.ResponseWriter, r *http.Request, status int, problem string) {
	pk := a.Passkeys
	token := r.PathValue("token")
	en, err := pk.peekLink(r.Context(), token)
	if err != nil {
		a.enrolClosed(w, err)
		return
	}
	have, err := pk.Credentials.List(r.Context(), en.Subject)
	if err != nil {
		a.enrolClosed(w, err)
		return
	}
	opts, err := pk.RP.EnrolOptions(en.Subject, en.Username, token, have)
	if err != nil {
		a.enrolClosed(w, err)
		return
	}
	a.render(w, status, page{Title: "Add a passkey", Enrol: true, User: en.Username, PasskeyOptions: string(opts),
		Expires: expiresAt(en.Expires, time.Now()), Error: problem})
}

// enrolAnswer is POST PathEnroll{token}: the browser's new credential.
// It is verified before the link is used up, so a failed try leaves the
// link for the next; the link is then taken (single use, atomically in the
// store) before the credential is kept, and put back if keeping it fails
// (Enrolments.Redeem), so a store error does not spend the link.
func (a *Approval) enrolAnswer(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	pk := a.Passkeys
	token := r.PathValue("token")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		a.render(w, http.StatusBadRequest, page{Title: "Bad request", Message: "The form could not be read."})
		return
	}
	en, err := pk.peekLink(ctx, token)
	if err != nil {
		a.enrolClosed(w, err)
		return
	}
	have, err := pk.Credentials.List(ctx, en.Subject)
	if err != nil {
		a.enrolClosed(w, err)
		return
	}
	c, err := pk.RP.FinishEnrol(en.Subject, en.Username, token, have, []byte(r.PostFormValue("credential")))
	if err != nil {
		a.Logger.InfoContext(ctx, "passkey enrolment refused", slog.String("subject", en.Subject), slog.Any("error", err))
		a.enrolPage(w, r, http.StatusBadRequest, "The passkey could not be checked (it must be unlocked with your fingerprint, face or PIN). Try again.")
		return
	}
	if _, err := pk.Enrolments.Redeem(ctx, token, func(passkey.Enrolment) error {
		return pk.Credentials.Add(ctx, en.Subject, passkey.Credential{WebAuthn: *c, Created: time.Now().UTC()})
	}); err != nil {
		a.enrolClosed(w, err)
		return
	}
	a.Logger.InfoContext(ctx, "passkey enrolled", slog.String("subject", en.Subject), slog.String("credential_id", (&passkey.Credential{WebAuthn: *c}).ID()))
	a.render(w, http.StatusOK, page{Title: "Passkey added", Message: "Your passkey is ready: use it to approve sign-ins as " + en.Username + ". You can close this page."})
}

// peekLink returns the enrolment of a link's token; ErrNotFound for a
// self-service enrolment's (bound: it is used on the page that offered it,
// never as a link).
func (pk *Passkeys) peekLink(ctx context.Context, token string) (passkey.Enrolment, error) {
	en, err := pk.Enrolments.Peek(ctx, token)
	if err == nil && en.Binding != "" {
		return passkey.Enrolment{}, passkey.ErrNotFound
	}
	return en, err
}

// enrolClosed answers an enrolment link that cannot be used.
func (a *Approval) enrolClosed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, passkey.ErrNotFound):
		a.render(w, http.StatusGone, page{Title: "Link not valid", Message: "This enrolment link is not valid: it has expired or was already used. Ask your administrator for a new one."})
	case errors.Is(err, passkey.ErrTooMany):
		a.render(w, http.StatusConflict, page{Title: "Too many passkeys", Message: "This account has the most passkeys allowed. Ask your administrator to remove one first."})
	default:
		a.Logger.Error("passkey enrolment page", slog.Any("error", err))
		a.render(w, http.StatusServiceUnavailable, page{Title: "Try again", Message: "Something went wrong on our side. Try again in a moment."})
	}
}

// userHandleOf returns the user handle an assertion's JSON carries (nil
// if none): read before the assertion is verified, only to pick the key
// of the lockout and the user to verify it for.
func userHandleOf(body []byte) []byte {
	var v struct {
		Response struct {
			UserHandle string `json:"userHandle"`
		} `json:"response"`
	}
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	h, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v.Response.UserHandle, "="))
	if err != nil {
		return nil
	}
	return h
}

// passkeyHandle is a short stand-in for an assertion's user handle, for
// the lockout key of a handle that names nobody.
func passkeyHandle(body []byte) string {
	return base64.RawURLEncoding.EncodeToString(userHandleOf(body))
}
