package webpush_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/channel/webpush"
	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	protocol "github.com/cibaproxy/cibaproxy/internal/webpush"
	"github.com/cibaproxy/cibaproxy/internal/webpush/webpushtest"
)

type fixture struct {
	ch   *webpush.Channel
	subs *protocol.Subscriptions
	ps   *webpushtest.Service
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{ps: webpushtest.New(t)}
	st := memory.New()
	vapid, err := protocol.LoadVAPID(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	f.subs = &protocol.Subscriptions{Records: st, Max: 5}
	f.ch = &webpush.Channel{Subscriptions: f.subs, Sender: &protocol.Sender{Client: webpushtest.Client(), VAPID: vapid, Subject: "mailto:a@b.example"},
		TTL: time.Minute, Logger: slog.New(slog.DiscardHandler)}
	return f
}

// subscribe adds a browser of alice's with the endpoint at path.
func (f *fixture) subscribe(t *testing.T, path string) {
	_, sub := f.ps.Subscribe(t, path)
	if err := f.subs.Add(t.Context(), "alice", sub); err != nil {
		t.Fatal(err)
	}
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
	f.subscribe(t, "/p/1")
	if err := f.ch.Send(t.Context(), req, client, notice); err != nil {
		t.Fatal(err)
	}
	m := f.ps.MustWait(t, 10*time.Second)
	plain, err := m.Plain, m.DecryptErr
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
	f.ps.SetStatus(http.StatusGone)
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
	f.ps.SetStatus(http.StatusServiceUnavailable)
	err := f.ch.Send(t.Context(), req, client, notice)
	var perm *ciba.PermanentError
	if err == nil || errors.As(err, &perm) || errors.Is(err, ciba.ErrUnreachable) {
		t.Fatalf("503: %v, want a retryable failure", err)
	}
	if l, _ := f.subs.List(t.Context(), "alice"); len(l) != 1 {
		t.Fatalf("a 503 removed the subscription: %+v", l)
	}
}

// TestSubscribeRacingAGoneRemovalIsKept: while a send removes a browser
// the push service says is gone, another browser subscribes; the new one
// is kept, the gone one is not.
func TestSubscribeRacingAGoneRemovalIsKept(t *testing.T) {
	for round := range 10 {
		f := newFixture(t)
		f.subscribe(t, "/p/old")
		f.ps.SetPathStatus("/p/old", http.StatusGone)
		_, fresh := f.ps.Subscribe(t, "/p/new")
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			<-start
			_ = f.ch.Send(t.Context(), req, client, notice) // 410, or delivered to the new one too
		})
		wg.Go(func() {
			<-start
			if err := f.subs.Add(t.Context(), "alice", fresh); err != nil {
				t.Errorf("Add: %v", err)
			}
		})
		close(start)
		wg.Wait()
		l, err := f.subs.List(t.Context(), "alice")
		if err != nil || len(l) != 1 || l[0].Endpoint != fresh.Endpoint {
			t.Fatalf("round %d: after a subscribe racing a 410 removal: %+v, %v; want only the new subscription", round, l, err)
		}
	}
}
