package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/passkey"
)

// The users of the local upstream and their passkeys, for `cibaproxy users
// enroll|list|passkeys remove` (their Web Push subscriptions: webpush.go). On the admin socket:
//
//	GET  /v1/users                              {"users": [UserInfo…]}
//	POST /v1/users/{name}/enroll                Enrolment
//	POST /v1/users/{name}/passkeys/{id}/remove  {"removed": ID}
//
// with errors not_found (unknown user or passkey) and bad_request (no
// local upstream, a password-only user, an issuer passkeys cannot use).

// ErrNoUser is an unknown username or passkey (not_found on the socket).
var ErrNoUser = errors.New("not found")

// Users lists the local users and manages their passkeys.
type Users interface {
	// ListUsers returns every user with their passkeys.
	ListUsers(ctx context.Context) ([]UserInfo, error)
	// Enroll returns a new one-time enrolment link for the user.
	Enroll(ctx context.Context, username string) (*Enrolment, error)
	// RemovePasskey removes the user's passkey whose id starts with id
	// (8 characters at least) and returns its whole id.
	RemovePasskey(ctx context.Context, username, id string) (string, error)
	// ListWebPush returns the user's Web Push subscriptions, without
	// their endpoints or keys.
	ListWebPush(ctx context.Context, username string) ([]WebPushInfo, error)
	// RemoveWebPush removes the user's subscription whose short id starts
	// with id (8 characters at least) and returns it.
	RemoveWebPush(ctx context.Context, username, id string) (WebPushInfo, error)
	// RemoveAllWebPush removes every subscription of the user and returns
	// how many there were.
	RemoveAllWebPush(ctx context.Context, username string) (int, error)
}

// UserInfo is one local user as `users list` shows them.
type UserInfo struct {
	Username string `json:"username"`
	Subject  string `json:"subject"`
	// Method is the user's approval method (approval.method or their
	// approval_method).
	Method   string        `json:"approval_method"`
	Passkeys []PasskeyInfo `json:"passkeys"`
}

// PasskeyInfo is one passkey, without its public key.
type PasskeyInfo struct {
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	LastUsed  time.Time `json:"last_used,omitzero"`
	SignCount uint32    `json:"sign_count"`
}

// Enrolment is a one-time enrolment link.
type Enrolment struct {
	Username string    `json:"username"`
	URL      string    `json:"url"`
	Expires  time.Time `json:"expires"`
}

// LocalUsers is [Users] on a store, for the configuration's users.
type LocalUsers struct {
	Store  ciba.Store
	Config *config.Config
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Compile-time checks.
var (
	_ Users = (*LocalUsers)(nil)
	_ Users = (*Client)(nil)
)

func (l *LocalUsers) user(username string) (*config.User, error) {
	if l.Config.Upstream.Type != config.UpstreamLocal {
		return nil, badRequestf("users and passkeys are the local upstream's; upstream.type is %s", l.Config.Upstream.Type)
	}
	for i := range l.Config.Upstream.Local.Users {
		if u := &l.Config.Upstream.Local.Users[i]; u.Username == username {
			return u, nil
		}
	}
	return nil, fmt.Errorf("%w: no user %q in upstream.local.users", ErrNoUser, username)
}

func subjectOf(u *config.User) string {
	if u.Subject != "" {
		return u.Subject
	}
	return u.Username
}

// ListUsers implements [Users].
func (l *LocalUsers) ListUsers(ctx context.Context) ([]UserInfo, error) {
	if l.Config.Upstream.Type != config.UpstreamLocal {
		return nil, badRequestf("users are the local upstream's; upstream.type is %s", l.Config.Upstream.Type)
	}
	creds := &passkey.Credentials{Records: l.Store}
	out := []UserInfo{}
	for _, u := range l.Config.Upstream.Local.Users {
		info := UserInfo{Username: u.Username, Subject: subjectOf(&u), Method: l.Config.MethodFor(u.Username), Passkeys: []PasskeyInfo{}}
		list, err := creds.List(ctx, info.Subject)
		if err != nil {
			return nil, err
		}
		for _, c := range list {
			info.Passkeys = append(info.Passkeys, PasskeyInfo{ID: c.ID(), Created: c.Created, LastUsed: c.LastUsed, SignCount: c.WebAuthn.Authenticator.SignCount})
		}
		out = append(out, info)
	}
	return out, nil
}

// Enroll implements [Users]: a link valid for
// approval.passkeys.enrollment_ttl, once.
func (l *LocalUsers) Enroll(ctx context.Context, username string) (*Enrolment, error) {
	u, err := l.user(username)
	if err != nil {
		return nil, err
	}
	if m := l.Config.MethodFor(username); m == config.ApprovalPassword {
		return nil, badRequestf("%s approves with a password only (approval method %q): set approval_method passkey or either for them first", username, m)
	}
	rpID := l.Config.Approval.Passkeys.RPID
	if rpID == "" {
		if iu, err := url.Parse(l.Config.Issuer); err == nil {
			rpID = iu.Hostname()
		}
	}
	if err := passkey.CheckRPID(rpID); err != nil {
		return nil, badRequestf("%w", err)
	}
	en := &passkey.Enrolments{Records: l.Store, Now: l.Now}
	token, e, err := en.Issue(ctx, subjectOf(u), u.Username, l.Config.Approval.Passkeys.EnrollmentTTL)
	if err != nil {
		return nil, err
	}
	return &Enrolment{Username: u.Username, URL: strings.TrimSuffix(l.Config.Issuer, "/") + passkey.EnrolPath + token, Expires: e.Expires}, nil
}

// RemovePasskey implements [Users].
func (l *LocalUsers) RemovePasskey(ctx context.Context, username, id string) (string, error) {
	u, err := l.user(username)
	if err != nil {
		return "", err
	}
	removed, err := (&passkey.Credentials{Records: l.Store}).Remove(ctx, subjectOf(u), id)
	if errors.Is(err, passkey.ErrNotFound) {
		return "", fmt.Errorf("%w: %w", ErrNoUser, err)
	}
	return removed, err
}

// UsersHandler serves the users API on users; enrolments and removals are
// logged to log (usernames and ids, never a link).
func UsersHandler(users Users, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/users", func(w http.ResponseWriter, r *http.Request) {
		list, err := users.ListUsers(r.Context())
		answer(w, usersBody{Users: list}, err)
	})
	mux.HandleFunc("POST /v1/users/{name}/enroll", func(w http.ResponseWriter, r *http.Request) {
		e, err := users.Enroll(r.Context(), r.PathValue("name"))
		if err == nil {
			log.LogAttrs(r.Context(), slog.LevelInfo, "passkey enrolment link issued by an operator",
				slog.String("username", e.Username), slog.Time("expires", e.Expires))
		}
		answer(w, e, err)
	})
	mux.HandleFunc("POST /v1/users/{name}/passkeys/{id}/remove", func(w http.ResponseWriter, r *http.Request) {
		id, err := users.RemovePasskey(r.Context(), r.PathValue("name"), r.PathValue("id"))
		if err == nil {
			log.LogAttrs(r.Context(), slog.LevelInfo, "passkey removed by an operator",
				slog.String("username", r.PathValue("name")), slog.String("credential_id", id))
		}
		answer(w, removedBody{Removed: id}, err)
	})
	webPushRoutes(mux, users, log)
	return mux
}

type usersBody struct {
	Users []UserInfo `json:"users"`
}

type removedBody struct {
	Removed string `json:"removed"`
}

// UsersJSON is the JSON of `users list --json`.
func UsersJSON(list []UserInfo) any { return usersBody{Users: list} }

// ListUsers implements [Users] through the socket.
func (c *Client) ListUsers(ctx context.Context) ([]UserInfo, error) {
	var b usersBody
	if err := c.do(ctx, http.MethodGet, "/v1/users", &b); err != nil {
		return nil, err
	}
	return b.Users, nil
}

// Enroll implements [Users] through the socket.
func (c *Client) Enroll(ctx context.Context, username string) (*Enrolment, error) {
	var e Enrolment
	if err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(username)+"/enroll", &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// RemovePasskey implements [Users] through the socket.
func (c *Client) RemovePasskey(ctx context.Context, username, id string) (string, error) {
	var b removedBody
	if err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(username)+"/passkeys/"+url.PathEscape(id)+"/remove", &b); err != nil {
		return "", err
	}
	return b.Removed, nil
}

// WriteUsers prints users as a table: username, subject, approval method,
// passkey count, and each passkey's id and last use.
func WriteUsers(w io.Writer, list []UserInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USERNAME\tSUBJECT\tAPPROVAL\tPASSKEYS")
	for _, u := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", clean(u.Username), clean(u.Subject), clean(u.Method), len(u.Passkeys))
		for _, p := range u.Passkeys {
			last := "never used"
			if !p.LastUsed.IsZero() {
				last = "last used " + at(p.LastUsed)
			}
			fmt.Fprintf(tw, "  passkey %s\t\tadded %s\t%s\n", clean(p.ID), at(p.Created), last)
		}
	}
	return writeErr(tw.Flush())
}
