// Package benchclient is what the benchmark commands share to drive whole
// CIBA flows against cibaproxy's local upstream: a webhook receiver that
// learns each request's callback (keyed by its binding message), the
// bc-authorize call, and the approval at the callback endpoint.
package benchclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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

// Listen starts a Receiver on addr; Close stops it.
func Listen(addr string) (*Receiver, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	rv := &Receiver{hooks: map[string]Hook{}, wait: map[string]chan struct{}{}}
	rv.srv = &http.Server{Handler: rv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = rv.srv.Serve(ln) }()
	return rv, nil
}

// Close stops the receiver.
func (rv *Receiver) Close() error { return rv.srv.Close() }

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
	form := url.Values{"scope": {"openid email"}, "login_hint": {"alice"}, "binding_message": {binding}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/bc-authorize", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("bc-authorize: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var a struct {
		AuthReqID string `json:"auth_req_id"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &a) != nil || a.AuthReqID == "" {
		return "", fmt.Errorf("bc-authorize: HTTP %d: %s", resp.StatusCode, body)
	}
	return a.AuthReqID, nil
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
func PollForm(authReqID string) string {
	return url.Values{"grant_type": {"urn:openid:params:grant-type:ciba"}, "auth_req_id": {authReqID}}.Encode()
}
