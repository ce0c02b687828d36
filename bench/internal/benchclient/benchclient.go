// Package benchclient is what the benchmark commands share to drive whole
// CIBA flows against cibaproxy's local upstream: a webhook receiver that
// learns each request's callback (keyed by its binding message), the
// bc-authorize call, the approval at the callback endpoint, a client's form
// POST, and the figures and TSV lines they print.
package benchclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Hook is what the webhook message of one request tells: where and with
// which bearer token to approve it.
type Hook struct {
	CallbackURL string
	Token       string
}

// Receiver is the webhook endpoint of the local upstream's webhook channel.
// It keeps every message's callback by binding message until Take.
type Receiver struct {
	mu    sync.Mutex
	hooks map[string]Hook
	wait  map[string]chan struct{}
	count int
	srv   *http.Server
}

// Serve serves h on addr until the server it returns is closed or shut
// down; the error is the listen's.
func Serve(addr string, h http.Handler) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// NewReceiver returns a Receiver that is not listening, for a caller that
// serves it itself (beside handlers of its own); Close does nothing.
func NewReceiver() *Receiver {
	return &Receiver{hooks: map[string]Hook{}, wait: map[string]chan struct{}{}}
}

// Listen starts a Receiver on addr; Close stops it.
func Listen(addr string) (*Receiver, error) {
	rv := NewReceiver()
	srv, err := Serve(addr, rv)
	if err != nil {
		return nil, err
	}
	rv.srv = srv
	return rv, nil
}

// Close stops the receiver that Listen started.
func (rv *Receiver) Close() error {
	if rv.srv == nil {
		return nil
	}
	return rv.srv.Close()
}

// Count is the number of webhook messages received.
func (rv *Receiver) Count() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.count
}

// ServeHTTP records one webhook message.
func (rv *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var m struct {
		BindingMessage string `json:"binding_message"`
		CallbackURL    string `json:"callback_url"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	rv.mu.Lock()
	rv.count++
	rv.hooks[m.BindingMessage] = Hook{CallbackURL: m.CallbackURL, Token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}
	if ch, ok := rv.wait[m.BindingMessage]; ok {
		close(ch)
		delete(rv.wait, m.BindingMessage)
	}
	rv.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Take waits (until ctx is done) for the message of the request with
// binding message binding, and forgets it.
func (rv *Receiver) Take(ctx context.Context, binding string) (Hook, error) {
	rv.mu.Lock()
	h, ok := rv.hooks[binding]
	var ch chan struct{}
	if !ok {
		ch = make(chan struct{})
		rv.wait[binding] = ch
	}
	rv.mu.Unlock()
	if !ok {
		select {
		case <-ch:
		case <-ctx.Done():
			rv.mu.Lock()
			delete(rv.wait, binding)
			rv.mu.Unlock()
			return Hook{}, fmt.Errorf("no webhook message for %q: %w", binding, ctx.Err())
		}
		rv.mu.Lock()
		h = rv.hooks[binding]
		rv.mu.Unlock()
	}
	rv.mu.Lock()
	delete(rv.hooks, binding)
	rv.mu.Unlock()
	return h, nil
}

// Authorize creates a request with POST /bc-authorize for client
// id:secret (client_secret_basic) and returns its auth_req_id.
func Authorize(ctx context.Context, hc *http.Client, base, id, secret, binding string) (string, error) {
	return AuthorizeForm(ctx, hc, base, id, secret, url.Values{"scope": {"openid email"}, "login_hint": {"alice"}, "binding_message": {binding}})
}

// AuthorizeForm is Authorize with the request's parameters in form.
func AuthorizeForm(ctx context.Context, hc *http.Client, base, id, secret string, form url.Values) (string, error) {
	var a struct {
		AuthReqID        string `json:"auth_req_id"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	status, err := PostForm(ctx, hc, base+"/bc-authorize", id, secret, form, &a)
	if err != nil {
		return "", fmt.Errorf("bc-authorize: %w", err)
	}
	if status != http.StatusOK || a.AuthReqID == "" {
		return "", fmt.Errorf("bc-authorize: HTTP %d: %s %s", status, a.Error, a.ErrorDescription)
	}
	return a.AuthReqID, nil
}

// ErrNoAnswer marks a request that got no answer at all (the connection
// failed or closed before one came).
var ErrNoAnswer = errors.New("no answer")

// PostForm sends form to target as client id:secret (client_secret_basic,
// each part form-encoded as RFC 6749 §2.3.1 says), decodes the JSON answer
// into into and returns the HTTP status. An error wraps ErrNoAnswer when
// no answer came.
func PostForm(ctx context.Context, hc *http.Client, target, id, secret string, form url.Values, into any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w: %w", req.URL.Path, ErrNoAnswer, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, fmt.Errorf("POST %s: read: %w", req.URL.Path, err)
	}
	if err := json.Unmarshal(body, into); err != nil {
		return resp.StatusCode, fmt.Errorf("POST %s: HTTP %d, not JSON: %.200s", req.URL.Path, resp.StatusCode, body)
	}
	return resp.StatusCode, nil
}

// Approve approves a request at its callback, as the local upstream's
// approval app would, and returns when the 204 is read.
func Approve(ctx context.Context, hc *http.Client, h Hook) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.CallbackURL, bytes.NewReader([]byte(`{"status":"approved"}`)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+h.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("callback: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("callback: HTTP %d", resp.StatusCode)
	}
	return nil
}

// PollForm is the body of a CIBA token request for authReqID.
func PollForm(authReqID string) string { return PollValues(authReqID).Encode() }

// PollValues are the parameters of a CIBA token request for authReqID.
func PollValues(authReqID string) url.Values {
	return url.Values{"grant_type": {"urn:openid:params:grant-type:ciba"}, "auth_req_id": {authReqID}}
}

// Millis is the p-quantile (0 to 1) of sorted, in milliseconds: the
// element at p·len, the last one for p = 1. sorted must not be empty.
func Millis(sorted []time.Duration, p float64) float64 {
	return float64(sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Microseconds()) / 1000
}

// AppendTSV appends line to the TSV file path, writing header first when
// the file is new.
func AppendTSV(path, header, line string) error {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if statErr != nil {
		fmt.Fprintln(f, header)
	}
	fmt.Fprintln(f, line)
	if err := f.Close(); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}
