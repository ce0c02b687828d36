package httpapi

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/store/memory"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// subscriptions records Add.
type subscriptions struct {
	mu  sync.Mutex
	got map[string][]webpush.Subscription
}

func (s *subscriptions) Add(_ context.Context, user string, sub webpush.Subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got[user] = append(s.got[user], sub)
	return nil
}

func webAppServer(t *testing.T) (*Approval, *subscriptions, *httptest.Server) {
	subs := &subscriptions{got: map[string][]webpush.Subscription{}}
	a := &Approval{Logger: discard(), Push: &WebPush{PublicKey: "BKEY", Subscriptions: subs, Records: memory.New(), Origin: "https://ciba.example"}}
	mux := http.NewServeMux()
	a.registerApp(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return a, subs, srv
}

func subscriptionJSON() string {
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	return `{"endpoint":"https://push.example/x","keys":{"p256dh":"` + base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()) +
		`","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}`
}

// TestSubscribeTakesTheApprovedPagesTokenOnce: a token the Approved page
// carried subscribes the browser for the user who approved, once; a
// made-up token, a second use, another origin, a form body or a bad
// subscription are refused with an RFC 6749-style error.
func TestSubscribeTakesTheApprovedPagesTokenOnce(t *testing.T) {
	a, subs, srv := webAppServer(t)
	offer := a.Push.offer(t.Context(), "sub-alice", discard())
	if offer == nil || offer.Key != "BKEY" {
		t.Fatalf("offer: %+v", offer)
	}
	post := func(ctype, origin, body string) (int, map[string]string) {
		req, _ := http.NewRequest("POST", srv.URL+PathSubscribe, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	body := func(tok, sub string) string { return `{"token":"` + tok + `","subscription":` + sub + `}` }
	for _, c := range []struct {
		name, ctype, origin, body, code string
	}{
		{"another origin", "application/json", "https://evil.example", body(offer.Token, subscriptionJSON()), "invalid_request"},
		{"a form body", "application/x-www-form-urlencoded", "", "token=" + offer.Token, "invalid_request"},
		{"not a subscription", "application/json", "", body(offer.Token, `{"endpoint":"https://push.example/x"}`), "invalid_request"},
		{"a made-up token", "application/json", "", body("made-up", subscriptionJSON()), "invalid_grant"},
		{"a plain http endpoint", "application/json", "", body(offer.Token, strings.Replace(subscriptionJSON(), "https://push.example", "http://push.example", 1)), "invalid_request"},
		{"a loopback endpoint", "application/json", "", body(offer.Token, strings.Replace(subscriptionJSON(), "https://push.example", "https://127.0.0.1:8443", 1)), "invalid_request"},
		{"a metadata endpoint", "application/json", "", body(offer.Token, strings.Replace(subscriptionJSON(), "https://push.example", "https://[::ffff:169.254.169.254]", 1)), "invalid_request"},
	} {
		if status, m := post(c.ctype, c.origin, c.body); status != http.StatusBadRequest || m["error"] != c.code {
			t.Errorf("%s: %d %v, want 400 %s", c.name, status, m, c.code)
		}
	}
	if status, m := post("application/json", "https://ciba.example", body(offer.Token, subscriptionJSON())); status != http.StatusCreated {
		t.Fatalf("subscribe: %d %v", status, m)
	}
	if len(subs.got["sub-alice"]) != 1 {
		t.Fatalf("subscriptions: %+v", subs.got)
	}
	if status, m := post("application/json", "", body(offer.Token, subscriptionJSON())); status != http.StatusBadRequest || m["error"] != "invalid_grant" {
		t.Fatalf("the token used again: %d %v", status, m)
	}
}

// TestApprovedPageOffersNotificationsUnderItsCSP: the Approved page with a
// push offer carries the token and key, and its CSP allows exactly its
// script (by hash), the worker and the post to the origin.
func TestApprovedPageOffersNotificationsUnderItsCSP(t *testing.T) {
	a := &Approval{Logger: discard()}
	rec := httptest.NewRecorder()
	a.render(rec, http.StatusOK, page{Title: "Approved", Message: "ok", Push: &pushOffer{Token: "tok", Key: "key"}})
	body, csp := rec.Body.String(), rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(body, `id="push" data-token="tok" data-key="key" hidden`) {
		t.Fatalf("no offer in the page:\n%s", body)
	}
	scripts := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(body, -1)
	if len(scripts) != 1 {
		t.Fatalf("%d scripts, want the push script", len(scripts))
	}
	sum := sha256.Sum256([]byte(scripts[0][1]))
	for _, want := range []string{"'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'", "worker-src 'self'", "connect-src 'self'", "manifest-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP %q", csp)
	}
	// Without an offer: no push script, no worker or connect sources.
	rec = httptest.NewRecorder()
	a.render(rec, http.StatusOK, page{Title: "Approved", Message: "ok"})
	if csp := rec.Header().Get("Content-Security-Policy"); strings.Contains(csp, "worker-src") || strings.Contains(csp, "connect-src") || strings.Contains(rec.Body.String(), `id="push"`) {
		t.Errorf("a page without an offer: CSP %q", csp)
	}
}

// TestWebAppFiles: the manifest names the start page and PNG icons that
// exist, and the service worker may control the whole origin.
func TestWebAppFiles(t *testing.T) {
	_, _, srv := webAppServer(t)
	get := func(path string) (*http.Response, []byte) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := get(PathManifest)
	var m struct {
		StartURL string `json:"start_url"`
		Icons    []struct{ Src, Sizes string }
	}
	if resp.Header.Get("Content-Type") != "application/manifest+json" || json.Unmarshal(b, &m) != nil || m.StartURL != PathApp || len(m.Icons) != 2 {
		t.Fatalf("manifest: %s %s", resp.Header.Get("Content-Type"), b)
	}
	for _, ic := range m.Icons {
		resp, b := get(ic.Src)
		img, err := png.Decode(bytes.NewReader(b))
		if resp.StatusCode != 200 || err != nil || ic.Sizes != fmt.Sprintf("%dx%d", img.Bounds().Dx(), img.Bounds().Dy()) {
			t.Errorf("icon %s (%s): %d %v", ic.Src, ic.Sizes, resp.StatusCode, err)
		}
	}
	resp, b = get(PathServiceWorker)
	if resp.Header.Get("Service-Worker-Allowed") != "/" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(string(b), `addEventListener("push"`) || !strings.Contains(string(b), "/approve/") {
		t.Fatalf("service worker: %v\n%s", resp.Header, b)
	}
	if resp, _ := get(PathApp); resp.StatusCode != 200 {
		t.Fatalf("start page: %d", resp.StatusCode)
	}
}

// TestSubscribeTokenBurstSubscribesOnce: one Approved page's token posted
// by 20 browsers at once (a copied page, a replaying attacker) subscribes
// exactly one of them; the others are invalid_grant.
func TestSubscribeTokenBurstSubscribesOnce(t *testing.T) {
	a, subs, srv := webAppServer(t)
	offer := a.Push.offer(t.Context(), "sub-alice", discard())
	if offer == nil {
		t.Fatal("no offer")
	}
	const n = 20
	codes := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		body := `{"token":"` + offer.Token + `","subscription":` + subscriptionJSON() + `}`
		wg.Go(func() {
			resp, err := http.Post(srv.URL+PathSubscribe, "application/json", strings.NewReader(body))
			if err != nil {
				codes <- err.Error()
				return
			}
			defer resp.Body.Close()
			var m map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&m)
			if resp.StatusCode == http.StatusCreated {
				codes <- "created"
				return
			}
			codes <- m["error"]
		})
	}
	wg.Wait()
	close(codes)
	got := map[string]int{}
	for c := range codes {
		got[c]++
	}
	if got["created"] != 1 || got["invalid_grant"] != n-1 {
		t.Fatalf("answers %v, want 1 created and %d invalid_grant", got, n-1)
	}
	subs.mu.Lock()
	defer subs.mu.Unlock()
	if len(subs.got["sub-alice"]) != 1 {
		t.Fatalf("%d subscriptions stored, want 1", len(subs.got["sub-alice"]))
	}
}

// TestSubscribeRefusesMalformedBodies: bodies that are not JSON, carry
// members of the wrong type, a non-https endpoint or more than 8 KiB each
// get 400 invalid_request as RFC 6749-style JSON, store nothing, and leave
// the token unspent, so the page's retry with a good body still subscribes.
func TestSubscribeRefusesMalformedBodies(t *testing.T) {
	a, subs, srv := webAppServer(t)
	offer := a.Push.offer(t.Context(), "sub-alice", discard())
	if offer == nil {
		t.Fatal("no offer")
	}
	good := subscriptionJSON()
	for _, c := range []struct{ name, body string }{
		{"not JSON", `token=` + offer.Token},
		{"truncated JSON", `{"token":"` + offer.Token + `","subscription":`},
		{"a JSON array", `["` + offer.Token + `"]`},
		{"a number token", `{"token":42,"subscription":` + good + `}`},
		{"an object subscription member", `{"token":"` + offer.Token + `","subscription":"` + strings.ReplaceAll(good, `"`, `\"`) + `"}`},
		{"a number endpoint", `{"token":"` + offer.Token + `","subscription":{"endpoint":7,"keys":{"p256dh":"x","auth":"y"}}}`},
		{"a string keys member", `{"token":"` + offer.Token + `","subscription":{"endpoint":"https://push.example/x","keys":"k"}}`},
		{"no token", `{"subscription":` + good + `}`},
		{"no subscription", `{"token":"` + offer.Token + `"}`},
		{"an ftp endpoint", `{"token":"` + offer.Token + `","subscription":` + strings.Replace(good, "https://", "ftp://", 1) + `}`},
		{"a relative endpoint", `{"token":"` + offer.Token + `","subscription":` + strings.Replace(good, "https://push.example/x", "/x", 1) + `}`},
		{"over 8 KiB", `{"token":"` + offer.Token + `","subscription":` + good + `,"pad":"` + strings.Repeat("a", 9<<10) + `"}`},
	} {
		resp, err := http.Post(srv.URL+PathSubscribe, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]string
		derr := json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || derr != nil || m["error"] != "invalid_request" || m["error_description"] == "" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %q %v (decode %v), want 400 application/json invalid_request with a description", c.name, resp.StatusCode, resp.Header.Get("Content-Type"), m, derr)
		}
	}
	subs.mu.Lock()
	n := len(subs.got)
	subs.mu.Unlock()
	if n != 0 {
		t.Fatalf("malformed bodies stored subscriptions: %+v", subs.got)
	}
	resp, err := http.Post(srv.URL+PathSubscribe, "application/json", strings.NewReader(`{"token":"`+offer.Token+`","subscription":`+good+`}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || len(subs.got["sub-alice"]) != 1 {
		t.Fatalf("the good retry: %d, stored %+v; a malformed body must not spend the token", resp.StatusCode, subs.got)
	}
}

// failingPushServer is webAppServer with the real subscriptions, kept
// with the tokens in a store that fails on demand.
func failingPushServer(t *testing.T) (*Approval, *webpush.Subscriptions, *failingStore, *httptest.Server) {
	t.Helper()
	fs := newFailingStore(memory.New())
	subs := &webpush.Subscriptions{Records: fs}
	a := &Approval{Logger: discard(), Push: &WebPush{PublicKey: "BKEY", Subscriptions: subs, Records: fs, Origin: "https://ciba.example"}}
	mux := http.NewServeMux()
	a.registerApp(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return a, subs, fs, srv
}

// endpointJSON is a subscription at an endpoint of its own (i), so that
// every one stored counts.
func endpointJSON(i int) string {
	return strings.Replace(subscriptionJSON(), "https://push.example/x", fmt.Sprintf("https://push.example/x%d", i), 1)
}

// TestSubscribeTokenRecordOfBareSubject: a token record made before
// records carried their expiry (the bare subject) still names its user,
// with at most a token's lifetime left.
func TestSubscribeTokenRecordOfBareSubject(t *testing.T) {
	now := time.Now()
	if got := parseSubscribeToken([]byte("sub-alice"), now); got.Subject != "sub-alice" || !got.Expires.Equal(now.Add(SubscribeTokenTTL)) {
		t.Fatalf("bare subject read as %+v", got)
	}
	exp := now.Add(time.Minute).UTC()
	v, _ := json.Marshal(subscribeToken{Subject: "sub-bob", Expires: exp})
	if got := parseSubscribeToken(v, now); got.Subject != "sub-bob" || !got.Expires.Equal(exp) {
		t.Fatalf("record read as %+v", got)
	}
}

// postSubscribe posts a subscription with tok and returns the status
// and the error code ("" for none).
func postSubscribe(t *testing.T, srv *httptest.Server, tok, sub string) (int, string) {
	t.Helper()
	resp, err := http.Post(srv.URL+PathSubscribe, "application/json", strings.NewReader(`{"token":"`+tok+`","subscription":`+sub+`}`))
	if err != nil {
		t.Error(err)
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var m map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m["error"]
}

// TestSubscribeTokenSurvivesAStoreError: when the store fails to keep
// the subscription, the token is not spent: the same token subscribes on
// the next try, once, and keeps no more than the rest of its lifetime.
func TestSubscribeTokenSurvivesAStoreError(t *testing.T) {
	a, subs, fs, srv := failingPushServer(t)
	offer := a.Push.offer(t.Context(), "sub-alice", discard())
	if offer == nil {
		t.Fatal("no offer")
	}
	fs.Fail(1)
	if status, code := postSubscribe(t, srv, offer.Token, subscriptionJSON()); status != http.StatusServiceUnavailable || code != "temporarily_unavailable" {
		t.Fatalf("with the store failing: %d %s, want 503 temporarily_unavailable", status, code)
	}
	if l, _ := subs.List(t.Context(), "sub-alice"); len(l) != 0 {
		t.Fatalf("%d subscriptions after a failed write, want 0", len(l))
	}
	if status, code := postSubscribe(t, srv, offer.Token, endpointJSON(1)); status != http.StatusCreated {
		t.Fatalf("the same token tried again: %d %s, want 201", status, code)
	}
	if status, code := postSubscribe(t, srv, offer.Token, endpointJSON(2)); status != http.StatusBadRequest || code != "invalid_grant" {
		t.Fatalf("the token used a third time: %d %s, want 400 invalid_grant", status, code)
	}
	if l, _ := subs.List(t.Context(), "sub-alice"); len(l) != 1 {
		t.Fatalf("%d subscriptions, want 1", len(l))
	}
	puts := fs.puts(subscribeKind)
	if len(puts) != 2 || puts[0] != SubscribeTokenTTL || puts[1] <= 0 || puts[1] >= SubscribeTokenTTL {
		t.Fatalf("token lifetimes %v: want %v, then less (the rest of it)", puts, SubscribeTokenTTL)
	}
}

// TestSubscribeTokenBurstWithAStoreError: one token posted by 20 browsers
// at once while the store fails the first write, then once more,
// subscribes exactly one browser over all.
func TestSubscribeTokenBurstWithAStoreError(t *testing.T) {
	a, subs, fs, srv := failingPushServer(t)
	offer := a.Push.offer(t.Context(), "sub-alice", discard())
	if offer == nil {
		t.Fatal("no offer")
	}
	fs.Fail(1)
	const n = 20
	codes := make(chan string, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		sub := endpointJSON(i)
		wg.Go(func() {
			<-start
			if status, code := postSubscribe(t, srv, offer.Token, sub); status == http.StatusCreated {
				codes <- "created"
			} else {
				codes <- code
			}
		})
	}
	close(start)
	wg.Wait()
	close(codes)
	got := map[string]int{}
	for c := range codes {
		got[c]++
	}
	if got["temporarily_unavailable"] != 1 || got["created"] > 1 || got["created"]+got["invalid_grant"] != n-1 {
		t.Fatalf("answers %v, want one temporarily_unavailable, at most one created, the rest invalid_grant", got)
	}
	status, _ := postSubscribe(t, srv, offer.Token, endpointJSON(n))
	if created := got["created"]; (created == 1 && status != http.StatusBadRequest) || (created == 0 && status != http.StatusCreated) {
		t.Fatalf("after a burst with %d created, the token again: %d", created, status)
	}
	if l, _ := subs.List(t.Context(), "sub-alice"); len(l) != 1 {
		t.Fatalf("%d subscriptions, want 1", len(l))
	}
}
