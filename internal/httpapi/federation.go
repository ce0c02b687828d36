package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// PathApproveCallback is where the upstream identity provider sends the
// browser back after the user signed in (the redirect_uri registered there).
const PathApproveCallback = "/approve/callback"

// ErrWrongUser is wrapped by Federation.Complete when the user who signed
// in at the provider is not the user the client named.
var ErrWrongUser = errors.New("the user who signed in is not the user the request names")

// Federation is the sign-in at an upstream identity provider that approves
// a request (the oidc upstream): authorization code flow with PKCE from the
// browser on the authentication device.
type Federation interface {
	// LoginURL returns the provider's authorization URL for request r,
	// carrying l's state, nonce and the PKCE challenge of its verifier.
	LoginURL(ctx context.Context, r *ciba.AuthRequest, l Login) (string, error)
	// Complete exchanges code for request r's tokens with the client's
	// credentials at the provider, verifies the ID token (and l's nonce)
	// and checks that the user who signed in is the one r names: an error
	// wrapping ErrWrongUser when not, ciba.ErrUnavailable when the
	// provider cannot be reached. It returns the token response to keep
	// for the client and the time the user authenticated.
	Complete(ctx context.Context, r *ciba.AuthRequest, code string, l Login) (Completed, error)
	// Origin is the scheme://host of the provider's authorization
	// endpoint ("" while unknown), allowed as a form target on the page.
	Origin() string
	// Issuer is the provider's issuer identifier. When the authorization
	// response carries "iss" (RFC 9207), it must be this one, so that an
	// answer from another provider (a mix-up attack) is refused.
	Issuer() string
}

// Completed is a sign-in the provider completed and cibaproxy verified.
type Completed struct {
	// Tokens is the token response to keep for the client.
	Tokens []byte
	// AuthTime is when the user authenticated.
	AuthTime time.Time
	// Subject is the verified subject of the user who signed in; it becomes
	// the subject of a request that named no user (the device flow).
	Subject string
}

// Login is a sign-in in progress at the provider: random values bound to
// one request and one browser.
type Login struct {
	// State ties the provider's answer to this sign-in (RFC 6749 §10.12).
	State string `json:"-"`
	// Nonce ties the ID token to it (OIDC Core §3.1.2.1).
	Nonce string `json:"nonce"`
	// Verifier is the PKCE code_verifier (RFC 7636).
	Verifier string `json:"verifier"`
	// ApprovalID is the request's approval id.
	ApprovalID string `json:"approval_id"`
	// Browser is the SHA-256 of the login cookie of the browser that
	// started the sign-in, so a callback in another browser is refused.
	Browser []byte `json:"browser"`
	// DetailsDigest is the digest of the authorization_details the page
	// showed and the user approved before signing in ("" for none),
	// recorded with the decision when the sign-in completes
	// (ciba.Service.ApproveByShown). Nil in a sign-in kept by a version
	// that did not record it: the decision then records none.
	DetailsDigest *string `json:"details_digest,omitempty"`
	// Device is set for a device request's sign-in (started on the
	// device page, PathDevice): its user entered a code and followed no
	// link, which the callback's pages say (startAgain). False in a
	// sign-in kept by a version that did not record it.
	Device bool `json:"device,omitempty"`
}

// startAgain says how a user starts a failed or refused sign-in again,
// without a final full stop: a CIBA request's user opens the approval
// link (from their message or notification) again; a device request's
// user followed no link, but entered the code their device shows, and
// enters it again.
func startAgain(device bool) string {
	if device {
		return "Enter the code shown on your device again"
	}
	return "Open the approval link again"
}

// startAgainEither is startAgain for a callback whose sign-in is not
// known (no valid state), so neither is its kind of request.
const startAgainEither = "Open the approval link again, or enter the code shown on your device again."

// Records is the part of the store that keeps sign-ins in progress.
type Records interface {
	PutRecord(ctx context.Context, kind, key string, value []byte, ttl time.Duration) error
	GetRecord(ctx context.Context, kind, key string) ([]byte, error)
	TakeRecord(ctx context.Context, kind, key string) ([]byte, error)
}

const (
	loginCookie = "cibaproxy_login"
	loginKind   = "login"
)

// random returns n random bytes, base64url-encoded.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand does not fail on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// startLogin keeps a new sign-in for req and sends the browser to the
// provider. shown is the digest of the authorization_details the page
// showed (checked against the request's by the caller), kept with the
// sign-in and recorded with the decision.
func (a *Approval) startLogin(w http.ResponseWriter, r *http.Request, req *ciba.AuthRequest, shown string) {
	ctx := r.Context()
	browser := loginValue(r)
	if browser == "" {
		browser = random(32)
		// Lax, not Strict: the provider sends the browser back with a
		// cross-site top-level GET, which must carry the cookie.
		http.SetCookie(w, &http.Cookie{
			Name: loginCookie, Value: browser, Path: PathApprove, HttpOnly: true,
			Secure: a.Secure, SameSite: http.SameSiteLaxMode, MaxAge: 3600,
		})
	}
	sum := sha256.Sum256([]byte(browser))
	device := req.Kind == ciba.KindDevice
	l := Login{State: random(32), Nonce: random(32), Verifier: random(32), ApprovalID: req.ApprovalID, Browser: sum[:], DetailsDigest: &shown, Device: device}
	target, err := a.Federation.LoginURL(ctx, req, l)
	if err != nil {
		a.upstreamFailed(w, device, "start sign-in", err)
		return
	}
	rec, _ := json.Marshal(l)
	// The record needs to outlive the request only a little: the callback
	// checks the request's own expiry again.
	ttl := max(time.Until(req.ExpiresAt), 0) + time.Minute
	if err := a.Logins.PutRecord(ctx, loginKind, l.State, rec, ttl); err != nil {
		a.Logger.Error("approval page: keep sign-in", slog.Any("error", err))
		a.render(w, http.StatusServiceUnavailable, page{Title: "Try again", Message: "Something went wrong on our side. Try again in a moment."})
		return
	}
	a.Logger.Info("approval page: sign-in at the identity provider started", slog.String("client_id", req.ClientID))
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// loginCallback is where the provider sends the browser back: it checks
// the state and the browser, then exchanges the code and approves the
// request, or denies it when the provider says so or the wrong user signed
// in. A state is used once. Its pages tell a device request's user to
// enter the code again where a CIBA request's opens the link again.
func (a *Approval) loginCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 128 {
		a.render(w, http.StatusBadRequest, page{Title: "Sign-in not valid", Message: "This sign-in answer is not valid. " + startAgainEither})
		return
	}
	raw, err := a.Logins.GetRecord(ctx, loginKind, state)
	if errors.Is(err, ciba.ErrNotFound) {
		a.Logger.Info("approval page: callback with an unknown or used state")
		a.render(w, http.StatusBadRequest, page{Title: "Sign-in not valid", Message: "This sign-in answer is not valid or was already used. " + startAgainEither})
		return
	}
	if err != nil {
		a.Logger.Error("approval page: read sign-in", slog.Any("error", err))
		a.render(w, http.StatusServiceUnavailable, page{Title: "Try again", Message: "Something went wrong on our side. Try again in a moment."})
		return
	}
	var l Login
	if err := json.Unmarshal(raw, &l); err != nil {
		a.Logger.Error("approval page: decode sign-in", slog.Any("error", err))
		a.render(w, http.StatusInternalServerError, page{Title: "Try again", Message: "Something went wrong on our side. " + startAgainEither})
		return
	}
	l.State = state
	sum := sha256.Sum256([]byte(loginValue(r)))
	if subtle.ConstantTimeCompare(sum[:], l.Browser) != 1 {
		a.Logger.Info("approval page: callback from another browser")
		a.render(w, http.StatusForbidden, page{Title: "Sign-in not valid", Message: "This sign-in was started in another browser. " + startAgain(l.Device) + " in this one."})
		return
	}
	// One use: whoever takes the record completes the sign-in.
	if _, err := a.Logins.TakeRecord(ctx, loginKind, state); err != nil {
		a.render(w, http.StatusBadRequest, page{Title: "Sign-in not valid", Message: "This sign-in answer was already used. " + startAgain(l.Device) + "."})
		return
	}
	req, client, err := a.Service.ForApproval(ctx, l.ApprovalID)
	if err != nil {
		a.closedAs(w, l.Device, err)
		return
	}
	// The request itself says what it is (a sign-in kept by an older
	// version does not).
	device := req.Kind == ciba.KindDevice
	if e := q.Get("error"); e != "" {
		if e == "access_denied" {
			a.deny(w, r, req, "the user declined at the identity provider", "You declined the sign-in. You can close this page.")
			return
		}
		a.Logger.Warn("approval page: the identity provider answered an error", slog.String("error", truncate(e, 64)), slog.String("client_id", req.ClientID))
		a.render(w, http.StatusBadGateway, page{Title: "Sign-in failed", Message: "Your identity provider could not sign you in. " + startAgain(device) + " to retry."})
		return
	}
	if q.Has("iss") && q.Get("iss") != a.Federation.Issuer() {
		a.Logger.Warn("approval page: the authorization response names another issuer", slog.String("client_id", req.ClientID))
		a.render(w, http.StatusBadRequest, page{Title: "Sign-in not valid", Message: "This answer did not come from your identity provider. " + startAgain(device) + "."})
		return
	}
	code := q.Get("code")
	if code == "" {
		a.render(w, http.StatusBadRequest, page{Title: "Sign-in not valid", Message: "The identity provider sent no authorization code. " + startAgain(device) + "."})
		return
	}
	done, err := a.Federation.Complete(ctx, req, code, l)
	switch {
	case errors.Is(err, ErrWrongUser):
		a.Logger.Warn("approval page: the wrong user signed in; request denied", slog.String("client_id", req.ClientID), slog.String("subject", req.Subject))
		a.deny(w, r, req, "the user who signed in at the identity provider is not the user the client named",
			"You signed in as someone other than "+req.LoginHint+", so the sign-in to "+client.Name+" was denied.")
		return
	case err != nil:
		a.upstreamFailed(w, device, "complete sign-in", err)
		return
	}
	if l.DetailsDigest != nil {
		err = a.Service.ApproveByShown(ctx, req.ID, done.AuthTime, done.Tokens, done.Subject, *l.DetailsDigest)
	} else {
		err = a.Service.ApproveBy(ctx, req.ID, done.AuthTime, done.Tokens, done.Subject)
	}
	if errors.Is(err, ciba.ErrDetailsChanged) {
		a.detailsChanged(w, req)
		return
	}
	if err != nil {
		a.closedAs(w, device, err)
		return
	}
	if device {
		a.render(w, http.StatusOK, page{Title: "Approved", Message: "You approved the sign-in of " + client.Name + ". Return to your device: it continues by itself."})
		return
	}
	a.render(w, http.StatusOK, page{Title: "Approved", Message: "You approved the sign-in to " + client.Name + ". You can close this page."})
}

// deny denies req and tells the user why.
func (a *Approval) deny(w http.ResponseWriter, r *http.Request, req *ciba.AuthRequest, reason, message string) {
	if err := a.Service.Deny(r.Context(), req.ID, reason); err != nil {
		a.closedAs(w, req.Kind == ciba.KindDevice, err)
		return
	}
	a.render(w, http.StatusOK, page{Title: "Denied", Message: message})
}

// upstreamFailed answers a failure to talk to the provider; the request
// stays pending, so the user can try again (a device request's user by
// entering the code again).
func (a *Approval) upstreamFailed(w http.ResponseWriter, device bool, op string, err error) {
	if errors.Is(err, ciba.ErrUnavailable) {
		a.Logger.Error("approval page: identity provider unavailable", slog.String("op", op), slog.Any("error", err))
		a.render(w, http.StatusServiceUnavailable, page{Title: "Try again", Message: "Your identity provider cannot be reached right now. " + startAgain(device) + " in a moment."})
		return
	}
	a.Logger.Error("approval page: identity provider failed", slog.String("op", op), slog.Any("error", err))
	a.render(w, http.StatusBadGateway, page{Title: "Sign-in failed", Message: "Your identity provider could not complete the sign-in. " + startAgain(device) + " to retry."})
}

// loginValue returns the browser's login cookie, or "".
func loginValue(r *http.Request) string {
	c, err := r.Cookie(loginCookie)
	if err != nil || len(c.Value) < 32 || len(c.Value) > 64 {
		return ""
	}
	return c.Value
}
