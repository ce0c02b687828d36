package admin

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/config"
	"github.com/cibaproxy/cibaproxy/internal/passkey"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/store/storetest"
)

func usersConfig(issuer string) *config.Config {
	c := &config.Config{Issuer: issuer}
	c.Upstream.Type = config.UpstreamLocal
	c.Upstream.Local.Users = []config.User{{Username: "alice", Subject: "alice"}, {Username: "bob", Subject: "sub-bob", ApprovalMethod: config.ApprovalPassword}}
	c.Approval.Method = config.ApprovalEither
	c.Approval.Passkeys.EnrollmentTTL = time.Hour
	return c
}

// usersImpls runs a test on LocalUsers directly and through the socket.
func usersImpls(t *testing.T, issuer string, run func(t *testing.T, l *LocalUsers, u Users)) {
	t.Run("local", func(t *testing.T) {
		l := &LocalUsers{Store: memory.New(), Config: usersConfig(issuer)}
		run(t, l, l)
	})
	t.Run("socket", func(t *testing.T) {
		l := &LocalUsers{Store: memory.New(), Config: usersConfig(issuer)}
		path := SocketPath(filepath.Join(t.TempDir(), "db"))
		ln, err := Listen(path)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: UsersHandler(l, slog.New(slog.DiscardHandler)), ReadHeaderTimeout: time.Minute}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		run(t, l, NewClient(path))
	})
}

func TestEnrollGivesAOneTimeLink(t *testing.T) {
	usersImpls(t, "https://ciba.example.com/", func(t *testing.T, l *LocalUsers, u Users) {
		e, err := u.Enroll(t.Context(), "alice")
		if err != nil {
			t.Fatal(err)
		}
		token, ok := strings.CutPrefix(e.URL, "https://ciba.example.com"+passkey.EnrolPath)
		if !ok || len(token) < 40 || e.Username != "alice" || time.Until(e.Expires) > time.Hour || time.Until(e.Expires) < 50*time.Minute {
			t.Fatalf("enrolment %+v", e)
		}
		en := &passkey.Enrolments{Records: l.Store}
		if got, err := en.Take(t.Context(), token); err != nil || got.Subject != "alice" {
			t.Fatalf("the link's token: %+v, %v", got, err)
		}
		if _, err := u.Enroll(t.Context(), "carol"); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrNoUser) {
			t.Fatalf("an unknown user: %v", err)
		}
		if _, err := u.Enroll(t.Context(), "bob"); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "password only") {
			t.Fatalf("a password-only user: %v", err)
		}
	})
}

func TestEnrollRefusesAnIPIssuer(t *testing.T) {
	usersImpls(t, "http://127.0.0.1:8080", func(t *testing.T, _ *LocalUsers, u Users) {
		if _, err := u.Enroll(t.Context(), "alice"); !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "localhost") {
			t.Fatalf("enrol with an IP issuer: %v", err)
		}
	})
}

func TestListUsersAndRemovePasskey(t *testing.T) {
	usersImpls(t, "https://ciba.example.com", func(t *testing.T, l *LocalUsers, u Users) {
		creds := &passkey.Credentials{Records: l.Store}
		for _, id := range []string{"one-credential", "two-credential"} {
			c := passkey.Credential{Created: time.Now()}
			c.WebAuthn.ID = []byte(id)
			if err := creds.Add(t.Context(), "alice", c); err != nil {
				t.Fatal(err)
			}
		}
		list, err := u.ListUsers(t.Context())
		if err != nil || len(list) != 2 {
			t.Fatalf("ListUsers = %+v, %v", list, err)
		}
		if list[0].Username != "alice" || len(list[0].Passkeys) != 2 || list[0].Method != "either" ||
			list[1].Subject != "sub-bob" || len(list[1].Passkeys) != 0 || list[1].Method != "password" {
			t.Fatalf("users %+v", list)
		}
		var b strings.Builder
		if err := WriteUsers(&b, list); err != nil || !strings.Contains(b.String(), list[0].Passkeys[0].ID) {
			t.Fatalf("table:\n%s", b.String())
		}
		id := list[0].Passkeys[0].ID
		if got, err := u.RemovePasskey(t.Context(), "alice", id[:9]); err != nil || got != id {
			t.Fatalf("RemovePasskey = %q, %v", got, err)
		}
		if _, err := u.RemovePasskey(t.Context(), "alice", id[:9]); err == nil || !strings.Contains(err.Error(), "no passkey") {
			t.Fatalf("removing it again: %v", err)
		}
		if left, _ := creds.List(t.Context(), "alice"); len(left) != 1 {
			t.Fatalf("%d passkeys left, want 1", len(left))
		}
	})
}

func TestShowPrintsTheApprovalRecord(t *testing.T) {
	rec := passkey.NewRecord("https://ciba.example.com", &ciba.AuthRequest{ID: "req-1", ClientID: "shop", Subject: "alice",
		Scopes: []string{"openid"}, BindingMessage: "W4SCT"}, []byte("credential-id"), now)
	payload, _ := json.Marshal(rec)
	jws := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","kid":"k1","typ":"cibaproxy-approval+jwt"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(payload) + ".c2ln"
	r := storetest.NewRequest()
	r.ApprovalRecord = jws
	v := View(r, now)
	if v.Approval == nil || v.Approval.JWS != jws || v.Approval.KeyID != "k1" || v.Approval.Claims == nil || v.Approval.Claims.AuthReqID != "req-1" {
		t.Fatalf("view %+v", v.Approval)
	}
	var b strings.Builder
	if err := WriteRequest(&b, &v, true); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"approved_with", "passkey " + base64.RawURLEncoding.EncodeToString([]byte("credential-id")), "user verified: yes", "approved_by", "signed by key k1 (ES256)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("requests show lacks %q:\n%s", want, b.String())
		}
	}
	var js strings.Builder
	if err := WriteJSON(&js, v); err != nil || !strings.Contains(js.String(), `"jws": "`+jws) {
		t.Fatalf("--json lacks the JWS: %v\n%s", err, js.String())
	}
}
