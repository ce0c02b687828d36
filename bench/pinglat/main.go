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
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cibaproxy/cibaproxy/bench/internal/benchclient"
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

// pings holds the pings that arrived, by auth_req_id; the webhook messages
// are benchclient's Receiver's.
type pings struct {
	mu   sync.Mutex
	at   map[string]time.Time     // auth_req_id → arrival
	wait map[string]chan struct{} // auth_req_id → closed on arrival
	errs []string
}

// waiter is closed when the ping for authReqID has arrived.
func (p *pings) waiter(authReqID string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	if _, ok := p.at[authReqID]; ok {
		close(ch)
		return ch
	}
	p.wait[authReqID] = ch
	return ch
}

func (p *pings) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var m struct {
		AuthReqID string `json:"auth_req_id"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, dup := p.at[m.AuthReqID]; dup {
		p.errs = append(p.errs, "a second ping for one request")
	}
	p.at[m.AuthReqID] = at
	if ch, ok := p.wait[m.AuthReqID]; ok {
		close(ch)
		delete(p.wait, m.AuthReqID)
	}
	w.WriteHeader(http.StatusNoContent)
}

func run(base, listen, client string, n, c int, timeout time.Duration) error {
	id, secret, _ := strings.Cut(client, ":")
	rv := benchclient.NewReceiver()
	pg := &pings{at: map[string]time.Time{}, wait: map[string]chan struct{}{}}
	srv, err := benchclient.Serve(listen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hook":
			rv.ServeHTTP(w, r)
		case "/notify":
			pg.ServeHTTP(w, r)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	if err != nil {
		return err
	}
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
			d, err := flow(hc, rv, pg, base, id, secret, fmt.Sprintf("Lat %06d", i), timeout)
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
	if len(pg.errs) > 0 {
		return errors.New(pg.errs[0])
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return benchclient.Millis(lat, p) }
	fmt.Printf("PINGLAT flows=%d p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", len(lat), q(0.50), q(0.90), q(0.99), q(1))
	return nil
}

// flow runs one request: create, wait for its webhook, approve, wait for
// its ping; it returns the time from the approval's answer to the ping.
func flow(hc *http.Client, rv *benchclient.Receiver, pg *pings, base, id, secret, binding string, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	form := url.Values{"scope": {"openid"}, "login_hint": {"alice"}, "binding_message": {binding}, "client_notification_token": {"bench-note-" + strings.ReplaceAll(binding, " ", "")}}
	authReqID, err := benchclient.AuthorizeForm(ctx, hc, base, id, secret, form)
	if err != nil {
		return 0, err
	}
	h, err := rv.Take(ctx, binding)
	if err != nil {
		return 0, err
	}
	pinged := pg.waiter(authReqID)
	if err := benchclient.Approve(ctx, hc, h); err != nil {
		return 0, err
	}
	approved := time.Now()
	select {
	case <-pinged:
	case <-ctx.Done():
		return 0, fmt.Errorf("no ping for the approved request %q", binding)
	}
	pg.mu.Lock()
	at := pg.at[authReqID]
	pg.mu.Unlock()
	// The ping can land before the callback's answer is read: count that
	// as no delay rather than a negative one.
	return max(at.Sub(approved), 0), nil
}

func init() { log.SetFlags(0) }
