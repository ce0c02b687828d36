package idp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/fault"
	"github.com/cibaproxy/cibaproxy/internal/upstream/idp/idptest"
)

// testIdP serves a discovery document and a probe endpoint on 127.0.0.1
// (httptest), each of which can be taken down, and counts their requests.
type testIdP struct {
	srv *httptest.Server

	mu            sync.Mutex
	discoveryDown bool // discovery answers 503
	probeDown     bool // the probe endpoint answers 503
	discoveryHits int
	probeHits     int
	hold          chan struct{} // non-nil: discovery waits for it to close
	issuer        string        // non-empty: the issuer the document claims
	body          string        // non-empty: discovery answers 500 with this body
}

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	op := &testIdP{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		op.mu.Lock()
		op.discoveryHits++
		down, hold, iss, body := op.discoveryDown, op.hold, op.issuer, op.body
		op.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
			}
		}
		if down {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		if body != "" {
			http.Error(w, body, http.StatusInternalServerError)
			return
		}
		if iss == "" {
			iss = op.srv.URL
		}
		idptest.WriteJSON(w, http.StatusOK, map[string]string{"issuer": iss, "jwks_uri": op.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		op.mu.Lock()
		op.probeHits++
		down := op.probeDown
		op.mu.Unlock()
		if down {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"keys":[{}]}`))
	})
	op.srv = httptest.NewServer(mux)
	t.Cleanup(op.srv.Close)
	return op
}

func (op *testIdP) set(f func(op *testIdP)) {
	op.mu.Lock()
	defer op.mu.Unlock()
	f(op)
}

func (op *testIdP) hits() (discovery, probe int) {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.discoveryHits, op.probeHits
}

// doc is what the test discovery yields.
type doc struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// get fetches url and fails unless it answers 200; errors wrap
// fault.ErrUnavailable, as the upstreams' do.
func get(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Unavailable(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return Unavailable(fmt.Errorf("test: fetch %s: %w", url, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Unavailable(fmt.Errorf("test: fetch %s: HTTP %d", url, resp.StatusCode))
	}
	if v == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// newTestLoader returns a Loader of op's discovery document, probing its
// JWKS, with a settable clock; edit changes the configuration.
func newTestLoader(t *testing.T, op *testIdP, edit func(*Config[doc])) (*Loader[doc], *idptest.Clock) {
	t.Helper()
	c := DefaultHTTPClient()
	clk := idptest.NewClock()
	cfg := Config[doc]{
		Prefix: "test",
		Issuer: op.srv.URL,
		Discover: func(ctx context.Context) (*doc, error) {
			var d doc
			if err := get(ctx, c, op.srv.URL+"/.well-known/openid-configuration", &d); err != nil {
				return nil, err
			}
			return &d, nil
		},
		Probe: func(ctx context.Context, d *doc) error { return get(ctx, c, d.JWKSURI, nil) },
		Now:   clk.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	return New(cfg), clk
}

func TestDiscoveryIsLazyAndRetriedWithBackoff(t *testing.T) {
	op := newTestIdP(t)
	op.set(func(op *testIdP) { op.discoveryDown = true })
	var logs bytes.Buffer
	l, clk := newTestLoader(t, op, func(c *Config[doc]) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	ctx := context.Background()
	if d, _ := op.hits(); d != 0 {
		t.Fatal("New called the identity provider")
	}

	if _, err := l.Get(ctx); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("Get with the IdP down = %v, want ErrUnavailable", err)
	}
	if err := l.Ready(ctx); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("Ready with the IdP down = %v, want ErrUnavailable", err)
	}
	if l.Loaded() != nil {
		t.Fatal("Loaded is set before discovery succeeded")
	}
	op.set(func(op *testIdP) { op.discoveryDown = false })
	if _, err := l.Get(ctx); !errors.Is(err, fault.ErrUnavailable) || !strings.Contains(err.Error(), "HTTP 503") {
		t.Fatalf("Get within the backoff = %v, want the last error", err)
	}
	if d, _ := op.hits(); d != 1 {
		t.Fatalf("%d discovery requests within the backoff, want 1", d)
	}

	clk.Advance(RetryMin)
	d, err := l.Get(ctx)
	if err != nil || d.Issuer != op.srv.URL {
		t.Fatalf("Get after the backoff, IdP up = %v, %v", d, err)
	}
	if l.Loaded() != d {
		t.Fatal("Loaded does not return the discovered IdP")
	}
	// Once loaded, the document is not fetched again, even with the IdP down.
	op.set(func(op *testIdP) { op.discoveryDown = true })
	if again, err := l.Get(ctx); err != nil || again != d {
		t.Fatalf("Get after discovery = %v, %v; want the loaded IdP", again, err)
	}
	if n, _ := op.hits(); n != 2 {
		t.Fatalf("%d discovery requests, want 2", n)
	}
	for _, want := range []string{"test: identity provider not available; retrying on use", "failures=1", "retry_after=1s",
		"test: identity provider available again", "issuer=" + op.srv.URL} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestAFirstSuccessIsLoggedAsDiscovered(t *testing.T) {
	op := newTestIdP(t)
	var logs bytes.Buffer
	l, _ := newTestLoader(t, op, func(c *Config[doc]) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	if _, err := l.Get(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "test: identity provider discovered") || strings.Contains(logs.String(), "available again") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

func TestTheBackoffGrowsAndIsBounded(t *testing.T) {
	op := newTestIdP(t)
	op.set(func(op *testIdP) { op.discoveryDown = true })
	l, clk := newTestLoader(t, op, nil)
	for i := 1; i < 10; i++ {
		if _, err := l.Get(context.Background()); !errors.Is(err, fault.ErrUnavailable) {
			t.Fatalf("Get = %v", err)
		}
		wait := l.nextTry.Sub(clk.Now())
		if want := min(RetryMin<<(i-1), RetryMax); wait != want {
			t.Fatalf("after %d failures: next try in %v, want %v", i, wait, want)
		}
		clk.Advance(wait)
	}
	if d, _ := op.hits(); d != 9 {
		t.Fatalf("%d discovery requests, want 9", d)
	}
}

func TestConcurrentCallersShareOneDiscoveryAttempt(t *testing.T) {
	op := newTestIdP(t)
	op.set(func(op *testIdP) { op.discoveryDown = true })
	l, _ := newTestLoader(t, op, nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := l.Ready(context.Background()); !errors.Is(err, fault.ErrUnavailable) {
				t.Errorf("Ready = %v, want ErrUnavailable", err)
			}
		})
	}
	wg.Wait()
	if d, _ := op.hits(); d != 1 {
		t.Fatalf("%d discovery requests for 20 concurrent callers, want 1", d)
	}
}

func TestAWaitingCallerGivesUpWithItsContext(t *testing.T) {
	op := newTestIdP(t)
	hold := make(chan struct{})
	op.set(func(op *testIdP) { op.hold = hold })
	l, _ := newTestLoader(t, op, nil)
	first := make(chan error, 1)
	go func() {
		_, err := l.Get(context.Background())
		first <- err
	}()
	for i := 0; ; i++ { // wait until the first caller's attempt reached the IdP
		if d, _ := op.hits(); d == 1 {
			break
		}
		if i == 10000 {
			t.Fatal("the first caller's discovery request did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Get(ctx)
	if !errors.Is(err, fault.ErrUnavailable) || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "test: waiting for discovery of "+op.srv.URL) {
		t.Fatalf("Get with an ended context while another attempt runs = %v", err)
	}
	close(hold)
	if err := <-first; err != nil {
		t.Fatalf("the first caller's Get: %v", err)
	}
}

func TestReadyProbesAtMostOncePerPeriod(t *testing.T) {
	for _, tc := range []struct {
		name            string
		discoveryProbes bool
		probesAtLoad    int // probes by the first Ready after discovery
	}{
		{"discovery counts as a probe", true, 0},
		{"discovery does not count as a probe", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := newTestIdP(t)
			l, clk := newTestLoader(t, op, func(c *Config[doc]) { c.DiscoveryProbes = tc.discoveryProbes })
			ctx := context.Background()
			if err := l.Ready(ctx); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			if _, p := op.hits(); p != tc.probesAtLoad {
				t.Fatalf("%d probes by the first Ready, want %d", p, tc.probesAtLoad)
			}
			op.set(func(op *testIdP) { op.probeDown = true })
			if err := l.Ready(ctx); err != nil {
				t.Fatalf("Ready within the probe period = %v, want the last result", err)
			}
			if _, p := op.hits(); p != tc.probesAtLoad {
				t.Fatal("Ready called the IdP within the probe period")
			}
			clk.Advance(ReadyProbeEvery)
			if err := l.Ready(ctx); !errors.Is(err, fault.ErrUnavailable) {
				t.Fatalf("Ready with the IdP gone = %v, want ErrUnavailable", err)
			}
			op.set(func(op *testIdP) { op.probeDown = false })
			if err := l.Ready(ctx); !errors.Is(err, fault.ErrUnavailable) {
				t.Fatalf("Ready within the probe period = %v, want the last failure", err)
			}
			clk.Advance(ReadyProbeEvery)
			if err := l.Ready(ctx); err != nil {
				t.Fatalf("Ready with the IdP back: %v", err)
			}
			if d, p := op.hits(); d != 1 || p != tc.probesAtLoad+2 {
				t.Fatalf("%d discovery requests and %d probes, want 1 and %d", d, p, tc.probesAtLoad+2)
			}
		})
	}
}

func TestLoadedRunsOnceBeforeTheIdPIsPublished(t *testing.T) {
	op := newTestIdP(t)
	var l *Loader[doc]
	calls := 0
	l, _ = newTestLoader(t, op, func(c *Config[doc]) {
		c.Loaded = func(d *doc) {
			calls++
			if l.Loaded() != nil {
				t.Error("the IdP was published before Loaded ran")
			}
			if d.Issuer != op.srv.URL {
				t.Errorf("Loaded got %+v", d)
			}
		}
	})
	for range 3 {
		if _, err := l.Get(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("Loaded ran %d times, want 1", calls)
	}
}

func TestDefaultHTTPClientDoesNotFollowRedirects(t *testing.T) {
	followed := false
	mux := http.NewServeMux()
	mux.HandleFunc("GET /from", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/to", http.StatusFound) })
	mux.HandleFunc("GET /to", func(http.ResponseWriter, *http.Request) { followed = true })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c := DefaultHTTPClient()
	if c.Timeout <= 0 {
		t.Fatal("the default client has no timeout")
	}
	resp, err := c.Get(srv.URL + "/from")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusFound || followed {
		t.Fatalf("status %d, followed %v: the redirect was followed", resp.StatusCode, followed)
	}
}

func TestAbsURL(t *testing.T) {
	for s, ok := range map[string]bool{
		"https://idp.example":            true,
		"http://127.0.0.1:8080/realms/x": true,
		"":                               false,
		"/approve/callback":              false,
		"ftp://idp.example":              false,
		"https://":                       false,
		"https://idp.example?x=1":        false,
		"https://idp.example#f":          false,
		"https://idp.example/%zz":        false,
	} {
		err := AbsURL("test", "issuer", s)
		if (err == nil) != ok {
			t.Errorf("AbsURL(%q) = %v, want ok=%v", s, err, ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "test: the issuer ") {
			t.Errorf("AbsURL(%q) = %q: not prefixed and named", s, err)
		}
	}
}

func TestUnavailableKeepsTheCauseAndItsMessage(t *testing.T) {
	cause := fmt.Errorf("test: fetch: %w", context.DeadlineExceeded)
	err := Unavailable(cause)
	if !errors.Is(err, fault.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || err.Error() != cause.Error() {
		t.Fatalf("Unavailable(%v) = %v", cause, err)
	}
}

func TestShorten(t *testing.T) {
	if s := strings.Repeat("x", 300); Shorten(s) != s {
		t.Fatal("a 300-byte message was shortened")
	}
	if got := Shorten(strings.Repeat("x", 301)); got != strings.Repeat("x", 300)+"..." {
		t.Fatalf("Shorten(301 bytes) = %d bytes", len(got))
	}
}

func TestFetch(t *testing.T) {
	op := newTestIdP(t)
	c := DefaultHTTPClient()
	ctx := context.Background()

	gp, err := Fetch(ctx, "test", c, op.srv.URL)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	var d doc
	if err := gp.Claims(&d); err != nil || d.JWKSURI != op.srv.URL+"/jwks" {
		t.Fatalf("the fetched document = %+v, %v", d, err)
	}
	if err := IssuerMismatch("test", err); err != nil {
		t.Fatalf("IssuerMismatch(nil) = %v", err)
	}

	op.set(func(op *testIdP) { op.issuer = op.srv.URL + "/" })
	_, err = Fetch(ctx, "test", c, op.srv.URL)
	if !errors.Is(err, fault.ErrUnavailable) || !strings.HasPrefix(err.Error(), "test: discovery of "+op.srv.URL+": ") {
		t.Fatalf("Fetch with another issuer = %v, want an unavailable error", err)
	}
	want := fmt.Sprintf("test: issuer %q: the identity provider calls itself %q; set issuer to exactly that", op.srv.URL, op.srv.URL+"/")
	if got := IssuerMismatch("test", err); got == nil || got.Error() != want {
		t.Fatalf("IssuerMismatch = %v, want %q", got, want)
	}

	op.set(func(op *testIdP) { op.issuer, op.discoveryDown = "", true })
	_, err = Fetch(ctx, "test", c, op.srv.URL)
	if !errors.Is(err, fault.ErrUnavailable) || IssuerMismatch("test", err) != nil {
		t.Fatalf("Fetch with the IdP down = %v, want an unavailable error that is no mismatch", err)
	}

	// An answer's body quoted in the error is bounded.
	op.set(func(op *testIdP) { op.discoveryDown, op.body = false, strings.Repeat("b", 1000) })
	_, err = Fetch(ctx, "test", c, op.srv.URL)
	prefix := "test: discovery of " + op.srv.URL + ": "
	if !errors.Is(err, fault.ErrUnavailable) || !strings.HasSuffix(err.Error(), "bbb...") || len(err.Error()) != len(prefix)+303 {
		t.Fatalf("Fetch with a long error body = %q (%d bytes), want a shortened unavailable error", err, len(err.Error()))
	}
}

func TestDocumentReturnsAFreshObject(t *testing.T) {
	raw := []byte(`{"issuer":"https://idp.example","scopes_supported":["openid"]}`)
	m, err := Document("test", "https://idp.example", raw)
	if err != nil || m["issuer"] != "https://idp.example" {
		t.Fatalf("Document = %v, %v", m, err)
	}
	m["issuer"] = "changed"
	if again, _ := Document("test", "https://idp.example", raw); again["issuer"] != "https://idp.example" {
		t.Fatal("Document returned a shared object")
	}
	if _, err := Document("test", "https://idp.example", []byte("[")); err == nil || !strings.HasPrefix(err.Error(), "test: decode the discovery document of https://idp.example: ") {
		t.Fatalf("Document of a broken document = %v", err)
	}
}
