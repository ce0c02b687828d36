// Command pinglat measures scenario 5 of the benchmark: the time from a
// user's approval to the ping reaching the client's notification endpoint.
// It is the webhook receiver (to learn each request's callback token) and
// the ping client's notification endpoint at once. For each of -n flows it
// creates a request for the ping client, approves it at the callback
// endpoint, and measures from the callback's 204 to the ping's arrival.
// Flows run -c at a time; every wait is bounded by -timeout.
//
//	pinglat -url http://127.0.0.1:18080 -listen 127.0.0.1:18095 -n 200 -c 4
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:18080", "cibaproxy's base URL")
	listen := flag.String("listen", "127.0.0.1:18095", "address of the webhook receiver and notification endpoint")
	n := flag.Int("n", 200, "flows")
	c := flag.Int("c", 4, "flows at a time")
	client := flag.String("client", "bench-ping:bench-ping-secret", "the ping client's id:secret")
	timeout := flag.Duration("timeout", 10*time.Second, "bound of each wait")
	flag.Parse()
	if err := run(*base, *listen, *client, *n, *c, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "pinglat:", err)
		os.Exit(1)
	}
}

// receiver holds the webhook messages and pings that arrived, by binding
// message and by auth_req_id.
type receiver struct {
	mu     sync.Mutex
	hooks  map[string]hook          // binding message → message
	pinged map[string]time.Time     // auth_req_id → arrival
	wait   map[string]chan struct{} // key → closed on arrival
	errs   []string
}

type hook struct{ callbackURL, token string }

func (rv *receiver) signal(key string) {
	if ch, ok := rv.wait[key]; ok {
		close(ch)
		delete(rv.wait, key)
	}
}

func (rv *receiver) waiter(key string) <-chan struct{} {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	_, hooked := rv.hooks[key]
	_, pinged := rv.pinged[key]
	ch := make(chan struct{})
	if hooked || pinged {
		close(ch)
		return ch
	}
	rv.wait[key] = ch
	return ch
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var m struct {
		AuthReqID      string `json:"auth_req_id"`
		BindingMessage string `json:"binding_message"`
		CallbackURL    string `json:"callback_url"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	switch r.URL.Path {
	case "/hook":
		rv.hooks[m.BindingMessage] = hook{callbackURL: m.CallbackURL, token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}
		rv.signal(m.BindingMessage)
	case "/notify":
		if _, dup := rv.pinged[m.AuthReqID]; dup {
			rv.errs = append(rv.errs, "a second ping for one request")
		}
		rv.pinged[m.AuthReqID] = at
		rv.signal(m.AuthReqID)
	}
	w.WriteHeader(http.StatusNoContent)
}

func run(base, listen, client string, n, c int, timeout time.Duration) error {
	id, secret, _ := strings.Cut(client, ":")
	rv := &receiver{hooks: map[string]hook{}, pinged: map[string]time.Time{}, wait: map[string]chan struct{}{}}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: rv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	hc := &http.Client{Timeout: timeout}
	lat := make([]time.Duration, 0, n)
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, c)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			d, err := flow(hc, rv, base, id, secret, fmt.Sprintf("Lat %06d", i), timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			lat = append(lat, d)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if len(rv.errs) > 0 {
		return errors.New(rv.errs[0])
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	fmt.Printf("PINGLAT flows=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", len(lat), q(0.50), q(0.90), q(0.99), q(1))
	return nil
}

// flow runs one request: create, wait for its webhook, approve, wait for
// its ping; it returns the time from the approval's answer to the ping.
func flow(hc *http.Client, rv *receiver, base, id, secret, binding string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	form := url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}, "client_notification_token": {"bench-note-" + strings.ReplaceAll(binding, " ", "")}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/bc-authorize", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	var a struct {
		AuthReqID string `json:"auth_req_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&a)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("bc-authorize: HTTP %d %v", resp.StatusCode, err)
	}
	select {
	case <-rv.waiter(binding):
	case <-ctx.Done():
		return 0, fmt.Errorf("no webhook message for %q", binding)
	}
	rv.mu.Lock()
	h := rv.hooks[binding]
	rv.mu.Unlock()
	cb, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.callbackURL, bytes.NewReader([]byte(`{"status":"approved"}`)))
	cb.Header.Set("Content-Type", "application/json")
	cb.Header.Set("Authorization", "Bearer "+h.token)
	pinged := rv.waiter(a.AuthReqID)
	resp, err = hc.Do(cb)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	approved := time.Now()
	if resp.StatusCode != http.StatusNoContent {
		return 0, fmt.Errorf("callback: HTTP %d", resp.StatusCode)
	}
	select {
	case <-pinged:
	case <-ctx.Done():
		return 0, fmt.Errorf("no ping for the approved request %q", binding)
	}
	rv.mu.Lock()
	at := rv.pinged[a.AuthReqID]
	rv.mu.Unlock()
	// The ping can land before the callback's answer is read: count that
	// as no delay rather than a negative one.
	return max(at.Sub(approved), 0), nil
}

func init() { log.SetFlags(0) }
