package httpapi

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/ciba"
	"github.com/cibaproxy/cibaproxy/internal/seal"
	"github.com/cibaproxy/cibaproxy/internal/store/memory"
)

// basicAuth authenticates the bank client by HTTP Basic, as the benchmark's
// stand-in for clientauth (measured on its own in that package).
type basicAuth struct{}

func (basicAuth) Authenticate(_ context.Context, r *http.Request, _ url.Values, _ string) (*ciba.Client, error) {
	if id, secret, ok := r.BasicAuth(); ok && id == bank.ID && secret == "bank-secret" {
		return bank, nil
	}
	return nil, ciba.Errorf(ciba.CodeInvalidClient, "client authentication failed")
}
func (basicAuth) RequestObject(context.Context, *ciba.Client, string) (map[string]any, error) {
	return nil, nil
}
func (basicAuth) RequiresSignedRequest(*ciba.Client) bool { return false }

// discardWriter is a ResponseWriter that keeps only the status, reused
// across iterations so the benchmark measures the handler, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(s int)           { w.status = s }

type benchClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *benchClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *benchClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// benchPoll measures one poll of a pending request through the whole
// handler chain (request id, access log, metrics hook, form, client
// authentication, the service, the answer), with others pending beside it.
// advance moves the clock between polls: by the interval, every poll is on
// time (authorization_pending); by zero, every poll but the first is early
// (slow_down).
func benchPoll(b *testing.B, advance time.Duration) {
	key := make([]byte, 32)
	rand.Read(key)
	ring, _ := seal.NewRing(seal.Key{ID: "k", Secret: key})
	clock := &benchClock{t: time.Now()}
	st := memory.New()
	svc, err := ciba.NewService(ciba.Config{
		// Long enough for any b.N of one-second steps.
		DefaultExpiry: 1 << 20 * time.Hour, MaxExpiry: 1 << 20 * time.Hour, Interval: time.Second, BindingMessageMax: 20,
		PollTolerance: 500 * time.Millisecond,
	}, ciba.Deps{
		Store: st, Upstream: fakeUpstream{}, Minter: fakeUpstream{}, Sealer: ring, Notifier: nopNotifier{},
		Clients: func(string) (*ciba.Client, bool) { return bank, true }, CallbackKey: key, Now: clock.now,
	})
	if err != nil {
		b.Fatal(err)
	}
	var id string
	for i := range 1000 {
		resp, err := svc.Authorize(context.Background(), bank, ciba.AuthParams{Scope: "openid email", Hint: ciba.Hint{LoginHint: "alice"}})
		if err != nil {
			b.Fatal(err)
		}
		if i == 500 {
			id = resp.AuthReqID
		}
	}
	srv := &Server{Issuer: "https://ciba.example", Service: svc, Clients: basicAuth{}, Observer: nopObserver{}, Logger: discard(),
		Discovery: func(context.Context) (map[string]any, error) { return nil, nil }}
	h := srv.Handler()
	body := "grant_type=" + url.QueryEscape(GrantCIBA) + "&auth_req_id=" + id
	w := &discardWriter{h: http.Header{}}
	want := http.StatusBadRequest
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		clock.add(advance)
		r, _ := http.NewRequest(http.MethodPost, "/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.ContentLength = int64(len(body))
		r.SetBasicAuth(bank.ID, "bank-secret")
		clear(w.h)
		w.status = 0
		h.ServeHTTP(w, r)
		if w.status != want {
			b.Fatalf("status %d", w.status)
		}
	}
	b.StopTimer()
	// The first poll is on time: with b.N > 1 the last was slow_down,
	// and Retry-After says the interval grown by each, at most an hour.
	if want := strconv.Itoa(min(1+5*(b.N-1), 3600)); advance == 0 && b.N > 1 && w.h.Get("Retry-After") != want {
		b.Fatalf("slow_down answered Retry-After %q, want %s", w.h.Get("Retry-After"), want)
	}
	// One more poll in the same conditions answers what the loop measured.
	clock.add(advance)
	wantCode := ciba.CodeSlowDown
	if advance > 0 {
		wantCode = ciba.CodeAuthorizationPending
	}
	if _, err := svc.Poll(context.Background(), bank, id); ciba.AsError(err).Code != wantCode {
		b.Fatalf("the polls answered %v, want %s", err, wantCode)
	}
}

type nopObserver struct{}

func (nopObserver) ObserveRequest(string, string, string, time.Duration) {}

func BenchmarkPollPending(b *testing.B)  { benchPoll(b, time.Second) }
func BenchmarkPollSlowDown(b *testing.B) { benchPoll(b, 0) }
