package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The secrets a request to cibaproxy and a call out of it may carry; no
// span may hold any of them.
const (
	clientSecret      = "s3cr3t-client-secret"
	authReqID         = "auth-req-id-1f0a9c"
	approvalID        = "approval-id-77ab21"
	notificationToken = "notification-token-5e1d"
)

// recording returns an enabled Tracing that exports every span to the
// returned exporter as it ends.
func recording(t *testing.T, ratio float64) (*Tracing, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr, err := newWith(context.Background(), Config{SampleRatio: ratio, ServiceVersion: "v1.2.3"}, sdktrace.WithSyncer(exp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

// routes are cibaproxy's, as the server registers them.
var routes = Routes("POST /bc-authorize", "POST /token", "GET /approve/{id}", "POST /approve/{id}", "GET /healthz")

// attrs returns the attributes of s as a map.
func attrs(s tracetest.SpanStub) map[string]string {
	m := make(map[string]string)
	for _, a := range s.Attributes {
		m[string(a.Key)] = a.Value.String()
	}
	return m
}

// checkNoSecret fails if a span's name, attributes, status, events or
// resource holds any of the secrets.
func checkNoSecret(t *testing.T, spans tracetest.SpanStubs, secrets ...string) {
	t.Helper()
	for _, s := range spans {
		var b strings.Builder
		fmt.Fprintln(&b, s.Name, s.Status.Description)
		for _, a := range s.Attributes {
			fmt.Fprintln(&b, a.Key, a.Value.String())
		}
		for _, e := range s.Events {
			fmt.Fprintln(&b, e.Name)
			for _, a := range e.Attributes {
				fmt.Fprintln(&b, a.Key, a.Value.String())
			}
		}
		if s.Resource != nil {
			for _, a := range s.Resource.Attributes() {
				fmt.Fprintln(&b, a.Key, a.Value.String())
			}
		}
		for _, secret := range secrets {
			if strings.Contains(b.String(), secret) {
				t.Errorf("span %q holds the secret %q:\n%s", s.Name, secret, b.String())
			}
		}
	}
}

func TestServerSpans(t *testing.T) {
	tr, exp := recording(t, 1)
	h := tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			SetClient(r.Context(), "demo-poll")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"authorization_pending"}`)
			return
		}
		if r.URL.Path == "/boom" {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}), routes)

	form := url.Values{"grant_type": {"urn:openid:params:grant-type:ciba"}, "auth_req_id": {authReqID}, "client_secret": {clientSecret}}
	req := httptest.NewRequest(http.MethodPost, "/token?auth_req_id="+authReqID, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("demo-poll", clientSecret)
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/approve/"+approvalID, nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("BREW", "/"+approvalID, nil))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/boom", nil))

	spans := exp.GetSpans()
	tests := []struct {
		name  string
		attrs map[string]string
		error bool
	}{
		{"POST /token", map[string]string{attrMethod: "POST", attrRoute: "/token", attrStatus: "400", ClientAttr: "demo-poll"}, false},
		{"GET /approve/{id}", map[string]string{attrMethod: "GET", attrRoute: "/approve/{id}", attrStatus: "200"}, false},
		{"_OTHER", map[string]string{attrMethod: "_OTHER", attrStatus: "200"}, false},
		{"GET", map[string]string{attrMethod: "GET", attrStatus: "503", "error.type": "503"}, true},
	}
	if len(spans) != len(tests) {
		t.Fatalf("got %d spans, want %d: %v", len(spans), len(tests), spans)
	}
	for i, tt := range tests {
		s := spans[i]
		if s.Name != tt.name || s.SpanKind != trace.SpanKindServer {
			t.Errorf("span %d: %s %q, want server span %q", i, s.SpanKind, s.Name, tt.name)
		}
		if got := attrs(s); !equal(got, tt.attrs) {
			t.Errorf("span %q: attributes %v, want %v", s.Name, got, tt.attrs)
		}
		if (s.Status.Code == codes.Error) != tt.error {
			t.Errorf("span %q: status %v, want error %v", s.Name, s.Status, tt.error)
		}
		if s.Resource == nil || !strings.Contains(s.Resource.String(), "service.name=cibaproxy") ||
			!strings.Contains(s.Resource.String(), "service.version=v1.2.3") {
			t.Errorf("span %q: resource %v, want service.name=cibaproxy and service.version=v1.2.3", s.Name, s.Resource)
		}
	}
	checkNoSecret(t, spans, clientSecret, authReqID, approvalID)
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestServerSpanJoinsTheCallersTrace(t *testing.T) {
	tr, exp := recording(t, 0) // sample nothing new: the caller decides
	h := tr.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), routes)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.Header.Set("Traceparent", parent)
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))

	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want the one of the sampled caller: %v", len(spans), spans)
	}
	s := spans[0]
	if s.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent.SpanID().String() != "00f067aa0ba902b7" || !s.Parent.IsRemote() {
		t.Errorf("span trace %s parent %s, want the caller's trace and span", s.SpanContext.TraceID(), s.Parent.SpanID())
	}
}

func TestTransport(t *testing.T) {
	tr, exp := recording(t, 1)
	var (
		mu  sync.Mutex
		got []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Traceparent"))
		mu.Unlock()
		if r.URL.Query().Has("fail") {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	client := &http.Client{Transport: tr.Transport("webhook", nil)}

	ctx, parent := tr.Tracer().Start(context.Background(), "deliver webhook")
	for _, q := range []string{"token=" + notificationToken, "fail=1"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/hook/"+notificationToken+"?"+q, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+notificationToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if req.Header.Get("Traceparent") != "" {
			t.Error("the transport changed the caller's request")
		}
	}
	// A refused connection is a failed span too.
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, closed.URL+"/hook", nil)
	if _, err := client.Do(req); err == nil {
		t.Fatal("a call to a closed server succeeded")
	}
	parent.End()

	spans := exp.GetSpans()
	if len(spans) != 4 {
		t.Fatalf("got %d spans, want 3 calls and their parent: %v", len(spans), spans)
	}
	u, _ := url.Parse(srv.URL)
	for i, s := range spans[:2] {
		if s.Name != "POST webhook" || s.SpanKind != trace.SpanKindClient {
			t.Errorf("span %d: %s %q, want client span \"POST webhook\"", i, s.SpanKind, s.Name)
		}
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("span %d is not a child of the delivery span", i)
		}
		want := fmt.Sprintf("00-%s-%s-01", s.SpanContext.TraceID(), s.SpanContext.SpanID())
		if got[i] != want {
			t.Errorf("call %d: traceparent %q, want %q (the client span)", i, got[i], want)
		}
		a := attrs(s)
		if a[attrScheme] != "http" || a[attrHost] != u.Hostname() || a[attrPort] != u.Port() || a[attrPeer] != "webhook" {
			t.Errorf("span %d: attributes %v, want scheme, host and port of %s", i, a, srv.URL)
		}
	}
	if a := attrs(spans[0]); a[attrStatus] != "200" || spans[0].Status.Code == codes.Error {
		t.Errorf("2xx call: attributes %v status %v", a, spans[0].Status)
	}
	if a := attrs(spans[1]); a[attrStatus] != "502" || spans[1].Status.Code != codes.Error {
		t.Errorf("5xx call: attributes %v status %v, want 502 and error", a, spans[1].Status)
	}
	if s := spans[2]; s.Status.Code != codes.Error || attrs(s)["error.type"] == "" {
		t.Errorf("refused call: status %v attributes %v, want an error with its type", s.Status, attrs(s))
	}
	checkNoSecret(t, spans, notificationToken, "/hook")
}

func TestBackgroundSpansJoinTheRequestsTrace(t *testing.T) {
	tr, exp := recording(t, 1)
	var traceParent string
	h := tr.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		traceParent = tr.TraceParent(r.Context()) // what ciba keeps in the request
	}), routes)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/bc-authorize", nil))
	if traceParent == "" {
		t.Fatal("no traceparent inside a traced request")
	}

	// Later, in the dispatcher: a context without a span.
	_, end := tr.StartSpan(context.Background(), "deliver webhook", traceParent)
	end(fmt.Errorf("webhook: %w", &url.Error{Op: "Post", URL: "https://device.example/" + notificationToken, Err: errors.New("refused")}))
	_, end = tr.StartSpan(context.Background(), "relay poll upstream", "not a traceparent")
	end(nil)

	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("got %d spans, want 3: %v", len(spans), spans)
	}
	authz, deliver, poll := spans[0], spans[1], spans[2]
	if deliver.SpanContext.TraceID() != authz.SpanContext.TraceID() || deliver.Parent.SpanID() != authz.SpanContext.SpanID() {
		t.Errorf("the delivery span is not a child of the bc-authorize span")
	}
	if deliver.Status.Code != codes.Error || attrs(deliver)["error.type"] != "*url.Error" {
		t.Errorf("failed delivery: status %v attributes %v, want error.type *url.Error", deliver.Status, attrs(deliver))
	}
	if poll.Parent.IsValid() || poll.SpanContext.TraceID() == authz.SpanContext.TraceID() {
		t.Errorf("a span with a malformed traceparent should start a new trace")
	}
	checkNoSecret(t, spans, notificationToken)
}

// handler is a comparable http.Handler.
type handler struct{ name string }

func (handler) ServeHTTP(http.ResponseWriter, *http.Request) {}

func TestOffIsANoOp(t *testing.T) {
	tr, err := New(context.Background(), Config{SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() {
		t.Fatal("tracing without an endpoint is enabled")
	}
	next := handler{"api"}
	if h := tr.Handler(next, routes); h != http.Handler(next) {
		t.Error("Handler wrapped the handler although tracing is off")
	}
	if rt := tr.Transport("webhook", http.DefaultTransport); rt != http.DefaultTransport {
		t.Error("Transport wrapped the transport although tracing is off")
	}
	// Even inside a span of another provider, nothing is recorded or kept.
	other, exp := recording(t, 1)
	ctx, span := other.Tracer().Start(context.Background(), "outer")
	if tp := tr.TraceParent(ctx); tp != "" {
		t.Errorf("TraceParent = %q, want \"\" when off", tp)
	}
	ctx2, end := tr.StartSpan(ctx, "deliver webhook", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	end(errors.New("x"))
	span.End()
	if ctx2 != ctx {
		t.Error("StartSpan changed the context although tracing is off")
	}
	if n := len(exp.GetSpans()); n != 1 {
		t.Errorf("got %d spans, want only the other provider's", n)
	}
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	var none *Tracing
	if none.Enabled() || none.TraceParent(ctx) != "" {
		t.Error("a nil *Tracing is not off")
	}
}

func TestEndpoint(t *testing.T) {
	tests := []struct {
		raw      string
		insecure bool
		want     string // "" for an error
	}{
		{"http://127.0.0.1:4318", false, "http://127.0.0.1:4318/v1/traces"},
		{"http://[::1]:4318/", false, "http://[::1]:4318/v1/traces"},
		{"http://localhost:4318/otlp/v1/traces", false, "http://localhost:4318/otlp/v1/traces"},
		{"https://collector.example.com", false, "https://collector.example.com/v1/traces"},
		{"http://collector.internal:4318", false, ""},
		{"http://collector.internal:4318", true, "http://collector.internal:4318/v1/traces"},
		{"https://user:pw@collector.example.com", false, ""},
		{"https://collector.example.com/v1/traces?key=x", false, ""},
		{"collector:4318", false, ""},
	}
	for _, tt := range tests {
		got, err := exportURL(tt.raw, tt.insecure)
		if tt.want == "" && err == nil || tt.want != "" && got != tt.want {
			t.Errorf("exportURL(%q, %v) = %q, %v; want %q", tt.raw, tt.insecure, got, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("exportURL(%q): the error quotes the password: %v", tt.raw, err)
		}
	}
}

// TestExportsOTLP runs the real exporter against a receiver and checks
// that Shutdown flushes the batch to /v1/traces as OTLP protobuf.
func TestExportsOTLP(t *testing.T) {
	var (
		mu    sync.Mutex
		names []string
		paths []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			t.Errorf("receiver: %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		paths = append(paths, r.URL.Path)
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
	}))
	defer srv.Close()
	tr, err := New(context.Background(), Config{Endpoint: srv.URL, SampleRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, end := tr.StartSpan(context.Background(), "deliver ping", "")
	end(nil)
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "/v1/traces" || len(names) != 1 || names[0] != "deliver ping" {
		t.Errorf("receiver got paths %v spans %v, want the span at /v1/traces", paths, names)
	}
}

func TestErrorType(t *testing.T) {
	err := fmt.Errorf("a: %w", fmt.Errorf("b: %w", &url.Error{Err: errors.New("x")}))
	if got := errorType(err); got != "*url.Error" {
		t.Errorf("errorType = %q, want *url.Error", got)
	}
	if got := errorType(errors.New("x")); got != "*errors.errorString" {
		t.Errorf("errorType = %q", got)
	}
}
