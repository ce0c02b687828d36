package passkey_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/passkey"
	"github.com/cibaproxy/cibaproxy/internal/passkey/passkeytest"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

const origin = "https://ciba.example.com"

func newRP(t *testing.T) *passkey.RP {
	t.Helper()
	rp, err := passkey.NewRP(origin, "", "Example")
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

// enrol registers a with rp for alice and stores the credential.
func enrol(t *testing.T, rp *passkey.RP, creds *passkey.Credentials, a *passkeytest.Authenticator) {
	t.Helper()
	have, _ := creds.List(t.Context(), "alice")
	opts, err := rp.EnrolOptions("alice", "alice", "token-1", have)
	if err != nil {
		t.Fatal(err)
	}
	body, err := a.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rp.FinishEnrol("alice", "alice", "token-1", have, body)
	if err != nil {
		t.Fatalf("FinishEnrol: %v", err)
	}
	if err := creds.Add(t.Context(), "alice", passkey.Credential{WebAuthn: *c, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func request(id, binding string) *ciba.AuthRequest {
	return &ciba.AuthRequest{ID: id, ApprovalID: "ap-" + id, ClientID: "shop", Subject: "alice",
		BindingMessage: binding, Scopes: []string{"openid", "email"}}
}

func TestChallengeIsBoundToEveryFieldTheUserApproves(t *testing.T) {
	base := request("req-A", "W4SCT")
	base.AuthzDetails = `[{"type":"payment_initiation","amount":"10"}]`
	want := passkey.Challenge(base)
	if !bytes.Equal(want, passkey.Challenge(base.Clone())) {
		t.Fatal("the challenge of the same request differs")
	}
	for name, change := range map[string]func(r *ciba.AuthRequest){
		"auth_req_id":           func(r *ciba.AuthRequest) { r.ID = "req-B" },
		"approval id":           func(r *ciba.AuthRequest) { r.ApprovalID = "other" },
		"client":                func(r *ciba.AuthRequest) { r.ClientID = "other" },
		"subject":               func(r *ciba.AuthRequest) { r.Subject = "bob" },
		"binding message":       func(r *ciba.AuthRequest) { r.BindingMessage = "OTHER" },
		"scope":                 func(r *ciba.AuthRequest) { r.Scopes = []string{"openid"} },
		"authorization_details": func(r *ciba.AuthRequest) { r.AuthzDetails = `[{"type":"payment_initiation","amount":"1000"}]` },
		// Length prefixes: moving a character between fields changes it.
		"field boundaries": func(r *ciba.AuthRequest) { r.ClientID, r.Subject = "shopa", "lice" },
	} {
		r := base.Clone()
		change(r)
		if bytes.Equal(want, passkey.Challenge(r)) {
			t.Errorf("changing the %s leaves the challenge the same", name)
		}
	}
}

func TestAssertionForRequestAIsRefusedForRequestB(t *testing.T) {
	rp, creds := newRP(t), &passkey.Credentials{Records: memory.New()}
	a := passkeytest.New(origin)
	enrol(t, rp, creds, a)
	have, _ := creds.List(t.Context(), "alice")
	reqA, reqB := request("req-A", "AAAA"), request("req-B", "BBBB")
	optsA, err := rp.AssertOptions("alice", "alice", have, passkey.Challenge(reqA))
	if err != nil {
		t.Fatal(err)
	}
	assertionA, err := a.Get(optsA)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.FinishAssert("alice", "alice", have, passkey.Challenge(reqB), assertionA); !errors.Is(err, passkey.ErrRefused) {
		t.Fatalf("A's assertion on B: %v, want ErrRefused", err)
	}
	c, err := rp.FinishAssert("alice", "alice", have, passkey.Challenge(reqA), assertionA)
	if err != nil {
		t.Fatalf("A's assertion on A: %v", err)
	}
	if c.Authenticator.SignCount != 1 {
		t.Fatalf("sign count %d, want 1", c.Authenticator.SignCount)
	}
}

func TestAssertionWithoutUserVerificationIsRefused(t *testing.T) {
	rp, creds := newRP(t), &passkey.Credentials{Records: memory.New()}
	a := passkeytest.New(origin)
	enrol(t, rp, creds, a)
	have, _ := creds.List(t.Context(), "alice")
	ch := passkey.Challenge(request("req-A", "X"))
	opts, _ := rp.AssertOptions("alice", "alice", have, ch)
	a.NoUV = true
	body, _ := a.Get(opts)
	if _, err := rp.FinishAssert("alice", "alice", have, ch, body); !errors.Is(err, passkey.ErrRefused) {
		t.Fatalf("assertion without UV: %v, want ErrRefused", err)
	}
}

func TestEnrolmentWithoutUserVerificationIsRefused(t *testing.T) {
	rp := newRP(t)
	a := passkeytest.New(origin)
	a.NoUV = true
	opts, _ := rp.EnrolOptions("alice", "alice", "tok", nil)
	body, _ := a.Create(opts)
	if _, err := rp.FinishEnrol("alice", "alice", "tok", nil, body); !errors.Is(err, passkey.ErrRefused) {
		t.Fatalf("registration without UV: %v, want ErrRefused", err)
	}
	// Nor does a registration made for another link verify.
	a.NoUV = false
	body, _ = a.Create(opts)
	if _, err := rp.FinishEnrol("alice", "alice", "other-token", nil, body); !errors.Is(err, passkey.ErrRefused) {
		t.Fatalf("registration for another link: %v, want ErrRefused", err)
	}
}

func TestSignCountThatGoesBackIsRefused(t *testing.T) {
	rp, creds := newRP(t), &passkey.Credentials{Records: memory.New()}
	a := passkeytest.New(origin)
	enrol(t, rp, creds, a)
	ch := passkey.Challenge(request("req-A", "X"))
	have, _ := creds.List(t.Context(), "alice")
	a.SignCount = 9
	body, _ := a.Assert(rp.ID(), b64(ch))
	c, err := rp.FinishAssert("alice", "alice", have, ch, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := creds.Used(t.Context(), "alice", c, time.Now()); err != nil {
		t.Fatal(err)
	}
	have, _ = creds.List(t.Context(), "alice")
	a.SignCount = 4 // a clone that was left behind
	body, _ = a.Assert(rp.ID(), b64(ch))
	if _, err := rp.FinishAssert("alice", "alice", have, ch, body); !errors.Is(err, passkey.ErrRefused) {
		t.Fatalf("a sign count that went back: %v, want ErrRefused", err)
	}
}

func TestCredentialsSeveralPerUserAndRemove(t *testing.T) {
	rp, creds := newRP(t), &passkey.Credentials{Records: memory.New()}
	a, b := passkeytest.New(origin), passkeytest.New(origin)
	enrol(t, rp, creds, a)
	enrol(t, rp, creds, b)
	list, err := creds.List(t.Context(), "alice")
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %d, %v; want 2", len(list), err)
	}
	if _, err := creds.Remove(t.Context(), "alice", "short"); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("Remove with a short prefix: %v", err)
	}
	if got, err := creds.Remove(t.Context(), "alice", a.CredentialID()[:10]); err != nil || got != a.CredentialID() {
		t.Fatalf("Remove = %q, %v", got, err)
	}
	list, _ = creds.List(t.Context(), "alice")
	if len(list) != 1 || list[0].ID() != b.CredentialID() {
		t.Fatalf("after Remove: %+v", list)
	}
	if list, _ := creds.List(t.Context(), "bob"); len(list) != 0 {
		t.Fatalf("bob has %d passkeys", len(list))
	}
}

func TestConcurrentUsesKeepEveryChange(t *testing.T) {
	rp, creds := newRP(t), &passkey.Credentials{Records: memory.New()}
	auths := make([]*passkeytest.Authenticator, 5)
	for i := range auths {
		auths[i] = passkeytest.New(origin)
		enrol(t, rp, creds, auths[i])
	}
	list, _ := creds.List(t.Context(), "alice")
	var wg sync.WaitGroup
	for i := range list {
		wg.Go(func() {
			c := list[i].WebAuthn
			c.Authenticator.SignCount = uint32(100 + i)
			if err := creds.Used(context.Background(), "alice", &c, time.Now()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	list, _ = creds.List(t.Context(), "alice")
	for i, c := range list {
		if c.WebAuthn.Authenticator.SignCount != uint32(100+i) || c.LastUsed.IsZero() {
			t.Errorf("credential %d: sign count %d, last used %v: a concurrent change was lost", i, c.WebAuthn.Authenticator.SignCount, c.LastUsed)
		}
	}
}

func TestEnrolmentLinkIsSingleUseAndExpires(t *testing.T) {
	st := memory.New()
	now := time.Now()
	en := &passkey.Enrolments{Records: st, Now: func() time.Time { return now }}
	tok, _, err := en.Issue(t.Context(), "alice", "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := en.Peek(t.Context(), tok); err != nil || got.Subject != "alice" {
		t.Fatalf("Peek = %+v, %v", got, err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := en.Take(context.Background(), tok); err == nil {
				won.Add(1)
			} else if !errors.Is(err, passkey.ErrNotFound) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 20 takers used the link, want 1", won.Load())
	}
	if _, err := en.Peek(t.Context(), tok); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("Peek of a used link: %v", err)
	}
	tok2, _, _ := en.Issue(t.Context(), "alice", "alice", time.Hour)
	now = now.Add(time.Hour) // the clock passes the link's expiry
	if _, err := en.Take(t.Context(), tok2); !errors.Is(err, passkey.ErrNotFound) {
		t.Fatalf("Take of an expired link: %v", err)
	}
}

func TestRPIDMustBeADomainName(t *testing.T) {
	if _, err := passkey.NewRP("http://127.0.0.1:8080", "", ""); err == nil {
		t.Fatal("an IP address was taken as the relying party id")
	}
	if _, err := passkey.NewRP("http://localhost:8080", "", ""); err != nil {
		t.Fatalf("localhost: %v", err)
	}
}
