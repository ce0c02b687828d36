package ciba

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
)

// Decisions records the user's decision on a request: approval with
// tokens (sealed before they are stored), or denial, each a
// compare-and-set of the request's state, after which the dispatcher is
// asked to deliver the result; and the callback tokens (HMACs) that let the
// authentication device's service answer at POST /ciba/callback.
// Its dependencies: the store, the Sealer, the Minter (nil where tokens come
// from elsewhere), the client registry, the callback key and the
// dispatcher's schedule.
type Decisions struct {
	base
	sealer      Sealer
	minter      Minter
	clients     func(id string) (*Client, bool)
	callbackKey []byte
	sched       *scheduler
}

// Approve records the user's approval of request id with the given token
// response, which is sealed before it is stored. It fails with the request's
// state error when it is no longer pending.
func (d *Decisions) Approve(ctx context.Context, id string, authTime time.Time, tokens []byte) error {
	return d.ApproveBy(ctx, id, authTime, tokens, "")
}

// ApproveBy is Approve recording who approved: a request that named no
// user (the device flow) takes subject as its subject, in the same
// compare-and-set. A request that named its user keeps it (the caller
// checked that the two are the same user).
func (d *Decisions) ApproveBy(ctx context.Context, id string, authTime time.Time, tokens []byte, subject string) error {
	return d.approve(ctx, id, authTime, tokens, subject, nil, "")
}

// ApproveByShown is ApproveBy for tokens obtained elsewhere (a sign-in at
// a federated identity provider) after the user was shown the request's
// authorization_details of digest shown (authzdetails.DigestOf; "" for
// none): the digest is recorded with the decision
// (AuthRequest.ApprovedDetails) in the same compare-and-set, which
// refuses it (invalid_request wrapping ErrDetailsChanged, nothing
// changed) unless it is the digest of the stored request's details.
func (d *Decisions) ApproveByShown(ctx context.Context, id string, authTime time.Time, tokens []byte, subject, shown string) error {
	return d.approve(ctx, id, authTime, tokens, subject, &shown, "")
}

// approve is ApproveBy; a non-nil approved is the digest of the
// authorization_details the user approved (AuthRequest.ApprovedDetails),
// recorded in the same compare-and-set, which refuses it unless it is the
// digest of the stored request's details.
// record, if not empty, is the signed approval record kept with the
// decision (AuthRequest.ApprovalRecord).
func (d *Decisions) approve(ctx context.Context, id string, authTime time.Time, tokens []byte, subject string, approved *string, record string) error {
	now := d.now()
	sealed, err := d.sealer.Seal(tokens, []byte(id))
	if err != nil {
		return &Error{Code: CodeServerError, Description: "the tokens could not be encrypted", Err: err}
	}
	a := approval{at: now, authTime: authTime, sealed: sealed, shown: approved, record: record}
	r, err := d.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		return a.apply(r, func(r *AuthRequest) {
			if r.Subject == "" {
				r.Subject = subject
			}
		})
	})
	if err != nil {
		return d.transitionError("approve", err)
	}
	d.logApproved(ctx, "auth request approved", r.ClientID, r.Subject, r.ApprovedDetails)
	d.sched.schedule(id, now)
	return nil
}

// approval is what an approval writes into its request, in the
// compare-and-set that decides it (Decisions.approve for the approval
// page, the callback and federated sign-ins; Device.ApproveAsShown for
// the device page): the one place where the digest of the
// authorization_details the user was shown is checked against the stored
// request's, inside that compare-and-set, so that details changed after
// the page was shown can never be approved.
type approval struct {
	// at is the decision's time; authTime the user's authentication's.
	at, authTime time.Time
	// sealed is the sealed token response.
	sealed []byte
	// shown, when not nil, is the digest of the authorization_details the
	// user was shown and approved (authzdetails.DigestOf; "" for none):
	// apply refuses it unless it is the stored request's, and records it
	// (AuthRequest.ApprovedDetails).
	shown *string
	// record is the signed approval record (AuthRequest.ApprovalRecord),
	// "" for none.
	record string
}

// apply approves cur (a store updater's copy of the request): it checks
// the shown digest (detailsChanged, nothing changed, when it is not
// cur's), decides, and records the digest, the approval record, and who
// approved (setUser).
func (a *approval) apply(cur *AuthRequest, setUser func(*AuthRequest)) error {
	if a.shown != nil && *a.shown != cur.DetailsDigest() {
		return detailsChanged()
	}
	if err := cur.Approve(a.at, a.authTime, a.sealed); err != nil {
		return err
	}
	if a.shown != nil {
		cur.ApprovedDetails = *a.shown
	}
	setUser(cur)
	cur.ApprovalRecord = a.record
	return nil
}

// logApproved logs an approval (msg), with the digest of the approved
// authorization_details when there were any.
func (b *base) logApproved(ctx context.Context, msg, clientID, subject, digest string) {
	attrs := []slog.Attr{slog.String("client_id", clientID), slog.String("subject", subject)}
	if digest != "" {
		attrs = append(attrs, slog.String("authorization_details_digest", digest))
	}
	b.log.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// mintApproved mints the tokens of m (the request as approved) at now
// with minter, checks that they carry exactly the authorization_details
// of digest shown ("" for none), and returns the token response's JSON;
// its errors are server_error.
func mintApproved(ctx context.Context, minter Minter, m *AuthRequest, now time.Time, shown string) ([]byte, error) {
	tr, err := minter.Mint(ctx, m, now)
	if err != nil {
		return nil, &Error{Code: CodeServerError, Description: "tokens could not be issued", Err: err}
	}
	if err := carriesApproved(tr, shown); err != nil {
		return nil, &Error{Code: CodeServerError, Description: "tokens could not be issued", Err: err}
	}
	body, err := json.Marshal(tr)
	if err != nil {
		return nil, &Error{Code: CodeServerError, Description: "tokens could not be encoded", Err: err}
	}
	return body, nil
}

// ErrDetailsChanged is wrapped by the invalid_request that refuses an
// approval of other authorization_details than the request's: the page or
// device showed a list that is not (or no longer) the one the tokens would
// carry.
var ErrDetailsChanged = errors.New("the authorization details approved are not the request's")

// detailsChanged is the refusal of an approval of other details.
func detailsChanged() *Error {
	return &Error{Code: CodeInvalidRequest, Description: "the authorization details approved are not the request's; show the request again", Err: ErrDetailsChanged}
}

// Deny records the user's (or the system's) refusal of request id.
func (d *Decisions) Deny(ctx context.Context, id, reason string) error {
	r, err := d.store.UpdateRequest(ctx, id, func(r *AuthRequest) error {
		return r.Deny(d.now(), reason)
	})
	if err != nil {
		return d.transitionError("deny", err)
	}
	d.log.LogAttrs(ctx, slog.LevelInfo, "auth request denied", slog.String("client_id", r.ClientID), slog.String("subject", r.Subject))
	d.sched.schedule(id, d.now())
	return nil
}

// ApproveWithMinter approves request id with tokens from the service's
// Minter (the local upstream's tokens), the user having been shown the
// request's authorization_details as stored.
func (d *Decisions) ApproveWithMinter(ctx context.Context, r *AuthRequest) error {
	return d.ApproveShown(ctx, r, r.DetailsDigest())
}

// ApproveShown approves request r with tokens from the service's Minter,
// recording shown, the digest of the authorization_details the user was
// shown and approved (authzdetails.DigestOf; "" for none), with the
// decision (AuthRequest.ApprovedDetails). It refuses (invalid_request) a
// digest that is not the request's, and it refuses to store tokens that do
// not carry exactly the approved list (server_error): the token carries
// what the user approved, or there is no token.
func (d *Decisions) ApproveShown(ctx context.Context, r *AuthRequest, shown string) error {
	return d.ApproveWithRecord(ctx, r, shown, nil)
}

// ApproveWithRecord is ApproveShown keeping a signed approval record with
// the decision (AuthRequest.ApprovalRecord), in the same compare-and-set:
// record is called with the approval time and returns the record; its
// error approves nothing.
func (d *Decisions) ApproveWithRecord(ctx context.Context, r *AuthRequest, shown string, record func(at time.Time) (string, error)) error {
	if d.minter == nil {
		return Errorf(CodeInvalidRequest, "with this upstream the user approves by signing in at the identity provider through the approval link; the callback can only deny")
	}
	if r.Status != StatusPending || r.Expired(d.now()) {
		return notPending(r)
	}
	if shown != r.DetailsDigest() {
		return detailsChanged()
	}
	now := d.now()
	r = r.Clone()
	r.AuthTime = now
	body, err := mintApproved(ctx, d.minter, r, now, shown)
	if err != nil {
		return err
	}
	rec := ""
	if record != nil {
		if rec, err = record(now); err != nil {
			return &Error{Code: CodeServerError, Description: "the approval record could not be signed", Err: err}
		}
	}
	return d.approve(ctx, r.ID, now, body, "", &shown, rec)
}

// carriesApproved checks that the token response carries exactly the
// authorization_details whose digest the user approved ("" for none),
// compared in canonical form.
func carriesApproved(tr *TokenResponse, approved string) error {
	var got string
	if tr.AuthorizationDetails != "" {
		l, err := authzdetails.FromJSON([]byte(tr.AuthorizationDetails))
		if err != nil {
			return fmt.Errorf("minted authorization_details: %w", err)
		}
		if len(l) > 0 {
			got = l.Digest()
		}
	}
	if got != approved {
		return fmt.Errorf("the minted tokens carry authorization_details of digest %q, not the approved %q", got, approved)
	}
	return nil
}

// CallbackToken returns the bearer the authentication-device service
// presents at POST /ciba/callback for the request with the given approval
// id. It is derived (HMAC) rather than stored, so that a retried channel
// message after a restart carries the same token and a store dump holds none.
func (d *Decisions) CallbackToken(approvalID string) string {
	mac := hmac.New(sha256.New, d.callbackKey)
	mac.Write([]byte("cibaproxy callback\x00"))
	mac.Write([]byte(approvalID))
	return approvalID + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Callback applies the authentication device's answer (the webhook channel's
// POST /ciba/callback): approved mints and stores tokens, otherwise the
// request is denied. shown is the digest of the authorization_details the
// device showed and the user approved, as the channel's message gave it
// (authorization_details_digest); "" when the answer names none, which
// approves the request's details as the message carried them. A wrong
// token answers invalid_token; a request that is no longer pending answers
// its state and changes nothing; a digest that is not the request's
// answers invalid_request and changes nothing.
func (d *Decisions) Callback(ctx context.Context, token string, approved bool, reason, shown string) error {
	approvalID, _, ok := strings.Cut(token, ".")
	if !ok || !hmac.Equal([]byte(d.CallbackToken(approvalID)), []byte(token)) {
		return Errorf(CodeInvalidToken, "the callback token is not valid")
	}
	r, err := d.store.GetRequestByApprovalID(ctx, approvalID)
	if errors.Is(err, ErrNotFound) {
		return Errorf(CodeInvalidToken, "the callback token is not valid")
	}
	if err != nil {
		return d.storeError("get request", err)
	}
	if approved {
		if shown == "" {
			shown = r.DetailsDigest()
		}
		return d.ApproveShown(ctx, r, shown)
	}
	if reason == "" {
		reason = "the user denied the request"
	}
	return d.Deny(ctx, r.ID, reason)
}

// ForApproval returns the request behind an approval link and its client,
// for the approval page. An unknown id, and a request that is no longer
// pending or has expired, is ErrNotFound-wrapped or a state *Error, so the
// page can say which.
func (d *Decisions) ForApproval(ctx context.Context, approvalID string) (*AuthRequest, *Client, error) {
	r, err := d.store.GetRequestByApprovalID(ctx, approvalID)
	if err != nil {
		return nil, nil, err
	}
	c, ok := d.clients(r.ClientID)
	if !ok {
		return nil, nil, fmt.Errorf("client %q of request: %w", r.ClientID, ErrNotFound)
	}
	if r.Status != StatusPending || r.Expired(d.now()) {
		return r, c, notPending(r)
	}
	return r, c, nil
}
