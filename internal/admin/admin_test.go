package admin

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/authzdetails"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// now is the fixed clock of the tests.
var now = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// Secrets planted in the fixture requests; no output may contain them.
var (
	sealedBlob        = []byte("SEALED-TOKEN-RESPONSE-do-not-print")
	notificationToken = "NOTIFICATION-TOKEN-do-not-print"
	approvalID        = "APPROVAL-ID-do-not-print"
	relayID           = []byte("SEALED-UPSTREAM-AUTH-REQ-ID-do-not-print")
	userCodeHash      = "USER-CODE-HASH-do-not-print"
	// notifyError quotes a notification endpoint with secrets in its path
	// and query, as the outbound client's errors do.
	notifyError = `outbound: POST https://notify.example.com/cb/PATH-SECRET?k=QUERY-SECRET: Post "https://notify.example.com/cb/PATH-SECRET?k=QUERY-SECRET": connection refused`
)

// secrets returns every form in which the planted secrets could appear in
// text or JSON.
func secrets() []string {
	var out []string
	for _, b := range [][]byte{sealedBlob, relayID} {
		out = append(out, string(b), base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
	}
	// approvalID is the prefix of every fixture's approval id.
	return append(out, notificationToken, userCodeHash, approvalID, "PATH-SECRET", "QUERY-SECRET")
}

// fixtureDetails are the approved fixture's authorization_details.
const fixtureDetails = `[{"creditorName":"ACME","instructedAmount":{"amount":"50.00","currency":"EUR"},"type":"payment_initiation"}]`

// fixture is a store holding one request in each state.
type fixture struct {
	store *memory.Store
	// ids by name: pendingPoll, pendingPing, approved, denied, expired,
	// redeemed.
	ids map[string]string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: memory.New(), ids: map[string]string{}}
	t.Cleanup(func() { _ = f.store.Close() })
	n := 0
	add := func(name, client string, mode ciba.DeliveryMode, age time.Duration, mutate func(*ciba.AuthRequest)) {
		t.Helper()
		n++
		r := &ciba.AuthRequest{
			ID:                "req" + string(rune('A'+n)) + "-" + strings.Repeat(name, 3),
			ApprovalID:        approvalID + string(rune('0'+n)),
			ClientID:          client,
			Mode:              mode,
			Subject:           "alice",
			LoginHint:         "alice@example.com",
			Scopes:            []string{"openid", "email"},
			BindingMessage:    "Code 1234",
			CreatedAt:         now.Add(-age),
			ExpiresAt:         now.Add(-age + 5*time.Minute),
			Interval:          5 * time.Second,
			Status:            ciba.StatusPending,
			UserNotice:        ciba.Delivery{Due: true, Done: true, Attempts: 1},
			NotificationToken: notificationToken,
			UserCodeHash:      userCodeHash,
		}
		if mode == ciba.ModePoll {
			r.NotificationToken = ""
		}
		if mutate != nil {
			mutate(r)
		}
		if err := f.store.CreateRequest(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		f.ids[name] = r.ID
	}
	add("pendingPoll", "demo-poll", ciba.ModePoll, time.Minute, nil)
	add("pendingPing", "demo-ping", ciba.ModePing, 2*time.Minute, func(r *ciba.AuthRequest) {
		r.Relay = ciba.RelayState{ID: relayID, Interval: 5 * time.Second, Polls: 2, LastError: "upstream slow"}
	})
	add("approved", "demo-push", ciba.ModePush, 3*time.Minute, func(r *ciba.AuthRequest) {
		r.Status, r.DecidedAt, r.AuthTime, r.Result = ciba.StatusApproved, now.Add(-time.Minute), now.Add(-time.Minute), sealedBlob
		r.ClientNotice = ciba.Delivery{Due: true, Attempts: 3, NextAttempt: now.Add(time.Minute), LastError: notifyError}
		r.AuthzDetails = fixtureDetails
		r.ApprovedDetails = r.DetailsDigest()
	})
	add("denied", "demo-poll", ciba.ModePoll, 4*time.Minute, func(r *ciba.AuthRequest) {
		r.Status, r.DecidedAt, r.DenyReason = ciba.StatusDenied, now.Add(-time.Minute), "the user denied the request"
	})
	add("expired", "demo-poll", ciba.ModePoll, 10*time.Minute, nil) // pending in the store, past ExpiresAt
	add("redeemed", "demo-poll", ciba.ModePoll, 10*time.Minute, func(r *ciba.AuthRequest) {
		r.Status = ciba.StatusRedeemed
	})
	return f
}

func (f *fixture) local() *Local {
	return &Local{Store: f.store, Now: func() time.Time { return now }}
}

// impls runs a test against the store directly and through the admin socket,
// the two paths the commands take.
func impls(t *testing.T, run func(t *testing.T, f *fixture, reqs Requests)) {
	t.Run("local", func(t *testing.T) {
		f := newFixture(t)
		run(t, f, f.local())
	})
	t.Run("socket", func(t *testing.T) {
		f := newFixture(t)
		run(t, f, serveSocket(t, f.local()))
	})
}

// serveSocket serves reqs on an admin socket in a temporary directory and
// returns a client of it.
func serveSocket(t *testing.T, reqs Requests) *Client {
	t.Helper()
	path := SocketPath(filepath.Join(t.TempDir(), "db"))
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(reqs, slog.New(slog.DiscardHandler)), ReadHeaderTimeout: time.Minute}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return NewClient(path)
}

func ids(list []Request) []string {
	var out []string
	for _, r := range list {
		out = append(out, r.ID)
	}
	return out
}

func TestList(t *testing.T) {
	impls(t, func(t *testing.T, f *fixture, reqs Requests) {
		tests := []struct {
			name   string
			filter Filter
			want   []string // fixture names, oldest first
		}{
			{"no filter lists every request, oldest first", Filter{},
				[]string{"expired", "redeemed", "denied", "approved", "pendingPing", "pendingPoll"}},
			{"--client keeps that client's requests", Filter{Client: "demo-poll"},
				[]string{"expired", "redeemed", "denied", "pendingPoll"}},
			{"--state pending leaves out a pending request past its expiry", Filter{State: ciba.StatusPending},
				[]string{"pendingPing", "pendingPoll"}},
			{"--state expired is derived from ExpiresAt", Filter{State: ciba.StatusExpired},
				[]string{"expired"}},
			{"--state redeemed", Filter{State: ciba.StatusRedeemed}, []string{"redeemed"}},
			{"--state approved", Filter{State: ciba.StatusApproved}, []string{"approved"}},
			{"--client and --state together", Filter{Client: "demo-poll", State: ciba.StatusDenied}, []string{"denied"}},
			{"an unknown client lists nothing", Filter{Client: "nobody"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				list, err := reqs.List(t.Context(), tt.filter)
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, n := range tt.want {
					want = append(want, f.ids[n])
				}
				if got := ids(list); !slices.Equal(got, want) {
					t.Errorf("got %q, want %q", got, want)
				}
			})
		}
		t.Run("an unknown state is a bad request", func(t *testing.T) {
			_, err := reqs.List(t.Context(), Filter{State: "waiting"})
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("got %v, want ErrBadRequest", err)
			}
			// What the CLI prints: the operator's mistake, not the
			// error's kind ("bad request: state …").
			want := `state "waiting" is not one of pending, approved, denied, expired, redeemed`
			if err == nil || err.Error() != want {
				t.Errorf("message %q, want %q", err, want)
			}
		})
	})
}

func TestShow(t *testing.T) {
	impls(t, func(t *testing.T, f *fixture, reqs Requests) {
		t.Run("every non-secret field, with both deliveries", func(t *testing.T) {
			r, err := reqs.Show(t.Context(), f.ids["approved"])
			if err != nil {
				t.Fatal(err)
			}
			if r.ID != f.ids["approved"] || r.ClientID != "demo-push" || r.Mode != "push" || r.Subject != "alice" ||
				r.LoginHint != "alice@example.com" || r.BindingMessage != "Code 1234" || !r.UserCode ||
				r.State != ciba.StatusApproved || !r.TokensHeld || r.IntervalSeconds != 5 ||
				!r.AuthTime.Equal(now.Add(-time.Minute)) || !slices.Equal(r.Scopes, []string{"openid", "email"}) {
				t.Errorf("got %+v", r)
			}
			want := Delivery{Due: true, Attempts: 3, NextAttempt: now.Add(time.Minute),
				LastError: `outbound: POST https://notify.example.com/…: Post "https://notify.example.com/…": connection refused`}
			if !r.ClientNotice.NextAttempt.Equal(want.NextAttempt) {
				t.Errorf("client notice next attempt %v, want %v", r.ClientNotice.NextAttempt, want.NextAttempt)
			}
			r.ClientNotice.NextAttempt = want.NextAttempt
			if !reflect.DeepEqual(r.ClientNotice, want) {
				t.Errorf("client notice %+v, want %+v", r.ClientNotice, want)
			}
			if !reflect.DeepEqual(r.ChannelNotice, Delivery{Due: true, Done: true, Attempts: 1}) {
				t.Errorf("channel notice %+v", r.ChannelNotice)
			}
		})
		t.Run("the authorization_details and the digest the user approved are shown", func(t *testing.T) {
			r, err := reqs.Show(t.Context(), f.ids["approved"])
			if err != nil {
				t.Fatal(err)
			}
			want := authzdetails.DigestOf([]byte(fixtureDetails))
			if string(r.AuthorizationDetails) != fixtureDetails || r.DetailsDigest != want || r.ApprovedDetails != want {
				t.Errorf("details %s, digest %q, approved %q; want %s, %q twice", r.AuthorizationDetails, r.DetailsDigest, r.ApprovedDetails, fixtureDetails, want)
			}
			var out bytes.Buffer
			if err := WriteRequest(&out, r, false); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"authorization_details", "ACME", "approved_details", want} {
				if !strings.Contains(out.String(), s) {
					t.Errorf("requests show output lacks %q:\n%s", s, out.String())
				}
			}
		})
		t.Run("a pending request past its expiry shows expired, stored pending", func(t *testing.T) {
			r, err := reqs.Show(t.Context(), f.ids["expired"])
			if err != nil {
				t.Fatal(err)
			}
			if r.State != ciba.StatusExpired || r.Status != ciba.StatusPending {
				t.Errorf("state %s, stored %s; want expired, pending", r.State, r.Status)
			}
		})
		t.Run("a relayed request shows its relay state", func(t *testing.T) {
			r, err := reqs.Show(t.Context(), f.ids["pendingPing"])
			if err != nil {
				t.Fatal(err)
			}
			if r.Relay == nil || r.Relay.Polls != 2 || r.Relay.LastError != "upstream slow" {
				t.Errorf("relay %+v", r.Relay)
			}
		})
		t.Run("a unique prefix finds the request", func(t *testing.T) {
			r, err := reqs.Show(t.Context(), f.ids["denied"][:MinPrefix+2])
			if err != nil {
				t.Fatal(err)
			}
			if r.ID != f.ids["denied"] {
				t.Errorf("got %s, want %s", r.ID, f.ids["denied"])
			}
		})
		for _, tt := range []struct {
			name, id string
			want     error
		}{
			{"an unknown id is not found", "no-such-request-id", ErrNotFound},
			{"a prefix shorter than MinPrefix is not looked up", f.ids["denied"][:MinPrefix-1], ErrNotFound},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := reqs.Show(t.Context(), tt.id)
				if !errors.Is(err, tt.want) {
					t.Errorf("got %v, want %v", err, tt.want)
				}
			})
		}
	})
}

func TestShowEmptyID(t *testing.T) {
	f := newFixture(t)
	if _, err := f.local().Show(t.Context(), ""); !errors.Is(err, ErrBadRequest) {
		t.Errorf("got %v, want ErrBadRequest", err)
	}
}

func TestShowAmbiguousPrefix(t *testing.T) {
	st := memory.New()
	t.Cleanup(func() { _ = st.Close() })
	for _, id := range []string{"sameprefix-1", "sameprefix-2"} {
		if err := st.CreateRequest(t.Context(), &ciba.AuthRequest{ID: id, ApprovalID: "a" + id, Status: ciba.StatusPending, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	l := &Local{Store: st, Now: func() time.Time { return now }}
	for name, reqs := range map[string]Requests{"local": l, "socket": serveSocket(t, l)} {
		t.Run(name, func(t *testing.T) {
			if _, err := reqs.Show(t.Context(), "samepref"); !errors.Is(err, ErrAmbiguous) {
				t.Errorf("got %v, want ErrAmbiguous", err)
			}
			if _, err := reqs.Cancel(t.Context(), "samepref"); !errors.Is(err, ErrAmbiguous) {
				t.Errorf("cancel: got %v, want ErrAmbiguous", err)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	impls(t, func(t *testing.T, f *fixture, reqs Requests) {
		t.Run("a pending poll request becomes denied, cancelled by an operator", func(t *testing.T) {
			r, err := reqs.Cancel(t.Context(), f.ids["pendingPoll"])
			if err != nil {
				t.Fatal(err)
			}
			if r.State != ciba.StatusDenied || r.DenyReason != CancelReason || r.ClientNotice.Due {
				t.Errorf("got state %s, reason %q, client notice %+v", r.State, r.DenyReason, r.ClientNotice)
			}
			stored, err := f.store.GetRequest(t.Context(), f.ids["pendingPoll"])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stored.Redeem(now); !isCode(err, ciba.CodeAccessDenied) {
				t.Errorf("the client's poll answers %v, want access_denied", err)
			}
		})
		t.Run("a pending ping request is denied and its client notice scheduled", func(t *testing.T) {
			r, err := reqs.Cancel(t.Context(), f.ids["pendingPing"][:MinPrefix])
			if err != nil {
				t.Fatal(err)
			}
			if r.State != ciba.StatusDenied || !r.ClientNotice.Due || r.ClientNotice.Done || !r.ClientNotice.NextAttempt.Equal(now) {
				t.Errorf("got state %s, client notice %+v", r.State, r.ClientNotice)
			}
		})
		for _, name := range []string{"approved", "denied", "expired", "redeemed"} {
			t.Run("a request "+name+" is not pending and does not change", func(t *testing.T) {
				before, err := f.store.GetRequest(t.Context(), f.ids[name])
				if err != nil {
					t.Fatal(err)
				}
				_, err = reqs.Cancel(t.Context(), f.ids[name])
				if !errors.Is(err, ErrNotPending) || !strings.Contains(err.Error(), name) {
					t.Errorf("got %v, want ErrNotPending naming %s", err, name)
				}
				after, err := f.store.GetRequest(t.Context(), f.ids[name])
				if err != nil {
					t.Fatal(err)
				}
				if after.Status != before.Status || after.DenyReason != before.DenyReason || !reflect.DeepEqual(after.ClientNotice, before.ClientNotice) {
					t.Errorf("the request changed: %+v → %+v", before, after)
				}
			})
		}
		t.Run("an unknown request is not found", func(t *testing.T) {
			if _, err := reqs.Cancel(t.Context(), "no-such-request-id"); !errors.Is(err, ErrNotFound) {
				t.Errorf("got %v, want ErrNotFound", err)
			}
		})
	})
}

func isCode(err error, code ciba.ErrorCode) bool {
	var pe *ciba.Error
	return errors.As(err, &pe) && pe.Code == code
}

// TestCancelUsesDeny: the server passes the service's Deny, which also wakes
// its dispatcher; Cancel must go through it.
func TestCancelUsesDeny(t *testing.T) {
	f := newFixture(t)
	l := f.local()
	var called []string
	l.Deny = func(ctx context.Context, id, reason string) error {
		called = append(called, id+" "+reason)
		return f.local().deny(ctx, id, reason)
	}
	if _, err := l.Cancel(t.Context(), f.ids["pendingPoll"]); err != nil {
		t.Fatal(err)
	}
	if want := []string{f.ids["pendingPoll"] + " " + CancelReason}; !slices.Equal(called, want) {
		t.Errorf("Deny calls %q, want %q", called, want)
	}
}

// TestCancelRace: a request decided between Cancel's read and its
// compare-and-set is reported as not pending.
func TestCancelRace(t *testing.T) {
	f := newFixture(t)
	l := f.local()
	l.Deny = func(ctx context.Context, id, reason string) error {
		if _, err := f.store.UpdateRequest(ctx, id, func(r *ciba.AuthRequest) error {
			return r.Approve(now, now, sealedBlob)
		}); err != nil {
			t.Fatal(err)
		}
		return f.local().deny(ctx, id, reason)
	}
	_, err := l.Cancel(t.Context(), f.ids["pendingPoll"])
	if !errors.Is(err, ErrNotPending) || !strings.Contains(err.Error(), "approved") {
		t.Errorf("got %v, want ErrNotPending saying approved", err)
	}
}

// TestNoSecretInOutput: tables and JSON, directly and through the socket,
// never show the sealed tokens, the notification token, the approval id,
// the sealed upstream id or the user code hash.
func TestNoSecretInOutput(t *testing.T) {
	impls(t, func(t *testing.T, f *fixture, reqs Requests) {
		var out bytes.Buffer
		list, err := reqs.List(t.Context(), Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, full := range []bool{false, true} {
			if err := WriteList(&out, list, full); err != nil {
				t.Fatal(err)
			}
		}
		if err := WriteJSON(&out, ListJSON(list)); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"approved", "pendingPing", "redeemed"} {
			r, err := reqs.Show(t.Context(), f.ids[name])
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteRequest(&out, r, true); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&out, r); err != nil {
				t.Fatal(err)
			}
		}
		r, err := reqs.Cancel(t.Context(), f.ids["pendingPing"])
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteJSON(&out, r); err != nil {
			t.Fatal(err)
		}
		text := out.String()
		if !strings.Contains(text, f.ids["approved"]) || !strings.Contains(text, "connection refused") {
			t.Fatalf("the output lacks what it should show:\n%s", text)
		}
		for _, s := range secrets() {
			if strings.Contains(text, s) {
				t.Errorf("the output contains the secret %q:\n%s", s, text)
			}
		}
	})
}

func TestTableShortensIDs(t *testing.T) {
	f := newFixture(t)
	list, err := f.local().List(t.Context(), Filter{Client: "demo-push"})
	if err != nil {
		t.Fatal(err)
	}
	id := f.ids["approved"]
	var short, full bytes.Buffer
	if err := WriteList(&short, list, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteList(&full, list, true); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(short.String(), id) || !strings.Contains(short.String(), id[:ShortLen]) {
		t.Errorf("without --full the table shows %q, want only its first %d characters:\n%s", id, ShortLen, short.String())
	}
	if !strings.Contains(full.String(), id) {
		t.Errorf("with --full the table lacks %q:\n%s", id, full.String())
	}
}

func TestTableEscapesControlCharacters(t *testing.T) {
	st := memory.New()
	t.Cleanup(func() { _ = st.Close() })
	r := &ciba.AuthRequest{
		ID: "escape-test-request", ApprovalID: "x", ClientID: "c", Subject: "alice\x1b[2J",
		BindingMessage: "hi\x1b]0;owned\x07", Status: ciba.StatusPending, ExpiresAt: now.Add(time.Hour),
		UserNotice: ciba.Delivery{Due: true, LastError: "bad\x1b[31m"},
	}
	if err := st.CreateRequest(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	l := &Local{Store: st, Now: func() time.Time { return now }}
	list, err := l.List(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := WriteList(&out, list, true); err != nil {
		t.Fatal(err)
	}
	if err := WriteRequest(&out, &list[0], true); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out.String(), "\x1b\x07") {
		t.Errorf("the table passes control characters to the terminal: %q", out.String())
	}
}

func TestSocketFile(t *testing.T) {
	dir := t.TempDir()
	path := SocketPath(filepath.Join(dir, "cibaproxy.db"))

	t.Run("a stale socket is replaced, the new one has mode 0600 and Close removes it", func(t *testing.T) {
		stale, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		// A crashed server leaves its socket file behind.
		stale.(*listener).Listener.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
		_ = stale.(*listener).Listener.Close()
		if _, err := os.Lstat(path); err != nil {
			t.Fatalf("the stale socket file is gone: %v", err)
		}
		ln, err := Listen(path)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("the directory holds %d entries, want only the socket", len(entries))
		}
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after Close the socket file is still there: %v", err)
		}
	})
	t.Run("a file that is not a socket is not removed", func(t *testing.T) {
		if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Listen(path); err == nil {
			t.Error("Listen replaced a regular file")
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
			t.Errorf("the file changed: %q, %v", b, err)
		}
	})
	t.Run("a client finds no server on a missing socket", func(t *testing.T) {
		err := NewClient(filepath.Join(dir, "missing.sock")).Ping(t.Context())
		if err == nil {
			t.Error("Ping of a missing socket succeeded")
		}
	})
}

func TestClients(t *testing.T) {
	cs := []config.Client{
		{ID: "poll", Secret: "poll-SECRET", TokenEndpointAuthMethods: []string{"client_secret_basic"}, DeliveryMode: "poll"},
		{ID: "ping", Name: "Ping app", SecretHash: "$2a$10$HASH-SECRET", TokenEndpointAuthMethods: []string{"client_secret_post", "private_key_jwt"},
			DeliveryMode: "ping", NotificationEndpoint: "https://user:PASS-SECRET@notify.example.com:8443/cb/TOKEN-SECRET?key=QUERY-SECRET",
			Scopes: []string{"openid", "email"}},
	}
	got := Clients(cs)
	want := []ClientInfo{
		{ID: "poll", Name: "poll", Mode: "poll", AuthMethods: []string{"client_secret_basic"}, Scopes: []string{}},
		{ID: "ping", Name: "Ping app", Mode: "ping", AuthMethods: []string{"client_secret_post", "private_key_jwt"},
			NotificationHost: "notify.example.com:8443", Scopes: []string{"openid", "email"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d clients, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Name != w.Name || g.Mode != w.Mode || g.NotificationHost != w.NotificationHost ||
			!slices.Equal(g.AuthMethods, w.AuthMethods) || !slices.Equal(g.Scopes, w.Scopes) {
			t.Errorf("client %d: got %+v, want %+v", i, g, w)
		}
	}
	var out bytes.Buffer
	if err := WriteClients(&out, got); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&out, ClientsJSON(got)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "notify.example.com:8443") {
		t.Errorf("the output lacks the notification host:\n%s", out.String())
	}
	if strings.Contains(out.String(), "SECRET") || strings.Contains(out.String(), "HASH") {
		t.Errorf("the output shows a secret:\n%s", out.String())
	}
}

func TestRedactURLs(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"dial tcp 127.0.0.1:9090: connect: connection refused", "dial tcp 127.0.0.1:9090: connect: connection refused"},
		{"POST http://127.0.0.1:9090: 500", "POST http://127.0.0.1:9090: 500"},
		{"POST https://h.example/notify?token=x: 500", "POST https://h.example/…: 500"},
		{"POST https://user:pw@h.example: 500", "POST https://h.example/…: 500"},
	} {
		if got := redactURLs(tt.in); got != tt.want {
			t.Errorf("redactURLs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestDeliveryTextCountsAttempts: one attempt is "1 attempt", others plural.
func TestDeliveryTextCountsAttempts(t *testing.T) {
	for n, want := range map[int]string{1: "done, 1 attempt", 2: "done, 2 attempts"} {
		if got := deliveryText(Delivery{Due: true, Done: true, Attempts: n}); got != want {
			t.Errorf("%d attempts: %q, want %q", n, got, want)
		}
	}
}

// TestDeviceRequestShownAsDevice: a device authorization request is shown
// with mode "device", in the list and alone, and its kind in the JSON view.
func TestDeviceRequestShownAsDevice(t *testing.T) {
	v := View(&ciba.AuthRequest{ID: "device-code-0123456789", ClientID: "tv", Kind: ciba.KindDevice, Mode: ciba.ModePoll,
		Status: ciba.StatusPending, CreatedAt: now, ExpiresAt: now.Add(time.Minute)}, now)
	if v.Kind != "device" {
		t.Errorf("kind %q, want device", v.Kind)
	}
	var list, one strings.Builder
	if err := WriteList(&list, []Request{v}, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteRequest(&one, &v, false); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`tv\s+-?\s*device\s+pending`).MatchString(list.String()) || !regexp.MustCompile(`(?m)^mode\s+device$`).MatchString(one.String()) {
		t.Errorf("list:\n%s\nshow:\n%s", list.String(), one.String())
	}
}
