package webpush_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/channel/webpush"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	protocol "github.com/cibaproxy/cibaproxy/internal/webpush"
)

type fixture struct {
	ch     *webpush.Channel
	subs   *protocol.Subscriptions
	status atomic.Int32
	bodies chan []byte
	srv    *httptest.Server
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{bodies: make(chan []byte, 8)}
	f.status.Store(http.StatusCreated)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.bodies <- b
		w.WriteHeader(int(f.status.Load()))
	}))
	t.Cleanup(f.srv.Close)
	st := memory.New()
	vapid, err := protocol.LoadVAPID(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	client := outbound.New(5*time.Second, outbound.Guard(outbound.Policy{AllowHTTP: true, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}))
	f.subs = &protocol.Subscriptions{Records: st, Max: 5}
	f.ch = &webpush.Channel{Subscriptions: f.subs, Sender: &protocol.Sender{Client: client, VAPID: vapid, Subject: "mailto:a@b.example"},
		TTL: time.Minute, Logger: slog.New(slog.DiscardHandler)}
	return f
}

// subscribe adds a browser of alice's and returns its private key and auth.
func (f *fixture) subscribe(t *testing.T, path string) (*ecdh.PrivateKey, []byte) {
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	if err := f.subs.Add(t.Context(), "alice", protocol.Subscription{Endpoint: f.srv.URL + path, P256DH: k.PublicKey().Bytes(), Auth: auth}); err != nil {
		t.Fatal(err)
	}
	return k, auth
}

var (
	req    = &ciba.AuthRequest{ID: "rid", ApprovalID: "aid", Subject: "alice", BindingMessage: "Code 7Q4X", ExpiresAt: time.Now().Add(5 * time.Minute)}
	client = &ciba.Client{ID: "till", Name: "Corner Shop Till"}
	notice = ciba.Notice{ApproveURL: "https://ciba.example/approve/aid", CallbackToken: "secret-callback"}
)

// TestNoSubscriptionIsUnreachable: the next channel is tried.
func TestNoSubscriptionIsUnreachable(t *testing.T) {
	f := newFixture(t)
	if err := f.ch.Send(t.Context(), req, client, notice); !errors.Is(err, ciba.ErrUnreachable) {
		t.Fatalf("a user with no browser: %v, want ErrUnreachable", err)
	}
}

// TestNotificationSaysWhoAsksAndLinksToThePage: the browser decrypts the
// client name, the binding message and the approval link, and nothing of
// the callback bearer.
func TestNotificationSaysWhoAsksAndLinksToThePage(t *testing.T) {
	f := newFixture(t)
	k, auth := f.subscribe(t, "/p/1")
	if err := f.ch.Send(t.Context(), req, client, notice); err != nil {
		t.Fatal(err)
	}
	plain, err := protocol.Decrypt(<-f.bodies, k, auth)
	if err != nil {
		t.Fatal(err)
	}
	var n webpush.Notification
	if err := json.Unmarshal(plain, &n); err != nil {
		t.Fatal(err)
	}
	if n.ClientName != client.Name || n.BindingMessage != req.BindingMessage || n.URL != notice.ApproveURL ||
		!strings.Contains(n.Title, client.Name) || !strings.Contains(n.Body, req.BindingMessage) || n.Tag == "" || strings.Contains(n.Tag, "aid") {
		t.Fatalf("notification: %+v", n)
	}
	if strings.Contains(string(plain), notice.CallbackToken) {
		t.Fatal("the notification carries the callback bearer")
	}
}

// TestGoneSubscriptionIsRemovedAndPermanent: 410 removes the browser, and
// with no other browser the failure is permanent.
func TestGoneSubscriptionIsRemovedAndPermanent(t *testing.T) {
	f := newFixture(t)
	f.subscribe(t, "/p/1")
	f.status.Store(http.StatusGone)
	err := f.ch.Send(t.Context(), req, client, notice)
	var perm *ciba.PermanentError
	if !errors.As(err, &perm) {
		t.Fatalf("410: %v, want a permanent failure", err)
	}
	if strings.Contains(err.Error(), "/p/1") {
		t.Errorf("the error names the endpoint's path: %v", err)
	}
	if l, _ := f.subs.List(t.Context(), "alice"); len(l) != 0 {
		t.Fatalf("the gone subscription is kept: %+v", l)
	}
	if err := f.ch.Send(t.Context(), req, client, notice); !errors.Is(err, ciba.ErrUnreachable) {
		t.Fatalf("after the removal: %v, want ErrUnreachable", err)
	}
}

// TestPushServiceDownIsRetried: a 503 is neither permanent nor unreachable.
func TestPushServiceDownIsRetried(t *testing.T) {
	f := newFixture(t)
	f.subscribe(t, "/p/1")
	f.status.Store(http.StatusServiceUnavailable)
	err := f.ch.Send(t.Context(), req, client, notice)
	var perm *ciba.PermanentError
	if err == nil || errors.As(err, &perm) || errors.Is(err, ciba.ErrUnreachable) {
		t.Fatalf("503: %v, want a retryable failure", err)
	}
	if l, _ := f.subs.List(t.Context(), "alice"); len(l) != 1 {
		t.Fatalf("a 503 removed the subscription: %+v", l)
	}
}
