// Package admin is what an operator may see and do with the authentication
// requests in a store: list them, show one, and cancel a pending one. The
// `cibaproxy requests` and `cibaproxy clients` commands use it, and so does
// the admin socket of a running server, so that both paths run the same code
// whether the command opens the store itself (Redis, or the embedded file of
// a stopped server) or asks the server that holds the file (see socket.go).
//
// The views here carry every field an operator needs and no secret: never
// the sealed token response, the notification token, the callback token,
// the sealed upstream auth_req_id or the approval id (the key of the user's
// approval link, a bearer secret of its own). The auth_req_id is shown: it
// names the request to operators and is a credential only together with the
// client's credentials; the table output shortens it unless asked not to.
package admin

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
)

// Errors of [Requests] methods; callers test with errors.Is. They travel
// through the admin socket as error codes (see socket.go).
var (
	// ErrNotFound: no request with that id (never existed, or collected
	// after its expiry), or no request starts with that prefix.
	ErrNotFound = errors.New("no such request")
	// ErrAmbiguous: several requests start with the given id prefix.
	ErrAmbiguous = errors.New("the id prefix matches several requests")
	// ErrNotPending: Cancel found the request approved, denied, expired or
	// redeemed, and changed nothing.
	ErrNotPending = errors.New("the request is not pending")
	// ErrBadRequest: a filter or id the operator gave is not valid.
	ErrBadRequest = errors.New("bad request")
)

// badRequest is an operator's mistake (ErrBadRequest) whose text is its
// message alone: the CLI prints it as it is, not as "bad request: …".
type badRequest struct{ err error }

func (e badRequest) Error() string { return e.err.Error() }

// Unwrap gives ErrBadRequest, for errors.Is and the socket's error code,
// and the cause the message wraps, if any.
func (e badRequest) Unwrap() []error { return []error{ErrBadRequest, e.err} }

// badRequestf is an ErrBadRequest with the message format makes of a.
func badRequestf(format string, a ...any) error {
	return badRequest{fmt.Errorf(format, a...)}
}

// CancelReason is the deny reason of a request cancelled by an operator: the
// client's next poll answers access_denied with it as error_description.
const CancelReason = "cancelled by an operator"

// MinPrefix is the shortest id prefix that Show and Cancel accept in place of
// a whole auth_req_id.
const MinPrefix = 8

// Requests is what an operator can do with authentication requests. [Local]
// implements it on a store, [Client] through a server's admin socket.
type Requests interface {
	// List returns the requests that pass f, oldest first.
	List(ctx context.Context, f Filter) ([]Request, error)
	// Show returns one request, by auth_req_id or a unique prefix of at
	// least MinPrefix characters.
	Show(ctx context.Context, id string) (*Request, error)
	// Cancel denies a pending request with CancelReason and returns it as
	// stored. A request in any other state is ErrNotPending, unchanged.
	Cancel(ctx context.Context, id string) (*Request, error)
}

// Filter selects requests for List; zero fields select all.
type Filter struct {
	// Client is a client_id.
	Client string
	// State is one of the five states (see [State]).
	State ciba.Status
}

// Validate reports an unknown state as ErrBadRequest.
func (f Filter) Validate() error {
	switch f.State {
	case "", ciba.StatusPending, ciba.StatusApproved, ciba.StatusDenied, ciba.StatusExpired, ciba.StatusRedeemed:
		return nil
	}
	return badRequestf("state %q is not one of pending, approved, denied, expired, redeemed", f.State)
}

// State is the state a request is in at now, as the token endpoint sees it
// (ciba.AuthRequest.Redeem): a redeemed request stays redeemed, any other
// past its ExpiresAt is expired whatever its stored status, since the
// client's poll then answers expired_token.
func State(r *ciba.AuthRequest, now time.Time) ciba.Status {
	if r.Status != ciba.StatusRedeemed && r.Expired(now) {
		return ciba.StatusExpired
	}
	return r.Status
}

// Request is the operator's view of a ciba.AuthRequest: every field but the
// secrets (see the package comment). It is also the JSON of `--json` and of
// the admin socket.
type Request struct {
	// ID is the auth_req_id.
	ID       string `json:"auth_req_id"`
	ClientID string `json:"client_id"`
	// Kind is "device" for a device authorization request (RFC 8628, its
	// ID the device_code), empty for a CIBA one.
	Kind    string `json:"kind,omitempty"`
	Mode    string `json:"mode"`
	Subject string `json:"subject"`
	// LoginHint is the user as the client named them, for display.
	LoginHint      string   `json:"login_hint,omitempty"`
	Scopes         []string `json:"scopes"`
	ACRValues      []string `json:"acr_values,omitempty"`
	BindingMessage string   `json:"binding_message,omitempty"`
	// UserCode tells whether the client sent a user_code (its hash is not
	// shown).
	UserCode bool `json:"user_code"`

	// State is the state at Now (see [State]); Status is the stored one,
	// which differs only for a request past its expiry.
	State  ciba.Status `json:"state"`
	Status ciba.Status `json:"stored_status"`
	// Now is when State was computed, the reference of ages.
	Now       time.Time `json:"now"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// IntervalSeconds is the poll interval first announced.
	IntervalSeconds float64   `json:"interval_seconds"`
	DecidedAt       time.Time `json:"decided_at,omitzero"`
	AuthTime        time.Time `json:"auth_time,omitzero"`
	DenyReason      string    `json:"deny_reason,omitempty"`
	// TokensHeld tells whether sealed tokens wait for delivery (not them).
	TokensHeld bool `json:"tokens_held"`

	// ChannelNotice is the authentication channel's message to the user;
	// ClientNotice the ping or push callback to the client.
	ChannelNotice Delivery `json:"channel_notice"`
	ClientNotice  Delivery `json:"client_notice"`
	// Relay is set for a request relayed to a CIBA upstream.
	Relay *Relay `json:"relay,omitempty"`

	// AuthorizationDetails are the request's authorization_details (RFC
	// 9396) as stored, canonical JSON; DetailsDigest their digest; and
	// ApprovedDetails the digest recorded with the approval (what the
	// user approved), "" until then or when the approval was made
	// elsewhere (a relayed request).
	AuthorizationDetails json.RawMessage `json:"authorization_details,omitempty"`
	DetailsDigest        string          `json:"authorization_details_digest,omitempty"`
	ApprovedDetails      string          `json:"approved_details_digest,omitempty"`
	// Actor is the delegate client acting for the user (acts_for_user),
	// named in the access token's act claim.
	Actor string `json:"actor,omitempty"`
	// Approval is the signed approval record of a request approved with
	// a passkey (ciba.AuthRequest.ApprovalRecord).
	Approval *ApprovalRecord `json:"approval_record,omitempty"`
}

// Delivery is the state of an outbound message (ciba.Delivery).
type Delivery struct {
	Due         bool      `json:"due"`
	Done        bool      `json:"done"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// Tries are the latest sends through each channel (ciba.Try).
	Tries []Try `json:"tries,omitempty"`
}

// Try is one send of the user's message through one channel (ciba.Try).
type Try struct {
	At      time.Time `json:"at"`
	Channel string    `json:"channel"`
	Outcome string    `json:"outcome"`
	Error   string    `json:"error,omitempty"`
}

// Relay is the state of a relayed request (ciba.RelayState) without the
// upstream's auth_req_id.
type Relay struct {
	IntervalSeconds float64   `json:"interval_seconds"`
	Ping            bool      `json:"ping"`
	NextPoll        time.Time `json:"next_poll,omitzero"`
	Polls           int       `json:"polls"`
	Failures        int       `json:"failures"`
	LastError       string    `json:"last_error,omitempty"`
}

// View returns the operator's view of r at now. It copies field by field, so
// a field added to ciba.AuthRequest stays out until someone decides it is
// not a secret.
func View(r *ciba.AuthRequest, now time.Time) Request {
	v := Request{
		ID:              r.ID,
		ClientID:        r.ClientID,
		Kind:            string(r.Kind),
		Mode:            string(r.Mode),
		Subject:         r.Subject,
		LoginHint:       r.LoginHint,
		Scopes:          slices.Clone(r.Scopes),
		ACRValues:       slices.Clone(r.ACRValues),
		BindingMessage:  r.BindingMessage,
		UserCode:        r.UserCodeHash != "",
		State:           State(r, now),
		Status:          r.Status,
		Now:             now,
		CreatedAt:       r.CreatedAt,
		ExpiresAt:       r.ExpiresAt,
		IntervalSeconds: r.Interval.Seconds(),
		DecidedAt:       r.DecidedAt,
		AuthTime:        r.AuthTime,
		DenyReason:      r.DenyReason,
		TokensHeld:      len(r.Result) > 0,
		ChannelNotice:   delivery(r.UserNotice),
		ClientNotice:    delivery(r.ClientNotice),
	}
	if v.Scopes == nil {
		v.Scopes = []string{}
	}
	if r.AuthzDetails != "" && json.Valid([]byte(r.AuthzDetails)) {
		v.AuthorizationDetails = json.RawMessage(r.AuthzDetails)
		v.DetailsDigest = r.DetailsDigest()
	}
	v.ApprovedDetails = r.ApprovedDetails
	v.Actor = r.Actor
	if r.ApprovalRecord != "" {
		v.Approval = approvalRecord(r.ApprovalRecord)
	}
	if r.Relay.Active() {
		v.Relay = &Relay{
			IntervalSeconds: r.Relay.Interval.Seconds(),
			Ping:            r.Relay.Ping,
			NextPoll:        r.Relay.NextPoll,
			Polls:           r.Relay.Polls,
			Failures:        r.Relay.Failures,
			LastError:       redactURLs(r.Relay.LastError),
		}
	}
	return v
}

func delivery(d ciba.Delivery) Delivery {
	v := Delivery{Due: d.Due, Done: d.Done, Attempts: d.Attempts, NextAttempt: d.NextAttempt, LastError: redactURLs(d.LastError)}
	for _, t := range d.Tries {
		v.Tries = append(v.Tries, Try{At: t.At, Channel: t.Channel, Outcome: t.Outcome, Error: redactURLs(t.Error)})
	}
	return v
}

// urlPattern matches the URLs that delivery errors quote.
var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+`)

// redactURLs cuts every URL in an error message down to its scheme and host:
// the errors of outbound calls quote the URL they called, and a client's
// notification endpoint may carry a secret in its user info, path or query.
func redactURLs(s string) string {
	return urlPattern.ReplaceAllStringFunc(s, func(m string) string {
		// Punctuation ending the match ends the sentence, not the URL.
		raw := strings.TrimRight(m, ":;,.)")
		tail := m[len(raw):]
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return "(URL)" + tail
		}
		if u.User == nil && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == "" {
			return raw + tail
		}
		return u.Scheme + "://" + u.Host + "/…" + tail
	})
}

// Local is [Requests] on a store the caller holds: the admin socket's
// server, or the command itself when it opens the store.
type Local struct {
	// Store holds the requests.
	Store ciba.Store
	// Deny denies a pending request through the state machine. The server
	// passes ciba.Service.Deny, which also wakes its dispatcher to send the
	// client's notice at once. Nil: a compare-and-set with
	// ciba.AuthRequest.Deny, which records the client notice as due for the
	// dispatcher of a server sharing the store (or the next to start).
	Deny func(ctx context.Context, id, reason string) error
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

// Compile-time check.
var _ Requests = (*Local)(nil)

func (l *Local) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

// List implements [Requests].
func (l *Local) List(ctx context.Context, f Filter) ([]Request, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	now := l.now()
	out := []Request{}
	err := l.Store.ListRequests(ctx, func(r *ciba.AuthRequest) bool {
		if f.Client != "" && r.ClientID != f.Client {
			return true
		}
		if f.State != "" && State(r, now) != f.State {
			return true
		}
		out = append(out, View(r, now))
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", err)
	}
	slices.SortFunc(out, func(a, b Request) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Show implements [Requests].
func (l *Local) Show(ctx context.Context, id string) (*Request, error) {
	r, err := l.get(ctx, id)
	if err != nil {
		return nil, err
	}
	v := View(r, l.now())
	return &v, nil
}

// Cancel implements [Requests]: the same transition as a denial by the user,
// AuthRequest.Deny inside a Store compare-and-set.
func (l *Local) Cancel(ctx context.Context, id string) (*Request, error) {
	r, err := l.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := l.pending(r); err != nil {
		return nil, err
	}
	deny := l.Deny
	if deny == nil {
		deny = l.deny
	}
	if err := deny(ctx, r.ID, CancelReason); err != nil {
		// The request may have changed since it was read: say what it is now.
		cur, gerr := l.Store.GetRequest(ctx, r.ID)
		if errors.Is(gerr, ciba.ErrNotFound) {
			return nil, fmt.Errorf("cancel request %s: %w", short(r.ID), ErrNotFound)
		}
		if gerr == nil {
			if perr := l.pending(cur); perr != nil {
				return nil, perr
			}
		}
		return nil, fmt.Errorf("cancel request %s: %w", short(r.ID), err)
	}
	cur, err := l.Store.GetRequest(ctx, r.ID)
	if err != nil {
		return nil, fmt.Errorf("cancel request %s: read it back: %w", short(r.ID), err)
	}
	v := View(cur, l.now())
	return &v, nil
}

// deny is the default Deny: the state machine's transition in a
// compare-and-set.
func (l *Local) deny(ctx context.Context, id, reason string) error {
	_, err := l.Store.UpdateRequest(ctx, id, func(r *ciba.AuthRequest) error {
		return r.Deny(l.now(), reason)
	})
	return err
}

// pending returns ErrNotPending, with the state, unless r is pending now.
func (l *Local) pending(r *ciba.AuthRequest) error {
	if s := State(r, l.now()); s != ciba.StatusPending {
		return fmt.Errorf("request %s is %s: nothing changed: %w", short(r.ID), s, ErrNotPending)
	}
	return nil
}

// get finds a request by auth_req_id or by a unique prefix of at least
// MinPrefix characters.
func (l *Local) get(ctx context.Context, id string) (*ciba.AuthRequest, error) {
	if id == "" {
		return nil, badRequestf("empty request id")
	}
	r, err := l.Store.GetRequest(ctx, id)
	if err == nil {
		return r, nil
	}
	if !errors.Is(err, ciba.ErrNotFound) {
		return nil, fmt.Errorf("get request: %w", err)
	}
	if len(id) < MinPrefix {
		return nil, fmt.Errorf("request %s: %w (a prefix needs at least %d characters)", id, ErrNotFound, MinPrefix)
	}
	var found []*ciba.AuthRequest
	err = l.Store.ListRequests(ctx, func(r *ciba.AuthRequest) bool {
		if strings.HasPrefix(r.ID, id) {
			found = append(found, r)
		}
		return len(found) < 2
	})
	if err != nil {
		return nil, fmt.Errorf("find request: %w", err)
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("request %s: %w", id, ErrNotFound)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("request %s…: %w: give more of it", id, ErrAmbiguous)
}

// ShortLen is how many characters of an auth_req_id the table output shows.
const ShortLen = 12

// short returns the first ShortLen characters of an auth_req_id, for tables
// and messages.
func short(id string) string {
	if len(id) <= ShortLen {
		return id
	}
	return id[:ShortLen] + "…"
}
