// Package webpushtest is a loopback stand-in for a browser's push service
// (RFC 8030), for tests: it takes the messages posted to its endpoints,
// decrypts each with the keys of the subscription it made for that
// endpoint (RFC 8291), and answers with the status it is told (201 by
// default; 404 or 410 to say a subscription is gone).
package webpushtest

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cibaproxy/cibaproxy/internal/outbound"
	"github.com/cibaproxy/cibaproxy/internal/webpush"
)

// queue is how many messages the service holds for Wait; a test that lets
// more pile up blocks the sender.
const queue = 64

// Service is a push service on 127.0.0.1. Close it (New registers that
// with the test).
type Service struct {
	// URL is the service's origin, http://127.0.0.1:PORT.
	URL string

	srv *httptest.Server
	got chan Message

	mu       sync.Mutex
	status   int
	byPath   map[string]int
	browsers map[string]*Browser
}

// Message is one message posted to the service.
type Message struct {
	// Path is the endpoint's path.
	Path string
	// Header is the request's header (Content-Encoding, TTL, Urgency,
	// Authorization).
	Header http.Header
	// Body is the encrypted body as posted.
	Body []byte
	// Plain is Body decrypted with the keys of the subscription made for
	// Path by Subscribe; nil when none was or it did not decrypt
	// (DecryptErr).
	Plain []byte
	// DecryptErr is why Plain is nil for a known subscription.
	DecryptErr error
	// Status is what the service answered.
	Status int
}

// Browser is the browser's side of one subscription: the private key and
// the auth secret the push messages are encrypted for.
type Browser struct {
	// Endpoint is the subscription's push resource URL at the service.
	Endpoint string
	// Key is the browser's P-256 private key (p256dh's).
	Key *ecdh.PrivateKey
	// Auth is the browser's 16-byte auth secret.
	Auth []byte
}

// New starts a service; the test's cleanup stops it.
func New(t testing.TB) *Service {
	t.Helper()
	s := &Service{got: make(chan Message, queue), status: http.StatusCreated, byPath: map[string]int{}, browsers: map[string]*Browser{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(s.srv.Close)
	return s
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	status, ok := s.byPath[r.URL.Path]
	if !ok {
		status = s.status
	}
	b := s.browsers[r.URL.Path]
	s.mu.Unlock()
	m := Message{Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Status: status}
	if b != nil {
		m.Plain, m.DecryptErr = webpush.Decrypt(body, b.Key, b.Auth)
	}
	select {
	case s.got <- m:
	case <-r.Context().Done():
		return
	}
	w.WriteHeader(status)
}

// SetStatus makes the service answer every endpoint without a status of
// its own (SetPathStatus) with code: 201 delivered, 404 or 410 gone, 5xx
// down.
func (s *Service) SetStatus(code int) {
	s.mu.Lock()
	s.status = code
	s.mu.Unlock()
}

// SetPathStatus makes the service answer the endpoint at path with code.
func (s *Service) SetPathStatus(path string, code int) {
	s.mu.Lock()
	s.byPath[path] = code
	s.mu.Unlock()
}

// Subscribe makes a browser's subscription with the endpoint at path
// (starting with '/') on this service, with new keys whose messages the
// service decrypts; it returns it as the browser would post it
// (PushSubscription.toJSON) and parsed.
func (s *Service) Subscribe(t testing.TB, path string) (*Browser, webpush.Subscription) {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, webpush.AuthSecretSize)
	_, _ = rand.Read(auth) // never fails (crypto/rand)
	b := &Browser{Endpoint: s.URL + path, Key: k, Auth: auth}
	sub, err := webpush.ParseSubscription(b.JSON())
	if err != nil {
		t.Fatalf("webpushtest: %v", err)
	}
	s.mu.Lock()
	s.browsers[path] = b
	s.mu.Unlock()
	return b, sub
}

// JSON is the browser's subscription as PushSubscription.toJSON gives it:
// {"endpoint": …, "keys": {"p256dh": …, "auth": …}}, keys in base64url.
func (b *Browser) JSON() []byte {
	js, _ := json.Marshal(b.Object()) // cannot fail: strings only
	return js
}

// Object is JSON as a value, to embed in a larger body.
func (b *Browser) Object() map[string]any {
	return map[string]any{"endpoint": b.Endpoint, "keys": map[string]string{
		"p256dh": base64.RawURLEncoding.EncodeToString(b.Key.PublicKey().Bytes()),
		"auth":   base64.RawURLEncoding.EncodeToString(b.Auth),
	}}
}

// Wait returns the next message posted, or an error when ctx ends first.
func (s *Service) Wait(ctx context.Context) (Message, error) {
	select {
	case m := <-s.got:
		return m, nil
	case <-ctx.Done():
		return Message{}, fmt.Errorf("webpushtest: no message reached the push service: %w", ctx.Err())
	}
}

// MustWait is Wait bounded by timeout, failing the test when no message
// comes.
func (s *Service) MustWait(t testing.TB, timeout time.Duration) Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := s.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Pending returns a message already posted and not yet taken, if any.
func (s *Service) Pending() (Message, bool) {
	select {
	case m := <-s.got:
		return m, true
	default:
		return Message{}, false
	}
}

// LoopbackPolicy is the outbound policy that lets a sender reach the
// service: plain http to 127.0.0.0/8.
func LoopbackPolicy() outbound.Policy {
	return outbound.Policy{AllowHTTP: true, AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
}

// Client is a guarded outbound client under LoopbackPolicy.
func Client() *outbound.Client {
	return outbound.New(5*time.Second, outbound.Guard(LoopbackPolicy()))
}
