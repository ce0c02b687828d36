package testutil

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// inbox is an append-only list that can be waited on.
type inbox[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced at every add
}

func (b *inbox[T]) add(v T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.items = append(b.items, v)
	if b.changed != nil {
		close(b.changed)
	}
	b.changed = make(chan struct{})
}

func (b *inbox[T]) all() []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]T(nil), b.items...)
}

// waitFor returns the first item matching pred, waiting until one arrives
// or ctx ends.
func (b *inbox[T]) waitFor(ctx context.Context, what string, pred func(T) bool) (T, error) {
	for {
		b.mu.Lock()
		for _, v := range b.items {
			if pred(v) {
				b.mu.Unlock()
				return v, nil
			}
		}
		if b.changed == nil {
			b.changed = make(chan struct{})
		}
		ch := b.changed
		n := len(b.items)
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			var zero T
			return zero, fmt.Errorf("waiting for %s: %w (%d received, none matching)", what, ctx.Err(), n)
		}
	}
}

// Message is what the webhook channel POSTs for a new request.
type Message struct {
	ID             string    `json:"id"`
	ClientID       string    `json:"client_id"`
	ClientName     string    `json:"client_name"`
	LoginHint      string    `json:"login_hint"`
	Subject        string    `json:"subject"`
	Scope          string    `json:"scope"`
	BindingMessage string    `json:"binding_message"`
	ACRValues      string    `json:"acr_values"`
	ExpiresAt      time.Time `json:"expires_at"`
	ApproveURL     string    `json:"approve_url"`
	CallbackURL    string    `json:"callback_url"`

	// Token is the callback bearer from the Authorization header.
	Token string `json:"-"`
	// Refused is set when the receiver answered 503 to this delivery.
	Refused bool `json:"-"`
	// Raw is the body as received.
	Raw []byte `json:"-"`
}

// Webhook is the authentication-device service of the webhook channel: an
// HTTP receiver on 127.0.0.1 that records every message.
type Webhook struct {
	// URL is $CIBAPROXY_WEBHOOK_URL.
	URL string

	srv      *httptest.Server
	msgs     inbox[Message]
	problems inbox[string]

	mu     sync.Mutex
	refuse func(Message) bool
	answer string // auto-answer status, "" for none
	// lenient: a failed auto-answer is expected (the test kills the
	// server), not a problem.
	lenient bool

	wg sync.WaitGroup
}

// NewWebhook starts a webhook receiver, closed when the test ends. Every
// malformed delivery (no bearer, not JSON, no callback_url) fails the test.
func NewWebhook(t testing.TB) *Webhook {
	w := &Webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	w.URL = w.srv.URL + "/webhook"
	t.Cleanup(func() {
		w.srv.Close()
		w.wg.Wait()
		for _, p := range w.problems.all() {
			t.Errorf("webhook receiver: %s", p)
		}
	})
	return w
}

// Refuse makes the receiver answer 503 to messages matching pred (nil:
// accept all), so cibaproxy retries them.
func (w *Webhook) Refuse(pred func(Message) bool) {
	w.mu.Lock()
	w.refuse = pred
	w.mu.Unlock()
}

// AutoAnswerLeniently is AutoAnswer for tests that kill the server: an
// answer that fails is not reported, as the test answers again itself.
func (w *Webhook) AutoAnswerLeniently(status string) {
	w.mu.Lock()
	w.answer, w.lenient = status, true
	w.mu.Unlock()
}

// AutoAnswer makes the receiver answer every accepted message by POSTing
// {"status":status} to its callback_url ("" stops it).
func (w *Webhook) AutoAnswer(status string) {
	w.mu.Lock()
	w.answer = status
	w.mu.Unlock()
}

func (w *Webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		w.problems.add(fmt.Sprintf("reading body: %v", err))
		http.Error(rw, "bad body", http.StatusBadRequest)
		return
	}
	var m Message
	var problems []string
	if r.Method != http.MethodPost || r.URL.Path != "/webhook" {
		problems = append(problems, fmt.Sprintf("got %s %s, want POST /webhook", r.Method, r.URL.Path))
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		problems = append(problems, fmt.Sprintf("Content-Type is %q, want application/json", r.Header.Get("Content-Type")))
	}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		problems = append(problems, fmt.Sprintf("Authorization is %q, want Bearer <callback token>", r.Header.Get("Authorization")))
	}
	if err := json.Unmarshal(body, &m); err != nil {
		problems = append(problems, fmt.Sprintf("body is not the message JSON: %v: %s", err, body))
	} else if m.CallbackURL == "" || m.ID == "" || m.ClientID == "" || m.Subject == "" && m.LoginHint == "" {
		// The subject is unknown until sign-in when a federated request
		// names its user by login_hint.
		problems = append(problems, fmt.Sprintf("message lacks id, client_id, subject and login_hint, or callback_url: %s", body))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			w.problems.add(p)
		}
		http.Error(rw, strings.Join(problems, "; "), http.StatusBadRequest)
		return
	}
	m.Token, m.Raw = tok, body
	w.mu.Lock()
	refuse, answer, lenient := w.refuse, w.answer, w.lenient
	w.mu.Unlock()
	if refuse != nil && refuse(m) {
		m.Refused = true
		w.msgs.add(m)
		http.Error(rw, "try again later", http.StatusServiceUnavailable)
		return
	}
	w.msgs.add(m)
	if answer != "" {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
			defer cancel()
			resp, err := Callback(ctx, m, answer)
			switch {
			case lenient:
			case err != nil:
				w.problems.add(fmt.Sprintf("auto-%s callback for %q: %v", answer, m.BindingMessage, err))
			case resp.Status != http.StatusNoContent:
				w.problems.add(fmt.Sprintf("auto-%s callback for %q: got %s, want 204", answer, m.BindingMessage, resp))
			}
		}()
	}
	rw.WriteHeader(http.StatusNoContent)
}

// WaitFor returns the first accepted message matching pred, waiting for it
// until ctx ends.
func (w *Webhook) WaitFor(ctx context.Context, pred func(Message) bool) (Message, error) {
	return w.msgs.waitFor(ctx, "a webhook message", func(m Message) bool { return !m.Refused && pred(m) })
}

// WaitBinding returns the first accepted message with this binding_message.
func (w *Webhook) WaitBinding(ctx context.Context, binding string) (Message, error) {
	return w.msgs.waitFor(ctx, fmt.Sprintf("the webhook message %q", binding), func(m Message) bool {
		return !m.Refused && m.BindingMessage == binding
	})
}

// WaitRefused returns the first refused delivery with this binding_message.
func (w *Webhook) WaitRefused(ctx context.Context, binding string) (Message, error) {
	return w.msgs.waitFor(ctx, fmt.Sprintf("a refused webhook delivery %q", binding), func(m Message) bool {
		return m.Refused && m.BindingMessage == binding
	})
}

// Messages returns every delivery so far, refused ones included.
func (w *Webhook) Messages() []Message { return w.msgs.all() }

// Notification is one POST to the client notification endpoint: a ping
// ({"auth_req_id"}) or a push (token response or error, with auth_req_id).
type Notification struct {
	// Bearer is the token of the Authorization header.
	Bearer      string
	ContentType string
	Body        map[string]any
	Raw         []byte
	// Status is what the receiver answered.
	Status int
}

// AuthReqID returns the body's auth_req_id.
func (n Notification) AuthReqID() string {
	s, _ := n.Body["auth_req_id"].(string)
	return s
}

// Notifier is a client's notification endpoint on 127.0.0.1 that records
// every ping and push.
type Notifier struct {
	// URL is the notification endpoint, $CIBAPROXY_DEMO_NOTIFY_URL.
	URL string

	srv   *httptest.Server
	got   inbox[Notification]
	mu    sync.Mutex
	reply int
	delay time.Duration
}

// NewNotifier starts a notification receiver answering 204, closed when the
// test ends.
func NewNotifier(t testing.TB) *Notifier {
	n := &Notifier{reply: http.StatusNoContent}
	n.srv = httptest.NewServer(http.HandlerFunc(n.serve))
	n.URL = n.srv.URL + "/notify"
	t.Cleanup(n.srv.Close)
	return n
}

// Reply sets the status the receiver answers with (204 by default; 503
// makes cibaproxy retry).
func (n *Notifier) Reply(status int) {
	n.mu.Lock()
	n.reply = status
	n.mu.Unlock()
}

// Delay makes the receiver take d to answer each notification, after it
// recorded it (0, the default: at once).
func (n *Notifier) Delay(d time.Duration) {
	n.mu.Lock()
	n.delay = d
	n.mu.Unlock()
}

func (n *Notifier) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " "); !strings.EqualFold(scheme, "Bearer") {
		tok = ""
	}
	n.mu.Lock()
	status, delay := n.reply, n.delay
	n.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/notify" {
		status = http.StatusNotFound
	}
	nt := Notification{Bearer: tok, ContentType: r.Header.Get("Content-Type"), Raw: body, Status: status}
	_ = json.Unmarshal(body, &nt.Body)
	n.got.add(nt)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
		}
	}
	rw.WriteHeader(status)
}

// WaitFor returns the first notification for authReqID that was answered
// with a 2xx, waiting until ctx ends.
func (n *Notifier) WaitFor(ctx context.Context, authReqID string) (Notification, error) {
	return n.got.waitFor(ctx, "a notification for "+authReqID, func(x Notification) bool {
		return x.AuthReqID() == authReqID && x.Status/100 == 2
	})
}

// WaitAttempt returns the first notification for authReqID, whatever was
// answered.
func (n *Notifier) WaitAttempt(ctx context.Context, authReqID string) (Notification, error) {
	return n.got.waitFor(ctx, "a notification attempt for "+authReqID, func(x Notification) bool {
		return x.AuthReqID() == authReqID
	})
}

// For returns every notification received for authReqID.
func (n *Notifier) For(authReqID string) []Notification {
	var out []Notification
	for _, x := range n.got.all() {
		if x.AuthReqID() == authReqID {
			out = append(out, x)
		}
	}
	return out
}
